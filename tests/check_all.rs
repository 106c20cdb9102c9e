//! `recall check` finds everything in one run, through the real binary:
//! every sender's missing secrets, every SMS template a provider sender has
//! no template code for, and a database folder this user cannot write.

mod common;

use common::Clinic;

/// The SMS templates the shipped rules send.
const SMS_TEMPLATES: [&str; 4] = [
    "new_day14_reminder",
    "warning_offer",
    "maintenance_offer",
    "churned_recall",
];

/// The secrets of the three senders below; none is set in the tests.
const SECRETS: [&str; 4] = [
    "CHECK_ALL_ALIYUN_ID",
    "CHECK_ALL_ALIYUN_SECRET",
    "CHECK_ALL_WECOM_SECRET",
    "CHECK_ALL_ROBOT_KEY",
];

/// A clinic whose SMS go through Aliyun (with a code for each of
/// `mapped`), WeChat through WeCom, and alerts to a WeCom robot.
fn clinic_with_providers(mapped: &[&str]) -> Clinic {
    let clinic = Clinic::new();
    clinic.edit_config(
        "[channels.sms]\nsender = \"log\"",
        "[channels.sms]\nsender = \"aliyun\"",
    );
    clinic.edit_config(
        "[channels.wechat]\nsender = \"log\"",
        "[channels.wechat]\nsender = \"wecom\"",
    );
    clinic.edit_config(
        "batch_size = 200",
        "batch_size = 200\nalert = \"staff_robot\"",
    );
    let mut senders = String::from(
        "\n[senders.aliyun]\nkind = \"aliyun_sms\"\nsign_name = \"测试诊所\"\n\
         access_key_id_env = \"CHECK_ALL_ALIYUN_ID\"\naccess_key_secret_env = \"CHECK_ALL_ALIYUN_SECRET\"\n",
    );
    for (i, template) in mapped.iter().enumerate() {
        senders.push_str(&format!(
            "[senders.aliyun.templates.{template}]\ncode = \"SMS_15495090{i}\"\n"
        ));
    }
    senders.push_str(
        "\n[senders.wecom]\nkind = \"wecom\"\ncorp_id = \"ww0123456789abcdef\"\nsecret_env = \"CHECK_ALL_WECOM_SECRET\"\n\
         \n[senders.staff_robot]\nkind = \"wecom_robot\"\nwebhook_key_env = \"CHECK_ALL_ROBOT_KEY\"\n",
    );
    let config = std::fs::read_to_string(clinic.config()).unwrap();
    std::fs::write(clinic.config(), config + &senders).unwrap();
    clinic
}

/// `recall check --lang LANG` with `set` set and every other secret of
/// these senders unset: exit code and everything it printed.
fn check(clinic: &Clinic, lang: &str, set: &[&str]) -> (i32, String) {
    let mut command = clinic.recall();
    command.args(["check", "--lang", lang]);
    for var in SECRETS {
        command.env_remove(var).env_remove(format!("{var}_FILE"));
    }
    for var in set {
        command.env(var, "s3cret-value");
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The 1-based line of recall.toml that is `line`.
fn config_line(clinic: &Clinic, line: &str) -> usize {
    let text = std::fs::read_to_string(clinic.config()).unwrap();
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?}"))
        + 1
}

#[test]
fn every_missing_secret_of_every_sender_is_named_in_one_run_at_its_sender() {
    let clinic = clinic_with_providers(&SMS_TEMPLATES);
    let (code, text) = check(&clinic, "en", &["CHECK_ALL_ALIYUN_ID"]);
    // Secrets are the environment's: the service's may differ, so warnings.
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok:"), "{text}");
    for (sender, var) in [
        ("aliyun", "CHECK_ALL_ALIYUN_SECRET"),
        ("wecom", "CHECK_ALL_WECOM_SECRET"),
        ("staff_robot", "CHECK_ALL_ROBOT_KEY"),
    ] {
        assert!(
            text.contains(&format!(
                "sender `{sender}`: environment variable {var} is not set"
            )),
            "{var}: {text}"
        );
        let line = config_line(&clinic, &format!("[senders.{sender}]"));
        assert!(
            text.contains(&format!("--> recall.toml:{line}:")),
            "{sender} at line {line}: {text}"
        );
        assert!(
            text.contains(&format!("set {var} in the service's environment")),
            "{text}"
        );
    }
    assert!(!text.contains("CHECK_ALL_ALIYUN_ID"), "it is set: {text}");
    assert!(text.contains("3 warning(s)"), "{text}");

    // Both of one sender's secrets, in Chinese too.
    let (code, zh) = check(&clinic, "zh", &[]);
    assert_eq!(code, 0, "{zh}");
    assert!(
        zh.contains("CHECK_ALL_ALIYUN_ID")
            && zh.contains("CHECK_ALL_ALIYUN_SECRET")
            && zh.contains("CHECK_ALL_WECOM_SECRET")
            && zh.contains("CHECK_ALL_ROBOT_KEY"),
        "{zh}"
    );
    assert!(zh.contains("请在服务的运行环境中设置"), "{zh}");

    // With every secret set, nothing is left to say about them.
    let (code, text) = check(&clinic, "en", &SECRETS);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("environment variable"), "{text}");
}

