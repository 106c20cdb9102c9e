//! `recall test`: unit tests for rules, written in TOML by the people who
//! write the rules (like `promtool test rules`).
//!
//! A test file holds cases. Each case describes customers with their
//! visits, orders and follow-ups, then a sequence of ticks at given times,
//! with what each tick must do: the exact pool moves, the exact messages
//! (channel, template, and text they must contain), the pools afterwards.
//! Each case runs against the clinic's real rules and templates on a fresh
//! temporary database; nothing touches the clinic's data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::base::clock::Clock;
use crate::base::diag::{self, Diagnostic, Report};
use crate::base::i18n::{Arg, IntoArg, Text, list, t};
use crate::base::model::{FollowupResult, Gender, Pool};
use crate::engine::{self, Engine, TickOptions};
use crate::setup::Loaded;
use crate::store::Store;
use crate::store::ingest::NewCustomer;

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default, rename = "case")]
    pub cases: Vec<toml::Spanned<Case>>,
}

/// One `[[case]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the results.
    pub name: String,
    #[serde(default, rename = "customer")]
    pub customers: Vec<CustomerSpec>,
    #[serde(default, rename = "tick")]
    pub ticks: Vec<toml::Spanned<TickSpec>>,
    /// The churn model the ticks use; without one the churn facts are null.
    #[serde(default)]
    pub model: Option<ModelSpec>,
}

/// `[case.model]`: churn model parameters in days, as `recall model show`
/// prints them: BG/NBD r, alpha, a, b, and optionally Gamma-Gamma p, q, v.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    #[serde(default)]
    pub p: Option<f64>,
    #[serde(default)]
    pub q: Option<f64>,
    #[serde(default)]
    pub v: Option<f64>,
}

impl ModelSpec {
    fn model(&self) -> Result<crate::predict::Model, Text> {
        let purchases = crate::predict::BgNbd {
            r: self.r,
            alpha: self.alpha,
            a: self.a,
            b: self.b,
        };
        purchases
            .check()
            .map_err(|e| t!("ruletest.model.invalid", error = e))?;
        let spend = match (self.p, self.q, self.v) {
            (None, None, None) => None,
            (Some(p), Some(q), Some(v)) => {
                let spend = crate::predict::GammaGamma { p, q, v };
                spend
                    .check()
                    .map_err(|e| t!("ruletest.model.invalid", error = e))?;
                Some(spend)
            }
            _ => return Err(t!("ruletest.model.spend_partial")),
        };
        Ok(crate::predict::Model {
            unit: crate::predict::TimeUnit::Days,
            purchases,
            spend,
        })
    }
}

/// One `[[case.customer]]` with its history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerSpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    /// The customer's own advisor (专属顾问).
    #[serde(default)]
    pub advisor: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub wechat: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// When the customer was first seen (default: the first visit).
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub visits: Vec<String>,
    #[serde(default)]
    pub orders: Vec<OrderSpec>,
    #[serde(default)]
    pub followups: Vec<FollowupSpec>,
    /// Put the customer in this pool at `since` (default: `new` from first seen).
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSpec {
    pub at: String,
    /// Yuan.
    pub amount: f64,
    #[serde(default)]
    pub project: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowupSpec {
    pub at: String,
    pub result: String,
}

/// One `[[case.tick]]` and what it must do. An expectation left out is not
/// checked; an empty list means "nothing".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickSpec {
    pub at: String,
    #[serde(default)]
    pub moves: Option<Vec<MoveSpec>>,
    #[serde(default)]
    pub messages: Option<Vec<MessageSpec>>,
    /// Customer id → the pool they must be in after the tick.
    #[serde(default)]
    pub pools: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveSpec {
    pub customer: String,
    pub to: String,
    #[serde(default)]
    pub rule: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    pub customer: String,
    pub channel: String,
    pub template: String,
    /// Text the rendered message must contain.
    #[serde(default)]
    pub contains: Option<String>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<Text>,
    /// Rules that fired in the case.
    pub fired: BTreeSet<String>,
}

/// The results of one file.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub path: PathBuf,
    pub cases: Vec<CaseResult>,
}

