//! `recall customer`: finding a customer by clinic id, name or phone, and
//! one customer's story through the real binary. The story's facts at a
//! tick's time are the facts that tick quoted in its moves' reasons.

mod common;

use chrono::DateTime;
use common::{Clinic, stdout};
use serde_json::Value;

const CUSTOMERS: &str = "客户编号,姓名,手机,建档时间\n\
C1,孙磊,138 0013 8000,2026-01-05\n\
C2,孙丽,+86-139-0013-8000,2026-01-06\n\
C3,王孙磊,13700137123,2026-01-07\n\
C4,李雷,,2026-01-08\n";

const VISITS: &str = "到院编号,客户编号,到院时间,科室\nV1,C1,2026-01-05 10:00,皮肤科\n";

const ORDERS: &str = "订单编号,客户编号,下单时间,金额,项目\nO1,C1,2026-01-05 11:00,2980,水光针\n";

const FOLLOWUPS: &str =
    "回访编号,客户编号,回访时间,结果,回访人\nF1,C1,2026-01-06 10:00,不顺畅,小林\n";

/// A clinic with four hand-made customers and some history for C1.
fn clinic() -> Clinic {
    let clinic = Clinic::new();
    for (kind, text) in [
        ("customers", CUSTOMERS),
        ("visits", VISITS),
        ("orders", ORDERS),
        ("followups", FOLLOWUPS),
    ] {
        let file = format!("{kind}.csv");
        std::fs::write(clinic.path().join(&file), text).unwrap();
        clinic
            .recall()
            .args(["import", kind, &file])
            .assert()
            .success();
    }
    clinic
}

