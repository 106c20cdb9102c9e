//! Going live with history (issue 12): a clinic imports years of CRM/HIS
//! exports, onboards, and its first tick messages nobody about the past.
//! Through the real binary: init, import (customers in GBK), onboard, tick.

mod common;

use chrono::{Duration, NaiveDate};
use common::{Clinic, stdout};

/// The go-live day; every history below is counted back from it.
const GO_LIVE: (i32, u32, u32) = (2099, 6, 1);

/// The clinic time `days` days from the go-live day, at `hour`:00.
fn day(days: i64, hour: u32) -> String {
    let (y, m, d) = GO_LIVE;
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap() + Duration::days(days);
    format!("{date} {hour:02}:00")
}

/// The go-live time: the first tick runs then.
fn go_live() -> String {
    day(0, 14)
}

/// A clinic's exports, built row by row.
#[derive(Default)]
struct Exports {
    customers: Vec<String>,
    visits: Vec<String>,
    orders: Vec<String>,
    followups: Vec<String>,
}

impl Exports {
    fn customer(&mut self, id: &str, name: &str, first_seen: i64) {
        let phone = 13_800_000_000u64 + self.customers.len() as u64;
        self.customers
            .push(format!("{id},{name},{phone},{}", day(first_seen, 10)));
    }

    /// A visit on `at` (days from go-live), with an order of `yuan` if any
    /// and a follow-up the next day, smooth or not.
    fn visit(&mut self, id: &str, at: i64, yuan: Option<u32>, smooth: Option<bool>) {
        let n = self.visits.len();
        self.visits.push(format!("V{n},{id},{}", day(at, 10)));
        if let Some(yuan) = yuan {
            self.orders
                .push(format!("O{n},{id},{},{yuan}", day(at, 11)));
        }
        if let Some(smooth) = smooth {
            self.followup(id, at + 1, smooth);
        }
    }

    fn followup(&mut self, id: &str, at: i64, smooth: bool) {
        let n = self.followups.len();
        let result = if smooth { "顺畅" } else { "不顺畅" };
        self.followups
            .push(format!("F{n},{id},{},{result}", day(at, 10)));
    }

    /// Writes the four files and imports them: customers in GBK with
    /// Chinese headers (as a Chinese CRM exports them), the rest in UTF-8.
    fn import(&self, clinic: &Clinic, tag: &str) {
        let files = [
            ("customers", "客户编号,姓名,手机,首次到院", &self.customers),
            ("visits", "到院编号,客户编号,到院时间", &self.visits),
            ("orders", "订单编号,客户编号,消费时间,金额", &self.orders),
            (
                "followups",
                "回访编号,客户编号,回访时间,回访结果",
                &self.followups,
            ),
        ];
        for (kind, header, rows) in files {
            if rows.is_empty() {
                continue;
            }
            let text = format!("{header}\n{}\n", rows.join("\n"));
            let bytes = if kind == "customers" {
                let (gbk, _, lossy) = encoding_rs::GBK.encode(&text);
                assert!(!lossy);
                assert!(std::str::from_utf8(&gbk).is_err(), "really GBK, not UTF-8");
                gbk.into_owned()
            } else {
                text.into_bytes()
            };
            let file = clinic.path().join(format!("{tag}-{kind}.csv"));
            std::fs::write(&file, bytes).unwrap();
            clinic
                .recall()
                .args(["import", kind])
                .arg(&file)
                .assert()
                .success();
        }
    }
}

/// A reproducible stream of numbers for the generated customers.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The hand-made customers, each with the pool the shipped rules put them
/// in when replayed over the 120 days before go-live (their longest
/// window: `maintenance_to_churned`'s `days_in_pool >= 120`). The replay
/// ticks daily at 09:00 from day -119, and once at go-live.
const EXPECTED: [(&str, &str); 6] = [
    // Monthly visits for two years, the last 10 days ago, all bought, all
    // follow-ups smooth: `new_to_customer` on the first replayed day, and
    // never 45 days away (the churn model's rule) nor 60 (check-in).
    ("H-LOYAL", "customer"),
    // One visit 311 days ago (the 首次到院：311 天前): in `new`
    // for 192 days at day -119, so `new_to_warning`; `warning_to_maintenance`
    // at -105; `maintenance_to_churned` at -45 (three contacts in the pool).
    ("H-LAPSED", "churned"),
    // Monthly until 20 days ago, then two unsmooth follow-ups (-25, -10):
    // `customer_to_warning_followups` at -9; maintenance only at day 14.
    ("H-SLIPPING", "warning"),
    // One visit 700 days ago, churned by the replay at -45 as H-LAPSED,
    // back at -20: `churned_returned` at -19 puts them in `maintenance`.
    ("H-RECALLED", "maintenance"),
    // First (and only) visit 40 days ago, never bought: the new-customer
    // cadence, then `new_to_warning` at -10 (day 30); maintenance at day 14.
    ("H-BROWSER", "warning"),
    // First seen two days ago: still new.
    ("H-FRESH", "new"),
];

