//! Sender implementations, one module per provider, and [`build`], which
//! turns a `[senders.<name>]` section into a running sender.
//!
//! Each module has a `Config` (serde, unknown keys rejected, a doc comment on
//! every field), a pure `validate` that touches no environment, file or
//! network and reports every setting it refuses ([`Invalid`], with its key
//! in `recall.toml`, in English and Chinese), and a `build(name, &Config,
//! &Context)` that validates the same way, then reads its secrets from the
//! environment and returns the sender. So `recall check` (which runs
//! [`SenderConfig::validate`] for every sender, through `config::load`)
//! refuses every setting a build would refuse; only the environment (a
//! missing secret, an unreadable file) can still stop a build. Building
//! does no network I/O. Secrets are never read from `recall.toml`: a config
//! names the environment variable that holds them.

pub mod aliyun;
pub mod email;
pub mod kit;
pub mod log;
pub mod phone_tasks;
pub mod tencent;
pub mod twilio;
pub mod webhook;
pub mod wechat;
pub mod wechat_official;
pub mod wecom;
pub mod wecom_robot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::base::diag::{self, Diagnostic, Report};
use crate::base::i18n::{Lang, t};
pub use crate::base::redact::REDACTED;
use crate::config::{Config, SenderEntry};
use crate::dispatch::pacer::Pacer;
use crate::dispatch::sender::Sender;
use crate::dispatch::{Dispatcher, Route};

/// One named sender: `kind` picks the provider, the other keys are its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SenderConfig {
    /// Records messages in the outreach log (and a file) without sending them.
    Log(log::Config),
    /// Alibaba Cloud SMS (SendSms, ACS3-HMAC-SHA256).
    AliyunSms(aliyun::Config),
    /// Tencent Cloud SMS (SendSms, TC3-HMAC-SHA256).
    TencentSms(tencent::Config),
    /// Any HTTP SMS gateway: URL, headers and a JSON body from a template.
    Webhook(webhook::Config),
    /// Twilio Programmable Messaging (SMS outside China).
    Twilio(twilio::Config),
    /// WeCom (企业微信) customer contact messages, confirmed by staff.
    Wecom(wecom::Config),
    /// WeChat Official Account template messages to an openid.
    WechatOfficial(wechat_official::Config),
    /// WeCom group robot webhook, for notices to staff.
    WecomRobot(wecom_robot::Config),
    /// Email over SMTP.
    Smtp(email::Config),
    /// Phone-call tasks for the clinic's staff.
    PhoneTasks(phone_tasks::Config),
}

impl SenderConfig {
    /// The checked config of `[senders.<name>]`, or what is wrong with it,
    /// pointing into `recall.toml` (`config_path`).
    pub fn parse(
        config_path: &Path,
        name: &str,
        entry: &SenderEntry,
    ) -> Result<SenderConfig, Box<Diagnostic>> {
        SenderConfig::deserialize(toml::Value::Table(entry.settings.clone())).map_err(|e| {
            let mut diagnostic = diag::from_toml_error(config_path, &e);
            let message = diagnostic.message.clone();
            diagnostic.message = t!("senders.named", name, message);
            diagnostic.span = diagnostic.span.or(entry.span.clone());
            if !e.message().contains("kind") && diagnostic.hints.is_empty() {
                diagnostic = diagnostic.hint(t!("senders.kind_hint"));
            }
            Box::new(diagnostic)
        })
    }

