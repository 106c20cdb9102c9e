//! `recall.toml`: the clinic, where files live, the schedule, dispatch
//! settings, senders and which sender carries each channel.
//!
//! Two stages, as with rules: [`ConfigFile`] (`file.rs`) is the file as
//! written (serde, unknown keys rejected, positions kept), [`Config`] (this
//! module) is what the rest of the program uses (paths resolved against the
//! config's folder, time zone and cron expressions parsed), and
//! `validate.rs` turns the one into the other. [`load`] reports every
//! problem it finds, with file, line and column. Validation touches no
//! network; secrets never live here.

pub mod file;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use crate::base::diag::{self, Diagnostic, Report};
use crate::base::i18n::t;
use crate::base::model::Channel;
use crate::base::perm;
use crate::predict::ScoreConfig;

pub use file::ConfigFile;
pub use validate::find_key;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub clinic: Clinic,
    pub database: PathBuf,
    pub rules_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub schedule: Schedule,
    pub dispatch: DispatchSettings,
    /// Sender name → its settings.
    pub senders: BTreeMap<String, SenderEntry>,
    /// Channel → its sender and policy. Channels not listed have no sender:
    /// their messages stay queued and `recall check` warns.
    pub channels: BTreeMap<Channel, ChannelPolicy>,
    /// Finished messages older than this are pruned; `None` keeps them.
    pub retention: Option<Duration>,
    /// Where the health check and metrics listen, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    pub model: ModelSettings,
    /// `[consent] default_when_absent`: a new customer's consent for a
    /// channel an imported file says nothing about.
    pub consent_when_absent: bool,
}

/// The churn model's schedule and fit settings (scoring settings live in
/// [`Clinic::scoring`], next to the data they apply to).
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Six-field cron expression of the scheduled refit.
    pub refit: String,
    /// Fewer customers with a visit than this: no fit.
    pub min_customers: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            refit: "0 0 3 * * 1".to_string(),
            min_customers: 100,
        }
    }
}

/// Treatment cycles: project or department → days until the next
/// treatment is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cycles(pub BTreeMap<String, i64>);

impl Cycles {
    /// The cycle of an order: its project's if the project has one, else
    /// its department's. Returns the name that matched and the days.
    pub fn of<'a>(
        &'a self,
        project: Option<&str>,
        department: Option<&str>,
    ) -> Option<(&'a str, i64)> {
        [project, department]
            .into_iter()
            .flatten()
            .find_map(|name| self.0.get_key_value(name.trim()))
            .map(|(name, days)| (name.as_str(), *days))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The shortest retention accepted: frequency caps, rule cooldowns and
/// attribution windows read past messages, and need months of them.
pub const MIN_RETENTION: Duration = Duration::from_secs(90 * 86_400);

impl Config {
    /// Channel → fallback channel, for channels that have one.
    pub fn fallbacks(&self) -> BTreeMap<Channel, Channel> {
        self.channels
            .iter()
            .filter_map(|(channel, policy)| policy.fallback.map(|f| (*channel, f)))
            .collect()
    }
}

/// One configured sender, as written. Which providers exist and what each
/// needs is the senders' business: `senders::SenderConfig::parse` turns the
/// settings into the provider's checked config and reports what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderEntry {
    /// Every key of the section but `rate_limit`, `kind` included.
    pub settings: toml::Table,
    /// Where the section is in `recall.toml`, for the senders' diagnostics.
    pub span: Option<std::ops::Range<usize>>,
    /// `rate_limit = "10/s"`: at most this many messages through this sender.
    pub rate_limit: Option<RateLimit>,
}

/// How one channel is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPolicy {
    /// The name of the sender under `[senders]`.
    pub sender: String,
    pub fallback: Option<Channel>,
    /// Cost of one message, in thousandths of a yuan (厘).
    pub cost_milli: i64,
    pub quiet_hours: Option<QuietHours>,
    pub cap: Option<Cap>,
}

impl ChannelPolicy {
    /// A channel carried by `sender` with no policy of its own.
    pub fn plain(sender: &str) -> Self {
        ChannelPolicy {
            sender: sender.to_string(),
            fallback: None,
            cost_milli: 0,
            quiet_hours: None,
            cap: None,
        }
    }
}

/// A daily window in clinic time when nothing is sent. `start` after `end`
/// means the window crosses midnight (21:00-09:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
}

impl QuietHours {
    /// Parses "21:00-09:00".
    pub fn parse(text: &str) -> Result<QuietHours, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}` is not a window: write it like \"21:00-09:00\""))?;
        let time = |t: &str| {
            chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("`{}` is not a time of day like 21:00", t.trim()))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!("`{text}` is empty: start and end are the same"));
        }
        Ok(QuietHours { start, end })
    }

    /// Whether a clinic-local time of day is inside the window.
    pub fn contains(&self, time: chrono::NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

/// At most `count` messages per customer in any window of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub count: u32,
    pub window: Duration,
}

impl Cap {
    /// Parses "2/7d", "1/day", "4/30d".
    pub fn parse(text: &str) -> Result<Cap, String> {
        let (count, window) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a cap: write it like \"2/7d\" (2 messages per 7 days)")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{}` in `{text}` is not a whole number", count.trim()))?;
        let window = match window.trim() {
            "day" => Duration::from_secs(86_400),
            "week" => Duration::from_secs(7 * 86_400),
            other => humantime::parse_duration(other)
                .map_err(|e| format!("`{other}` in `{text}`: {e}"))?,
        };
        if count == 0 || window.is_zero() {
            return Err(format!(
                "`{text}` allows nothing; remove the cap or raise it"
            ));
        }
        Ok(Cap { count, window })
    }
}

