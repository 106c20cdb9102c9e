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
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::cloud_sign::{self, hmac_sha256, rfc3986, sha256_hex};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender, in_doubt};
use crate::mask;

/// The `kind` of this sender in `recall.toml`.
pub const KIND: &str = "aliyun_sms";
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
    #[serde(default = "default_timeout")]
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

fn default_timeout() -> String {
    "10s".to_string()
}

fn default_access_key_id_env() -> String {
    "ALIYUN_ACCESS_KEY_ID".to_string()
}

fn default_access_key_secret_env() -> String {
    "ALIYUN_ACCESS_KEY_SECRET".to_string()
}

/// The checked settings of a config (no secrets, no client yet).
#[derive(Debug, Clone)]
struct Settings {
    endpoint: Url,
    host: String,
    timeout: Duration,
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
fn validate(name: &str, config: &Config) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    if config.sign_name.trim().is_empty() {
        problems.push(
            "sign_name is empty: set it to the approved signature (签名) from the Aliyun SMS console"
                .to_string(),
        );
    }
    if config.templates.is_empty() {
        problems.push(format!(
            "no templates are mapped: add [senders.{name}.templates.<recall template>] with code = \"SMS_...\" for each SMS template"
        ));
    }
    for (template, mapping) in &config.templates {
        if mapping.code.trim().is_empty() {
            problems.push(format!(
                "[senders.{name}.templates.{template}] code is empty: set it to the approved template's code, like \"SMS_154950909\""
            ));
        }
        for (variable, param) in mapping.params.iter().flatten() {
            if variable.trim().is_empty() || param.trim().is_empty() {
                problems.push(format!(
                    "[senders.{name}.templates.{template}] params: names must not be empty"
                ));
            }
        }
    }
    let endpoint = cloud_sign::parse_endpoint(
        "endpoint",
        &config.endpoint,
        "https://dysmsapi.aliyuncs.com",
    )
    .map_err(|e| problems.push(e))
    .ok();
    let timeout = cloud_sign::parse_timeout(&config.timeout)
        .map_err(|e| problems.push(e))
        .ok();
    for (field, var) in [
        ("access_key_id_env", &config.access_key_id_env),
        ("access_key_secret_env", &config.access_key_secret_env),
    ] {
        if var.trim().is_empty() {
            problems.push(format!(
                "{field} is empty: name the environment variable that holds the secret"
            ));
        }
    }
    match (endpoint, timeout) {
        (Some(endpoint), Some(timeout)) if problems.is_empty() => {
            let host = cloud_sign::host_header(&endpoint).unwrap_or_default();
            Ok(Settings {
                endpoint,
                host,
                timeout,
            })
        }
        _ => Err(problems),
    }
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let settings = validate(name, config).map_err(|p| BuildError::new(name, p.join("; ")))?;
    let id = ctx.secret(name, &config.access_key_id_env);
    let secret = ctx.secret(name, &config.access_key_secret_env);
    let (access_key_id, access_key_secret) = match (id, secret) {
        (Ok(id), Ok(secret)) => (id, secret),
        (id, secret) => {
            let missing: Vec<String> = [id.err(), secret.err()]
                .into_iter()
                .flatten()
                .map(|e| e.message)
                .collect();
            return Err(BuildError::new(name, missing.join("; ")));
        }
    };
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .user_agent(concat!("recall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError::new(name, format!("cannot build the HTTP client: {e}")))?;
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
    settings: Settings,
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

/// The number as Aliyun wants it: mainland numbers as 11 digits (the only
/// form `QuerySendDetails` takes), others as country code + number.
pub fn phone_number(address: &str) -> String {
    let compact: String = address
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    for prefix in ["+86", "0086", "86"] {
        if let Some(rest) = compact.strip_prefix(prefix)
            && rest.len() == 11
            && rest.starts_with('1')
            && rest.chars().all(|c| c.is_ascii_digit())
        {
            return rest.to_string();
        }
    }
    compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))
        .unwrap_or(&compact)
        .to_string()
}

// ---------------------------------------------------------------------------
// Error codes.

/// What an Aliyun `Code` means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Try again, after this long if known.
    Retry(Option<Duration>),
    Permanent,
    OptedOut,
}

