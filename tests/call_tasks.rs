//! Phone calls as tasks for the front desk, through the real binary:
//! dispatch plans them, `recall tasks` lists and exports them, and
//! `recall tasks done` records what each call achieved.

mod common;

use common::{Clinic, stdout};
use predicates::prelude::*;

/// Phone messages become call tasks for two people, 2 calls a day each.
fn with_call_tasks(clinic: &Clinic) {
    let config = clinic.config();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[channels.phone]\nsender = \"log\"\ncost = 2.0",
        "[senders.calls]\nkind = \"phone_tasks\"\nstaff = [{ name = \"小林\", daily_capacity = 2 }, { name = \"小周\", daily_capacity = 2 }]\nworking_hours = \"10:00-19:00\"\n\n[channels.phone]\nsender = \"calls\"\ncost = 2.5",
    );
    assert!(text.contains("kind = \"phone_tasks\""));
    std::fs::write(config, text).unwrap();
}

// 2099-01-05 is a Monday.
const MONDAY: &str = "2099-01-05";

#[test]
fn dispatch_plans_calls_staff_work_them_and_outcomes_settle_the_messages() {
    let clinic = Clinic::demo(150);
    with_call_tasks(&clinic);
    clinic.recall().arg("check").assert().success();
    clinic
        .recall()
        .args(["tick", "--at", &format!("{MONDAY} 09:00")])
        .assert()
        .success();
    let phone_messages = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE channel = 'phone' AND status = 'queued' AND created_at >= strftime('%s', '{MONDAY}', '-8 hours')"
    ));
    assert!(
        phone_messages > 4,
        "the test needs more phone messages than today's capacity: {phone_messages}"
    );

    let out = clinic
        .recall()
        .args(["dispatch", "--at", &format!("{MONDAY} 11:00")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks"),
        4,
        "two people, two calls each"
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'awaiting'"),
        4
    );
    assert_eq!(
        clinic.count("SELECT sum(cost_milli) FROM outreach WHERE status = 'awaiting'"),
        4 * 2500
    );

    let list = clinic
        .recall()
        .args(["tasks", "list", "--date", MONDAY, "--format", "json"])
        .output()
        .unwrap();
    let tasks: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tasks.len(), 4);
    assert!(
        tasks
            .iter()
            .all(|t| t["phone"].as_str().unwrap().contains("****")),
        "the list masks phone numbers"
    );
    let per_person = |name: &str| tasks.iter().filter(|t| t["staff"] == name).count();
    assert_eq!((per_person("小林"), per_person("小周")), (2, 2));

    let export = clinic
        .recall()
        .args(["tasks", "export", "--date", MONDAY, "--lang", "en"])
        .output()
        .unwrap();
    let mut csv = csv::Reader::from_reader(export.stdout.as_slice());
    let headers = csv.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (phone, script) = (column("phone"), column("script"));
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 4);
    assert!(
        !rows[0][phone].contains('*') && rows[0][phone].len() >= 11,
        "the export carries the number to call"
    );
    assert!(
        rows[0][script].contains("近况"),
        "the script carries the customer's history"
    );

    let id = |i: usize| tasks[i]["id"].as_i64().unwrap().to_string();
    clinic
        .recall()
        .args([
            "tasks",
            "done",
            &id(0),
            "--outcome",
            "reached_booked",
            "--note",
            "周六下午到院",
            "--at",
            &format!("{MONDAY} 14:00"),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("recorded as reached_booked"));
    clinic
        .recall()
        .args([
            "tasks",
            "done",
            &id(1),
            "--outcome",
            "no_answer",
            "--at",
            &format!("{MONDAY} 14:05"),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "called again from 2099-01-06 10:00",
        ));
    clinic
        .recall()
        .args([
            "tasks",
            "done",
            &id(2),
            "--outcome",
            "opt_out",
            "--at",
            &format!("{MONDAY} 14:10"),
        ])
        .assert()
        .success();
    // Typos get a suggestion; a task is closed once.
    clinic
        .recall()
        .args(["tasks", "done", &id(3), "--outcome", "reached_bokked"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("did you mean `reached_booked`?"));
    clinic
        .recall()
        .args(["tasks", "done", &id(0), "--outcome", "no_answer"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already done"));

    assert_eq!(clinic.count("SELECT count(*) FROM outreach WHERE channel = 'phone' AND status = 'sent' AND sent_at >= strftime('%s', '2099-01-01')"), 1);
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM outreach WHERE status = 'opted_out' AND channel = 'phone'"
        ),
        1
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM followups WHERE note LIKE 'call task #%'"),
        3,
        "each recorded call is a follow-up the rules see"
    );
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM followups WHERE note LIKE '%周六下午到院%' AND result = 'smooth'"
        ),
        1
    );
    let open = clinic
        .recall()
        .args(["tasks", "list", "--date", MONDAY, "--format", "csv"])
        .output()
        .unwrap();
    assert_eq!(
        csv::Reader::from_reader(open.stdout.as_slice())
            .records()
            .count(),
        1,
        "one task still open"
    );

    // Tuesday: the rest of Monday's messages and the unanswered call get tasks.
    let out = clinic
        .recall()
        .args(["dispatch", "--at", "2099-01-06 10:30"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE due_date = '2099-01-06'"),
        4
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM call_tasks WHERE attempt = 2"),
        1
    );
    let text = stdout(
        &clinic
            .recall()
            .args(["tasks", "list", "--date", "2099-01-06"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("小林") && text.contains("小周"), "{text}");
}

#[test]
fn tasks_commands_explain_when_calls_are_not_tasks() {
    let clinic = Clinic::new();
    clinic
        .recall()
        .args(["tasks", "done", "1", "--outcome", "no_answer"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not phone_tasks"));
}
