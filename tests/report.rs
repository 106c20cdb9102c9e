//! The recall report on a small clinic whose every number was worked out by
//! hand (the working is in the comments), through the real binary. If one of
//! these fails, either the code or docs/report.md is wrong.

mod common;

use std::collections::BTreeMap;

use common::{Clinic, at};
use recall::base::content::Content;
use recall::base::model::{Channel, Pool};
use recall::store::Store;
use recall::store::ingest::NewCustomer;
use recall::store::ticks::{NewMessage, TickBatch, TickStart};

fn t(text: &str) -> i64 {
    at(text).timestamp()
}

/// What became of a fixture's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Handed over and sent at this time.
    Sent(&'static str),
    /// In the rule's control group.
    HeldOut,
    /// Never handed over: no consent.
    Suppressed,
    /// Never handed over: a permanent failure.
    Failed,
}

/// Seven customers, A to G, with their moves, visits and orders, and six
/// messages in March 2026 (see the test for the arithmetic).
fn fixture() -> Clinic {
    let clinic = Clinic::new();
    let mut store = Store::open(&clinic.database()).unwrap();
    let clinic_id = store
        .ensure_clinic("main", "测试诊所", "Asia/Shanghai", 0)
        .unwrap();
    let mut ids = BTreeMap::new();
    {
        let mut ingest = store.ingest().unwrap();
        for (name, first) in [
            ("F", "2025-09-05 10:00"),
            ("G", "2025-10-01 10:00"),
            ("A", "2026-01-10 10:00"),
            ("B", "2026-02-10 10:00"),
            ("E", "2026-02-20 10:00"),
            ("C", "2026-03-01 10:00"),
            ("D", "2026-03-10 10:00"),
        ] {
            let id = ingest
                .add_customer(clinic_id, &NewCustomer::named(name, name), t(first))
                .unwrap();
            ids.insert(name, id);
            ingest.add_visit(id, t(first), None).unwrap();
        }
        let id = |n: &str| ids[n];
        for (who, when) in [
            ("F", "2025-09-20 10:00"),
            ("F", "2025-11-20 10:00"),
            ("G", "2026-03-15 10:00"),
            ("A", "2026-03-05 10:00"),
            ("C", "2026-03-20 10:00"),
        ] {
            ingest.add_visit(id(who), t(when), None).unwrap();
        }
        for (who, when, yuan) in [
            ("F", "2025-09-05 10:30", 100),
            ("F", "2026-01-10 10:30", 100),
            ("G", "2025-10-01 10:30", 100),
            ("A", "2026-01-10 10:30", 1000),
            ("A", "2026-03-05 10:30", 500),
            ("B", "2026-02-10 10:30", 2000),
            ("E", "2026-02-20 10:30", 300),
            ("E", "2026-03-25 10:30", 300),
            ("C", "2026-03-01 10:30", 800),
        ] {
            ingest
                .add_order(id(who), t(when), yuan * 100, None, None)
                .unwrap();
        }
        for (who, pool, when) in [
            ("F", Pool::Customer, "2025-10-01 09:00"),
            ("A", Pool::Customer, "2026-02-01 09:00"),
            ("B", Pool::Churned, "2026-02-25 09:00"),
            ("E", Pool::Customer, "2026-03-02 09:00"),
            ("A", Pool::Warning, "2026-03-02 09:00"),
            ("A", Pool::Maintenance, "2026-03-16 09:00"),
            ("D", Pool::Warning, "2026-03-20 09:00"),
            ("E", Pool::Churned, "2026-03-28 09:00"),
        ] {
            ingest.place(id(who), pool, t(when), "fixture").unwrap();
        }
        ingest.commit().unwrap();
    }
    // Messages: (customer, rule, channel, created, what became of it, cost in 1/1000 yuan)
    let messages = [
        (
            "A",
            "r_warn",
            Channel::Sms,
            "2026-03-03 09:00",
            Fate::Sent("2026-03-03 10:00"),
            100,
        ),
        (
            "C",
            "r_recall",
            Channel::Sms,
            "2026-03-05 09:00",
            Fate::HeldOut,
            0,
        ),
        (
            "D",
            "r_warn",
            Channel::Sms,
            "2026-03-12 09:00",
            Fate::Sent("2026-03-12 10:00"),
            100,
        ),
        // r_recall fired for G and B too, but nothing reached them: G had
        // withdrawn consent, B's message failed before any hand-over.
        (
            "G",
            "r_recall",
            Channel::Sms,
            "2026-03-14 09:00",
            Fate::Suppressed,
            0,
        ),
        (
            "B",
            "r_recall",
            Channel::Sms,
            "2026-03-16 09:00",
            Fate::Failed,
            0,
        ),
        (
            "E",
            "r_recall",
            Channel::Phone,
            "2026-03-20 09:00",
            Fate::Sent("2026-03-20 15:00"),
            2000,
        ),
    ];
    for (who, rule, channel, created, fate, cost) in messages {
        let created = t(created);
        let TickStart::New(tick) = store
            .begin_tick(created, created, |x| x.to_string())
            .unwrap()
        else {
            panic!("a new tick")
        };
        let batch = TickBatch {
            cursor: ids[who],
            messages: vec![NewMessage {
                customer_id: ids[who],
                rule_id: rule.into(),
                action_index: 0,
                pool: Pool::Warning,
                channel,
                template: "t".into(),
                content: Content::text("x"),
                fallback: None,
                due_at: created,
                failure: None,
                held_out: fate == Fate::HeldOut,
                attribution_days: 30,
                expires_at: None,
                assign_to: None,
                cancel_if_stale: false,
            }],
            ..TickBatch::default()
        };
        store.commit_batch(&tick, &batch).unwrap();
        store.finish_tick(tick.id, created).unwrap();
        let claim = |store: &mut Store, at: i64| {
            let claimed = store.claim_due(at, &[channel], 10).unwrap();
            assert_eq!(claimed.len(), 1);
            claimed[0].id
        };
        match fate {
            Fate::Sent(sent) => {
                let id = claim(&mut store, t(sent));
                store.mark_sent(id, "test", "p", cost, t(sent)).unwrap();
            }
            Fate::Suppressed => {
                let id = claim(&mut store, created);
                store
                    .mark_suppressed(id, "no consent for sms", created)
                    .unwrap();
            }
            Fate::Failed => {
                let id = claim(&mut store, created);
                store
                    .mark_failed(id, "test", "invalid number", created)
                    .unwrap();
            }
            Fate::HeldOut => {}
        }
    }
    // The call to E reached them and they booked.
    let call = store
        .log(&Default::default())
        .unwrap()
        .into_iter()
        .find(|m| m.channel == "phone")
        .unwrap();
    store
        .record_outcome(
            call.id,
            "responded",
            t("2026-03-20 15:00"),
            0,
            "call",
            "task:1",
        )
        .unwrap();
    store
        .record_outcome(
            call.id,
            "booked",
            t("2026-03-20 15:00"),
            0,
            "call",
            "task:1",
        )
        .unwrap();
    drop(store);
    clinic
}

