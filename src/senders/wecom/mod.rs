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
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;

use super::kit::{self, china, http};
use super::wechat::{Answer, App, Credentials};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::base::model::Channel;
use crate::dispatch::sender::{AddressKind, Outbound, PollOutcome, SendOutcome, Sender};
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
    #[serde(default = "default_confirm_within")]
    pub confirm_within: String,
    /// The WeCom API address; tests point it at a local server.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one HTTP call to WeCom may take.
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
}

fn default_secret_env() -> String {
    "WECOM_SECRET".into()
}

fn default_confirm_within() -> String {
    "3d".into()
}

fn default_endpoint() -> String {
    "https://qyapi.weixin.qq.com".into()
}

/// `errcode`s meaning the access token is invalid (40014), missing (41001)
/// or expired (42001).
const TOKEN_ERRORS: &[i64] = &[40014, 41001, 42001];

/// The most bytes WeCom takes in `text.content` of a group message.
const MAX_CONTENT_BYTES: usize = 4000;

/// How many members or customers one result page asks for (WeCom's maximum).
const PAGE: u32 = 1000;

/// What [`validate`] checked of a WeCom config.
pub struct Checked {
    connection: http::Connection,
    confirm_within: Duration,
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(config: &Config) -> Result<Checked, Vec<Invalid>> {
    let mut problems = Problems::default();
    if config.corp_id.trim().is_empty() {
        problems.push(Invalid::new(
            "corp_id",
            "corp_id is empty: copy it from the WeCom admin console (我的企业 → 企业ID)",
            "corp_id 为空：请从企业微信管理后台复制（我的企业 → 企业ID）",
        ));
    }
    if let Some(sender) = &config.sender_userid
        && sender.trim().is_empty()
    {
        problems.push(Invalid::new(
            "sender_userid",
            "sender_userid is empty: remove it or name a staff member's userid",
            "sender_userid 为空：请删除它，或写上一位员工的 userid",
        ));
    }
    let confirm_within = problems.take(http::duration_setting(
        "confirm_within",
        &config.confirm_within,
        "3d",
    ));
    let connection = http::connection(
        &mut problems,
        &config.endpoint,
        "https://qyapi.weixin.qq.com",
        &config.timeout,
    );
    let checked = connection
        .zip(confirm_within)
        .map(|(connection, confirm_within)| Checked {
            connection,
            confirm_within,
        });
    problems.finish(checked)
}

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
        let checked = validate(config).map_err(|p| BuildError::invalid(name, &p))?;
        let secret = ctx.secret(name, &config.secret_env)?;
        let credentials = Credentials::WeCom {
            corp_id: config.corp_id.trim().to_string(),
            secret,
        };
        Ok(WecomSender {
            app: App::new(&checked.connection, credentials, TOKEN_ERRORS)
                .map_err(|e| BuildError::new(name, e))?,
            sender_userid: config.sender_userid.clone(),
            confirm_within: checked.confirm_within,
        })
    }

    /// WeCom would not create a task for the customer (`why`): asks whether
    /// the customer is still a contact, to tell the monthly limit from a
    /// customer who left.
    async fn not_sendable(&self, now: DateTime<Utc>, customer: &str, why: &str) -> SendOutcome {
        let answer = self
            .app
            .get(
                now,
                "/cgi-bin/externalcontact/get",
                &[("external_userid", customer)],
            )
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
            .app
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

    /// The dispatcher suppresses (or falls back for) a customer without
    /// one before the message gets here.
    fn address_kind(&self, _channel: Channel) -> AddressKind {
        AddressKind::WecomExternalUserid
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let Some(customer) = external_userid(message.recipient) else {
            return SendOutcome::Permanent {
                error: AddressKind::WecomExternalUserid.missing(),
            };
        };
        let content = message.content.body.as_str();
        if content.trim().is_empty() {
            return SendOutcome::Permanent {
                error: "the message text is empty".into(),
            };
        }
        if content.len() > MAX_CONTENT_BYTES {
            return SendOutcome::Permanent {
                error: format!(
                    "the message text is {} bytes; WeCom takes at most {MAX_CONTENT_BYTES}",
                    content.len()
                ),
            };
        }
        let mut body = json!({
            "chat_type": "single",
            "external_userid": [customer],
            "text": { "content": content },
        });
        if let Some(sender) = &self.sender_userid {
            body["sender"] = json!(sender);
        }
        let answer = match self
            .app
            .post(
                message.now,
                "/cgi-bin/externalcontact/add_msg_template",
                &body,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return e.outcome("creating the WeCom task"),
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
            .app
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
                .app
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
    AddressKind::WecomExternalUserid.of(recipient)
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// 00:00 on the first day of the next calendar month in China (UTC+8, no
/// daylight saving), when WeCom's monthly counts start again.
fn start_of_next_month_in_china(now: DateTime<Utc>) -> DateTime<Utc> {
    let china = china::offset();
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

/// An `add_msg_template` error other than "no customer to send to", as
/// docs/wechat.md tables it: a staff member or customer WeCom will not use
/// fails at once, naming who and why; an app setting an admin must fix
/// keeps the message (until `give_up_after`); busy and throttled retry.
fn add_error(answer: &Answer, sender: Option<&str>) -> SendOutcome {
    let what = answer.describe();
    let retry = |error: String, retry_after: Option<Duration>| SendOutcome::Retryable {
        error,
        retry_after,
    };
    let fail = |error: String| SendOutcome::Permanent { error };
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
        // The staff member the task goes to cannot be used.
        40003 | 41009 | 46004 | 60111 => fail(staff_error(
            sender,
            &what,
            "is not a member of the company (a wrong userid, or someone who left)",
            "fix sender_userid in recall.toml, or remove it to let WeCom hand each task to the customer's own staff",
            "one of them is no longer a member of the company (left, or the account was disabled): hand the customer over to a current staff member in the WeCom admin console (客户联系 → 离职继承/在职继承)",
        )),
        50002 | 60011 | 60021 => fail(staff_error(
            sender,
            &what,
            "is outside the visible range (可见范围) of the app whose secret recall uses",
            "add them to the app's visible range in the WeCom admin console, or change sender_userid",
            "one of them is outside the visible range (可见范围) of the app whose secret recall uses: add them to it in the WeCom admin console",
        )),
        // The app may not do this from here: a setting an admin fixes for
        // every message at once, so the messages wait for it.
        48002 | 48004 | 48006 | 60020 | 301002 | 610004 => retry(
            format!(
                "WeCom refuses this app: {what}; check that the secret's app may use customer contact, the trusted IPs and the staff's visible range"
            ),
            None,
        ),
        40096 | 41035 | 41056 => fail(format!(
            "WeCom does not accept the customer's external_userid: {what}"
        )),
        40058 | 40063 | 44004 | 45002 => fail(format!("WeCom refuses the message: {what}")),
        _ => fail(format!("WeCom refused the task: {what}")),
    }
}

/// Why a staff member cannot be given the task: `sender_userid` when one
/// is set, otherwise the staff WeCom chose (those who have the customer as
/// a contact), which recall never names itself.
fn staff_error(
    sender: Option<&str>,
    what: &str,
    problem: &str,
    fix_sender: &str,
    chosen_staff: &str,
) -> String {
    match sender {
        Some(sender) => format!("sender_userid `{sender}` {problem}: {what}; {fix_sender}"),
        None => format!(
            "WeCom will not give the task to a staff member: {what}. No sender_userid is set, so WeCom chose the staff who have this customer as a contact, and {chosen_staff}"
        ),
    }
}

#[cfg(test)]
mod tests;