/// Test files under `path` (a file, or every `*.toml` in a folder).
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    Ok(found)
}

/// Reads one test file; problems are reported with their place.
pub fn parse(path: &Path) -> Result<TestFile, Report> {
    let mut report = Report::default();
    let text = std::fs::read_to_string(path).map_err(|e| {
        report.push(Diagnostic::error(
            path,
            None,
            t!("diag.cannot_read", error = e),
        ));
        report.clone()
    })?;
    report.add_source(path, &text);
    let file: TestFile = toml::from_str(&text).map_err(|e| {
        report.push(diag::from_toml_error(path, &e).hint(t!("ruletest.file.shape_hint")));
        report.clone()
    })?;
    // A case that expects nothing passes whatever the rules do: it would
    // count as "ok" and mark rules as tested without testing them.
    // serde gives tables in arrays no useful place: find the headers.
    let case_headers = headers(&text, 0..text.len(), "[[case]]");
    let region = |i: usize| -> Option<std::ops::Range<usize>> {
        let start = case_headers.get(i)?.start;
        let end = case_headers.get(i + 1).map_or(text.len(), |h| h.start);
        Some(start..end)
    };
    for (i, case) in file.cases.iter().enumerate() {
        let name = &case.get_ref().name;
        let case_region = region(i);
        let tick_headers = case_region
            .clone()
            .map(|r| headers(&text, r, "[[case.tick]]"))
            .unwrap_or_default();
        if case.get_ref().ticks.is_empty() {
            report.push(
                Diagnostic::error(
                    path,
                    case_headers.get(i).cloned(),
                    t!("ruletest.case.no_tick", name),
                )
                .hint(t!("ruletest.case.no_tick_hint")),
            );
        }
        for (j, tick) in case.get_ref().ticks.iter().enumerate() {
            let t = tick.get_ref();
            if t.moves.is_none() && t.messages.is_none() && t.pools.is_none() {
                report.push(
                    Diagnostic::error(
                        path,
                        tick_headers.get(j).cloned(),
                        t!("ruletest.tick.expects_nothing", name),
                    )
                    .hint(t!("ruletest.tick.expects_nothing_hint")),
                );
            }
        }
    }
    for (i, case) in file.cases.iter().enumerate() {
        check_values(path, &text, region(i), case.get_ref(), &mut report);
    }
    if report.has_errors() {
        Err(report)
    } else {
        Ok(file)
    }
}

/// The byte ranges of lines in `within` that are exactly `header` (spaces
/// and a trailing comment aside).
fn headers(
    text: &str,
    within: std::ops::Range<usize>,
    header: &str,
) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut offset = within.start;
    for line in text[within].split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("").trim();
        if code == header {
            let start = offset + (line.len() - line.trim_start().len());
            found.push(start..start + header.len());
        }
        offset += line.len();
    }
    found
}

