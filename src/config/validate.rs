//! The second stage: a [`ConfigFile`] checked and resolved into a
//! [`Config`], one function per section, each returning its checked part
//! and pushing every problem into one [`Report`] so that all of them are
//! shown at once. Pure: touches no network, reads no file.

use crate::base::phone::CountryCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use toml::Spanned;

use super::file::{
    ChannelSection, ClinicSection, ConfigFile, DispatchSection, MetricsSection, ModelSection,
    PathsSection, RetentionSection, ScheduleSection,
};
use super::{
    Cap, ChannelPolicy, Clinic, Config, Cycles, DispatchSettings, MIN_RETENTION, ModelSettings,
    QuietHours, RateLimit, Schedule, SenderEntry, ever_fires, parse_cron,
};
use crate::base::diag::{Diagnostic, Report};
use crate::base::i18n::{Text, t};
use crate::base::model::Channel;
use crate::predict::{RiskBands, ScoreConfig};

/// Checks a parsed file and resolves it; problems go to `report`, section
/// by section.
pub(super) fn validate(path: &Path, text: &str, file: ConfigFile, report: &mut Report) -> Config {
    let mut clinic = clinic(path, file.clinic, report);
    let paths = paths(path, &file.paths);
    let schedule = schedule(path, &file.schedule, report);
    let mut dispatch = dispatch(path, text, &file.dispatch, report);
    let senders = senders(path, text, file.senders, report);
    let channels = channels(path, text, &file.channels, &senders, report);
    dispatch.alert = alert(path, file.dispatch.alert.as_ref(), &senders, report);
    let retention = retention(path, &file.retention, report);
    let metrics = metrics(path, file.metrics.as_ref(), report);
    clinic.cycles = cycles(path, &file.cycles, report);
    let (model, scoring) = model(path, &file.model, report);
    clinic.scoring = scoring;
    // `[dispatch] max_per_customer` is checked last, after `[model]`: its
    // problem has always been reported at the end, and the order is kept.
    dispatch.cap = cap(path, file.dispatch.max_per_customer.as_ref(), report);

    Config {
        path: path.to_path_buf(),
        clinic,
        database: paths.database,
        rules_dir: paths.rules,
        templates_dir: paths.templates,
        schedule,
        dispatch,
        senders,
        channels,
        retention,
        metrics,
        model,
        consent_when_absent: file.consent.default_when_absent,
    }
}

/// `[clinic]`: who the clinic is and its time zone. The clinic's cycles and
/// scoring come from `[cycles]` and `[model]`, checked later.
fn clinic(path: &Path, file: ClinicSection, report: &mut Report) -> Clinic {
    let tz_text = file.timezone.get_ref();
    let timezone = tz_text.parse::<Tz>().unwrap_or_else(|_| {
        let known = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        report.push(
            Diagnostic::error(
                path,
                span_of(&file.timezone.span()),
                t!("config.clinic.unknown_timezone", name = tz_text),
            )
            .suggest(tz_text, known)
            .hint(t!("config.clinic.timezone_hint")),
        );
        chrono_tz::Asia::Shanghai
    });
    let country = match &file.country_code {
        None => CountryCode::CHINA,
        Some(code) => CountryCode::parse(code.get_ref()).unwrap_or_else(|| {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&code.span()),
                    t!("config.clinic.bad_country_code", code = code.get_ref()),
                )
                .hint(t!("config.clinic.country_code_hint")),
            );
            CountryCode::CHINA
        }),
    };
    Clinic {
        code: file.code,
        name: file.name,
        timezone,
        phone: file.phone,
        country,
        cycles: Cycles::default(),
        scoring: ScoreConfig::default(),
    }
}

/// `[paths]`, resolved against the folder of `recall.toml`.
struct Paths {
    database: PathBuf,
    rules: PathBuf,
    templates: PathBuf,
}

/// `[paths]`: nothing to check, relative paths resolved.
fn paths(path: &Path, file: &PathsSection) -> Paths {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    Paths {
        database: resolve(&file.database),
        rules: resolve(&file.rules),
        templates: resolve(&file.templates),
    }
}

