//! The `aliyun_sms` sender: Alibaba Cloud SMS (dysmsapi `SendSms`), signed
//! with the V3 request signature ACS3-HMAC-SHA256.
//!
//! Aliyun sends approved templates, not free text: each recall template is
//! mapped in `recall.toml` to an approved template code, and the message's
//! provider parameters (`<template>.params.toml`) become `TemplateParam`.
//! Every send carries `OutId` = the outreach id.
//!
//! `SendSms` is not idempotent. When an attempt ends without knowing whether
//! Aliyun took the message (a timeout, a 5xx, a broken answer), its error is
//! marked in doubt (`dispatch::sender::in_doubt`, saying "result unknown");
//! so is a message the dispatcher was sending when it died. The next attempt
//! of a message in doubt (`Outbound::in_doubt`) first asks `QuerySendDetails`
//! for that number on the China send dates it could have gone out on, and if
//! a message with our `OutId` is there, reports it sent instead of sending
//! again.
//!
//! This module must never log or format the AccessKey secret, never log
//! message content or an unmasked phone number, and never resend after an
//! unknown result without asking first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Days, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::kit::china;
use super::kit::cloud_sign::{self, hmac_sha256, rfc3986, sha256_hex};
use super::kit::{self, http};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::base::phone::{self, CountryCode};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender, in_doubt};

mod codes;

pub use codes::{Verdict, verdict};

/// The `kind` of this sender in `recall.toml`.
pub const KIND: &str = "aliyun_sms";
/// What a message whose recall template has no mapping is told to add:
/// the provider, and the keys of `[senders.<name>.templates.<template>]`.
const UNMAPPED: (&str, &str) = (
    "Aliyun",
    "code = \"SMS_...\" (the approved template's code from the Aliyun SMS console)",
);
/// The dysmsapi API version both actions belong to.
const VERSION: &str = "2017-05-25";
const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// In the error of an attempt whose outcome at Aliyun is unknown, for the
/// reader; the error is also marked in doubt, which is what the next attempt
/// goes by (it asks `QuerySendDetails` before sending again).
pub const RESULT_UNKNOWN: &str = "result unknown";
/// `QuerySendDetails` returns at most 50 records a page.
const PAGE_SIZE: usize = 50;
/// Pages read per send date before giving up the search (one number rarely
/// gets more than a few messages a day; 250 is plenty).
const MAX_PAGES: usize = 5;

/// `[senders.<name>]` with `kind = "aliyun_sms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The approved SMS signature (签名) shown as 【...】 in front of every
    /// message, exactly as it appears in the Aliyun SMS console.
    pub sign_name: String,
    /// Which approved Aliyun template carries each recall template:
    /// `[senders.<name>.templates.<recall template>]`. A message whose
    /// template is not here fails with an error saying what to add.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateMapping>,
    /// The dysmsapi endpoint. The default is Aliyun's public one; tests and
    /// proxies point it elsewhere.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one call to Aliyun may take before the attempt is given up
    /// (and, for SendSms, its result treated as unknown).
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
    /// The environment variable holding the AccessKey ID. Secrets never live
    /// in recall.toml.
    #[serde(default = "default_access_key_id_env")]
    pub access_key_id_env: String,
    /// The environment variable holding the AccessKey secret.
    #[serde(default = "default_access_key_secret_env")]
    pub access_key_secret_env: String,
}

/// `[senders.<name>.templates.<recall template>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMapping {
    /// The approved template's code (模板 CODE), e.g. "SMS_154950909".
    pub code: String,
    /// Optional renaming, Aliyun variable → recall parameter, for templates
    /// whose variables are named differently from `<template>.params.toml`
    /// (e.g. `{ customer = "name" }` fills `${customer}` with `name`). When
    /// set, exactly these variables are sent; when absent, all parameters
    /// are sent under their own names.
    #[serde(default)]
    pub params: Option<BTreeMap<String, String>>,
}

fn default_endpoint() -> String {
    "https://dysmsapi.aliyuncs.com".to_string()
}

fn default_access_key_id_env() -> String {
    "ALIYUN_ACCESS_KEY_ID".to_string()
}