    /// Every setting of sender `name` that its build would refuse, without
    /// touching the environment, a file or the network. `senders` are all
    /// the configured senders (phone tasks name the robot that notifies).
    pub fn validate(&self, name: &str, senders: &BTreeMap<String, SenderConfig>) -> Vec<Invalid> {
        let result = match self {
            SenderConfig::Log(_) => Ok(()),
            SenderConfig::AliyunSms(c) => aliyun::validate(name, c).map(drop),
            SenderConfig::TencentSms(c) => tencent::validate(name, c).map(drop),
            SenderConfig::Webhook(c) => webhook::validate(c).map(drop),
            SenderConfig::Twilio(c) => twilio::validate(c).map(drop),
            SenderConfig::Wecom(c) => wecom::validate(c).map(drop),
            SenderConfig::WechatOfficial(c) => wechat_official::validate(name, c).map(drop),
            SenderConfig::WecomRobot(c) => wecom_robot::validate(c).map(drop),
            SenderConfig::Smtp(c) => email::validate(c).map(drop),
            SenderConfig::PhoneTasks(c) => phone_tasks::validate(c, senders).map(drop),
        };
        result.err().unwrap_or_default()
    }

    /// When this sender sends a provider's approved templates (Aliyun and
    /// Tencent SMS, WeChat Official Account) and maps none to recall
    /// template `template`: the keys `[senders.<name>.templates.<template>]`
    /// needs. Every message of that template through it would fail.
    pub fn lacks_template(&self, template: &str) -> Option<&'static str> {
        let (mapped, keys) = match self {
            SenderConfig::AliyunSms(c) => {
                (c.templates.contains_key(template), "code = \"SMS_...\"")
            }
            SenderConfig::TencentSms(c) => (
                c.templates.contains_key(template),
                "id = \"...\", params = [...]",
            ),
            SenderConfig::WechatOfficial(c) => {
                (c.templates.contains_key(template), "template_id = \"...\"")
            }
            _ => return None,
        };
        (!mapped).then_some(keys)
    }

    /// The `kind` as written in `recall.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            SenderConfig::Log(_) => "log",
            SenderConfig::AliyunSms(_) => "aliyun_sms",
            SenderConfig::TencentSms(_) => "tencent_sms",
            SenderConfig::Webhook(_) => "webhook",
            SenderConfig::Twilio(_) => "twilio",
            SenderConfig::Wecom(_) => "wecom",
            SenderConfig::WechatOfficial(_) => "wechat_official",
            SenderConfig::WecomRobot(_) => "wecom_robot",
            SenderConfig::Smtp(_) => "smtp",
            SenderConfig::PhoneTasks(_) => "phone_tasks",
        }
    }
}

/// A sender could not be built (a bad setting, a missing secret, a file
/// that cannot be opened).
#[derive(Debug, thiserror::Error)]
#[error("sender `{name}`: {message}")]
pub struct BuildError {
    pub name: String,
    pub message: String,
    /// The environment variables the build needed and found unset (neither
    /// `VAR` nor `VAR_FILE`), for a hint that names what to set.
    pub missing: Vec<String>,
}

impl BuildError {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        BuildError {
            name: name.to_string(),
            message: message.into(),
            missing: Vec::new(),
        }
    }

    /// Several errors of sender `name` as one: every message, every
    /// missing variable.
    pub fn all(name: &str, errors: Vec<BuildError>) -> Self {
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        let mut error = BuildError::new(name, messages.join("; "));
        error.missing = errors.into_iter().flat_map(|e| e.missing).collect();
        error
    }

    /// The settings `validate` refused, as one error.
    pub fn invalid(name: &str, problems: &[Invalid]) -> Self {
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        BuildError::new(name, messages.join("; "))
    }
}

/// A setting of `[senders.<name>]` a sender refuses, found without touching
/// the environment: `recall check` reports it at its line, the build
/// refuses to start with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key at fault, relative to `[senders.<name>]`: `security`, or
    /// `templates.welcome_back.code` for a key of a sub-table.
    pub key: String,
    pub message: String,
    pub message_zh: String,
    /// What to do, in English and Chinese.
    pub hint: Option<(String, String)>,
}

