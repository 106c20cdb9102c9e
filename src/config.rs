//! `recall.toml`: the clinic, where files live, the schedule, dispatch
//! settings, senders and which sender carries each channel.
//!
//! Two stages, as with rules: [`ConfigFile`] is the file as written (serde,
//! unknown keys rejected), [`Config`] is what the rest of the program uses
//! (paths resolved against the config's folder, time zone and cron
//! expressions parsed). [`load`] reports every problem it finds, with file,
//! line and column. Validation touches no network; secrets never live here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{self, Diagnostic, Report};
use crate::dispatch::sender::RateLimit;
use crate::model::Channel;
use crate::predict::{RiskBands, ScoreConfig};
pub use crate::senders::SenderConfig;

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub clinic: ClinicSection,
    #[serde(default)]
    pub paths: PathsSection,
    #[serde(default)]
    pub schedule: ScheduleSection,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Messages in a final status (sent, failed, suppressed, opted out, held
    /// out) older than this are deleted with their outcomes and call tasks,
    /// daily by the service and by `recall prune`, e.g. "2y". Pool moves are
    /// kept. Unset: messages are kept for ever.
    pub messages: Option<Spanned<String>>,
}

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
}

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
        }
    }
}

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

/// One configured sender.
#[derive(Debug, Clone)]
pub struct SenderEntry {
    pub config: SenderConfig,
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
}

/// Sends in flight at once unless `[dispatch] concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 32;

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
                Diagnostic::error(path, None, format!("cannot read the configuration: {e}"))
                    .zh(format!("无法读取配置文件：{e}"))
                    .hint2(
                        "create one with `recall init DIR`, or pass `--config PATH`",
                        "可用 `recall init 目录` 创建，或用 `--config 路径` 指定",
                    ),
            );
            return Err(report);
        }
    };
    report.add_source(path, &text);
    let file: ConfigFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            report.push(diag::from_toml_error(path, &e));
            return Err(report);
        }
    };
    let config = validate(path, &text, file, &mut report);
    if report.has_errors() {
        Err(report)
    } else {
        Ok(config)
    }
}

