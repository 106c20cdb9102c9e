//! One reader of phone numbers (`base::phone`) for import and dispatch:
//! every common way of typing a number is stored in one form, what is no
//! number is refused with its line, and a message to a number that cannot
//! be reached fails here, before any provider is called.

mod common;

use common::{Clinic, stdout};

fn write(clinic: &Clinic, name: &str, text: &str) -> String {
    std::fs::write(clinic.path().join(name), text).unwrap();
    name.to_string()
}

fn phones(clinic: &Clinic) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare("SELECT external_id, phone FROM customers ORDER BY external_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn import_stores_every_way_of_typing_a_number_in_one_form() {
    let clinic = Clinic::new();
    let file = write(
        &clinic,
        "customers.csv",
        "客户编号,姓名,手机\n\
         C1,甲,138 0013 8000\n\
         C2,乙,+86 139-0013-9000\n\
         C3,丙,8613600136000\n\
         C4,丁,0086 137 0013 7000\n\
         C5,戊,（86）135-0013-5000\n\
         C6,己,+852 9123 4567\n",
    );
    clinic
        .recall()
        .args(["import", "customers", &file])
        .assert()
        .success();
    let expected = [
        ("C1", "13800138000"),
        ("C2", "13900139000"),
        ("C3", "13600136000"),
        ("C4", "13700137000"),
        ("C5", "13500135000"),
        ("C6", "+85291234567"),
    ];
    assert_eq!(
        phones(&clinic),
        expected.map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn what_is_no_number_is_refused_with_its_line_and_nothing_is_imported() {
    let clinic = Clinic::new();
    let file = write(
        &clinic,
        "customers.csv",
        "客户编号,姓名,手机\n\
         C1,甲,13800138000\n\
         C2,乙,1.38E+10\n\
         C3,丙,abc-phone\n\
         C4,丁,13800138000/13900139000\n\
         C5,戊,12345614\n",
    );
    let out = clinic
        .recall()
        .args(["import", "customers", &file])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, words) in [
        (3, "scientific notation"),
        (4, "`abc-phone` is not a phone number"),
        (5, "one number a cell"),
        (6, "`12345614` is not a phone number"),
    ] {
        let needle = format!("customers.csv:{line}:");
        let shown = err
            .lines()
            .find(|l| l.starts_with(&needle))
            .unwrap_or_else(|| panic!("no error at line {line}:\n{err}"));
        assert!(shown.contains(words), "{shown}");
    }
    assert!(phones(&clinic).is_empty(), "all or nothing");
}

#[test]
fn a_clinic_elsewhere_reads_numbers_by_its_own_country_code() {
    let clinic = Clinic::new();
    clinic.edit_config(
        "timezone = \"Asia/Shanghai\"",
        "timezone = \"Asia/Shanghai\"\ncountry_code = \"1\"",
    );
    let file = write(
        &clinic,
        "customers.csv",
        "external_id,name,phone\nA,Ann,(415) 555-0016\nB,Bob,1-415-555-0017\nC,Cy,+86 138 0013 8000\n",
    );
    clinic
        .recall()
        .args(["import", "customers", &file])
        .assert()
        .success();
    let expected = [
        ("A", "4155550016"),
        ("B", "4155550017"),
        ("C", "+8613800138000"),
    ];
    assert_eq!(
        phones(&clinic),
        expected.map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // `recall customer` reads a typed number by the same country.
    let out = clinic
        .recall()
        .args(["customer", "+1 415-555-0016", "--format", "json"])
        .output()
        .unwrap();
    let found = stdout(&out);
    assert!(out.status.success() && found.contains("Ann"), "{found}");
    assert!(!found.contains("Bob"), "{found}");

    clinic.edit_config("country_code = \"1\"", "country_code = \"+0\"");
    let out = clinic.recall().arg("check").output().unwrap();
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("`+0` is not a country calling code") && text.contains("recall.toml:"),
        "{text}"
    );
}

#[test]
fn a_message_to_a_number_that_cannot_be_reached_fails_without_a_provider_call() {
    let clinic = Clinic::demo(60);
    clinic.without_quiet_hours();
    // Numbers that came in before import checked them.
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.execute("UPDATE customers SET phone = '12345614'", [])
        .unwrap();
    drop(conn);
    let log = clinic.path().join("data/outbox.log");
    let logged_before = std::fs::read_to_string(&log).unwrap_or_default().len();
    clinic.recall().arg("tick").assert().success();
    let tick: i64 = clinic.count("SELECT max(at) FROM ticks");
    let sms = format!("created_at = {tick} AND channel = 'sms'");
    assert!(
        clinic.count(&format!("SELECT count(*) FROM outreach WHERE {sms}")) > 0,
        "the tick queued SMS"
    );
    clinic.recall().arg("dispatch").assert().success();
    assert_eq!(
        clinic.count(&format!(
            "SELECT count(*) FROM outreach WHERE {sms} AND status IN ('sent', 'awaiting')"
        )),
        0
    );
    let failed = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE {sms} AND status = 'failed' AND last_error LIKE 'invalid_address: %'"
    ));
    let reached = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE {sms} AND status NOT IN ('suppressed', 'held_out', 'queued')"
    ));
    assert!(failed > 0 && failed == reached, "{failed} of {reached}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged[logged_before..].contains("12345614"),
        "the log sender was not handed the number"
    );
}
