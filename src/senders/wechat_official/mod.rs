//! The `wechat_official` sender: WeChat Official Account (公众号) template
//! messages to a customer's openid.
//!
//! An Official Account cannot send free text to a follower: it sends one of
//! its approved templates, filled with values. Each recall template that may
//! go this way is mapped in `recall.toml` to the account's `template_id`
//! (`[senders.<name>.templates.<recall template>]`), and its values come
//! from the recall template's `<name>.params.toml` (`message.params`), each
//! becoming `data.<key>.value`. `message.content` is not sent.
//!
//! The call is `POST /cgi-bin/message/template/send` with the outreach id as
//! `client_msg_id`, so WeChat drops a repeat of the same message within ten
//! minutes (a retry after a timeout). Tokens come from the stable-token
//! endpoint through [`super::wechat`].
//!
//! This module never logs the values sent, the secret or the token; openids
//! go through [`mask::address`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::kit::{self, china, http};
use super::wechat::{Answer, App, Credentials};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::base::model::Channel;
use crate::dispatch::sender::{AddressKind, Outbound, SendOutcome, Sender};

/// `[senders.<name>]` with `kind = "wechat_official"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Official Account's AppID (`wx...`), from 设置与开发 → 基本配置.
    /// Not a secret.
    pub app_id: String,
    /// Environment variable holding the account's AppSecret.
    #[serde(default = "default_app_secret_env")]
    pub app_secret_env: String,
    /// Which of the account's templates each recall template is sent as:
    /// `[senders.<name>.templates.<recall template>]`. A message whose
    /// template is not listed fails with a message naming the missing table.
    pub templates: BTreeMap<String, TemplateConfig>,
    /// The WeChat API address; tests point it at a local server.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one HTTP call to WeChat may take.
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
}

/// `[senders.<name>.templates.<recall template>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The template's id in the account's template library (模板ID).
    pub template_id: String,
    /// The page the message opens when tapped (e.g. the booking page);
    /// without it the message does not open anything.
    #[serde(default)]
    pub url: Option<String>,
}

fn default_app_secret_env() -> String {
    "WECHAT_APP_SECRET".into()
}

fn default_endpoint() -> String {
    "https://api.weixin.qq.com".into()
}

/// `errcode`s meaning the access token is invalid or not the latest
/// (40001), invalid (40014) or expired (42001).
const TOKEN_ERRORS: &[i64] = &[40001, 40014, 42001];

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(name: &str, config: &Config) -> Result<http::Connection, Vec<Invalid>> {
    let mut problems = Problems::default();
    if config.app_id.trim().is_empty() {
        problems.push(Invalid::new(
            "app_id",
            "app_id is empty: copy the AppID from the Official Account's 设置与开发 → 基本配置",
            "app_id 为空：请从公众号后台的 设置与开发 → 基本配置 复制 AppID",
        ));
    }
    if config.templates.is_empty() {
        problems.push(Invalid::new(
            "templates",
            format!(
                "no templates: map each recall template to the account's template, e.g. [senders.{name}.templates.welcome_back] template_id = \"...\""
            ),
            format!(
                "没有模板：请把每个 recall 模板映射到公众号的模板，例如 [senders.{name}.templates.welcome_back] template_id = \"...\""
            ),
        ));
    }
    for (recall, template) in &config.templates {
        if template.template_id.trim().is_empty() {
            problems.push(Invalid::new(
                format!("templates.{recall}.template_id"),
                format!("templates.{recall}.template_id is empty"),
                format!("templates.{recall}.template_id 为空：请填写公众号模板库中的模板ID"),
            ));
        }
        if let Some(url) = &template.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problems.push(Invalid::new(
                format!("templates.{recall}.url"),
                format!("templates.{recall}.url `{url}` must start with https:// or http://"),
                format!("templates.{recall}.url `{url}` 应以 https:// 或 http:// 开头"),
            ));
        }
    }
    let connection = http::connection(
        &mut problems,
        &config.endpoint,
        "https://api.weixin.qq.com",
        &config.timeout,
    );
    problems.finish(connection)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(OfficialSender::new(name, config, ctx)?))
}

pub struct OfficialSender {
    name: String,
    app: App,
    templates: BTreeMap<String, TemplateConfig>,
}

impl OfficialSender {
    /// Checks the settings and reads the secret; no network I/O.
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<Self, BuildError> {
        let connection = validate(name, config).map_err(|p| BuildError::invalid(name, &p))?;
        let secret = ctx.secret(name, &config.app_secret_env)?;
        let credentials = Credentials::Official {
            app_id: config.app_id.trim().to_string(),
            secret,
        };
        Ok(OfficialSender {
            name: name.to_string(),
            app: App::new(&connection, credentials, TOKEN_ERRORS)
                .map_err(|e| BuildError::new(name, e))?,
            templates: config.templates.clone(),
        })
    }
}

