//! Taking messages out of the queue (issue 12): `recall cancel` by hand,
//! and `expires_after` for a message held back too long. Through the real
//! binary: a clinic with one rule, ticks, dispatch, cancel, log.

mod common;

use common::{Clinic, stdout};

/// Every day of these tests is in March 2099.
fn day(n: u32, time: &str) -> String {
    format!("2099-03-{n:02} {time}")
}

/// A clinic whose only rule sends every new customer who has visited an
/// SMS and a WeChat message each day (`extra` goes into the actions), and
/// whose customers C1 and C2 first came on March 1st.
fn clinic(actions: &str) -> Clinic {
    let clinic = Clinic::new();
    for entry in std::fs::read_dir(clinic.path().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(
        clinic.path().join("rules/10-daily.toml"),
        format!(
            r#"[[rule]]
id = "daily"
description = "每天一条"
from = "new"
when = "visit_count >= 1"
cooldown_days = 1
{actions}"#
        ),
    )
    .unwrap();
    let customers = clinic.path().join("customers.csv");
    std::fs::write(
        &customers,
        "客户编号,姓名,手机,openid,首次到院\n\
         C1,王丽,13800138001,o-c1,2099-03-01 10:00\n\
         C2,李娜,13800138002,o-c2,2099-03-01 10:00\n",
    )
    .unwrap();
    let visits = clinic.path().join("visits.csv");
    std::fs::write(
        &visits,
        "到院编号,客户编号,到院时间\nV1,C1,2099-03-01 10:00\nV2,C2,2099-03-01 10:00\n",
    )
    .unwrap();
    for (kind, file) in [("customers", &customers), ("visits", &visits)] {
        clinic
            .recall()
            .args(["import", kind])
            .arg(file)
            .assert()
            .success();
    }
    clinic
}

const SMS_AND_WECHAT: &str = r#"
[[rule.action]]
channel = "sms"
template = "warning_offer"

[[rule.action]]
channel = "wechat"
template = "warning_care"
"#;

fn status_of(clinic: &Clinic, customer: &str, channel: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.prepare(
        "SELECT o.status FROM outreach o JOIN customers c ON c.id = o.customer_id
         WHERE c.external_id = ?1 AND o.channel = ?2 ORDER BY o.id",
    )
    .unwrap()
    .query_map([customer, channel], |r| r.get(0))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
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

#[test]
fn cancel_takes_queued_messages_out_with_who_and_why_and_a_dry_run_changes_nothing() {
    let clinic = clinic(SMS_AND_WECHAT);
    tick(&clinic, &day(2, "09:00"));
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'queued'"),
        4
    );

    let dry = clinic
        .recall()
        .args(["cancel", "--channel", "wechat", "--dry-run", "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&dry);
    assert!(dry.status.success(), "{text}");
    assert!(text.contains("Would cancel 2 queued messages"), "{text}");
    assert!(text.contains("C1") && text.contains("C2"), "{text}");
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'queued'"),
        4,
        "a dry run changes nothing"
    );

    let out = clinic
        .recall()
        .env("USER", "xiaolin")
        .args(["cancel", "--channel", "wechat", "--customer", "C1"])
        .args(["--reason", "客户来电要求不再推送", "--lang", "en"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("Cancelled 1 queued messages"),
        "{}",
        stdout(&out)
    );
    assert_eq!(status_of(&clinic, "C1", "wechat"), ["cancelled"]);
    assert_eq!(status_of(&clinic, "C2", "wechat"), ["queued"]);
    assert_eq!(status_of(&clinic, "C1", "sms"), ["queued"]);
    let note: String = rusqlite::Connection::open(clinic.database())
        .unwrap()
        .query_row(
            "SELECT last_error FROM outreach WHERE status = 'cancelled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        note,
        "cancelled by xiaolin with recall cancel: 客户来电要求不再推送"
    );

    // The dispatcher sends what is left, and never the cancelled one.
    dispatch(&clinic, &day(2, "14:00"));
    assert_eq!(status_of(&clinic, "C1", "wechat"), ["cancelled"]);
    assert_eq!(status_of(&clinic, "C2", "wechat"), ["sent"]);
    assert_eq!(status_of(&clinic, "C1", "sms"), ["sent"]);

    // Without a filter nothing is cancelled: it says what to give.
    let none = clinic
        .recall()
        .args(["cancel", "--lang", "en"])
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--all"));
}

#[test]
fn a_message_a_provider_has_is_never_cancelled() {
    let clinic = clinic(SMS_AND_WECHAT);
    tick(&clinic, &day(2, "09:00"));
    dispatch(&clinic, &day(2, "14:00"));
    tick(&clinic, &day(3, "09:00"));
    // One of day 3's messages is in a dispatcher's hands (claimed, the
    // provider may have it), one awaits a person.
    {
        let conn = rusqlite::Connection::open(clinic.database()).unwrap();
        conn.execute_batch(
            "UPDATE outreach SET status = 'sending', attempts = 1 WHERE id =
                (SELECT max(o.id) FROM outreach o JOIN customers c ON c.id = o.customer_id
                 WHERE c.external_id = 'C1' AND o.channel = 'sms');
             UPDATE outreach SET status = 'awaiting', sent_at = updated_at WHERE id =
                (SELECT max(o.id) FROM outreach o JOIN customers c ON c.id = o.customer_id
                 WHERE c.external_id = 'C1' AND o.channel = 'wechat');",
        )
        .unwrap();
    }
    let out = clinic
        .recall()
        .args(["cancel", "--rule", "daily", "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("Cancelled 2 queued messages"), "{text}");
    assert!(
        text.contains("2 matching messages a provider already has"),
        "{text}"
    );
    assert_eq!(status_of(&clinic, "C1", "sms"), ["sent", "sending"]);
    assert_eq!(status_of(&clinic, "C1", "wechat"), ["sent", "awaiting"]);
    assert_eq!(status_of(&clinic, "C2", "sms"), ["sent", "cancelled"]);
    assert_eq!(status_of(&clinic, "C2", "wechat"), ["sent", "cancelled"]);
}

#[test]
fn a_message_held_by_a_frequency_cap_expires_instead_of_going_out_late() {
    // SMS only, at most 2 a week (the shipped cap), each expiring 3 days
    // after it was due.
    let clinic = clinic(
        r#"
[[rule.action]]
channel = "sms"
template = "warning_offer"
expires_after = "3d"
"#,
    );
    for n in 2..=3 {
        tick(&clinic, &day(n, "09:00"));
        dispatch(&clinic, &day(n, "14:00"));
    }
    assert_eq!(status_of(&clinic, "C1", "sms"), ["sent", "sent"]);
    // The third in a week is held by the cap: queued, due again next week.
    tick(&clinic, &day(4, "09:00"));
    dispatch(&clinic, &day(4, "14:00"));
    assert_eq!(status_of(&clinic, "C1", "sms"), ["sent", "sent", "queued"]);
    let due_again = clinic.count("SELECT max(due_at) FROM outreach WHERE status = 'queued'");
    let expires = clinic.count("SELECT max(expires_at) FROM outreach WHERE status = 'queued'");
    assert!(due_again > expires, "the cap holds it past its expiry");
    // The cap would let it go on the 9th; it expired on the 7th at 09:00.
    dispatch(&clinic, &day(9, "14:00"));
    assert_eq!(status_of(&clinic, "C1", "sms"), ["sent", "sent", "expired"]);
    assert_eq!(status_of(&clinic, "C2", "sms"), ["sent", "sent", "expired"]);

    // The log shows it, in English and in Chinese.
    let log = |lang: &str| {
        let out = clinic
            .recall()
            .args(["log", "--status", "expired", "--lang", lang])
            .output()
            .unwrap();
        assert!(out.status.success());
        stdout(&out)
    };
    let en = log("en");
    assert!(en.contains("expired"), "{en}");
    let zh = log("zh");
    assert!(zh.contains("已过期"), "{zh}");
}

#[test]
fn cancelled_messages_show_in_the_log_in_both_languages() {
    let clinic = clinic(SMS_AND_WECHAT);
    tick(&clinic, &day(2, "09:00"));
    clinic
        .recall()
        .args(["cancel", "--template", "warning_offer"])
        .assert()
        .success();
    for (lang, word) in [("en", "cancelled"), ("zh", "已取消")] {
        let out = clinic
            .recall()
            .args(["log", "--status", "cancelled", "--lang", lang])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(text.matches(word).count() >= 2, "{text}");
    }
    // JSON keeps the ids, for scripts and filters; a CSV under zh is for
    // people opening it in Excel, in their words.
    let run = |format: &str| {
        let out = clinic
            .recall()
            .args([
                "log",
                "--status",
                "cancelled",
                "--format",
                format,
                "--lang",
                "zh",
            ])
            .output()
            .unwrap();
        stdout(&out)
    };
    let json = run("json");
    assert!(json.contains("\"status\": \"cancelled\""), "{json}");
    let csv = run("csv");
    assert!(csv.contains(",已取消,"), "{csv}");
}

#[test]
fn check_reports_a_bad_expires_after_at_its_line_with_a_hint() {
    let clinic = clinic(
        r#"
[[rule.action]]
channel = "sms"
template = "warning_offer"
expires_after = "two weeks"
"#,
    );
    let out = clinic
        .recall()
        .args(["check", "--lang", "en"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("10-daily.toml:11"), "{text}");
    assert!(text.contains("bad expires_after `two weeks`"), "{text}");
    assert!(text.contains("\"14d\""), "{text}");
}