/// Checks a parsed file and resolves it; problems go to `report`.
fn validate(path: &Path, text: &str, file: ConfigFile, report: &mut Report) -> Config {
    let key = |table: &str, key: &str| find_key(text, table, key);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let tz_text = file.clinic.timezone.get_ref();
    let timezone = tz_text.parse::<Tz>().unwrap_or_else(|_| {
        let known = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        report.push(
            Diagnostic::error(
                path,
                span_of(&file.clinic.timezone.span()),
                format!("unknown time zone `{tz_text}`"),
            )
            .zh(format!("未知的时区 `{tz_text}`"))
            .suggest(tz_text, known)
            .hint2(
                "use an IANA name such as `Asia/Shanghai`",
                "请使用 IANA 时区名，例如 `Asia/Shanghai`",
            ),
        );
        chrono_tz::Asia::Shanghai
    });

    let mut ticks = Vec::new();
    for expr in &file.schedule.ticks {
        match parse_cron(expr.get_ref()) {
            Ok((six, _)) => ticks.push(six),
            Err(why) => report.push(
                Diagnostic::error(
                    path,
                    span_of(&expr.span()),
                    format!("bad schedule `{}`: {why}", expr.get_ref()),
                )
                .zh(format!("定时 `{}` 写得不对：{why}", expr.get_ref()))
                .hint2(
                    "for every day at 09:00 write \"0 9 * * *\"",
                    "每天 09:00 请写 \"0 9 * * *\"（分 时 日 月 周）",
                ),
            ),
        }
    }
    let mut duration = |field: &Spanned<String>, what: &str| -> Duration {
        humantime::parse_duration(field.get_ref()).unwrap_or_else(|e| {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&field.span()),
                    format!("bad {what} `{}`: {e}", field.get_ref()),
                )
                .zh(format!("时长 `{}` 写得不对", field.get_ref()))
                .hint2(
                    "write a duration such as \"30s\", \"5m\" or \"2h\"",
                    "请写成时长，例如 \"30s\"、\"5m\" 或 \"2h\"",
                ),
            );
            Duration::from_secs(60)
        })
    };
    let dispatch_every = duration(&file.schedule.dispatch_every, "dispatch interval");
    let retry_backoff = duration(&file.dispatch.retry_backoff, "retry backoff");
    let max_backoff = duration(&file.dispatch.max_backoff, "maximum backoff");
    let give_up_after = duration(&file.dispatch.give_up_after, "retry budget");
    let poll_every = duration(&file.dispatch.poll_every, "poll interval");
    if file.dispatch.max_attempts == 0 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "max_attempts"),
                "dispatch.max_attempts must be at least 1",
            )
            .zh("dispatch.max_attempts 至少为 1")
            .hint2(
                "it is how many call tasks a phone message gets when nobody answers, the first call included; 5 is a good start",
                "它是电话消息无人接听时最多生成的外呼任务数（含第一次）；5 是个不错的起点",
            ),
        );
    }
    if file.dispatch.concurrency == 0 || file.dispatch.concurrency > 1024 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "concurrency"),
                "dispatch.concurrency must be between 1 and 1024",
            )
            .zh("dispatch.concurrency 必须在 1 到 1024 之间")
            .hint2(
                "32 is the default; it is also how many messages a crash can send twice",
                "默认 32；这也是进程崩溃时最多可能重复发送的消息数",
            ),
        );
    }
    if file.dispatch.batch_size == 0 {
        report.push(
            Diagnostic::error(
                path,
                key("dispatch", "batch_size"),
                "dispatch.batch_size must be at least 1",
            )
            .zh("dispatch.batch_size 至少为 1"),
        );
    }

    let mut senders: BTreeMap<String, SenderEntry> = BTreeMap::new();
    for (name, table) in file.senders {
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
                            format!("[senders.{name}] rate_limit: {why}"),
                        )
                        .zh(format!("[senders.{name}] rate_limit 写得不对：{why}"))
                        .hint2(
                            "write a count per unit of time, e.g. \"10/s\" or \"600/min\"",
                            "请写成“次数/时间单位”，例如 \"10/s\" 或 \"600/min\"",
                        ),
                    );
                    None
                }
            },
            Some(other) => {
                report.push(
                    Diagnostic::error(
                        path,
                        key(&format!("senders.{name}"), "rate_limit").or(span.clone()),
                        format!("[senders.{name}] rate_limit must be text like \"10/s\", not {other}"),
                    )
                    .zh(format!("[senders.{name}] rate_limit 应写成带引号的文本，例如 \"10/s\"，而不是 {other}")),
                );
                None
            }
        };
        match SenderConfig::deserialize(toml::Value::Table(table)) {
            Ok(config) => {
                senders.insert(name, SenderEntry { config, rate_limit });
            }
            Err(e) => {
                let mut diagnostic = diag::from_toml_error(path, &e);
                diagnostic.message = format!("[senders.{name}] {}", diagnostic.message);
                diagnostic.message_zh = diagnostic
                    .message_zh
                    .map(|zh| format!("[senders.{name}] {zh}"));
                diagnostic.span = diagnostic.span.or(span);
                if !e.message().contains("kind") && diagnostic.hints.is_empty() {
                    diagnostic = diagnostic.hint2(
                        "every sender needs `kind`, e.g. kind = \"log\"; README lists the kinds and their keys",
                        "每个发送器都需要 `kind`，例如 kind = \"log\"；README 列出了所有种类及其设置项",
                    );
                }
                report.push(diagnostic);
            }
        }
    }

    let mut channels = BTreeMap::new();
    for (channel_name, section) in &file.channels {
        let channel = match channel_name.get_ref().parse::<Channel>() {
            Ok(channel) => channel,
            Err(_) => {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&channel_name.span()),
                        format!("unknown channel `{}`", channel_name.get_ref()),
                    )
                    .zh(format!("未知的渠道 `{}`", channel_name.get_ref()))
                    .suggest(channel_name.get_ref(), Channel::names()),
                );
                continue;
            }
        };
        let sender = section.sender.get_ref();
        if !senders.contains_key(sender) {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&section.sender.span()),
                    format!("channel `{channel}` uses sender `{sender}`, which is not defined under [senders]"),
                )
                .zh(format!("渠道 `{channel}` 使用的发送器 `{sender}` 没有在 [senders] 中定义"))
                .suggest(sender, senders.keys().map(String::as_str)),
            );
            continue;
        }
        let mut policy = ChannelPolicy::plain(sender);
        if let Some(fallback) = &section.fallback {
            match fallback.get_ref().parse::<Channel>() {
                Ok(f) if f == channel => report.push(
                    Diagnostic::error(
                        path,
                        span_of(&fallback.span()),
                        format!("channel `{channel}` cannot fall back to itself"),
                    )
                    .zh(format!("渠道 `{channel}` 不能以自己作为备用渠道"))
                    .hint2(
                        "name another channel, or remove `fallback`",
                        "请写另一个渠道，或删除 `fallback`",
                    ),
                ),
                Ok(f) => policy.fallback = Some(f),
                Err(_) => report.push(
                    Diagnostic::error(
                        path,
                        span_of(&fallback.span()),
                        format!("unknown channel `{}`", fallback.get_ref()),
                    )
                    .zh(format!("未知的渠道 `{}`", fallback.get_ref()))
                    .suggest(fallback.get_ref(), Channel::names()),
                ),
            }
        }
        if let Some(cost) = &section.cost {
            let yuan = *cost.get_ref();
            if yuan < 0.0 || !yuan.is_finite() {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&cost.span()),
                        "cost must be zero or more (yuan per message)",
                    )
                    .zh("cost 必须大于或等于 0（每条消息的费用，单位：元）")
                    .hint2("e.g. cost = 0.05", "例如 cost = 0.05"),
                );
            } else {
                policy.cost_milli = (yuan * 1000.0).round() as i64;
            }
        }
        if let Some(quiet) = &section.quiet_hours {
            match QuietHours::parse(quiet.get_ref()) {
                Ok(q) => policy.quiet_hours = Some(q),
                Err(why) => report.push(
                    Diagnostic::error(path, span_of(&quiet.span()), why.clone())
                        .zh(format!("免打扰时段写得不对：{why}"))
                        .hint2(
                            "write a range of clinic times, e.g. \"21:00-09:00\"",
                            "请写成诊所当地时间的区间，例如 \"21:00-09:00\"",
                        ),
                ),
            }
        }
        if let Some(cap) = &section.max_per_customer {
            match Cap::parse(cap.get_ref()) {
                Ok(c) => policy.cap = Some(c),
                Err(why) => report.push(cap_error(path, span_of(&cap.span()), why)),
            }
        }
        channels.insert(channel, policy);
    }
    for (channel, policy) in &channels {
        if let Some(fallback) = policy.fallback
            && !channels.contains_key(&fallback)
        {
            report.push(
                Diagnostic::error(path, key(&format!("channels.{channel}"), "fallback"), format!("channel `{channel}` falls back to `{fallback}`, which has no [channels.{fallback}] section"))
                    .zh(format!("渠道 `{channel}` 的备用渠道是 `{fallback}`，但没有 [channels.{fallback}] 这一节"))
                    .hint2(
                        format!("add [channels.{fallback}] with a sender, or remove the fallback"),
                        format!("请添加带发送器的 [channels.{fallback}]，或删除 fallback"),
                    ),
            );
        }
    }
    let retention = file.retention.messages.as_ref().and_then(|text| {
        match humantime::parse_duration(text.get_ref()) {
            Ok(d) if d >= MIN_RETENTION => Some(d),
            Ok(_) => {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&text.span()),
                        format!("retention.messages `{}` is shorter than 90 days", text.get_ref()),
                    )
                    .zh(format!("retention.messages `{}` 短于 90 天", text.get_ref()))
                    .hint2(
                        "caps, cooldowns and attribution read months of past messages; keep at least \"90d\", e.g. \"2y\"",
                        "频次上限、冷却期和效果归因要读取数月的历史消息；至少保留 \"90d\"，例如 \"2y\"",
                    ),
                );
                None
            }
            Err(e) => {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&text.span()),
                        format!("bad retention.messages `{}`: {e}", text.get_ref()),
                    )
                    .zh(format!("retention.messages `{}` 写得不对", text.get_ref()))
                    .hint2(
                        "write a duration such as \"2y\" or \"18months\"",
                        "请写成时长，例如 \"2y\"（两年）或 \"18months\"",
                    ),
                );
                None
            }
        }
    });
    let metrics = file.metrics.as_ref().and_then(|m| {
        let text = m.listen.get_ref();
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() || m.allow_remote => Some(addr),
            Ok(_) => {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&m.listen.span()),
                        format!("metrics.listen `{text}` is not a loopback address"),
                    )
                    .zh(format!("metrics.listen `{text}` 不是本机回环地址"))
                    .hint2(
                        "the endpoint has no authentication: listen on 127.0.0.1, or set allow_remote = true behind a firewall",
                        "该接口没有身份验证：请监听 127.0.0.1，或在防火墙后设置 allow_remote = true",
                    ),
                );
                None
            }
            Err(e) => {
                report.push(
                    Diagnostic::error(
                        path,
                        span_of(&m.listen.span()),
                        format!("bad metrics.listen `{text}`: {e}"),
                    )
                    .zh(format!("metrics.listen `{text}` 写得不对"))
                    .hint2(
                        "write an address and port such as \"127.0.0.1:9464\"",
                        "请写成地址加端口，例如 \"127.0.0.1:9464\"",
                    ),
                );
                None
            }
        }
    });
    let cycles = cycles(path, &file.cycles, report);
    let (model, scoring) = model(path, &file.model, report);
    let cap = file.dispatch.max_per_customer.as_ref().and_then(|cap| {
        Cap::parse(cap.get_ref())
            .map_err(|why| report.push(cap_error(path, span_of(&cap.span()), why)))
            .ok()
    });

    Config {
        path: path.to_path_buf(),
        clinic: Clinic {
            code: file.clinic.code,
            name: file.clinic.name,
            timezone,
            phone: file.clinic.phone,
            cycles,
            scoring,
        },
        database: resolve(&file.paths.database),
        rules_dir: resolve(&file.paths.rules),
        templates_dir: resolve(&file.paths.templates),
        schedule: Schedule {
            ticks,
            dispatch_every,
        },
        dispatch: DispatchSettings {
            batch_size: file.dispatch.batch_size,
            max_attempts: file.dispatch.max_attempts,
            give_up_after,
            retry_backoff,
            max_backoff,
            cap,
            poll_every,
            concurrency: file.dispatch.concurrency,
        },
        senders,
        channels,
        retention,
        metrics,
        model,
    }
}

