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

use super::wechat_token::{self, CallError};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, RateLimit, SendOutcome, Sender};

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
    #[serde(
        default = "default_timeout",
        deserialize_with = "wechat_token::duration"
    )]
    pub timeout: Duration,
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

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// WeCom's limit per robot.
pub const ROBOT_LIMIT: RateLimit = RateLimit {
    count: 20,
    per: Duration::from_secs(60),
};

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
        let fail = |message: String| BuildError::new(name, message);
        if config.msgtype == MsgType::Markdown
            && !(config.mentioned_list.is_empty() && config.mentioned_mobile_list.is_empty())
        {
            return Err(fail(
                "mentioned_list and mentioned_mobile_list work with msgtype = \"text\" only; in markdown write <@userid> in the template".into(),
            ));
        }
        wechat_token::check_endpoint(&config.endpoint).map_err(fail)?;
        let client = wechat_token::client(config.timeout).map_err(fail)?;
        let key = webhook_key(&ctx.secret(name, &config.webhook_key_env)?);
        Ok(RobotSender {
            client,
            url: format!(
                "{}/cgi-bin/webhook/send",
                config.endpoint.trim_end_matches('/')
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
        match self.post(&text).await {
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

    async fn post(&self, content: &str) -> Result<(), Failure> {
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
        let answer = wechat_token::call(
            self.client
                .post(&self.url)
                .query(&[("key", self.key.as_str())])
                .json(&body),
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
        if message.content.trim().is_empty() {
            return SendOutcome::Permanent {
                error: "the message text is empty".into(),
            };
        }
        let max = self.msgtype.max_bytes();
        if message.content.len() > max {
            return SendOutcome::Permanent {
                error: format!(
                    "the message text is {} bytes; a WeCom robot {} message takes at most {max}",
                    message.content.len(),
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
        match self.post(message.content).await {
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
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;
    use crate::testing::{Reply, TestServer};

    const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn config(url: &str) -> Config {
        Config {
            webhook_key_env: default_webhook_key_env(),
            msgtype: MsgType::Text,
            mentioned_list: Vec::new(),
            mentioned_mobile_list: Vec::new(),
            endpoint: url.into(),
            timeout: Duration::from_secs(5),
        }
    }

    fn ctx(key: &str) -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "WECOM_ROBOT_KEY".to_string(),
                key.to_string(),
            )])),
            ..Context::default()
        }
    }

    fn robot(config: &Config) -> RobotSender {
        RobotSender::new("staff", config, &ctx(KEY)).unwrap()
    }

    fn outbound<'a>(recipient: &'a Recipient, now: DateTime<Utc>) -> Outbound<'a> {
        Outbound {
            id: 7,
            channel: Channel::Phone,
            rule_id: "r",
            template: "t",
            subject: None,
            content: "新的回访任务：3 位顾客",
            html: None,
            params: None,
            recipient,
            address: "",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now,
        }
    }

    async fn ok_server() -> TestServer {
        TestServer::start(|_, _| Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))).await
    }

    #[tokio::test]
    async fn a_message_is_posted_as_text_with_the_key_in_the_query() {
        let server = ok_server().await;
        let mut config = config(&server.url);
        config.mentioned_list = vec!["@all".into()];
        let recipient = Recipient::default();
        let outcome = robot(&config).send(&outbound(&recipient, now())).await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "robot-7".into()
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path(), "/cgi-bin/webhook/send");
        assert_eq!(requests[0].query(), [("key".to_string(), KEY.to_string())]);
        assert_eq!(
            requests[0].json(),
            json!({"msgtype": "text", "text": {"content": "新的回访任务：3 位顾客", "mentioned_list": ["@all"]}})
        );
    }

    #[tokio::test]
    async fn markdown_robots_post_markdown() {
        let server = ok_server().await;
        let mut config = config(&server.url);
        config.msgtype = MsgType::Markdown;
        robot(&config)
            .notify("**3** new tasks", now())
            .await
            .unwrap();
        assert_eq!(
            server.requests()[0].json(),
            json!({"msgtype": "markdown", "markdown": {"content": "**3** new tasks"}})
        );
    }

    #[tokio::test]
    async fn the_21st_message_in_a_minute_is_deferred_to_the_windows_end() {
        let server = ok_server().await;
        let robot = robot(&config(&server.url));
        let recipient = Recipient::default();
        for second in 0..20 {
            let at = now() + chrono::Duration::seconds(second);
            let outcome = robot.send(&outbound(&recipient, at)).await;
            assert!(
                matches!(outcome, SendOutcome::Sent { .. }),
                "{second}: {outcome:?}"
            );
        }
        let at = now() + chrono::Duration::seconds(30);
        let outcome = robot.send(&outbound(&recipient, at)).await;
        let SendOutcome::Deferred { retry_at, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(retry_at, now() + chrono::Duration::seconds(60));
        assert_eq!(server.requests().len(), 20);
        // Notices share the window.
        let refused = robot.notify("x", at).await.unwrap_err();
        assert_eq!(refused, NotifyError::RateLimited { retry_at });
        // When the first post leaves the window, one more fits.
        let outcome = robot.send(&outbound(&recipient, retry_at)).await;
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
        let outcome = robot.send(&outbound(&recipient, retry_at)).await;
        assert!(
            matches!(outcome, SendOutcome::Deferred { .. }),
            "{outcome:?}"
        );
        assert_eq!(server.requests().len(), 21);
    }

    #[tokio::test]
    async fn the_provider_limit_is_reported_and_its_throttling_retried() {
        let server = TestServer::start(|_, _| {
            Reply::json(
                200,
                json!({"errcode": 45009, "errmsg": "api freq out of limit"}),
            )
        })
        .await;
        let robot = robot(&config(&server.url));
        assert_eq!(robot.default_rate_limit(), Some(ROBOT_LIMIT));
        let recipient = Recipient::default();
        let outcome = robot.send(&outbound(&recipient, now())).await;
        assert_eq!(
            outcome,
            SendOutcome::Retryable {
                error: "the WeCom robot is throttled: errcode 45009 (api freq out of limit)".into(),
                retry_after: Some(Duration::from_secs(60)),
            }
        );
        let err = robot.notify("x", now()).await.unwrap_err();
        assert!(matches!(
            err,
            NotifyError::Refused {
                errcode: 45009,
                retryable: true,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_removed_robot_is_permanent_and_errors_never_show_the_key() {
        let server = TestServer::start(|_, _| {
            Reply::json(
                200,
                json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
            )
        })
        .await;
        let recipient = Recipient::default();
        let outcome = robot(&config(&server.url))
            .send(&outbound(&recipient, now()))
            .await;
        assert!(
            matches!(outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let robot = robot(&config(&url));
        let outcome = robot.send(&outbound(&recipient, now())).await;
        let SendOutcome::Retryable { error, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(!error.contains(KEY), "{error}");
        let err = robot.notify("x", now()).await.unwrap_err().to_string();
        assert!(!err.contains(KEY), "{err}");
    }

    #[tokio::test]
    async fn long_notices_are_cut_but_long_messages_refused() {
        let server = ok_server().await;
        let robot = robot(&config(&server.url));
        let long = "回".repeat(1000);
        robot.notify(&long, now()).await.unwrap();
        let sent = server.requests()[0].json()["text"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(sent.len() <= 2048 && sent.ends_with('…'), "{}", sent.len());
        let recipient = Recipient::default();
        let message = Outbound {
            content: &long,
            ..outbound(&recipient, now())
        };
        assert!(matches!(
            robot.send(&message).await,
            SendOutcome::Permanent { .. }
        ));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn a_missing_key_fails_the_build_naming_the_variable() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::new()),
            ..Context::default()
        };
        let err = RobotSender::new("staff", &config("https://qyapi.weixin.qq.com"), &ctx)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("WECOM_ROBOT_KEY"), "{err}");
    }

    #[test]
    fn the_key_may_be_given_as_the_whole_webhook_address() {
        assert_eq!(
            webhook_key(&format!(
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
            )),
            KEY
        );
        assert_eq!(webhook_key(KEY), KEY);
    }

    #[test]
    fn config_keys_are_checked() {
        let parsed: Config = toml::from_str("msgtype = \"markdown\"\n").unwrap();
        assert_eq!(parsed.msgtype, MsgType::Markdown);
        assert_eq!(parsed.webhook_key_env, "WECOM_ROBOT_KEY");
        assert!(toml::from_str::<Config>("msgtype = \"news\"\n").is_err());
        assert!(toml::from_str::<Config>("key = \"abc\"\n").is_err());
        let mut mentions_in_markdown = config("https://qyapi.weixin.qq.com");
        mentions_in_markdown.msgtype = MsgType::Markdown;
        mentions_in_markdown.mentioned_list = vec!["zhangsan".into()];
        assert!(RobotSender::new("staff", &mentions_in_markdown, &ctx(KEY)).is_err());
    }
}
