//! The `twilio` sender: SMS through Twilio Programmable Messaging, for clinics
//! outside mainland China.
//!
//! One `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` per message
//! (form body `To`, `From` or `MessagingServiceSid`, `Body`; HTTP basic auth
//! with the account SID and the auth token from the environment). Twilio's
//! error codes decide the outcome: 21610 (the recipient replied STOP) is an
//! opt-out and is never retried; 20003 (authentication), a 401, 20005 and
//! 10001 (the account is not active) refuse the sender itself, which the
//! dispatcher pauses.
//!
//! Numbers go to Twilio in E.164 (`+14155550100`, `+447700900123`), read by
//! `base::phone`. A number stored without a country code is refused before
//! anything is sent, unless `default_country_code` is set; then it is read
//! as a number of that country: its trunk prefix dropped (`07700 900123`
//! with `44` → `+447700900123`), a country code typed without `+` kept once
//! (`1-415-555-0016` with `1` → `+14155550016`).
//!
//! Twilio's create-message call takes no idempotency key, so a send whose
//! answer was lost (a timeout after the request went out) or that Twilio
//! answered with a 5xx is ambiguous. Such an error is marked in doubt (`dispatch::sender::in_doubt`, saying "outcome
//! unknown"), as is a message the dispatcher was sending when it died, and
//! the next attempt of a message in doubt first lists the
//! recent messages to that number: if one with the same body was created in
//! the last two days and has not failed, it is taken as this message's send
//! and nothing is sent again. Only if that lookup is impossible or a
//! Messaging Service rewrites bodies (smart encoding) can a customer get a
//! message twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::kit::{self, describe, http, retry_after};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::base::phone::{self, CountryCode, PhoneError};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender, in_doubt};

/// `[senders.<name>]` with `kind = "twilio"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The account SID (`AC` and 32 hex digits) from the Twilio Console. Not a
    /// secret; the auth token is.
    pub account_sid: String,
    /// The environment variable holding the account's auth token.
    #[serde(default = "default_auth_token_env")]
    pub auth_token_env: String,
    /// The sending number in E.164 (`+14155550100`) or an alphanumeric sender
    /// id where the destination country allows one. Set this or
    /// `messaging_service_sid`, not both.
    #[serde(default)]
    pub from: Option<String>,
    /// A Messaging Service (`MG...`) that picks the sending number and handles
    /// opt-out keywords for a pool of numbers.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Country calling code (`"1"`, `"44"`, `"86"`) for numbers stored without
    /// one. Without it, every number must be stored as `+<country><number>`
    /// and others fail without being sent.
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// Twilio's API base URL. Only changed for tests or a regional edge
    /// (`https://api.dublin.ie1.twilio.com`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long to wait for Twilio's answer (default `10s`).
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
}

fn default_auth_token_env() -> String {
    "TWILIO_AUTH_TOKEN".to_string()
}

fn default_endpoint() -> String {
    "https://api.twilio.com".to_string()
}