fn default_access_key_secret_env() -> String {
    "ALIYUN_ACCESS_KEY_SECRET".to_string()
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(name: &str, config: &Config) -> Result<cloud_sign::Settings, Vec<Invalid>> {
    let mut problems = Problems::default();
    if let Some(invalid) =
        cloud_sign::sign_name_setting(&config.sign_name, "Aliyun SMS console", "阿里云短信控制台")
    {
        problems.push(invalid);
    }
    if config.templates.is_empty() {
        problems.push(Invalid::new(
            "templates",
            format!(
                "no templates are mapped: add [senders.{name}.templates.<recall template>] with code = \"SMS_...\" for each SMS template"
            ),
            format!(
                "没有映射任何模板：请为每个短信模板添加 [senders.{name}.templates.<recall 模板名>] 并写 code = \"SMS_...\""
            ),
        ));
    }
    for (template, mapping) in &config.templates {
        if mapping.code.trim().is_empty() {
            problems.push(Invalid::new(
                format!("templates.{template}.code"),
                format!(
                    "[senders.{name}.templates.{template}] code is empty: set it to the approved template's code, like \"SMS_154950909\""
                ),
                format!(
                    "[senders.{name}.templates.{template}] code 为空：请填写审核通过的模板 CODE，例如 \"SMS_154950909\""
                ),
            ));
        }
        if mapping
            .params
            .iter()
            .flatten()
            .any(|(variable, param)| variable.trim().is_empty() || param.trim().is_empty())
        {
            problems.push(cloud_sign::empty_param_names(name, template));
        }
    }
    let settings = cloud_sign::settings(
        &mut problems,
        &config.endpoint,
        "https://dysmsapi.aliyuncs.com",
        &config.timeout,
        &[
            ("access_key_id_env", &config.access_key_id_env),
            ("access_key_secret_env", &config.access_key_secret_env),
        ],
    );
    problems.finish(settings)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let settings = validate(name, config).map_err(|p| BuildError::invalid(name, &p))?;
    let [access_key_id, access_key_secret] = kit::secrets(
        ctx,
        name,
        [&config.access_key_id_env, &config.access_key_secret_env],
    )?;
    let client = kit::client(settings.timeout).map_err(|e| BuildError::new(name, e))?;
    Ok(Arc::new(AliyunSms {
        name: name.to_string(),
        sign_name: config.sign_name.trim().to_string(),
        templates: config.templates.clone(),
        settings,
        access_key_id,
        access_key_secret,
        client,
    }))
}

/// The sender. Holds the AccessKey, so it has no `Debug`.
pub struct AliyunSms {
    name: String,
    sign_name: String,
    templates: BTreeMap<String, TemplateMapping>,
    settings: cloud_sign::Settings,
    access_key_id: String,
    access_key_secret: String,
    client: reqwest::Client,
}

// ---------------------------------------------------------------------------
// The signature.

/// Everything an ACS3-HMAC-SHA256 signature covers. Time and nonce are
/// inputs, so a published example can be reproduced exactly.
#[derive(Debug, Clone)]
pub struct Acs3Request<'a> {
    /// Upper case, e.g. "POST".
    pub method: &'a str,
    /// The `host` header value (with a non-default port).
    pub host: &'a str,
    /// The canonical URI: "/" for RPC APIs such as dysmsapi.
    pub path: &'a str,
    /// Query parameters, not yet encoded, in any order.
    pub query: &'a [(String, String)],
    /// `x-acs-action`, e.g. "SendSms".
    pub action: &'a str,
    /// `x-acs-version`, e.g. "2017-05-25".
    pub version: &'a str,
    /// The request body (empty for our calls).
    pub body: &'a [u8],
    /// `x-acs-date`.
    pub date: DateTime<Utc>,
    /// `x-acs-signature-nonce`: unique per request.
    pub nonce: &'a str,
}

/// A signed request: the pieces of each step, and the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acs3Signed {
    /// Sorted, RFC 3986 encoded; send exactly this as the URL's query.
    pub canonical_query: String,
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Lower-case hex.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
    /// Every signed header (lower-case name, value), sorted by name: all of
    /// them must be sent as they are.
    pub headers: Vec<(String, String)>,
}

