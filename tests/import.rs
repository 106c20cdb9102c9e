//! `recall import`: a clinic's CRM exports, through the real binary. Upserts
//! by the clinic's ids, re-imports that change nothing, GBK files, and bad
//! files rejected whole with their lines.

mod common;

use common::{Clinic, at, stdout};
use predicates::prelude::*;
use recall::base::content::Content;
use recall::base::model::{Channel, Pool};
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
            content: Content::text("x"),
            fallback: None,
            due_at: sent,
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
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let total = report["recall"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "total")
        .unwrap();
    assert_eq!(total["recalled_revenue"], 0.0);
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

/// Runs `recall import` on a file that must fail; returns its stderr.
fn rejected(clinic: &Clinic, kind: &str, name: &str, bytes: &[u8]) -> String {
    let file = write(clinic, name, bytes);
    let out = clinic
        .recall()
        .args(["import", kind, &file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A visits file with a bad date on line 4 and an unknown customer on line
/// 7, after a blank line and a note over two lines, with `end` as its line
/// break.
fn visits_with_problems(end: &str) -> String {
    [
        "到院编号,客户编号,到院时间,备注",
        "V1,C1,2026-01-05,",
        "V2,C1,2026-01-06,\"first line",
        "second line\"",
        "",
        "V3,C1,someday,",
        "V4,C404,2026-01-07,",
    ]
    .join(end)
        + end
}

#[test]
fn errors_name_the_line_an_editor_shows_whatever_the_line_breaks() {
    let clinic = Clinic::new();
    import(&clinic, "customers", "customers.csv", CUSTOMERS);
    // Excel and HIS software write CRLF; old Mac software a lone CR.
    for (end, name) in [("\n", "lf.csv"), ("\r\n", "crlf.csv"), ("\r", "cr.csv")] {
        let stderr = rejected(
            &clinic,
            "visits",
            name,
            visits_with_problems(end).as_bytes(),
        );
        assert!(
            stderr.contains(&format!("{name}:6: `at` = `someday` is not a date")),
            "{end:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{name}:7: unknown customer `C404`")),
            "{end:?}: {stderr}"
        );
    }
}

#[test]
fn a_row_cut_short_is_named_by_its_line() {
    let clinic = Clinic::new();
    import(&clinic, "customers", "customers.csv", CUSTOMERS);
    let mut text = String::from("到院编号,客户编号,到院时间\n");
    for i in 2..=200 {
        text.push_str(&format!("V{i},C1,2026-01-05\n"));
    }
    text.push_str("V201,C1\n");
    let stderr = rejected(&clinic, "visits", "visits.csv", text.as_bytes());
    assert!(
        stderr.contains("visits.csv:201: the row has 2 cells and the header 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("record"), "{stderr}");
}

#[test]
fn a_file_of_random_bytes_gets_short_error_lines() {
    let clinic = Clinic::new();
    let mut rng = fastrand::Rng::with_seed(3);
    // Printable noise (it decodes, so the header is read and refused).
    let noise: String = (0..100_000).map(|_| rng.alphanumeric()).collect();
    let stderr = rejected(&clinic, "visits", "noise.csv", noise.as_bytes());
    assert!(stderr.contains("noise.csv:1: unknown column"), "{stderr}");
    assert!(
        stderr.lines().all(|line| line.len() < 300) && stderr.len() < 2_000,
        "{} bytes of errors: {}",
        stderr.len(),
        &stderr[..stderr.len().min(500)]
    );
    // Bytes that are neither UTF-8 nor GBK are refused before any row.
    let bytes: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
    let file = write(&clinic, "bytes.csv", &bytes);
    let out = clinic
        .recall()
        .args(["import", "visits", &file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("neither UTF-8 nor GBK"), "{stderr}");
    assert!(stderr.len() < 300, "{stderr}");
}

#[test]
fn headers_of_common_chinese_crm_and_his_exports_are_understood() {
    let clinic = Clinic::new();
    let files = [
        (
            "customers",
            "会员卡号,会员姓名,手机号码,电子邮箱,客户来源,客户标签,建档日期\n\
             M001,王丽,13812345678,wl@example.com,抖音,vip,2026-01-05\n",
        ),
        (
            "visits",
            "就诊单号,会员卡号,就诊时间,就诊科室\nJ1,M001,2026-01-05 10:00,皮肤科\n",
        ),
        (
            "orders",
            "收费单号,会员卡号,消费日期,实收金额(元),项目名称\nS1,M001,2026-01-05,2980,水光针\n",
        ),
        (
            "followups",
            "回访单号,档案号,回访日期,回访状态,回访人员,回访内容\nH1,M001,2026-01-06,顺畅,小林,满意\n",
        ),
    ];
    for (kind, text) in files {
        let out = import(&clinic, kind, &format!("{kind}.csv"), text);
        assert!(out.contains("1 new, 0 updated"), "{kind}: {out}");
    }
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM customers WHERE external_id = 'M001' AND name = '王丽'
             AND phone = '13812345678' AND source_channel = '抖音'"
        ),
        1
    );
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM orders WHERE project = '水光针' AND amount_cents = 298000"
        ),
        1
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM followups WHERE staff = '小林' AND note = '满意'"),
        1
    );
}