/// Times and names in a case that cannot be right, reported at the value
/// (found as quoted text inside the case) before anything runs.
fn check_values(
    path: &Path,
    text: &str,
    region: Option<std::ops::Range<usize>>,
    case: &Case,
    report: &mut Report,
) {
    let place = |value: &str| -> Option<std::ops::Range<usize>> {
        let span = region.clone()?;
        let inside = text.get(span.clone())?;
        let quoted = format!("\"{value}\"");
        inside
            .find(&quoted)
            .map(|at| span.start + at + 1..span.start + at + 1 + value.len())
            .or(Some(span.start..span.start + 8))
    };
    let bad_time = |value: &str, report: &mut Report| {
        // Only whether it reads: `now` reads at any instant.
        if crate::import::parse_time(value, chrono_tz::UTC, DateTime::UNIX_EPOCH).is_none() {
            report.push(
                Diagnostic::error(path, place(value), t!("ruletest.not_a_time", value))
                    .hint(t!("ruletest.not_a_time_hint")),
            );
        }
    };
    let unknown = |what: Text, value: &str, known: Vec<&str>, report: &mut Report| {
        report.push(
            Diagnostic::error(path, place(value), t!("ruletest.unknown", what, value))
                .suggest(value, known),
        );
    };
    for customer in &case.customers {
        for at in customer
            .visits
            .iter()
            .chain(&customer.first_seen)
            .chain(&customer.since)
            .chain(customer.orders.iter().map(|o| &o.at))
            .chain(customer.followups.iter().map(|f| &f.at))
        {
            bad_time(at, report);
        }
        if customer.first_seen.is_none() && customer.visits.is_empty() {
            let id = &customer.id;
            report.push(
                Diagnostic::error(path, place(id), t!("ruletest.customer.no_arrival", id))
                    .hint(t!("ruletest.customer.no_arrival_hint")),
            );
        }
        if let Some(gender) = &customer.gender
            && gender.parse::<Gender>().is_err()
        {
            unknown(t!("ruletest.what.gender"), gender, Gender::names(), report);
        }
        if let Some(pool) = &customer.pool
            && pool.parse::<Pool>().is_err()
        {
            unknown(t!("ruletest.what.pool"), pool, Pool::names(), report);
        }
        for followup in &customer.followups {
            if followup.result.parse::<FollowupResult>().is_err() {
                unknown(
                    t!("ruletest.what.followup_result"),
                    &followup.result,
                    FollowupResult::names(),
                    report,
                );
            }
        }
    }
    for tick in &case.ticks {
        bad_time(&tick.get_ref().at, report);
    }
}

/// Runs every case of a file against the loaded rules and templates; a
/// time written `now` is the clock's now.
pub fn run_file(loaded: &Loaded, path: &Path, file: &TestFile, clock: Clock) -> FileResult {
    let cases = file
        .cases
        .iter()
        .map(|case| case.get_ref())
        .map(|case| match run_case(loaded, case, clock) {
            Ok(result) => result,
            Err(e) => CaseResult {
                name: case.name.clone(),
                failures: vec![e],
                fired: BTreeSet::new(),
            },
        })
        .collect();
    FileResult {
        path: path.to_path_buf(),
        cases,
    }
}

/// An error of the machinery a case runs on (the store, a temporary
/// folder), as it says it.
fn failed(error: impl std::fmt::Display) -> Text {
    t!("ruletest.error", error)
}

fn run_case(loaded: &Loaded, case: &Case, clock: Clock) -> Result<CaseResult, Text> {
    let tz = loaded.config.clinic.timezone;
    let dir = tempfile::tempdir().map_err(|e| t!("ruletest.tempdir", error = e))?;
    let mut store = Store::create(&dir.path().join("test.db")).map_err(failed)?;
    let clinic = &loaded.config.clinic;
    let clinic_id = store
        .ensure_clinic(&clinic.code, &clinic.name, tz.name(), 0)
        .map_err(failed)?;
    add_customers(&mut store, clinic_id, &case.customers, tz, clock.now())?;
    if let Some(spec) = &case.model {
        crate::churn::record_given(&store, clinic_id, &spec.model()?, i64::MIN).map_err(failed)?;
    }
    let engine = Engine::new(clinic, clinic_id, &loaded.rules, &loaded.templates)
        .with_fallbacks(loaded.config.fallbacks());
    let mut result = CaseResult {
        name: case.name.clone(),
        failures: Vec::new(),
        fired: BTreeSet::new(),
    };
    let mut ticks: Vec<&TickSpec> = case.ticks.iter().map(|t| t.get_ref()).collect();
    ticks.sort_by_key(|t| time(&t.at, tz, clock.now()).unwrap_or(i64::MAX));
    for spec in ticks {
        let at = time(&spec.at, tz, clock.now())?;
        let at = chrono::DateTime::from_timestamp(at, 0).ok_or(t!("ruletest.time_out_of_range"))?;
        let report = engine::tick(&mut store, &engine, TickOptions::at(at)).map_err(failed)?;
        for (rule, count) in &report.by_rule {
            if count.fired > 0 {
                result.fired.insert(rule.clone());
            }
            if count.errors > 0 {
                let why = count.first_error.clone().unwrap_or_default();
                result
                    .failures
                    .push(t!("ruletest.rule_error", at = &spec.at, rule, why));
            }
        }
        let Some(tick_id) = report.tick_id else {
            continue;
        };
        let (moves, messages) = store.tick_results(tick_id).map_err(failed)?;
        let label = format!("tick {}", spec.at);
        if let Some(expected) = &spec.moves {
            result
                .failures
                .extend(check_moves(&label, expected, &moves));
        }
        if let Some(expected) = &spec.messages {
            result
                .failures
                .extend(check_messages(&label, expected, &messages));
        }
        if let Some(pools) = &spec.pools {
            for (customer, pool) in pools {
                let actual = store.pool_of(customer).map_err(failed)?;
                if actual.as_deref() != Some(pool.as_str()) {
                    let found: Arg = match actual {
                        Some(found) => found.into_arg(),
                        None => t!("ruletest.no_such_customer").into_arg(),
                    };
                    result.failures.push(t!(
                        "ruletest.pool",
                        label = &label,
                        customer,
                        pool,
                        found
                    ));
                }
            }
        }
    }
    Ok(result)
}