/// `recall customer ARGS...` in English; (exit success, stdout, stderr).
fn customer(clinic: &Clinic, args: &[&str]) -> (bool, String, String) {
    let out = clinic
        .recall()
        .args(["--lang", "en", "customer"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(clinic: &Clinic, args: &[&str]) -> Value {
    let (ok, out, err) = customer(clinic, &[args, &["--format", "json"]].concat());
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The ids of the candidates a query lists, or of the one story it tells.
fn found(clinic: &Clinic, query: &[&str]) -> Vec<String> {
    match json(clinic, query) {
        Value::Array(candidates) => candidates
            .iter()
            .map(|c| c["customer"].as_str().unwrap().to_string())
            .collect(),
        story => {
            let id = story["customer"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["field"] == "customer")
                .unwrap()["value"]
                .clone();
            vec![id.as_str().unwrap().to_string()]
        }
    }
}

#[test]
fn customers_are_found_by_id_name_part_phone_in_any_format_and_last_digits_with_a_name() {
    let clinic = clinic();
    assert_eq!(found(&clinic, &["C3"]), ["C3"]);
    assert_eq!(found(&clinic, &["孙磊"]), ["C1", "C3"]);
    assert_eq!(found(&clinic, &["孙"]), ["C1", "C2", "C3"]);
    assert_eq!(found(&clinic, &["13800138000"]), ["C1"]);
    assert_eq!(found(&clinic, &["+86 138-0013-8000"]), ["C1"]);
    assert_eq!(found(&clinic, &["8000"]), ["C1", "C2"]);
    assert_eq!(found(&clinic, &["孙丽", "8000"]), ["C2"]);
    assert_eq!(found(&clinic, &["孙 8000"]), ["C1", "C2"]);
    assert_eq!(found(&clinic, &["磊 8000"]), ["C1"]);
}

#[test]
fn several_matches_list_candidates_with_masked_phones_and_no_match_gives_a_hint() {
    let clinic = clinic();
    let (ok, out, _) = customer(&clinic, &["孙"]);
    assert!(ok);
    for shown in ["C1", "C2", "C3", "孙磊", "孙丽", "138****8000", "new"] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }
    assert!(
        !out.contains("13800138000") && !out.contains("0013"),
        "{out}"
    );
    assert!(out.contains("3 customers match"), "{out}");

    let (ok, out, err) = customer(&clinic, &["赵", "1234"]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no customer matches \"赵 1234\""), "{err}");
    assert!(err.contains("last four digits"), "{err}");
}

#[test]
fn one_customer_tells_the_story_in_english_and_chinese_and_as_csv() {
    let clinic = clinic();
    let (ok, out, err) = customer(&clinic, &["孙磊", "8000", "--at", "2026-02-01"]);
    assert!(ok, "{err}");
    for shown in [
        "孙磊 (C1)",
        "138****8000",
        "Facts a tick at 2026-02-01 00:00 judges",
        "days_since_last_visit",
        "27",
        "last_followup_result",
        "not_smooth",
        "Timeline",
        "visit",
        "水光针",
        "2980.00",
        "follow-up",
        "小林",
        "placed in new",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }

    let out = clinic
        .recall()
        .args(["--lang", "zh", "customer", "C1", "--at", "2026-02-01"])
        .output()
        .unwrap();
    let out = stdout(&out);
    for shown in [
        "孙磊（C1）",
        "时间线",
        "到店",
        "消费",
        "回访",
        "进入新客池",
        "指标",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }

    let out = clinic
        .recall()
        .args(["--lang", "zh", "customer", "C1", "--format", "csv"])
        .args(["--section", "timeline", "--at", "2026-02-01"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with('\u{feff}'), "no BOM: {text}");
    assert!(
        text.contains("时间,类型,事项,详情,金额（元）,状态"),
        "{text}"
    );

    // Before the customer existed: no facts, nothing in the timeline.
    let (ok, out, _) = customer(&clinic, &["C1", "--at", "2025-12-01"]);
    assert!(ok);
    assert!(out.contains("not in a pool at this time"), "{out}");
    assert!(out.contains("nothing happened up to this time"), "{out}");
}

/// Every fact a move's reason quotes, `name=value`, and the churn model's
/// fit (`model #N`), against the story's facts at that tick's time.
#[test]
fn the_facts_of_a_story_at_a_ticks_time_are_the_facts_its_moves_quote() {
    let clinic = Clinic::demo(200);
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    // Moves made by ticks, with the churn model's ones first, then one per
    // rule, so every kind of fact is checked.
    let mut stmt = conn
        .prepare(
            "SELECT c.external_id, t.at, t.reason FROM transitions t
             JOIN customers c ON c.id = t.customer_id
             WHERE t.tick_id IS NOT NULL
             AND t.id IN (SELECT min(id) FROM transitions WHERE tick_id IS NOT NULL
                          GROUP BY rule_id, reason LIKE '%model #%')",
        )
        .unwrap();
    let moves: Vec<(String, i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(moves.len() >= 5, "{moves:?}");
    assert!(moves.iter().any(|m| m.2.contains("model #")), "{moves:?}");
    let mut checked = 0;
    for (customer, at, reason) in &moves {
        let at = DateTime::from_timestamp(*at, 0).unwrap().to_rfc3339();
        let facts = json(&clinic, &[customer, "--at", &at, "--section", "facts"]);
        let facts = facts.as_array().unwrap();
        let quoted = reason.rsplit_once(" [").map(|(_, q)| q).unwrap_or("");
        let quoted = quoted.strip_suffix(']').unwrap_or(quoted);
        for fact in facts {
            let name = fact["fact"].as_str().unwrap();
            let said = [format!("[{name}="), format!(", {name}=")]
                .iter()
                .any(|prefix| format!("[{quoted}").contains(prefix.as_str()));
            if !said {
                continue;
            }
            let expected = format!("{name}={}", fact["quoted"].as_str().unwrap());
            let ends = [format!("{expected},"), format!("{expected}]")];
            let whole = format!("[{quoted}]");
            assert!(
                ends.iter().any(|e| whole.contains(e.as_str())),
                "{customer} at {at}: the story says {expected}, the move said {reason}"
            );
            checked += 1;
        }
        if let Some((_, fit)) = quoted.split_once("model #") {
            let fit: i64 = fit.trim_end_matches(']').parse().unwrap();
            let churn = facts.iter().find(|f| f["fact"] == "churn_risk").unwrap();
            assert_eq!(churn["model"], fit, "{customer} at {at}: {reason}");
        }
    }
    assert!(checked >= moves.len(), "only {checked} facts checked");
}

#[test]
fn the_timeline_shows_a_moves_reason_whole() {
    let clinic = Clinic::demo(60);
    let (id, reason): (String, String) = rusqlite::Connection::open(clinic.database())
        .unwrap()
        .query_row(
            "SELECT c.external_id, t.reason FROM transitions t
             JOIN customers c ON c.id = t.customer_id
             WHERE t.tick_id IS NOT NULL ORDER BY length(t.reason) DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let (ok, out, err) = customer(&clinic, &[&id, "--section", "timeline"]);
    assert!(ok, "{err}");
    assert!(out.contains(&reason), "{reason} not whole in:\n{out}");
}
