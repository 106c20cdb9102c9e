//! The path a clinic takes, through the real binary: init → check → tick →
//! dispatch → log, re-runs that add nothing, and broken rules that `check`
//! rejects with their line.

mod common;

use common::{Clinic, stdout};
use predicates::prelude::*;

#[test]
fn init_check_tick_dispatch_log() {
    let clinic = Clinic::demo(150);
    clinic
        .recall()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("ok: 20 rules"));

    let before_moves = clinic.count("SELECT count(*) FROM transitions");
    let tick = clinic
        .recall()
        .args(["tick", "--at", "2099-01-01 09:00"])
        .output()
        .unwrap();
    assert!(
        tick.status.success(),
        "{}",
        String::from_utf8_lossy(&tick.stderr)
    );
    let text = stdout(&tick);
    assert!(
        text.contains("tick at 2099-01-01 09:00 (Asia/Shanghai): 150 customers evaluated"),
        "{text}"
    );
    let moves = clinic.count("SELECT count(*) FROM transitions") - before_moves;
    assert!(
        moves > 0,
        "a tick far in the future moves customers: {text}"
    );
    assert!(text.contains(&format!("{moves} moves")), "{text}");

    let queued = clinic.count("SELECT count(*) FROM outreach WHERE status = 'queued'");
    assert!(queued > 0);
    let dispatch = clinic
        .recall()
        .args(["dispatch", "--at", "2099-01-02 09:00"])
        .output()
        .unwrap();
    assert!(dispatch.status.success());
    let sent = clinic
        .count("SELECT count(*) FROM outreach WHERE status = 'sent' AND sent_at >= 4070908800");
    let suppressed = clinic.count(
        "SELECT count(*) FROM outreach WHERE status = 'suppressed' AND updated_at >= 4070908800",
    );
    // What was not sent waits with its reason: phone calls until 10:00 (quiet
    // hours 20:00-10:00), others over a frequency cap until it allows them.
    let waiting = clinic.count(
        "SELECT count(*) FROM outreach WHERE status = 'queued' AND (last_error LIKE 'quiet hours%' OR last_error LIKE 'frequency cap%')",
    );
    assert_eq!(
        sent + suppressed + waiting,
        queued,
        "every due message was handled"
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'sent' AND channel = 'phone' AND sent_at >= 4070908800"),
        0,
        "no calls before 10:00"
    );
    assert!(clinic.count("SELECT count(*) FROM outreach WHERE channel = 'phone' AND status = 'queued' AND due_at = 4071002400") > 0);
    assert!(
        stdout(&dispatch).contains(&format!("{sent} sent")),
        "{}",
        stdout(&dispatch)
    );
    assert_eq!(
        clinic
            .count("SELECT count(*) FROM outreach WHERE status = 'queued' AND last_error IS NULL"),
        0
    );

    // The log shows them, and CSV and JSON carry the same rows.
    let json = clinic
        .recall()
        .args([
            "log",
            "--since",
            "2099-01-01",
            "--limit",
            "0",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    // Every message of the tick, held-out (control group) ones included.
    assert_eq!(
        entries.len() as i64,
        clinic.count("SELECT count(*) FROM outreach WHERE created_at >= 4070880000")
    );
    assert!(entries.len() as i64 >= queued);
    let sent_entry = entries.iter().find(|e| e["status"] == "sent").unwrap();
    assert_eq!(sent_entry["sender"], "log");
    assert!(
        sent_entry["provider_id"]
            .as_str()
            .unwrap()
            .starts_with("log-")
    );
    assert!(!sent_entry["content"].as_str().unwrap().is_empty());
    let csv = clinic
        .recall()
        .args([
            "log",
            "--since",
            "2099-01-01",
            "--limit",
            "0",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    let rows = csv::Reader::from_reader(csv.stdout.as_slice())
        .records()
        .count();
    assert_eq!(rows, entries.len());

    // The log sender wrote each message to its file, addresses masked.
    let outbox = std::fs::read_to_string(clinic.path().join("data/outbox.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(outbox.lines().last().unwrap()).unwrap();
    assert!(
        last["to"].as_str().unwrap().contains("****")
            || last["to"].as_str().unwrap().contains("***")
    );

    let status = clinic.recall().arg("status").output().unwrap();
    let text = stdout(&status);
    assert!(
        text.contains("150 customers") && text.contains("预警池"),
        "{text}"
    );
    assert!(
        text.contains("last tick: 2099-01-01 09:00 (done)"),
        "{text}"
    );

    let moves = clinic
        .recall()
        .args(["log", "--moves", "--limit", "3"])
        .output()
        .unwrap();
    assert!(stdout(&moves).contains("reason"), "{}", stdout(&moves));
}

#[test]
fn a_tick_rerun_at_the_same_time_adds_nothing() {
    let clinic = Clinic::demo(120);
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01 09:00"])
        .assert()
        .success();
    let before = clinic.history();
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01 09:00"])
        .assert()
        .success()
        .stdout(predicate::str::contains("already ran"));
    assert_eq!(clinic.history(), before);
}

#[test]
fn a_tick_cannot_go_back_in_time() {
    let clinic = Clinic::demo(50);
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01 09:00"])
        .assert()
        .success();
    clinic
        .recall()
        .args(["tick", "--at", "2098-12-31 09:00"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("would go back in time"));
}

#[test]
fn dry_run_writes_nothing() {
    let clinic = Clinic::demo(80);
    let before = clinic.history();
    let ticks = clinic.count("SELECT count(*) FROM ticks");
    let out = clinic
        .recall()
        .args([
            "tick",
            "--at",
            "2099-01-01 09:00",
            "--dry-run",
            "--show",
            "3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("dry run at 2099-01-01 09:00: nothing was written"),
        "{text}"
    );
    assert!(
        text.contains("would queue") && text.contains("examples:"),
        "{text}"
    );
    assert_eq!(clinic.history(), before);
    assert_eq!(clinic.count("SELECT count(*) FROM ticks"), ticks);
}

#[test]
fn check_rejects_a_broken_rule_with_file_line_and_suggestion() {
    let clinic = Clinic::new();
    let path = clinic.path().join("rules/02-customer.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replace("days_since_last_visit >= 90", "days_since_last_vist >= 90");
    assert_ne!(broken, text);
    std::fs::write(&path, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("days_since_last_vist"))
        .unwrap()
        + 1;
    let out = clinic.recall().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("rules/02-customer.toml:{line}:9")),
        "{text}"
    );
    assert!(
        text.contains("unknown fact `days_since_last_vist`"),
        "{text}"
    );
    assert!(
        text.contains("did you mean `days_since_last_visit`?"),
        "{text}"
    );
    assert!(
        text.contains("when = \"days_since_last_vist >= 90 &&"),
        "{text}"
    );
    assert!(text.contains("^^^^"), "{text}");

    // A tick refuses to run on broken rules, and says why.
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nothing was done"));
}

#[test]
fn check_reports_errors_in_several_files_at_once() {
    let clinic = Clinic::new();
    let rules = clinic.path().join("rules/03-warning.toml");
    let text = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("to = \"maintenance\"", "to = \"maintenence\"");
    std::fs::write(&rules, text).unwrap();
    let template = clinic.path().join("templates/sms/warning_offer.txt");
    std::fs::write(&template, "{{ customer.salutaton }}您好").unwrap();
    let config = clinic.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("Asia/Shanghai", "Asia/Shangai");
    std::fs::write(&config, text).unwrap();

    let out = clinic.recall().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("unknown time zone `Asia/Shangai`") && text.contains("Asia/Shanghai"),
        "{text}"
    );

    // With the config fixed, rule and template errors show together.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("Asia/Shangai", "Asia/Shanghai");
    std::fs::write(&config, text).unwrap();
    let out = clinic.recall().arg("check").output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("unknown pool `maintenence`") && text.contains("did you mean `maintenance`?"),
        "{text}"
    );
    assert!(
        text.contains("`customer` has no `salutaton`")
            && text.contains("did you mean `salutation`?"),
        "{text}"
    );
}

#[test]
fn facts_are_listed_with_definitions() {
    let clinic = Clinic::new();
    let out = clinic
        .recall()
        .args(["facts", "--format", "json"])
        .output()
        .unwrap();
    let facts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = facts.iter().map(|f| f["fact"].as_str().unwrap()).collect();
    for expected in [
        "pool",
        "days_in_pool",
        "days_since_first_visit",
        "days_since_last_visit",
        "days_since_last_purchase",
        "visit_count",
        "purchase_count",
        "total_spend",
        "last_followup_result",
        "days_since_last_followup",
        "not_smooth_followups_30d",
        "contacts_in_pool",
        "days_since_last_contact",
        "age",
        "gender",
        "city",
        "tags",
    ] {
        assert!(names.contains(&expected), "missing fact {expected}");
    }
}

#[test]
fn init_refuses_to_overwrite_a_clinic() {
    let clinic = Clinic::new();
    clinic
        .recall()
        .args(["init", "."])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not overwrite"));
}

#[test]
fn commands_without_a_config_explain_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    common::recall_in(dir.path())
        .arg("status")
        .assert()
        .failure()
        .stderr(predicate::str::contains("recall init"));
}

#[test]
fn a_second_tick_or_dispatcher_on_the_same_database_waits_its_turn() {
    let clinic = Clinic::demo(20);
    let store = recall::store::Store::open(&clinic.database()).unwrap();
    let tick_lock = store
        .try_lock(recall::store::LockKind::Tick)
        .unwrap()
        .unwrap();
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "another process is running a tick",
        ));
    drop(tick_lock);
    let dispatch_lock = store
        .try_lock(recall::store::LockKind::Dispatch)
        .unwrap()
        .unwrap();
    clinic
        .recall()
        .args(["dispatch", "--at", "2099-01-01"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("the service is dispatching"));
    drop(dispatch_lock);
    clinic
        .recall()
        .args(["tick", "--at", "2099-01-01"])
        .assert()
        .success();
}