/// The tick's moves against the expected ones, or the difference.
fn check_moves(
    label: &str,
    expected: &[MoveSpec],
    moves: &[crate::store::queries::MoveEntry],
) -> Option<Text> {
    let got: Vec<(String, String)> = moves
        .iter()
        .map(|m| {
            let rule = m.rule_id.clone().unwrap_or_default();
            (format!("{} → {} ({rule})", m.customer, m.to), String::new())
        })
        .collect();
    let wanted: Vec<Arg> = expected
        .iter()
        .map(|e| {
            let rule = e
                .rule
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("{} → {}{rule}", e.customer, e.to).into_arg()
        })
        .collect();
    let matches = |e: &MoveSpec, i: usize| {
        let m = &moves[i];
        m.customer == e.customer
            && m.to == e.to
            && e.rule
                .as_ref()
                .is_none_or(|r| m.rule_id.as_deref() == Some(r.as_str()))
    };
    compare(
        label,
        t!("ruletest.moves"),
        expected,
        &wanted,
        &got,
        matches,
    )
}

/// The tick's messages against the expected ones, or the difference.
fn check_messages(
    label: &str,
    expected: &[MessageSpec],
    messages: &[crate::store::queries::LogEntry],
) -> Option<Text> {
    let got: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                format!(
                    "{} {} {} ({})",
                    m.customer, m.channel, m.template, m.rule_id
                ),
                m.content.clone(),
            )
        })
        .collect();
    let wanted: Vec<Arg> = expected
        .iter()
        .map(|e| {
            let message = format!("{} {} {}", e.customer, e.channel, e.template);
            match &e.contains {
                Some(text) => {
                    t!("ruletest.containing", message, text = format!("{text:?}")).into_arg()
                }
                None => message.into_arg(),
            }
        })
        .collect();
    let matches = |e: &MessageSpec, i: usize| {
        let m = &messages[i];
        m.customer == e.customer
            && m.channel == e.channel
            && m.template == e.template
            && e.contains
                .as_ref()
                .is_none_or(|c| m.content.contains(c.as_str()))
    };
    compare(
        label,
        t!("ruletest.messages"),
        expected,
        &wanted,
        &got,
        matches,
    )
}