/// A frequency cap that does not parse.
fn cap_error(path: &Path, span: Option<std::ops::Range<usize>>, why: String) -> Diagnostic {
    Diagnostic::error(path, span, why.clone())
        .zh(format!("频次上限写得不对：{why}"))
        .hint2(
            "write messages per period, e.g. \"2/7d\" (at most 2 in 7 days)",
            "请写成“条数/时长”，例如 \"2/7d\"（7 天内最多 2 条）",
        )
}

/// The byte range of `key`'s value in the `[table]` of a TOML text, for
/// problems found after parsing in values that carry no position.
fn find_key(text: &str, table: &str, key: &str) -> Option<std::ops::Range<usize>> {
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
                    format!("[cycles] `{name}` = {value}: a cycle is a number of days from 1 to 3650"),
                )
                .zh(format!("[cycles] `{name}` = {value}：周期是 1 到 3650 之间的天数"))
                .hint2(
                    "write how many days after a treatment the next one is due, e.g. \"肉毒素除皱\" = 120",
                    "写做完一次后多少天该做下一次，例如 \"肉毒素除皱\" = 120",
                ),
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
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&field.span()),
                    format!(
                        "[model] {name} = {value} is out of range: it must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
                .zh(format!(
                    "[model] {name} = {value} 超出范围：应在 {} 到 {} 之间",
                    range.start(),
                    range.end()
                )),
            );
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
        report.push(
            Diagnostic::error(
                path,
                span_of(&file.medium_risk_from.span()),
                format!("[model] medium_risk_from = {medium} is above high_risk_from = {high}"),
            )
            .zh(format!(
                "[model] medium_risk_from = {medium} 高于 high_risk_from = {high}"
            )),
        );
    }
    let rate = *file.monthly_discount_rate.get_ref();
    if !(0.0..1.0).contains(&rate) {
        report.push(
            Diagnostic::error(
                path,
                span_of(&file.monthly_discount_rate.span()),
                format!("[model] monthly_discount_rate = {rate}: write a monthly rate from 0 to 1, e.g. 0.01 for 1 %"),
            )
            .zh(format!("[model] monthly_discount_rate = {rate}：请写 0 到 1 之间的月折现率，例如 0.01 表示 1%")),
        );
    }
    let refit = match parse_cron(file.refit.get_ref()) {
        Ok((six, _)) => six,
        Err(why) => {
            report.push(
                Diagnostic::error(
                    path,
                    span_of(&file.refit.span()),
                    format!(
                        "[model] bad refit schedule `{}`: {why}",
                        file.refit.get_ref()
                    ),
                )
                .zh(format!(
                    "[model] 重新拟合的定时 `{}` 写得不对：{why}",
                    file.refit.get_ref()
                ))
                .hint2(
                    "every Monday at 03:00 is \"0 3 * * 1\"",
                    "每周一 03:00 请写 \"0 3 * * 1\"（分 时 日 月 周）",
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, Report> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recall.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    const MINIMAL: &str = "[clinic]\nname = \"美丽诊所\"\n";

    #[test]
    fn minimal_config_takes_the_defaults() {
        let config = load_text(MINIMAL).unwrap();
        assert_eq!(config.clinic.timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(config.schedule.ticks, ["0 0 9 * * *"]);
        assert_eq!(config.schedule.dispatch_every, Duration::from_secs(30));
        assert!(config.database.ends_with("data/recall.db"));
        assert!(config.channels.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = format!(
            "{MINIMAL}timezone = \"Asia/Shanghia\"\n[schedule]\nticks = [\"0 9 * *\"]\n\
             [senders.journal]\nkind = \"log\"\n[channels.sms]\nsender = \"jornal\"\n[channels.fax]\nsender = \"journal\"\n"
        );
        let report = load_text(&text).unwrap_err();
        let lines = report.to_lines();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(
            lines[0].contains(":3:12: error: unknown time zone `Asia/Shanghia`"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("did you mean `Asia/Shanghai`?"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(":5:10: error: bad schedule"),
            "{}",
            lines[1]
        );
        assert!(
            lines.iter().any(|l| l.contains("did you mean `journal`?")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("unknown channel `fax`")),
            "{lines:#?}"
        );
    }

    #[test]
    fn unknown_sender_kinds_are_rejected_with_the_known_ones() {
        let report = load_text(&format!("{MINIMAL}[senders.x]\nkind = \"lgo\"\n")).unwrap_err();
        let lines = report.to_lines();
        assert!(lines[0].contains("unknown variant `lgo`"), "{lines:?}");
        assert!(lines[0].contains("did you mean `log`?"), "{lines:?}");
    }

    #[test]
    fn sender_keys_are_checked_per_kind_and_rate_limits_are_common() {
        let report = load_text(&format!(
            "{MINIMAL}[senders.journal]\nkind = \"log\"\nfil = \"x\"\n[senders.other]\nkind = \"log\"\nrate_limit = \"5/fortnight\"\n"
        ))
        .unwrap_err();
        let lines = report.to_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("[senders.journal] unknown field `fil`")
                    && l.contains("did you mean `file`?")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("[senders.other] rate_limit: unknown unit `fortnight`")),
            "{lines:#?}"
        );
        let config = load_text(&format!(
            "{MINIMAL}[senders.journal]\nkind = \"log\"\nrate_limit = \"20/min\"\n[channels.wechat]\nsender = \"journal\"\nfallback = \"sms\"\ncost = 0.045\nquiet_hours = \"21:00-09:00\"\nmax_per_customer = \"2/7d\"\n[channels.sms]\nsender = \"journal\"\n"
        ))
        .unwrap();
        assert_eq!(config.senders["journal"].rate_limit.unwrap().count, 20);
        let wechat = &config.channels[&Channel::Wechat];
        assert_eq!(wechat.fallback, Some(Channel::Sms));
        assert_eq!(wechat.cost_milli, 45);
        assert_eq!(wechat.cap.unwrap().count, 2);
        let quiet = wechat.quiet_hours.unwrap();
        let t = |s| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(
            quiet.contains(t("23:00")) && quiet.contains(t("08:59")) && !quiet.contains(t("09:00"))
        );
    }

    #[test]
    fn a_fallback_needs_a_channel_section() {
        let report = load_text(&format!(
            "{MINIMAL}[senders.journal]\nkind = \"log\"\n[channels.wechat]\nsender = \"journal\"\nfallback = \"sms\"\n"
        ))
        .unwrap_err();
        assert!(
            report.to_lines()[0].contains("falls back to `sms`, which has no [channels.sms]"),
            "{report}"
        );
    }

    #[test]
    fn retention_and_metrics_are_checked() {
        let config = load_text(&format!(
            "{MINIMAL}[retention]\nmessages = \"2y\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
        ))
        .unwrap();
        assert!(config.retention.unwrap() > Duration::from_secs(700 * 86_400));
        assert_eq!(config.metrics.unwrap().port(), 9464);
        let report = load_text(&format!(
            "{MINIMAL}[retention]\nmessages = \"7d\"\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"
        ))
        .unwrap_err();
        let lines = report.to_lines();
        assert!(
            lines.iter().any(|l| l.contains("shorter than 90 days")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("not a loopback address")),
            "{lines:#?}"
        );
        let config = load_text(&format!(
            "{MINIMAL}[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"
        ))
        .unwrap();
        assert!(config.metrics.is_some());
    }

    #[test]
    fn cycles_and_the_model_are_read_and_checked() {
        let config = load_text(&format!(
            "{MINIMAL}[cycles]\n\"肉毒素除皱\" = 120\n\"皮肤科\" = 45\n[model]\nrefit = \"0 4 * * 0\"\nchurn_window_days = 60\nhigh_risk_from = 70\n"
        ))
        .unwrap();
        let cycles = &config.clinic.cycles;
        assert_eq!(
            cycles.of(Some("肉毒素除皱"), Some("注射科")),
            Some(("肉毒素除皱", 120))
        );
        assert_eq!(
            cycles.of(Some("光子嫩肤"), Some("皮肤科")),
            Some(("皮肤科", 45))
        );
        assert_eq!(cycles.of(Some("双眼皮"), Some("整形外科")), None);
        assert_eq!(config.model.refit, "0 0 4 * * 0");
        assert_eq!(config.clinic.scoring.churn_window_days, 60.0);
        assert_eq!(config.clinic.scoring.bands.high_from, 70);
        assert_eq!(config.clinic.scoring.bands.medium_from, 50);

        let report = load_text(&format!(
            "{MINIMAL}[cycles]\n\"水光针\" = 0\n[model]\nmedium_risk_from = 90\nrefit = \"weekly\"\n"
        ))
        .unwrap_err();
        let lines = report.to_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":4:9: error: [cycles] `水光针` = 0")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("medium_risk_from = 90 is above high_risk_from = 80")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("bad refit schedule `weekly`")),
            "{lines:#?}"
        );
    }

    #[test]
    fn five_field_cron_gets_a_seconds_field() {
        assert_eq!(parse_cron("30 9 * * 1-5").unwrap().0, "0 30 9 * * 1-5");
        assert!(parse_cron("61 9 * * *").is_err());
    }
}