#[test]
fn init_writes_the_consent_default_and_import_says_when_it_applies_it() {
    let clinic = Clinic {
        dir: tempfile::tempdir().unwrap(),
    };
    clinic.recall().args(["init", "."]).assert().success();
    let config = std::fs::read_to_string(clinic.config()).unwrap();
    assert!(
        config.contains("[consent]\ndefault_when_absent = true\n"),
        "{config}"
    );

    // No consent column: the default applies to new customers, and is said.
    let out = import(
        &clinic,
        "customers",
        "a.csv",
        "客户编号,姓名,短信同意\nC1,王丽,否\nC2,李雷,\n",
    );
    assert!(
        out.contains(
            "2 new customer(s) without consent_sms, consent_phone, consent_wechat, consent_email: consent set to yes by [consent] default_when_absent"
        ),
        "{out}"
    );
    assert_eq!(
        clinic.count(
            "SELECT consent_sms * 10 + consent_phone FROM customers WHERE external_id = 'C1'"
        ),
        1
    );
    assert_eq!(
        clinic.count(
            "SELECT consent_sms * 10 + consent_phone FROM customers WHERE external_id = 'C2'"
        ),
        11
    );

    // A clinic that wants explicit consent only.
    clinic.edit_config("default_when_absent = true", "default_when_absent = false");
    let out = import(
        &clinic,
        "customers",
        "b.csv",
        "客户编号,姓名\nC2,李雷\nC3,韩梅梅\n",
    );
    assert!(
        out.contains("1 new customer(s) without consent_sms, consent_phone, consent_wechat, consent_email: consent set to no"),
        "{out}"
    );
    assert_eq!(
        clinic.count(
            "SELECT consent_sms + consent_phone + consent_wechat + consent_email FROM customers WHERE external_id = 'C3'"
        ),
        0
    );
    assert_eq!(
        clinic.count(
            "SELECT consent_sms + consent_phone + consent_wechat + consent_email FROM customers WHERE external_id = 'C2'"
        ),
        4,
        "a customer already imported keeps their consent"
    );
    // Every channel given: nothing defaulted, nothing said.
    let out = import(
        &clinic,
        "customers",
        "c.csv",
        "客户编号,短信同意,电话同意,微信同意,邮件同意\nC4,是,是,否,否\n",
    );
    assert!(!out.contains("default_when_absent"), "{out}");
}

#[test]
fn one_bad_row_near_the_end_of_a_big_file_imports_nothing() {
    let clinic = Clinic::new();
    import(&clinic, "customers", "customers.csv", CUSTOMERS);
    let before = dump(&clinic);
    let rows = 30_000;
    let mut text = String::from("到院编号,客户编号,到院时间,科室\r\n");
    for i in 0..rows {
        let customer = if i % 2 == 0 { "C1" } else { "C2" };
        text.push_str(&format!("V{i},{customer},2026-01-05 10:00,皮肤科\r\n"));
    }
    // Line 1 is the header, so row i is on line i + 2.
    let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
    let mut bad = lines.clone();
    let near_end = rows - 5 + 2;
    let line = format!("V{},C404,2026-01-05 10:00,皮肤科\r\n", rows - 5);
    bad[near_end - 1] = &line;
    let last = "V7,C1,2026-01-06,皮肤科\r\n".to_string();
    bad.push(&last);
    let stderr = rejected(&clinic, "visits", "big.csv", bad.concat().as_bytes());
    assert!(
        stderr.contains(&format!("big.csv:{near_end}: unknown customer `C404`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "big.csv:{}: id `V7` appears twice (lines 9 and {})",
            rows + 2,
            rows + 2
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 problem(s): nothing was imported"),
        "{stderr}"
    );
    assert_eq!(dump(&clinic), before, "nothing of the file was written");

    // The same file without its bad rows: every row, and no progress bar
    // off a terminal, only the summary.
    let file = write(&clinic, "big.csv", text.as_bytes());
    let out = clinic
        .recall()
        .args(["import", "visits", &file])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(
        stdout(&out),
        format!("big.csv: {rows} visits rows: {rows} new, 0 updated, 0 unchanged\n")
    );
    assert_eq!(clinic.count("SELECT count(*) FROM visits"), rows as i64);
}
