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
use crate::model::Channel;

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
    /// Named senders; channels refer to them by name.
    #[serde(default)]
    pub senders: BTreeMap<String, Spanned<SenderConfig>>,
    /// Which sender carries each channel (`sms`, `phone`, `wechat`, `email`).
    #[serde(default)]
    pub channels: BTreeMap<Spanned<String>, ChannelSection>,
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
    /// Attempts before a retryable failure becomes `failed`.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled on each further attempt.
    pub retry_backoff: Spanned<String>,
    /// Longest delay between retries.
    pub max_backoff: Spanned<String>,
}

impl Default for DispatchSection {
    fn default() -> Self {
        DispatchSection {
            batch_size: 200,
            max_attempts: 5,
            retry_backoff: Spanned::new(0..0, "1m".to_string()),
            max_backoff: Spanned::new(0..0, "6h".to_string()),
        }
    }
}

/// One named sender. `kind` says which provider it talks to.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SenderConfig {
    /// Writes each message to the outreach log (and, if `file` is set, to a
    /// JSON-lines file) and marks it sent. Sends nothing to customers.
    Log {
        /// Optional JSON-lines file every message is appended to.
        #[serde(default)]
        file: Option<PathBuf>,
    },
}

impl SenderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SenderConfig::Log { .. } => "log",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// The name of a sender under `[senders]`.
    pub sender: Spanned<String>,
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
    /// Sender name → its settings (paths resolved).
    pub senders: BTreeMap<String, SenderConfig>,
    /// Channel → sender name. Channels not listed have no sender: their
    /// messages stay queued and `recall check` warns.
    pub channels: BTreeMap<Channel, String>,
}

#[derive(Debug, Clone)]
pub struct Clinic {
    pub code: String,
    pub name: String,
    pub timezone: Tz,
    pub phone: Option<String>,
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
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            batch_size: 200,
            max_attempts: 5,
            retry_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(6 * 3600),
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

/// Reads and validates `recall.toml`. All problems are reported together.
pub fn load(path: &Path) -> Result<Config, Report> {
    let mut report = Report::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            report.push(
                Diagnostic::error(path, None, format!("cannot read the configuration: {e}"))
                    .hint("create one with `recall init DIR`, or pass `--config PATH`"),
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
    let config = validate(path, file, &mut report);
    if report.has_errors() {
        Err(report)
    } else {
        Ok(config)
    }
}

/// Checks a parsed file and resolves it; problems go to `report`.
fn validate(path: &Path, file: ConfigFile, report: &mut Report) -> Config {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let span_of = |s: &std::ops::Range<usize>| (s.end > s.start).then(|| s.clone());

    let tz_text = file.clinic.timezone.get_ref();
    let timezone = tz_text.parse::<Tz>().unwrap_or_else(|_| {
        let known = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        report.push(
            Diagnostic::error(
                path,
                span_of(&file.clinic.timezone.span()),
                format!("unknown time zone `{tz_text}`"),
            )
            .suggest(tz_text, known)
            .hint("use an IANA name such as `Asia/Shanghai`"),
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
                .hint("for every day at 09:00 write \"0 9 * * *\""),
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
                .hint("write a duration such as \"30s\", \"5m\" or \"2h\""),
            );
            Duration::from_secs(60)
        })
    };
    let dispatch_every = duration(&file.schedule.dispatch_every, "dispatch interval");
    let retry_backoff = duration(&file.dispatch.retry_backoff, "retry backoff");
    let max_backoff = duration(&file.dispatch.max_backoff, "maximum backoff");
    if file.dispatch.max_attempts == 0 {
        report.push(
            Diagnostic::error(path, None, "dispatch.max_attempts must be at least 1")
                .hint("5 is a good start"),
        );
    }
    if file.dispatch.batch_size == 0 {
        report.push(Diagnostic::error(
            path,
            None,
            "dispatch.batch_size must be at least 1",
        ));
    }

    let senders: BTreeMap<String, SenderConfig> = file
        .senders
        .into_iter()
        .map(|(name, sender)| {
            let sender = match sender.into_inner() {
                SenderConfig::Log { file } => SenderConfig::Log {
                    file: file.map(|f| resolve(&f)),
                },
            };
            (name, sender)
        })
        .collect();

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
                .suggest(sender, senders.keys().map(String::as_str)),
            );
            continue;
        }
        channels.insert(channel, sender.clone());
    }

    Config {
        path: path.to_path_buf(),
        clinic: Clinic {
            code: file.clinic.code,
            name: file.clinic.name,
            timezone,
            phone: file.clinic.phone,
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
            retry_backoff,
            max_backoff,
        },
        senders,
        channels,
    }
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
    fn five_field_cron_gets_a_seconds_field() {
        assert_eq!(parse_cron("30 9 * * 1-5").unwrap().0, "0 30 9 * * 1-5");
        assert!(parse_cron("61 9 * * *").is_err());
    }
}
