//! The `wecom` sender: WeCom (企业微信) customer-contact messages.
//!
//! A message becomes a group-message task (`externalcontact/add_msg_template`,
//! `chat_type = "single"`) for one customer, identified by their WeCom
//! `external_userid`. WeCom does not deliver it: it asks the staff member
//! who owns the customer to confirm it in the WeCom client. So a send answers
//! [`SendOutcome::Awaiting`], never `Sent`, and [`Sender::poll`] later asks
//! WeCom what became of the task (`get_groupmsg_task`, then
//! `get_groupmsg_send_result` for the staff members who acted).
//!
//! The provider id is `<msgid>:<unix seconds when the task was created>`, so
//! a poll knows the task's age without a database: a task nobody confirmed
//! within `confirm_within` is cancelled (`cancel_groupmsg_send`) and counts as
//! failed, so a stale message cannot go out days later.
//!
//! WeCom lets a company send each customer at most 4 group messages per
//! calendar month. When WeCom will not take a task for the customer (41048,
//! or the customer in `fail_list`), the sender asks `externalcontact/get`
//! why: still a contact → the monthly limit, deferred to the first day of
//! next month (China time); no longer anyone's contact → opted out.
//!
//! This module never logs the message text, the secret or the token;
//! customer ids go through [`mask::address`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::wechat_token::{self, AccessToken, Answer, ApiError, App, Credentials};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, PollOutcome, SendOutcome, Sender};
use crate::mask;
use crate::store::outbox::Recipient;

/// `[senders.<name>]` with `kind = "wecom"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The company's WeCom id (企业ID, `ww...`), shown under 我的企业 in the
    /// admin console. Not a secret.
    pub corp_id: String,
    /// Environment variable holding the secret of an app allowed to use
    /// customer contact: the 客户联系 secret, or a self-built app's secret
    /// once the app is listed under 客户联系 → 可调用应用.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// The staff userid whose WeCom gets every task. Leave unset to let
    /// WeCom hand each task to the staff member(s) who have the customer as
    /// a contact, which is what a clinic with several consultants wants.
    #[serde(default)]
    pub sender_userid: Option<String>,
    /// How long staff have to confirm a task; after that the task is
    /// cancelled and the message counts as failed, so a stale message never
    /// goes out late.
    #[serde(
        default = "default_confirm_within",
        deserialize_with = "wechat_token::duration"
    )]
    pub confirm_within: Duration,
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

fn default_secret_env() -> String {
    "WECOM_SECRET".into()
}

fn default_confirm_within() -> Duration {
    Duration::from_secs(3 * 86_400)
}

fn default_endpoint() -> String {
    "https://qyapi.weixin.qq.com".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `errcode`s meaning the access token is invalid (40014), missing (41001)
/// or expired (42001).
const TOKEN_ERRORS: &[i64] = &[40014, 41001, 42001];

/// The most bytes WeCom takes in `text.content` of a group message.
const MAX_CONTENT_BYTES: usize = 4000;

/// How many members or customers one result page asks for (WeCom's maximum).
const PAGE: u32 = 1000;

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(WecomSender::new(name, config, ctx)?))
}

pub struct WecomSender {
    app: App,
    sender_userid: Option<String>,
    confirm_within: Duration,
}

impl WecomSender {
    /// Checks the settings and reads the secret; no network I/O.
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<Self, BuildError> {
        let fail = |message: String| BuildError::new(name, message);
        if config.corp_id.trim().is_empty() {
            return Err(fail(
                "corp_id is empty: copy it from the WeCom admin console (我的企业 → 企业ID)".into(),
            ));
        }
        if let Some(sender) = &config.sender_userid
            && sender.trim().is_empty()
        {
            return Err(fail(
                "sender_userid is empty: remove it or name a staff member's userid".into(),
            ));
        }
        if config.confirm_within.is_zero() {
            return Err(fail("confirm_within must be more than zero".into()));
        }
        wechat_token::check_endpoint(&config.endpoint).map_err(fail)?;
        let client = wechat_token::client(config.timeout).map_err(fail)?;
        let secret = ctx.secret(name, &config.secret_env)?;
        Ok(WecomSender {
            app: App::new(
                client,
                &config.endpoint,
                Credentials::WeCom {
                    corp_id: config.corp_id.trim().to_string(),
                    secret,
                },
                TOKEN_ERRORS,
            ),
            sender_userid: config.sender_userid.clone(),
            confirm_within: config.confirm_within,
        })
    }

