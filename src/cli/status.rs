//! `recall status`: pool sizes, the outbox by channel and status, the last tick.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Book, Format, OutputArgs, Rows, lang, load_config, open_store, write};
use crate::base::clock;
use crate::base::i18n::{Lang, Text, t};
use crate::base::output::{Cell, Section};
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
    for (channel, state, n) in &status.outreach {
        outbox.push(vec![
            Cell::term(channel.as_str(), &channel.name(), lang),
            Cell::term(state.as_str(), &state.name(), lang),
            Cell::Int(*n),
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
    Book {
        title: Some(heading.render(lang)),
        sections: vec![
            Section::new("pools", String::new(), pools),
            Section::new("outbox", String::new(), outbox)
                .when_empty(t!("status.no_messages").render(lang)),
        ],
        notes: vec![
            t!("status.due_now", count = status.due_now).render(lang),
            last_tick.render(lang),
        ],
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
    for (channel, state, n) in &status.outreach {
        all.push(vec![
            section("outreach", t!("status.section.outreach")),
            Cell::term(channel.as_str(), &channel.name(), lang),
            Cell::term(state.as_str(), &state.name(), lang),
            Cell::Int(*n),
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