#[async_trait]
impl Sender for OfficialSender {
    fn kind(&self) -> &'static str {
        "wechat_official"
    }

    /// The dispatcher suppresses (or falls back for) a customer without
    /// one before the message gets here.
    fn address_kind(&self, _channel: Channel) -> AddressKind {
        AddressKind::WechatOpenid
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let Some(openid) = AddressKind::WechatOpenid.of(message.recipient) else {
            return SendOutcome::Permanent {
                error: AddressKind::WechatOpenid.missing(),
            };
        };
        let Some(template) = self.templates.get(message.template) else {
            return SendOutcome::Permanent {
                error: format!(
                    "recall template `{}` has no Official Account template: add [senders.{}.templates.{}] template_id = \"...\"",
                    message.template, self.name, message.template
                ),
            };
        };
        let data = match template_data(message.template, message.content.params.as_deref()) {
            Ok(data) => data,
            Err(error) => return SendOutcome::Permanent { error },
        };
        let mut body = json!({
            "touser": openid,
            "template_id": template.template_id,
            "data": data,
            "client_msg_id": format!("recall-{}", message.id),
        });
        if let Some(url) = &template.url {
            body["url"] = json!(url);
        }
        let answer = match self
            .app
            .post(message.now, "/cgi-bin/message/template/send", &body)
            .await
        {
            Ok(answer) => answer,
            Err(e) => return e.outcome("sending the template message"),
        };
        if answer.errcode != 0 {
            return outcome(&answer, message.now);
        }
        let provider_id = match &answer.body["msgid"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => format!("recall-{}", message.id),
        };
        tracing::info!(
            id = message.id,
            to = %mask::address(openid),
            msgid = %provider_id,
            "template message sent"
        );
        SendOutcome::Sent { provider_id }
    }
}

/// `message.params` (a JSON object of strings) as template `data`:
/// `{"name": "王女士"}` → `{"name": {"value": "王女士"}}`.
fn template_data(template: &str, params: Option<&str>) -> Result<Value, String> {
    let Some(params) = params else {
        return Err(format!(
            "recall template `{template}` has no parameters: add templates/wechat/{template}.params.toml with one line per field of the Official Account template"
        ));
    };
    let parsed: Map<String, Value> = serde_json::from_str(params)
        .map_err(|e| format!("the parameters of `{template}` are not a JSON object: {e}"))?;
    if parsed.is_empty() {
        return Err(format!("recall template `{template}` has no parameters"));
    }
    let data: Map<String, Value> = parsed
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (key, json!({ "value": text }))
        })
        .collect();
    Ok(Value::Object(data))
}

/// A `template/send` error as an outcome.
fn outcome(answer: &Answer, now: DateTime<Utc>) -> SendOutcome {
    let what = answer.describe();
    let retry = |error: String, retry_after: Option<Duration>| SendOutcome::Retryable {
        error,
        retry_after,
    };
    let permanent = |error: String| SendOutcome::Permanent { error };
    match answer.errcode {
        43004 => SendOutcome::OptedOut {
            reason: format!("the customer no longer follows the Official Account: {what}"),
        },
        43101 => SendOutcome::OptedOut {
            reason: format!("the customer refuses the Official Account's messages: {what}"),
        },
        -1 => retry(format!("WeChat is busy: {what}"), None),
        // The account's daily quota of template messages: it starts again
        // at midnight China time.
        45009 => retry(
            format!("the Official Account's daily limit is reached: {what}"),
            Some(until_next_midnight_in_china(now)),
        ),
        45011 | 45047 => retry(
            format!("WeChat's rate limit is reached: {what}"),
            Some(Duration::from_secs(60)),
        ),
        code if TOKEN_ERRORS.contains(&code) => retry(
            format!("WeChat rejected a freshly issued access token: {what}"),
            None,
        ),
        // Settings to fix (IP allow-list, permissions), not the message's
        // fault: keep it while someone fixes them.
        40164 | 48001 | 61004 | 89503 => retry(
            format!(
                "WeChat refuses this server or app: {what}; check the account's IP allow-list and its template-message permission"
            ),
            None,
        ),
        40003 => permanent(format!(
            "WeChat does not know the customer's openid for this account: {what}"
        )),
        40036 | 40037 => permanent(format!(
            "the template_id is not one of the account's templates: {what}"
        )),
        47001 | 47003 => permanent(format!(
            "the template's data does not fit the template (check the .params.toml keys and lengths): {what}"
        )),
        43019 => permanent(format!(
            "the Official Account has blacklisted the customer: {what}"
        )),
        _ => permanent(format!("WeChat refused the template message: {what}")),
    }
}

/// From `now` to the next 00:00 in China (UTC+8), at least a minute.
fn until_next_midnight_in_china(now: DateTime<Utc>) -> Duration {
    (china::next_hour(now, 0) - now)
        .to_std()
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_secs(60))
}

#[cfg(test)]
mod tests;
