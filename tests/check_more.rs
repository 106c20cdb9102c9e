//! `recall check` through the real binary: values a fact never takes,
//! shadowed rules, pools nobody leaves, channels without a sender, unknown
//! templates and filters, and errors that point at their line in zh and en.

mod common;

use common::Clinic;

fn write(clinic: &Clinic, path: &str, text: &str) {
    std::fs::write(clinic.path().join(path), text).unwrap();
}

fn edit(clinic: &Clinic, path: &str, from: &str, to: &str) {
    let file = clinic.path().join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "{path} has no {from:?}");
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_value_the_fact_never_takes_is_an_error_with_a_caret_and_a_suggestion() {
    let clinic = Clinic::new();
    write(
        &clinic,
        "rules/09-typo.toml",
        "[[rule]]\nid = \"typo\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"churn_band == 'hihg' && last_followup_result != 'notsmooth'\"\n",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--> rules/09-typo.toml:5:23"), "{text}");
    assert!(text.contains("`churn_band` is never \"hihg\""), "{text}");
    assert!(text.contains("did you mean `high`?"), "{text}");
    assert!(text.contains("--> rules/09-typo.toml:5:57"), "{text}");
    assert!(text.contains("did you mean `not_smooth`?"), "{text}");
    let (_, zh) = clinic.check("zh");
    assert!(zh.contains("`churn_band` 不会等于 \"hihg\""), "{zh}");
    assert!(zh.contains("您是不是想写 `high`？"), "{zh}");
}

#[test]
fn a_rule_behind_a_broader_higher_priority_move_is_a_warning() {
    let clinic = Clinic::new();
    write(
        &clinic,
        "rules/09-shadow.toml",
        "[[rule]]\nid = \"quick_call\"\nfrom = \"warning\"\nto = \"churned\"\npriority = 1000\nwhen = \"visit_count >= 1 && days_in_pool >= 3\"\n\n[[rule]]\nid = \"late_call\"\nfrom = \"warning\"\nto = \"churned\"\npriority = 999\nwhen = \"days_in_pool >= 14 && visit_count >= 2\"\n",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("rule `late_call` never fires in pool `warning`: `quick_call` (priority 1000) always fires first"),
        "{text}"
    );
    assert!(text.contains("--> rules/09-shadow.toml:9:6"), "{text}");
    let (_, zh) = clinic.check("zh");
    assert!(
        zh.contains("规则 `late_call` 在")
            && zh.contains("中永远不会触发：优先级更高的 `quick_call`"),
        "{zh}"
    );
}

#[test]
fn a_pool_nobody_leaves_points_at_a_rule_that_moves_customers_into_it() {
    let clinic = Clinic::new();
    std::fs::remove_file(clinic.path().join("rules/05-churned.toml")).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("no rule moves customers out of `churned`"),
        "{text}"
    );
    assert!(text.contains("--> rules/"), "{text}");
    let place = text
        .lines()
        .skip_while(|l| !l.contains("out of `churned`"))
        .nth(1)
        .unwrap();
    assert!(place.ends_with(":6"), "a line and column: {text}");
    assert!(text.contains("to_churned\""), "{text}");
    assert!(text.contains("^^^"), "{text}");
}

#[test]
fn a_channel_without_a_sender_is_a_warning_at_the_action_in_both_languages() {
    let clinic = Clinic::new();
    edit(
        &clinic,
        "recall.toml",
        "[channels.sms]\nsender = \"log\"\n",
        "[unused_sms]\nsender = \"log\"\n",
    );
    edit(&clinic, "recall.toml", "[unused_sms]\n", "");
    edit(
        &clinic,
        "recall.toml",
        "sender = \"log\"\ncost = 0.045\nquiet_hours = \"21:00-09:00\"\nmax_per_customer = \"2/7d\"\n",
        "",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("sends on sms, which has no sender: its messages will wait in the queue"),
        "{text}"
    );
    assert!(text.contains("channel = \"sms\""), "the caret line: {text}");
    assert!(text.contains("add [channels.sms] with a sender"), "{text}");
    let (_, zh) = clinic.check("zh");
    assert!(
        zh.contains("通过 sms 渠道发送，但该渠道没有配置发送方"),
        "{zh}"
    );
    assert!(!zh.contains("which has no sender"), "{zh}");
}

#[test]
fn an_unknown_template_in_a_rule_is_an_error_with_a_suggestion() {
    let clinic = Clinic::new();
    edit(
        &clinic,
        "rules/03-warning.toml",
        "template = \"warning_offer\"",
        "template = \"warning_ofer\"",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("no template `warning_ofer` for sms"),
        "{text}"
    );
    assert!(text.contains("--> rules/03-warning.toml:"), "{text}");
    assert!(text.contains("did you mean `warning_offer`?"), "{text}");
}

#[test]
fn an_unknown_template_filter_fails_check_not_the_tick() {
    let clinic = Clinic::new();
    let file = clinic.path().join("templates/sms/warning_offer.txt");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{{ clinic.phone | upcase }}\n");
    let line = text.lines().count();
    std::fs::write(&file, text).unwrap();
    let (code, out) = clinic.check("en");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown template filter `upcase`"), "{out}");
    assert!(
        out.contains(&format!("templates/sms/warning_offer.txt:{line}:19")),
        "{out}"
    );
    assert!(out.contains("did you mean `upper`?"), "{out}");
    let (_, zh) = clinic.check("zh");
    assert!(zh.contains("未知的模板过滤器 `upcase`"), "{zh}");
}