/// `[schedule]`: every tick's cron expression, and the dispatch interval.
fn schedule(path: &Path, file: &ScheduleSection, report: &mut Report) -> Schedule {
    let mut ticks = Vec::new();
    for expr in &file.ticks {
        match parse_cron(expr.get_ref()) {
            Ok((six, _)) if !ever_fires(&six) => report.push(
                Diagnostic::error(
                    path,
                    span_of(&expr.span()),
                    t!("config.schedule.never", cron = expr.get_ref()),
                )
                .hint(t!("config.schedule.never_hint")),
            ),
            Ok((six, _)) => ticks.push(six),
            Err(why) => report.push(
                Diagnostic::error(
                    path,
                    span_of(&expr.span()),
                    t!("config.schedule.bad", cron = expr.get_ref(), why),
                )
                .hint(t!("config.schedule.hint")),
            ),
        }
    }
    let dispatch_every = duration(
        path,
        &file.dispatch_every,
        t!("config.duration.dispatch_every"),
        report,
    );
    Schedule {
        ticks,
        dispatch_every,
    }
}

/// `[dispatch]`: the retry timings and the sizes of a round. Its cap over
/// all channels (`max_per_customer`) is left unset: [`validate`] checks it
/// last.
fn dispatch(
    path: &Path,
    text: &str,
    file: &DispatchSection,
    report: &mut Report,
) -> DispatchSettings {
    let key = |table: &str, key: &str| find_key(text, table, key);
    let mut read = |field: &Spanned<String>, what: Text| duration(path, field, what, report);
    let retry_backoff = read(&file.retry_backoff, t!("config.duration.retry_backoff"));
    let max_backoff = read(&file.max_backoff, t!("config.duration.max_backoff"));
    let give_up_after = read(&file.give_up_after, t!("config.duration.give_up_after"));
    let poll_every = read(&file.poll_every, t!("config.duration.poll_every"));
    if file.max_attempts == 0 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "max_attempts"),
                t!("config.dispatch.max_attempts"),
            )
            .hint(t!("config.dispatch.max_attempts_hint")),
        );
    }
    if file.concurrency == 0 || file.concurrency > 1024 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "concurrency"),
                t!("config.dispatch.concurrency_range"),
            )
            .hint(t!("config.dispatch.concurrency_hint")),
        );
    }
    if file.failing_after == 0 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "failing_after"),
                t!("config.dispatch.failing_after"),
            )
            .hint(t!("config.dispatch.failing_after_hint")),
        );
    }
    if file.batch_size == 0 {
        report.push(Diagnostic::error(
            path,
            key("dispatch", "batch_size"),
            t!("config.dispatch.batch_size"),
        ));
    }
    DispatchSettings {
        batch_size: file.batch_size,
        max_attempts: file.max_attempts,
        give_up_after,
        retry_backoff,
        max_backoff,
        cap: None,
        poll_every,
        concurrency: file.concurrency,
        failing_after: file.failing_after,
        alert: None,
    }
}

/// `[dispatch] alert`: a defined sender, and one that posts to staff (a
/// WeCom group robot), never to customers.
fn alert(
    path: &Path,
    alert: Option<&Spanned<String>>,
    senders: &BTreeMap<String, SenderEntry>,
    report: &mut Report,
) -> Option<String> {
    let alert = alert?;
    let name = alert.get_ref();
    let span = span_of(&alert.span());
    let Some(entry) = senders.get(name) else {
        report.push(
            Diagnostic::error(path, span, t!("config.dispatch.alert_undefined", name))
                .suggest(name, senders.keys().map(String::as_str)),
        );
        return None;
    };
    let kind = entry
        .settings
        .get("kind")
        .and_then(toml::Value::as_str)
        .unwrap_or("");
    if kind != "wecom_robot" {
        report.push(
            Diagnostic::error(path, span, t!("config.dispatch.alert_kind", name, kind))
                .hint(t!("config.dispatch.alert_kind_hint")),
        );
        return None;
    }
    Some(name.clone())
}

