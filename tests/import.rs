//! `recall import`: a clinic's CRM exports, through the real binary. Upserts
//! by the clinic's ids, re-imports that change nothing, GBK files, and bad
//! files rejected whole with their lines.

mod common;

use common::{Clinic, at, stdout};
use predicates::prelude::*;
use recall::model::{Channel, Pool};
use recall::store::Store;
use recall::store::ticks::{NewMessage, TickBatch, TickStart};

const CUSTOMERS: &str = "客户编号,姓名,手机,性别,出生日期,城市,标签,短信同意,建档时间\n\
C1,王丽,13812345678,女,1990-06-15,上海,vip、玻尿酸,是,2026-01-05\n\
C2,李雷,13900001111,男,,杭州,,否,2026-02-01\n";

const VISITS: &str = "到院编号,客户编号,到院时间,科室\nV1,C1,2026-01-05 10:00,皮肤科\nV2,C1,2026-03-01 15:30,注射科\nV3,C2,2026/2/1 9:05,皮肤科\n";

const ORDERS: &str = "订单编号,客户编号,下单时间,金额,项目\nO1,C1,2026-01-05 11:00,\"2,980.00\",水光针\nO2,C2,2026-02-01,¥6800,玻尿酸\n";

const FOLLOWUPS: &str = "回访编号,客户编号,回访时间,结果,回访人\nF1,C1,2026-01-06 10:00,顺畅,小林\nF2,C2,2026-02-02,未接通,小周\n";

fn write(clinic: &Clinic, name: &str, bytes: &[u8]) -> String {
    let path = clinic.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    name.to_string()
}

/// Everything an import can touch, for before/after comparisons.
fn dump(clinic: &Clinic) -> String {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut text = String::new();
    for table in [
        "customers",
        "customer_pools",
        "transitions",
        "visits",
        "orders",
        "followups",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        for row in rows {
            text.push_str(&format!("{table}: {}\n", row.unwrap()));
        }
    }
    text
}