/// Signs a request (Alibaba Cloud "V3 request body & signature mechanism").
/// Pure: same inputs, same signature.
pub fn sign(request: &Acs3Request<'_>, access_key_id: &str, access_key_secret: &str) -> Acs3Signed {
    let mut pairs: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (rfc3986(k), rfc3986(v)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let payload_hash = sha256_hex(request.body);
    let mut headers = vec![
        ("host".to_string(), request.host.to_string()),
        ("x-acs-action".to_string(), request.action.to_string()),
        ("x-acs-content-sha256".to_string(), payload_hash.clone()),
        (
            "x-acs-date".to_string(),
            request.date.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        (
            "x-acs-signature-nonce".to_string(),
            request.nonce.to_string(),
        ),
        ("x-acs-version".to_string(), request.version.to_string()),
    ];
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = [
        request.method,
        request.path,
        &canonical_query,
        &canonical_headers,
        &signed_headers,
        &payload_hash,
    ]
    .join("\n");
    let string_to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()));
    let signature = hex::encode(hmac_sha256(
        access_key_secret.as_bytes(),
        string_to_sign.as_bytes(),
    ));
    let authorization = format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    );
    Acs3Signed {
        canonical_query,
        canonical_request,
        string_to_sign,
        signature,
        authorization,
        headers,
    }
}