#[test]
fn duplicate_ids_and_config_values_point_at_their_line() {
    let clinic = Clinic::new();
    write(
        &clinic,
        "rules/09-dup.toml",
        "[[rule]]\nid = \"new_to_customer\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"true\"\n",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--> rules/09-dup.toml:2:6"), "{text}");
    assert!(text.contains("id = \"new_to_customer\""), "{text}");

    let clinic = Clinic::new();
    edit(
        &clinic,
        "recall.toml",
        "max_attempts = 5",
        "max_attempts = 0",
    );
    let (code, text) = clinic.check("zh");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("dispatch.max_attempts 至少为 1"), "{text}");
    let config = std::fs::read_to_string(clinic.dir.path().join("recall.toml")).unwrap();
    let line = config
        .lines()
        .position(|l| l.starts_with("max_attempts = 0"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("--> recall.toml:{line}:16")),
        "{text}"
    );
}

#[test]
fn raw_parser_errors_come_with_a_plain_hint() {
    let clinic = Clinic::new();
    write(
        &clinic,
        "rules/09-words.toml",
        "[[rule]]\nid = \"words\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"visit_count > 1 and days_in_pool > 3\"\n",
    );
    write(
        &clinic,
        "rules/09-wquoted.toml",
        "[[rule]]\nid = \"quoted\"\nfrom = \"customer\"\nto = \"warning\"\npriority = \"90\"\nwhen = \"true\"\n",
    );
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("use && not and"), "{text}");
    let (_, zh) = clinic.check("zh");
    assert!(zh.contains("“并且”请写 &&，不要写 and"), "{zh}");
    assert!(zh.contains("数字不要加引号：写 90，而不是 \"90\""), "{zh}");
    assert!(
        text.contains("numbers are written without quotes: 90, not \"90\""),
        "{text}"
    );
}

#[test]
fn a_reader_that_leaves_early_ends_check_quietly() {
    // `recall check | head -0`: the reader is gone before check writes.
    let clinic = Clinic::new();
    let mut child = clinic
        .process()
        .arg("check")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// The 1-based line of `recall.toml` that starts with `start`.
fn config_line(clinic: &Clinic, start: &str) -> usize {
    let config = std::fs::read_to_string(clinic.config()).unwrap();
    config
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}"))
        + 1
}

#[test]
fn settings_dispatch_would_refuse_are_errors_at_their_line_in_both_languages() {
    let clinic = Clinic::new();
    // Email goes through an SMTP server in plain text, with a login.
    edit(
        &clinic,
        "recall.toml",
        "[channels.email]\nsender = \"log\"",
        "[channels.email]\nsender = \"mail\"",
    );
    let config = std::fs::read_to_string(clinic.config()).unwrap();
    std::fs::write(
        clinic.config(),
        format!(
            "{config}\n[senders.mail]\nkind = \"smtp\"\nhost = \"mail.clinic.example\"\nsecurity = \"plain\"\nusername = \"recall@clinic.example\"\nfrom = \"recall@clinic.example\"\n\n\
             [senders.staff_robot]\nkind = \"wecom_robot\"\nmsgtype = \"markdown\"\nmentioned_list = [\"@all\"]\n\n\
             [senders.wecom]\nkind = \"wecom\"\ncorp_id = \"ww0123456789abcdef\"\nsender_userid = \" \"\n"
        ),
    )
    .unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains("ok:"), "{text}");
    let security = config_line(&clinic, "security = \"plain\"");
    assert!(
        text.contains(&format!("--> recall.toml:{security}:12")),
        "{text}"
    );
    assert!(
        text.contains("[senders.mail] security = \"plain\" would send the password unencrypted"),
        "{text}"
    );
    assert!(
        text.contains("write security = \"starttls\" (port 587) or \"tls\" (port 465)"),
        "{text}"
    );
    let msgtype = config_line(&clinic, "msgtype = \"markdown\"");
    assert!(
        text.contains(&format!("--> recall.toml:{msgtype}:11")),
        "{text}"
    );
    let sender_userid = config_line(&clinic, "sender_userid = \" \"");
    assert!(
        text.contains(&format!("--> recall.toml:{sender_userid}:17")),
        "{text}"
    );
    assert!(text.contains("3 error(s)"), "{text}");

    // Dispatch refuses the same setting.
    let out = clinic
        .recall()
        .arg("dispatch")
        .env("SMTP_PASSWORD", "mail-password-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        refused.contains("would send the password unencrypted"),
        "{refused}"
    );

    let (code, zh) = clinic.check("zh");
    assert_eq!(code, 1, "{zh}");
    assert!(
        zh.contains("[senders.mail] security = \"plain\" 会以明文发送密码"),
        "{zh}"
    );
    assert!(
        zh.contains("请写 security = \"starttls\"（端口 587）"),
        "{zh}"
    );
    assert!(zh.contains("sender_userid 为空"), "{zh}");
}