    /// POSTs `body` to `path` with the access token.
    async fn post(&self, now: DateTime<Utc>, path: &str, body: &Value) -> Result<Answer, ApiError> {
        let url = self.app.url(path);
        self.app
            .call(now, |token: &AccessToken| {
                self.app
                    .client
                    .post(&url)
                    .query(&[("access_token", token.as_str())])
                    .json(body)
            })
            .await
    }

    /// WeCom would not create a task for the customer (`why`): asks whether
    /// the customer is still a contact, to tell the monthly limit from a
    /// customer who left.
    async fn not_sendable(&self, now: DateTime<Utc>, customer: &str, why: &str) -> SendOutcome {
        let url = self.app.url("/cgi-bin/externalcontact/get");
        let answer = self
            .app
            .call(now, |token: &AccessToken| {
                self.app.client.get(&url).query(&[
                    ("access_token", token.as_str()),
                    ("external_userid", customer),
                ])
            })
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                return SendOutcome::Retryable {
                    error: format!(
                        "WeCom would not create the task ({why}), and asking why failed: {e}"
                    ),
                    retry_after: e.retry_after(),
                };
            }
        };
        match answer.errcode {
            0 => {}
            84061 => {
                return SendOutcome::OptedOut {
                    reason: format!(
                        "the customer is no longer a WeCom contact of the clinic ({why})"
                    ),
                };
            }
            40096 | 41056 => {
                return SendOutcome::Permanent {
                    error: format!(
                        "WeCom does not know the customer's external_userid {} ({why})",
                        mask::address(customer)
                    ),
                };
            }
            _ => {
                return SendOutcome::Retryable {
                    error: format!(
                        "WeCom would not create the task ({why}), and asking why failed: {}",
                        answer.describe()
                    ),
                    retry_after: None,
                };
            }
        }
        let staff: Vec<&str> = answer.body["follow_user"]
            .as_array()
            .map(|list| list.iter().filter_map(|f| f["userid"].as_str()).collect())
            .unwrap_or_default();
        if staff.is_empty() {
            return SendOutcome::OptedOut {
                reason: format!(
                    "the customer is no longer a WeCom contact of any staff member ({why})"
                ),
            };
        }
        if let Some(sender) = &self.sender_userid
            && !staff.contains(&sender.as_str())
        {
            return SendOutcome::Permanent {
                error: format!(
                    "the customer is a WeCom contact of {} but not of sender_userid `{sender}` ({why})",
                    staff.join(", ")
                ),
            };
        }
        SendOutcome::Deferred {
            retry_at: start_of_next_month_in_china(now),
            reason: format!(
                "WeCom's monthly limit is reached: a customer receives at most 4 group messages from the company per calendar month ({why})"
            ),
        }
    }

    /// Cancels an unconfirmed task that is past `confirm_within`.
    async fn expire(&self, now: DateTime<Utc>, task: &TaskId) -> PollOutcome {
        let waited = humantime::format_duration(self.confirm_within);
        match self
            .post(
                now,
                "/cgi-bin/externalcontact/cancel_groupmsg_send",
                &json!({ "msgid": task.msgid }),
            )
            .await
        {
            Ok(answer) if answer.errcode == 0 => PollOutcome::Failed {
                error: format!(
                    "staff did not confirm the WeCom task within {waited}; the task was cancelled"
                ),
            },
            Ok(answer) => PollOutcome::Failed {
                error: format!(
                    "staff did not confirm the WeCom task within {waited}; cancelling it failed ({}), so cancel it in the WeCom admin console",
                    answer.describe()
                ),
            },
            Err(e) => PollOutcome::Unknown {
                error: format!(
                    "the WeCom task is past its deadline but cannot be cancelled yet: {e}"
                ),
            },
        }
    }
}