/// (section, row, column) → value, from `recall report --format json`: each
/// section is a table whose first column names the row (a pool, a rule, an
/// indicator); numbers as JSON writes them, empty cells as "".
fn report(clinic: &Clinic, from: &str, to: &str) -> BTreeMap<(String, String, String), String> {
    let out = clinic
        .recall()
        .args(["report", "--from", from, "--to", to, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cells(&out.stdout)
}

/// The cells of the report's JSON: (section, row, column) → value.
fn cells(json: &[u8]) -> BTreeMap<(String, String, String), String> {
    let sections: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).unwrap();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut cells = BTreeMap::new();
    for (section, rows) in sections {
        for row in rows.as_array().unwrap() {
            let row = row.as_object().unwrap();
            let name = text(row.values().next().unwrap());
            for (column, value) in row.iter().skip(1) {
                cells.insert((section.clone(), name.clone(), column.clone()), text(value));
            }
        }
    }
    cells
}

fn get<'a>(
    r: &'a BTreeMap<(String, String, String), String>,
    section: &str,
    group: &str,
    metric: &str,
) -> &'a str {
    r.get(&(section.into(), group.into(), metric.into()))
        .unwrap_or_else(|| panic!("no {section}/{group}/{metric}"))
}

#[test]
fn march_numbers_match_the_hand_computed_ones() {
    let clinic = fixture();
    let r = report(&clinic, "2026-03-01", "2026-04-01");
    let g = |section, group, metric| get(&r, section, group, metric).to_string();

    // Pools at 03-01 00:00: A customer, B churned, E new, F customer, G new (C, D not yet placed).
    for (pool, start, end) in [
        ("new", "2", "2"),
        ("customer", "2", "1"),
        ("warning", "0", "1"),
        ("maintenance", "0", "1"),
        ("churned", "1", "2"),
    ] {
        assert_eq!(
            (g("pools", pool, "start"), g("pools", pool, "end")),
            (start.into(), end.into()),
            "{pool}"
        );
    }
    // Moves in March: A customer>warning>maintenance, D new>warning, E new>customer>churned.
    for (moves, n) in [
        ("customer>warning", "1"),
        ("warning>maintenance", "1"),
        ("new>warning", "1"),
        ("new>customer", "1"),
        ("customer>churned", "1"),
    ] {
        let (from, to) = moves.split_once('>').unwrap();
        assert_eq!(g("moves", from, to), n, "{moves}");
    }
    assert_eq!(g("moves", "new", "churned"), "0");
    // New: C and D in March; B and E in the 31 days before: growth (2 - 2) / 2 = 0.
    assert_eq!(g("customers", "new_customers", "value"), "2");
    assert_eq!(
        g("customers", "new_customers_previous_period", "value"),
        "2"
    );
    assert_eq!(g("customers", "new_customer_growth", "value"), "0.0");
    // Churn: E moved to churned; not churned at the start: A, E, F, G -> 1/4.
    assert_eq!(g("customers", "churn_rate", "value"), "0.25");
    assert_eq!(
        (
            g("customers", "churn_rate", "count"),
            g("customers", "churn_rate", "base")
        ),
        ("1".into(), "4".into())
    );
    // Retention at N months: the cohort whose first visit is in [03-01 - N*30 days,
    // 04-01 - N*30 days). 1 month: [01-30, 03-02): B (02-10), E (02-20), C (03-01 10:00); not A
    // (01-10) nor D (03-10). Another visit within 30 days: C (03-20) only -> 1/3.
    assert_eq!(
        (
            g("customers", "retention_1m", "base"),
            g("customers", "retention_1m", "count")
        ),
        ("3".into(), "1".into())
    );
    assert_eq!(g("customers", "retention_1m", "value"), "0.3333");
    // 3 months (90 days): [2025-12-01, 2026-01-01): no first visit in December -> blank.
    assert_eq!(
        (
            g("customers", "retention_3m", "base"),
            g("customers", "retention_3m", "value")
        ),
        ("0".into(), String::new())
    );
    // 6 months (180 days): [2025-09-02, 2025-10-03): F (09-05) and G (10-01). F came back
    // 09-20; G on 03-15, 165 days after 10-01 (<= 180) -> 2/2.
    assert_eq!(
        (
            g("customers", "retention_6m", "base"),
            g("customers", "retention_6m", "count")
        ),
        ("2".into(), "2".into())
    );
    assert_eq!(g("customers", "retention_6m", "value"), "1.0");
    // Repurchase: first orders in [2025-09-02, 2025-10-03): F (09-05 10:30), G (10-01 10:30).
    // F's second order (01-10) is 127 days later; G has none -> 1/2.
    assert_eq!(
        (
            g("customers", "repurchase_rate", "base"),
            g("customers", "repurchase_rate", "count")
        ),
        ("2".into(), "1".into())
    );
    assert_eq!(g("customers", "repurchase_rate", "value"), "0.5");
    // Active: visits in [03-02, 04-01): A, C, D, G = 4; in the year before: all 7.
    assert_eq!(
        (
            g("customers", "active_ratio", "count"),
            g("customers", "active_ratio", "base")
        ),
        ("4".into(), "7".into())
    );
    assert_eq!(g("customers", "active_ratio", "value"), "0.5714");

    // Recall. r_warn: SMS to A (03-03) and D (03-12), 0.1 yuan each. A visited and paid 500 on
    // 03-05, credited to the SMS; D did not come back.
    assert_eq!(g("recall", "r_warn", "messages"), "2");
    assert_eq!(g("recall", "r_warn", "contacted_customers"), "2");
    assert_eq!(g("recall", "r_warn", "recalled_customers"), "1");
    assert_eq!(g("recall", "r_warn", "recall_rate"), "0.5");
    assert_eq!(g("recall", "r_warn", "cost"), "0.2");
    assert_eq!(g("recall", "r_warn", "recalled_revenue"), "500.0");
    assert_eq!(g("recall", "r_warn", "cost_per_recalled"), "0.2");
    // Last-touch ROI = (500 - 0.2) / 0.2 = 2499: beyond 1000%, where it only
    // says the SMS cost little, so it is not printed as a number.
    assert_eq!(g("recall", "r_warn", "roi"), "over_1000_percent");
    // r_recall: a call to E (2 yuan) that reached them and booked; E paid 300 on 03-25.
    // C was held out (control): no hand-over, no cost, not a contact.
    assert_eq!(g("recall", "r_recall", "messages"), "1");
    assert_eq!(g("recall", "r_recall", "recall_rate"), "1.0");
    assert_eq!(g("recall", "r_recall", "recalled_revenue"), "300.0");
    // (300 - 2) / 2 = 149, beyond 1000% too.
    assert_eq!(g("recall", "r_recall", "roi"), "over_1000_percent");
    assert_eq!(
        ["contacted", "responded", "booked", "visited", "purchased"]
            .map(|m| g("funnel", "r_recall", m)),
        ["1", "1", "1", "0", "1"].map(String::from)
    );
    // Total: 3 messages, 3 customers, 2 recalled, cost 2.2, revenue 800; ROI (800 - 2.2) / 2.2.
    assert_eq!(g("recall", "total", "recall_rate"), "0.6667");
    assert_eq!(g("recall", "total", "cost"), "2.2");
    assert_eq!(g("recall", "total", "recalled_revenue"), "800.0");
    assert_eq!(g("recall", "total", "cost_per_recalled"), "1.1");
    assert_eq!(g("recall", "total", "roi"), "over_1000_percent");

    // Uplift for r_recall, by intention to treat, each customer from the time the rule fired
    // for them (window 30 days): treated are everyone not held out, whatever became of the
    // message: E (fired 03-20 09:00, order 03-25: returned), G (suppressed, fired 03-14 09:00,
    // visit 03-15: returned) and B (failed, fired 03-16: nothing since 02-10: not returned)
    // -> 2/3. Control: C (fired 03-05 09:00, visit 03-20: returned) -> 1/1.
    // Uplift 2/3 - 1 = -0.3333; far too few to tell.
    assert_eq!(g("uplift", "r_recall", "treated"), "3");
    assert_eq!(g("uplift", "r_recall", "treated_returned"), "2");
    assert_eq!(g("uplift", "r_recall", "control"), "1");
    assert_eq!(g("uplift", "r_recall", "control_returned"), "1");
    assert_eq!(g("uplift", "r_recall", "uplift"), "-0.3333");
    assert_eq!(g("uplift", "r_recall", "verdict"), "too_few");
    // One control customer: no spread to say anything about money with.
    for column in ["incremental_revenue", "roi", "roi_low", "roi_high"] {
        assert_eq!(g("uplift", "r_recall", column), "", "{column}");
    }
}

