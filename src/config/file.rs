//! `recall.toml` as written: one serde struct per section, unknown keys
//! rejected, values that can be wrong kept with their position
//! (`toml::Spanned`) so a problem names its file:line:col. Nothing here is
//! checked: `validate` turns a [`ConfigFile`] into the
//! [`Config`](super::Config) the rest of the program uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{DEFAULT_CONCURRENCY, DEFAULT_FAILING_AFTER};
use crate::predict::ScoreConfig;

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Who the clinic is and its time zone; the only section required.
    pub clinic: ClinicSection,
    /// Where the database, the rules and the templates are.
    #[serde(default)]
    pub paths: PathsSection,
    /// When ticks run and how often the dispatcher looks for due messages.
    #[serde(default)]
    pub schedule: ScheduleSection,
    /// How messages are sent: round sizes, retries, the cap over all
    /// channels.
    #[serde(default)]
    pub dispatch: DispatchSection,
    /// Named senders; channels refer to them by name. Read as tables first:
    /// `rate_limit` is common to every kind, the rest belongs to the kind.
    #[serde(default)]
    pub senders: BTreeMap<String, Spanned<toml::Table>>,
    /// Which sender carries each channel (`sms`, `phone`, `wechat`, `email`).
    #[serde(default)]
    pub channels: BTreeMap<Spanned<String>, ChannelSection>,
    /// How long finished messages are kept.
    #[serde(default)]
    pub retention: RetentionSection,
    /// The health check and Prometheus metrics over HTTP.
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
    /// Treatment cycles: a project or department → the days after which its
    /// next treatment is due (`"肉毒素除皱" = 120`).
    #[serde(default)]
    pub cycles: BTreeMap<String, Spanned<i64>>,
    /// The churn model: when it is refitted and how it scores.
    #[serde(default)]
    pub model: ModelSection,
    /// What consent a customer has when the clinic's data says nothing.
    #[serde(default)]
    pub consent: ConsentSection,
}

/// `[consent]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSection {
    /// A new customer's consent for a channel when the imported file says
    /// nothing about it (no consent column for the channel, or an empty
    /// cell). `true` (what recall did before this key existed) counts
    /// silence as consent; `false` records no consent, so the channel stays
    /// closed to the customer until a file says yes. Customers already in
    /// the database keep theirs.
    pub default_when_absent: bool,
}

impl Default for ConsentSection {
    fn default() -> Self {
        ConsentSection {
            default_when_absent: true,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Messages in a final status (sent, failed, suppressed, opted out, held
    /// out) older than this are deleted with their outcomes and call tasks,
    /// daily by the service and by `recall prune`, e.g. "2y". Pool moves are
    /// kept. Unset: messages are kept for ever.
    pub messages: Option<Spanned<String>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `GET /healthz` and `GET /metrics` listen, e.g. "127.0.0.1:9464".
    pub listen: Spanned<String>,
    /// Allow an address other than loopback. The endpoint has no
    /// authentication; expose it only behind a firewall or proxy.
    #[serde(default)]
    pub allow_remote: bool,
}

/// `[model]`; every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Cron expression (clinic time) of the scheduled refit.
    pub refit: Spanned<String>,
    /// `churn_risk` is the chance of no visit within this many days.
    pub churn_window_days: Spanned<i64>,
    /// `expected_visits_90d` counts visits within this many days.
    pub visit_window_days: Spanned<i64>,
    /// `churn_band` is "medium" from this `churn_score` up.
    pub medium_risk_from: Spanned<i64>,
    /// `churn_band` is "high" from this `churn_score` up.
    pub high_risk_from: Spanned<i64>,
    /// The horizon of `predicted_clv`, in months.
    pub clv_months: Spanned<i64>,
    /// The monthly discount rate of `predicted_clv` (0.01 = 1 % a month).
    pub monthly_discount_rate: Spanned<f64>,
    /// Fewer customers with a visit than this: no fit, the facts stay null.
    pub min_customers: Spanned<i64>,
}

impl Default for ModelSection {
    fn default() -> Self {
        let d = ScoreConfig::default();
        let at = |v: i64| Spanned::new(0..0, v);
        ModelSection {
            refit: Spanned::new(0..0, "0 3 * * 1".to_string()),
            churn_window_days: at(d.churn_window_days as i64),
            visit_window_days: at(d.visit_window_days as i64),
            medium_risk_from: at(i64::from(d.bands.medium_from)),
            high_risk_from: at(i64::from(d.bands.high_from)),
            clv_months: at(i64::from(d.clv_months)),
            monthly_discount_rate: Spanned::new(0..0, d.monthly_discount_rate),
            min_customers: at(100),
        }
    }
}

/// `[clinic]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicSection {
    /// Short stable id of the clinic, used in the database (e.g. "main").
    #[serde(default = "default_clinic_code")]
    pub code: String,
    /// The clinic's name as customers know it; templates use it.
    pub name: String,
    /// IANA time zone; days, schedules and quiet hours follow it.
    #[serde(default = "default_timezone")]
    pub timezone: Spanned<String>,
    /// The clinic's phone number, for templates ("致电 400-...").
    #[serde(default)]
    pub phone: Option<String>,
    /// The country calling code of the clinic's customers' numbers ("86":
    /// mainland China, the default): numbers imported without a country
    /// code belong to it, and are stored as its national digits.
    #[serde(default)]
    pub country_code: Option<Spanned<String>>,
}

/// `[paths]`; every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsSection {
    /// The SQLite database. Relative paths are relative to `recall.toml`.
    pub database: PathBuf,
    /// The folder of rule files (`*.toml`).
    pub rules: PathBuf,
    /// The folder of message templates (`<channel>/<name>.txt`).
    pub templates: PathBuf,
}

