//! The front desk's call sheet: what `recall tasks export` writes (one row
//! per open task, with empty outcome and note columns to fill in) and what
//! `recall tasks import` takes back once they are filled in.
//!
//! Taking a sheet back is all or nothing: every row is checked first (its
//! task exists, its outcome is a code or a Chinese word, it does not
//! contradict an outcome already recorded), every problem is reported with
//! its line, and only a sheet without problems is recorded, in one
//! transaction. A row whose task is already closed with the same outcome
//! changes nothing, so importing the same sheet twice records it once; a
//! row left without an outcome is a call not made yet and is skipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Schedule, settle};
use crate::base::diag;
use crate::base::i18n::{Lang, Text, list, t};
use crate::base::output::{Cell, Rows};
use crate::import::sheet::Sheet;
use crate::store::tasks::{CallOutcome, Completion, TaskRow};
use crate::store::{Store, StoreError};

/// The sheet's columns: the ones staff read first, the two they fill in,
/// then the call script.
fn columns() -> [(&'static str, Text); 11] {
    [
        ("id", t!("column.id")),
        ("date", t!("column.date")),
        ("staff", t!("column.staff")),
        ("customer", t!("column.customer")),
        ("name", t!("column.name")),
        ("phone", t!("column.phone")),
        ("outcome", t!("column.outcome")),
        ("note", t!("column.note")),
        ("rule", t!("column.rule")),
        ("attempt", t!("column.attempt")),
        ("script", t!("column.script")),
    ]
}

/// The sheet of `tasks`, headed in `lang`, with full phone numbers and
/// scripts (personal data: for the call team only).
pub fn export(tasks: &[TaskRow], lang: Lang) -> Rows {
    let mut rows = Rows::keyed(lang, &columns());
    for task in tasks {
        let outcome = task
            .outcome
            .as_deref()
            .and_then(CallOutcome::parse)
            .map_or(Cell::Empty, |o| Cell::term(o.as_str(), &o.name(), lang));
        rows.push(vec![
            Cell::Int(task.id),
            Cell::Text(task.due_date.clone()),
            Cell::Text(task.staff.clone()),
            Cell::Text(task.customer.clone()),
            Cell::Text(task.customer_name.clone()),
            Cell::text(task.phone.clone()),
            outcome,
            Cell::text(task.note.clone()),
            Cell::Text(task.rule_id.clone()),
            Cell::Int(task.attempt),
            Cell::Text(task.script.clone()),
        ]);
    }
    rows
}

/// One problem with a sheet, on a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The line a text editor shows.
    pub line: usize,
    /// The row a spreadsheet shows (the same for a workbook).
    pub row: usize,
    pub text: Text,
}

/// What importing a sheet did (or, with nothing recorded yet, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    /// Tasks closed now, with their outcomes.
    pub recorded: Vec<(i64, CallOutcome)>,
    /// Rows whose task was already closed with the same outcome.
    pub unchanged: usize,
    /// Rows without an outcome: calls not made yet.
    pub blank: usize,
}

/// A filled-in row: which task, what the call achieved, what was said.
#[derive(Debug, Clone, PartialEq)]
struct Filled {
    line: usize,
    row: usize,
    id: i64,
    outcome: CallOutcome,
    note: Option<String>,
}

