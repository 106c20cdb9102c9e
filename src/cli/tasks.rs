//! `recall tasks`: the front desk's view of phone-call tasks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{Book, Format, OutputArgs, Rows, lang, load_config, open_store, parse_at, write};
use crate::base::clock;
use crate::base::i18n::{IntoArg, Lang, t};
use crate::base::mask;
use crate::base::model::Channel;
use crate::base::output::{Cell, Section, escape};
use crate::config::Config;
use crate::senders::SenderConfig;
use crate::senders::phone_tasks::{self, Schedule};
use crate::store::tasks::{CallOutcome, TaskFilter};

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Call tasks of a day (default: today's open tasks).
    List {
        /// `today`, `all`, or a date such as 2026-06-01.
        #[arg(long, default_value = "today")]
        date: String,
        /// Only this person's tasks.
        #[arg(long)]
        staff: Option<String>,
        /// `open`, `done` or `all`.
        #[arg(long, default_value = "open")]
        status: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The call sheet (CSV, or xlsx with --output FILE.xlsx) for call teams,
    /// with full phone numbers and scripts (personal data: handle with
    /// care), and empty outcome and note columns to fill in and hand back
    /// with `recall tasks import`.
    Export {
        /// `today`, `all`, or a date such as 2026-06-01.
        #[arg(long, default_value = "today")]
        date: String,
        /// Only this person's tasks.
        #[arg(long)]
        staff: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Record what a call achieved.
    Done {
        /// The task id (from `recall tasks list`).
        id: i64,
        #[arg(long, help = outcome_help())]
        outcome: String,
        /// What was said, for the next person who calls.
        #[arg(long)]
        note: Option<String>,
        /// When the call was made (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Take back the call sheet `tasks export` wrote, filled in (CSV or
    /// xlsx): each row's outcome (a code or its Chinese word) and note.
    /// All or nothing: every bad row is reported with its line and nothing
    /// is recorded; rows already recorded with the same outcome change
    /// nothing, rows without an outcome are skipped.
    Import {
        /// The filled-in sheet (.csv or .xlsx).
        sheet: PathBuf,
        /// When the calls were made (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

/// `--outcome`'s help: every code with its Chinese word.
fn outcome_help() -> String {
    format!(
        "What the call achieved, as a code or its Chinese word: {}",
        CallOutcome::known()
    )
}

pub fn run(config_path: &Path, command: TasksCommand, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    match command {
        TasksCommand::List {
            date,
            staff,
            status,
            output,
        } => list(&config, &date, staff, &status, &output, now),
        TasksCommand::Export {
            date,
            staff,
            output,
        } => export(&config, &date, staff, &output, now),
        TasksCommand::Done {
            id,
            outcome,
            note,
            at,
        } => done(&config, id, &outcome, note.as_deref(), at.as_deref(), now),
        TasksCommand::Import { sheet, at } => import(&config, &sheet, at.as_deref(), now),
    }
}

/// The phone channel's `phone_tasks` settings, or why there are none.
fn phone_tasks_config(config: &Config) -> Result<phone_tasks::Config> {
    let lang = lang();
    let policy = config.channels.get(&Channel::Phone).ok_or_else(|| {
        let path = config.path.display();
        anyhow!(t!("tasks.no_phone_channel", path).render(lang))
    })?;
    let sender = config
        .senders
        .get(&policy.sender)
        .map(|entry| SenderConfig::parse(&config.path, &policy.sender, entry));
    match sender {
        Some(Err(diagnostic)) => bail!(diagnostic.message.render(Lang::En)),
        Some(Ok(SenderConfig::PhoneTasks(tasks))) => Ok(tasks),
        Some(Ok(other)) => bail!(
            t!(
                "tasks.not_phone_tasks",
                sender = &policy.sender,
                kind = other.kind()
            )
            .render(lang)
        ),
        None => bail!(t!("tasks.sender_undefined", sender = &policy.sender).render(lang)),
    }
}

/// The tasks of `date` (`today` is `now`'s day in the clinic's calendar).
fn filter(
    config: &Config,
    date: &str,
    staff: Option<String>,
    status: Option<String>,
    now: DateTime<Utc>,
) -> Result<TaskFilter> {
    let due_date = match date {
        "all" => None,
        "today" => Some(
            now.with_timezone(&config.clinic.timezone)
                .date_naive()
                .format("%Y-%m-%d")
                .to_string(),
        ),
        day => {
            let parsed = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map_err(|_| anyhow!(t!("tasks.bad_date", day).render(lang())))?;
            Some(parsed.format("%Y-%m-%d").to_string())
        }
    };
    Ok(TaskFilter {
        staff,
        due_date,
        status,
    })
}

fn list(
    config: &Config,
    date: &str,
    staff: Option<String>,
    status: &str,
    output: &OutputArgs,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let lang = lang();
    let status = match status {
        "all" => None,
        "open" | "done" => Some(status.to_string()),
        other => bail!(t!("tasks.bad_status", status = other).render(lang)),
    };
    let (store, _) = open_store(config, now)?;
    let tasks = store.tasks(&filter(config, date, staff, status, now)?)?;
    let mut rows = Rows::keyed(
        lang,
        &[
            ("id", t!("column.id")),
            ("date", t!("column.date")),
            ("staff", t!("column.staff")),
            ("customer", t!("column.customer")),
            ("name", t!("column.name")),
            ("phone", t!("column.phone")),
            ("rule", t!("column.rule")),
            ("attempt", t!("column.attempt")),
            ("status", t!("column.status")),
            ("outcome", t!("column.outcome")),
            ("note", t!("column.note")),
        ],
    );
    for t in &tasks {
        let outcome = t.outcome.as_deref().and_then(CallOutcome::parse);
        rows.push(vec![
            Cell::Int(t.id),
            Cell::Text(t.due_date.clone()),
            Cell::Text(t.staff.clone()),
            Cell::Text(t.customer.clone()),
            Cell::Text(t.customer_name.clone()),
            // The list is for a screen; `export` carries the full number.
            Cell::text(t.phone.as_deref().map(mask::phone)),
            Cell::Text(t.rule_id.clone()),
            Cell::Int(t.attempt),
            Cell::Text(t.status.clone()),
            outcome.map_or(Cell::Empty, |o| Cell::term(o.as_str(), &o.name(), lang)),
            Cell::text(t.note.clone()),
        ]);
    }
    let section = Section::new("tasks", t!("tasks.title").render(lang), rows)
        .cut_at(30)
        .when_empty(t!("tasks.none").render(lang));
    write(&output.output(Format::Table, lang), &Book::one(section))?;
    Ok(ExitCode::SUCCESS)
}

fn export(
    config: &Config,
    date: &str,
    staff: Option<String>,
    output: &OutputArgs,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let lang = lang();
    let (store, _) = open_store(config, now)?;
    let tasks = store.tasks(&filter(config, date, staff, Some("open".into()), now)?)?;
    let rows = phone_tasks::sheet::export(&tasks, lang);
    let section = Section::new("tasks", t!("tasks.sheet_title").render(lang), rows);
    write(&output.output(Format::Csv, lang), &Book::one(section))?;
    let exported = t!("tasks.exported", count = tasks.len());
    eprintln!("{}", exported.render(lang));
    Ok(ExitCode::SUCCESS)
}

fn done(
    config: &Config,
    id: i64,
    outcome: &str,
    note: Option<&str>,
    at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let lang = lang();
    let outcome = CallOutcome::parse(outcome)
        .ok_or_else(|| anyhow!(phone_tasks::sheet::unknown_outcome(outcome).render(lang)))?;
    let tasks_config = phone_tasks_config(config)?;
    let schedule =
        Schedule::new(&tasks_config, config.clinic.timezone).map_err(|why| anyhow!(why.message))?;
    let at = parse_at(at, config, now)?;
    let (mut store, _) = open_store(config, now)?;
    let Some(task) = phone_tasks::complete(
        &mut store,
        &schedule,
        config.dispatch.max_attempts,
        id,
        outcome,
        note,
        at,
    )?
    else {
        match store.task(id)? {
            Some(task) => bail!(
                t!(
                    "tasks.already_done",
                    id,
                    outcome = match task.outcome.as_deref().and_then(CallOutcome::parse) {
                        Some(outcome) => outcome.name().into_arg(),
                        None => task.outcome.unwrap_or_default().into_arg(),
                    }
                )
                .render(lang)
            ),
            None => bail!(t!("tasks.no_such_task", id).render(lang)),
        }
    };
    let next = match outcome {
        CallOutcome::NoAnswer => match store.message(task.outreach_id)? {
            Some(entry) if entry.status == "queued" => {
                let at = clock::format_local(entry.due_at, config.clinic.timezone);
                t!("tasks.called_again", at).render(lang)
            }
            _ => t!("tasks.no_attempts_left").render(lang),
        },
        CallOutcome::OptOut => t!("tasks.not_called_again").render(lang),
        _ => String::new(),
    };
    let recorded = t!(
        "tasks.recorded",
        id,
        customer = escape(&task.customer),
        staff = escape(&task.staff),
        outcome = outcome.name(),
        next
    );
    println!("{}", recorded.render(lang));
    Ok(ExitCode::SUCCESS)
}

/// `recall tasks import SHEET`.
fn import(config: &Config, path: &Path, at: Option<&str>, now: DateTime<Utc>) -> Result<ExitCode> {
    let lang = lang();
    let sheet = crate::import::sheet::read(path).map_err(|why| anyhow!(why.render(lang)))?;
    let tasks_config = phone_tasks_config(config)?;
    let schedule =
        Schedule::new(&tasks_config, config.clinic.timezone).map_err(|why| anyhow!(why.message))?;
    let at = parse_at(at, config, now)?;
    let (mut store, _) = open_store(config, now)?;
    let max_attempts = config.dispatch.max_attempts;
    let shown = path.display().to_string();
    match phone_tasks::sheet::import(&mut store, &schedule, max_attempts, &sheet, at)? {
        Ok(imported) => {
            let done = t!(
                "tasks.import.done",
                path = &shown,
                recorded = imported.recorded.len(),
                unchanged = imported.unchanged,
                blank = imported.blank
            );
            println!("{}", done.render(lang));
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems {
                let at = if p.row == p.line {
                    t!(
                        "tasks.import.at_line",
                        path = &shown,
                        line = p.line,
                        problem = p.text.clone()
                    )
                } else {
                    t!(
                        "tasks.import.at_line_row",
                        path = &shown,
                        line = p.line,
                        row = p.row,
                        problem = p.text.clone()
                    )
                };
                eprintln!("{}", at.render(lang));
            }
            let count = problems.len();
            bail!(t!("tasks.import.rejected", count, path = &shown).render(lang))
        }
    }
}