/// `[senders]`: each sender's `rate_limit`, common to every kind. The rest
/// of a section is the kind's, checked by the senders layer
/// (`senders::SenderConfig::parse`).
fn senders(
    path: &Path,
    text: &str,
    file: BTreeMap<String, Spanned<toml::Table>>,
    report: &mut Report,
) -> BTreeMap<String, SenderEntry> {
    let key = |table: &str, key: &str| find_key(text, table, key);
    let mut senders: BTreeMap<String, SenderEntry> = BTreeMap::new();
    for (name, table) in file {
        let span = span_of(&table.span());
        let mut table = table.into_inner();
        let rate_limit = match table.remove("rate_limit") {
            None => None,
            Some(toml::Value::String(text)) => match RateLimit::parse(&text) {
                Ok(rate) => Some(rate),
                Err(why) => {
                    report.push(
                        Diagnostic::error(
                            path,
                            key(&format!("senders.{name}"), "rate_limit").or(span.clone()),
                            t!("config.senders.rate_limit_bad", name = &name, why),
                        )
                        .hint(t!("config.senders.rate_limit_hint")),
                    );
                    None
                }
            },
            Some(other) => {
                report.push(Diagnostic::error(
                    path,
                    key(&format!("senders.{name}"), "rate_limit").or(span.clone()),
                    t!("config.senders.rate_limit_not_text", name = &name, other),
                ));
                None
            }
        };
        senders.insert(
            name,
            SenderEntry {
                settings: table,
                span,
                rate_limit,
            },
        );
    }
    senders
}

/// `[channels]`: each channel's sender and policy, then every fallback
/// checked to have a channel of its own.
fn channels(
    path: &Path,
    text: &str,
    file: &BTreeMap<Spanned<String>, ChannelSection>,
    senders: &BTreeMap<String, SenderEntry>,
    report: &mut Report,
) -> BTreeMap<Channel, ChannelPolicy> {
    let key = |table: &str, key: &str| find_key(text, table, key);
    let mut channels = BTreeMap::new();
    for (channel_name, section) in file {
        if let Some((channel, policy)) = channel(path, channel_name, section, senders, report) {
            channels.insert(channel, policy);
        }
    }
    for (channel, policy) in &channels {
        if let Some(fallback) = policy.fallback
            && !channels.contains_key(&fallback)
        {
            report.push(
                Diagnostic::error(
                    path,
                    key(&format!("channels.{channel}"), "fallback"),
                    t!("config.channels.fallback_missing", channel, fallback),
                )
                .hint(t!("config.channels.fallback_missing_hint", fallback)),
            );
        }
    }
    channels
}

