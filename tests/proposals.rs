//! A proposal folder with its own rules and templates, checked, tested and
//! simulated before it goes live: `--rules DIR` and `--templates DIR` on
//! `check`, `test` and `simulate` (and `--against-templates` beside
//! `--against`), each saying which folders it used.

mod common;

use std::path::Path;

use common::{Clinic, stdout};

/// Copies a folder and its subfolders.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Replaces `from` with `to` in every `.toml` file under `dir`.
fn replace_in_tree(dir: &Path, from: &str, to: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            replace_in_tree(&path, from, to);
        } else if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace(from, to)).unwrap();
        }
    }
}

/// A demo clinic and `proposal/`: its rules send the warning pool's SMS
/// offer from a new template, `warning_offer_v2`, which only the
/// proposal's templates hold.
fn clinic_with_proposal() -> Clinic {
    let clinic = Clinic::demo(60);
    let proposal = clinic.path().join("proposal");
    copy_tree(&clinic.path().join("rules"), &proposal.join("rules"));
    copy_tree(
        &clinic.path().join("templates"),
        &proposal.join("templates"),
    );
    replace_in_tree(
        &proposal.join("rules"),
        "\"warning_offer\"",
        "\"warning_offer_v2\"",
    );
    let sms = proposal.join("templates/sms");
    std::fs::write(
        sms.join("warning_offer_v2.txt"),
        "{{ customer.salutation }}您好，{{ clinic.name }}本月为您准备了补水护理8折。预约请致电{{ clinic.phone }}。回T退订\n",
    )
    .unwrap();
    std::fs::copy(
        sms.join("warning_offer.params.toml"),
        sms.join("warning_offer_v2.params.toml"),
    )
    .unwrap();
    clinic
}

fn run(clinic: &Clinic, args: &[&str]) -> (bool, String) {
    let out = clinic.recall().args(args).output().unwrap();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn check_reads_the_proposals_folders_and_says_which() {
    let clinic = clinic_with_proposal();
    let both = [
        "check",
        "--rules",
        "proposal/rules",
        "--templates",
        "proposal/templates",
    ];
    let (ok, text) = run(&clinic, &both);
    assert!(ok, "{text}");
    assert!(
        text.contains("Rules: proposal/rules   Templates: proposal/templates"),
        "{text}"
    );
    let (ok, text) = run(
        &clinic,
        &["check", "--lang", "zh", both[1], both[2], both[3], both[4]],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("规则目录：proposal/rules   模板目录：proposal/templates"),
        "{text}"
    );

    // The proposal's rules against the clinic's templates: the new
    // template is missing, named with the rule file that wants it.
    let (ok, text) = run(&clinic, &["check", "--rules", "proposal/rules"]);
    assert!(!ok, "{text}");
    assert!(text.contains("warning_offer_v2"), "{text}");
    assert!(text.contains("proposal/rules/03-warning.toml"), "{text}");

    // Without the flags: the clinic's own folders, untouched.
    let (ok, text) = run(&clinic, &["check"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Rules: rules   Templates: templates"),
        "{text}"
    );
}

#[test]
fn test_runs_the_proposals_own_rule_tests_with_its_templates() {
    let clinic = clinic_with_proposal();
    let (ok, text) = run(
        &clinic,
        &[
            "test",
            "--rules",
            "proposal/rules",
            "--templates",
            "proposal/templates",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("Rules: proposal/rules   Templates: proposal/templates"),
        "{text}"
    );
    assert!(text.contains("proposal/rules/tests"), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");

    // A proposal whose test expects the old template fails, pointing at it.
    replace_in_tree(
        &clinic.path().join("proposal/rules/tests"),
        "\"warning_offer_v2\"",
        "\"warning_offer\"",
    );
    let (ok, text) = run(
        &clinic,
        &[
            "test",
            "--rules",
            "proposal/rules",
            "--templates",
            "proposal/templates",
        ],
    );
    assert!(!ok, "{text}");
}

#[test]
fn simulate_replays_a_proposal_with_its_own_templates() {
    let clinic = clinic_with_proposal();
    let today = clinic.demo_today();
    let from = (today - chrono::Duration::days(20)).to_string();
    let to = (today - chrono::Duration::days(2)).to_string();
    let period = ["simulate", "--from", &from, "--to", &to];

    // The proposal as the rules replayed.
    let mut args = period.to_vec();
    args.extend([
        "--rules",
        "proposal/rules",
        "--templates",
        "proposal/templates",
    ]);
    let (ok, text) = run(&clinic, &args);
    assert!(ok, "{text}");
    assert!(
        text.contains("Rules: proposal/rules   Templates: proposal/templates"),
        "{text}"
    );

    // The proposal beside the clinic's rules, with its own templates.
    let mut args = period.to_vec();
    args.extend([
        "--against",
        "proposal/rules",
        "--against-templates",
        "proposal/templates",
    ]);
    let (ok, text) = run(&clinic, &args);
    assert!(ok, "{text}");
    assert!(
        text.contains("Proposal: rules proposal/rules, templates proposal/templates"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("warning_offer_sms"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row
        .split('┆')
        .map(|c| c.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect();
    assert_eq!(cells[2], cells[4], "same rule, same messages: {row}");

    // Without its templates the proposal cannot be replayed, and says why.
    let mut args = period.to_vec();
    args.extend(["--against", "proposal/rules"]);
    let (ok, text) = run(&clinic, &args);
    assert!(!ok, "{text}");
    assert!(text.contains("warning_offer_v2"), "{text}");
}