/// In the error of an attempt after which Twilio may have created the
/// message, for the reader; the error is also marked in doubt, which is what
/// the next attempt goes by.
const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// What [`validate`] checked of a Twilio config (no secret, no client yet).
pub struct Checked {
    account_sid: String,
    from: Origin,
    country_code: Option<CountryCode>,
    /// `.../2010-04-01/Accounts/{sid}/Messages.json`
    messages: Url,
    timeout: Duration,
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(config: &Config) -> Result<Checked, Vec<Invalid>> {
    let mut problems = Problems::default();
    let sid = config.account_sid.trim();
    let sid_ok = sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..].chars().all(|c| c.is_ascii_alphanumeric());
    if !sid_ok {
        problems.push(Invalid::new(
            "account_sid",
            format!(
                "account_sid `{sid}` is not an account SID (AC followed by 32 characters, from the Twilio Console)"
            ),
            format!("account_sid `{sid}` 不是账户 SID（AC 加 32 个字符，见 Twilio 控制台）"),
        ));
    }
    let from = problems.take(origin(config));
    let country_code = problems.take(country_code(config));
    let connection = http::connection(
        &mut problems,
        &config.endpoint,
        "https://api.twilio.com",
        &config.timeout,
    );
    let messages = connection
        .as_ref()
        .and_then(|c| problems.take(messages_url(&c.endpoint, &config.endpoint, sid)));
    let checked = (|| {
        Some(Checked {
            account_sid: sid.to_string(),
            from: from?,
            country_code: country_code?,
            messages: messages?,
            timeout: connection?.timeout,
        })
    })();
    problems.finish(checked)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let checked = validate(config).map_err(|p| BuildError::invalid(name, &p))?;
    let auth_token = ctx.secret(name, &config.auth_token_env)?;
    let client = kit::client(checked.timeout).map_err(|e| BuildError::new(name, e))?;
    Ok(Arc::new(TwilioSender {
        name: name.to_string(),
        client,
        messages: checked.messages,
        account_sid: checked.account_sid,
        auth_token,
        auth_token_env: config.auth_token_env.clone(),
        from: checked.from,
        country_code: checked.country_code.map(|code| code.to_string()),
        timeout: checked.timeout,
    }))
}

/// `from` or `messaging_service_sid`, exactly one of them.
fn origin(config: &Config) -> Result<Origin, Invalid> {
    match (&config.from, &config.messaging_service_sid) {
        (Some(from), None) if !from.trim().is_empty() => {
            Ok(Origin::Number(from.trim().to_string()))
        }
        (None, Some(service)) if service.trim().starts_with("MG") => {
            Ok(Origin::Service(service.trim().to_string()))
        }
        (None, Some(service)) => Err(Invalid::new(
            "messaging_service_sid",
            format!("messaging_service_sid `{service}` is not a Messaging Service SID (MG...)"),
            format!("messaging_service_sid `{service}` 不是消息服务 SID（以 MG 开头）"),
        )),
        (Some(_), Some(_)) => Err(Invalid::new(
            "messaging_service_sid",
            "set either from or messaging_service_sid, not both",
            "from 和 messaging_service_sid 只能设置其中一个",
        )),
        _ => Err(Invalid::new(
            "from",
            "set from (the sending number, +14155550100) or messaging_service_sid (MG...)",
            "请设置 from（发送号码，如 +14155550100）或 messaging_service_sid（MG...）",
        )),
    }
}

/// `default_country_code`: a calling code like "1" or "44".
fn country_code(config: &Config) -> Result<Option<CountryCode>, Invalid> {
    let Some(code) = &config.default_country_code else {
        return Ok(None);
    };
    match CountryCode::parse(code) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(Invalid::new(
            "default_country_code",
            format!(
                "default_country_code `{code}` is not a country calling code like \"1\" or \"44\""
            ),
            format!("default_country_code `{code}` 不是国家区号，例如 \"1\" 或 \"44\""),
        )),
    }
}

/// The Messages resource of the account at `base` (the `endpoint`
/// setting, `written` in the config).
fn messages_url(base: &Url, written: &str, sid: &str) -> Result<Url, Invalid> {
    let messages = format!(
        "{}/2010-04-01/Accounts/{sid}/Messages.json",
        base.as_str().trim_end_matches('/')
    );
    Url::parse(&messages).map_err(|e| {
        Invalid::new(
            "endpoint",
            format!("endpoint: {e}"),
            format!("endpoint `{written}` 不是有效的地址"),
        )
    })
}

/// Who the message comes from.
#[derive(Debug, Clone)]
enum Origin {
    Number(String),
    Service(String),
}

pub struct TwilioSender {
    name: String,
    client: reqwest::Client,
    /// `.../2010-04-01/Accounts/{sid}/Messages.json`
    messages: Url,
    account_sid: String,
    auth_token: String,
    auth_token_env: String,
    from: Origin,
    /// The country of numbers stored without one (`default_country_code`,
    /// its digits).
    country_code: Option<String>,
    timeout: Duration,
}

