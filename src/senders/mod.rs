//! Sender implementations, one module per provider, and [`build`], which
//! turns a `[senders.<name>]` section into a running sender.
//!
//! Each module has a `Config` (serde, unknown keys rejected, a doc comment on
//! every field) and a `build(name, &Config, &Context)` that checks the
//! configuration, reads its secrets from the environment and returns the
//! sender. Building does no network I/O. Secrets are never read from
//! `recall.toml`: a config names the environment variable that holds them.

pub mod aliyun;
pub mod cloud_sign;
pub mod email;
pub mod log;
pub mod phone_tasks;
pub mod tencent;
pub mod twilio;
pub mod webhook;
pub mod wechat_official;
pub mod wechat_token;
pub mod wecom;
pub mod wecom_robot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::dispatch::sender::Sender;

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
}

impl BuildError {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        BuildError {
            name: name.to_string(),
            message: message.into(),
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
    /// file, never the value.
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
            remember_secret(&value);
            return Ok(value);
        }
        let Some(path) = file else {
            return Err(BuildError::new(
                name,
                format!(
                    "environment variable {var} is not set, nor {var}_FILE (secrets come from the environment or a 0600 file, never from recall.toml)"
                ),
            ));
        };
        let value = read_secret_file(&path)
            .map_err(|why| BuildError::new(name, format!("{var}_FILE: {why}")))?;
        remember_secret(&value);
        Ok(value)
    }
}

/// What a secret is replaced with in provider text.
pub const REDACTED: &str = "[redacted]";

/// Every secret value resolved by [`Context::secret`] in this process, in
/// the forms a provider may echo it: as is, without an auth scheme word
/// ("Bearer x" → "x"), percent- and form-encoded, JSON-escaped. Longest
/// first, so a longer form is replaced before a part of it.
static SECRET_FORMS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Auth scheme words that prefix a secret in a header value; the rest of
/// the value is a secret on its own.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "apikey", "key"];

/// What a URL component keeps unencoded: letters, digits and `-._~`.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Shorter secrets are not looked for: they would be found inside ordinary
/// words ("id" in "invalid") and mangle every message, and hide little.
const MIN_SECRET_LEN: usize = 6;

fn remember_secret(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut parts = vec![value.to_string()];
    // "Bearer abc" may be echoed as just "abc"; the words of a secret are
    // secrets too, unless they are a scheme word or too short to matter.
    for word in value.split_whitespace() {
        if word.len() >= MIN_SECRET_LEN
            && !AUTH_SCHEMES.contains(&word.to_ascii_lowercase().as_str())
        {
            parts.push(word.to_string());
        }
    }
    let mut forms = SECRET_FORMS.write().unwrap_or_else(|p| p.into_inner());
    for part in parts {
        let all = percent_encoding::utf8_percent_encode(&part, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let percent = percent_encoding::utf8_percent_encode(&part, URL_COMPONENT).to_string();
        let form = percent.replace("%20", "+");
        let json = serde_json::to_string(&part).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let lower = percent.to_ascii_lowercase();
        for f in [all, lower, percent, form, json, part] {
            if !f.is_empty() && !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// Query parameters whose values are credentials wherever a URL shows up in
/// provider text (`?access_token=...`, `&key=...`).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "apikey",
    "api_key",
];

/// Provider text (an error, an echoed request, a URL) with every secret the
/// senders resolved taken out, in the forms a provider may echo it, and the
/// values of credential query parameters in URLs. Sender errors, outcomes
/// and log lines pass through it before they are stored or logged.
pub fn redact_secrets(text: &str) -> String {
    let mut text = text.to_string();
    {
        let forms = SECRET_FORMS.read().unwrap_or_else(|p| p.into_inner());
        for form in forms.iter() {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
    }
    redact_query_tokens(&text)
}

/// `...?key=abc&x=1` → `...?key=[redacted]&x=1`, for the names in
/// [`SECRET_PARAMS`].
fn redact_query_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let Some(eq) = rest.find('=') else { continue };
        let name = &rest[..eq];
        if !SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
            continue;
        }
        let value_end = rest[eq + 1..]
            .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c.is_whitespace())
            .map_or(rest.len(), |j| eq + 1 + j);
        out.push_str(&rest[..=eq]);
        if value_end > eq + 1 {
            out.push_str(REDACTED);
        }
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
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

    #[test]
    fn resolved_secrets_and_their_derived_forms_are_redacted_from_provider_text() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::from([
                ("AUTH".to_string(), "Bearer TOPSECRET-abc".to_string()),
                ("KEY".to_string(), "k3y/with+odd chars".to_string()),
            ])),
            ..Context::default()
        };
        ctx.secret("a", "AUTH").unwrap();
        ctx.secret("a", "KEY").unwrap();
        let echoed = "got Authorization: Bearer TOPSECRET-abc; token TOPSECRET-abc; \
                      url /send?u=1&apikey=k3y%2Fwith%2Bodd%20chars; form k3y%2Fwith%2Bodd+chars; \
                      json \"k3y/with+odd chars\"; https://x.example/hook?key=other-key-value&a=1";
        let clean = redact_secrets(echoed);
        assert!(!clean.contains("TOPSECRET"), "{clean}");
        assert!(!clean.contains("k3y"), "{clean}");
        assert!(!clean.contains("other-key-value"), "{clean}");
        assert!(clean.contains("got Authorization: [redacted];"), "{clean}");
        assert!(clean.contains("hook?key=[redacted]&a=1"), "{clean}");
        assert_eq!(redact_secrets("nothing secret here"), "nothing secret here");
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
