//! Rule authoring through the real binary: `recall test` on the shipped
//! rules and their shipped tests, failures that read like a diff, and
//! broken test files that point at their line.

mod common;

use common::{Clinic, stdout};
use predicates::prelude::*;

#[test]
fn the_shipped_rules_pass_their_shipped_tests() {
    let clinic = Clinic::new();
    let out = clinic.recall().arg("test").output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("18 passed, 0 failed"), "{text}");
    assert!(
        !text.contains("no test case makes these rules fire"),
        "every shipped rule is tested: {text}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_expected_and_got() {
    let clinic = Clinic::new();
    let file = clinic.path().join("rules/tests/03-warning.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "to = \"customer\", rule = \"warning_recovered\"",
        "to = \"maintenance\", rule = \"warning_recovered\"",
    );
    std::fs::write(&file, text).unwrap();
    let out = clinic
        .recall()
        .args(["test", "rules/tests/03-warning.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  预警期间再次到院且回访顺畅，回到顾客池"),
        "{text}"
    );
    assert!(
        text.contains("expected: C1 → maintenance (warning_recovered)"),
        "{text}"
    );
    assert!(
        text.contains("got:      C1 → customer (warning_recovered)"),
        "{text}"
    );
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[test]
fn a_rule_change_that_breaks_behaviour_is_caught_by_the_tests() {
    let clinic = Clinic::new();
    // Someone "tidies up" the inactivity threshold from 90 to 120 days.
    let rules = clinic.path().join("rules/02-customer.toml");
    let text = std::fs::read_to_string(&rules).unwrap().replace(
        "days_since_last_visit >= 90",
        "days_since_last_visit >= 120",
    );
    std::fs::write(&rules, text).unwrap();
    clinic.recall().arg("check").assert().success();
    let out = clinic.recall().arg("test").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL  90天未到院的顾客转入预警池，微信关怀"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_broken_test_file_points_at_its_line() {
    let clinic = Clinic::new();
    std::fs::write(
        clinic.path().join("rules/tests/broken.toml"),
        "[[case]]\nname = \"x\"\n[[case.tick]]\nat = \"2026-03-01\"\nmovs = []\n",
    )
    .unwrap();
    clinic
        .recall()
        .args(["test", "rules/tests/broken.toml"])
        .assert()
        .failure()
        .stdout(predicate::str::contains("rules/tests/broken.toml:5:1"))
        .stdout(predicate::str::contains("did you mean `moves`?"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn simulate_replays_a_period_compares_two_rule_sets_and_touches_nothing() {
    let clinic = Clinic::demo(200);
    // A proposed change: no more SMS offers to the maintenance pool.
    let proposal = clinic.path().join("rules-proposal");
    copy_dir(&clinic.path().join("rules"), &proposal);
    let file = proposal.join("04-maintenance.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "id = \"maintenance_offer_sms\"",
        "id = \"maintenance_offer_sms\"\nenabled = false",
    );
    std::fs::write(&file, text).unwrap();

    let before = clinic.history();
    let ticks_before = clinic.count("SELECT count(*) FROM ticks");
    // The demo's days, not the wall clock's: midnight may have passed since.
    let today = clinic.demo_today();
    let from = (today - chrono::Duration::days(60)).to_string();
    let to = (today - chrono::Duration::days(2)).to_string();
    let out = clinic
        .recall()
        .args([
            "simulate",
            "--from",
            &from,
            "--to",
            &to,
            "--against",
            "rules-proposal",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("58 ticks, nothing was sent"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("maintenance_offer_sms"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row
        .split('┆')
        .map(|c| c.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect();
    let now: i64 = cells[2].parse().unwrap();
    assert!(
        now > 0,
        "the shipped rule sends offers in this period: {row}"
    );
    assert_eq!(cells[4], "0", "the proposal sends none: {row}");
    assert_eq!(cells[6], format!("-{now}"), "{row}");
    assert!(text.contains("estimated total cost (yuan)"), "{text}");

    assert_eq!(clinic.history(), before, "the live database is untouched");
    assert_eq!(clinic.count("SELECT count(*) FROM ticks"), ticks_before);
}

#[test]
fn check_speaks_chinese_on_one_screen() {
    let clinic = Clinic::new();
    let rules = clinic.path().join("rules/03-warning.toml");
    let text = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("days_in_pool >= 7", "days_in_pool >= '7'");
    std::fs::write(&rules, text).unwrap();
    let out = clinic
        .recall()
        .args(["check", "--lang", "zh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("错误: 数字与文本比较，永远不会成立"),
        "{text}"
    );
    assert!(text.contains("--> rules/03-warning.toml:"), "{text}");
    assert!(text.contains("= 提示: 文本要加引号"), "{text}");
    assert!(text.contains("1 个错误"), "{text}");
    assert!(text.lines().count() < 20, "one screen: {text}");
}
