//! Rule loading and evaluation, as specs.

use std::path::Path;

use super::eval::Evaluator;
use super::*;
use crate::base::clock::parse_time;
use crate::facts::Facts;
use crate::store::record::CustomerRecord;

const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn load_str(text: &str) -> Result<RuleSet, Report> {
    let mut report = Report::default();
    let env = cel_env();
    let rules = load_text(Path::new("rules/test.toml"), text, &env, None, &mut report);
    check_unique_ids(&rules, &mut report);
    if report.has_errors() {
        Err(report)
    } else {
        Ok(RuleSet::new(rules))
    }
}

fn facts(pool: Pool, f: impl FnOnce(&mut CustomerRecord)) -> Facts {
    let mut record = CustomerRecord::default();
    record.customer.pool = pool;
    record.customer.tags = "[]".into();
    f(&mut record);
    Facts::derive(&record, now(), TZ)
}

fn now() -> i64 {
    parse_time("2026-05-01 09:00", TZ, chrono::DateTime::UNIX_EPOCH)
        .unwrap()
        .timestamp()
}

fn days_ago(days: i64) -> Option<i64> {
    Some(now() - days * 86_400)
}

const TWO_RULES: &str = r#"
[[rule]]
id = "warn_inactive"
from = "customer"
to = "warning"
priority = 10
when = "days_since_last_visit >= 90"

[[rule]]
id = "warn_unsmooth"
from = ["customer"]
to = "warning"
priority = 20
when = "not_smooth_followups_30d >= 2"
[[rule.action]]
channel = "wechat"
template = "care"
delay = "2h"
"#;

#[test]
fn loads_rules_with_actions_and_order() {
    let set = load_str(TWO_RULES).unwrap();
    assert_eq!(set.rules.len(), 2);
    let order: Vec<&str> = set
        .for_pool(Pool::Customer)
        .iter()
        .map(|i| set.rules[*i].id.as_str())
        .collect();
    assert_eq!(order, ["warn_unsmooth", "warn_inactive"]);
    assert!(set.for_pool(Pool::New).is_empty());
    let rule = set.get("warn_unsmooth").unwrap();
    assert_eq!(rule.actions[0].delay, std::time::Duration::from_secs(7200));
    assert_eq!(rule.origin.line, 9);
}

#[test]
fn highest_priority_true_rule_fires() {
    let set = load_str(TWO_RULES).unwrap();
    let eval = Evaluator::new(&set);
    let both = facts(Pool::Customer, |r| {
        r.visits.count = 1;
        r.visits.last_at = days_ago(100);
        r.followups.not_smooth_30d = 3;
    });
    let fired = eval.evaluate(&both, &[], &[], now(), TZ).fired.unwrap();
    assert_eq!(set.rules[fired].id, "warn_unsmooth");

    let inactive_only = facts(Pool::Customer, |r| {
        r.visits.count = 1;
        r.visits.last_at = days_ago(90);
    });
    let fired = eval
        .evaluate(&inactive_only, &[], &[], now(), TZ)
        .fired
        .unwrap();
    assert_eq!(set.rules[fired].id, "warn_inactive");
}

#[test]
fn rules_only_watch_their_from_pools() {
    let set = load_str(TWO_RULES).unwrap();
    let eval = Evaluator::new(&set);
    let warning = facts(Pool::Warning, |r| r.followups.not_smooth_30d = 5);
    assert_eq!(eval.evaluate(&warning, &[], &[], now(), TZ).fired, None);
}

#[test]
fn comparing_a_missing_fact_is_false_not_an_error() {
    let set = load_str(TWO_RULES).unwrap();
    let eval = Evaluator::new(&set);
    let never_visited = facts(Pool::Customer, |_| {});
    let result = eval.evaluate(&never_visited, &[], &[], now(), TZ);
    assert_eq!(result, super::eval::Evaluation::default());
}