/// Maps an Aliyun `Code` (SendSms business codes and API gateway codes) to
/// a verdict and a hint for staff. From Aliyun's "国内消息API错误码" list
/// (https://help.aliyun.com/zh/sms/developer-reference/api-error-codes) and
/// the OpenAPI gateway's common codes.
pub fn verdict(code: &str, message: &str, now: DateTime<Utc>) -> (Verdict, &'static str) {
    use Verdict::*;
    match code {
        "OK" => (Sent, ""),
        // 用户已退订推广短信: the customer unsubscribed (Aliyun's answer:
        // https://developer.aliyun.com/ask/631150).
        "isv.CUSTOMER_REFUSED" => (
            OptedOut,
            "the customer unsubscribed (回复退订) from this signature's messages",
        ),
        // Per-number flow control: 1/min, 5/hour, 10/day by default.
        "isv.BUSINESS_LIMIT_CONTROL" => (
            Retry(Some(flow_control_wait(message, now))),
            "Aliyun's per-number flow control (业务限流); it can be raised in the SMS console",
        ),
        "isv.DAY_LIMIT_CONTROL" => (
            Retry(Some(cloud_sign::until_china_midnight(now))),
            "the account's daily sending limit is reached; raise it in the SMS console or wait for tomorrow",
        ),
        "isv.MONTH_LIMIT_CONTROL" => (
            Retry(None),
            "the account's monthly sending limit is reached; raise it in the SMS console",
        ),
        "isv.AMOUNT_NOT_ENOUGH" | "isv.OUT_OF_SERVICE" => (
            Retry(None),
            "the Aliyun account is out of balance (业务停机/余额不足); top it up and the messages go out on retry",
        ),
        "isp.SYSTEM_ERROR" | "isp.GATEWAY_ERROR" | "isv.SYSTEM_ERROR" | "ServiceUnavailable"
        | "InternalError" | "SignatureNonceUsed" => (Retry(None), "a passing error at Aliyun"),
        c if c.starts_with("Throttling") => (Retry(None), "Aliyun throttled the API calls"),
        // The number.
        "isv.MOBILE_NUMBER_ILLEGAL" => (
            Permanent,
            "the customer's phone number is not a valid mobile number",
        ),
        "isv.MOBILE_COUNT_OVER_LIMIT" => (Permanent, "too many numbers in one request"),
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED" => (
            Permanent,
            "an international template cannot go to a mainland number; map a domestic template",
        ),
        // The template, the signature, the parameters, the content.
        "isv.SMS_TEMPLATE_ILLEGAL" => (
            Permanent,
            "the template code is not an approved template of this account: check `code` in recall.toml against the SMS console",
        ),
        "isv.SMS_SIGNATURE_ILLEGAL" | "isv.SMS_SIGN_ILLEGAL" | "isv.SIGN_STATE_ILLEGAL" => (
            Permanent,
            "the signature is not approved or not usable: check `sign_name` in recall.toml against the SMS console",
        ),
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL" => (
            Permanent,
            "the signature's type does not fit the template's (a verification-code signature cannot send notices)",
        ),
        "isv.TEMPLATE_MISSING_PARAMETERS" => (
            Permanent,
            "the template needs a variable the message did not fill: check <template>.params.toml and `params` in recall.toml",
        ),
        "isv.INVALID_JSON_PARAM"
        | "isv.TEMPLATE_PARAMS_ILLEGAL"
        | "isv.PARAM_LENGTH_LIMIT"
        | "isv.PARAM_NOT_SUPPORT_URL"
        | "isv.INVALID_PARAMETERS" => (
            Permanent,
            "Aliyun rejected the template parameters: check <template>.params.toml",
        ),
        // Keyword blacklist: the content (a variable) hit a forbidden word.
        "isv.BLACK_KEY_CONTROL_LIMIT" | "isv.SMS_CONTENT_ILLEGAL" => (
            Permanent,
            "the message content hit Aliyun's forbidden-keyword list; change the wording or the parameters",
        ),
        "isv.EXTEND_CODE_ERROR" => (Permanent, "extension code misuse"),
        // The account and its credentials: configuration.
        "isp.RAM_PERMISSION_DENY" => (
            Permanent,
            "configuration: the AccessKey's RAM user lacks SMS permission (grant AliyunDysmsFullAccess or dysms:SendSms and dysms:QuerySendDetails)",
        ),
        "isv.PRODUCT_UN_SUBSCRIPT"
        | "isv.PRODUCT_UNSUBSCRIBE"
        | "isv.ACCOUNT_NOT_EXISTS"
        | "isv.ACCOUNT_ABNORMAL"
        | "isv.DENY_IP_RANGE" => (
            Permanent,
            "configuration: the Aliyun account cannot send SMS from here; see the SMS console",
        ),
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "InvalidAccessKeyId" => (
            Permanent,
            "configuration: the AccessKey ID or secret in the environment is wrong or disabled",
        ),
        // The signing time is the dispatcher's clock: the system clock, or
        // `recall dispatch --at`. Off by more than 15 minutes, nothing can be
        // sent, but the message itself is fine: retry, do not fail it.
        "InvalidTimeStamp.Expired" => (
            Retry(None),
            "the signing time is more than 15 minutes off Aliyun's: sync this machine's clock (and do not dispatch with --at to a real provider)",
        ),
        c if c.starts_with("Forbidden") => (
            Permanent,
            "configuration: the AccessKey may not call this API",
        ),
        // Unknown codes: the `isv.` family is about the request (it will not
        // change by itself); anything else is taken as passing.
        c if c.starts_with("isv.") || c.starts_with("Invalid") || c.starts_with("Missing") => {
            (Permanent, "Aliyun rejected the request")
        }
        _ => (Retry(None), "unrecognised Aliyun answer, taken as passing"),
    }
}