/// Takes back a filled-in sheet: checks every row, then records every
/// outcome in one transaction at `now`. `Ok(Err(problems))` when a row is
/// wrong: nothing is recorded.
pub fn import(
    store: &mut Store,
    schedule: &Schedule,
    max_attempts: u32,
    sheet: &Sheet,
    now: DateTime<Utc>,
) -> Result<Result<Imported, Vec<Problem>>, StoreError> {
    let mut imported = Imported::default();
    let (filled, mut problems) = read(sheet, &mut imported.blank);
    let mut first_row: BTreeMap<i64, usize> = BTreeMap::new();
    let mut plan: Vec<(Filled, i64)> = Vec::new();
    for row in filled {
        let (id, line, at) = (row.id, row.line, row.row);
        if let Some(first) = first_row.insert(id, at) {
            problems.push(Problem {
                line,
                row: at,
                text: t!("tasks.import.twice", id, first),
            });
            continue;
        }
        match store.task(id)? {
            None => problems.push(Problem {
                line,
                row: at,
                text: t!("tasks.no_such_task", id),
            }),
            Some(task) if task.status == "open" => plan.push((row, task.attempt)),
            Some(task) if task.outcome.as_deref() == Some(row.outcome.as_str()) => {
                imported.unchanged += 1;
            }
            Some(task) => {
                let before = task.outcome.as_deref().and_then(CallOutcome::parse);
                problems.push(Problem {
                    line,
                    row: at,
                    text: t!(
                        "tasks.import.closed_otherwise",
                        id,
                        customer = task.customer,
                        before = before.map_or_else(|| t!("tasks.import.no_outcome"), |o| o.name()),
                        after = row.outcome.name()
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.row);
        return Ok(Err(problems));
    }
    let completions: Vec<Completion<'_>> = plan
        .iter()
        .map(|(row, attempt)| Completion {
            id: row.id,
            outcome: row.outcome,
            note: row.note.as_deref(),
            settle: settle(schedule, max_attempts, *attempt, row.outcome, now),
        })
        .collect();
    if let Some(id) = store.complete_tasks(&completions, now.timestamp())? {
        // Closed by someone else between the check and the writing.
        let (line, row) = plan
            .iter()
            .find(|(r, _)| r.id == id)
            .map_or((0, 0), |(r, _)| (r.line, r.row));
        return Ok(Err(vec![Problem {
            line,
            row,
            text: t!("tasks.import.closed_meanwhile", id),
        }]));
    }
    imported.recorded = plan.iter().map(|(r, _)| (r.id, r.outcome)).collect();
    Ok(Ok(imported))
}

/// The sheet's filled-in rows, and the problems of the others. The header
/// may name the columns in English or Chinese, or by their keys.
fn read(sheet: &Sheet, blank: &mut usize) -> (Vec<Filled>, Vec<Problem>) {
    let mut problems = Vec::new();
    let position = |key: &str| {
        let (_, header) = columns().into_iter().find(|(k, _)| *k == key)?;
        let names = [
            key.to_string(),
            header.render(Lang::En),
            header.render(Lang::Zh),
        ];
        sheet.header.iter().position(|h| {
            let h = h.trim().to_lowercase();
            names.iter().any(|n| n.to_lowercase() == h)
        })
    };
    let (id, outcome, note) = (position("id"), position("outcome"), position("note"));
    let (Some(id), Some(outcome)) = (id, outcome) else {
        let missing: Vec<String> = [("id", id), ("outcome", outcome)]
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(key, _)| column_names(key))
            .collect();
        problems.push(Problem {
            line: sheet.header_line,
            row: 1,
            text: t!(
                "tasks.import.missing_columns",
                columns = list(missing, t!("sep.list"))
            ),
        });
        return (Vec::new(), problems);
    };
    let mut filled = Vec::new();
    for row in &sheet.rows {
        let (line, at) = (row.line, row.row);
        let said = row.cell(outcome);
        if said.is_empty() {
            *blank += 1;
            continue;
        }
        let task = parse_id(row.cell(id));
        let parsed = CallOutcome::parse(said);
        if task.is_none() {
            problems.push(Problem {
                line,
                row: at,
                text: t!(
                    "tasks.import.bad_id",
                    id = crate::import::quote(row.cell(id))
                ),
            });
        }
        if parsed.is_none() {
            problems.push(Problem {
                line,
                row: at,
                text: unknown_outcome(said),
            });
        }
        if let (Some(id), Some(outcome)) = (task, parsed) {
            let note = note.map(|i| row.cell(i)).filter(|n| !n.is_empty());
            filled.push(Filled {
                line,
                row: at,
                id,
                outcome,
                note: note.map(str::to_string),
            });
        }
    }
    (filled, problems)
}

/// A column as a header may name it: `id / 编号`.
fn column_names(key: &str) -> String {
    let header = columns()
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, h)| h.render(Lang::Zh))
        .unwrap_or_default();
    format!("{key} / {header}")
}

/// A task id as a cell holds it: `42`, or `42.0` from a workbook.
fn parse_id(cell: &str) -> Option<i64> {
    let cell = cell.trim();
    cell.parse::<i64>().ok().or_else(|| {
        let f = cell.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
    })
}

/// An outcome that is neither a code nor a word, with the nearest one.
pub fn unknown_outcome(said: &str) -> Text {
    let mut names: Vec<String> = Vec::new();
    for o in CallOutcome::ALL {
        names.push(o.as_str().to_string());
        names.push(o.name().render(Lang::Zh));
    }
    let near = diag::nearest(said, names.iter().map(String::as_str));
    let outcome = crate::import::quote(said);
    let known = CallOutcome::known();
    match near {
        Some(near) => t!("tasks.unknown_outcome_near", outcome, near, known),
        None => t!("tasks.unknown_outcome", outcome, known),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_csv_and_workbooks_are_read() {
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id(" 42.0 "), Some(42));
        assert_eq!(parse_id("4.5"), None);
        assert_eq!(parse_id("abc"), None);
    }

    #[test]
    fn outcomes_are_codes_or_chinese_words() {
        for (said, outcome) in [
            ("已预约", CallOutcome::ReachedBooked),
            ("有意向", CallOutcome::ReachedInterested),
            ("拒绝", CallOutcome::ReachedDeclined),
            ("未接通", CallOutcome::NoAnswer),
            ("空号", CallOutcome::WrongNumber),
            ("退订", CallOutcome::OptOut),
            (" no_answer ", CallOutcome::NoAnswer),
        ] {
            assert_eq!(CallOutcome::parse(said), Some(outcome), "{said}");
        }
        assert_eq!(CallOutcome::parse("预约了"), None);
    }
}