const SEND_ONLY: &str = r#"
[[rule]]
id = "nudge"
from = "maintenance"
when = "true"
[[rule.action]]
channel = "sms"
template = "nudge"

[[rule]]
id = "monthly"
from = "churned"
when = "true"
cooldown_days = 30
[[rule.action]]
channel = "wechat"
template = "monthly"
"#;

#[test]
fn send_only_rules_fire_once_per_pool_stay() {
    let set = load_str(SEND_ONLY).unwrap();
    let eval = Evaluator::new(&set);
    let f = facts(Pool::Maintenance, |_| {});
    assert!(eval.evaluate(&f, &[], &[], now(), TZ).fired.is_some());
    let fired = vec![("nudge".to_string(), now() - 400 * 86_400)];
    assert_eq!(eval.evaluate(&f, &fired, &fired, now(), TZ).fired, None);
}

#[test]
fn cooldown_lets_a_send_only_rule_fire_again() {
    let set = load_str(SEND_ONLY).unwrap();
    let eval = Evaluator::new(&set);
    let f = facts(Pool::Churned, |_| {});
    let recent = vec![("monthly".to_string(), now() - 29 * 86_400)];
    assert_eq!(eval.evaluate(&f, &recent, &recent, now(), TZ).fired, None);
    let old = vec![("monthly".to_string(), now() - 30 * 86_400)];
    assert!(eval.evaluate(&f, &old, &old, now(), TZ).fired.is_some());
}

const FLAPPING: &str = r#"
[[rule]]
id = "away"
from = "customer"
to = "warning"
when = "true"
cooldown = "30d"
[[rule.action]]
channel = "sms"
template = "offer"

[[rule]]
id = "checkin"
from = "warning"
when = "true"
cooldown = "4w"
[[rule.action]]
channel = "wechat"
template = "checkin"
"#;

#[test]
fn a_cooldown_counts_from_the_last_message_in_any_pool_stay() {
    let set = load_str(FLAPPING).unwrap();
    let eval = Evaluator::new(&set);
    let away = set.get("away").unwrap();
    assert_eq!(away.cooldown_days, Some(30));
    assert_eq!(set.get("checkin").unwrap().cooldown_days, Some(28));
    // A moving rule always fires; its actions wait out the cooldown.
    let f = facts(Pool::Customer, |_| {});
    let recent = vec![("away".to_string(), now() - 29 * 86_400)];
    assert!(eval.evaluate(&f, &[], &recent, now(), TZ).fired.is_some());
    assert!(eval::cooling_down(away, &recent, now(), TZ));
    let old = vec![("away".to_string(), now() - 30 * 86_400)];
    assert!(!eval::cooling_down(away, &old, now(), TZ));
    assert!(!eval::cooling_down(away, &[], now(), TZ));
    // A rule that only sends, new to this stay, waits for a message it
    // sent in an earlier stay.
    let w = facts(Pool::Warning, |_| {});
    let before = vec![("checkin".to_string(), now() - 10 * 86_400)];
    assert_eq!(eval.evaluate(&w, &[], &before, now(), TZ).fired, None);
    let long_ago = vec![("checkin".to_string(), now() - 28 * 86_400)];
    assert!(eval.evaluate(&w, &[], &long_ago, now(), TZ).fired.is_some());
}

#[test]
fn check_rejects_a_cooldown_that_is_not_whole_days_or_given_twice() {
    let rule = |cooldown: &str| {
        format!(
            "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"true\"\n{cooldown}\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n"
        )
    };
    let lines = errors(&rule("cooldown = \"36h\""));
    assert!(
        lines[0]
            .contains("rules/test.toml:6:12: error: cooldown `36h` is not a whole number of days"),
        "{lines:#?}"
    );
    let lines = errors(&rule("cooldown = \"a month\""));
    assert!(lines[0].contains("bad cooldown `a month`"), "{lines:#?}");
    let lines = errors(&rule("cooldown = \"30d\"\ncooldown_days = 30"));
    assert!(
        lines[0].contains("`cooldown_days` and `cooldown` both given"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("`cooldown = \"30d\"`")),
        "{lines:#?}"
    );
}