/// The E.164 form of a stored number, or why there is none. `country_code`
/// is the country of numbers stored without one.
fn e164(address: &str, country_code: Option<&str>) -> Result<String, String> {
    match phone::parse(address, country_code.and_then(CountryCode::parse)) {
        Ok(phone) => Ok(phone.e164()),
        Err(PhoneError::NoCountryCode) => Err(format!(
            "phone number {} has no country code: store it as +<country><number> or set default_country_code",
            mask::phone(address)
        )),
        Err(_) => Err(format!(
            "phone number {} is not a valid international number",
            mask::phone(address)
        )),
    }
}

/// Twilio's error answer.
#[derive(Debug, Default, Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// One message in Twilio's list answer.
#[derive(Debug, Deserialize)]
struct Listed {
    sid: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

#[derive(Debug, Deserialize)]
struct List {
    #[serde(default)]
    messages: Vec<Listed>,
}

impl TwilioSender {
    /// Twilio's text, fit for an error: secrets, the number (in E.164 and
    /// as stored), the name and the content out of it.
    fn scrub(&self, text: &str, message: &Outbound<'_>) -> String {
        let region = self.country_code.as_deref().and_then(CountryCode::parse);
        kit::scrub_body(text, message, region)
    }

    /// What an answer to the create call means.
    fn classify(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
        message: &Outbound<'_>,
    ) -> SendOutcome {
        if status.is_success() {
            let sid = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["sid"].as_str().map(str::to_string));
            return match sid {
                Some(sid) => SendOutcome::Sent { provider_id: sid },
                None => {
                    tracing::warn!(sender = %self.name, id = message.id, %status,
                        "Twilio accepted the message without a sid in its answer");
                    SendOutcome::Sent {
                        provider_id: format!("twilio-{}", message.id),
                    }
                }
            };
        }
        let answer: TwilioError = serde_json::from_str(body).unwrap_or_default();
        let text = self.scrub(answer.message.as_deref().unwrap_or(body), message);
        let code = answer.code;
        let described = match code {
            Some(code) => format!("Twilio {code} ({status}): {text}"),
            None => format!("Twilio answered {status}: {text}"),
        };
        match code {
            Some(21610) => SendOutcome::OptedOut {
                reason: "the recipient replied STOP to this sender (Twilio 21610); \
                         Twilio refuses messages to them until they text START"
                    .to_string(),
            },
            // The credentials (20003, or a 401 without a code) and the
            // account (20005, 10001: suspended, out of funds, trial not
            // activated): every message would fail alike, so the sender
            // is paused, not the message failed.
            Some(20003) => SendOutcome::Refused {
                code: "20003".to_string(),
                error: format!(
                    "{described}; a configuration problem: check account_sid and the token in {}",
                    self.auth_token_env
                ),
            },
            _ if status == StatusCode::UNAUTHORIZED => SendOutcome::Refused {
                code: code.map_or_else(|| status.as_u16().to_string(), |c| c.to_string()),
                error: format!(
                    "{described}; a configuration problem: check account_sid and the token in {}",
                    self.auth_token_env
                ),
            },
            Some(code @ (20005 | 10001)) => SendOutcome::Refused {
                code: code.to_string(),
                error: format!(
                    "{described}; the Twilio account is not active (suspended, out of funds or a trial not activated): see the Twilio Console"
                ),
            },
            Some(20429) => SendOutcome::Retryable {
                error: described,
                retry_after: retry_after(headers, message.now),
            },
            _ if status == StatusCode::TOO_MANY_REQUESTS => SendOutcome::Retryable {
                error: described,
                retry_after: retry_after(headers, message.now),
            },
            // A 5xx says nothing of whether Twilio created the message
            // before failing: in doubt, so the next attempt asks first.
            _ if status.is_server_error() => SendOutcome::Retryable {
                error: in_doubt(&format!(
                    "{described} ({OUTCOME_UNKNOWN}: the next attempt asks Twilio before sending again)"
                )),
                retry_after: retry_after(headers, message.now),
            },
            Some(21211 | 21614) => SendOutcome::Permanent {
                error: format!("{described} (the number is invalid or cannot receive SMS)"),
            },
            _ => SendOutcome::Permanent { error: described },
        }
    }