/// The hand-made histories above, and 200 generated ones: first seen
/// between 40 days and three years before go-live, 1 to 8 visits, most
/// with an order, some follow-ups.
fn history() -> Exports {
    let mut e = Exports::default();
    e.customer("H-LOYAL", "王丽", -730);
    for at in (10..=730).rev().step_by(30) {
        e.visit("H-LOYAL", -at, Some(1_800), Some(true));
    }
    e.customer("H-LAPSED", "李娜", -311);
    e.visit("H-LAPSED", -311, Some(3_200), None);
    e.customer("H-SLIPPING", "张敏", -500);
    for at in (20..=500).rev().step_by(30) {
        e.visit("H-SLIPPING", -at, Some(980), Some(true));
    }
    e.followup("H-SLIPPING", -25, false);
    e.followup("H-SLIPPING", -10, false);
    e.customer("H-RECALLED", "赵敏", -700);
    e.visit("H-RECALLED", -700, Some(6_800), None);
    e.visit("H-RECALLED", -20, Some(1_200), None);
    e.customer("H-BROWSER", "孙悦", -40);
    e.visit("H-BROWSER", -40, None, None);
    e.customer("H-FRESH", "周洁", -2);
    e.visit("H-FRESH", -2, Some(2_600), None);

    let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
    for i in 0..200 {
        let id = format!("R{i:03}");
        let first = 40 + draw.below(1_060) as i64;
        e.customer(&id, &format!("顾客{i}"), -first);
        let visits = 1 + draw.below(8) as i64;
        let mut at = first;
        for _ in 0..visits {
            let yuan = (draw.below(10) < 7).then(|| 500 + draw.below(20_000) as u32);
            let followup = match draw.below(4) {
                0 => Some(false),
                1 | 2 => Some(true),
                _ => None,
            };
            e.visit(&id, -at, yuan, followup);
            if at <= 3 {
                break;
            }
            at -= 1 + draw.below((at - 2).min(200) as u64) as i64;
        }
    }
    e
}

fn clinic_with_history() -> Clinic {
    let clinic = Clinic::new();
    history().import(&clinic, "crm");
    clinic
}

/// Messages a dispatcher could still send (anything but cancelled).
fn sendable(clinic: &Clinic) -> i64 {
    clinic.count("SELECT count(*) FROM outreach WHERE status <> 'cancelled'")
}

