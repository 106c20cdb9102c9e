//! `recall test`: the clinic's rule tests (rules/tests/*.toml), case by case.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{FolderArgs, color, folders_used, lang, load_with};
use crate::base::clock::Clock;
use crate::base::i18n::{list, t};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A test file or folder; default `tests` in the rules folder.
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub folders: FolderArgs,
}

/// `recall test`.
pub(super) fn run(config_path: &Path, args: &TestArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let loaded = load_with(config_path, &args.folders)?;
    println!("{}", folders_used(&loaded.config));
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| loaded.config.rules_dir.join("tests"));
    let lang = lang();
    let files = crate::ruletest::files(&path)
        .with_context(|| t!("cli.reading", path = path.display()).render(lang))?;
    if files.is_empty() {
        bail!(t!("test.no_files", path = path.display()).render(lang));
    }
    let (mut passed, mut failed) = (0, 0);
    let mut fired = std::collections::BTreeSet::new();
    let mut broken = Vec::new();
    for file in &files {
        println!("{}", file.display());
        let tests = match crate::ruletest::parse(file) {
            Ok(tests) => tests,
            Err(report) => {
                print!("{}", report.render_in(lang, color()));
                broken.push(file.display().to_string());
                continue;
            }
        };
        for case in crate::ruletest::run_file(&loaded, file, &tests, Clock::Fixed(now)).cases {
            fired.extend(case.fired.iter().cloned());
            if case.failures.is_empty() {
                passed += 1;
                println!("{}", t!("test.ok", name = &case.name).render(lang));
            } else {
                failed += 1;
                println!("{}", t!("test.fail", name = &case.name).render(lang));
                for failure in &case.failures {
                    println!("        {}", failure.render(lang));
                }
            }
        }
    }
    let untested: Vec<&str> = loaded
        .rules
        .rules
        .iter()
        .filter(|r| r.enabled && !fired.contains(&r.id))
        .map(|r| r.id.as_str())
        .collect();
    if !untested.is_empty() {
        let rules = list(untested, t!("sep.list"));
        println!("{}", t!("test.untested", rules).render(lang));
    }
    println!("{}", t!("test.summary", passed, failed).render(lang));
    if !broken.is_empty() {
        // Its cases did not run: "0 failed" alone would read as a pass.
        let count = broken.len();
        let files = list(&broken, t!("sep.list"));
        println!("{}", t!("test.broken", count, files).render(lang));
    }
    Ok(if failed > 0 || !broken.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