/// One `[channels.x]`: a known channel, a defined sender, and its policy.
/// `None` when the channel or its sender is unknown.
fn channel(
    path: &Path,
    channel_name: &Spanned<String>,
    section: &ChannelSection,
    senders: &BTreeMap<String, SenderEntry>,
    report: &mut Report,
) -> Option<(Channel, ChannelPolicy)> {
    let channel = match channel_name.get_ref().parse::<Channel>() {
        Ok(channel) => channel,
        Err(_) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&channel_name.span()),
                    t!("config.channels.unknown", name = channel_name.get_ref()),
                )
                .suggest(channel_name.get_ref(), Channel::names()),
            );
            return None;
        }
    };
    let sender = section.sender.get_ref();
    if !senders.contains_key(sender) {
        report.push(
            Diagnostic::error(
                path,
                span_of(&section.sender.span()),
                t!("config.channels.sender_undefined", channel, sender),
            )
            .suggest(sender, senders.keys().map(String::as_str)),
        );
        return None;
    }
    let mut policy = ChannelPolicy::plain(sender);
    if let Some(fallback) = &section.fallback {
        match fallback.get_ref().parse::<Channel>() {
            Ok(f) if f == channel => report.push(
                Diagnostic::error(
                    path,
                    span_of(&fallback.span()),
                    t!("config.channels.fallback_self", channel),
                )
                .hint(t!("config.channels.fallback_self_hint")),
            ),
            Ok(f) => policy.fallback = Some(f),
            Err(_) => report.push(
                Diagnostic::error(
                    path,
                    span_of(&fallback.span()),
                    t!("config.channels.unknown", name = fallback.get_ref()),
                )
                .suggest(fallback.get_ref(), Channel::names()),
            ),
        }
    }
    if let Some(cost) = &section.cost {
        let yuan = *cost.get_ref();
        if yuan < 0.0 || !yuan.is_finite() {
            report.push(
                Diagnostic::error(path, span_of(&cost.span()), t!("config.channels.cost"))
                    .hint(t!("config.channels.cost_hint")),
            );
        } else {
            policy.cost_milli = (yuan * 1000.0).round() as i64;
        }
    }
    if let Some(quiet) = &section.quiet_hours {
        match QuietHours::parse(quiet.get_ref()) {
            Ok(q) => policy.quiet_hours = Some(q),
            Err(why) => report.push(
                Diagnostic::error(
                    path,
                    span_of(&quiet.span()),
                    t!("config.channels.quiet_hours", why),
                )
                .hint(t!("config.channels.quiet_hours_hint")),
            ),
        }
    }
    policy.cap = cap(path, section.max_per_customer.as_ref(), report);
    Some((channel, policy))
}

/// `[retention]`: how long finished messages are kept, at least
/// [`MIN_RETENTION`]; `None` keeps them for ever.
fn retention(path: &Path, file: &RetentionSection, report: &mut Report) -> Option<Duration> {
    let text = file.messages.as_ref()?;
    match humantime::parse_duration(text.get_ref()) {
        Ok(d) if d >= MIN_RETENTION => Some(d),
        Ok(_) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&text.span()),
                    t!("config.retention.too_short", value = text.get_ref()),
                )
                .hint(t!("config.retention.too_short_hint")),
            );
            None
        }
        Err(e) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&text.span()),
                    t!("config.retention.bad", value = text.get_ref(), error = e),
                )
                .hint(t!("config.retention.bad_hint")),
            );
            None
        }
    }
}

/// `[metrics]`: where the health check and metrics listen, on loopback
/// unless `allow_remote`.
fn metrics(
    path: &Path,
    file: Option<&MetricsSection>,
    report: &mut Report,
) -> Option<std::net::SocketAddr> {
    let m = file?;
    let text = m.listen.get_ref();
    match text.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() || m.allow_remote => Some(addr),
        Ok(_) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&m.listen.span()),
                    t!("config.metrics.not_loopback", listen = text),
                )
                .hint(t!("config.metrics.not_loopback_hint")),
            );
            None
        }
        Err(e) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&m.listen.span()),
                    t!("config.metrics.bad", listen = text, error = e),
                )
                .hint(t!("config.metrics.bad_hint")),
            );
            None
        }
    }
}

/// `[cycles]`: every cycle a whole number of days, at least 1.
fn cycles(path: &Path, file: &BTreeMap<String, Spanned<i64>>, report: &mut Report) -> Cycles {
    let mut cycles = BTreeMap::new();
    for (name, days) in file {
        let value = *days.get_ref();
        if !(1..=3650).contains(&value) {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&days.span()),
                    t!("config.cycles.range", name, value),
                )
                .hint(t!("config.cycles.range_hint")),
            );
            continue;
        }
        cycles.insert(name.trim().to_string(), value);
    }
    Cycles(cycles)
}