#[test]
fn an_actions_stale_defaults_to_cancel_for_marketing_and_send_for_calls() {
    let set = load_str(
        r#"
[[rule]]
id = "a"
from = "warning"
when = "true"
[[rule.action]]
channel = "sms"
template = "x"
[[rule.action]]
channel = "phone"
template = "y"
[[rule.action]]
channel = "wechat"
template = "z"
stale = "send"
"#,
    )
    .unwrap();
    let stale: Vec<Stale> = set.rules[0].actions.iter().map(|a| a.stale).collect();
    assert_eq!(stale, [Stale::Cancel, Stale::Send, Stale::Send]);
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"warning\"\nwhen = \"true\"\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\nstale = \"cancle\"\n",
    );
    assert!(lines[0].contains("unknown stale `cancle`"), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("cancel")), "{lines:#?}");
}

#[test]
fn tags_and_strings_work_in_conditions() {
    let set = load_str(
        r#"
[[rule]]
id = "vip"
from = "customer"
to = "maintenance"
when = '"vip" in tags && city == "上海" && total_spend >= 10000'
"#,
    )
    .unwrap();
    let eval = Evaluator::new(&set);
    let vip = facts(Pool::Customer, |r| {
        r.customer.tags = r#"["vip"]"#.into();
        r.customer.city = Some("上海".into());
        r.orders.total_cents = 1_000_000;
    });
    assert!(eval.evaluate(&vip, &[], &[], now(), TZ).fired.is_some());
    let other = facts(Pool::Customer, |r| r.customer.city = Some("上海".into()));
    assert!(eval.evaluate(&other, &[], &[], now(), TZ).fired.is_none());
}

#[test]
fn type_errors_at_run_time_are_reported_not_fired() {
    let set = load_str(
        r#"
[[rule]]
id = "odd"
from = "customer"
to = "warning"
when = 'int(city) > 3'
"#,
    )
    .unwrap();
    let eval = Evaluator::new(&set);
    let f = facts(Pool::Customer, |r| r.customer.city = Some("上海".into()));
    let result = eval.evaluate(&f, &[], &[], now(), TZ);
    assert_eq!(result.fired, None);
    assert_eq!(result.errors.len(), 1);
}

fn errors(text: &str) -> Vec<String> {
    load_str(text).unwrap_err().to_lines()
}

#[test]
fn check_rejects_unknown_fact_with_position_and_suggestion() {
    let lines = errors(
        r#"[[rule]]
id = "a"
from = "customer"
to = "warning"
when = "visit_count > 1 && days_since_last_vist > 90"
"#,
    );
    assert_eq!(
        lines,
        [
            "rules/test.toml:5:28: error: unknown fact `days_since_last_vist` (did you mean `days_since_last_visit`?)"
        ]
    );
}

#[test]
fn check_rejects_unknown_pool_channel_and_bad_delay_all_at_once() {
    let lines = errors(
        r#"[[rule]]
id = "a"
from = ["custommer"]
to = "warnning"
when = "true"
[[rule.action]]
channel = "sns"
template = "x"
[[rule.action]]
channel = "sms"
template = "x"
delay = "tomorrow"
"#,
    );
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "rules/test.toml:3:9: error: unknown pool `custommer` (did you mean `customer`?)"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(
            "rules/test.toml:4:6: error: unknown pool `warnning` (did you mean `warning`?)"
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(":7:11: error: unknown channel `sns` (did you mean `sms`?)"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains(":12:9: error: bad delay `tomorrow`"),
        "{}",
        lines[3]
    );
}

#[test]
fn check_rejects_syntax_errors_in_conditions() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"visit_count >\"\n",
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("rules/test.toml:5:"), "{}", lines[0]);
    assert!(
        lines[0].contains("condition does not parse"),
        "{}",
        lines[0]
    );
}