#[async_trait]
impl Sender for WecomSender {
    fn kind(&self) -> &'static str {
        "wecom"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let Some(customer) = external_userid(message.recipient) else {
            return SendOutcome::Permanent {
                error: "the customer has no WeCom external_userid on record (wecom_external_userid); the wecom sender cannot use a WeChat openid".into(),
            };
        };
        if message.content.trim().is_empty() {
            return SendOutcome::Permanent {
                error: "the message text is empty".into(),
            };
        }
        if message.content.len() > MAX_CONTENT_BYTES {
            return SendOutcome::Permanent {
                error: format!(
                    "the message text is {} bytes; WeCom takes at most {MAX_CONTENT_BYTES}",
                    message.content.len()
                ),
            };
        }
        let mut body = json!({
            "chat_type": "single",
            "external_userid": [customer],
            "text": { "content": message.content },
        });
        if let Some(sender) = &self.sender_userid {
            body["sender"] = json!(sender);
        }
        let answer = match self
            .post(
                message.now,
                "/cgi-bin/externalcontact/add_msg_template",
                &body,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return api_failure("creating the WeCom task", &e),
        };
        match answer.errcode {
            0 => {}
            41048 => {
                return self
                    .not_sendable(message.now, customer, "41048: no customer to send to")
                    .await;
            }
            84061 => {
                return self
                    .not_sendable(message.now, customer, "84061: no contact relation")
                    .await;
            }
            _ => return add_error(&answer, self.sender_userid.as_deref()),
        }
        let in_fail_list = answer.body["fail_list"]
            .as_array()
            .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(customer)));
        if in_fail_list {
            return self
                .not_sendable(
                    message.now,
                    customer,
                    "WeCom listed the customer in fail_list",
                )
                .await;
        }
        let Some(msgid) = answer.body["msgid"].as_str().filter(|m| !m.is_empty()) else {
            return SendOutcome::Permanent {
                error: "WeCom answered ok without a msgid; check the admin console before sending again".into(),
            };
        };
        tracing::info!(
            id = message.id,
            to = %mask::address(customer),
            msgid,
            "WeCom task created; waiting for staff to confirm it"
        );
        SendOutcome::Awaiting {
            provider_id: TaskId {
                msgid: msgid.to_string(),
                created: Some(message.now),
            }
            .to_string(),
        }
    }

    async fn poll(&self, provider_id: &str, message: &Outbound<'_>) -> PollOutcome {
        let task = TaskId::parse(provider_id);
        let now = message.now;
        let customer = external_userid(message.recipient);
        let answer = match self
            .post(
                now,
                "/cgi-bin/externalcontact/get_groupmsg_task",
                &json!({ "msgid": task.msgid, "limit": PAGE }),
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                return PollOutcome::Unknown {
                    error: format!("cannot ask WeCom about the task: {e}"),
                };
            }
        };
        let mut statuses = Vec::new();
        match answer.errcode {
            0 => {}
            // The task is still being handed out to staff.
            41063 => statuses.push(Status::Unsent),
            41047 => {
                return PollOutcome::Failed {
                    error: format!("WeCom does not know the task {}", task.msgid),
                };
            }
            _ => {
                return PollOutcome::Unknown {
                    error: format!(
                        "WeCom would not say how the task went: {}",
                        answer.describe()
                    ),
                };
            }
        }
        let members: Vec<(String, i64)> = answer.body["task_list"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|t| {
                        Some((t["userid"].as_str()?.to_string(), t["status"].as_i64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (userid, task_status) in members {
            if task_status == 0 {
                // This staff member has not confirmed yet.
                statuses.push(Status::Unsent);
                continue;
            }
            let answer = match self
                .post(
                    now,
                    "/cgi-bin/externalcontact/get_groupmsg_send_result",
                    &json!({ "msgid": task.msgid, "userid": userid, "limit": PAGE }),
                )
                .await
            {
                Ok(answer) if answer.errcode == 0 => answer,
                Ok(answer) => {
                    return PollOutcome::Unknown {
                        error: format!(
                            "WeCom would not give the task's results: {}",
                            answer.describe()
                        ),
                    };
                }
                Err(e) => {
                    return PollOutcome::Unknown {
                        error: format!("cannot ask WeCom for the task's results: {e}"),
                    };
                }
            };
            let entries = answer.body["send_list"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            statuses.extend(
                entries
                    .iter()
                    .filter(|e| customer.is_none() || e["external_userid"].as_str() == customer)
                    .filter_map(|e| e["status"].as_i64())
                    .map(Status::from_code),
            );
        }
        if statuses.contains(&Status::Sent) {
            return PollOutcome::Sent;
        }
        if statuses.contains(&Status::Unsent) || statuses.is_empty() {
            return match task.created {
                Some(created) if now >= created + chrono_duration(self.confirm_within) => {
                    self.expire(now, &task).await
                }
                _ => PollOutcome::Pending,
            };
        }
        if statuses.contains(&Status::LimitReached) {
            return PollOutcome::Failed {
                error: "WeCom did not deliver: the customer already received this month's group messages (WeCom allows 4 per customer per calendar month)".into(),
            };
        }
        PollOutcome::OptedOut {
            reason: "the customer is no longer a WeCom contact of the staff member (not a friend)"
                .into(),
        }
    }
}

/// A customer's status in `get_groupmsg_send_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// 0: not sent yet.
    Unsent,
    /// 1: sent.
    Sent,
    /// 2: failed, the customer is not a contact (friend) of the staff member.
    NotAContact,
    /// 3: failed, the customer already received other group messages (the
    /// monthly limit).
    LimitReached,
}

impl Status {
    fn from_code(code: i64) -> Status {
        match code {
            1 => Status::Sent,
            2 => Status::NotAContact,
            3 => Status::LimitReached,
            _ => Status::Unsent,
        }
    }
}

/// What a send's provider id stands for: `<msgid>:<created unix seconds>`.
/// A bare msgid is accepted too (then no deadline applies).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskId {
    msgid: String,
    created: Option<DateTime<Utc>>,
}

impl TaskId {
    fn parse(text: &str) -> TaskId {
        if let Some((msgid, seconds)) = text.rsplit_once(':')
            && let Some(created) = seconds
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
        {
            return TaskId {
                msgid: msgid.to_string(),
                created: Some(created),
            };
        }
        TaskId {
            msgid: text.to_string(),
            created: None,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.created {
            Some(created) => write!(f, "{}:{}", self.msgid, created.timestamp()),
            None => f.write_str(&self.msgid),
        }
    }
}

fn external_userid(recipient: &Recipient) -> Option<&str> {
    recipient
        .wecom_external_userid
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// 00:00 on the first day of the next calendar month in China (UTC+8, no
/// daylight saving), when WeCom's monthly counts start again.
fn start_of_next_month_in_china(now: DateTime<Utc>) -> DateTime<Utc> {
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let today = now.with_timezone(&china).date_naive();
    let (year, month) = if today.month() == 12 {
        (today.year() + 1, 1)
    } else {
        (today.year(), today.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .and_then(|midnight| china.from_local_datetime(&midnight).single())
        .map(|start| start.with_timezone(&Utc))
        .unwrap_or(now + chrono::Duration::days(31))
}

/// A call that got no WeCom answer.
fn api_failure(what: &str, error: &ApiError) -> SendOutcome {
    if error.is_retryable() {
        SendOutcome::Retryable {
            error: format!("{what}: {error}"),
            retry_after: error.retry_after(),
        }
    } else {
        SendOutcome::Permanent {
            error: format!("{what}: {error}"),
        }
    }
}

/// An `add_msg_template` error other than "no customer to send to".
fn add_error(answer: &Answer, sender: Option<&str>) -> SendOutcome {
    let what = answer.describe();
    let retry = |error: String, retry_after: Option<Duration>| SendOutcome::Retryable {
        error,
        retry_after,
    };
    match answer.errcode {
        -1 | 6000 => retry(format!("WeCom is busy: {what}"), None),
        45009 | 45033 => retry(
            format!("WeCom's call limit is reached: {what}"),
            Some(Duration::from_secs(60)),
        ),
        code if TOKEN_ERRORS.contains(&code) => retry(
            format!("WeCom rejected a freshly issued access token: {what}"),
            None,
        ),
        // The settings are wrong, not the message: keep it while someone
        // fixes them (the dispatcher gives up after `give_up_after`).
        40003 | 41009 | 46004 | 60111 => retry(
            format!(
                "sender_userid `{}` is not a WeCom staff member: {what}",
                sender.unwrap_or_default()
            ),
            None,
        ),
        48002 | 48004 | 48006 | 50002 | 60011 | 60020 | 60021 | 301002 | 610004 => retry(
            format!(
                "WeCom refuses this app: {what}; check that the secret's app may use customer contact, the trusted IPs and the staff member's scope"
            ),
            None,
        ),
        40096 | 41035 | 41056 => SendOutcome::Permanent {
            error: format!("WeCom does not accept the customer's external_userid: {what}"),
        },
        40058 | 40063 | 44004 | 45002 => SendOutcome::Permanent {
            error: format!("WeCom refuses the message: {what}"),
        },
        _ => SendOutcome::Permanent {
            error: format!("WeCom refused the task: {what}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::testing::{Recorded, Reply, TestServer};

    const SECRET: &str = "corp-s3cret";
    const CUSTOMER: &str = "wmCUSTOMER01";

    fn now() -> DateTime<Utc> {
        // 2026-11-28 12:00 in China.
        DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn config(url: &str) -> Config {
        Config {
            corp_id: "wwCORP".into(),
            secret_env: default_secret_env(),
            sender_userid: Some("zhangsan".into()),
            confirm_within: default_confirm_within(),
            endpoint: url.into(),
            timeout: Duration::from_secs(5),
        }
    }

    fn ctx() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "WECOM_SECRET".to_string(),
                SECRET.to_string(),
            )])),
            ..Context::default()
        }
    }

    fn sender(url: &str) -> WecomSender {
        WecomSender::new("wecom", &config(url), &ctx()).unwrap()
    }

    fn recipient() -> Recipient {
        Recipient {
            external_id: "C1".into(),
            wecom_external_userid: Some(CUSTOMER.into()),
            wechat_openid: Some("oOPENID".into()),
            ..Recipient::default()
        }
    }

    fn outbound<'a>(recipient: &'a Recipient, now: DateTime<Utc>) -> Outbound<'a> {
        Outbound {
            id: 42,
            channel: Channel::Wechat,
            rule_id: "r",
            template: "welcome_back",
            subject: None,
            content: "王女士您好，好久不见",
            html: None,
            params: None,
            recipient,
            address: CUSTOMER,
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now,
        }
    }

    fn ok(body: Value) -> Reply {
        let mut body = body;
        body["errcode"] = json!(0);
        body["errmsg"] = json!("ok");
        Reply::json(200, body)
    }

    fn error(code: i64) -> Reply {
        Reply::json(200, json!({"errcode": code, "errmsg": "test"}))
    }

    /// Token number `n` (1-based) of the gettoken calls so far.
    fn token_reply(requests_before: &[Recorded]) -> Reply {
        let n = requests_before
            .iter()
            .filter(|r| r.path() == "/cgi-bin/gettoken")
            .count()
            + 1;
        ok(json!({"access_token": format!("TOKEN{n}"), "expires_in": 7200}))
    }

    /// A server that answers gettoken with TOKEN1, TOKEN2... and every other
    /// path with `respond(request)`.
    async fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> TestServer {
        let seen = std::sync::Mutex::new(Vec::<Recorded>::new());
        TestServer::start(move |request, _| {
            let mut seen = seen.lock().unwrap();
            let reply = if request.path() == "/cgi-bin/gettoken" {
                token_reply(&seen)
            } else {
                respond(request)
            };
            seen.push(request.clone());
            reply
        })
        .await
    }

    fn token_of(request: &Recorded) -> String {
        request
            .query()
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    fn count(server: &TestServer, path: &str) -> usize {
        server
            .requests()
            .iter()
            .filter(|r| r.path() == path)
            .count()
    }

    fn task_created() -> Reply {
        ok(json!({"fail_list": [], "msgid": "msgTASK1"}))
    }

    #[tokio::test]
    async fn a_send_creates_a_task_for_the_customer_and_awaits_staff() {
        let server = start(|_| task_created()).await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        assert_eq!(
            outcome,
            SendOutcome::Awaiting {
                provider_id: format!("msgTASK1:{}", now().timestamp())
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path(), "/cgi-bin/gettoken");
        assert_eq!(
            requests[0].query(),
            [
                ("corpid".to_string(), "wwCORP".to_string()),
                ("corpsecret".to_string(), SECRET.to_string())
            ]
        );
        assert_eq!(requests[1].method, "POST");
        assert_eq!(
            requests[1].path(),
            "/cgi-bin/externalcontact/add_msg_template"
        );
        assert_eq!(
            requests[1].query(),
            [("access_token".to_string(), "TOKEN1".to_string())]
        );
        assert_eq!(
            requests[1].json(),
            json!({
                "chat_type": "single",
                "external_userid": [CUSTOMER],
                "text": {"content": "王女士您好，好久不见"},
                "sender": "zhangsan",
            })
        );
    }

    #[tokio::test]
    async fn without_a_sender_userid_wecom_picks_the_customers_staff() {
        let server = start(|_| task_created()).await;
        let mut config = config(&server.url);
        config.sender_userid = None;
        let sender = WecomSender::new("wecom", &config, &ctx()).unwrap();
        let recipient = recipient();
        sender.send(&outbound(&recipient, now())).await;
        let body = server.requests()[1].json();
        assert!(body.get("sender").is_none(), "{body}");
    }

    #[tokio::test]
    async fn one_token_serves_many_sends_until_it_nears_expiry() {
        let server = start(|_| task_created()).await;
        let sender = sender(&server.url);
        let recipient = recipient();
        for minutes in [0, 1, 60, 114] {
            let at = now() + chrono::Duration::minutes(minutes);
            assert!(matches!(
                sender.send(&outbound(&recipient, at)).await,
                SendOutcome::Awaiting { .. }
            ));
        }
        assert_eq!(count(&server, "/cgi-bin/gettoken"), 1);
        // 7200 s minus the 5-minute margin: the next send fetches anew.
        let at = now() + chrono::Duration::minutes(115);
        sender.send(&outbound(&recipient, at)).await;
        assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
    }

    #[tokio::test]
    async fn an_expired_token_is_refreshed_once_and_the_call_repeated_once() {
        let server = start(|request| {
            if token_of(request) == "TOKEN1" {
                error(42001)
            } else {
                task_created()
            }
        })
        .await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        assert!(
            matches!(outcome, SendOutcome::Awaiting { .. }),
            "{outcome:?}"
        );
        let paths: Vec<(String, String)> = server
            .requests()
            .iter()
            .map(|r| (r.path().to_string(), token_of(r)))
            .collect();
        let add = "/cgi-bin/externalcontact/add_msg_template".to_string();
        let get = "/cgi-bin/gettoken".to_string();
        assert_eq!(
            paths,
            [
                (get.clone(), String::new()),
                (add.clone(), "TOKEN1".into()),
                (get, String::new()),
                (add, "TOKEN2".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_token_rejected_twice_is_retryable_without_a_third_try() {
        let server = start(|_| error(40014)).await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        let SendOutcome::Retryable { error, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(error.contains("40014"), "{error}");
        assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
        assert_eq!(
            count(&server, "/cgi-bin/externalcontact/add_msg_template"),
            2
        );
    }

    #[tokio::test]
    async fn concurrent_sends_meeting_an_expired_token_share_one_refresh() {
        let server = start(|request| {
            if token_of(request) == "TOKEN1" {
                error(42001)
            } else {
                task_created()
            }
        })
        .await;
        let sender = sender(&server.url);
        let recipient = recipient();
        let message = outbound(&recipient, now());
        let outcomes = tokio::join!(
            sender.send(&message),
            sender.send(&message),
            sender.send(&message),
            sender.send(&message),
            sender.send(&message),
        );
        for outcome in [outcomes.0, outcomes.1, outcomes.2, outcomes.3, outcomes.4] {
            assert!(
                matches!(outcome, SendOutcome::Awaiting { .. }),
                "{outcome:?}"
            );
        }
        assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
        let with_new_token = server
            .requests()
            .iter()
            .filter(|r| token_of(r) == "TOKEN2")
            .count();
        assert_eq!(with_new_token, 5);
    }

    #[tokio::test]
    async fn a_customer_without_a_wecom_id_is_permanent_and_nothing_is_called() {
        let server = start(|_| task_created()).await;
        let recipient = Recipient {
            wecom_external_userid: None,
            ..recipient()
        };
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(error.contains("wecom_external_userid"), "{error}");
        assert!(server.requests().is_empty());
    }

    #[test]
    fn a_missing_secret_fails_the_build_naming_the_variable() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::new()),
            ..Context::default()
        };
        let err = WecomSender::new("wecom", &config("https://qyapi.weixin.qq.com"), &ctx)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("WECOM_SECRET"), "{err}");
    }

    #[test]
    fn config_keys_are_checked() {
        let parsed: Config =
            toml::from_str("corp_id = \"ww1\"\nconfirm_within = \"2d\"\n").unwrap();
        assert_eq!(parsed.confirm_within, Duration::from_secs(2 * 86_400));
        assert_eq!(parsed.endpoint, "https://qyapi.weixin.qq.com");
        assert_eq!(parsed.timeout, Duration::from_secs(10));
        assert!(toml::from_str::<Config>("corp_id = \"ww1\"\nsecret = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("corp_id = \"ww1\"\ntimeout = \"soon\"\n").is_err());
        let empty = Config {
            corp_id: " ".into(),
            ..config("https://qyapi.weixin.qq.com")
        };
        assert!(WecomSender::new("wecom", &empty, &ctx()).is_err());
    }

    /// A customer WeCom would not take (41048), whose contact check answers
    /// `contact`.
    async fn not_sendable_with(contact: Reply) -> (SendOutcome, TestServer) {
        let server = start(move |request| match request.path() {
            "/cgi-bin/externalcontact/add_msg_template" => error(41048),
            "/cgi-bin/externalcontact/get" => contact.clone(),
            _ => error(404),
        })
        .await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        (outcome, server)
    }

    #[tokio::test]
    async fn a_customer_still_in_contact_but_refused_is_deferred_to_next_month() {
        let (outcome, server) =
            not_sendable_with(ok(json!({"follow_user": [{"userid": "zhangsan"}]}))).await;
        let SendOutcome::Deferred { retry_at, reason } = outcome else {
            panic!("{outcome:?}")
        };
        // 2026-12-01 00:00 in China.
        assert_eq!(retry_at.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert!(reason.contains("monthly limit"), "{reason}");
        let check = server
            .requests()
            .into_iter()
            .find(|r| r.path() == "/cgi-bin/externalcontact/get")
            .unwrap();
        assert_eq!(check.method, "GET");
        assert_eq!(
            check.query(),
            [
                ("access_token".to_string(), "TOKEN1".to_string()),
                ("external_userid".to_string(), CUSTOMER.to_string())
            ]
        );
    }

    #[tokio::test]
    async fn a_customer_who_is_no_longer_a_contact_opted_out() {
        let (outcome, _server) = not_sendable_with(error(84061)).await;
        assert!(
            matches!(outcome, SendOutcome::OptedOut { .. }),
            "{outcome:?}"
        );
        let (outcome, _server) = not_sendable_with(ok(json!({"follow_user": []}))).await;
        assert!(
            matches!(outcome, SendOutcome::OptedOut { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_customer_of_another_staff_member_is_permanent_naming_the_sender() {
        let (outcome, _server) =
            not_sendable_with(ok(json!({"follow_user": [{"userid": "lisi"}]}))).await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            error.contains("lisi") && error.contains("zhangsan"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_customer_in_fail_list_is_checked_like_41048() {
        let server = start(|request| match request.path() {
            "/cgi-bin/externalcontact/add_msg_template" => {
                ok(json!({"fail_list": [CUSTOMER], "msgid": "msgTASK1"}))
            }
            _ => error(84061),
        })
        .await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        assert!(
            matches!(outcome, SendOutcome::OptedOut { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn provider_errors_map_to_retry_or_permanent() {
        for (code, retryable) in [
            (-1, true),
            (45009, true),
            (60020, true),
            (40096, false),
            (45002, false),
        ] {
            let server = start(move |_| error(code)).await;
            let recipient = recipient();
            let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
            match outcome {
                SendOutcome::Retryable { ref error, .. } if retryable => {
                    assert!(error.contains(&code.to_string()), "{error}")
                }
                SendOutcome::Permanent { ref error } if !retryable => {
                    assert!(error.contains(&code.to_string()), "{error}")
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn transport_failures_are_retryable_and_never_show_the_secret() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let recipient = recipient();
        let outcome = sender(&url).send(&outbound(&recipient, now())).await;
        let SendOutcome::Retryable { error, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(!error.contains(SECRET), "{error}");

        let server = start(|_| Reply::text(502, "bad gateway")).await;
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        assert!(
            matches!(outcome, SendOutcome::Retryable { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn overlong_text_is_permanent_before_any_call() {
        let server = start(|_| task_created()).await;
        let recipient = recipient();
        let text = "好".repeat(1400);
        let message = Outbound {
            content: &text,
            ..outbound(&recipient, now())
        };
        let outcome = sender(&server.url).send(&message).await;
        assert!(
            matches!(outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );
        assert!(server.requests().is_empty());
    }

    /// Polls a task created at `now()` at time `at`, against a server whose
    /// task list and send results are given.
    async fn poll_with(
        task_list: Value,
        send_list: Value,
        at: DateTime<Utc>,
    ) -> (PollOutcome, TestServer) {
        let server = start(move |request| match request.path() {
            "/cgi-bin/externalcontact/get_groupmsg_task" => ok(json!({"task_list": task_list})),
            "/cgi-bin/externalcontact/get_groupmsg_send_result" => {
                ok(json!({"send_list": send_list}))
            }
            "/cgi-bin/externalcontact/cancel_groupmsg_send" => ok(json!({})),
            _ => error(404),
        })
        .await;
        let recipient = recipient();
        let provider_id = format!("msgTASK1:{}", now().timestamp());
        let outcome = sender(&server.url)
            .poll(&provider_id, &outbound(&recipient, at))
            .await;
        (outcome, server)
    }

    fn result(status: i64) -> Value {
        json!([
            {"external_userid": "wmSOMEONEELSE", "userid": "zhangsan", "status": 1},
            {"external_userid": CUSTOMER, "userid": "zhangsan", "status": status},
        ])
    }

    #[tokio::test]
    async fn poll_maps_every_customer_status() {
        let later = now() + chrono::Duration::hours(1);
        let confirmed = json!([{"userid": "zhangsan", "status": 2}]);
        let (outcome, server) = poll_with(confirmed.clone(), result(1), later).await;
        assert_eq!(outcome, PollOutcome::Sent);
        let requests = server.requests();
        let task = &requests[1];
        assert_eq!(task.path(), "/cgi-bin/externalcontact/get_groupmsg_task");
        assert_eq!(token_of(task), "TOKEN1");
        assert_eq!(task.json(), json!({"msgid": "msgTASK1", "limit": 1000}));
        let results = &requests[2];
        assert_eq!(
            results.path(),
            "/cgi-bin/externalcontact/get_groupmsg_send_result"
        );
        assert_eq!(
            results.json(),
            json!({"msgid": "msgTASK1", "userid": "zhangsan", "limit": 1000})
        );

        let (outcome, _) = poll_with(confirmed.clone(), result(0), later).await;
        assert_eq!(outcome, PollOutcome::Pending);
        let (outcome, _) = poll_with(confirmed.clone(), result(2), later).await;
        assert!(
            matches!(outcome, PollOutcome::OptedOut { .. }),
            "{outcome:?}"
        );
        let (outcome, _) = poll_with(confirmed, result(3), later).await;
        let PollOutcome::Failed { error } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(error.contains("month"), "{error}");
    }

    #[tokio::test]
    async fn a_task_staff_have_not_confirmed_is_pending_without_asking_for_results() {
        let later = now() + chrono::Duration::hours(1);
        let (outcome, server) = poll_with(
            json!([{"userid": "zhangsan", "status": 0}]),
            result(1),
            later,
        )
        .await;
        assert_eq!(outcome, PollOutcome::Pending);
        assert_eq!(
            count(&server, "/cgi-bin/externalcontact/get_groupmsg_send_result"),
            0
        );
    }

    #[tokio::test]
    async fn an_unconfirmed_task_past_its_deadline_is_cancelled_and_failed() {
        let late = now() + chrono::Duration::days(3);
        let (outcome, server) = poll_with(
            json!([{"userid": "zhangsan", "status": 0}]),
            json!([]),
            late,
        )
        .await;
        let PollOutcome::Failed { error } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            error.contains("3days") && error.contains("cancelled"),
            "{error}"
        );
        let cancel = server
            .requests()
            .into_iter()
            .find(|r| r.path() == "/cgi-bin/externalcontact/cancel_groupmsg_send")
            .unwrap();
        assert_eq!(cancel.json(), json!({"msgid": "msgTASK1"}));
    }

    #[tokio::test]
    async fn a_sent_task_past_its_deadline_still_counts_as_sent() {
        let late = now() + chrono::Duration::days(5);
        let (outcome, server) = poll_with(
            json!([{"userid": "zhangsan", "status": 2}]),
            result(1),
            late,
        )
        .await;
        assert_eq!(outcome, PollOutcome::Sent);
        assert_eq!(
            count(&server, "/cgi-bin/externalcontact/cancel_groupmsg_send"),
            0
        );
    }

    #[tokio::test]
    async fn poll_failures_are_unknown_and_a_forgotten_task_failed() {
        let server = start(|_| error(-1)).await;
        let recipient = recipient();
        let outcome = sender(&server.url)
            .poll("msgTASK1:1", &outbound(&recipient, now()))
            .await;
        assert!(
            matches!(outcome, PollOutcome::Unknown { .. }),
            "{outcome:?}"
        );
        let server = start(|_| error(41047)).await;
        let outcome = sender(&server.url)
            .poll("msgTASK1", &outbound(&recipient, now()))
            .await;
        assert!(matches!(outcome, PollOutcome::Failed { .. }), "{outcome:?}");
    }

    #[test]
    fn provider_ids_carry_the_creation_time() {
        let task = TaskId::parse("msgABC:1800000000");
        assert_eq!(task.msgid, "msgABC");
        assert_eq!(task.created.unwrap().timestamp(), 1_800_000_000);
        assert_eq!(task.to_string(), "msgABC:1800000000");
        assert_eq!(TaskId::parse("msgABC").created, None);
    }

    #[test]
    fn next_month_starts_at_midnight_china_time() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            start_of_next_month_in_china(at("2026-12-31T15:59:59Z")),
            at("2026-12-31T16:00:00Z")
        );
        // Already January 1st in China.
        assert_eq!(
            start_of_next_month_in_china(at("2026-12-31T16:00:00Z")),
            at("2027-01-31T16:00:00Z")
        );
    }
}
