//! `recall log`: the outreach log (every message and what became of it), or
//! the pool moves.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use chrono_tz::Tz;

use super::{Book, Format, OutputArgs, Rows, lang, load_config, open_store, write};
use crate::base::clock;
use crate::base::i18n::{Lang, t};
use crate::base::model::{Channel, OutreachStatus, Pool};
use crate::base::output::{Cell, Section};
use crate::base::reason;
use crate::store::Store;
use crate::store::queries::LogFilter;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only this customer (the clinic's customer id).
    #[arg(long)]
    pub customer: Option<String>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this status (queued, sending, awaiting, sent, failed, suppressed,
    /// opted_out, held_out, cancelled, expired).
    #[arg(long)]
    pub status: Option<String>,
    /// Only entries at or after this time (clinic time).
    #[arg(long)]
    pub since: Option<String>,
    /// The newest N entries; 0 for all.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Show pool moves instead of messages.
    #[arg(long)]
    pub moves: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `recall log`.
pub(super) fn run(config_path: &Path, args: &LogArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let channel = args
        .channel
        .as_deref()
        .map(|c| c.parse::<Channel>())
        .transpose()?;
    let status = args
        .status
        .as_deref()
        .map(|s| s.parse::<OutreachStatus>())
        .transpose()?;
    let filter = LogFilter {
        customer: args.customer.clone(),
        rule: args.rule.clone(),
        channel,
        status,
        since: args
            .since
            .as_deref()
            .map(|s| clock::parse_time(s, tz, now).map(|t| t.timestamp()))
            .transpose()?,
        limit: (args.limit > 0).then_some(args.limit),
    };
    let (store, _) = open_store(&config, now)?;
    let lang = lang();
    let output = args.output.output(Format::Table, lang);
    let section = if args.moves {
        Section::new(
            "moves",
            t!("log.moves_title").render(lang),
            moves(&store, &filter, tz, lang)?,
        )
    } else {
        let table = output.format == Format::Table;
        let rows = messages(&store, &filter, tz, lang)?;
        let rows = if table {
            // Keep the table readable: the columns people scan.
            rows.select(&[
                "created", "customer", "rule", "channel", "status", "attempts", "error", "content",
            ])
        } else {
            rows
        };
        Section::new("messages", t!("log.title").render(lang), rows)
    };
    let section = section.cut_at(40).when_empty(t!("log.none").render(lang));
    write(&output, &Book::one(section))?;
    Ok(ExitCode::SUCCESS)
}

/// The pool moves that pass the filter.
fn moves(store: &Store, filter: &LogFilter, tz: Tz, lang: Lang) -> Result<Rows> {
    let mut rows = Rows::keyed(
        lang,
        &[
            ("time", t!("column.time")),
            ("customer", t!("column.customer")),
            ("from", t!("column.from")),
            ("to", t!("column.to")),
            ("rule", t!("column.rule")),
            ("reason", t!("column.reason")),
        ],
    );
    for m in store.moves(filter)? {
        rows.push(vec![
            Cell::Time { at: m.at, tz },
            Cell::Text(m.customer),
            m.from
                .map_or(Cell::Empty, |from| Cell::named(&from, Pool::name, lang)),
            Cell::named(&m.to, Pool::name, lang),
            Cell::text(m.rule_id),
            reason::cell(Some(m.reason), lang),
        ]);
    }
    Ok(rows)
}

/// The messages that pass the filter, every column; statuses by their
/// names in `lang` for people (`已取消`), by their ids for scripts.
fn messages(store: &Store, filter: &LogFilter, tz: Tz, lang: Lang) -> Result<Rows> {
    let mut rows = Rows::keyed(
        lang,
        &[
            ("id", t!("column.id")),
            ("created", t!("column.created")),
            ("due", t!("column.due")),
            ("sent", t!("column.sent")),
            ("customer", t!("column.customer")),
            ("rule", t!("column.rule")),
            ("pool", t!("column.pool")),
            ("channel", t!("column.channel")),
            ("template", t!("column.template")),
            ("status", t!("column.status")),
            ("attempts", t!("column.attempts")),
            ("sender", t!("column.sender")),
            ("provider_id", t!("column.provider_id")),
            ("error", t!("column.error")),
            ("subject", t!("column.subject")),
            ("content", t!("column.content")),
        ],
    );
    let time = |at| Cell::Time { at, tz };
    for e in store.log(filter)? {
        rows.push(vec![
            Cell::Int(e.id),
            time(e.created_at),
            time(e.due_at),
            e.sent_at.map_or(Cell::Empty, time),
            Cell::Text(e.customer),
            Cell::Text(e.rule_id),
            Cell::named(&e.pool, Pool::name, lang),
            Cell::named(&e.channel, Channel::name, lang),
            Cell::Text(e.template),
            Cell::named(&e.status, OutreachStatus::name, lang),
            Cell::Int(e.attempts),
            Cell::text(e.sender),
            Cell::text(e.provider_id),
            reason::cell(e.last_error, lang),
            Cell::text(e.subject),
            Cell::Text(e.content),
        ]);
    }
    Ok(rows)
}