#[test]
fn check_explains_pool_names_used_as_facts() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"pool == warning\"\n",
    );
    assert!(lines[0].contains("unknown fact `warning`"), "{lines:#?}");
    assert!(lines[0].contains("pool == \"warning\""), "{lines:#?}");
}

#[test]
fn check_rejects_rules_that_do_nothing_or_go_nowhere() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nwhen = \"true\"\n\n[[rule]]\nid = \"b\"\nfrom = \"new\"\nto = \"new\"\nwhen = \"true\"\n",
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("neither moves customers"), "{}", lines[0]);
    assert!(
        lines[1].contains(":9:6: error: `to = \"new\"` is also in `from`"),
        "{}",
        lines[1]
    );
}

#[test]
fn check_rejects_duplicate_ids() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"true\"\n[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"warning\"\nwhen = \"false\"\n",
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("rule id `a` (line 6) is already used at rules/test.toml:1"),
        "{}",
        lines[0]
    );
}

#[test]
fn check_reports_unknown_keys_with_a_suggestion() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"true\"\npriorty = 3\n",
    );
    assert!(
        lines[0].contains(":6:1: error: unknown field `priorty`"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("did you mean `priority`?"),
        "{}",
        lines[0]
    );
}

#[test]
fn comprehension_variables_are_not_facts() {
    load_str("[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = 'tags.exists(t, t.startsWith(\"vip\"))'\n").unwrap();
}

#[test]
fn disabled_rules_are_checked_but_never_tried() {
    let set = load_str("[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"true\"\nenabled = false\n").unwrap();
    assert!(set.for_pool(Pool::New).is_empty());
}

#[test]
fn holdout_draws_are_stable_and_about_the_asked_share() {
    assert_eq!(
        holdout_draw("C000123", "warn"),
        holdout_draw("C000123", "warn")
    );
    assert_ne!(
        holdout_draw("C000123", "warn"),
        holdout_draw("C000123", "other")
    );
    let held = (0..10_000)
        .filter(|i| holdout_draw(&format!("C{i:06}"), "warn") < 0.1)
        .count();
    assert!(
        (900..1100).contains(&held),
        "{held} of 10000 held out at 0.1"
    );
}

#[test]
fn holdout_and_attribution_are_checked() {
    let set = load_str(
        r#"
[[rule]]
id = "a"
from = "churned"
to = "maintenance"
when = "true"
holdout = 0.2
attribution_days = 14
[[rule.action]]
channel = "sms"
template = "x"
"#,
    )
    .unwrap();
    let rule = set.get("a").unwrap();
    assert_eq!((rule.holdout, rule.attribution_days), (0.2, 14));
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"true\"\nholdout = 0.9\nattribution_days = 0\n",
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(":6:11: error: holdout 0.9 is out of range")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("`attribution_days` must be at least 1")),
        "{lines:#?}"
    );
}

#[test]
fn check_rejects_text_compared_with_a_number_before_anything_runs() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"customer\"\nwhen = 'city > 3 && visit_count >= \"2\"'\n",
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("rules/test.toml:5:14: error: text is compared with a number"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("a number is compared with text"),
        "{}",
        lines[1]
    );
}

#[test]
fn diagnostics_speak_chinese() {
    let report =
        load_str("[[rule]]\nid = \"a\"\nfrom = \"custmer\"\nto = \"warning\"\nwhen = \"true\"\n")
            .unwrap_err();
    let lines = report.to_lines_in(crate::base::diag::Lang::Zh);
    assert_eq!(
        lines,
        ["rules/test.toml:3:8: 错误: 未知的池 `custmer` (您是不是想写 `customer`？)"]
    );
    let rendered = report.render_in(crate::base::diag::Lang::Zh, false);
    assert!(
        rendered.contains("错误: 未知的池") && rendered.contains("= 提示: 您是不是想写"),
        "{rendered}"
    );
    assert!(
        rendered.contains("3 | from = \"custmer\"\n  |        ^^^^^^^^^"),
        "{rendered}"
    );
}