/// Matches expected entries to actual ones (each actual at most once) and
/// describes the difference, or `None` when they agree. `got` holds each
/// actual entry and, for messages, its text (shown when a text is missing).
fn compare<E>(
    label: &str,
    what: Text,
    expected: &[E],
    wanted: &[Arg],
    got: &[(String, String)],
    matches: impl Fn(&E, usize) -> bool,
) -> Option<Text> {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for (e, description) in expected.iter().zip(wanted) {
        match (0..got.len()).find(|i| !used[*i] && matches(e, *i)) {
            Some(i) => used[i] = true,
            None => missing.push(description.clone()),
        }
    }
    let extra: Vec<&(String, String)> = got
        .iter()
        .enumerate()
        .filter(|(i, _)| !used[*i])
        .map(|(_, g)| g)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let entries = |items: Vec<Arg>| -> Arg {
        if items.is_empty() {
            t!("ruletest.nothing").into_arg()
        } else {
            list(items, t!("ruletest.entries"))
        }
    };
    let texts: Vec<Text> = extra
        .iter()
        .filter(|(_, content)| !content.is_empty())
        .map(|(entry, content)| t!("ruletest.text_of", entry, content = format!("{content:?}")))
        .collect();
    Some(t!(
        "ruletest.diff",
        label,
        what,
        expected = entries(wanted.to_vec()),
        got = entries(got.iter().map(|(g, _)| g.into_arg()).collect()),
        texts = list(texts, t!("ruletest.no_separator"))
    ))
}

fn time(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<i64, Text> {
    crate::import::parse_time(text, tz, now).ok_or_else(|| t!("ruletest.bad_time", text))
}

fn add_customers(
    store: &mut Store,
    clinic_id: i64,
    customers: &[CustomerSpec],
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(), Text> {
    let mut ingest = store.ingest().map_err(failed)?;
    for spec in customers {
        let visits: Vec<i64> = spec
            .visits
            .iter()
            .map(|v| time(v, tz, now))
            .collect::<Result<_, _>>()?;
        let first_seen = match &spec.first_seen {
            Some(t) => time(t, tz, now)?,
            None => *visits
                .iter()
                .min()
                .ok_or_else(|| t!("ruletest.customer.no_first_seen", id = &spec.id))?,
        };
        let gender = spec
            .gender
            .as_deref()
            .map(|g| {
                g.parse::<Gender>()
                    .map_err(|e| t!("ruletest.customer.invalid", id = &spec.id, error = e))
            })
            .transpose()?;
        let customer = NewCustomer {
            external_id: spec.id.clone(),
            name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
            phone: spec.phone.clone(),
            email: spec.email.clone(),
            wecom_external_userid: spec.wechat.clone(),
            gender,
            birth_date: spec
                .birth_date
                .as_deref()
                .map(|b| {
                    chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d")
                        .map_err(|_| t!("ruletest.customer.birth_date", id = &spec.id, value = b))
                })
                .transpose()?,
            city: spec.city.clone(),
            advisor: spec.advisor.clone(),
            tags: spec.tags.clone(),
            ..NewCustomer::default()
        };
        let id = ingest
            .add_customer(clinic_id, &customer, first_seen)
            .map_err(failed)?;
        for at in visits {
            ingest.add_visit(id, at, None).map_err(failed)?;
        }
        for order in &spec.orders {
            let cents = (order.amount * 100.0).round() as i64;
            ingest
                .add_order(
                    id,
                    time(&order.at, tz, now)?,
                    cents,
                    order.project.as_deref(),
                    None,
                )
                .map_err(failed)?;
        }
        for followup in &spec.followups {
            let result: FollowupResult = followup
                .result
                .parse()
                .map_err(|e| t!("ruletest.customer.invalid", id = &spec.id, error = e))?;
            ingest
                .add_followup(id, time(&followup.at, tz, now)?, None, result, None)
                .map_err(failed)?;
        }
        if let Some(pool) = &spec.pool {
            let pool: Pool = pool
                .parse()
                .map_err(|e| t!("ruletest.customer.invalid", id = &spec.id, error = e))?;
            let since = match &spec.since {
                Some(t) => time(t, tz, now)?,
                None => first_seen,
            };
            ingest
                .place(id, pool, since, "test setup")
                .map_err(failed)?;
        }
    }
    ingest.commit().map_err(failed)
}