#[test]
fn going_live_places_history_in_its_pools_and_messages_nobody_about_the_past() {
    let clinic = clinic_with_history();
    let customers = clinic.count("SELECT count(*) FROM customers");
    assert_eq!(customers, 206);

    let out = clinic
        .recall()
        .args(["onboard", "--at", &go_live(), "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Onboarded 206 customers"), "{text}");
    assert!(text.contains("last 120 days"), "{text}");
    assert_eq!(
        clinic.count("SELECT count(*) FROM customers WHERE onboarding = 1"),
        0
    );
    assert_eq!(
        sendable(&clinic),
        0,
        "onboarding creates no message that can be sent"
    );
    assert!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'cancelled'") > 0,
        "what the rules fired in the history is remembered, as cancelled"
    );

    for (id, pool) in EXPECTED {
        let found: String = {
            let conn = rusqlite::Connection::open(clinic.database()).unwrap();
            conn.query_row(
                "SELECT p.pool FROM customer_pools p JOIN customers c ON c.id = p.customer_id
                 WHERE c.external_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(found, pool, "{id}");
    }
    // H-LAPSED's moves are on record, each with the reason and rule, at
    // the replayed time, by no tick.
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let moves: Vec<(String, String, bool)> = conn
        .prepare(
            "SELECT t.rule_id, t.reason, t.tick_id IS NULL FROM transitions t
             JOIN customers c ON c.id = t.customer_id
             WHERE c.external_id = 'H-LAPSED' AND t.from_pool IS NOT NULL ORDER BY t.at",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rules: Vec<&str> = moves.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        rules,
        [
            "new_to_warning",
            "warning_to_maintenance",
            "maintenance_to_churned"
        ]
    );
    assert!(
        moves.iter().all(|m| m.1.starts_with("onboarding: ") && m.2),
        "{moves:?}"
    );

    // The first tick: nobody waits, nothing about the past is sent.
    let out = clinic
        .recall()
        .args(["tick", "--at", &go_live(), "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("onboard"), "{text}");
    assert!(text.contains("206 customers"), "{text}");
    assert_eq!(sendable(&clinic), 0, "{text}");
    assert_eq!(
        clinic.count("SELECT count(*) FROM transitions WHERE tick_id IS NOT NULL"),
        0
    );

    // The days after go-live: what happens now is outreach, but no
    // new-customer message goes to anyone who came more than a month ago.
    for days in 1..=3 {
        clinic
            .recall()
            .args(["tick", "--at", &day(days, 9)])
            .assert()
            .success();
    }
    let stale = clinic.count(
        "SELECT count(*) FROM outreach o JOIN customers c ON c.id = o.customer_id
         WHERE o.status <> 'cancelled' AND o.rule_id LIKE 'new\\_%' ESCAPE '\\'
           AND (SELECT min(at) FROM visits v WHERE v.customer_id = c.id) < (SELECT min(at) FROM ticks) - 30 * 86400",
    );
    assert_eq!(
        stale, 0,
        "a new-customer message to a customer of long standing"
    );
}

#[test]
fn before_onboarding_a_tick_messages_nobody_who_waits_and_says_what_to_do() {
    let clinic = clinic_with_history();
    let out = clinic
        .recall()
        .args(["tick", "--at", &go_live(), "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    // H-FRESH's history is two days old: genuinely new, judged.
    assert!(
        text.contains("205 customers imported with their history wait for onboarding"),
        "{text}"
    );
    assert!(text.contains("recall onboard"), "{text}");
    let messaged: Vec<String> = {
        let conn = rusqlite::Connection::open(clinic.database()).unwrap();
        conn.prepare(
            "SELECT DISTINCT c.external_id FROM outreach o JOIN customers c ON c.id = o.customer_id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert!(messaged.iter().all(|id| id == "H-FRESH"), "{messaged:?}");
    assert_eq!(
        clinic.count("SELECT count(*) FROM transitions WHERE tick_id IS NOT NULL AND customer_id <> (SELECT id FROM customers WHERE external_id = 'H-FRESH')"),
        0,
        "nobody waiting was moved"
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM customers WHERE onboarding = 1"),
        205
    );

    // In Chinese too, and the next tick says it again (once per run).
    let out = clinic
        .recall()
        .args(["tick", "--at", &day(1, 9), "--lang", "zh"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("205 位带历史导入的顾客在等待引入"), "{text}");
    assert!(text.contains("recall onboard"), "{text}");
}

#[test]
fn a_customer_imported_later_as_genuinely_new_needs_no_onboarding() {
    let clinic = clinic_with_history();
    clinic
        .recall()
        .args(["onboard", "--at", &go_live()])
        .assert()
        .success();
    clinic
        .recall()
        .args(["tick", "--at", &go_live()])
        .assert()
        .success();
    // A week later the CRM exports a customer first seen yesterday.
    let mut later = Exports::default();
    later.customer("N-1", "吴倩", 6);
    later.visit("N-1", 6, Some(1_500), None);
    later.import(&clinic, "week2");
    let out = clinic
        .recall()
        .args(["tick", "--at", &day(7, 9), "--lang", "en"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("wait for onboarding"), "{text}");
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM outreach o JOIN customers c ON c.id = o.customer_id
             WHERE c.external_id = 'N-1' AND o.rule_id = 'new_day1_call' AND o.status = 'queued'"
        ),
        1,
        "the day-1 call of a new customer: {text}"
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM customers WHERE onboarding = 1"),
        0
    );
    // Onboarding again finds nobody.
    let out = clinic
        .recall()
        .args(["onboard", "--at", &day(7, 15), "--lang", "en"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("Nobody waits for onboarding"));
}