/// The clinic: who it is, its clock, and the two things rule facts need
/// to know about its trade: its treatment cycles and how churn is scored.
#[derive(Debug, Clone)]
pub struct Clinic {
    pub code: String,
    pub name: String,
    pub timezone: Tz,
    pub phone: Option<String>,
    /// The country of numbers typed without a country code (`country_code`,
    /// mainland China by default).
    pub country: crate::base::phone::CountryCode,
    /// `[cycles]`: for `expected_revisit_days` and `days_overdue`.
    pub cycles: Cycles,
    /// `[model]`: windows, bands and CLV horizon of the churn facts.
    pub scoring: ScoreConfig,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Six-field cron expressions, as the scheduler takes them.
    pub ticks: Vec<String>,
    pub dispatch_every: Duration,
}

impl Schedule {
    /// The most recent scheduled slot at or before `now`, over all
    /// schedules, in the clinic's zone `tz`.
    pub fn latest_slot(
        &self,
        tz: Tz,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.ticks
            .iter()
            .filter_map(|cron| previous_slot(cron, tz, now))
            .max()
    }
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub batch_size: u32,
    /// Attempts at a phone call nobody answers (call tasks).
    pub max_attempts: u32,
    /// How long retryable sender failures are retried, from the first one;
    /// deferrals and the provider's Retry-After do not use attempts, and
    /// nothing retryable fails before this is spent.
    pub give_up_after: Duration,
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
    /// Messages per customer over all channels in a rolling window.
    pub cap: Option<Cap>,
    /// How often awaiting messages are polled.
    pub poll_every: Duration,
    /// Sends in flight at once; also the most messages that can be sent
    /// again after a crash (sent, result not yet committed).
    pub concurrency: u32,
    /// Failed attempts in a row after which a sender is `failing`.
    pub failing_after: u32,
    /// The `wecom_robot` sender that tells staff of sender incidents.
    pub alert: Option<String>,
}

/// Sends in flight at once unless `[dispatch] concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 32;

/// Failed attempts in a row that make a sender `failing`, unless
/// `[dispatch] failing_after` says otherwise.
pub const DEFAULT_FAILING_AFTER: u32 = 5;

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            batch_size: 200,
            max_attempts: 5,
            give_up_after: Duration::from_secs(48 * 3600),
            retry_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(6 * 3600),
            cap: None,
            poll_every: Duration::from_secs(600),
            concurrency: DEFAULT_CONCURRENCY,
            failing_after: DEFAULT_FAILING_AFTER,
            alert: None,
        }
    }
}

/// Parses a cron expression of five fields (or six, seconds first) the way
/// the scheduler will, returning the six-field form.
pub fn parse_cron(expr: &str) -> Result<(String, croner::Cron), String> {
    let fields = expr.split_whitespace().count();
    let six = match fields {
        5 => format!("0 {}", expr.trim()),
        6 => expr.trim().to_string(),
        n => {
            return Err(format!(
                "a schedule has 5 fields (minute hour day month weekday), this one has {n}"
            ));
        }
    };
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&six)
        .map(|cron| (six, cron))
        .map_err(|e| e.to_string())
}

/// Whether a (six-field) cron schedule has any slot at all: `0 9 31 2 *`
/// (31 February) parses but never fires, and a service on it would never
/// tick. Pure and quick: it tries each day from 2001-01-01 for 28 years, the
/// cycle after which weekdays and leap days repeat (a date and weekday that
/// ever meet meet in it), at the schedule's first time of day. (croner's
/// own search would walk day by day to the year 5000.)
pub fn ever_fires(six: &str) -> bool {
    use chrono::TimeZone as _;
    let fields: Vec<&str> = six.split_whitespace().collect();
    let [second, minute, hour, ..] = fields[..] else {
        return false;
    };
    let start = chrono::Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap();
    let (Ok((_, daily)), Ok((_, full))) = (
        parse_cron(&format!("{second} {minute} {hour} * * *")),
        parse_cron(six),
    ) else {
        return false;
    };
    let Ok(first) = daily.find_next_occurrence(&start, true) else {
        return false;
    };
    (0..28 * 366).any(|day| {
        full.is_time_matching(&(first + chrono::Duration::days(day)))
            .unwrap_or(false)
    })
}

/// The latest slot of a (six-field) cron schedule at or before `now`, in
/// the clinic's zone.
pub fn previous_slot(
    cron: &str,
    tz: Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, parsed) = parse_cron(cron).ok()?;
    parsed
        .find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Reads and validates `recall.toml`. All problems are reported together.
pub fn load(path: &Path) -> Result<Config, Report> {
    let mut report = Report::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            report.push(
                Diagnostic::error(path, None, t!("config.read", error = e))
                    .hint(t!("config.read_hint")),
            );
            return Err(report);
        }
    };
    report.add_source(path, &text);
    let folder = path.parent().unwrap_or(Path::new(""));
    let refused = [
        perm::others_can_write(path),
        perm::others_can_replace(folder),
    ];
    for refused in refused.into_iter().flatten() {
        report.push(refused);
    }
    let file: ConfigFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            report.push(diag::from_toml_error(path, &e));
            return Err(report);
        }
    };
    let config = validate::validate(path, &text, file, &mut report);
    if report.has_errors() {
        Err(report)
    } else {
        Ok(config)
    }
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    /// Parses `"10/s"`, `"600/min"`, `"20/minute"`, `"1000/h"`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (count, unit) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a rate: write it like \"10/s\" or \"20/min\"")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` in `{text}` is not a whole number"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`: use s, min, h or day"
                ));
            }
        };
        if count == 0 {
            return Err(format!(
                "`{text}` allows nothing; remove the limit or raise it"
            ));
        }
        Ok(RateLimit { count, per })
    }
}
