//! `recall status`: pool sizes, the outbox by channel and status (messages
//! retrying after a failure apart from plain queued ones), how each sender
//! is doing (failing, paused, with the provider's code), the last tick.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Book, Format, OutputArgs, Rows, lang, load_config, open_store, write};
use crate::base::clock;
use crate::base::i18n::{Lang, Text, t};
use crate::base::model::{Channel, OutreachStatus};
use crate::base::output::{Cell, Section};
use crate::store::health::SenderState;
use crate::store::queries::Status;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `recall status`.
pub(super) fn run(config_path: &Path, args: &StatusArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let (store, _) = open_store(&config, now)?;
    let status = store.status(now.timestamp())?;
    let lang = lang();
    let output = args.output.output(Format::Table, lang);
    let mut status = status;
    // Senders no longer in recall.toml are of no concern.
    status
        .senders
        .retain(|h| config.senders.contains_key(&h.sender));
    let book = if output.format == Format::Table {
        tables(&status, &config.clinic.name, tz, lang)
    } else {
        let title = t!("status.title").render(lang);
        Book::one(Section::new("status", title, rows(&status, tz, lang)))
    };
    write(&output, &book)?;
    Ok(ExitCode::SUCCESS)
}

/// For a terminal: the pools, the outbox, what is due and the last tick.
fn tables(status: &Status, clinic: &str, tz: chrono_tz::Tz, lang: Lang) -> Book {
    let mut pools = Rows::keyed(
        lang,
        &[
            ("pool", t!("column.pool")),
            ("pool_zh", t!("status.pool_zh")),
            ("customers", t!("column.customers")),
        ],
    );
    for (pool, n) in &status.pools {
        let zh = pool.name().render(Lang::Zh);
        pools.push(vec![
            Cell::Text(pool.to_string()),
            Cell::Text(zh),
            Cell::Int(*n),
        ]);
    }
    let mut outbox = Rows::keyed(
        lang,
        &[
            ("channel", t!("column.channel")),
            ("status", t!("column.status")),
            ("messages", t!("column.messages")),
        ],
    );
    for (channel, state, n) in outbox_counts(status) {
        outbox.push(vec![
            Cell::term(channel.as_str(), &channel.name(), lang),
            state_cell(state, lang),
            Cell::Int(n),
        ]);
    }
    let mut senders = Rows::keyed(
        lang,
        &[
            ("sender", t!("column.sender")),
            ("state", t!("status.state")),
            ("failures", t!("status.failures")),
            ("error", t!("column.error")),
            ("since", t!("status.since")),
            ("next_probe", t!("status.next_probe")),
        ],
    );
    for h in &status.senders {
        let error = match &h.code {
            Some(code) if h.state == SenderState::Paused => {
                format!("{code}: {}", h.last_error.as_deref().unwrap_or(""))
            }
            _ => h.last_error.clone().unwrap_or_default(),
        };
        senders.push(vec![
            Cell::Text(h.sender.clone()),
            Cell::Text(h.state.to_string()),
            Cell::Int(h.failures),
            Cell::Text(error),
            Cell::Time { at: h.since, tz },
            match h.probe_at {
                Some(at) if h.state == SenderState::Paused => Cell::Time { at, tz },
                _ => Cell::Empty,
            },
        ]);
    }
    let last_tick = match &status.last_tick {
        Some(tick) => t!(
            "status.last_tick",
            at = clock::format_local(tick.at, tz),
            state = if tick.done {
                t!("status.tick_done")
            } else {
                t!("status.tick_interrupted")
            },
            evaluated = tick.evaluated,
            moves = tick.moves,
            messages = tick.messages
        ),
        None => t!("status.no_tick"),
    };
    let heading = t!("status.heading", clinic, customers = status.customers);
    let mut sections = vec![
        Section::new("pools", String::new(), pools),
        Section::new("outbox", String::new(), outbox)
            .when_empty(t!("status.no_messages").render(lang)),
    ];
    if !status.senders.is_empty() {
        sections.push(Section::new(
            "senders",
            t!("status.senders").render(lang),
            senders,
        ));
    }
    let mut notes = vec![t!("status.due_now", count = status.due_now).render(lang)];
    for r in &status.retrying {
        notes.push(
            t!(
                "status.retrying",
                channel = r.channel,
                count = r.count,
                error = &r.last_error
            )
            .render(lang),
        );
    }
    notes.push(last_tick.render(lang));
    Book {
        title: Some(heading.render(lang)),
        sections,
        notes,
    }
}

/// Messages per (channel, state), the queued ones that are retrying after
/// a failure counted apart (`None`, shown as `retrying`): a failing sender's messages do
/// not look like plain queued ones.
fn outbox_counts(status: &Status) -> Vec<(Channel, Option<OutreachStatus>, i64)> {
    let mut counts = Vec::new();
    for (channel, state, n) in &status.outreach {
        let retrying = status
            .retrying
            .iter()
            .find(|r| r.channel == *channel)
            .map_or(0, |r| r.count);
        if *state == OutreachStatus::Queued && retrying > 0 {
            if *n > retrying {
                counts.push((*channel, Some(*state), n - retrying));
            }
            counts.push((*channel, None, retrying));
        } else {
            counts.push((*channel, Some(*state), *n));
        }
    }
    counts
}

/// A message state by name: a status, or (`None`) queued again after a
/// failure, `retrying`.
fn state_cell(state: Option<OutreachStatus>, lang: Lang) -> Cell {
    match state {
        Some(status) => Cell::term(status.as_str(), &status.name(), lang),
        None => Cell::term("retrying", &t!("status.retrying_state"), lang),
    }
}

/// For files and scripts: one row per number, with the part it belongs to.
fn rows(status: &Status, tz: chrono_tz::Tz, lang: Lang) -> Rows {
    let mut all = Rows::keyed(
        lang,
        &[
            ("section", t!("column.section")),
            ("name", t!("status.name")),
            ("status", t!("column.status")),
            ("count", t!("column.count")),
        ],
    );
    let section = |key: &str, name: Text| Cell::term(key, &name, lang);
    for (pool, n) in &status.pools {
        all.push(vec![
            section("pool", t!("status.section.pool")),
            Cell::term(pool.as_str(), &pool.name(), lang),
            Cell::Empty,
            Cell::Int(*n),
        ]);
    }
    for (channel, state, n) in outbox_counts(status) {
        all.push(vec![
            section("outreach", t!("status.section.outreach")),
            Cell::term(channel.as_str(), &channel.name(), lang),
            state_cell(state, lang),
            Cell::Int(n),
        ]);
    }
    for h in &status.senders {
        all.push(vec![
            section("sender", t!("status.section.sender")),
            Cell::Text(h.sender.clone()),
            Cell::Text(h.state.to_string()),
            Cell::Int(h.failures),
        ]);
    }
    all.push(vec![
        section("due_now", t!("status.section.due_now")),
        Cell::Empty,
        Cell::Empty,
        Cell::Int(status.due_now),
    ]);
    if let Some(t) = &status.last_tick {
        all.push(vec![
            section("last_tick", t!("status.section.last_tick")),
            Cell::Time { at: t.at, tz },
            if t.done {
                Cell::term("done", &t!("status.tick_done"), lang)
            } else {
                Cell::term("running", &t!("status.tick_interrupted"), lang)
            },
            Cell::Int(t.evaluated),
        ]);
    }
    all
}