/// `[model]`: the refit schedule and the scoring settings, each in range.
fn model(path: &Path, file: &ModelSection, report: &mut Report) -> (ModelSettings, ScoreConfig) {
    let mut in_range = |field: &Spanned<i64>, name: &str, range: std::ops::RangeInclusive<i64>| {
        let value = *field.get_ref();
        if !range.contains(&value) {
            report.push(Diagnostic::error(
                path,
                span_of(&field.span()),
                t!(
                    "config.model.range",
                    name,
                    value,
                    from = range.start(),
                    to = range.end()
                ),
            ));
        }
        value.clamp(*range.start(), *range.end())
    };
    let churn_window = in_range(&file.churn_window_days, "churn_window_days", 1..=730);
    let visit_window = in_range(&file.visit_window_days, "visit_window_days", 1..=730);
    let medium = in_range(&file.medium_risk_from, "medium_risk_from", 1..=100);
    let high = in_range(&file.high_risk_from, "high_risk_from", 1..=100);
    let clv_months = in_range(&file.clv_months, "clv_months", 1..=120);
    let min_customers = in_range(&file.min_customers, "min_customers", 10..=10_000_000);
    if medium > high {
        report.push(Diagnostic::error(
            path,
            span_of(&file.medium_risk_from.span()),
            t!("config.model.bands", medium, high),
        ));
    }
    let rate = *file.monthly_discount_rate.get_ref();
    if !(0.0..1.0).contains(&rate) {
        report.push(Diagnostic::error(
            path,
            span_of(&file.monthly_discount_rate.span()),
            t!("config.model.discount_rate", rate),
        ));
    }
    let refit = match parse_cron(file.refit.get_ref()) {
        Ok((six, _)) if !ever_fires(&six) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&file.refit.span()),
                    t!("config.schedule.never", cron = file.refit.get_ref()),
                )
                .hint(t!("config.schedule.never_hint")),
            );
            ModelSettings::default().refit
        }
        Ok((six, _)) => six,
        Err(why) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&file.refit.span()),
                    t!("config.model.refit_bad", cron = file.refit.get_ref(), why),
                )
                .hint(t!("config.model.refit_hint")),
            );
            ModelSettings::default().refit
        }
    };
    let scoring = ScoreConfig {
        churn_window_days: churn_window as f64,
        visit_window_days: visit_window as f64,
        bands: RiskBands {
            medium_from: medium as u8,
            high_from: high as u8,
        },
        clv_months: clv_months as u32,
        monthly_discount_rate: rate.clamp(0.0, 0.99),
    };
    let settings = ModelSettings {
        refit,
        min_customers: min_customers as usize,
    };
    (settings, scoring)
}

/// A duration such as "30s" (`what` names it in the message); one that
/// does not parse is reported and read as a minute.
fn duration(path: &Path, field: &Spanned<String>, what: Text, report: &mut Report) -> Duration {
    humantime::parse_duration(field.get_ref()).unwrap_or_else(|e| {
        report.push(
            Diagnostic::error(
                path,
                span_of(&field.span()),
                t!(
                    "config.duration.bad",
                    what,
                    value = field.get_ref(),
                    error = e
                ),
            )
            .hint(t!("config.duration.hint")),
        );
        Duration::from_secs(60)
    })
}

/// A frequency cap (`max_per_customer`), of a channel or over all of them;
/// one that does not parse is reported.
fn cap(path: &Path, field: Option<&Spanned<String>>, report: &mut Report) -> Option<Cap> {
    let field = field?;
    Cap::parse(field.get_ref())
        .map_err(|why| {
            report.push(
                Diagnostic::error(path, span_of(&field.span()), t!("config.cap.bad", why))
                    .hint(t!("config.cap.hint")),
            )
        })
        .ok()
}

/// The byte range of `key`'s value in the `[table]` of a TOML text, for
/// problems found after parsing in values that carry no position.
pub fn find_key(text: &str, table: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut current = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            current = header
                .split(']')
                .next()
                .unwrap_or("")
                .split('.')
                .map(|part| part.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".");
            continue;
        }
        if current != table {
            continue;
        }
        let Some(rest) = trimmed.strip_prefix(key) else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.split('#').next().unwrap_or("").trim();
        let lead = line.len() - line.trim_start().len();
        let at = start + lead + (trimmed.len() - rest.len()) + rest.find(value.chars().next()?)?;
        return Some(at..at + value.len());
    }
    None
}

fn span_of(span: &std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    (span.end > span.start).then(|| span.clone())
}