/// A fresh `x-acs-signature-nonce`: 32 random hex digits.
fn nonce() -> String {
    (0..16)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// The number as Aliyun wants it: mainland numbers as their national
/// digits (11 for a mobile, the only form `QuerySendDetails` takes), others
/// as country code + number. A number `base::phone` cannot read goes as
/// typed, for Aliyun to judge.
pub fn phone_number(address: &str) -> String {
    match phone::parse(address, Some(CountryCode::CHINA)) {
        Ok(phone) if phone.country() == CountryCode::CHINA => phone.national().to_string(),
        Ok(phone) => phone.digits(),
        Err(_) => address.trim().to_string(),
    }
}

// ---------------------------------------------------------------------------
// Calls.

/// A call that did not produce an answer.
#[derive(Debug)]
enum CallError {
    /// The request never left (no connection): safe to send again.
    NotSent(String),
    /// It may have reached Aliyun.
    Unknown(String),
}

impl CallError {
    fn text(self) -> String {
        match self {
            CallError::NotSent(e) | CallError::Unknown(e) => e,
        }
    }
}

impl AliyunSms {
    /// One signed RPC call: parameters in the query, empty body.
    async fn call(
        &self,
        action: &str,
        query: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<http::Answer, CallError> {
        let nonce = nonce();
        let signed = sign(
            &Acs3Request {
                method: "POST",
                host: &self.settings.host,
                path: self.settings.endpoint.path(),
                query,
                action,
                version: VERSION,
                body: b"",
                date: now,
                nonce: &nonce,
            },
            &self.access_key_id,
            &self.access_key_secret,
        );
        let mut url = self.settings.endpoint.clone();
        url.set_query(Some(signed.canonical_query.as_str()).filter(|q| !q.is_empty()));
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, &signed.authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(Vec::new());
        for (name, value) in &signed.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                CallError::NotSent(format!(
                    "could not reach Aliyun for {action}: {}",
                    http::error_text(e)
                ))
            } else if e.is_timeout() {
                CallError::Unknown(format!(
                    "{action} timed out after {}",
                    humantime::format_duration(self.settings.timeout)
                ))
            } else {
                CallError::Unknown(format!("{action} failed: {}", http::error_text(e)))
            }
        })?;
        http::read_answer(response, now).await.map_err(|cut| {
            CallError::Unknown(format!(
                "{action}: the answer was cut off ({})",
                http::error_text(cut.error)
            ))
        })
    }

    /// `TemplateParam` for a message, or why it cannot be built.
    fn template_param(
        &self,
        mapping: &TemplateMapping,
        message: &Outbound<'_>,
    ) -> Result<Option<String>, String> {
        let params = cloud_sign::message_params(message)?;
        let object: serde_json::Map<String, Value> = match &mapping.params {
            None => params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            Some(renames) => {
                let mut object = serde_json::Map::new();
                for (variable, key) in renames {
                    let value = params.iter().find(|(k, _)| k == key).ok_or_else(|| {
                        format!(
                            "Aliyun template {code} needs ${{{variable}}} from parameter `{key}`, which recall template `{t}` does not set: add `{key} = \"...\"` to templates/{ch}/{t}.params.toml, or map ${{{variable}}} to another parameter under [senders.{name}.templates.{t}] params in recall.toml",
                            code = mapping.code,
                            t = message.template,
                            ch = message.channel.as_str(),
                            name = self.name,
                        )
                    })?;
                    object.insert(variable.clone(), Value::String(value.1.clone()));
                }
                object
            }
        };
        Ok((!object.is_empty()).then(|| Value::Object(object).to_string()))
    }

    /// After an attempt with an unknown result: did that SendSms go
    /// through? `Ok(true)` if a message with our OutId is at Aliyun
    /// (waiting for or having its receipt), `Ok(false)` if not; `Err` with
    /// the outcome to return if Aliyun could not be asked.
    async fn went_through(
        &self,
        message: &Outbound<'_>,
        phone: &str,
        mapping: &TemplateMapping,
    ) -> Result<bool, SendOutcome> {
        let out_id = message.id.to_string();
        let today = message.now.with_timezone(&china::offset()).date_naive();
        // The earlier attempt went out today or, across China midnight,
        // yesterday (dispatch backoff is capped well below a day).
        let days = [Some(today), today.checked_sub_days(Days::new(1))];
        for day in days.into_iter().flatten() {
            let send_date = day.format("%Y%m%d").to_string();
            for page in 1..=MAX_PAGES {
                let query = [
                    ("PhoneNumber", phone.to_string()),
                    ("SendDate", send_date.clone()),
                    ("PageSize", PAGE_SIZE.to_string()),
                    ("CurrentPage", page.to_string()),
                ]
                .map(|(k, v)| (k.to_string(), v));
                let doubt = |why: String, retry_after: Option<Duration>| SendOutcome::Retryable {
                    error: in_doubt(&format!(
                        "cannot tell whether the earlier SendSms went through ({RESULT_UNKNOWN}; not sending again until Aliyun can be asked): {why}"
                    )),
                    retry_after,
                };
                let answer = self
                    .call("QuerySendDetails", &query, message.now)
                    .await
                    .map_err(|e| doubt(e.text(), None))?;
                let code = answer.field("Code").unwrap_or_default();
                if answer.status >= 300 || code != "OK" {
                    let text = scrub(answer.field("Message").unwrap_or(""), message);
                    let (_, hint) = verdict(code, &text, message.now);
                    return Err(doubt(
                        format!(
                            "QuerySendDetails answered HTTP {} {code} {text}; {hint}",
                            answer.status
                        ),
                        answer.retry_after,
                    ));
                }
                let body = answer.body.as_ref().unwrap_or(&Value::Null);
                let records = body
                    .pointer("/SmsSendDetailDTOs/SmsSendDetailDTO")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for record in records {
                    let ours = text_of(record.get("OutId")).as_deref() == Some(out_id.as_str())
                        && text_of(record.get("TemplateCode"))
                            .is_none_or(|code| code == mapping.code);
                    if !ours {
                        continue;
                    }
                    match text_of(record.get("SendStatus")).as_deref() {
                        // 1 waiting for the receipt, 3 delivered.
                        Some("1") | Some("3") => {
                            tracing::info!(
                                id = message.id,
                                to = %mask::phone(phone),
                                send_date = %send_date,
                                "the earlier SendSms went through; not sending again"
                            );
                            return Ok(true);
                        }
                        // 2: Aliyun took it but the carrier did not deliver
                        // it; the customer has nothing, so send again.
                        _ => tracing::info!(
                            id = message.id,
                            to = %mask::phone(phone),
                            err_code = %text_of(record.get("ErrCode")).unwrap_or_default(),
                            "the earlier SendSms was not delivered; sending again"
                        ),
                    }
                }
                let total: usize = text_of(body.get("TotalCount"))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if records.len() < PAGE_SIZE || page * PAGE_SIZE >= total {
                    break;
                }
            }
        }
        Ok(false)
    }

    async fn send_sms(
        &self,
        message: &Outbound<'_>,
        phone: &str,
        mapping: &TemplateMapping,
        param: Option<String>,
    ) -> SendOutcome {
        let mut query = vec![
            ("PhoneNumbers".to_string(), phone.to_string()),
            ("SignName".to_string(), self.sign_name.clone()),
            ("TemplateCode".to_string(), mapping.code.clone()),
            ("OutId".to_string(), message.id.to_string()),
        ];
        if let Some(param) = param {
            query.push(("TemplateParam".to_string(), param));
        }
        let answer = match self.call("SendSms", &query, message.now).await {
            Ok(answer) => answer,
            Err(CallError::NotSent(error)) => {
                return SendOutcome::Retryable {
                    error,
                    retry_after: None,
                };
            }
            Err(CallError::Unknown(error)) => {
                return SendOutcome::Retryable {
                    error: in_doubt(&format!(
                        "{error} ({RESULT_UNKNOWN}: the next attempt asks QuerySendDetails before sending again)"
                    )),
                    retry_after: None,
                };
            }
        };
        let code = answer.field("Code").unwrap_or_default().to_string();
        let text = scrub(answer.field("Message").unwrap_or(""), message);
        tracing::debug!(
            id = message.id,
            status = answer.status,
            code = %code,
            request_id = answer.field("RequestId").unwrap_or(""),
            "aliyun SendSms answered"
        );
        if answer.status >= 500 || (answer.status < 300 && code.is_empty()) {
            return SendOutcome::Retryable {
                error: in_doubt(&format!(
                    "Aliyun answered SendSms with HTTP {} {code} {text} ({RESULT_UNKNOWN}: the next attempt asks QuerySendDetails before sending again)",
                    answer.status
                )),
                retry_after: answer.retry_after,
            };
        }
        if code.is_empty() {
            let error = format!(
                "Aliyun answered SendSms with HTTP {} and no Code",
                answer.status
            );
            return if answer.status == 429 {
                SendOutcome::Retryable {
                    error,
                    retry_after: answer.retry_after,
                }
            } else {
                SendOutcome::Permanent { error }
            };
        }
        let (verdict, hint) = verdict(&code, &text, message.now);
        let error = format!(
            "Aliyun {code}: {text} — {hint} (recall template `{}`, Aliyun template {})",
            message.template, mapping.code
        );
        match verdict {
            Verdict::Sent => match answer.field("BizId") {
                Some(biz_id) => {
                    tracing::info!(
                        id = message.id,
                        to = %mask::phone(phone),
                        template = message.template,
                        biz_id,
                        "aliyun accepted the message"
                    );
                    SendOutcome::Sent {
                        provider_id: biz_id.to_string(),
                    }
                }
                None => SendOutcome::Sent {
                    provider_id: format!("OutId:{}", message.id),
                },
            },
            Verdict::Retry(wait) => SendOutcome::Retryable {
                error,
                retry_after: answer.retry_after.or(wait),
            },
            Verdict::Permanent => SendOutcome::Permanent { error },
            Verdict::Refused => SendOutcome::Refused { code, error },
            Verdict::OptedOut => SendOutcome::OptedOut {
                reason: format!("Aliyun {code}: {text} — {hint}"),
            },
        }
    }
}

/// Aliyun's text, fit for an error: secrets, the number (read as a mainland
/// one when it has no country code), the name and the content out of it.
fn scrub(text: &str, message: &Outbound<'_>) -> String {
    kit::scrub(text, message, Some(CountryCode::CHINA))
}

/// A JSON string or number as text (Aliyun sends some counts as either).
fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Sender for AliyunSms {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let (mapping, param) =
            match cloud_sign::mapped(&self.templates, &self.name, message, UNMAPPED, |mapping| {
                self.template_param(mapping, message)
            }) {
                Ok(template) => template,
                Err(outcome) => return outcome,
            };
        let phone = phone_number(message.address);
        if message.in_doubt {
            match self.went_through(message, &phone, mapping).await {
                Ok(true) => {
                    // QuerySendDetails does not return the BizId; the OutId
                    // is what identifies the message at Aliyun.
                    return SendOutcome::Sent {
                        provider_id: format!("OutId:{}", message.id),
                    };
                }
                Ok(false) => {}
                Err(outcome) => return outcome,
            }
        }
        self.send_sms(message, &phone, mapping, param).await
    }
}

#[cfg(test)]
mod tests;