impl Invalid {
    /// The error `recall check` shows: at the key's line in `recall.toml`
    /// (`text`), else at the sender's section.
    pub fn diagnostic(
        &self,
        path: &Path,
        text: &str,
        name: &str,
        section: Option<std::ops::Range<usize>>,
    ) -> Diagnostic {
        let (table, key) = match self.key.rsplit_once('.') {
            Some((sub, key)) => (format!("senders.{name}.{sub}"), key),
            None => (format!("senders.{name}"), self.key.as_str()),
        };
        let span = crate::config::find_key(text, &table, key).or(section);
        let named = |message: &str| {
            if message.starts_with("[senders.") {
                message.to_string()
            } else {
                format!("[senders.{name}] {message}")
            }
        };
        let message = t!(
            "senders.given",
            en = named(&self.message),
            zh = named(&self.message_zh)
        );
        let mut diagnostic = Diagnostic::error(path, span, message);
        if let Some((en, zh)) = &self.hint {
            diagnostic = diagnostic.hint(t!("senders.given", en, zh));
        }
        diagnostic
    }

    pub fn new(key: impl Into<String>, en: impl Into<String>, zh: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            message: en.into(),
            message_zh: zh.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, en: impl Into<String>, zh: impl Into<String>) -> Invalid {
        self.hint = Some((en.into(), zh.into()));
        self
    }
}

/// Collects [`Invalid`] settings: a sender's `validate` reports them all at
/// once, not only the first.
#[derive(Debug, Default)]
pub struct Problems(Vec<Invalid>);

impl Problems {
    pub fn push(&mut self, invalid: Invalid) {
        self.0.push(invalid);
    }

    /// The value of a check, keeping its problem if it failed.
    pub fn take<T>(&mut self, checked: Result<T, Invalid>) -> Option<T> {
        checked.map_err(|invalid| self.0.push(invalid)).ok()
    }

    /// The checked settings, when nothing was refused. `settings` is
    /// `None` only when a check it needed failed, and so left a problem.
    pub fn finish<T>(self, settings: Option<T>) -> Result<T, Vec<Invalid>> {
        match settings {
            Some(settings) if self.0.is_empty() => Ok(settings),
            _ => Err(self.0),
        }
    }
}

/// Where secrets come from.
#[derive(Debug, Clone, Default)]
pub enum Secrets {
    /// The process environment (the service, the CLI).
    #[default]
    Environment,
    /// A fixed map (tests).
    Map(BTreeMap<String, String>),
}

/// What building a sender may need besides its own config.
#[derive(Debug, Clone)]
pub struct Context {
    pub secrets: Secrets,
    /// The folder of `recall.toml`; relative paths in sender configs are
    /// relative to it.
    pub base_dir: PathBuf,
    /// The database, for senders whose provider is recall itself (phone tasks).
    pub database: PathBuf,
    /// The clinic's time zone (working hours, days).
    pub timezone: chrono_tz::Tz,
    /// Every configured sender, for senders that use another one (phone
    /// tasks notify staff through a WeCom robot).
    pub senders: BTreeMap<String, SenderConfig>,
}

impl Context {
    /// The secret in environment variable `var`, for sender `name`; or, when
    /// `var` is not set, the contents of the file named by `<var>_FILE`
    /// (e.g. `SMTP_PASSWORD_FILE=/etc/recall/smtp-password`), which must not
    /// be readable or writable by group or others (mode 0600 or 0400).
    /// Missing, empty or unsafe is an error that names the variable or the
    /// file, never the value. The value is [`crate::base::redact::remember`]ed, so
    /// no log line or stored error ever shows it.
    pub fn secret(&self, name: &str, var: &str) -> Result<String, BuildError> {
        let (value, file) = match &self.secrets {
            Secrets::Environment => (
                std::env::var(var).ok(),
                std::env::var_os(format!("{var}_FILE")).map(PathBuf::from),
            ),
            Secrets::Map(map) => (
                map.get(var).cloned(),
                map.get(&format!("{var}_FILE")).map(PathBuf::from),
            ),
        };
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            crate::base::redact::remember(&value);
            return Ok(value);
        }
        let Some(path) = file else {
            let mut error = BuildError::new(
                name,
                format!(
                    "environment variable {var} is not set, nor {var}_FILE (secrets come from the environment or a 0600 file, never from recall.toml)"
                ),
            );
            error.missing.push(var.to_string());
            return Err(error);
        };
        let value = read_secret_file(&path)
            .map_err(|why| BuildError::new(name, format!("{var}_FILE: {why}")))?;
        crate::base::redact::remember(&value);
        Ok(value)
    }
}