#[test]
fn misspelled_values_of_fixed_facts_are_errors_with_a_suggestion() {
    let rule = |when: &str| {
        format!("[[rule]]\nid = \"r\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"{when}\"\n")
    };
    for (when, suggestion) in [
        ("churn_band == 'hihg'", "did you mean `high`?"),
        (
            "last_followup_result == 'notsmooth'",
            "did you mean `not_smooth`?",
        ),
        ("pool != 'warnig'", "did you mean `warning`?"),
        ("'femal' == gender", "did you mean `female`?"),
        (
            "visit_count > 1 && pool in ['new', 'custmer']",
            "did you mean `customer`?",
        ),
    ] {
        let report = load_str(&rule(when)).expect_err(when);
        let lines = report.to_lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("can never hold"), "{lines:#?}");
        assert!(lines[0].contains(suggestion), "{when}: {lines:#?}");
    }
    let report = load_str(&rule("churn_band == 'hihg'")).unwrap_err();
    // The caret is under the literal: column of `'hihg'` in the file.
    assert!(
        report.to_lines()[0].starts_with("rules/test.toml:5:23:"),
        "{report}"
    );
    for when in [
        "churn_band == 'high'",
        "pool in ['new', 'customer'] && gender != 'male'",
        "last_followup_result == null",
        "city == 'hihg'",
        "tags.exists(pool, pool == 'vip')",
    ] {
        assert!(load_str(&rule(when)).is_ok(), "{when}");
    }
}

#[test]
fn parser_errors_come_with_plain_hints() {
    let rule = |when: &str| {
        format!("[[rule]]\nid = \"r\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"{when}\"\n")
    };
    for (when, hint) in [
        ("visit_count > 1 and days_in_pool > 3", "use && not and"),
        ("visit_count > 1 or days_in_pool > 3", "use || not or"),
        ("pool = 'new'", "to compare, write == not ="),
    ] {
        let report = load_str(&rule(when)).expect_err(when);
        let text = report.to_lines().join("\n");
        assert!(text.contains(hint), "{when}: {text}");
    }
    let report = load_str(&rule("city == 'a and b' &&")).expect_err("trailing &&");
    assert!(!report.to_lines().join("\n").contains("use && not and"));
}

#[test]
fn file_level_warnings_speak_chinese() {
    let mut report = Report::default();
    let text = "# nothing here yet\n";
    load_text(
        Path::new("rules/empty.toml"),
        text,
        &cel_env(),
        None,
        &mut report,
    );
    let zh = report.render_in(crate::base::diag::Lang::Zh, false);
    assert!(zh.contains("这个文件里没有任何 [[rule]] 表"), "{zh}");
    assert!(zh.contains("每条规则以一行 [[rule]] 开始"), "{zh}");
}

#[test]
fn double_quotes_inside_when_get_a_plain_hint() {
    let report = load_str(
        "[[rule]]\nid = \"r\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"pool == \"new\"\"\n",
    )
    .unwrap_err();
    let text = report.to_lines().join("\n");
    assert!(
        text.contains("inside when = \"...\" write text in single quotes: pool == 'new'"),
        "{text}"
    );
}

#[test]
fn parser_errors_are_one_plain_message_without_the_grammar() {
    let rule = |when: &str| {
        format!("[[rule]]\nid = \"r\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"{when}\"\n")
    };
    let report = load_str(&rule("visit_count > 1 and days_in_pool > 3")).unwrap_err();
    let lines = report.to_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("condition does not parse: `and` is not expected here"),
        "{lines:#?}"
    );
    assert!(!lines[0].contains("expecting {"), "{lines:#?}");
    let report = load_str(&rule("pool = 'new'")).unwrap_err();
    assert_eq!(report.to_lines().len(), 1, "{report}");
    let zh = report.render_in(crate::base::diag::Lang::Zh, false);
    assert!(zh.contains("条件写法有误：这里不应出现"), "{zh}");
    assert!(zh.contains("判断相等请写 ==，不要写 ="), "{zh}");
}

