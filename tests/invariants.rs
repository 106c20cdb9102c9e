//! The architecture invariants the source itself can be held to.
//! `ARCHITECTURE.md` lists every invariant with what enforces it; these are
//! the ones a reading of `src/` checks. Like tests/layers.rs, each test reads
//! the product's code (comments, strings and test code left out) and names
//! the file and line of every break.
//!
//! `RECALL_LAYERS_SRC=/path/to/src cargo test --test invariants` checks
//! another tree (e.g. an older commit's).

mod source;

use std::path::{Path, PathBuf};

use source::{SourceFile, product_files};

fn src() -> PathBuf {
    std::env::var_os("RECALL_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// Every line of product code under `src` (in files `within` says yes to)
/// that contains one of `needles`, as `path:line: text`.
fn lines_naming(needles: &[&str], within: impl Fn(&Path) -> bool) -> Vec<String> {
    let files = product_files(&src());
    assert!(
        files.len() > 50,
        "only {} files under {}",
        files.len(),
        src().display()
    );
    let mut found = Vec::new();
    for SourceFile {
        relative,
        text,
        code,
    } in files.iter().filter(|f| within(&f.relative))
    {
        for (index, line) in code.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle)) {
                let written = text.lines().nth(index).unwrap_or("").trim();
                found.push(format!(
                    "src/{}:{}: {written}",
                    relative.display(),
                    index + 1
                ));
            }
        }
    }
    found
}

fn under(relative: &Path, folders: &[&str]) -> bool {
    folders.iter().any(|folder| relative.starts_with(folder))
}

/// **Time is a parameter.** The wall clock is read in one place,
/// `Clock::System` (`base/clock.rs`); everything else is given its "now"
/// (`Instant::now()` measures durations and is not a reading of the time).
#[test]
fn only_clock_system_reads_the_wall_clock() {
    let reads = lines_naming(
        &[
            "Utc::now(",
            "Local::now(",
            "SystemTime::now(",
            "OffsetDateTime::now",
        ],
        |_| true,
    );
    assert_eq!(
        reads.len(),
        1,
        "the wall clock must be read once, by Clock::System; found:\n{}",
        reads.join("\n")
    );
    assert!(
        reads[0].starts_with("src/base/clock.rs:") && reads[0].contains("Clock::System"),
        "{}",
        reads[0]
    );
}

/// **Only `store` writes SQL**: nothing outside `store/` names SQLite.
#[test]
fn only_the_store_touches_sqlite() {
    let outside = lines_naming(&["rusqlite"], |file| !under(file, &["store"]));
    assert!(
        outside.is_empty(),
        "SQLite outside store/:\n{}",
        outside.join("\n")
    );
}

/// **Rule evaluation is pure**: deciding (`rules/eval.rs`), deriving facts
/// (`facts/`) and predicting (`predict/`) name no database, clock, file,
/// network or environment.
#[test]
fn deciding_reads_no_database_clock_files_or_network() {
    let impure = lines_naming(
        &[
            "rusqlite",
            "Store",
            "blocking(",
            "Clock",
            "::now(",
            "std::fs",
            "std::io",
            "std::net",
            "std::env",
            "std::process",
            "tokio",
            "reqwest",
            "lettre",
        ],
        |file| file == Path::new("rules/eval.rs") || under(file, &["facts", "predict"]),
    );
    assert!(
        impure.is_empty(),
        "rule evaluation, facts and predictions must stay pure:\n{}",
        impure.join("\n")
    );
}

/// **Senders never touch the store** (the call-task sender, whose provider
/// is the clinic itself, excepted): from `store` they take only the
/// recipient's type.
#[test]
fn senders_take_nothing_from_the_store_but_the_recipient() {
    let reach = lines_naming(&["store::", "Store", "blocking("], |file| {
        under(file, &["senders"]) && !under(file, &["senders/phone_tasks"])
    });
    let reach: Vec<&String> = reach
        .iter()
        .filter(|line| !line.ends_with("use crate::store::outbox::Recipient;"))
        .collect();
    assert!(
        reach.is_empty(),
        "a sender reaches into the store:\n{}",
        reach
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// **A message goes out as the tick rendered it**: dispatch and the senders
/// never render the clinic's templates; they send the stored content.
#[test]
fn dispatch_and_senders_never_render_templates() {
    let rendering = lines_naming(&["templates::", "TemplateSet"], |file| {
        under(file, &["dispatch", "senders"])
    });
    assert!(
        rendering.is_empty(),
        "rendering after the tick:\n{}",
        rendering.join("\n")
    );
}