/// How long a per-number flow control lasts, from its message (触发分钟级流控
/// / 小时级 / 天级).
fn flow_control_wait(message: &str, now: DateTime<Utc>) -> Duration {
    let lower = message.to_lowercase();
    if message.contains("天") || message.contains("日") || lower.contains("day") {
        cloud_sign::until_china_midnight(now)
    } else if message.contains("小时") || lower.contains("hour") {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(60)
    }
}

// ---------------------------------------------------------------------------
// Calls.

/// What came back from one call.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Option<Value>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.body.as_ref()?.get(name)?.as_str()
    }
}

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

/// A transport error as text, with its causes but without the URL (whose
/// query holds the phone number).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl AliyunSms {
    /// One signed RPC call: parameters in the query, empty body.
    async fn call(
        &self,
        action: &str,
        query: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Answer, CallError> {
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
                    describe(e)
                ))
            } else if e.is_timeout() {
                CallError::Unknown(format!(
                    "{action} timed out after {}",
                    humantime::format_duration(self.settings.timeout)
                ))
            } else {
                CallError::Unknown(format!("{action} failed: {}", describe(e)))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = cloud_sign::retry_after(response.headers(), now);
        let bytes = response.bytes().await.map_err(|e| {
            CallError::Unknown(format!(
                "{action}: the answer was cut off ({})",
                describe(e)
            ))
        })?;
        Ok(Answer {
            status,
            retry_after,
            body: serde_json::from_slice(&bytes).ok(),
        })
    }

    /// `TemplateParam` for a message, or why it cannot be built.
    fn template_param(
        &self,
        mapping: &TemplateMapping,
        message: &Outbound<'_>,
    ) -> Result<Option<String>, String> {
        let params = cloud_sign::template_params(message.params).map_err(|e| {
            format!(
                "{e} (recall template `{}`); check templates/{}/{}.params.toml",
                message.template,
                message.channel.as_str(),
                message.template
            )
        })?;
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
        let today = message.now.with_timezone(&cloud_sign::china()).date_naive();
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
                    let text = cloud_sign::scrub(answer.field("Message").unwrap_or(""), phone);
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
        let text = cloud_sign::scrub(answer.field("Message").unwrap_or(""), phone);
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
            Verdict::OptedOut => SendOutcome::OptedOut {
                reason: format!("Aliyun {code}: {text} — {hint}"),
            },
        }
    }
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
        let Some(mapping) = self.templates.get(message.template) else {
            return SendOutcome::Permanent {
                error: format!(
                    "sender `{name}` has no Aliyun template for recall template `{t}`: add [senders.{name}.templates.{t}] with code = \"SMS_...\" (the approved template's code from the Aliyun SMS console) to recall.toml",
                    name = self.name,
                    t = message.template,
                ),
            };
        };
        let param = match self.template_param(mapping, message) {
            Ok(param) => param,
            Err(error) => return SendOutcome::Permanent { error },
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
mod tests {
    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;
    use crate::testing::{Recorded, Reply, TestServer};
    use serde_json::json;

    const SECRET: &str = "test-secret-do-not-leak";

    /// The published example of Alibaba Cloud's "V3 request body &
    /// signature mechanism" ("Fixed parameter values" / 签名示例):
    /// https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
    /// (Chinese, V3版本请求体&签名机制: https://help.aliyun.com/document_detail/2593177.html).
    #[test]
    fn signs_the_published_example_exactly() {
        let query = [
            (
                "ImageId".to_string(),
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_string(),
            ),
            ("RegionId".to_string(), "cn-shanghai".to_string()),
        ];
        let signed = sign(
            &Acs3Request {
                method: "POST",
                host: "ecs.cn-shanghai.aliyuncs.com",
                path: "/",
                query: &query,
                action: "RunInstances",
                version: "2014-05-26",
                body: b"",
                date: DateTime::parse_from_rfc3339("2023-10-26T10:22:32Z")
                    .unwrap()
                    .with_timezone(&Utc),
                nonce: "3156853299f313e23d1673dc12e1703d",
            },
            "YourAccessKeyId",
            "YourAccessKeySecret",
        );
        assert_eq!(
            signed.canonical_request,
            "POST\n\
             /\n\
             ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\n\
             x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\
             \n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            signed.signature,
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        assert_eq!(
            signed.authorization,
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn the_canonical_query_is_sorted_and_rfc3986_encoded() {
        let query = [
            ("b".to_string(), "a b*~".to_string()),
            ("A".to_string(), r#"{"n":"王"}"#.to_string()),
        ];
        let signed = sign(
            &Acs3Request {
                method: "POST",
                host: "h",
                path: "/",
                query: &query,
                action: "X",
                version: "v",
                body: b"",
                date: Utc::now(),
                nonce: "n",
            },
            "id",
            "secret",
        );
        assert_eq!(
            signed.canonical_query,
            "A=%7B%22n%22%3A%22%E7%8E%8B%22%7D&b=a%20b%2A~"
        );
    }

    #[test]
    fn mainland_numbers_lose_their_country_code() {
        assert_eq!(phone_number("13812345678"), "13812345678");
        assert_eq!(phone_number("+86 138-1234-5678"), "13812345678");
        assert_eq!(phone_number("008613812345678"), "13812345678");
        assert_eq!(phone_number("8613812345678"), "13812345678");
        assert_eq!(phone_number("+85261234567"), "85261234567");
    }

    // -----------------------------------------------------------------------
    // Against a local server.

    fn config(endpoint: &str) -> Config {
        toml::from_str(&format!(
            r#"
            sign_name = "美丽诊所"
            endpoint = "{endpoint}"
            timeout = "300ms"
            [templates.warning_offer]
            code = "SMS_154950909"
            [templates.churned_recall]
            code = "SMS_000000002"
            params = {{ customer = "name", tel = "phone" }}
            "#
        ))
        .unwrap()
    }

    fn secrets() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([
                ("ALIYUN_ACCESS_KEY_ID".to_string(), "LTAItestid".to_string()),
                ("ALIYUN_ACCESS_KEY_SECRET".to_string(), SECRET.to_string()),
            ])),
            ..Context::default()
        }
    }

    fn sender(server: &TestServer) -> Arc<dyn Sender> {
        build("aliyun", &config(&server.url), &secrets())
            .map_err(|e| e.to_string())
            .unwrap()
    }

    fn now() -> DateTime<Utc> {
        // 09:02:03 in Beijing on 2026-03-02.
        DateTime::parse_from_rfc3339("2026-03-02T01:02:03Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const PARAMS: &str = r#"{"name":"王女士","clinic":"美丽诊所","phone":"400-000-0000"}"#;

    fn outbound<'a>(recipient: &'a Recipient, template: &'a str) -> Outbound<'a> {
        Outbound {
            id: 42,
            channel: Channel::Sms,
            rule_id: "warning",
            template,
            subject: None,
            content: "王女士您好，美丽诊所想念您",
            html: None,
            params: Some(PARAMS),
            recipient,
            address: "+8613812345678",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: now(),
        }
    }

    fn ok(biz_id: &str) -> Reply {
        Reply::json(
            200,
            json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "R1"}),
        )
    }

    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"Code": code, "Message": message, "RequestId": "R2"}),
        )
    }

    fn action(request: &Recorded) -> &str {
        request.header("x-acs-action").unwrap_or("")
    }

    fn query(request: &Recorded, name: &str) -> Option<String> {
        request
            .query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Recomputes the signature of a recorded request from its bytes alone,
    /// following the documented steps, and checks it against the
    /// `Authorization` header.
    fn assert_signature_verifies(request: &Recorded) {
        let authorization = request.header("authorization").expect("authorization");
        let rest = authorization
            .strip_prefix("ACS3-HMAC-SHA256 ")
            .expect("ACS3-HMAC-SHA256");
        let fields: BTreeMap<&str, &str> = rest
            .split(',')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        assert_eq!(fields["Credential"], "LTAItestid");
        assert_eq!(
            fields["SignedHeaders"],
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        // The query as sent must already be canonical.
        let raw_query = request.target.split_once('?').map_or("", |(_, q)| q);
        let mut pairs = request.query();
        pairs.sort();
        let canonical: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", rfc3986(k), rfc3986(v)))
            .collect();
        assert_eq!(raw_query, canonical.join("&"));
        let payload = sha256_hex(&request.body);
        assert_eq!(
            request.header("x-acs-content-sha256"),
            Some(payload.as_str())
        );
        let headers: String = fields["SignedHeaders"]
            .split(';')
            .map(|h| format!("{h}:{}\n", request.header(h).unwrap().trim()))
            .collect();
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            request.method,
            request.path(),
            raw_query,
            headers,
            fields["SignedHeaders"],
            payload
        );
        let string_to_sign = format!(
            "ACS3-HMAC-SHA256\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        assert_eq!(
            fields["Signature"],
            hex::encode(hmac_sha256(SECRET.as_bytes(), string_to_sign.as_bytes()))
        );
    }

    #[tokio::test]
    async fn sends_the_exact_request_aliyun_expects() {
        let server = TestServer::start(|_, _| ok("900619746936498440^0")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&outbound(&recipient, "warning_offer"))
            .await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "900619746936498440^0".into()
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/");
        assert!(request.body.is_empty());
        assert_eq!(
            request.query(),
            [
                ("OutId".to_string(), "42".to_string()),
                ("PhoneNumbers".to_string(), "13812345678".to_string()),
                ("SignName".to_string(), "美丽诊所".to_string()),
                ("TemplateCode".to_string(), "SMS_154950909".to_string()),
                ("TemplateParam".to_string(), PARAMS.to_string()),
            ]
        );
        assert_eq!(action(request), "SendSms");
        assert_eq!(request.header("x-acs-version"), Some("2017-05-25"));
        assert_eq!(request.header("x-acs-date"), Some("2026-03-02T01:02:03Z"));
        let host = server.url.trim_start_matches("http://");
        assert_eq!(request.header("host"), Some(host));
        let nonce = request.header("x-acs-signature-nonce").unwrap();
        assert!(nonce.len() == 32 && nonce.chars().all(|c| c.is_ascii_hexdigit()));
        assert_signature_verifies(request);
        let everything = format!("{request:?}");
        assert!(!everything.contains(SECRET));
    }

    #[tokio::test]
    async fn each_request_gets_a_fresh_nonce() {
        let server = TestServer::start(|_, _| ok("1")).await;
        let sender = sender(&server);
        let recipient = Recipient::default();
        sender.send(&outbound(&recipient, "warning_offer")).await;
        sender.send(&outbound(&recipient, "warning_offer")).await;
        let requests = server.requests();
        assert_ne!(
            requests[0].header("x-acs-signature-nonce"),
            requests[1].header("x-acs-signature-nonce")
        );
    }

    #[tokio::test]
    async fn renamed_params_fill_the_providers_variables() {
        let server = TestServer::start(|_, _| ok("1")).await;
        let recipient = Recipient::default();
        sender(&server)
            .send(&outbound(&recipient, "churned_recall"))
            .await;
        let request = &server.requests()[0];
        let param: Value = serde_json::from_str(&query(request, "TemplateParam").unwrap()).unwrap();
        assert_eq!(param, json!({"customer": "王女士", "tel": "400-000-0000"}));
    }

    async fn outcome_of(reply: Reply) -> SendOutcome {
        let server = TestServer::start(move |_, _| reply.clone()).await;
        let recipient = Recipient::default();
        sender(&server)
            .send(&outbound(&recipient, "warning_offer"))
            .await
    }

    fn retryable(outcome: &SendOutcome) -> Option<Option<Duration>> {
        match outcome {
            SendOutcome::Retryable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    fn error_text(outcome: &SendOutcome) -> &str {
        match outcome {
            SendOutcome::Retryable { error, .. } | SendOutcome::Permanent { error } => error,
            SendOutcome::OptedOut { reason } => reason,
            _ => "",
        }
    }

    #[tokio::test]
    async fn flow_control_is_retried_when_it_lifts() {
        let minute = outcome_of(error(
            200,
            "isv.BUSINESS_LIMIT_CONTROL",
            "触发分钟级流控Permits:1",
        ))
        .await;
        assert_eq!(retryable(&minute), Some(Some(Duration::from_secs(60))));
        let hour = outcome_of(error(
            200,
            "isv.BUSINESS_LIMIT_CONTROL",
            "触发小时级流控Permits:5",
        ))
        .await;
        assert_eq!(retryable(&hour), Some(Some(Duration::from_secs(3600))));
        // 09:02:03 in Beijing: the day's limit lifts at midnight (+1 min).
        let day = outcome_of(error(
            200,
            "isv.BUSINESS_LIMIT_CONTROL",
            "触发天级流控Permits:10",
        ))
        .await;
        assert_eq!(
            retryable(&day),
            Some(Some(Duration::from_secs(14 * 3600 + 57 * 60 + 57 + 60)))
        );
        let throttled = outcome_of(error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ))
        .await;
        assert_eq!(retryable(&throttled), Some(None));
    }

    #[tokio::test]
    async fn a_retry_after_header_wins() {
        let outcome = outcome_of(
            error(200, "isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
                .header("Retry-After", "7"),
        )
        .await;
        assert_eq!(retryable(&outcome), Some(Some(Duration::from_secs(7))));
    }

    #[tokio::test]
    async fn system_errors_and_5xx_are_retried() {
        let system = outcome_of(error(200, "isp.SYSTEM_ERROR", "系统错误")).await;
        assert_eq!(retryable(&system), Some(None));
        let outage =
            outcome_of(Reply::text(503, "Service Unavailable").header("Retry-After", "30")).await;
        assert_eq!(retryable(&outage), Some(Some(Duration::from_secs(30))));
        assert!(error_text(&outage).contains(RESULT_UNKNOWN));
    }

    #[tokio::test]
    async fn bad_numbers_templates_and_signatures_are_permanent() {
        for (code, message, says) in [
            (
                "isv.MOBILE_NUMBER_ILLEGAL",
                "非法手机号",
                "not a valid mobile number",
            ),
            (
                "isv.SMS_TEMPLATE_ILLEGAL",
                "模板不合法",
                "`code` in recall.toml",
            ),
            (
                "isv.SMS_SIGNATURE_ILLEGAL",
                "签名不合法",
                "`sign_name` in recall.toml",
            ),
            (
                "isv.TEMPLATE_MISSING_PARAMETERS",
                "模板缺少变量",
                "params.toml",
            ),
            (
                "isv.BLACK_KEY_CONTROL_LIMIT",
                "黑名单管控",
                "forbidden-keyword",
            ),
        ] {
            let outcome = outcome_of(error(200, code, message)).await;
            match &outcome {
                SendOutcome::Permanent { error } => {
                    assert!(error.contains(code) && error.contains(says), "{error}")
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn credential_errors_are_permanent_and_blame_the_configuration() {
        let outcome = outcome_of(error(
            400,
            "SignatureDoesNotMatch",
            "Specified signature does not match our calculation.",
        ))
        .await;
        let error = error_text(&outcome);
        assert!(
            matches!(outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );
        assert!(
            error.contains("configuration") && !error.contains(SECRET),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unsubscribed_customer_has_opted_out() {
        let outcome = outcome_of(error(200, "isv.CUSTOMER_REFUSED", "用户已退订推广短信")).await;
        assert!(
            matches!(&outcome, SendOutcome::OptedOut { reason } if reason.contains("unsubscribed")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn provider_text_never_carries_the_number_unmasked() {
        let outcome = outcome_of(error(
            200,
            "isv.MOBILE_NUMBER_ILLEGAL",
            "bad number 13812345678",
        ))
        .await;
        let error = error_text(&outcome);
        assert!(
            error.contains("138****5678") && !error.contains("13812345678"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_timeout_is_retryable_with_its_result_unknown() {
        let outcome = outcome_of(ok("late").delayed(Duration::from_secs(3))).await;
        assert_eq!(retryable(&outcome), Some(None));
        assert!(error_text(&outcome).contains(RESULT_UNKNOWN), "{outcome:?}");
        assert!(error_text(&outcome).contains("timed out"), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_retryable_and_not_in_doubt() {
        // A port nothing listens on: bind one, then free it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let sender = build("aliyun", &config(&url), &secrets())
            .map_err(|e| e.to_string())
            .unwrap();
        let recipient = Recipient::default();
        let outcome = sender.send(&outbound(&recipient, "warning_offer")).await;
        assert_eq!(retryable(&outcome), Some(None));
        let error = error_text(&outcome);
        assert!(
            !error.contains(RESULT_UNKNOWN) && !error.contains("13812345678"),
            "{error}"
        );
    }

    /// The second attempt after a timeout, as the dispatcher hands it over.
    async fn retry_after_timeout(server: &TestServer) -> SendOutcome {
        let sender = sender(server);
        let recipient = Recipient::default();
        let first = sender.send(&outbound(&recipient, "warning_offer")).await;
        let previous = error_text(&first).to_string();
        assert!(previous.contains(RESULT_UNKNOWN), "{first:?}");
        assert!(
            crate::store::outbox::is_in_doubt(Some(&previous)),
            "{first:?}"
        );
        sender
            .send(&Outbound {
                attempt: 2,
                previous_error: Some(&previous),
                in_doubt: true,
                ..outbound(&recipient, "warning_offer")
            })
            .await
    }

    fn details(records: Value) -> Reply {
        let n = records.as_array().map_or(0, Vec::len);
        Reply::json(
            200,
            json!({
                "Code": "OK", "Message": "OK", "RequestId": "Q",
                "TotalCount": n,
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": records}
            }),
        )
    }

    #[tokio::test]
    async fn after_a_timeout_a_send_that_went_through_is_not_sent_again() {
        let server = TestServer::start(|request, index| match (index, action(request)) {
            (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
            (_, "QuerySendDetails") => details(json!([
                {"PhoneNum": "13812345678", "SendStatus": 3, "ErrCode": "DELIVERED",
                 "TemplateCode": "SMS_000000009", "OutId": "42", "SendDate": "2026-03-02 09:00:01"},
                {"PhoneNum": "13812345678", "SendStatus": 3, "ErrCode": "DELIVERED",
                 "TemplateCode": "SMS_154950909", "OutId": "42", "SendDate": "2026-03-02 09:01:01"}
            ])),
            _ => error(500, "Unexpected", "unexpected request"),
        })
        .await;
        let outcome = retry_after_timeout(&server).await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "OutId:42".into()
            }
        );
        let requests = server.requests();
        let actions: Vec<&str> = requests.iter().map(action).collect();
        assert_eq!(actions, ["SendSms", "QuerySendDetails"]);
        let query_request = &requests[1];
        assert_eq!(
            query_request.query(),
            [
                ("CurrentPage".to_string(), "1".to_string()),
                ("PageSize".to_string(), "50".to_string()),
                ("PhoneNumber".to_string(), "13812345678".to_string()),
                ("SendDate".to_string(), "20260302".to_string()),
            ]
        );
        assert_signature_verifies(query_request);
    }

    #[tokio::test]
    async fn after_a_timeout_a_send_that_did_not_go_through_is_sent_again() {
        let server = TestServer::start(|request, index| match (index, action(request)) {
            (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
            (_, "SendSms") => ok("second"),
            // Another message to the number, and ours, undelivered.
            (_, "QuerySendDetails") => details(json!([
                {"PhoneNum": "13812345678", "SendStatus": 3, "TemplateCode": "SMS_154950909", "OutId": "41"},
                {"PhoneNum": "13812345678", "SendStatus": 2, "ErrCode": "MK:0001",
                 "TemplateCode": "SMS_154950909", "OutId": "42"}
            ])),
            _ => error(500, "Unexpected", "unexpected request"),
        })
        .await;
        let outcome = retry_after_timeout(&server).await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "second".into()
            }
        );
        let requests = server.requests();
        let sequence: Vec<(&str, Option<String>)> = requests
            .iter()
            .map(|r| (action(r), query(r, "SendDate")))
            .collect();
        assert_eq!(
            sequence,
            [
                ("SendSms", None),
                ("QuerySendDetails", Some("20260302".to_string())),
                ("QuerySendDetails", Some("20260301".to_string())),
                ("SendSms", None),
            ]
        );
        assert_eq!(query(&requests[3], "OutId").as_deref(), Some("42"));
    }

    #[tokio::test]
    async fn when_aliyun_cannot_be_asked_nothing_is_sent_and_the_doubt_remains() {
        let server = TestServer::start(|request, index| match (index, action(request)) {
            (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
            (_, "QuerySendDetails") => error(503, "ServiceUnavailable", "try later"),
            _ => ok("must not happen"),
        })
        .await;
        let outcome = retry_after_timeout(&server).await;
        assert_eq!(retryable(&outcome), Some(None));
        assert!(error_text(&outcome).contains(RESULT_UNKNOWN), "{outcome:?}");
        let actions: Vec<String> = server
            .requests()
            .iter()
            .map(|r| action(r).to_string())
            .collect();
        assert_eq!(actions, ["SendSms", "QuerySendDetails"]);
    }

    /// The dispatcher dies while message 1 is being sent; at the next start
    /// it is requeued and dispatched again through a real store and
    /// dispatcher. Returns the report, Aliyun's requests (action, SendDate)
    /// and the message's (status, provider id, last error).
    async fn dispatch_after_a_crash(
        server: &TestServer,
    ) -> (
        crate::dispatch::DispatchReport,
        Vec<(String, Option<String>)>,
        (String, Option<String>, Option<String>),
    ) {
        use crate::clock::Clock;
        use crate::config::{ChannelPolicy, DispatchSettings};
        use crate::dispatch::{Dispatcher, Route};
        use crate::store::ingest::NewCustomer;
        use crate::store::queries::LogFilter;
        use crate::testing::{T0, outbox};

        let f = outbox(
            vec![NewCustomer {
                phone: Some("13812345678".into()),
                ..NewCustomer::named("C1", "王丽")
            }],
            Channel::Sms,
            None,
        );
        {
            let mut store = f.store.lock().unwrap();
            let claimed = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].id, 1);
            // The process dies here, SendSms maybe out, its answer unwritten.
            assert_eq!(store.requeue_interrupted(T0 + 60).unwrap(), 1);
        }
        let config: Config = toml::from_str(&format!(
            "sign_name = \"美丽诊所\"\nendpoint = \"{}\"\n[templates.t]\ncode = \"SMS_154950909\"\n",
            server.url
        ))
        .unwrap();
        let sender = build("aliyun", &config, &secrets())
            .map_err(|e| e.to_string())
            .unwrap();
        let dispatcher = Dispatcher::with_routes(
            BTreeMap::from([(
                Channel::Sms,
                Route::new("aliyun", sender, ChannelPolicy::plain("aliyun")),
            )]),
            DispatchSettings::default(),
            chrono_tz::Asia::Shanghai,
        );
        let now = DateTime::from_timestamp(T0 + 60, 0).unwrap();
        let report = dispatcher
            .drain(&f.store, Clock::Fixed(now), &|| false)
            .await
            .unwrap();
        let requests = server
            .requests()
            .iter()
            .map(|r| (action(r).to_string(), query(r, "SendDate")))
            .collect();
        let entry = f
            .store
            .lock()
            .unwrap()
            .log(&LogFilter::default())
            .unwrap()
            .remove(0);
        (
            report,
            requests,
            (entry.status, entry.provider_id, entry.last_error),
        )
    }

    #[tokio::test]
    async fn a_message_requeued_after_a_crash_that_aliyun_has_is_not_sent_again() {
        // T0 is 2026-05-29 04:27 in Beijing.
        let server = TestServer::start(|request, _| match action(request) {
            "QuerySendDetails" => details(json!([
                {"PhoneNum": "13812345678", "SendStatus": 1, "TemplateCode": "SMS_154950909",
                 "OutId": "1", "SendDate": "2026-05-29 04:26:41"}
            ])),
            _ => ok("second-send"),
        })
        .await;
        let (report, requests, entry) = dispatch_after_a_crash(&server).await;
        assert_eq!(report.sent, 1);
        assert_eq!(
            requests,
            [("QuerySendDetails".to_string(), Some("20260529".to_string()))]
        );
        assert_eq!(
            entry,
            ("sent".to_string(), Some("OutId:1".to_string()), None)
        );
    }

    #[tokio::test]
    async fn a_message_requeued_after_a_crash_is_looked_up_before_it_is_sent() {
        let server = TestServer::start(|request, _| match action(request) {
            "QuerySendDetails" => details(json!([])),
            _ => ok("after-lookup"),
        })
        .await;
        let (report, requests, entry) = dispatch_after_a_crash(&server).await;
        assert_eq!(report.sent, 1);
        assert_eq!(
            requests,
            [
                ("QuerySendDetails".to_string(), Some("20260529".to_string())),
                ("QuerySendDetails".to_string(), Some("20260528".to_string())),
                ("SendSms".to_string(), None),
            ]
        );
        assert_eq!(
            entry,
            ("sent".to_string(), Some("after-lookup".to_string()), None)
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_known_failure_does_not_ask_first() {
        let server = TestServer::start(|_, _| ok("2")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&Outbound {
                attempt: 2,
                previous_error: Some("Aliyun isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控Permits:1"),
                ..outbound(&recipient, "warning_offer")
            })
            .await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "2".into()
            }
        );
        let actions: Vec<String> = server
            .requests()
            .iter()
            .map(|r| action(r).to_string())
            .collect();
        assert_eq!(actions, ["SendSms"]);
    }

    // -----------------------------------------------------------------------
    // Configuration.

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<crate::senders::SenderConfig>(
            "kind = \"aliyun_sms\"\nsign_name = \"x\"\nsignname = \"y\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `signname`"), "{err}");
        let err = toml::from_str::<Config>(
            "sign_name = \"x\"\n[templates.a]\ncode = \"SMS_1\"\nid = \"2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `id`"), "{err}");
    }

    #[test]
    fn a_missing_secret_names_its_variable() {
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "ALIYUN_ACCESS_KEY_ID".to_string(),
                "id".to_string(),
            )])),
            ..Context::default()
        };
        let err = build("aliyun", &config("https://dysmsapi.aliyuncs.com"), &ctx)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("ALIYUN_ACCESS_KEY_SECRET") && !err.contains("ALIYUN_ACCESS_KEY_ID"),
            "{err}"
        );
        let mut renamed = config("https://dysmsapi.aliyuncs.com");
        renamed.access_key_id_env = "CLINIC_AK".into();
        let err = build("aliyun", &renamed, &Context::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CLINIC_AK"), "{err}");
    }

    #[test]
    fn every_config_problem_is_reported_at_once() {
        let config: Config =
            toml::from_str("sign_name = \" \"\nendpoint = \"dysmsapi\"\ntimeout = \"soon\"\n")
                .unwrap();
        let err = build("aliyun", &config, &secrets())
            .err()
            .unwrap()
            .to_string();
        for part in [
            "sign_name",
            "[senders.aliyun.templates.",
            "endpoint",
            "timeout",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }

    #[tokio::test]
    async fn a_template_without_a_mapping_says_what_to_add() {
        let server = TestServer::start(|_, _| ok("1")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&outbound(&recipient, "welcome_back"))
            .await;
        let error = error_text(&outcome);
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
        assert!(
            error.contains("[senders.aliyun.templates.welcome_back]") && error.contains("code = "),
            "{error}"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_missing_parameter_says_what_to_add() {
        let server = TestServer::start(|_, _| ok("1")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&Outbound {
                params: Some(r#"{"name":"王女士"}"#),
                ..outbound(&recipient, "churned_recall")
            })
            .await;
        let error = error_text(&outcome);
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
        assert!(
            error.contains("`phone`")
                && error.contains("templates/sms/churned_recall.params.toml")
                && error.contains("[senders.aliyun.templates.churned_recall]"),
            "{error}"
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn the_code_table_sorts_codes_into_outcomes() {
        let now = now();
        for (code, expected) in [
            ("OK", Verdict::Sent),
            ("isv.CUSTOMER_REFUSED", Verdict::OptedOut),
            (
                "isv.DAY_LIMIT_CONTROL",
                Verdict::Retry(Some(cloud_sign::until_china_midnight(now))),
            ),
            ("isv.AMOUNT_NOT_ENOUGH", Verdict::Retry(None)),
            ("isp.SYSTEM_ERROR", Verdict::Retry(None)),
            ("Throttling.Api", Verdict::Retry(None)),
            ("isp.RAM_PERMISSION_DENY", Verdict::Permanent),
            ("InvalidAccessKeyId.NotFound", Verdict::Permanent),
            ("InvalidTimeStamp.Expired", Verdict::Retry(None)),
            ("isv.SOMETHING_NEW", Verdict::Permanent),
            ("SomethingElse", Verdict::Retry(None)),
        ] {
            assert_eq!(verdict(code, "", now).0, expected, "{code}");
        }
    }
}
