//! `recall tasks`: the front desk's view of phone-call tasks.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use chrono::Utc;

use super::{Format, Rows, TasksCommand, load_config, open_store, parse_at};
use crate::clock;
use crate::config::{Config, SenderConfig};
use crate::mask;
use crate::model::Channel;
use crate::senders::phone_tasks::{self, Schedule};
use crate::store::tasks::{CallOutcome, TaskFilter, TaskRow};

pub fn run(config_path: &Path, command: TasksCommand) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    match command {
        TasksCommand::List {
            date,
            staff,
            status,
            format,
        } => list(&config, &date, staff, &status, format),
        TasksCommand::Export { date, staff } => export(&config, &date, staff),
        TasksCommand::Done {
            id,
            outcome,
            note,
            at,
        } => done(&config, id, &outcome, note.as_deref(), at.as_deref()),
    }
}

/// The phone channel's `phone_tasks` settings, or why there are none.
fn phone_tasks_config(config: &Config) -> Result<&phone_tasks::Config> {
    let policy = config.channels.get(&Channel::Phone).ok_or_else(|| {
        anyhow!(
            "there is no [channels.phone] in {}: phone messages are not sent as call tasks",
            config.path.display()
        )
    })?;
    match config.senders.get(&policy.sender).map(|s| &s.config) {
        Some(SenderConfig::PhoneTasks(tasks)) => Ok(tasks),
        Some(other) => bail!(
            "[channels.phone] uses sender `{}` of kind {}, not phone_tasks: calls are not planned as tasks",
            policy.sender,
            other.kind()
        ),
        None => bail!(
            "[channels.phone] uses sender `{}`, which is not defined",
            policy.sender
        ),
    }
}

fn filter(
    config: &Config,
    date: &str,
    staff: Option<String>,
    status: Option<String>,
) -> Result<TaskFilter> {
    let due_date = match date {
        "all" => None,
        "today" => Some(
            Utc::now()
                .with_timezone(&config.clinic.timezone)
                .date_naive()
                .format("%Y-%m-%d")
                .to_string(),
        ),
        day => {
            let parsed = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map_err(|_| anyhow!("`{day}` is not a date: use today, all, or YYYY-MM-DD"))?;
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
    format: Format,
) -> Result<ExitCode> {
    let status = match status {
        "all" => None,
        "open" | "done" => Some(status.to_string()),
        other => bail!("`{other}` is not a task status: use open, done or all"),
    };
    let (store, _) = open_store(config)?;
    let tasks = store.tasks(&filter(config, date, staff, status)?)?;
    let mut rows = Rows::new(&[
        "id", "date", "staff", "customer", "name", "phone", "rule", "attempt", "status", "outcome",
        "note",
    ]);
    for t in &tasks {
        rows.push(vec![
            t.id.to_string(),
            t.due_date.clone(),
            t.staff.clone(),
            t.customer.clone(),
            t.customer_name.clone(),
            // The table is for a screen; `export` carries the full number.
            t.phone.as_deref().map(mask::phone).unwrap_or_default(),
            t.rule_id.clone(),
            t.attempt.to_string(),
            t.status.clone(),
            t.outcome.clone().unwrap_or_default(),
            t.note.clone().unwrap_or_default(),
        ]);
    }
    let mut out = std::io::stdout().lock();
    if tasks.is_empty() && format == Format::Table {
        writeln!(out, "no call tasks match")?;
    } else {
        rows.write(format, &mut out, Some(30))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn export(config: &Config, date: &str, staff: Option<String>) -> Result<ExitCode> {
    let (store, _) = open_store(config)?;
    let tasks = store.tasks(&filter(config, date, staff, Some("open".into()))?)?;
    let mut rows = Rows::new(&[
        "id", "date", "staff", "customer", "name", "phone", "rule", "attempt", "script",
    ]);
    for t in &tasks {
        rows.push(export_row(t));
    }
    rows.write(Format::Csv, &mut std::io::stdout().lock(), None)?;
    eprintln!(
        "exported {} open call task(s); the file holds phone numbers and names: share it only with the call team",
        tasks.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn export_row(t: &TaskRow) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.due_date.clone(),
        t.staff.clone(),
        t.customer.clone(),
        t.customer_name.clone(),
        t.phone.clone().unwrap_or_default(),
        t.rule_id.clone(),
        t.attempt.to_string(),
        t.script.clone(),
    ]
}

fn done(
    config: &Config,
    id: i64,
    outcome: &str,
    note: Option<&str>,
    at: Option<&str>,
) -> Result<ExitCode> {
    let outcome = CallOutcome::parse(outcome).ok_or_else(|| {
        let known: Vec<&str> = CallOutcome::ALL.iter().map(|o| o.as_str()).collect();
        match crate::diag::nearest(outcome, known.iter().copied()) {
            Some(near) => anyhow!(
                "unknown outcome `{outcome}`: did you mean `{near}`? (known: {})",
                known.join(", ")
            ),
            None => anyhow!("unknown outcome `{outcome}` (known: {})", known.join(", ")),
        }
    })?;
    let tasks_config = phone_tasks_config(config)?;
    let schedule =
        Schedule::new(tasks_config, config.clinic.timezone).map_err(|why| anyhow!(why))?;
    let now = parse_at(at, config)?;
    let (mut store, _) = open_store(config)?;
    let Some(task) = phone_tasks::complete(
        &mut store,
        &schedule,
        config.dispatch.max_attempts,
        id,
        outcome,
        note,
        now,
    )?
    else {
        match store.task(id)? {
            Some(task) => bail!(
                "task {id} is already done ({})",
                task.outcome.unwrap_or_default()
            ),
            None => bail!("there is no call task {id}"),
        }
    };
    let next = match outcome {
        CallOutcome::NoAnswer => match store.message(task.outreach_id)? {
            Some(entry) if entry.status == "queued" => format!(
                "; it will be called again from {}",
                clock::format_local(entry.due_at, config.clinic.timezone)
            ),
            _ => "; no attempts left: the message is marked failed".to_string(),
        },
        CallOutcome::OptOut => "; the customer will not be called again".to_string(),
        _ => String::new(),
    };
    println!(
        "task {id} ({}, {}) recorded as {}{next}",
        task.customer,
        task.staff,
        outcome.as_str()
    );
    Ok(ExitCode::SUCCESS)
}
