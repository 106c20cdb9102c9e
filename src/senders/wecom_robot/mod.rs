//! The `wecom_robot` sender: a WeCom group robot (群机器人) webhook, for
//! notices to the clinic's staff — never to customers.
//!
//! Each message is posted as `text` or `markdown` to
//! `/cgi-bin/webhook/send?key=<key>`; the message's address is not used.
//! Other modules (phone tasks) post staff notices through
//! [`RobotSender::notify`], which shares the sender's rate window.
//!
//! WeCom takes at most 20 messages a minute per robot. Besides reporting
//! that as its [`Sender::default_rate_limit`], the sender keeps a sliding
//! window of the last minute's posts (timed by `message.now`, never the wall
//! clock) and answers [`SendOutcome::Deferred`] until the window has room,
//! so a burst never reaches WeCom's own throttling.
//!
//! The webhook key is a secret: it lives only in the request URL, and errors
//! are stripped of URLs. Message text is never logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::kit::{self, http};
use super::wechat::{self, CallError};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::model::Channel;
use crate::config::RateLimit;
use crate::dispatch::sender::{AddressKind, Outbound, SendOutcome, Sender};

/// `[senders.<name>]` with `kind = "wecom_robot"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Environment variable holding the robot's webhook key (the `key=` part
    /// of its webhook address; the whole address is accepted too).
    #[serde(default = "default_webhook_key_env")]
    pub webhook_key_env: String,
    /// `text` (plain, can @-mention) or `markdown` (WeCom's markdown subset).
    #[serde(default)]
    pub msgtype: MsgType,
    /// Staff userids to @-mention in text messages; `"@all"` mentions
    /// everyone in the group.
    #[serde(default)]
    pub mentioned_list: Vec<String>,
    /// Staff mobile numbers to @-mention in text messages.
    #[serde(default)]
    pub mentioned_mobile_list: Vec<String>,
    /// The WeCom API address; tests point it at a local server.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one HTTP call to WeCom may take.
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
}

/// How the robot's messages are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    #[default]
    Text,
    Markdown,
}

impl MsgType {
    fn as_str(self) -> &'static str {
        match self {
            MsgType::Text => "text",
            MsgType::Markdown => "markdown",
        }
    }

    /// The most bytes WeCom takes in `content`.
    fn max_bytes(self) -> usize {
        match self {
            MsgType::Text => 2048,
            MsgType::Markdown => 4096,
        }
    }
}

fn default_webhook_key_env() -> String {
    "WECOM_ROBOT_KEY".into()
}

fn default_endpoint() -> String {
    "https://qyapi.weixin.qq.com".into()
}

/// WeCom's limit per robot.
pub const ROBOT_LIMIT: RateLimit = RateLimit {
    count: 20,
    per: Duration::from_secs(60),
};

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(config: &Config) -> Result<http::Connection, Vec<Invalid>> {
    let mut problems = Problems::default();
    if config.msgtype == MsgType::Markdown
        && !(config.mentioned_list.is_empty() && config.mentioned_mobile_list.is_empty())
    {
        problems.push(
            Invalid::new(
                "msgtype",
                "mentioned_list and mentioned_mobile_list work with msgtype = \"text\" only; in markdown write <@userid> in the template",
                "mentioned_list 和 mentioned_mobile_list 只适用于 msgtype = \"text\"；markdown 消息请在模板里写 <@userid>",
            ),
        );
    }
    let connection = http::connection(
        &mut problems,
        &config.endpoint,
        "https://qyapi.weixin.qq.com",
        &config.timeout,
    );
    problems.finish(connection)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(RobotSender::new(name, config, ctx)?))
}

/// Why a staff notice was not posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The robot's 20-a-minute window is full; post again at `retry_at`.
    #[error("the robot's limit of 20 messages a minute is reached; try again at {retry_at}")]
    RateLimited { retry_at: DateTime<Utc> },
    /// WeCom answered with an error (`retryable` for throttling and outages).
    #[error("WeCom refused the notice: errcode {errcode} ({errmsg})")]
    Refused {
        errcode: i64,
        errmsg: String,
        retryable: bool,
    },
    /// WeCom could not be reached.
    #[error("cannot reach WeCom: {0}")]
    Unreachable(String),
}

/// A WeCom group robot. Build it with [`RobotSender::new`] to keep the
/// concrete type (for [`RobotSender::notify`]); an `Arc<RobotSender>` is
/// also an `Arc<dyn Sender>`, and both uses share one rate window.
pub struct RobotSender {
    client: reqwest::Client,
    /// The client's timeout, named in its errors.
    timeout: Duration,
    /// `<endpoint>/cgi-bin/webhook/send`, without the key.
    url: String,
    key: String,
    msgtype: MsgType,
    mentioned_list: Vec<String>,
    mentioned_mobile_list: Vec<String>,
    /// When the posts of the last minute were made, oldest first.
    window: Mutex<VecDeque<DateTime<Utc>>>,
}

/// A post that did not go through.
enum Failure {
    Call(CallError),
    Refused(i64, String),
}

impl RobotSender {
    /// Checks the settings and reads the key; no network I/O.
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<Self, BuildError> {
        let connection = validate(config).map_err(|p| BuildError::invalid(name, &p))?;
        let client = kit::client(connection.timeout).map_err(|e| BuildError::new(name, e))?;
        let secret = ctx.secret(name, &config.webhook_key_env)?;
        let key = webhook_key(&secret);
        Ok(RobotSender {
            client,
            timeout: connection.timeout,
            url: format!(
                "{}/cgi-bin/webhook/send",
                connection.endpoint.as_str().trim_end_matches('/')
            ),
            key,
            msgtype: config.msgtype,
            mentioned_list: config.mentioned_list.clone(),
            mentioned_mobile_list: config.mentioned_mobile_list.clone(),
            window: Mutex::new(VecDeque::new()),
        })
    }

