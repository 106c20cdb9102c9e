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
    assert!(text.contains("14 passed, 0 failed"), "{text}");
    assert!(!text.contains("no test case makes these rules fire"), "every shipped rule is tested: {text}");
}

#[test]
fn a_wrong_expectation_fails_with_expected_and_got() {
    let clinic = Clinic::new();
    let file = clinic.path().join("rules/tests/03-warning.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("to = \"customer\", rule = \"warning_recovered\"", "to = \"maintenance\", rule = \"warning_recovered\"");
    std::fs::write(&file, text).unwrap();
    let out = clinic.recall().args(["test", "rules/tests/03-warning.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAIL  预警期间再次到院且回访顺畅，回到顾客池"), "{text}");
    assert!(text.contains("expected: C1 → maintenance (warning_recovered)"), "{text}");
    assert!(text.contains("got:      C1 → customer (warning_recovered)"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[test]
fn a_rule_change_that_breaks_behaviour_is_caught_by_the_tests() {
    let clinic = Clinic::new();
    // Someone "tidies up" the inactivity threshold from 90 to 120 days.
    let rules = clinic.path().join("rules/02-customer.toml");
    let text = std::fs::read_to_string(&rules).unwrap().replace("days_since_last_visit >= 90", "days_since_last_visit >= 120");
    std::fs::write(&rules, text).unwrap();
    clinic.recall().arg("check").assert().success();
    let out = clinic.recall().arg("test").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL  90天未到院的顾客转入预警池，微信关怀"), "{}", stdout(&out));
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
