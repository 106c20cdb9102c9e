//! The `twilio` sender: SMS through Twilio Programmable Messaging, for clinics
//! outside mainland China.
//!
//! One `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` per message
//! (form body `To`, `From` or `MessagingServiceSid`, `Body`; HTTP basic auth
//! with the account SID and the auth token from the environment). Twilio's
//! error codes decide the outcome: 21610 (the recipient replied STOP) is an
//! opt-out and is never retried.
//!
//! Numbers must be E.164 (`+14155550100`, `+447700900123`). A number stored
//! without a country code is refused before anything is sent, unless
//! `default_country_code` is set; then one national trunk `0` is dropped and
//! the code put in front (`07700 900123` with `44` → `+447700900123`).
//!
//! Twilio's create-message call takes no idempotency key, so a send whose
//! answer was lost (a timeout after the request went out) is ambiguous. Such
//! an error is marked in doubt (`dispatch::sender::in_doubt`, saying "outcome
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

use super::webhook::{default_timeout, describe, duration, http_client, retry_after, scrub};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender, in_doubt};
use crate::mask;

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
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
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

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let error = |message: String| BuildError::new(name, message);
    let sid = config.account_sid.trim();
    if !(sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..].chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(error(format!(
            "account_sid `{sid}` is not an account SID (AC followed by 32 characters, from the Twilio Console)"
        )));
    }
    let sender = match (&config.from, &config.messaging_service_sid) {
        (Some(from), None) if !from.trim().is_empty() => Origin::Number(from.trim().to_string()),
        (None, Some(service)) if service.trim().starts_with("MG") => {
            Origin::Service(service.trim().to_string())
        }
        (None, Some(service)) => {
            return Err(error(format!(
                "messaging_service_sid `{service}` is not a Messaging Service SID (MG...)"
            )));
        }
        (Some(_), Some(_)) => {
            return Err(error(
                "set either from or messaging_service_sid, not both".to_string(),
            ));
        }
        _ => {
            return Err(error(
                "set from (the sending number, +14155550100) or messaging_service_sid (MG...)"
                    .to_string(),
            ));
        }
    };
    let country_code = match &config.default_country_code {
        None => None,
        Some(code) => {
            let digits = code.trim().trim_start_matches('+');
            if digits.is_empty()
                || digits.len() > 3
                || !digits.chars().all(|c| c.is_ascii_digit())
                || digits.starts_with('0')
            {
                return Err(error(format!(
                    "default_country_code `{code}` is not a country calling code like \"1\" or \"44\""
                )));
            }
            Some(digits.to_string())
        }
    };
    let endpoint = Url::parse(config.endpoint.trim_end_matches('/'))
        .map_err(|e| error(format!("endpoint `{}`: {e}", config.endpoint)))?;
    let base = format!(
        "{}/2010-04-01/Accounts/{sid}/Messages.json",
        endpoint.as_str().trim_end_matches('/')
    );
    let messages = Url::parse(&base).map_err(|e| error(format!("endpoint: {e}")))?;
    let auth_token = ctx.secret(name, &config.auth_token_env)?;
    let client = http_client(config.timeout).map_err(error)?;
    Ok(Arc::new(TwilioSender {
        name: name.to_string(),
        client,
        messages,
        account_sid: sid.to_string(),
        auth_token,
        auth_token_env: config.auth_token_env.clone(),
        from: sender,
        country_code,
        timeout: config.timeout,
    }))
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
    country_code: Option<String>,
    timeout: Duration,
}