/// Reads a secret file, refusing one that group or others may read or
/// write. Errors name the file and its mode, never its contents.
fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display();
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read the secret file {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("the secret file {shown} is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the secret file {shown} has mode {mode:04o}: group and others must not read it; run `chmod 600 {shown}`"
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret file {shown}: {}", e.kind()))?;
    // One trailing newline is how editors and `echo` end files.
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.trim().is_empty() {
        return Err(format!("the secret file {shown} is empty"));
    }
    Ok(value.to_string())
}

impl Default for Context {
    fn default() -> Self {
        Context {
            secrets: Secrets::Environment,
            base_dir: PathBuf::new(),
            database: PathBuf::new(),
            timezone: chrono_tz::Asia::Shanghai,
            senders: BTreeMap::new(),
        }
    }
}

/// The checked config of every sender under `[senders]`, or every problem
/// found in them at once.
pub fn configs(config: &Config) -> Result<BTreeMap<String, SenderConfig>, Report> {
    let mut report = Report::default();
    let mut configs = BTreeMap::new();
    for (name, entry) in &config.senders {
        match SenderConfig::parse(&config.path, name, entry) {
            Ok(parsed) => {
                configs.insert(name.clone(), parsed);
            }
            Err(diagnostic) => report.push(*diagnostic),
        }
    }
    let text = std::fs::read_to_string(&config.path).unwrap_or_default();
    for (name, sender) in &configs {
        for invalid in sender.validate(name, &configs) {
            report.push(invalid.diagnostic(
                &config.path,
                &text,
                name,
                config.senders[name].span.clone(),
            ));
        }
    }
    if report.has_errors() {
        report.add_source(&config.path, &text);
        return Err(report);
    }
    Ok(configs)
}

/// What building the senders of `config` needs: secrets from the
/// environment.
fn context(config: &Config, configs: &BTreeMap<String, SenderConfig>) -> Context {
    Context {
        secrets: Secrets::Environment,
        base_dir: config
            .path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default(),
        database: config.database.clone(),
        timezone: config.clinic.timezone,
        senders: configs.clone(),
    }
}

/// What stops each sender the dispatcher would build (the channels' and
/// the `[dispatch] alert`) in this environment: a missing secret, an
/// unreadable file. Every sender is built on its own, so one run names
/// every problem, not only the first. Settings `validate` refuses are
/// [`configs`]' errors, not repeated here.
pub fn build_problems(config: &Config) -> Vec<BuildError> {
    let Ok(configs) = configs(config) else {
        return Vec::new();
    };
    let ctx = context(config, &configs);
    let used: std::collections::BTreeSet<&str> = config
        .channels
        .values()
        .map(|policy| policy.sender.as_str())
        .chain(config.dispatch.alert.as_deref())
        .collect();
    let mut problems: Vec<BuildError> = Vec::new();
    for name in used {
        let built = match configs.get(name) {
            Some(sender) => build(name, sender, &ctx).err(),
            None => Some(BuildError::new(name, "not defined under [senders]")),
        };
        // Phone tasks build their notify robot: its problem is the robot's.
        if let Some(error) = built
            && !problems
                .iter()
                .any(|p| p.name == error.name && p.message == error.message)
        {
            problems.push(error);
        }
    }
    problems
}

/// A dispatcher with every sender the configuration routes a channel to,
/// built with secrets from the environment. Senders shared by several
/// channels are built once and share their rate limit.
pub fn dispatcher(config: &Config) -> Result<Dispatcher, BuildError> {
    let configs = configs(config).map_err(|report| {
        let first = report.diagnostics.first();
        BuildError::new(
            "senders",
            first.map_or_else(String::new, |d| d.message.render(Lang::En)),
        )
    })?;
    let ctx = context(config, &configs);
    // A sender shared by several channels is built once and shares its pacer.
    type Built = (Arc<dyn Sender>, Option<Arc<Pacer>>);
    let mut built: BTreeMap<&str, Built> = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (channel, policy) in &config.channels {
        let name = policy.sender.as_str();
        let (sender, pacer) = match built.get(name) {
            Some(entry) => entry.clone(),
            None => {
                let (Some(entry), Some(sender_config)) =
                    (config.senders.get(name), configs.get(name))
                else {
                    return Err(BuildError::new(name, "not defined under [senders]"));
                };
                let sender = build(name, sender_config, &ctx)?;
                let rate = entry.rate_limit.or_else(|| sender.default_rate_limit());
                let pacer = rate.map(|r| Arc::new(Pacer::new(r)));
                built.insert(name, (sender.clone(), pacer.clone()));
                (sender, pacer)
            }
        };
        routes.insert(
            *channel,
            Route {
                sender_name: name.to_string(),
                sender,
                policy: policy.clone(),
                pacer,
            },
        );
    }
    let dispatcher =
        Dispatcher::with_routes(routes, config.dispatch.clone(), config.clinic.timezone)
            .in_region(config.clinic.country);
    // `[dispatch] alert`: checked by `config` to name a WeCom robot.
    let Some(name) = &config.dispatch.alert else {
        return Ok(dispatcher);
    };
    let alert = match built.get(name.as_str()) {
        Some((sender, _)) => sender.clone(),
        None => {
            let sender_config = configs
                .get(name)
                .ok_or_else(|| BuildError::new(name, "not defined under [senders]"))?;
            build(name, sender_config, &ctx)?
        }
    };
    Ok(dispatcher.with_alert(name, alert))
}

/// Builds the sender a config section describes.
pub fn build(
    name: &str,
    config: &SenderConfig,
    ctx: &Context,
) -> Result<Arc<dyn Sender>, BuildError> {
    match config {
        SenderConfig::Log(c) => log::build(name, c, ctx),
        SenderConfig::AliyunSms(c) => aliyun::build(name, c, ctx),
        SenderConfig::TencentSms(c) => tencent::build(name, c, ctx),
        SenderConfig::Webhook(c) => webhook::build(name, c, ctx),
        SenderConfig::Twilio(c) => twilio::build(name, c, ctx),
        SenderConfig::Wecom(c) => wecom::build(name, c, ctx),
        SenderConfig::WechatOfficial(c) => wechat_official::build(name, c, ctx),
        SenderConfig::WecomRobot(c) => wecom_robot::build(name, c, ctx),
        SenderConfig::Smtp(c) => email::build(name, c, ctx),
        SenderConfig::PhoneTasks(c) => phone_tasks::build(name, c, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The senders' settings of a `recall.toml` with `senders` in it.
    fn configs_of(senders: &str) -> Result<BTreeMap<String, SenderConfig>, Report> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recall.toml");
        std::fs::write(&path, format!("[clinic]\nname = \"美丽诊所\"\n{senders}")).unwrap();
        configs(&crate::config::load(&path).unwrap())
    }

    #[test]
    fn unknown_sender_kinds_are_rejected_with_the_known_ones() {
        let report = configs_of("[senders.x]\nkind = \"lgo\"\n").unwrap_err();
        let lines = report.to_lines();
        assert!(lines[0].contains("unknown variant `lgo`"), "{lines:?}");
        assert!(lines[0].contains("did you mean `log`?"), "{lines:?}");
    }

    #[test]
    fn a_sender_setting_its_build_would_refuse_points_at_its_line_even_in_a_sub_table() {
        let report = configs_of(
            "[senders.aliyun]\nkind = \"aliyun_sms\"\nsign_name = \"美丽诊所\"\ntimeout = \"soon\"\n\
             [senders.aliyun.templates.welcome_back]\ncode = \"\"\n",
        )
        .unwrap_err();
        let lines = report.to_lines();
        assert_eq!(report.errors(), 2, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":6:") && l.contains("timeout `soon`")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains(":8:")
                && l.contains("[senders.aliyun.templates.welcome_back] code is empty")),
            "{lines:?}"
        );
    }

    #[test]
    fn sender_keys_are_checked_per_kind() {
        let report = configs_of("[senders.journal]\nkind = \"log\"\nfil = \"x\"\n").unwrap_err();
        let lines = report.to_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("[senders.journal] unknown field `fil`")
                    && l.contains("did you mean `file`?")),
            "{lines:#?}"
        );
        let ok = configs_of("[senders.journal]\nkind = \"log\"\nfile = \"x\"\n").unwrap();
        assert_eq!(ok["journal"].kind(), "log");
    }

    /// A sender section as written in recall.toml.
    fn section(text: &str) -> SenderConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn validate_refuses_every_setting_build_refuses_and_build_only_adds_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: BTreeMap<String, String> = [
            "ALIYUN_ACCESS_KEY_ID",
            "ALIYUN_ACCESS_KEY_SECRET",
            "TENCENTCLOUD_SECRET_ID",
            "TENCENTCLOUD_SECRET_KEY",
            "TWILIO_AUTH_TOKEN",
            "WECOM_SECRET",
            "WECHAT_APP_SECRET",
            "WECOM_ROBOT_KEY",
            "SMTP_PASSWORD",
            "GATEWAY_TOKEN",
        ]
        .into_iter()
        .map(|var| (var.to_string(), "s3cret-value".to_string()))
        .collect();
        let ctx = |secrets: BTreeMap<String, String>| Context {
            secrets: Secrets::Map(secrets),
            base_dir: dir.path().to_path_buf(),
            database: dir.path().join("r.db"),
            ..Context::default()
        };
        crate::store::Store::create(&dir.path().join("r.db")).unwrap();
        let refused = [
            "kind = \"aliyun_sms\"\nsign_name = \" \"",
            "kind = \"tencent_sms\"\nsms_sdk_app_id = \"app\"\nsign_name = \"x\"",
            "kind = \"webhook\"\nurl = \"ftp://x\"\nbody = '{}'",
            "kind = \"webhook\"\nurl = \"https://x\"\nheaders = { Authorization = \"Bearer x\" }\nbody = '{}'",
            "kind = \"webhook\"\nurl = \"https://x\"\nbody = '{\"a\": {{ adress }}}'",
            "kind = \"twilio\"\naccount_sid = \"AC1\"\nfrom = \"+1\"",
            "kind = \"wecom\"\ncorp_id = \" \"",
            "kind = \"wechat_official\"\napp_id = \"wx1\"\ntemplates = {}",
            "kind = \"wecom_robot\"\nmsgtype = \"markdown\"\nmentioned_list = [\"@all\"]",
            "kind = \"smtp\"\nhost = \"h\"\nfrom = \"a@b.example\"\nsecurity = \"plain\"\nusername = \"u\"",
            "kind = \"smtp\"\nhost = \"h\"\nfrom = \"a@b.example\"\nunsubscribe_url = \"http://x/{who}\"",
            "kind = \"webhook\"\nurl = \"https://x\"\nbody = '{}'\ntimeout = \"0s\"",
            "kind = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nfrom = \"+1\"\ntimeout = \"soon\"",
            "kind = \"smtp\"\nhost = \"h\"\nfrom = \"a@b.example\"\ntimeout = \"soon\"",
            "kind = \"wecom\"\ncorp_id = \"ww1\"\nconfirm_within = \"0s\"",
            "kind = \"wechat_official\"\napp_id = \"wx1\"\nendpoint = \"weixin\"\ntemplates = { a = { template_id = \"t\" } }",
            "kind = \"wecom_robot\"\ntimeout = \"1 fortnight\"",
            "kind = \"phone_tasks\"\nstaff = []",
            "kind = \"phone_tasks\"\nstaff = [{ name = \"a\" }]\nnotify = \"nobody\"",
        ];
        for text in refused {
            let config = section(text);
            let problems = config.validate("s", &BTreeMap::new());
            assert!(!problems.is_empty(), "validate passes {text}");
            let built = build("s", &config, &ctx(secrets.clone()));
            let error = built
                .err()
                .unwrap_or_else(|| panic!("built {text}"))
                .to_string();
            for problem in &problems {
                assert!(error.contains(&problem.message), "{text}: {error}");
                assert!(!problem.message_zh.is_empty(), "{text}");
            }
        }
        // What validate passes, build refuses only for the environment.
        let accepted = [
            "kind = \"smtp\"\nhost = \"h\"\nfrom = \"a@b.example\"\nusername = \"u\"",
            "kind = \"wecom\"\ncorp_id = \"ww1\"",
            "kind = \"webhook\"\nurl = \"https://x\"\nsecret_headers = { Authorization = \"GATEWAY_TOKEN\" }\nbody = '{}'",
        ];
        for text in accepted {
            let config = section(text);
            assert_eq!(config.validate("s", &BTreeMap::new()), [], "{text}");
            assert!(build("s", &config, &ctx(secrets.clone())).is_ok(), "{text}");
            let error = build("s", &config, &ctx(BTreeMap::new()))
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("environment variable"), "{text}: {error}");
        }
    }

    #[test]
    fn a_build_names_every_missing_secret_of_its_sender_not_only_the_first() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::new()),
            ..Context::default()
        };
        let senders: [(&str, &[&str]); 2] = [
            (
                "kind = \"webhook\"\nurl = \"https://x\"\nbody = '{}'\n\
                 secret_headers = { Authorization = \"GATEWAY_TOKEN\" }\nsecret_vars = { key = \"GATEWAY_KEY\" }",
                &["GATEWAY_TOKEN", "GATEWAY_KEY"],
            ),
            (
                "kind = \"aliyun_sms\"\nsign_name = \"诊所\"\ntemplates = { a = { code = \"SMS_1\" } }",
                &["ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"],
            ),
        ];
        for (text, vars) in senders {
            let error = build("s", &section(text), &ctx).err().unwrap();
            assert_eq!(error.missing, vars, "{text}");
            for var in vars {
                assert!(error.message.contains(var), "{text}: {error}");
            }
        }
    }

    #[test]
    fn secrets_are_named_never_shown() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::from([("SET".to_string(), "s3cret".to_string())])),
            ..Context::default()
        };
        assert_eq!(ctx.secret("a", "SET").unwrap(), "s3cret");
        let err = ctx.secret("a", "MISSING").unwrap_err().to_string();
        assert!(
            err.contains("MISSING") && err.contains("environment"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secrets_come_from_a_private_file_and_never_from_a_shared_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let ctx = |path: &std::path::Path| Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "KEY_FILE".to_string(),
                path.display().to_string(),
            )])),
            ..Context::default()
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ctx(&file).secret("a", "KEY").unwrap(), "s3cret-from-file");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ctx(&file).secret("a", "KEY").unwrap_err().to_string();
        assert!(
            err.contains("0644") && err.contains(&file.display().to_string()),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");

        let err = ctx(&dir.path().join("missing"))
            .secret("a", "KEY")
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY_FILE") && err.contains("missing"), "{err}");
    }
}
