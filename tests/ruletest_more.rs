//! `recall test` through the real binary: cases that check nothing are
//! errors, failures read in Chinese under --lang zh, and a test file that
//! cannot be read is said to be so rather than counted as "0 failed".

mod common;

use common::{Clinic, stdout};

fn run(clinic: &Clinic, args: &[&str]) -> (i32, String) {
    let out = clinic.recall().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

#[test]
fn a_case_without_ticks_or_a_tick_without_expectations_is_an_error() {
    let clinic = Clinic::new();
    std::fs::write(
        clinic.path().join("rules/tests/empty.toml"),
        "[[case]]\nname = \"没有 tick\"\n[[case.customer]]\nid = \"C1\"\nvisits = [\"2026-01-01 10:00\"]\n\n[[case]]\nname = \"tick 没有期望\"\n[[case.customer]]\nid = \"C1\"\nvisits = [\"2026-01-01 10:00\"]\n[[case.tick]]\nat = \"2026-01-02 09:00\"\n",
    )
    .unwrap();
    let (code, text) = run(&clinic, &["test", "--lang", "en", "rules/tests/empty.toml"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("case `没有 tick` checks nothing: it has no [[case.tick]]"),
        "{text}"
    );
    assert!(
        text.contains("this tick of case `tick 没有期望` checks nothing"),
        "{text}"
    );
    assert!(text.contains("--> rules/tests/empty.toml:1:1"), "{text}");
    assert!(text.contains("--> rules/tests/empty.toml:12:1"), "{text}");
    assert!(
        text.contains("^^^^^^^^^^^^^"),
        "a caret under [[case.tick]]: {text}"
    );
    assert!(
        !text.contains("  ok "),
        "nothing is reported as passing: {text}"
    );
    let (_, zh) = run(&clinic, &["test", "--lang", "zh", "rules/tests/empty.toml"]);
    assert!(zh.contains("用例 `没有 tick` 什么也没检查"), "{zh}");
}

#[test]
fn failures_are_in_chinese_under_lang_zh() {
    let clinic = Clinic::new();
    let file = clinic.path().join("rules/tests/03-warning.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "to = \"customer\", rule = \"warning_recovered\"",
        "to = \"maintenance\", rule = \"warning_recovered\"",
    );
    std::fs::write(&file, text).unwrap();
    let (code, text) = run(
        &clinic,
        &["test", "--lang", "zh", "rules/tests/03-warning.toml"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("流转："), "{text}");
    assert!(
        text.contains("期望：C1 → maintenance (warning_recovered)"),
        "{text}"
    );
    assert!(
        text.contains("实际：C1 → customer (warning_recovered)"),
        "{text}"
    );
    assert!(!text.contains("expected:"), "{text}");
    assert!(!text.contains("got:"), "{text}");
}

#[test]
fn a_test_file_that_cannot_be_read_is_said_so() {
    let clinic = Clinic::new();
    std::fs::write(
        clinic.path().join("rules/tests/broken.toml"),
        "[[case]]\nname = \"x\"\n[[case.tick]\n",
    )
    .unwrap();
    let (code, text) = run(
        &clinic,
        &["test", "--lang", "en", "rules/tests/broken.toml"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "1 test file(s) could not be read, so none of their cases ran: rules/tests/broken.toml"
        ),
        "{text}"
    );
    let (_, zh) = run(
        &clinic,
        &["test", "--lang", "zh", "rules/tests/broken.toml"],
    );
    assert!(zh.contains("1 个测试文件无法读取"), "{zh}");
}

#[test]
fn bad_times_and_names_in_a_case_point_at_the_value_before_anything_runs() {
    let clinic = Clinic::new();
    std::fs::write(
        clinic.path().join("rules/tests/typos.toml"),
        "[[case]]\nname = \"x\"\n[[case.customer]]\nid = \"C1\"\ngender = \"femal\"\nvisits = [\"2026-02-30 10:00\"]\nfollowups = [{ at = \"2026-03-01\", result = \"smoth\" }]\n[[case.customer]]\nid = \"C2\"\n[[case.tick]]\nat = \"2026-03-01 09:00\"\nmoves = []\n",
    )
    .unwrap();
    let (code, text) = run(&clinic, &["test", "--lang", "en", "rules/tests/typos.toml"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--> rules/tests/typos.toml:5:11"), "{text}");
    assert!(text.contains("unknown gender `femal`"), "{text}");
    assert!(text.contains("did you mean `female`?"), "{text}");
    assert!(text.contains("--> rules/tests/typos.toml:6:12"), "{text}");
    assert!(text.contains("`2026-02-30 10:00` is not a time"), "{text}");
    assert!(text.contains("did you mean `smooth`?"), "{text}");
    assert!(
        text.contains("customer `C2` has no visit and no first_seen"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "nothing ran: {text}");
    let (_, zh) = run(&clinic, &["test", "--lang", "zh", "rules/tests/typos.toml"]);
    assert!(zh.contains("未知的性别 `femal`"), "{zh}");
    assert!(zh.contains("`2026-02-30 10:00` 不是时间"), "{zh}");
}