#[test]
fn retention_and_repurchase_over_a_longer_period() {
    let clinic = fixture();
    let r = report(&clinic, "2025-09-01", "2026-04-01");
    let g = |section, group, metric| get(&r, section, group, metric).to_string();
    // 1 month: cohort first visits in [2025-09-01 - 30 days, 04-01 - 30 days) =
    // [2025-08-02, 2026-03-02): F, G, A, B, E, C (not D, 03-10).
    // Came back within 30 days: F (09-20), C (03-20) -> 2/6.
    assert_eq!(
        (
            g("customers", "retention_1m", "base"),
            g("customers", "retention_1m", "count")
        ),
        ("6".into(), "2".into())
    );
    // 3 months (90 days): [2025-06-03, 2026-01-01): F (09-05), G (10-01). F came back 09-20
    // (15 days); G not until 03-15 (165 days) -> 1/2.
    assert_eq!(
        (
            g("customers", "retention_3m", "base"),
            g("customers", "retention_3m", "count")
        ),
        ("2".into(), "1".into())
    );
    // 6 months (180 days): [2025-03-05, 2025-10-03): F and G, both back within 180 days -> 2/2.
    assert_eq!(g("customers", "retention_6m", "value"), "1.0");
    // Repurchase: first orders in [2025-03-05, 2025-10-03): F (09-05), G (10-01). F's second
    // order 01-10 is 127 days later; G has none -> 1/2.
    assert_eq!(
        (
            g("customers", "repurchase_rate", "base"),
            g("customers", "repurchase_rate", "count")
        ),
        ("2".into(), "1".into())
    );
    assert_eq!(g("customers", "repurchase_rate", "value"), "0.5");
}