    /// Posts a notice to the robot's group, e.g. "3 new phone tasks".
    /// Text longer than WeCom takes is cut (with "…"). Shares the 20-a-minute
    /// window with [`Sender::send`]; `now` is the caller's clock.
    pub async fn notify(&self, text: &str, now: DateTime<Utc>) -> Result<(), NotifyError> {
        let text = truncate(text, self.msgtype.max_bytes());
        self.reserve(now)
            .map_err(|retry_at| NotifyError::RateLimited { retry_at })?;
        match self.post(&text, now).await {
            Ok(()) => Ok(()),
            Err(Failure::Call(e)) => Err(NotifyError::Unreachable(e.to_string())),
            Err(Failure::Refused(errcode, errmsg)) => Err(NotifyError::Refused {
                retryable: is_retryable(errcode),
                errcode,
                errmsg,
            }),
        }
    }

    /// Takes a place in the window at `now`, or says when one frees up.
    fn reserve(&self, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let per = chrono::Duration::from_std(ROBOT_LIMIT.per).expect("a minute fits");
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.retain(|at| *at > now - per);
        if window.len() >= ROBOT_LIMIT.count as usize {
            let oldest = window.iter().min().copied().unwrap_or(now);
            return Err(oldest + per);
        }
        window.push_back(now);
        Ok(())
    }

    /// Posts `content`; `now` is what a `Retry-After` date is measured from.
    async fn post(&self, content: &str, now: DateTime<Utc>) -> Result<(), Failure> {
        let mut inner = json!({ "content": content });
        if self.msgtype == MsgType::Text {
            if !self.mentioned_list.is_empty() {
                inner["mentioned_list"] = json!(self.mentioned_list);
            }
            if !self.mentioned_mobile_list.is_empty() {
                inner["mentioned_mobile_list"] = json!(self.mentioned_mobile_list);
            }
        }
        let mut body = json!({ "msgtype": self.msgtype.as_str() });
        body[self.msgtype.as_str()] = inner;
        let answer = wechat::call(
            self.client
                .post(&self.url)
                .query(&[("key", self.key.as_str())])
                .json(&body),
            now,
            self.timeout,
        )
        .await
        .map_err(Failure::Call)?;
        match answer.errcode {
            0 => Ok(()),
            code => Err(Failure::Refused(code, answer.errmsg)),
        }
    }
}

#[async_trait]
impl Sender for RobotSender {
    fn kind(&self) -> &'static str {
        "wecom_robot"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let content = message.content.body.as_str();
        if content.trim().is_empty() {
            return SendOutcome::Permanent {
                error: "the message text is empty".into(),
            };
        }
        let max = self.msgtype.max_bytes();
        if content.len() > max {
            return SendOutcome::Permanent {
                error: format!(
                    "the message text is {} bytes; a WeCom robot {} message takes at most {max}",
                    content.len(),
                    self.msgtype.as_str()
                ),
            };
        }
        if let Err(retry_at) = self.reserve(message.now) {
            return SendOutcome::Deferred {
                retry_at,
                reason: "the robot's limit of 20 messages a minute is reached".into(),
            };
        }
        match self.post(content, message.now).await {
            Ok(()) => {
                tracing::info!(id = message.id, "posted to the WeCom robot");
                SendOutcome::Sent {
                    provider_id: format!("robot-{}", message.id),
                }
            }
            Err(Failure::Call(e)) if e.is_retryable() => SendOutcome::Retryable {
                error: format!("posting to the WeCom robot: {e}"),
                retry_after: e.retry_after(),
            },
            Err(Failure::Call(e)) => SendOutcome::Permanent {
                error: format!("posting to the WeCom robot: {e}"),
            },
            Err(Failure::Refused(code, errmsg)) => refused(code, &errmsg),
        }
    }

    fn default_rate_limit(&self) -> Option<RateLimit> {
        Some(ROBOT_LIMIT)
    }

    /// The robot posts to a staff group: no customer address is needed.
    fn address_kind(&self, _channel: Channel) -> AddressKind {
        AddressKind::Unaddressed
    }
}

fn is_retryable(errcode: i64) -> bool {
    matches!(errcode, -1 | 45009 | 45033)
}

fn refused(errcode: i64, errmsg: &str) -> SendOutcome {
    let what = format!("errcode {errcode} ({errmsg})");
    match errcode {
        45009 | 45033 => SendOutcome::Retryable {
            error: format!("the WeCom robot is throttled: {what}"),
            retry_after: Some(ROBOT_LIMIT.per),
        },
        -1 => SendOutcome::Retryable {
            error: format!("WeCom is busy: {what}"),
            retry_after: None,
        },
        93000 | 93004 | 93008 => SendOutcome::Permanent {
            error: format!(
                "the robot's webhook key is wrong, or the robot was removed or disabled: {what}"
            ),
        },
        _ => SendOutcome::Permanent {
            error: format!("the WeCom robot refused the message: {what}"),
        },
    }
}

/// The key from a secret that may be the key or the whole webhook address.
fn webhook_key(secret: &str) -> String {
    let secret = secret.trim();
    match secret.split_once("key=") {
        Some((_, rest)) => rest.split('&').next().unwrap_or_default().to_string(),
        None => secret.to_string(),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in "…"
/// when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = "…";
    let mut end = max.saturating_sub(ellipsis.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

#[cfg(test)]
mod tests;
