//! `recall customer QUERY`: find a customer by clinic id, part of the name
//! or the phone (a whole number in any format, or its last four digits
//! with part of the name), and tell one customer's story: who they are,
//! the pool they are in and since when, every fact as a tick at that time
//! judges it, and one timeline of visits, orders, follow-ups, moves with
//! their full reasons, messages and call tasks. Several matches list the
//! candidates instead.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;

use super::{
    Book, Format, OutputArgs, Rows, lang, load_config, only_section, open_store, parse_at, write,
};
use crate::base::i18n::{Lang, Text, t};
use crate::base::mask;
use crate::base::output::{Cell, Section};
use crate::engine::story::{CustomerStory, customer_story};
use crate::facts::{CATALOGUE, FactValue, Facts};
use crate::store::story::{Candidate, Event, Search};

#[derive(Debug, Args)]
pub struct CustomerArgs {
    /// A clinic id (C0042), part of a name (孙磊, 孙), a phone number in any
    /// format (138 0013 8000), or the last four digits of the phone with
    /// part of the name (孙 8000). Several words need no quotes.
    #[arg(required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Tell the story as of this time (clinic time): events up to it, and
    /// the facts a tick at that time judged.
    #[arg(long)]
    pub at: Option<String>,
    /// Only this section: customer, facts or timeline (CSV to standard
    /// output needs one).
    #[arg(long)]
    pub section: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `recall customer`.
pub(super) fn run(config_path: &Path, args: &CustomerArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let lang = lang();
    let at = parse_at(args.at.as_deref(), &config, now)?.timestamp();
    let query = args.query.join(" ");
    let Some(search) = Search::parse_in(&query, config.clinic.country) else {
        bail!(t!("customer.blank").render(lang));
    };
    let (store, clinic_id) = open_store(&config, now)?;
    let tz = config.clinic.timezone;
    let output = args.output.output(Format::Table, lang);
    let found = store.find_customers(clinic_id, &search)?;
    let one = match found.as_slice() {
        [] => {
            eprintln!("{}", t!("customer.none", query).render(lang));
            eprintln!("{}", t!("customer.none_hint").render(lang));
            return Ok(ExitCode::FAILURE);
        }
        [one] => one,
        several => {
            let mut book = Book::one(Section::new(
                "candidates",
                t!("customer.candidates").render(lang),
                candidates(several, lang),
            ));
            let count = several.len();
            book.notes.push(t!("customer.several", count).render(lang));
            write(&output, &book)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let Some(story) = customer_story(&store, &config.clinic, clinic_id, one.id, at)? else {
        bail!(t!("customer.none", query).render(lang));
    };
    let table = output.format == Format::Table;
    let mut book = only_section(
        book(&story, lang, tz, table),
        args.section.as_deref(),
        |section, known| t!("customer.unknown_section", section, known),
    )?;
    if table {
        // The value as a reason quotes it is for scripts; people read the value.
        for section in book.sections.iter_mut().filter(|s| s.key == "facts") {
            section.rows = section.rows.select(&["fact", "value", "model"]);
        }
    }
    write(&output, &book)?;
    Ok(ExitCode::SUCCESS)
}

/// The customers a search found: id, name, masked phone, pool.
fn candidates(found: &[Candidate], lang: Lang) -> Rows {
    let mut rows = Rows::keyed(
        lang,
        &[
            ("customer", t!("column.customer")),
            ("name", t!("column.name")),
            ("phone", t!("column.phone")),
            ("pool", t!("column.pool")),
        ],
    );
    for c in found {
        rows.push(vec![
            Cell::Text(c.external_id.clone()),
            Cell::Text(c.name.clone()),
            Cell::text(c.phone.as_deref().map(mask::phone)),
            c.pool
                .map_or(Cell::Empty, |p| Cell::term(p.as_str(), &p.name(), lang)),
        ]);
    }
    rows
}

/// One customer's story: who, facts, timeline. A `table` shows the
/// first words of a message; files carry it whole.
fn book(story: &CustomerStory, lang: Lang, tz: Tz, table: bool) -> Book {
    let c = &story.story.customer;
    let at = crate::base::clock::format_local(story.at, tz);
    let mut facts = Section::new(
        "facts",
        t!("customer.facts_title", at).render(lang),
        match &story.facts {
            Some(facts) => fact_rows(facts, lang),
            None => Rows::default(),
        },
    )
    .when_empty(t!("customer.not_yet").render(lang));
    if story.model.is_none() && story.facts.is_some() {
        facts.title = format!("{} {}", facts.title, t!("customer.no_model").render(lang));
    }
    Book {
        title: Some(t!("customer.title", name = &c.name, id = &c.external_id).render(lang)),
        sections: vec![
            Section::new(
                "customer",
                t!("customer.customer_title").render(lang),
                profile(story, lang, tz),
            ),
            facts,
            Section::new(
                "timeline",
                t!("customer.timeline_title").render(lang),
                timeline(story, lang, tz, table),
            )
            .when_empty(t!("customer.no_events").render(lang)),
        ],
        notes: Vec::new(),
    }
}

/// Who the customer is and where they stand: field and value.
fn profile(story: &CustomerStory, lang: Lang, tz: Tz) -> Rows {
    let mut rows = Rows::keyed(
        lang,
        &[("field", t!("column.field")), ("value", t!("column.value"))],
    );
    let s = &story.story;
    let field = |key: &str, name: Text| Cell::term(key, &name, lang);
    let time = |at| Cell::Time { at, tz };
    rows.push(vec![
        field("customer", t!("column.customer")),
        Cell::Text(s.customer.external_id.clone()),
    ]);
    rows.push(vec![
        field("name", t!("column.name")),
        Cell::Text(s.customer.name.clone()),
    ]);
    rows.push(vec![
        field("phone", t!("column.phone")),
        Cell::text(s.phone.as_deref().map(mask::phone)),
    ]);
    let (pool, since) = match story.pool {
        Some((pool, since)) => (Cell::term(pool.as_str(), &pool.name(), lang), time(since)),
        None => (Cell::Empty, Cell::Empty),
    };
    rows.push(vec![field("pool", t!("column.pool")), pool]);
    rows.push(vec![field("pool_since", t!("column.pool_since")), since]);
    let dnc = if s.do_not_contact {
        Cell::term("yes", &t!("customer.yes"), lang)
    } else {
        Cell::term("no", &t!("customer.no"), lang)
    };
    rows.push(vec![
        field("do_not_contact", t!("column.do_not_contact")),
        dnc,
    ]);
    rows.push(vec![
        field("model", t!("column.model")),
        story
            .model
            .as_ref()
            .map_or(Cell::Empty, |m| Cell::Int(m.fit_id)),
    ]);
    rows.push(vec![field("at", t!("column.at")), time(story.at)]);
    rows
}

/// Every fact of the catalogue with its value; `quoted` is the value as a
/// move's reason quotes it, `model` the fit behind a churn fact.
fn fact_rows(facts: &Facts, lang: Lang) -> Rows {
    let mut rows = Rows::keyed(
        lang,
        &[
            ("fact", t!("column.fact")),
            ("value", t!("column.value")),
            ("model", t!("column.model")),
            ("quoted", t!("column.quoted")),
        ],
    );
    for def in CATALOGUE {
        let Some(value) = facts.get(def.name) else {
            continue;
        };
        let model = match facts.outlook.fit_id() {
            Some(fit) if def.from_model => Cell::Int(fit),
            _ => Cell::Empty,
        };
        rows.push(vec![
            Cell::Text(def.name.to_string()),
            fact_cell(def.name, value, lang),
            model,
            Cell::Text(value.to_string()),
        ]);
    }
    rows
}

/// A fact's value as a typed cell: numbers as numbers (money with two
/// decimals), the pool by its name.
fn fact_cell(name: &str, value: FactValue<'_>, lang: Lang) -> Cell {
    match value {
        FactValue::Int(v) => v.map_or(Cell::Empty, Cell::Int),
        FactValue::Double(v) => {
            let places = if matches!(name, "total_spend" | "predicted_clv") {
                2
            } else {
                4
            };
            Cell::decimal(v, places)
        }
        FactValue::Bool(v) => Cell::Text(v.to_string()),
        FactValue::Text(Some(text)) if name == "pool" => {
            match text.parse::<crate::base::model::Pool>() {
                Ok(pool) => Cell::term(text, &pool.name(), lang),
                Err(_) => Cell::Text(text.to_string()),
            }
        }
        FactValue::Text(v) => Cell::text(v),
        FactValue::List(items) => Cell::Text(items.join(", ")),
    }
}

/// One timeline: time, kind, what, detail, amount, status. A move's reason
/// is always whole (it quotes the facts the rule read); in a `table` a
/// message shows its first [`MESSAGE_IN_TABLE`] characters.
fn timeline(story: &CustomerStory, lang: Lang, tz: Tz, table: bool) -> Rows {
    let mut rows = Rows::keyed(
        lang,
        &[
            ("time", t!("column.time")),
            ("kind", t!("column.kind")),
            ("what", t!("column.what")),
            ("detail", t!("column.detail")),
            ("amount", t!("column.amount")),
            ("status", t!("column.status")),
        ],
    );
    let pool = |p: crate::base::model::Pool| p.name().render(lang);
    for event in story.story.timeline(story.at) {
        let kind = Cell::term(event.kind(), &kind_name(&event), lang);
        let time = Cell::Time { at: event.at(), tz };
        let (what, detail, amount, status) = match event {
            Event::Visit(v) => (
                Cell::text(v.department.clone()),
                Cell::text(v.note.clone()),
                Cell::Empty,
                Cell::Empty,
            ),
            Event::Order(o) => {
                let what = [o.project.as_deref(), o.department.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · ");
                (
                    Cell::Text(what),
                    Cell::Empty,
                    Cell::yuan_cents(o.amount_cents),
                    Cell::Empty,
                )
            }
            Event::Followup(f) => (
                Cell::text(f.staff.clone()),
                Cell::text(f.note.clone()),
                Cell::Empty,
                Cell::text(f.result.map(|r| r.as_str())),
            ),
            Event::Move(m) => {
                let to = pool(m.to);
                let what = match (m.from, &m.rule_id) {
                    (Some(from), Some(rule)) => {
                        t!("customer.moved_by", from = pool(from), to, rule)
                    }
                    (Some(from), None) => t!("customer.moved", from = pool(from), to),
                    (None, _) => t!("customer.placed", to),
                };
                (
                    Cell::Text(what.render(lang)),
                    Cell::Text(m.reason.clone()),
                    Cell::Empty,
                    Cell::Empty,
                )
            }
            Event::Message(m) => {
                let what = format!("{} · {} · {}", m.channel, m.rule_id, m.template);
                let mut detail = match &m.subject {
                    Some(subject) => format!("{subject}: {}", m.content),
                    None => m.content.clone(),
                };
                if table && detail.chars().count() > MESSAGE_IN_TABLE {
                    detail = detail.chars().take(MESSAGE_IN_TABLE - 1).collect();
                    detail.push('…');
                }
                let mut status = vec![m.status.clone()];
                status.extend(m.outcomes.iter().cloned());
                status.extend(m.last_error.clone());
                (
                    Cell::Text(what),
                    Cell::Text(detail),
                    Cell::Empty,
                    Cell::Text(status.join(" · ")),
                )
            }
            Event::Task(task) => {
                let status = match task.outcome {
                    Some(outcome) => Cell::term(outcome.as_str(), &outcome.name(), lang),
                    None => Cell::Text(task.status.clone()),
                };
                (
                    Cell::Text(format!("{} · {}", task.staff, task.due_date)),
                    Cell::text(task.note.clone()),
                    Cell::Empty,
                    status,
                )
            }
        };
        rows.push(vec![time, kind, what, detail, amount, status]);
    }
    rows
}

/// How much of a message a table shows.
const MESSAGE_IN_TABLE: usize = 60;

fn kind_name(event: &Event<'_>) -> Text {
    match event {
        Event::Visit(_) => t!("customer.kind.visit"),
        Event::Order(_) => t!("customer.kind.order"),
        Event::Followup(_) => t!("customer.kind.followup"),
        Event::Move(_) => t!("customer.kind.move"),
        Event::Message(_) => t!("customer.kind.message"),
        Event::Task(_) => t!("customer.kind.call_task"),
    }
}