#[test]
fn the_table_speaks_chinese_and_english_and_csv_matches_json() {
    let clinic = fixture();
    let zh = clinic
        .recall()
        .args(["report", "--from", "2026-03-01", "--to", "2026-04-01"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&zh.stdout);
    assert!(
        text.contains("留存及流失召回回流统计表")
            && text.contains("流失率")
            && text.contains("25.0%"),
        "{text}"
    );
    assert!(text.contains("样本太少"), "{text}");
    let en = clinic
        .recall()
        .args([
            "report",
            "--from",
            "2026-03-01",
            "--to",
            "2026-04-01",
            "--lang",
            "en",
            "--by",
            "channel",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&en.stdout);
    assert!(
        text.contains("Recall report") && text.contains("churn rate") && text.contains("phone"),
        "{text}"
    );
    assert!(text.contains("too few customers to tell"), "{text}");

    // CSV: one file per section, the same numbers as JSON. Under English the
    // headers and the words are the keys JSON uses (the form for scripts).
    let folder = clinic.path().join("统计表");
    clinic
        .recall()
        .args(["report", "--from", "2026-03-01", "--to", "2026-04-01"])
        .args(["--format", "csv", "--lang", "en", "--output"])
        .arg(&folder)
        .assert()
        .success();
    let json = report(&clinic, "2026-03-01", "2026-04-01");
    let mut compared = 0;
    for section in ["pools", "moves", "customers", "recall", "funnel", "uplift"] {
        let bytes = std::fs::read(folder.join(format!("{section}.csv"))).unwrap();
        assert!(
            bytes.starts_with(b"\xEF\xBB\xBF"),
            "{section}.csv has a BOM"
        );
        let mut csv = csv::Reader::from_reader(bytes.as_slice());
        let headers = csv.headers().unwrap().clone();
        for record in csv.records() {
            let record = record.unwrap();
            for (column, value) in headers.iter().zip(record.iter()).skip(1) {
                let key = (
                    section.to_string(),
                    record[0].to_string(),
                    column.to_string(),
                );
                let expected = json
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key:?} not in JSON"));
                assert!(
                    same_number(value, expected),
                    "{key:?}: CSV {value}, JSON {expected}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, json.len(), "CSV and JSON carry the same cells");

    // Under Chinese the headers and the words are Chinese.
    let zh = clinic
        .recall()
        .args(["report", "--from", "2026-03-01", "--to", "2026-04-01"])
        .args(["--format", "csv", "--section", "pools", "--lang", "zh"])
        .output()
        .unwrap();
    let text = String::from_utf8(zh.stdout).unwrap();
    assert!(
        text.starts_with("\u{feff}池,期初,期末,变化\n新客池,2,2,0\n"),
        "{text}"
    );
}

/// A CSV cell and a JSON value say the same number (`25.00%` is 0.25,
/// `0.20` is 0.2), or are the same text.
fn same_number(csv: &str, json: &str) -> bool {
    let number = |s: &str| match s.strip_suffix('%') {
        Some(percent) => percent.parse::<f64>().ok().map(|p| p / 100.0),
        None => s.parse::<f64>().ok(),
    };
    match (number(csv), number(json)) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-4,
        _ => csv == json,
    }
}

#[test]
fn staff_record_replies_and_bookings_that_count_in_the_funnel() {
    let clinic = fixture();
    let sms = clinic.count(
        "SELECT id FROM outreach WHERE channel = 'sms' AND status = 'sent' ORDER BY id LIMIT 1",
    );
    clinic
        .recall()
        .args([
            "outcome",
            &sms.to_string(),
            "--kind",
            "booked",
            "--at",
            "2026-03-04 12:00",
        ])
        .assert()
        .success();
    clinic
        .recall()
        .args(["outcome", &sms.to_string(), "--kind", "booked"])
        .assert()
        .success()
        .stdout(predicates::str::contains("nothing changed"));
    clinic
        .recall()
        .args(["outcome", &sms.to_string(), "--kind", "boked"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("did you mean `booked`?"));
    let held = clinic.count("SELECT id FROM outreach WHERE status = 'held_out'");
    clinic
        .recall()
        .args(["outcome", &held.to_string(), "--kind", "responded"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("never sent"));
    let r = report(&clinic, "2026-03-01", "2026-04-01");
    assert_eq!(get(&r, "funnel", "r_warn", "booked"), "1");
}

#[test]
fn the_default_report_on_the_demo_shows_retention_and_repurchase() {
    let clinic = Clinic::demo(150);
    let out = clinic
        .recall()
        .args(["report", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = cells(&out.stdout);
    let value = |section: &str, row: &str, column: &str| get(&r, section, row, column).to_string();
    // The last 30 days: each cohort is the customers first seen N*30 days before that.
    for months in ["1m", "3m", "6m"] {
        let row = format!("retention_{months}");
        let cohort: i64 = value("customers", &row, "base").parse().unwrap();
        assert!(cohort > 0, "{months}: an empty cohort");
        let rate: f64 = value("customers", &row, "value").parse().unwrap();
        assert!((0.0..=1.0).contains(&rate), "{months}: {rate}");
    }
    let eligible: i64 = value("customers", "repurchase_rate", "base")
        .parse()
        .unwrap();
    assert!(eligible > 0, "an empty repurchase cohort");
    let rate: f64 = value("customers", "repurchase_rate", "value")
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&rate), "{rate}");
}

#[test]
fn a_visit_recorded_before_the_call_is_marked_reached_is_still_a_recall() {
    // Phone messages become call tasks for the front desk.
    let clinic = Clinic::new();
    let config = std::fs::read_to_string(clinic.config()).unwrap().replace(
        "[channels.phone]\nsender = \"log\"\ncost = 2.0",
        "[senders.calls]\nkind = \"phone_tasks\"\nstaff = [{ name = \"小林\", daily_capacity = 10 }]\nworking_hours = \"10:00-19:00\"\n\n[channels.phone]\nsender = \"calls\"\ncost = 2.5",
    );
    assert!(config.contains("kind = \"phone_tasks\""));
    std::fs::write(clinic.config(), config).unwrap();
    let import = |kind: &str, text: &str| {
        let file = clinic.path().join(format!("{kind}.csv"));
        std::fs::write(&file, text).unwrap();
        clinic
            .recall()
            .args(["import", kind, file.to_str().unwrap()])
            .assert()
            .success();
    };
    import("customers", "客户编号,姓名,手机\nC1,王丽,13812345678\n");

    // A rule queues a call to C1 on Monday 2099-01-05 at 09:00; dispatch hands it to the
    // front desk at 11:00 (awaiting a person).
    let created = t("2099-01-05 09:00");
    let customer_id = clinic.count("SELECT id FROM customers WHERE external_id = 'C1'");
    {
        let mut store = Store::open(&clinic.database()).unwrap();
        let TickStart::New(tick) = store
            .begin_tick(created, created, |x| x.to_string())
            .unwrap()
        else {
            panic!("a new tick")
        };
        let batch = TickBatch {
            cursor: customer_id,
            messages: vec![NewMessage {
                customer_id,
                rule_id: "r_call".into(),
                action_index: 0,
                pool: Pool::Warning,
                channel: Channel::Phone,
                template: "t".into(),
                content: Content::text("回访"),
                fallback: None,
                due_at: created,
                failure: None,
                held_out: false,
                attribution_days: 30,
                expires_at: None,
                assign_to: None,
                cancel_if_stale: false,
            }],
            ..TickBatch::default()
        };
        store.commit_batch(&tick, &batch).unwrap();
        store.finish_tick(tick.id, created).unwrap();
    }
    clinic
        .recall()
        .args(["dispatch", "--at", "2099-01-05 11:00"])
        .assert()
        .success();
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'awaiting'"),
        1
    );

    // C1 comes in on Tuesday. The HIS export is imported, and a report run (which credits
    // returns), before the front desk records the call as reached.
    import(
        "visits",
        "到院编号,客户编号,到院时间\nV1,C1,2099-01-06 15:00\n",
    );
    let r = report(&clinic, "2099-01-01", "2099-02-01");
    assert_eq!(get(&r, "recall", "total", "recalled_customers"), "0");
    let task = clinic.count("SELECT id FROM call_tasks");
    clinic
        .recall()
        .args([
            "tasks",
            "done",
            &task.to_string(),
            "--outcome",
            "reached_booked",
            "--at",
            "2099-01-05 14:00",
        ])
        .assert()
        .success();
    // The call reached C1 (handed over Monday 11:00) and C1 came back the next day.
    let r = report(&clinic, "2099-01-01", "2099-02-01");
    assert_eq!(get(&r, "recall", "total", "contacted_customers"), "1");
    assert_eq!(get(&r, "recall", "total", "recalled_customers"), "1");
    assert_eq!(get(&r, "funnel", "r_call", "visited"), "1");
    assert_eq!(
        clinic.count("SELECT count(*) FROM outcomes WHERE kind = 'visited'"),
        1,
        "credited once"
    );
}

/// The 统计表 as an Excel workbook, read back by an independent reader
/// (Debian's python3-openpyxl): one sheet per section with Chinese names
/// and headers, numbers as numbers, rates as percentage-formatted numbers,
/// column widths set, the header row frozen.
#[test]
fn the_workbook_opens_in_excel_readers_with_numbers_as_numbers() {
    let clinic = fixture();
    let book = clinic.path().join("统计表.xlsx");
    clinic
        .recall()
        .args(["report", "--from", "2026-03-01", "--to", "2026-04-01"])
        .args(["--format", "xlsx"])
        .arg(&book)
        .assert()
        .success();
    let python = "/usr/bin/python3";
    let has_openpyxl = std::process::Command::new(python)
        .args(["-c", "import openpyxl"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_openpyxl,
        "this test reads the workbook with Debian's python3-openpyxl, which is missing: \
         apt-get install python3-openpyxl (.ci/run installs it)"
    );
    let script = r#"
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
print("|".join(wb.sheetnames))
pools, customers, recall = wb["各池人数"], wb["顾客"], wb["召回"]
print([c.value for c in pools[1]])
print([c.value for c in pools[3]])
for sheet in wb.worksheets:
    assert sheet.freeze_panes == "A2", (sheet.title, sheet.freeze_panes)
    assert sheet["A1"].font.b, sheet.title
    assert all(sheet.column_dimensions[c].width > 0 for c in "AB"), sheet.title
for row in customers.iter_rows(min_row=2):
    if row[0].value == "流失率":
        print(row[1].value, row[1].number_format, row[2].value, row[3].value)
for row in recall.iter_rows(min_row=2):
    if row[0].value == "r_warn":
        print(row[4].value, row[4].number_format, row[5].value, row[5].number_format, type(row[1].value).__name__)
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&book)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "各池人数|池间流转|顾客|召回|转化漏斗|与对照组相比的增量效果"
    );
    assert_eq!(lines[1], "['池', '期初', '期末', '变化']");
    // Customer pool: 2 at the start, 1 at the end: numbers, the change signed.
    assert_eq!(lines[2], "['顾客池', 2, 1, -1]");
    // Churn 1/4 = 25%: a fraction shown as a percentage.
    assert_eq!(lines[3], "0.25 0.0% 1 4");
    // r_warn: recall rate 1/2; cost 0.2 yuan with two decimals; counts are ints.
    assert_eq!(lines[4], "0.5 0.0% 0.2 0.00 int");
}