#[test]
fn a_clinic_imports_its_history_and_reimports_change_nothing() {
    let clinic = Clinic::new();
    let files = [
        (
            "customers",
            write(&clinic, "customers.csv", CUSTOMERS.as_bytes()),
        ),
        ("visits", write(&clinic, "visits.csv", VISITS.as_bytes())),
        ("orders", write(&clinic, "orders.csv", ORDERS.as_bytes())),
        (
            "followups",
            write(&clinic, "followups.csv", FOLLOWUPS.as_bytes()),
        ),
    ];
    for (kind, file) in &files {
        clinic
            .recall()
            .args(["import", kind, file])
            .assert()
            .success()
            .stdout(predicate::str::contains(" new, 0 updated, 0 unchanged"));
    }
    assert_eq!(clinic.count("SELECT count(*) FROM customers"), 2);
    assert_eq!(
        clinic.count("SELECT sum(amount_cents) FROM orders"),
        298_000 + 680_000
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM customer_pools WHERE pool = 'new'"),
        2
    );
    assert_eq!(
        clinic.count("SELECT consent_sms FROM customers WHERE external_id = 'C2'"),
        0
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM followups WHERE result = 'unreachable'"),
        1
    );

    let before = dump(&clinic);
    for (kind, file) in &files {
        let out = clinic
            .recall()
            .args(["import", kind, file])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            stdout(&out).contains(" 0 new, 0 updated,"),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(dump(&clinic), before, "a re-import changes nothing");

    // A file with only some columns updates just those.
    let update = write(
        &clinic,
        "phones.csv",
        "客户编号,手机\nC2,13900002222\n".as_bytes(),
    );
    clinic
        .recall()
        .args(["import", "customers", &update])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 new, 1 updated, 0 unchanged"));
    assert_eq!(clinic.count("SELECT count(*) FROM customers WHERE external_id = 'C2' AND phone = '13900002222' AND city = '杭州'"), 1);
}

#[test]
fn gbk_files_from_excel_are_read() {
    let clinic = Clinic::new();
    let (bytes, _, _) = encoding_rs::GBK.encode(CUSTOMERS);
    let file = write(&clinic, "customers-gbk.csv", &bytes);
    clinic
        .recall()
        .args(["import", "customers", &file])
        .assert()
        .success();
    assert_eq!(
        clinic.count("SELECT count(*) FROM customers WHERE name = '王丽' AND city = '上海'"),
        1
    );
}

#[test]
fn a_bad_file_is_rejected_whole_with_its_lines_and_the_database_is_untouched() {
    let clinic = Clinic::new();
    let customers = write(&clinic, "customers.csv", CUSTOMERS.as_bytes());
    clinic
        .recall()
        .args(["import", "customers", &customers])
        .assert()
        .success();
    let before = dump(&clinic);

    let bad_format = write(
        &clinic,
        "orders.csv",
        "订单编号,客户编号,下单时间,金额\nO1,C1,2026-01-05,100\nO2,C1,someday,100\nO3,C1,2026-01-07,-20\n,C2,2026-01-08,5\n".as_bytes(),
    );
    let out = clinic
        .recall()
        .args(["import", "orders", &bad_format])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders.csv:3: `at` = `someday` is not a date"),
        "{stderr}"
    );
    assert!(
        stderr.contains("orders.csv:4: `amount` = `-20` is negative"),
        "{stderr}"
    );
    assert!(
        stderr.contains("orders.csv:5: `external_id` is empty"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");

    let unknown = write(
        &clinic,
        "visits.csv",
        "到院编号,客户编号,到院时间\nV1,C1,2026-01-05\nV2,C404,2026-01-06\n".as_bytes(),
    );
    let out = clinic
        .recall()
        .args(["import", "visits", &unknown])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("visits.csv:3: unknown customer `C404`"),
        "{stderr}"
    );
    assert_eq!(dump(&clinic), before, "nothing of either file was written");
}

fn import(clinic: &Clinic, kind: &str, name: &str, text: &str) -> String {
    let file = write(clinic, name, text.as_bytes());
    let out = clinic
        .recall()
        .args(["import", kind, &file])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// An SMS of rule `r` sent to `customer` (the CRM's id) at `sent`, as a
/// tick and a dispatch would record it; attribution window 30 days.
fn sms_sent(clinic: &Clinic, customer: &str, sent: &str) {
    let sent = at(sent).timestamp();
    let customer_id = clinic.count(&format!(
        "SELECT id FROM customers WHERE external_id = '{customer}'"
    ));
    let mut store = Store::open(&clinic.database()).unwrap();
    let TickStart::New(tick) = store.begin_tick(sent, sent, |x| x.to_string()).unwrap() else {
        panic!("a new tick")
    };
    let batch = TickBatch {
        cursor: customer_id,
        messages: vec![NewMessage {
            customer_id,
            rule_id: "r".into(),
            action_index: 0,
            pool: Pool::Warning,
            channel: Channel::Sms,
            template: "t".into(),
            subject: None,
            content: "x".into(),
            html: None,
            params: None,
            fallback: None,
            due_at: sent,
            failure: None,
            held_out: false,
            attribution_days: 30,
        }],
        ..TickBatch::default()
    };
    store.commit_batch(&tick, &batch).unwrap();
    store.finish_tick(tick.id, sent).unwrap();
    let claimed = store.claim_due(sent, &[Channel::Sms], 10).unwrap();
    store
        .mark_sent(claimed[0].id, "log", "p", 45, sent)
        .unwrap();
}

/// (customer's CRM id, kind, amount in cents) of every credit, in order.
fn credits(clinic: &Clinic) -> Vec<(String, String, i64)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT c.external_id, x.kind, x.amount_cents FROM outcomes x
             JOIN outreach o ON o.id = x.outreach_id JOIN customers c ON c.id = o.customer_id
             WHERE x.kind IN ('visited', 'purchased') ORDER BY x.kind, c.external_id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn correcting_an_imported_visit_or_order_corrects_its_credit() {
    let clinic = Clinic::new();
    import(&clinic, "customers", "customers.csv", CUSTOMERS);
    sms_sent(&clinic, "C1", "2026-02-20 09:00");
    import(
        &clinic,
        "visits",
        "visits.csv",
        "到院编号,客户编号,到院时间\nVX1,C1,2026-03-01 10:00\n",
    );
    let out = import(
        &clinic,
        "orders",
        "orders.csv",
        "订单编号,客户编号,下单时间,金额\nOX1,C1,2026-03-01 10:30,2980\n",
    );
    assert!(out.contains("1 return(s) credited"), "{out}");
    assert_eq!(
        credits(&clinic),
        [
            ("C1".into(), "purchased".into(), 298_000),
            ("C1".into(), "visited".into(), 0)
        ]
    );

    // The clinic corrects the amount: the credited revenue follows.
    let out = import(
        &clinic,
        "orders",
        "orders.csv",
        "订单编号,客户编号,下单时间,金额\nOX1,C1,2026-03-01 10:30,5000\n",
    );
    assert!(out.contains("0 new, 1 updated, 0 unchanged"), "{out}");
    assert_eq!(
        credits(&clinic),
        [
            ("C1".into(), "purchased".into(), 500_000),
            ("C1".into(), "visited".into(), 0)
        ]
    );
    // The visit was in fact the day before the SMS: it is no return to it.
    import(
        &clinic,
        "visits",
        "visits.csv",
        "到院编号,客户编号,到院时间\nVX1,C1,2026-02-19 10:00\n",
    );
    assert_eq!(
        credits(&clinic),
        [("C1".into(), "purchased".into(), 500_000)]
    );
    // And the order was past the 30-day window.
    import(
        &clinic,
        "orders",
        "orders.csv",
        "订单编号,客户编号,下单时间,金额\nOX1,C1,2026-03-25 10:30,5000\n",
    );
    assert_eq!(credits(&clinic), []);
    let r = clinic
        .recall()
        .args([
            "report",
            "--from",
            "2026-02-01",
            "--to",
            "2026-04-01",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&r.stdout).unwrap();
    let revenue = rows
        .iter()
        .find(|r| r["group"] == "total" && r["metric"] == "recalled_revenue")
        .unwrap();
    assert_eq!(revenue["value"], "0.00");
}

#[test]
fn a_visit_or_order_is_the_clinics_by_its_id_and_moves_between_customers() {
    let clinic = Clinic::new();
    import(&clinic, "customers", "customers.csv", CUSTOMERS);
    sms_sent(&clinic, "C2", "2026-02-20 09:00");
    let visits = "到院编号,客户编号,到院时间\nVX1,C1,2026-03-01 10:00\n";
    let orders = "订单编号,客户编号,下单时间,金额\nOX1,C1,2026-03-01 10:30,2980\n";
    let followups = "回访编号,客户编号,回访时间,结果\nFX1,C1,2026-03-02 10:00,顺畅\n";
    for (kind, text) in [
        ("visits", visits),
        ("orders", orders),
        ("followups", followups),
    ] {
        import(&clinic, kind, &format!("{kind}.csv"), text);
    }
    // C1 had no contact: nothing credited. A re-import changes nothing.
    assert_eq!(credits(&clinic), []);
    let before = dump(&clinic);
    for (kind, text) in [
        ("visits", visits),
        ("orders", orders),
        ("followups", followups),
    ] {
        let out = import(&clinic, kind, &format!("{kind}.csv"), text);
        assert!(out.contains("0 new, 0 updated, 1 unchanged"), "{out}");
    }
    assert_eq!(dump(&clinic), before, "a re-import changes nothing");

    // The HIS filed them under the wrong customer: they were C2's.
    for (kind, text) in [
        ("visits", visits),
        ("orders", orders),
        ("followups", followups),
    ] {
        let out = import(
            &clinic,
            kind,
            &format!("{kind}.csv"),
            &text.replace(",C1,", ",C2,"),
        );
        assert!(out.contains("0 new, 1 updated, 0 unchanged"), "{out}");
    }
    for table in ["visits", "orders", "followups"] {
        assert_eq!(
            clinic.count(&format!(
                "SELECT count(*) FROM {table} t JOIN customers c ON c.id = t.customer_id
                 WHERE t.external_id LIKE '_X1' AND c.external_id = 'C2'"
            )),
            1,
            "{table}: one row, now C2's"
        );
        assert_eq!(
            clinic.count(&format!("SELECT count(*) FROM {table}")),
            1,
            "{table}"
        );
    }
    // C2 had an SMS on 02-20: the visit and the order are now recalls of it.
    assert_eq!(
        credits(&clinic),
        [
            ("C2".into(), "purchased".into(), 298_000),
            ("C2".into(), "visited".into(), 0)
        ]
    );
    // Back to C1: the credits go with them.
    for (kind, text) in [("visits", visits), ("orders", orders)] {
        import(&clinic, kind, &format!("{kind}.csv"), text);
    }
    assert_eq!(credits(&clinic), []);
}
