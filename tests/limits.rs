//! What recall refuses to read, through the real binary: rule files,
//! conditions and templates past their limits (told in a sentence, before
//! any parser sees them), a schedule that can never fire, and files other
//! users could change; and what `recall init` creates under a careless umask.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{Clinic, recall_in};

/// A rule of the new pool whose condition is `when`.
fn rule_with(when: &str) -> String {
    format!("[[rule]]\nid = \"odd\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"{when}\"\n")
}

#[test]
fn a_12_mb_condition_is_refused_by_the_rule_file_limit() {
    let clinic = Clinic::new();
    let when = "visit_count > 0 && ".repeat(12 * 1024 * 1024 / 19) + "true";
    std::fs::write(clinic.path().join("rules/90-huge.toml"), rule_with(&when)).unwrap();
    let started = Instant::now();
    let (code, text) = clinic.check("en");
    // Measured, not asserted: 13.9 s and 3.9 GB before the limit.
    println!("check refused a 12 MB condition in {:?}", started.elapsed());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("rules/90-huge.toml")
            && text.contains("the rule file is 12.0 MB; a rule file may be at most 1.0 MB"),
        "{text}"
    );
    assert!(
        text.contains("split the rules over several files"),
        "{text}"
    );
}

#[test]
fn a_condition_over_4_kb_is_refused_at_its_line() {
    let clinic = Clinic::new();
    let when = "visit_count > 0 && ".repeat(300) + "true";
    std::fs::write(clinic.path().join("rules/90-long.toml"), rule_with(&when)).unwrap();
    let (code, text) = clinic.check("zh");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("rules/90-long.toml:5:"), "{text}");
    assert!(text.contains("条件长 6 KB，一条条件最多 4 KB"), "{text}");
}

#[test]
fn ten_thousand_nested_parentheses_are_refused_in_a_sentence() {
    let clinic = Clinic::new();
    let when = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    std::fs::write(clinic.path().join("rules/90-deep.toml"), rule_with(&when)).unwrap();
    for (lang, says) in [
        (
            "en",
            "the condition nests 10000 levels deep here; at most 32 are allowed",
        ),
        ("zh", "条件在这里嵌套了 10000 层，最多允许 32 层"),
    ] {
        let (code, text) = clinic.check(lang);
        assert_eq!(code, 1, "{text}");
        // The caret points at the 33rd parenthesis, in a line cut short.
        assert!(text.contains("rules/90-deep.toml:5:41"), "{text}");
        assert!(text.len() < 2000, "{text}");
        assert!(text.contains(says), "{text}");
        assert!(!text.to_lowercase().contains("recursion"), "{text}");
        assert!(!text.contains("overflow"), "{text}");
    }
}

#[test]
fn operators_chained_past_the_nesting_limit_are_refused() {
    let clinic = Clinic::new();
    let when = "visit_count".to_string() + &" + 1".repeat(40) + " > 0";
    std::fs::write(clinic.path().join("rules/90-chain.toml"), rule_with(&when)).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the condition nests 41 levels deep here; at most 32 are allowed"),
        "{text}"
    );
}

#[test]
fn a_template_over_64_kb_is_refused() {
    let clinic = Clinic::new();
    let body = "您好 ".repeat(20_000);
    let path = clinic.path().join("templates/sms/warning_offer.txt");
    std::fs::write(&path, body).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("templates/sms/warning_offer.txt")
            && text.contains("the template is 137 KB; a template may be at most 64 KB"),
        "{text}"
    );
}

#[test]
fn a_schedule_that_never_fires_is_an_error_at_its_line() {
    let clinic = Clinic::new();
    clinic.edit_config("ticks = [\"0 9 * * *\"]", "ticks = [\"0 9 31 2 *\"]");
    let line = std::fs::read_to_string(clinic.config())
        .unwrap()
        .lines()
        .position(|l| l.starts_with("ticks = "))
        .unwrap()
        + 1;
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("recall.toml:{line}:10")),
        "{line}: {text}"
    );
    assert!(
        text.contains("the schedule `0 9 31 2 *` never fires"),
        "{text}"
    );
    // The service does not start on it either.
    let run = clinic.recall().arg("run").output().unwrap();
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("never fires"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Every file and folder under `dir` (itself included) with its mode.
#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = vec![(
        dir.display().to_string(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes(&path));
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            found.push((path.display().to_string(), mode));
        }
    }
    found
}

#[cfg(unix)]
#[test]
fn init_under_umask_000_creates_nothing_others_can_write() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("clinic");
    let binary = assert_cmd::cargo::cargo_bin("recall");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && \"$0\" init \"$1\" && cd \"$1\" && \"$0\" tick && \"$0\" dispatch")
        .arg(&binary)
        .arg(&dir)
        .env("RECALL_LANG", "en")
        .env_remove("RECALL_CONFIG")
        .status()
        .unwrap();
    assert!(status.success());
    let found = modes(&dir);
    let writable: Vec<_> = found.iter().filter(|(_, mode)| mode & 0o022 != 0).collect();
    assert!(writable.is_empty(), "{writable:#?}");
    let mode_of = |suffix: &str| {
        found
            .iter()
            .find(|(path, _)| path.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {found:#?}"))
            .1
    };
    assert_eq!(mode_of("recall.toml"), 0o644);
    assert_eq!(mode_of("rules"), 0o755);
    assert_eq!(mode_of("rules/01-new.toml"), 0o644);
    assert_eq!(mode_of("templates/sms"), 0o755);
    assert_eq!(mode_of("data"), 0o700);
    assert_eq!(mode_of("data/recall.db"), 0o600);
    assert_eq!(mode_of("data/recall.db.dispatch.lock"), 0o600);
    // And it loads: nothing of it is refused.
    recall_in(&dir).arg("check").assert().success();
}

#[cfg(unix)]
#[test]
fn check_refuses_a_rules_file_anyone_can_write_with_the_chmod_that_fixes_it() {
    use std::os::unix::fs::PermissionsExt;
    let clinic = Clinic::new();
    let rules = clinic.path().join("rules/03-warning.toml");
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "rules/03-warning.toml can be written by its group or other users (mode 0666)"
        ),
        "{text}"
    );
    assert!(
        text.contains("run `chmod go-w rules/03-warning.toml`"),
        "{text}"
    );
    let (_, zh) = clinic.check("zh");
    assert!(
        zh.contains("请运行 `chmod go-w rules/03-warning.toml`"),
        "{zh}"
    );
    // `run` refuses to start on it.
    let run = clinic.recall().arg("run").output().unwrap();
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("chmod go-w"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // A group-writable templates folder, and recall.toml.
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o644)).unwrap();
    let folder = clinic.path().join("templates/phone");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o775)).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("chmod go-w templates/phone"), "{text}");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(clinic.config(), std::fs::Permissions::from_mode(0o664)).unwrap();
    let (code, text) = clinic.check("en");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("chmod go-w recall.toml"), "{text}");
}
