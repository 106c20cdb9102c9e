//! Flapping and stale messages (issue 13): a customer moved back and forth
//! between `customer` and `warning` is messaged once per cooldown, `check`
//! warns about the pair of rules that moves them, and a message whose
//! customer moved on or came back before it was due is `stale`, not sent.
//! Through the real binary: imports, ticks and dispatch with `--at`.

mod common;

use chrono::{Duration, NaiveDate};
use common::{Clinic, stdout};

/// Day `n` of these tests (day 1 is 2099-03-01) at `time`, clinic time.
fn day(n: i64, time: &str) -> String {
    let date = NaiveDate::from_ymd_opt(2099, 3, 1).unwrap() + Duration::days(n - 1);
    format!("{date} {time}")
}

/// Rules that flap: a buyer becomes a customer; a customer who has not come
/// for a week moves to `warning` with an SMS (`away`); a warning customer
/// who came back moves to `customer` with a WeChat (`back`). `cooldown` is
/// written into both moving rules; `away_actions` replaces `away`'s action.
fn rules(cooldown: &str, away_actions: &str) -> String {
    format!(
        r#"[[rule]]
id = "buyer"
from = "new"
to = "customer"
when = "visit_count >= 1"

[[rule]]
id = "away"
from = "customer"
to = "warning"
when = "days_since_last_visit >= 7"
{cooldown}
{away_actions}

[[rule]]
id = "back"
from = "warning"
to = "customer"
when = "days_since_last_visit < 7"
{cooldown}
[[rule.action]]
channel = "wechat"
template = "back_to_customer"
"#
    )
}

const AWAY_SMS: &str = r#"[[rule.action]]
channel = "sms"
template = "warning_offer"
"#;

/// A clinic with only `rules` and the customers C1 and C2, who first came
/// on day 1.
fn clinic(rules: &str) -> Clinic {
    let clinic = Clinic::new();
    for entry in std::fs::read_dir(clinic.path().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(clinic.path().join("rules/10-flap.toml"), rules).unwrap();
    let customers = clinic.path().join("customers.csv");
    std::fs::write(
        &customers,
        format!(
            "客户编号,姓名,手机,openid,首次到院\n\
             C1,王丽,13800138001,o-c1,{first}\n\
             C2,李娜,13800138002,o-c2,{first}\n",
            first = day(1, "10:00")
        ),
    )
    .unwrap();
    clinic
        .recall()
        .args(["import", "customers"])
        .arg(&customers)
        .assert()
        .success();
    visits(&clinic, &[("C1", 1), ("C2", 1)]);
    clinic
}

/// Imports a visit at 10:00 of each (customer, day).
fn visits(clinic: &Clinic, visits: &[(&str, i64)]) {
    let mut csv = String::from("到院编号,客户编号,到院时间\n");
    for (customer, n) in visits {
        csv += &format!("V-{customer}-{n},{customer},{}\n", day(*n, "10:00"));
    }
    let file = clinic.path().join("visits.csv");
    std::fs::write(&file, csv).unwrap();
    clinic
        .recall()
        .args(["import", "visits"])
        .arg(&file)
        .assert()
        .success();
}

fn tick(clinic: &Clinic, at: &str) {
    clinic
        .recall()
        .args(["tick", "--at", at])
        .assert()
        .success();
}

fn dispatch(clinic: &Clinic, at: &str) {
    clinic
        .recall()
        .args(["dispatch", "--at", at])
        .assert()
        .success();
}

/// C1 comes every 8 days (days 1, 9, 17, 25, 33) and the clinic ticks every
/// morning from day 2 to day 41: a week after each visit `away` moves C1 to
/// `warning`, the day after the next visit `back` moves them back. Returns
/// C1's messages as (rule, day of the tick that queued them), and the moves.
fn flap(clinic: &Clinic) -> (Vec<(String, i64)>, i64) {
    for n in 2..=41 {
        if n % 8 == 1 {
            visits(clinic, &[("C1", n)]);
        }
        tick(clinic, &day(n, "09:00"));
    }
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let first = common::at(&day(1, "09:00")).timestamp();
    let messages = conn
        .prepare(
            "SELECT o.rule_id, o.created_at FROM outreach o JOIN customers c ON c.id = o.customer_id
             WHERE c.external_id = 'C1' ORDER BY o.created_at, o.rule_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, 1 + (r.get::<_, i64>(1)? - first) / 86_400))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let moves = clinic.count(
        "SELECT count(*) FROM transitions t JOIN customers c ON c.id = t.customer_id
         WHERE c.external_id = 'C1' AND t.rule_id IN ('away', 'back')",
    );
    (messages, moves)
}

#[test]
fn a_flapping_customer_gets_one_message_per_cooldown_from_each_rule() {
    let (without, moves_without) = flap(&clinic(&rules("", AWAY_SMS)));
    let (with, moves_with) = flap(&clinic(&rules("cooldown = \"30d\"", AWAY_SMS)));

    // The customer flaps just the same: the cooldown holds back messages,
    // never moves.
    // Days 8, 16, 24, 32 and 40 to `warning`, 10, 18, 26 and 34 back.
    assert_eq!(moves_without, 9);
    assert_eq!(moves_with, moves_without);
    // Without a cooldown, a message at every move.
    assert_eq!(without.len() as i64, moves_without, "{without:?}");
    // With one, each rule's messages are at least 30 days apart: `away` on
    // day 8 and again on day 40, `back` on day 10 only.
    assert_eq!(
        with,
        vec![
            ("away".to_string(), 8),
            ("back".to_string(), 10),
            ("away".to_string(), 40)
        ],
        "without a cooldown: {without:?}"
    );
}

