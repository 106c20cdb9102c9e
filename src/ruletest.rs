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

use chrono_tz::Tz;
use serde::Deserialize;

use crate::daemon::Loaded;
use crate::diag::{self, Diagnostic, Lang, Report};
use crate::engine::{self, Engine, TickOptions};
use crate::model::{FollowupResult, Gender, Pool};
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
    fn model(&self) -> Result<crate::predict::Model, String> {
        let purchases = crate::predict::BgNbd {
            r: self.r,
            alpha: self.alpha,
            a: self.a,
            b: self.b,
        };
        purchases
            .check()
            .map_err(|e| format!("[case.model]: {e}"))?;
        let spend = match (self.p, self.q, self.v) {
            (None, None, None) => None,
            (Some(p), Some(q), Some(v)) => {
                let spend = crate::predict::GammaGamma { p, q, v };
                spend.check().map_err(|e| format!("[case.model]: {e}"))?;
                Some(spend)
            }
            _ => {
                return Err(
                    "[case.model]: give all of p, q and v for the spend model, or none".into(),
                );
            }
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
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
        report.push(
            Diagnostic::error(path, None, format!("cannot read: {e}")).zh(format!("无法读取：{e}")),
        );
        report.clone()
    })?;
    report.add_source(path, &text);
    let file: TestFile = toml::from_str(&text).map_err(|e| {
        report.push(diag::from_toml_error(path, &e).hint2(
            "a test file holds [[case]] tables with [[case.customer]] and [[case.tick]]",
            "测试文件由 [[case]] 组成，每个 case 含 [[case.customer]] 和 [[case.tick]]",
        ));
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
                    format!("case `{name}` checks nothing: it has no [[case.tick]]"),
                )
                .zh(format!("用例 `{name}` 什么也没检查：它没有 [[case.tick]]"))
                .hint2(
                    "add a [[case.tick]] with at = \"...\" and moves, messages or pools to expect",
                    "请添加 [[case.tick]]，写上 at = \"...\" 以及期望的 moves、messages 或 pools",
                ),
            );
        }
        for (j, tick) in case.get_ref().ticks.iter().enumerate() {
            let t = tick.get_ref();
            if t.moves.is_none() && t.messages.is_none() && t.pools.is_none() {
                report.push(
                    Diagnostic::error(
                        path,
                        tick_headers.get(j).cloned(),
                        format!(
                            "this tick of case `{name}` checks nothing: it expects no moves, messages or pools"
                        ),
                    )
                    .zh(format!(
                        "用例 `{name}` 的这个 tick 什么也没检查：没有写期望的 moves、messages 或 pools"
                    ))
                    .hint2(
                        "write moves = [] to expect that nobody moves, or list what must happen",
                        "若期望没有任何流转，请写 moves = []；否则请列出应发生的流转或消息",
                    ),
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
        if crate::import::parse_time(value, chrono_tz::UTC).is_none() {
            report.push(
                Diagnostic::error(path, place(value), format!("`{value}` is not a time"))
                    .zh(format!("`{value}` 不是时间"))
                    .hint2(
                        "write clinic time like \"2026-03-01 09:00\" or a day like \"2026-03-01\"",
                        "请写诊所当地时间，例如 \"2026-03-01 09:00\"，或日期 \"2026-03-01\"",
                    ),
            );
        }
    };
    let unknown =
        |what_en: &str, what_zh: &str, value: &str, known: Vec<&str>, report: &mut Report| {
            report.push(
                Diagnostic::error(path, place(value), format!("unknown {what_en} `{value}`"))
                    .zh(format!("未知的{what_zh} `{value}`"))
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
                Diagnostic::error(
                    path,
                    place(id),
                    format!(
                        "customer `{id}` has no visit and no first_seen: when did they arrive?"
                    ),
                )
                .zh(format!(
                    "顾客 `{id}` 既没有到院记录（visits）也没有 first_seen：不知道何时进入"
                ))
                .hint2(
                    "add visits = [\"2026-03-01 10:00\"] or first_seen = \"2026-03-01\"",
                    "请添加 visits = [\"2026-03-01 10:00\"] 或 first_seen = \"2026-03-01\"",
                ),
            );
        }
        if let Some(gender) = &customer.gender
            && gender.parse::<Gender>().is_err()
        {
            unknown("gender", "性别", gender, Gender::names(), report);
        }
        if let Some(pool) = &customer.pool
            && pool.parse::<Pool>().is_err()
        {
            unknown("pool", "池", pool, Pool::names(), report);
        }
        for followup in &customer.followups {
            if followup.result.parse::<FollowupResult>().is_err() {
                unknown(
                    "follow-up result",
                    "回访结果",
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

/// Runs every case of a file against the loaded rules and templates.
pub fn run_file(loaded: &Loaded, path: &Path, file: &TestFile, lang: Lang) -> FileResult {
    let cases = file
        .cases
        .iter()
        .map(|case| case.get_ref())
        .map(|case| match run_case(loaded, case, lang) {
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

fn run_case(loaded: &Loaded, case: &Case, lang: Lang) -> Result<CaseResult, String> {
    let zh = lang == Lang::Zh;
    let tz = loaded.config.clinic.timezone;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let mut store = Store::create(&dir.path().join("test.db")).map_err(|e| e.to_string())?;
    let clinic = &loaded.config.clinic;
    let clinic_id = store
        .ensure_clinic(&clinic.code, &clinic.name, tz.name(), 0)
        .map_err(|e| e.to_string())?;
    add_customers(&mut store, clinic_id, &case.customers, tz)?;
    if let Some(spec) = &case.model {
        crate::churn::record_given(&store, clinic_id, &spec.model()?, i64::MIN)
            .map_err(|e| e.to_string())?;
    }
    let engine = Engine::new(clinic, clinic_id, &loaded.rules, &loaded.templates)
        .with_fallbacks(loaded.config.fallbacks());
    let mut result = CaseResult {
        name: case.name.clone(),
        failures: Vec::new(),
        fired: BTreeSet::new(),
    };
    let mut ticks: Vec<&TickSpec> = case.ticks.iter().map(|t| t.get_ref()).collect();
    ticks.sort_by_key(|t| time(&t.at, tz).unwrap_or(i64::MAX));
    for spec in ticks {
        let at = time(&spec.at, tz)?;
        let at = chrono::DateTime::from_timestamp(at, 0).ok_or("time out of range")?;
        let report =
            engine::tick(&mut store, &engine, TickOptions::at(at)).map_err(|e| e.to_string())?;
        for (rule, count) in &report.by_rule {
            if count.fired > 0 {
                result.fired.insert(rule.clone());
            }
            if count.errors > 0 {
                let why = count.first_error.clone().unwrap_or_default();
                result.failures.push(if zh {
                    format!("tick {}：规则 {rule} 无法求值：{why}", spec.at)
                } else {
                    format!(
                        "tick {}: rule {rule} could not be evaluated: {why}",
                        spec.at
                    )
                });
            }
        }
        let Some(tick_id) = report.tick_id else {
            continue;
        };
        let (moves, messages) = store.tick_results(tick_id).map_err(|e| e.to_string())?;
        let label = format!("tick {}", spec.at);
        let words = if zh { &ZH } else { &EN };
        if let Some(expected) = &spec.moves {
            let got: Vec<(String, String)> = moves
                .iter()
                .map(|m| {
                    let rule = m.rule_id.clone().unwrap_or_default();
                    (format!("{} → {} ({rule})", m.customer, m.to), String::new())
                })
                .collect();
            let wanted: Vec<String> = expected
                .iter()
                .map(|e| {
                    format!(
                        "{} → {}{}",
                        e.customer,
                        e.to,
                        e.rule
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
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
            if let Some(failure) =
                compare(&label, words.moves, words, expected, &wanted, &got, matches)
            {
                result.failures.push(failure);
            }
        }
        if let Some(expected) = &spec.messages {
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
            let wanted: Vec<String> = expected
                .iter()
                .map(|e| {
                    let contains = e
                        .contains
                        .as_ref()
                        .map(|c| format!(" {} {c:?}", words.containing))
                        .unwrap_or_default();
                    format!("{} {} {}{contains}", e.customer, e.channel, e.template)
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
            if let Some(failure) = compare(
                &label,
                words.messages,
                words,
                expected,
                &wanted,
                &got,
                matches,
            ) {
                result.failures.push(failure);
            }
        }
        if let Some(pools) = &spec.pools {
            for (customer, pool) in pools {
                let actual = store.pool_of(customer).map_err(|e| e.to_string())?;
                if actual.as_deref() != Some(pool.as_str()) {
                    let found = actual.unwrap_or_else(|| words.no_such_customer.into());
                    result.failures.push(if zh {
                        format!("{label}：期望 {customer} 在 {pool}，实际在 {found}")
                    } else {
                        format!("{label}: expected {customer} in {pool}, found {found}")
                    });
                }
            }
        }
    }
    Ok(result)
}

/// The words of a failure, in one language.
struct Words {
    moves: &'static str,
    messages: &'static str,
    expected: &'static str,
    got: &'static str,
    nothing: &'static str,
    text_of: &'static str,
    containing: &'static str,
    no_such_customer: &'static str,
    colon: &'static str,
    comma: &'static str,
}

const EN: Words = Words {
    moves: "moves",
    messages: "messages",
    expected: "expected: ",
    got: "got:      ",
    nothing: "nothing",
    text_of: "text of",
    containing: "containing",
    no_such_customer: "no such customer",
    colon: ": ",
    comma: ", ",
};

const ZH: Words = Words {
    moves: "流转",
    messages: "消息",
    expected: "期望：",
    got: "实际：",
    nothing: "无",
    text_of: "消息内容",
    containing: "包含",
    no_such_customer: "没有这位顾客",
    colon: "：",
    comma: "，",
};

/// Matches expected entries to actual ones (each actual at most once) and
/// describes the difference, or `None` when they agree. `got` holds each
/// actual entry and, for messages, its text (shown when a text is missing).
fn compare<E>(
    label: &str,
    what: &str,
    words: &Words,
    expected: &[E],
    wanted: &[String],
    got: &[(String, String)],
    matches: impl Fn(&E, usize) -> bool,
) -> Option<String> {
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
    let list = |items: Vec<String>| {
        if items.is_empty() {
            words.nothing.to_string()
        } else {
            items.join("\n                    ")
        }
    };
    let mut text = format!(
        "{label}{}{what}{}\n          {}{}\n          {}{}",
        words.comma,
        words.colon.trim_end(),
        words.expected,
        list(wanted.to_vec()),
        words.got,
        list(got.iter().map(|(g, _)| g.clone()).collect())
    );
    for (entry, content) in extra {
        if !content.is_empty() {
            text.push_str(&format!(
                "\n          {} {entry}{}{content:?}",
                words.text_of, words.colon
            ));
        }
    }
    Some(text)
}

fn time(text: &str, tz: Tz) -> Result<i64, String> {
    crate::import::parse_time(text, tz)
        .ok_or_else(|| format!("`{text}` is not a time like 2026-03-01 09:00"))
}

fn add_customers(
    store: &mut Store,
    clinic_id: i64,
    customers: &[CustomerSpec],
    tz: Tz,
) -> Result<(), String> {
    let mut ingest = store.ingest().map_err(|e| e.to_string())?;
    for spec in customers {
        let visits: Vec<i64> = spec
            .visits
            .iter()
            .map(|v| time(v, tz))
            .collect::<Result<_, _>>()?;
        let first_seen = match &spec.first_seen {
            Some(t) => time(t, tz)?,
            None => *visits.iter().min().ok_or_else(|| {
                format!(
                    "customer {}: give first_seen or at least one visit",
                    spec.id
                )
            })?,
        };
        let gender = spec
            .gender
            .as_deref()
            .map(|g| {
                g.parse::<Gender>()
                    .map_err(|e| format!("customer {}: {e}", spec.id))
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
                    chrono::NaiveDate::parse_from_str(b, "%Y-%m-%d").map_err(|_| {
                        format!("customer {}: birth_date `{b}` is not YYYY-MM-DD", spec.id)
                    })
                })
                .transpose()?,
            city: spec.city.clone(),
            tags: spec.tags.clone(),
            ..NewCustomer::default()
        };
        let id = ingest
            .add_customer(clinic_id, &customer, first_seen)
            .map_err(|e| e.to_string())?;
        for at in visits {
            ingest.add_visit(id, at, None).map_err(|e| e.to_string())?;
        }
        for order in &spec.orders {
            let cents = (order.amount * 100.0).round() as i64;
            ingest
                .add_order(
                    id,
                    time(&order.at, tz)?,
                    cents,
                    order.project.as_deref(),
                    None,
                )
                .map_err(|e| e.to_string())?;
        }
        for followup in &spec.followups {
            let result: FollowupResult = followup
                .result
                .parse()
                .map_err(|e| format!("customer {}: {e}", spec.id))?;
            ingest
                .add_followup(id, time(&followup.at, tz)?, None, result, None)
                .map_err(|e| e.to_string())?;
        }
        if let Some(pool) = &spec.pool {
            let pool: Pool = pool
                .parse()
                .map_err(|e| format!("customer {}: {e}", spec.id))?;
            let since = match &spec.since {
                Some(t) => time(t, tz)?,
                None => first_seen,
            };
            ingest
                .place(id, pool, since, "test setup")
                .map_err(|e| e.to_string())?;
        }
    }
    ingest.commit().map_err(|e| e.to_string())
}