#[test]
fn words_an_import_accepts_compile_to_the_ids() {
    let set = load_str(
        r#"[[rule]]
id = "women"
from = "customer"
to = "warning"
when = 'gender in ["女"] && last_followup_result != "顺畅" && pool == "顾客池"'
"#,
    )
    .unwrap();
    let evaluator = Evaluator::new(&set);
    let woman = facts(Pool::Customer, |r| {
        r.customer.gender = Some("female".into());
        r.followups.last_result = Some(crate::base::model::FollowupResult::NotSmooth);
    });
    let man = facts(Pool::Customer, |r| r.customer.gender = Some("male".into()));
    assert_eq!(
        evaluator.evaluate(&woman, &[], &[], now(), TZ).fired,
        Some(0)
    );
    assert_eq!(evaluator.evaluate(&man, &[], &[], now(), TZ).fired, None);
    assert!(
        set.rules[0].condition.source.contains("\"女\""),
        "the reason quotes the rule as written"
    );
}

#[test]
fn carets_count_escapes_and_multibyte_text_and_cover_the_whole_name() {
    let lines = errors(
        "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"city == \\\"上海\\\" && visit_cont > 1\"\n",
    );
    assert_eq!(
        lines,
        ["rules/test.toml:5:27: error: unknown fact `visit_cont` (did you mean `visit_count`?)"]
    );
    let report = load_str(
        "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = '''\ncity == \"上海\" &&\n  visit_count $ 1'''\n",
    )
    .unwrap_err();
    assert_eq!(
        report.to_lines()[0],
        "rules/test.toml:7:15: error: condition does not parse: `$` is not expected here (conditions are CEL: `visit_count >= 2 && days_since_last_visit > 60`; text in quotes: `city == \"上海\"`)"
    );
    let rendered = load_str(
        "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"visit_cont > 1\"\n",
    )
    .unwrap_err()
    .render(false);
    assert!(
        rendered.contains("\n  |         ^^^^^^^^^^\n"),
        "{rendered}"
    );
}

#[test]
fn full_width_punctuation_is_named_with_its_half_width_twin() {
    let report = load_str(
        "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = 'visit_count ＞＝ 3 ， \"（不算）\"'\n",
    )
    .unwrap_err();
    let lines = report.to_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("rules/test.toml:5:21: error: full-width `＞` from a Chinese keyboard: conditions need the half-width `>`"),
        "{lines:?}"
    );
    assert!(
        lines[0].contains("`＞` → `>`, `＝` → `=`, `，` → `,`") && !lines[0].contains('（'),
        "quoted text is left alone: {lines:?}"
    );
    let report =
        load_str("[[rule]]\nid ＝ \"a\"\nfrom = \"customer\"\nwhen = \"true\"\n").unwrap_err();
    assert!(
        report.to_lines()[0].contains("rule files need half-width: `＝` → `=`"),
        "{report}"
    );
}

#[test]
fn assign_takes_advisor_or_round_robin_on_phone_actions_only() {
    let rule = |channel: &str, assign: &str| {
        format!(
            "[[rule]]\nid = \"a\"\nfrom = \"customer\"\nwhen = \"true\"\n[[rule.action]]\nchannel = \"{channel}\"\ntemplate = \"t\"\nassign = \"{assign}\"\n"
        )
    };
    let set = load_str(&rule("phone", "advisor")).unwrap();
    assert_eq!(set.rules[0].actions[0].assign, Assign::Advisor);
    let lines = errors(&rule("phone", "adviser"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("rules/test.toml:8:10: error: unknown assign `adviser`")
            && lines[0].contains("did you mean `advisor`?"),
        "{lines:?}"
    );
    let lines = errors(&rule("sms", "advisor"));
    assert!(
        lines[0].contains("assign only applies to phone actions; this action sends on sms"),
        "{lines:?}"
    );
}