impl Default for PathsSection {
    fn default() -> Self {
        PathsSection {
            database: PathBuf::from("data/recall.db"),
            rules: PathBuf::from("rules"),
            templates: PathBuf::from("templates"),
        }
    }
}

/// `[schedule]`; every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// Cron expressions (clinic time) at which rules are evaluated.
    /// Five fields (`min hour day month weekday`) or six with seconds first.
    pub ticks: Vec<Spanned<String>>,
    /// How often the dispatcher looks for due messages, e.g. "30s".
    pub dispatch_every: Spanned<String>,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        ScheduleSection {
            ticks: vec![Spanned::new(0..0, "0 9 * * *".to_string())],
            dispatch_every: Spanned::new(0..0, "30s".to_string()),
        }
    }
}

/// `[dispatch]`; every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSection {
    /// Messages claimed per dispatch round.
    pub batch_size: u32,
    /// Attempts at a phone call nobody answers before the message fails.
    /// Provider failures are not counted against it: see `give_up_after`.
    pub max_attempts: u32,
    /// How long a message whose sender keeps failing with a retryable error
    /// (outage, timeout, throttling) is retried, from its first failure,
    /// before it becomes `failed`.
    pub give_up_after: Spanned<String>,
    /// Delay before the first retry; doubled on each further attempt.
    pub retry_backoff: Spanned<String>,
    /// Longest delay between retries.
    pub max_backoff: Spanned<String>,
    /// At most this many messages per customer over all channels in a
    /// rolling window, e.g. "3/7d".
    pub max_per_customer: Option<Spanned<String>>,
    /// How often messages that await a person (WeCom confirmations, call
    /// tasks) are asked about.
    pub poll_every: Spanned<String>,
    /// Messages handed to providers at once, and at most this many whose
    /// result is not yet written: the at-least-once window after a crash.
    pub concurrency: u32,
    /// A sender whose last this-many attempts all failed (for any reason)
    /// is `failing`: `/healthz` says degraded, `recall status` shows it.
    pub failing_after: u32,
    /// A `wecom_robot` sender (by name) that tells staff when a sender
    /// starts failing, is paused or is back: one notice per incident.
    pub alert: Option<Spanned<String>>,
}

impl Default for DispatchSection {
    fn default() -> Self {
        DispatchSection {
            batch_size: 200,
            max_attempts: 5,
            give_up_after: Spanned::new(0..0, "48h".to_string()),
            retry_backoff: Spanned::new(0..0, "1m".to_string()),
            max_backoff: Spanned::new(0..0, "6h".to_string()),
            max_per_customer: None,
            poll_every: Spanned::new(0..0, "10m".to_string()),
            concurrency: DEFAULT_CONCURRENCY,
            failing_after: DEFAULT_FAILING_AFTER,
            alert: None,
        }
    }
}

/// One `[channels.x]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// The name of a sender under `[senders]`.
    pub sender: Spanned<String>,
    /// Another channel to use when this one cannot reach the customer (no
    /// address, no consent, opted out, permanent failure), e.g. wechat → sms.
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    /// What one message costs, in yuan (e.g. 0.045 for an SMS); recorded on
    /// every message sent, for the recall report.
    #[serde(default)]
    pub cost: Option<Spanned<f64>>,
    /// No messages in this clinic-time window, e.g. "21:00-09:00"; messages
    /// due inside it wait for its end.
    #[serde(default)]
    pub quiet_hours: Option<Spanned<String>>,
    /// At most this many messages per customer on this channel in a rolling
    /// window, e.g. "2/7d". Messages over the cap wait until it allows them.
    #[serde(default)]
    pub max_per_customer: Option<Spanned<String>>,
}

fn default_clinic_code() -> String {
    "main".to_string()
}

fn default_timezone() -> Spanned<String> {
    Spanned::new(0..0, "Asia/Shanghai".to_string())
}