/// The E.164 form of a stored number, or why there is none.
fn e164(address: &str, country_code: Option<&str>) -> Result<String, String> {
    let compact: String = address
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let number = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_string()
    } else if let Some(code) = country_code {
        format!("{code}{}", compact.strip_prefix('0').unwrap_or(&compact))
    } else {
        return Err(format!(
            "phone number {} has no country code: store it as +<country><number> or set default_country_code",
            mask::phone(address)
        ));
    };
    if !(8..=15).contains(&number.len()) || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "phone number {} is not a valid international number",
            mask::phone(address)
        ));
    }
    Ok(format!("+{number}"))
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
    /// What an answer to the create call means.
    fn classify(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
        message: &Outbound<'_>,
        to: &str,
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
        let text = answer
            .message
            .as_deref()
            .map(|m| scrub(&m.replace(to, &mask::phone(to)), message))
            .unwrap_or_else(|| scrub(body, message));
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
            Some(20003) => SendOutcome::Permanent {
                error: format!(
                    "{described}; a configuration problem: check account_sid and the token in {}",
                    self.auth_token_env
                ),
            },
            _ if status == StatusCode::UNAUTHORIZED => SendOutcome::Permanent {
                error: format!(
                    "{described}; a configuration problem: check account_sid and the token in {}",
                    self.auth_token_env
                ),
            },
            Some(20429) => SendOutcome::Retryable {
                error: described,
                retry_after: retry_after(headers, message.now),
            },
            _ if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                SendOutcome::Retryable {
                    error: described,
                    retry_after: retry_after(headers, message.now),
                }
            }
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
                scrub(&body, message)
            ));
        }
        let list: List = serde_json::from_str(&body)
            .map_err(|e| format!("listing messages answered with unreadable JSON: {e}"))?;
        let since = message.now - chrono::Duration::days(2);
        let found = list.messages.into_iter().find(|m| {
            let same_body = m.body.as_deref().map(str::trim) == Some(message.content.trim());
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
        form.push(("Body", message.content.to_string()));
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
        let outcome = self.classify(status, &headers, &body, message, &to);
        tracing::debug!(sender = %self.name, id = message.id, to = %mask::phone(&to), %status,
            "Twilio answered");
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;

    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;
    use crate::testing::{Reply, TestServer};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn context() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "TWILIO_AUTH_TOKEN".to_string(),
                "tok-secret".to_string(),
            )])),
            ..Context::default()
        }
    }

    fn message<'a>(recipient: &'a Recipient, address: &'a str) -> Outbound<'a> {
        Outbound {
            id: 12,
            channel: Channel::Sms,
            rule_id: "warning-recall",
            template: "recall_offer",
            subject: None,
            content: "Hi Lily, it has been a while. Reply STOP to opt out.",
            html: None,
            params: None,
            recipient,
            address,
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: "2025-03-01T08:00:00Z".parse().unwrap(),
        }
    }

    fn sender(endpoint: &str, extra: &str) -> Arc<dyn Sender> {
        let config: Config = toml::from_str(&format!(
            "account_sid = \"{SID}\"\nendpoint = \"{endpoint}\"\n{extra}"
        ))
        .unwrap();
        build("twilio", &config, &context()).unwrap()
    }

    fn twilio_error(status: u16, code: i64, text: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"code": code, "message": text, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
        )
    }

    async fn send_one(reply: Reply) -> (SendOutcome, Vec<crate::testing::Recorded>) {
        let server = TestServer::start(move |_, _| reply.clone()).await;
        let sender = sender(&server.url, "from = \"+14155550100\"\n");
        let recipient = Recipient::default();
        let outcome = sender.send(&message(&recipient, "+14155550123")).await;
        (outcome, server.requests())
    }

    #[tokio::test]
    async fn posts_the_form_with_basic_auth_and_returns_the_message_sid() {
        let (outcome, requests) = send_one(Reply::json(
            201,
            serde_json::json!({"sid": "SM1234", "status": "queued"}),
        ))
        .await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "SM1234".into()
            }
        );
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.target,
            format!("/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:tok-secret"));
        assert_eq!(
            request.header("authorization"),
            Some(format!("Basic {expected}").as_str())
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = request.form();
        assert_eq!(
            form,
            [
                ("To".to_string(), "+14155550123".to_string()),
                ("From".to_string(), "+14155550100".to_string()),
                (
                    "Body".to_string(),
                    "Hi Lily, it has been a while. Reply STOP to opt out.".to_string()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_messaging_service_and_a_default_country_code_shape_the_request() {
        let server =
            TestServer::start(|_, _| Reply::json(201, serde_json::json!({"sid": "SM9"}))).await;
        let sender = sender(
            &server.url,
            "messaging_service_sid = \"MG0123456789abcdef0123456789abcdef\"\ndefault_country_code = \"+44\"\n",
        );
        let recipient = Recipient::default();
        sender.send(&message(&recipient, "07700 900123")).await;
        let form = server.requests()[0].form();
        assert_eq!(form[0], ("To".to_string(), "+447700900123".to_string()));
        assert_eq!(
            form[1],
            (
                "MessagingServiceSid".to_string(),
                "MG0123456789abcdef0123456789abcdef".to_string()
            )
        );
    }

    #[tokio::test]
    async fn a_number_without_country_code_fails_before_anything_is_sent() {
        let server =
            TestServer::start(|_, _| Reply::json(201, serde_json::json!({"sid": "SM9"}))).await;
        let sender = sender(&server.url, "from = \"+14155550100\"\n");
        let recipient = Recipient::default();
        let SendOutcome::Permanent { error } =
            sender.send(&message(&recipient, "4155550123")).await
        else {
            panic!("a national number must be refused");
        };
        assert!(
            error.contains("no country code") && error.contains("default_country_code"),
            "{error}"
        );
        assert!(!error.contains("4155550123"), "{error}");
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn stop_replies_are_opt_outs() {
        let (outcome, _) = send_one(twilio_error(
            400,
            21610,
            "Attempt to send to unsubscribed recipient",
        ))
        .await;
        assert!(matches!(outcome, SendOutcome::OptedOut { reason } if reason.contains("21610")));
    }

    #[tokio::test]
    async fn invalid_numbers_are_permanent_and_masked() {
        let (outcome, _) = send_one(twilio_error(
            400,
            21211,
            "The 'To' number +14155550123 is not a valid phone number.",
        ))
        .await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("21211 must be permanent");
        };
        assert!(
            error.starts_with("Twilio 21211 (400 Bad Request): The 'To' number +141****0123"),
            "{error}"
        );
        assert!(!error.contains("4155550123"), "{error}");
        let (outcome, _) = send_one(twilio_error(
            400,
            21614,
            "'To' number is not a valid mobile number",
        ))
        .await;
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    }

    #[tokio::test]
    async fn bad_credentials_are_permanent_and_point_at_the_config() {
        let (outcome, _) = send_one(twilio_error(401, 20003, "Authenticate")).await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("20003 must be permanent");
        };
        assert!(
            error.contains("configuration problem") && error.contains("TWILIO_AUTH_TOKEN"),
            "{error}"
        );
        assert!(!error.contains("tok-secret"), "{error}");
    }

    #[tokio::test]
    async fn throttling_honours_retry_after_and_outages_are_retried() {
        let (outcome, _) =
            send_one(twilio_error(429, 20429, "Too Many Requests").header("Retry-After", "7"))
                .await;
        assert_eq!(
            outcome,
            SendOutcome::Retryable {
                error: "Twilio 20429 (429 Too Many Requests): Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        let (outcome, _) = send_one(Reply::text(503, "upstream unavailable")).await;
        assert!(matches!(
            outcome,
            SendOutcome::Retryable {
                retry_after: None,
                ..
            }
        ));
        let (outcome, _) = send_one(twilio_error(
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region",
        ))
        .await;
        assert!(matches!(outcome, SendOutcome::Permanent { error } if error.contains("21408")));
    }

    #[tokio::test]
    async fn a_lost_answer_is_retried_and_the_retry_asks_twilio_first() {
        // Every POST answers too late; a second POST would be a duplicate.
        let server = TestServer::start(|request, _| match request.method.as_str() {
            "GET" => Reply::json(
                200,
                serde_json::json!({"messages": [
                    {"sid": "SMold", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                     "status": "delivered", "date_created": "Mon, 20 Jan 2025 08:00:00 +0000"},
                    {"sid": "SMlate", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                     "status": "delivered", "date_created": "Sat, 01 Mar 2025 07:59:58 +0000"},
                ]}),
            ),
            _ => Reply::json(201, serde_json::json!({"sid": "SMlate"}))
                .delayed(Duration::from_secs(3)),
        })
        .await;
        let sender = sender(
            &server.url,
            "from = \"+14155550100\"\ntimeout = \"300ms\"\n",
        );
        let recipient = Recipient::default();
        let first = sender.send(&message(&recipient, "+14155550123")).await;
        let SendOutcome::Retryable {
            error,
            retry_after: None,
        } = first
        else {
            panic!("a timeout must be retryable, got {first:?}");
        };
        assert!(
            error.contains("no answer within 300ms") && error.contains(OUTCOME_UNKNOWN),
            "{error}"
        );
        assert!(crate::store::outbox::is_in_doubt(Some(&error)), "{error}");
        let retry = Outbound {
            attempt: 2,
            previous_error: Some(&error),
            in_doubt: true,
            ..message(&recipient, "+14155550123")
        };
        assert_eq!(
            sender.send(&retry).await,
            SendOutcome::Sent {
                provider_id: "SMlate".into()
            }
        );
        let requests = server.requests();
        let posts = requests.iter().filter(|r| r.method == "POST").count();
        assert!(posts <= 1, "a second POST: {requests:?}");
        let gets: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
        assert_eq!(gets.len(), 1, "{requests:?}");
        assert_eq!(
            gets[0].path(),
            format!("/2010-04-01/Accounts/{SID}/Messages.json")
        );
        assert_eq!(
            gets[0].query(),
            [
                ("To".to_string(), "+14155550123".to_string()),
                ("PageSize".to_string(), "50".to_string()),
                ("From".to_string(), "+14155550100".to_string()),
            ]
        );
    }

    /// The dispatcher dies while message 1 is being sent; at the next start
    /// it is requeued and dispatched again through a real store and
    /// dispatcher. Returns Twilio's requests (method) and the message's
    /// (status, provider id).
    async fn dispatch_after_a_crash(
        server: &TestServer,
    ) -> (Vec<String>, (String, Option<String>)) {
        use crate::clock::Clock;
        use crate::config::{ChannelPolicy, DispatchSettings};
        use crate::dispatch::{Dispatcher, Route};
        use crate::store::ingest::NewCustomer;
        use crate::store::queries::LogFilter;
        use crate::testing::{T0, outbox};

        let f = outbox(
            vec![NewCustomer {
                phone: Some("+14155550123".into()),
                ..NewCustomer::named("C1", "Lily")
            }],
            Channel::Sms,
            None,
        );
        {
            let mut store = f.store.lock().unwrap();
            assert_eq!(store.claim_due(T0, &[Channel::Sms], 10).unwrap().len(), 1);
            // The process dies here, the POST maybe out, its answer unwritten.
            assert_eq!(store.requeue_interrupted(T0 + 60).unwrap(), 1);
        }
        let sender = sender(&server.url, "from = \"+14155550100\"\n");
        let dispatcher = Dispatcher::with_routes(
            BTreeMap::from([(
                Channel::Sms,
                Route::new("twilio", sender, ChannelPolicy::plain("twilio")),
            )]),
            DispatchSettings::default(),
            chrono_tz::UTC,
        );
        let now = DateTime::from_timestamp(T0 + 60, 0).unwrap();
        let report = dispatcher
            .drain(&f.store, Clock::Fixed(now), &|| false)
            .await
            .unwrap();
        assert_eq!(report.sent, 1);
        let methods = server.requests().into_iter().map(|r| r.method).collect();
        let entry = f
            .store
            .lock()
            .unwrap()
            .log(&LogFilter::default())
            .unwrap()
            .remove(0);
        (methods, (entry.status, entry.provider_id))
    }

    #[tokio::test]
    async fn a_message_requeued_after_a_crash_that_twilio_has_is_not_sent_again() {
        // The fixture's message says "您好"; T0 is Thu, 28 May 2026 20:26:40 UTC.
        let server = TestServer::start(|request, _| {
            if request.method == "GET" {
                Reply::json(
                    200,
                    serde_json::json!({"messages": [
                    {"sid": "SMcrash", "body": "您好", "status": "sent",
                     "date_created": "Thu, 28 May 2026 20:26:41 +0000"}]}),
                )
            } else {
                Reply::json(201, serde_json::json!({"sid": "SMtwice"}))
            }
        })
        .await;
        let (methods, entry) = dispatch_after_a_crash(&server).await;
        assert_eq!(methods, ["GET"]);
        assert_eq!(entry, ("sent".to_string(), Some("SMcrash".to_string())));
    }

    #[tokio::test]
    async fn a_message_requeued_after_a_crash_is_looked_up_before_it_is_sent() {
        let server = TestServer::start(|request, _| {
            if request.method == "GET" {
                Reply::json(200, serde_json::json!({"messages": []}))
            } else {
                Reply::json(201, serde_json::json!({"sid": "SMnew"}))
            }
        })
        .await;
        let (methods, entry) = dispatch_after_a_crash(&server).await;
        assert_eq!(methods, ["GET", "POST"]);
        assert_eq!(entry, ("sent".to_string(), Some("SMnew".to_string())));
    }

    #[tokio::test]
    async fn a_retry_that_finds_nothing_sends_again() {
        let server = TestServer::start(|request, _| {
            if request.method == "GET" {
                Reply::json(200, serde_json::json!({"messages": [
                    {"sid": "SMfailed", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                     "status": "failed", "date_created": "Sat, 01 Mar 2025 07:59:58 +0000"}]}))
            } else {
                Reply::json(201, serde_json::json!({"sid": "SMnew"}))
            }
        })
        .await;
        let sender = sender(&server.url, "from = \"+14155550100\"\n");
        let recipient = Recipient::default();
        let retry = Outbound {
            attempt: 2,
            previous_error: Some("[in doubt] Twilio: no answer within 10s (outcome unknown: ...)"),
            in_doubt: true,
            ..message(&recipient, "+14155550123")
        };
        assert_eq!(
            sender.send(&retry).await,
            SendOutcome::Sent {
                provider_id: "SMnew".into()
            }
        );
        let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, ["GET", "POST"]);
    }

    #[tokio::test]
    async fn a_closed_port_is_retried_without_doubt() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let sender = sender(
            &format!("http://127.0.0.1:{port}"),
            "from = \"+14155550100\"\n",
        );
        let recipient = Recipient::default();
        let SendOutcome::Retryable { error, .. } =
            sender.send(&message(&recipient, "+14155550123")).await
        else {
            panic!("a refused connection must be retryable");
        };
        assert!(
            error.contains("cannot connect") && !error.contains(OUTCOME_UNKNOWN),
            "{error}"
        );
    }

    #[test]
    fn numbers_become_e164() {
        assert_eq!(e164("+1 (415) 555-0123", None).unwrap(), "+14155550123");
        assert_eq!(e164("0086 138 1234 5678", None).unwrap(), "+8613812345678");
        assert_eq!(e164("13812345678", Some("86")).unwrap(), "+8613812345678");
        assert_eq!(e164("07700900123", Some("44")).unwrap(), "+447700900123");
        assert!(e164("13812345678", None).is_err());
        assert!(e164("+12", None).is_err());
        assert!(e164("+1415555abcd", None).is_err());
    }

    #[test]
    fn config_is_checked_and_secrets_come_from_the_environment() {
        let err = toml::from_str::<Config>(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+1\"\nauth_token = \"x\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `auth_token`"), "{err}");
        let build_with = |text: &str| {
            let config: Config = toml::from_str(text).unwrap();
            build("twilio", &config, &context())
                .err()
                .map(|e| e.to_string())
        };
        let missing = build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\nauth_token_env = \"CLINIC_TWILIO_TOKEN\"\n"
        ))
        .unwrap();
        assert!(missing.contains("CLINIC_TWILIO_TOKEN"), "{missing}");
        assert!(
            build_with("account_sid = \"SK123\"\nfrom = \"+14155550100\"\n")
                .unwrap()
                .contains("account_sid")
        );
        assert!(
            build_with(&format!("account_sid = \"{SID}\"\n"))
                .unwrap()
                .contains("from")
        );
        assert!(build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\nmessaging_service_sid = \"MG1\"\n"
        ))
        .unwrap()
        .contains("not both"));
        assert!(
            build_with(&format!(
                "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\ndefault_country_code = \"UK\"\n"
            ))
            .is_some()
        );
        assert!(
            build_with(&format!(
                "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\n"
            ))
            .is_none()
        );
    }
}