#[test]
fn an_sms_template_the_provider_sender_has_no_code_for_is_an_error_at_the_rule_with_the_key_to_add()
{
    let clinic = clinic_with_providers(&["new_day14_reminder", "maintenance_offer"]);
    let (code, text) = check(&clinic, "en", &SECRETS);
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains("ok:"), "{text}");
    for (template, file) in [
        ("warning_offer", "rules/03-warning.toml"),
        ("churned_recall", "rules/05-churned.toml"),
    ] {
        assert!(
            text.contains(&format!(
                "sends template `{template}` on sms through sender `aliyun`, which has no provider template for it"
            )),
            "{template}: {text}"
        );
        assert!(
            text.contains(&format!(
                "add [senders.aliyun.templates.{template}] with code = \"SMS_...\" to recall.toml"
            )),
            "{template}: {text}"
        );
        assert!(text.contains(&format!("--> {file}:")), "{file}: {text}");
    }
    assert!(!text.contains("`maintenance_offer`"), "{text}");
    assert!(text.contains("2 error(s)"), "{text}");

    let (_, zh) = check(&clinic, "zh", &SECRETS);
    assert!(
        zh.contains("发送模板 `warning_offer`") && zh.contains("没有为它配置服务商模板"),
        "{zh}"
    );
    assert!(
        zh.contains("添加 [senders.aliyun.templates.warning_offer]"),
        "{zh}"
    );

    // A tick refuses to start on it, as `run` does: no message would go.
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("`warning_offer`"));
}

/// `recall check` run as user `nobody` (65534) by `setpriv`, when this
/// test runs as root and can drop to it: root writes any folder, so only
/// another user shows what the service user would see.
#[cfg(unix)]
fn check_as_nobody(clinic: &Clinic, lang: &str) -> Option<(i32, String)> {
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        return None;
    }
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("recall"))
        .args(["check", "--lang", lang])
        .current_dir(clinic.path())
        .env_remove("RECALL_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Some((out.status.code().unwrap_or(-1), text))
}

#[cfg(unix)]
#[test]
fn a_database_folder_this_user_cannot_write_is_an_error_with_the_chown_that_fixes_it() {
    use std::os::unix::fs::PermissionsExt;
    let clinic = Clinic::new();
    let data = clinic.path().join("data");
    let (code, text) = check(&clinic, "en", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("cannot write"), "{text}");

    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&data, 0o555);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ran = if root {
        // Root writes anyway: nothing to report, and nothing broken.
        let (code, text) = check(&clinic, "en", &[]);
        assert_eq!(code, 0, "{text}");
        assert!(!text.contains("cannot write"), "{text}");
        // Another user may read the clinic's folder, but not write `data`.
        mode(clinic.path(), 0o755);
        mode(&clinic.config(), 0o644);
        check_as_nobody(&clinic, "en").zip(check_as_nobody(&clinic, "zh"))
    } else {
        Some((check(&clinic, "en", &[]), check(&clinic, "zh", &[])))
    };
    mode(&data, 0o755);
    let Some(((code, text), (_, zh))) = ran else {
        return;
    };
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cannot write the folder data: the database keeps its journal"),
        "{text}"
    );
    let line = config_line(&clinic, "database = \"data/recall.db\"");
    assert!(text.contains(&format!("--> recall.toml:{line}:")), "{text}");
    assert!(
        text.contains("sudo chown -R ") && text.contains(": data && sudo chmod -R u+rwX data"),
        "{text}"
    );
    assert!(zh.contains("无法写入文件夹 data"), "{zh}");
}

#[test]
fn a_missing_database_is_a_warning_with_the_command_that_makes_it() {
    let clinic = Clinic::new();
    std::fs::remove_file(clinic.database()).unwrap();
    let (code, text) = check(&clinic, "en", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("data/recall.db does not exist"), "{text}");
    assert!(text.contains("run `recall init`"), "{text}");
}