    /// After an ambiguous attempt: the sid of a message Twilio already
    /// created for this one, if any. An error if Twilio cannot be asked.
    async fn already_created(
        &self,
        message: &Outbound<'_>,
        to: &str,
    ) -> Result<Option<String>, String> {
        let mut query = vec![("To", to.to_string()), ("PageSize", "50".to_string())];
        if let Origin::Number(from) = &self.from {
            query.push(("From", from.clone()));
        }
        let response = self
            .client
            .get(self.messages.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .query(&query)
            .send()
            .await
            .map_err(|e| describe(e, self.timeout))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| describe(e, self.timeout))?;
        if !status.is_success() {
            return Err(format!(
                "listing messages answered {status}: {}",
                self.scrub(&body, message)
            ));
        }
        let list: List = serde_json::from_str(&body)
            .map_err(|e| format!("listing messages answered with unreadable JSON: {e}"))?;
        let since = message.now - chrono::Duration::days(2);
        let found = list.messages.into_iter().find(|m| {
            let same_body = m.body.as_deref().map(str::trim) == Some(message.content.body.trim());
            let recent = m
                .date_created
                .as_deref()
                .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
                .is_some_and(|d| d >= since);
            let failed = matches!(
                m.status.as_deref(),
                Some("failed" | "undelivered" | "canceled")
            );
            same_body && recent && !failed
        });
        Ok(found.map(|m| m.sid))
    }
}

#[async_trait]
impl Sender for TwilioSender {
    fn kind(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let to = match e164(message.address, self.country_code.as_deref()) {
            Ok(to) => to,
            Err(error) => return SendOutcome::Permanent { error },
        };
        if message.in_doubt {
            match self.already_created(message, &to).await {
                Ok(Some(sid)) => {
                    tracing::info!(sender = %self.name, id = message.id, to = %mask::phone(&to), %sid,
                        "Twilio had created the message before the answer was lost; not sending again");
                    return SendOutcome::Sent { provider_id: sid };
                }
                Ok(None) => {}
                Err(error) => {
                    return SendOutcome::Retryable {
                        error: in_doubt(&format!(
                            "the last attempt's {OUTCOME_UNKNOWN}, and Twilio could not be asked: {error}"
                        )),
                        retry_after: None,
                    };
                }
            }
        }
        let mut form = vec![("To", to.clone())];
        match &self.from {
            Origin::Number(from) => form.push(("From", from.clone())),
            Origin::Service(service) => form.push(("MessagingServiceSid", service.clone())),
        }
        form.push(("Body", message.content.body.clone()));
        let response = self
            .client
            .post(self.messages.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return SendOutcome::Retryable {
                    error: format!("Twilio: {}", describe(e, self.timeout)),
                    retry_after: None,
                };
            }
            Err(e) => {
                return SendOutcome::Retryable {
                    error: in_doubt(&format!(
                        "Twilio: {} ({OUTCOME_UNKNOWN}: the next attempt asks Twilio before sending again)",
                        describe(e, self.timeout)
                    )),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => {
                return SendOutcome::Retryable {
                    error: in_doubt(&format!(
                        "Twilio answered {status}, then {} ({OUTCOME_UNKNOWN}: the next attempt asks Twilio before sending again)",
                        describe(e, self.timeout)
                    )),
                    retry_after: None,
                };
            }
        };
        let outcome = self.classify(status, &headers, &body, message);
        tracing::debug!(sender = %self.name, id = message.id, to = %mask::phone(&to), %status,
            "Twilio answered");
        outcome
    }
}

#[cfg(test)]
mod tests;
