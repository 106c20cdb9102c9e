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
use std::sync::Arc;

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
    /// The secret in environment variable `var`, for sender `name`. Missing
    /// or empty is an error that names the variable, never the value.
    pub fn secret(&self, name: &str, var: &str) -> Result<String, BuildError> {
        let value = match &self.secrets {
            Secrets::Environment => std::env::var(var).ok(),
            Secrets::Map(map) => map.get(var).cloned(),
        };
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            BuildError::new(
                name,
                format!("environment variable {var} is not set (secrets come from the environment, never from recall.toml)"),
            )
        })
    }
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
}