#[test]
fn check_warns_about_rules_that_move_customers_back_and_forth_and_suggests_a_cooldown() {
    let flapping = clinic(&rules("", AWAY_SMS));
    let output = flapping
        .recall()
        .args(["check", "--lang", "en"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("back and forth"))
        .unwrap_or_else(|| panic!("no back-and-forth warning: {text}"));
    assert!(
        warning.contains("`away`") && warning.contains("`back`"),
        "{warning}"
    );
    assert!(text.contains("cooldown = \"30d\""), "{text}");

    let zh = flapping
        .recall()
        .args(["check", "--lang", "zh"])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&zh), String::from_utf8_lossy(&zh.stderr));
    assert!(text.contains("来回移动"), "{text}");

    // With a cooldown on both, nothing to warn about.
    let calm = clinic(&rules("cooldown = \"30d\"", AWAY_SMS));
    let output = calm
        .recall()
        .args(["check", "--lang", "en"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("back and forth"), "{text}");
}

/// Each message of a customer as (channel, status, reason).
fn messages_of(clinic: &Clinic, customer: &str) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.prepare(
        "SELECT o.channel, o.status, o.last_error FROM outreach o
         JOIN customers c ON c.id = o.customer_id
         WHERE c.external_id = ?1 ORDER BY o.id",
    )
    .unwrap()
    .query_map([customer], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_message_whose_customer_came_back_before_it_was_due_is_stale_and_a_call_task_is_not() {
    // `away` queues an SMS due two days later, and a call task.
    let actions = r#"[[rule.action]]
channel = "sms"
template = "warning_offer"
delay = "2d"

[[rule.action]]
channel = "phone"
template = "warning_call"
delay = "2d"
"#;
    let clinic = clinic(&rules("", actions));
    for n in 2..=8 {
        tick(&clinic, &day(n, "09:00"));
    }
    // Both moved to `warning` on day 8, messages due on day 10.
    assert_eq!(
        clinic.count("SELECT count(*) FROM customer_pools WHERE pool = 'warning'"),
        2
    );
    // C1 comes back on day 9 and a tick moves them to `customer`; C2 comes
    // back on day 10, after that tick, before the dispatch.
    visits(&clinic, &[("C1", 9)]);
    tick(&clinic, &day(10, "08:00"));
    clinic
        .recall()
        .args(["import", "visits"])
        .arg({
            let file = clinic.path().join("c2.csv");
            std::fs::write(
                &file,
                format!(
                    "到院编号,客户编号,到院时间\nV-C2-10,C2,{}\n",
                    day(10, "08:30")
                ),
            )
            .unwrap();
            file
        })
        .assert()
        .success();
    dispatch(&clinic, &day(10, "10:30"));

    let c1 = messages_of(&clinic, "C1");
    let sms: Vec<_> = c1.iter().filter(|m| m.0 == "sms").collect();
    assert_eq!(sms.len(), 1, "{c1:?}");
    assert_eq!(sms[0].1, "stale", "{c1:?}");
    assert_eq!(
        sms[0].2.as_deref(),
        Some("stale: queued in the warning pool, the customer is now in customer; not sent")
    );
    let c2 = messages_of(&clinic, "C2");
    let sms: Vec<_> = c2.iter().filter(|m| m.0 == "sms").collect();
    assert_eq!(sms[0].1, "stale", "{c2:?}");
    assert_eq!(
        sms[0].2.as_deref(),
        Some("stale: the customer visited after it was queued; not sent")
    );
    // The call tasks (service) go ahead: staff see the customer's news.
    for messages in [&c1, &c2] {
        let phone: Vec<_> = messages.iter().filter(|m| m.0 == "phone").collect();
        assert_eq!(phone.len(), 1, "{messages:?}");
        assert!(
            matches!(phone[0].1.as_str(), "sent" | "awaiting"),
            "{messages:?}"
        );
    }
    // The outreach log says so, in English and in Chinese.
    let en = clinic
        .recall()
        .args([
            "log", "--status", "stale", "--format", "csv", "--lang", "en",
        ])
        .output()
        .unwrap();
    let text = stdout(&en);
    assert!(en.status.success(), "{text}");
    assert!(text.contains("C1") && text.contains("C2"), "{text}");
    assert!(text.contains("the customer is now in customer"), "{text}");
    let zh = clinic
        .recall()
        .args([
            "log", "--status", "stale", "--format", "csv", "--lang", "zh",
        ])
        .output()
        .unwrap();
    let text = stdout(&zh);
    assert!(zh.status.success(), "{text}");
    assert!(text.contains("已失效"), "{text}");
    assert!(
        text.contains("排队时顾客在预警池，现在已在顾客池"),
        "{text}"
    );
    assert!(text.contains("排队之后顾客已到店"), "{text}");
}

#[test]
fn stale_send_keeps_a_message_going_whatever_the_moves() {
    let actions = r#"[[rule.action]]
channel = "sms"
template = "warning_offer"
delay = "2d"
stale = "send"
"#;
    let clinic = clinic(&rules("", actions));
    for n in 2..=8 {
        tick(&clinic, &day(n, "09:00"));
    }
    visits(&clinic, &[("C1", 9)]);
    tick(&clinic, &day(10, "08:00"));
    dispatch(&clinic, &day(10, "10:30"));
    let c1 = messages_of(&clinic, "C1");
    let sms: Vec<_> = c1.iter().filter(|m| m.0 == "sms").collect();
    assert_eq!(sms[0].1, "sent", "{c1:?}");
}
