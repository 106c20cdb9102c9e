//! The `tencent_sms` sender: Tencent Cloud SMS (`SendSms`, API version
//! 2021-01-11), signed with TC3-HMAC-SHA256.
//!
//! Tencent sends approved templates, not free text: each recall template is
//! mapped in `recall.toml` to an approved template id and the ordered list
//! of parameters that fill it (`TemplateParamSet` is positional). The
//! outreach id goes in `SessionContext`, which Tencent hands back in status
//! receipts and replies. Tencent answers per number inside an HTTP 200:
//! `Response.SendStatusSet[i].Code` for our number, or `Response.Error` when
//! the whole request was refused.
//!
//! This module must never log or format the SecretKey, and never log message
//! content or an unmasked phone number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cloud_sign::{self, hmac_sha256, sha256_hex};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};
use crate::mask;

/// The `kind` of this sender in `recall.toml`.
pub const KIND: &str = "tencent_sms";
const VERSION: &str = "2021-01-11";
/// The service name in the credential scope: the product's domain prefix.
const SERVICE: &str = "sms";
const ALGORITHM: &str = "TC3-HMAC-SHA256";
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `[senders.<name>]` with `kind = "tencent_sms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SMS application's SdkAppId (e.g. "1400006666"), from the SMS
    /// console; messages are sent and billed under it.
    pub sms_sdk_app_id: String,
    /// The approved SMS signature (签名) shown as 【...】, exactly as in the
    /// SMS console. Required for mainland numbers.
    pub sign_name: String,
    /// Which approved Tencent template carries each recall template:
    /// `[senders.<name>.templates.<recall template>]`. A message whose
    /// template is not here fails with an error saying what to add.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateMapping>,
    /// The API region (`X-TC-Region`): ap-guangzhou, ap-beijing or
    /// ap-nanjing. It must be where the SMS application was created.
    #[serde(default = "default_region")]
    pub region: String,
    /// The API endpoint. The default is Tencent's public one; tests and
    /// proxies point it elsewhere.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one call to Tencent may take before the attempt is given
    /// up and retried.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// The environment variable holding the SecretId. Secrets never live in
    /// recall.toml.
    #[serde(default = "default_secret_id_env")]
    pub secret_id_env: String,
    /// The environment variable holding the SecretKey.
    #[serde(default = "default_secret_key_env")]
    pub secret_key_env: String,
}

/// `[senders.<name>.templates.<recall template>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMapping {
    /// The approved template's id (模板 ID), e.g. "1234567".
    pub id: String,
    /// The recall parameters (keys of `<template>.params.toml`) that fill
    /// the template's {1}, {2}, ... in that order. Empty for a template
    /// without variables.
    #[serde(default)]
    pub params: Vec<String>,
}

fn default_region() -> String {
    "ap-guangzhou".to_string()
}

fn default_endpoint() -> String {
    "https://sms.tencentcloudapi.com".to_string()
}

fn default_timeout() -> String {
    "10s".to_string()
}

fn default_secret_id_env() -> String {
    "TENCENTCLOUD_SECRET_ID".to_string()
}

fn default_secret_key_env() -> String {
    "TENCENTCLOUD_SECRET_KEY".to_string()
}

/// The checked settings of a config (no secrets, no client yet).
#[derive(Debug, Clone)]
struct Settings {
    endpoint: Url,
    host: String,
    timeout: Duration,
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
fn validate(name: &str, config: &Config) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    if !digits(config.sms_sdk_app_id.trim()) {
        problems.push(format!(
            "sms_sdk_app_id `{}` must be the application's SdkAppId, digits like \"1400006666\"",
            config.sms_sdk_app_id
        ));
    }
    if config.sign_name.trim().is_empty() {
        problems.push(
            "sign_name is empty: set it to the approved signature (签名) from the Tencent SMS console"
                .to_string(),
        );
    }
    if config.region.trim().is_empty() {
        problems.push(
            "region is empty: use the SMS application's region, like \"ap-guangzhou\"".to_string(),
        );
    }
    if config.templates.is_empty() {
        problems.push(format!(
            "no templates are mapped: add [senders.{name}.templates.<recall template>] with id = \"...\" and params = [...] for each SMS template"
        ));
    }
    for (template, mapping) in &config.templates {
        if !digits(mapping.id.trim()) {
            problems.push(format!(
                "[senders.{name}.templates.{template}] id `{}` must be the approved template's id, digits like \"1234567\"",
                mapping.id
            ));
        }
        if mapping.params.iter().any(|p| p.trim().is_empty()) {
            problems.push(format!(
                "[senders.{name}.templates.{template}] params: names must not be empty"
            ));
        }
    }
    let endpoint = cloud_sign::parse_endpoint(
        "endpoint",
        &config.endpoint,
        "https://sms.tencentcloudapi.com",
    )
    .map_err(|e| problems.push(e))
    .ok();
    let timeout = cloud_sign::parse_timeout(&config.timeout)
        .map_err(|e| problems.push(e))
        .ok();
    for (field, var) in [
        ("secret_id_env", &config.secret_id_env),
        ("secret_key_env", &config.secret_key_env),
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
    let id = ctx.secret(name, &config.secret_id_env);
    let key = ctx.secret(name, &config.secret_key_env);
    let (secret_id, secret_key) = match (id, key) {
        (Ok(id), Ok(key)) => (id, key),
        (id, key) => {
            let missing: Vec<String> = [id.err(), key.err()]
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
    Ok(Arc::new(TencentSms {
        name: name.to_string(),
        sms_sdk_app_id: config.sms_sdk_app_id.trim().to_string(),
        sign_name: config.sign_name.trim().to_string(),
        region: config.region.trim().to_string(),
        templates: config.templates.clone(),
        settings,
        secret_id,
        secret_key,
        client,
    }))
}

/// The sender. Holds the SecretKey, so it has no `Debug`.
pub struct TencentSms {
    name: String,
    sms_sdk_app_id: String,
    sign_name: String,
    region: String,
    templates: BTreeMap<String, TemplateMapping>,
    settings: Settings,
    secret_id: String,
    secret_key: String,
    client: reqwest::Client,
}

// ---------------------------------------------------------------------------
// The signature.

/// Everything a TC3-HMAC-SHA256 signature of a POST covers. The timestamp is
/// an input, so a published example can be reproduced exactly.
#[derive(Debug, Clone)]
pub struct Tc3Request<'a> {
    /// The `host` header value (with a non-default port).
    pub host: &'a str,
    /// The product, as in its domain: "sms", "cvm".
    pub service: &'a str,
    /// The `content-type` header value.
    pub content_type: &'a str,
    /// When given, `x-tc-action` is signed too, as Tencent's current
    /// documentation does (its worked example signs only content-type and
    /// host).
    pub action: Option<&'a str>,
    /// The exact body bytes sent.
    pub payload: &'a [u8],
    /// `X-TC-Timestamp`: Unix seconds.
    pub timestamp: i64,
}

/// A signed request: the pieces of each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Lower-case hex.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

/// Signs a POST (TencentCloud API 3.0 "Signature v3"). Pure: same inputs,
/// same signature.
pub fn sign(request: &Tc3Request<'_>, secret_id: &str, secret_key: &str) -> Tc3Signed {
    let mut headers = vec![
        ("content-type", request.content_type.trim().to_lowercase()),
        ("host", request.host.trim().to_lowercase()),
    ];
    if let Some(action) = request.action {
        headers.push(("x-tc-action", action.trim().to_lowercase()));
    }
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        sha256_hex(request.payload)
    );
    // The credential date is the UTC date of the timestamp, never local.
    let date = DateTime::from_timestamp(request.timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let scope = format!("{date}/{}/tc3_request", request.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        request.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, request.service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    let signature = hex::encode(hmac_sha256(&secret_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    Tc3Signed {
        canonical_request,
        string_to_sign,
        signature,
        authorization,
    }
}

/// The number in E.164, as `PhoneNumberSet` wants it and `SendStatusSet`
/// echoes it: mainland numbers get +86.
pub fn phone_number(address: &str) -> String {
    let compact: String = address
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let mainland = |n: &str| n.len() == 11 && n.starts_with('1') && digits(n);
    for prefix in ["+86", "0086", "86", ""] {
        if let Some(rest) = compact.strip_prefix(prefix)
            && mainland(rest)
        {
            return format!("+86{rest}");
        }
    }
    match compact.strip_prefix("00") {
        Some(rest) if !compact.starts_with('+') => format!("+{rest}"),
        _ => compact,
    }
}

// ---------------------------------------------------------------------------
// Error codes.

/// What a Tencent `Code` means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Try again, after this long if known.
    Retry(Option<Duration>),
    /// Not now and not a failure: the provider's window opens at this time.
    Deferred(DateTime<Utc>),
    Permanent,
    OptedOut,
}

/// Maps a Tencent SMS `Code` (per-number `SendStatusSet[i].Code` or the
/// request's `Error.Code`) to a verdict and a hint for staff. From
/// Tencent's SMS error codes (https://cloud.tencent.com/document/api/382/59177)
/// and the API 3.0 common codes (https://cloud.tencent.com/document/api/382/52075).
pub fn verdict(code: &str, now: DateTime<Utc>) -> (Verdict, &'static str) {
    use Verdict::*;
    match code {
        "Ok" => (Sent, ""),
        // 手机号在免打扰名单库中: unsubscribed or carrier do-not-disturb.
        "FailedOperation.PhoneNumberInBlacklist" => (
            OptedOut,
            "the number is on Tencent's do-not-disturb list: the customer unsubscribed (回复退订) or the carrier blocked it",
        ),
        "FailedOperation.MarketingSendTimeConstraint" => (
            Deferred(cloud_sign::next_china_hour(now, 8) + chrono::Duration::minutes(1)),
            "marketing SMS may only go out between 08:00 and 22:00 China time",
        ),
        // Limits on the request itself, not on time: they will not lift.
        "LimitExceeded.PhoneNumberCountLimit" => (Permanent, "too many numbers in one request"),
        "LimitExceeded.AppCountryOrRegionInBlacklist" => (
            Permanent,
            "configuration: sending to this country or region is blocked for the application in the SMS console",
        ),
        "LimitExceeded.PhoneNumberThirtySecondLimit" => (
            Retry(Some(Duration::from_secs(30))),
            "the per-number 30-second limit is reached; it can be changed in the SMS console",
        ),
        "LimitExceeded.PhoneNumberOneHourLimit" => (
            Retry(Some(Duration::from_secs(3600))),
            "the per-number hourly limit is reached; it can be changed in the SMS console",
        ),
        c if c.starts_with("LimitExceeded.") && c.ends_with("DailyLimit") => (
            Retry(Some(cloud_sign::until_china_midnight(now))),
            "a daily sending limit is reached; it lifts at midnight China time or can be changed in the SMS console",
        ),
        c if c.starts_with("LimitExceeded") => (
            Retry(None),
            "a sending frequency limit is reached; it can be changed in the SMS console",
        ),
        "FailedOperation.InsufficientBalanceInSmsPackage"
        | "UnauthorizedOperation.ServiceSuspendDueToArrears" => (
            Retry(None),
            "the Tencent account is out of SMS package or in arrears; top it up and the messages go out on retry",
        ),
        c if c.starts_with("InternalError") || c.starts_with("RequestLimitExceeded") => {
            (Retry(None), "a passing error at Tencent")
        }
        // The number.
        "InvalidParameterValue.IncorrectPhoneNumber" | "FailedOperation.PhoneNumberParseFail" => (
            Permanent,
            "the customer's phone number is not a valid mobile number",
        ),
        // The template, the signature, the parameters, the content.
        "FailedOperation.TemplateIncorrectOrUnapproved"
        | "FailedOperation.TemplateUnapprovedOrNotExist"
        | "FailedOperation.TemplateIdNotExist" => (
            Permanent,
            "the template is not approved or does not match: check `id` in recall.toml against the SMS console",
        ),
        "FailedOperation.SignatureIncorrectOrUnapproved" => (
            Permanent,
            "the signature is not approved or malformed: check `sign_name` in recall.toml against the SMS console",
        ),
        "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
        | "InvalidParameterValue.TemplateParameterFormatError"
        | "InvalidParameterValue.TemplateParameterLengthLimit"
        | "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter" => (
            Permanent,
            "Tencent rejected the template parameters: check `params` in recall.toml and <template>.params.toml",
        ),
        "FailedOperation.ContainSensitiveWord" | "InvalidParameterValue.ContentLengthLimit" => (
            Permanent,
            "the message content was refused (sensitive word or too long); change the wording or the parameters",
        ),
        // The account and its credentials: configuration.
        // The one AuthFailure that is not about credentials: the signing
        // time is the dispatcher's clock (the system clock, or `recall
        // dispatch --at`). The message itself is fine: retry, do not fail it.
        "AuthFailure.SignatureExpire" => (
            Retry(None),
            "the signing time is more than five minutes off Tencent's: sync this machine's clock (and do not dispatch with --at to a real provider)",
        ),
        c if c.starts_with("AuthFailure") => (
            Permanent,
            "configuration: the SecretId/SecretKey in the environment are wrong, disabled or not allowed to send SMS",
        ),
        "InvalidParameterValue.SdkAppIdNotExist" => (
            Permanent,
            "configuration: `sms_sdk_app_id` is not an SMS application of this account (or not in `region`)",
        ),
        c if c.starts_with("UnauthorizedOperation") => (
            Permanent,
            "configuration: the account or application may not send this (check sms_sdk_app_id, IP allowlist and permissions in the SMS console)",
        ),
        c if c.starts_with("FailedOperation")
            || c.starts_with("InvalidParameter")
            || c.starts_with("UnsupportedOperation")
            || c.starts_with("MissingParameter")
            || c.starts_with("UnknownParameter")
            || c.starts_with("InvalidAction")
            || c.starts_with("NoSuchVersion")
            || c.starts_with("UnsupportedRegion") =>
        {
            (Permanent, "Tencent rejected the request")
        }
        _ => (Retry(None), "unrecognised Tencent answer, taken as passing"),
    }
}

/// A transport error as text, with its causes but without the URL.
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

impl TencentSms {
    /// `TemplateParamSet` for a message, or why it cannot be built.
    fn template_param_set(
        &self,
        mapping: &TemplateMapping,
        message: &Outbound<'_>,
    ) -> Result<Vec<String>, String> {
        let params = cloud_sign::template_params(message.params).map_err(|e| {
            format!(
                "{e} (recall template `{}`); check templates/{}/{}.params.toml",
                message.template,
                message.channel.as_str(),
                message.template
            )
        })?;
        mapping
            .params
            .iter()
            .enumerate()
            .map(|(i, key)| {
                params
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        format!(
                            "Tencent template {id} takes `{key}` as parameter {{{n}}}, which recall template `{t}` does not set: add `{key} = \"...\"` to templates/{ch}/{t}.params.toml, or change params under [senders.{name}.templates.{t}] in recall.toml",
                            id = mapping.id,
                            n = i + 1,
                            t = message.template,
                            ch = message.channel.as_str(),
                            name = self.name,
                        )
                    })
            })
            .collect()
    }

    fn outcome(
        &self,
        code: &str,
        text: &str,
        message: &Outbound<'_>,
        mapping: &TemplateMapping,
        retry_after: Option<Duration>,
    ) -> SendOutcome {
        let (verdict, hint) = verdict(code, message.now);
        let error = format!(
            "Tencent {code}: {text} — {hint} (recall template `{}`, Tencent template {})",
            message.template, mapping.id
        );
        match verdict {
            // Only reached for a per-number Ok without a SerialNo.
            Verdict::Sent => SendOutcome::Sent {
                provider_id: format!("SessionContext:{}", message.id),
            },
            Verdict::Retry(wait) => SendOutcome::Retryable {
                error,
                retry_after: retry_after.or(wait),
            },
            Verdict::Deferred(retry_at) => SendOutcome::Deferred {
                retry_at,
                reason: format!("Tencent {code}: {hint}"),
            },
            Verdict::Permanent => SendOutcome::Permanent { error },
            Verdict::OptedOut => SendOutcome::OptedOut {
                reason: format!("Tencent {code}: {text} — {hint}"),
            },
        }
    }
}

#[async_trait]
impl Sender for TencentSms {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let Some(mapping) = self.templates.get(message.template) else {
            return SendOutcome::Permanent {
                error: format!(
                    "sender `{name}` has no Tencent template for recall template `{t}`: add [senders.{name}.templates.{t}] with id = \"...\" (the approved template's id from the Tencent SMS console) and params = [...] (the parameters that fill {{1}}, {{2}}, ... in order) to recall.toml",
                    name = self.name,
                    t = message.template,
                ),
            };
        };
        let param_set = match self.template_param_set(mapping, message) {
            Ok(set) => set,
            Err(error) => return SendOutcome::Permanent { error },
        };
        let phone = phone_number(message.address);
        let body = json!({
            "PhoneNumberSet": [phone],
            "SmsSdkAppId": self.sms_sdk_app_id,
            "SignName": self.sign_name,
            "TemplateId": mapping.id,
            "TemplateParamSet": param_set,
            "SessionContext": message.id.to_string(),
        });
        let payload = body.to_string().into_bytes();
        let timestamp = message.now.timestamp();
        let signed = sign(
            &Tc3Request {
                host: &self.settings.host,
                service: SERVICE,
                content_type: CONTENT_TYPE,
                action: Some("SendSms"),
                payload: &payload,
                timestamp,
            },
            &self.secret_id,
            &self.secret_key,
        );
        let request = self
            .client
            .post(self.settings.endpoint.clone())
            .header(reqwest::header::AUTHORIZATION, signed.authorization)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::HOST, &self.settings.host)
            .header("X-TC-Action", "SendSms")
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .body(payload);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = if e.is_connect() {
                    format!("could not reach Tencent for SendSms: {}", describe(e))
                } else if e.is_timeout() {
                    format!(
                        "SendSms timed out after {}; the message may have gone out (Tencent SendSms is not idempotent)",
                        humantime::format_duration(self.settings.timeout)
                    )
                } else {
                    format!("SendSms failed: {}", describe(e))
                };
                return SendOutcome::Retryable {
                    error,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = cloud_sign::retry_after(response.headers(), message.now);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return SendOutcome::Retryable {
                    error: format!(
                        "SendSms: the answer was cut off ({}); the message may have gone out",
                        describe(e)
                    ),
                    retry_after,
                };
            }
        };
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        let response = answer.as_ref().and_then(|a| a.get("Response"));
        let Some(response) = response.filter(|_| status < 300) else {
            let error =
                format!("Tencent answered SendSms with HTTP {status} and no readable Response");
            return if status >= 500 || status == 429 || status < 300 {
                SendOutcome::Retryable { error, retry_after }
            } else {
                SendOutcome::Permanent { error }
            };
        };
        let request_id = response
            .get("RequestId")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(error) = response.get("Error") {
            let code = error.get("Code").and_then(Value::as_str).unwrap_or("");
            let text = cloud_sign::scrub(
                error.get("Message").and_then(Value::as_str).unwrap_or(""),
                &phone,
            );
            tracing::debug!(id = message.id, code, request_id, "tencent refused SendSms");
            return self.outcome(code, &text, message, mapping, retry_after);
        }
        let statuses = response
            .get("SendStatusSet")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ours = statuses
            .iter()
            .find(|s| s.get("PhoneNumber").and_then(Value::as_str) == Some(phone.as_str()))
            .or(match statuses {
                [only] => Some(only),
                _ => None,
            });
        let Some(ours) = ours else {
            return SendOutcome::Retryable {
                error: format!(
                    "Tencent's answer to SendSms has no status for {} (request {request_id}); the message may have gone out",
                    mask::phone(&phone)
                ),
                retry_after,
            };
        };
        let code = ours.get("Code").and_then(Value::as_str).unwrap_or("");
        let text = cloud_sign::scrub(
            ours.get("Message").and_then(Value::as_str).unwrap_or(""),
            &phone,
        );
        tracing::debug!(
            id = message.id,
            code,
            request_id,
            "tencent SendSms answered"
        );
        match (code, ours.get("SerialNo").and_then(Value::as_str)) {
            ("Ok", Some(serial)) if !serial.is_empty() => {
                tracing::info!(
                    id = message.id,
                    to = %mask::phone(&phone),
                    template = message.template,
                    serial_no = serial,
                    "tencent accepted the message"
                );
                SendOutcome::Sent {
                    provider_id: serial.to_string(),
                }
            }
            _ => self.outcome(code, &text, message, mapping, retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;
    use crate::testing::{Recorded, Reply, TestServer};

    const SECRET_KEY: &str = "test-secret-key-do-not-leak";

    /// The worked example of TencentCloud API 3.0 "Signature v3" (CVM
    /// DescribeInstances in ap-guangzhou at 1551113065), the same page in
    /// every product's API docs, e.g.
    /// https://tencentcloud.com/document/api/1150/49447 (Chinese, 签名方法 v3:
    /// https://cloud.tencent.com/document/api/362/4208). Its SecretKey is the
    /// documented `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`; newer revisions mask
    /// the SecretId, which the signature does not depend on.
    #[test]
    fn signs_the_published_example_exactly() {
        let payload = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        assert_eq!(
            sha256_hex(payload.as_bytes()),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        let signed = sign(
            &Tc3Request {
                host: "cvm.tencentcloudapi.com",
                service: "cvm",
                content_type: "application/json; charset=utf-8",
                action: None,
                payload: payload.as_bytes(),
                timestamp: 1551113065,
            },
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        );
        assert_eq!(
            signed.canonical_request,
            "POST\n\
             /\n\
             \n\
             content-type:application/json; charset=utf-8\n\
             host:cvm.tencentcloudapi.com\n\
             \n\
             content-type;host\n\
             35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            signed.string_to_sign,
            "TC3-HMAC-SHA256\n\
             1551113065\n\
             2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signed.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            signed.authorization,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn the_action_is_signed_in_lower_case_and_the_date_is_utc() {
        // 2019-02-26 00:44:25 in Beijing is still 2019-02-25 in UTC.
        let signed = sign(
            &Tc3Request {
                host: "sms.tencentcloudapi.com",
                service: "sms",
                content_type: CONTENT_TYPE,
                action: Some("SendSms"),
                payload: b"{}",
                timestamp: 1551113065,
            },
            "id",
            "key",
        );
        assert!(
            signed.canonical_request.contains(
                "host:sms.tencentcloudapi.com\nx-tc-action:sendsms\n\ncontent-type;host;x-tc-action\n"
            ),
            "{}",
            signed.canonical_request
        );
        assert!(
            signed
                .string_to_sign
                .contains("\n2019-02-25/sms/tc3_request\n")
        );
    }

    #[test]
    fn numbers_are_sent_in_e164() {
        assert_eq!(phone_number("13812345678"), "+8613812345678");
        assert_eq!(phone_number("+86 138-1234-5678"), "+8613812345678");
        assert_eq!(phone_number("008613812345678"), "+8613812345678");
        assert_eq!(phone_number("8613812345678"), "+8613812345678");
        assert_eq!(phone_number("+85261234567"), "+85261234567");
        assert_eq!(phone_number("0085261234567"), "+85261234567");
    }

    // -----------------------------------------------------------------------
    // Against a local server.

    fn config(endpoint: &str) -> Config {
        toml::from_str(&format!(
            r#"
            sms_sdk_app_id = "1400006666"
            sign_name = "美丽诊所"
            endpoint = "{endpoint}"
            timeout = "300ms"
            [templates.warning_offer]
            id = "1234567"
            params = ["name", "phone"]
            "#
        ))
        .unwrap()
    }

    fn secrets() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([
                (
                    "TENCENTCLOUD_SECRET_ID".to_string(),
                    "AKIDtestid".to_string(),
                ),
                (
                    "TENCENTCLOUD_SECRET_KEY".to_string(),
                    SECRET_KEY.to_string(),
                ),
            ])),
            ..Context::default()
        }
    }

    fn sender(server: &TestServer) -> Arc<dyn Sender> {
        build("tencent", &config(&server.url), &secrets())
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
            address: "13812345678",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: now(),
        }
    }

    fn status(code: &str, message: &str) -> Reply {
        Reply::json(
            200,
            json!({"Response": {
                "SendStatusSet": [{
                    "SerialNo": if code == "Ok" { "5000:1045710669157053657849499619" } else { "" },
                    "PhoneNumber": "+8613812345678",
                    "Fee": 1,
                    "SessionContext": "42",
                    "Code": code,
                    "Message": message,
                    "IsoCode": "CN"
                }],
                "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"
            }}),
        )
    }

    fn request_error(code: &str, message: &str) -> Reply {
        Reply::json(
            200,
            json!({"Response": {
                "Error": {"Code": code, "Message": message},
                "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"
            }}),
        )
    }

    /// Recomputes the signature of a recorded request from its bytes alone,
    /// following the documented steps, and checks it against the
    /// `Authorization` header.
    fn assert_signature_verifies(request: &Recorded) {
        let authorization = request.header("authorization").expect("authorization");
        let rest = authorization
            .strip_prefix("TC3-HMAC-SHA256 ")
            .expect("TC3-HMAC-SHA256");
        let fields: BTreeMap<&str, &str> = rest
            .split(", ")
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let timestamp: i64 = request.header("x-tc-timestamp").unwrap().parse().unwrap();
        let date = DateTime::from_timestamp(timestamp, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(
            fields["Credential"],
            format!("AKIDtestid/{date}/sms/tc3_request")
        );
        assert_eq!(fields["SignedHeaders"], "content-type;host;x-tc-action");
        let headers: String = fields["SignedHeaders"]
            .split(';')
            .map(|h| format!("{h}:{}\n", request.header(h).unwrap().trim().to_lowercase()))
            .collect();
        let canonical_request = format!(
            "{}\n{}\n\n{}\n{}\n{}",
            request.method,
            request.path(),
            headers,
            fields["SignedHeaders"],
            sha256_hex(&request.body)
        );
        let string_to_sign = format!(
            "TC3-HMAC-SHA256\n{timestamp}\n{date}/sms/tc3_request\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let key = hmac_sha256(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes());
        let key = hmac_sha256(&key, b"sms");
        let key = hmac_sha256(&key, b"tc3_request");
        assert_eq!(
            fields["Signature"],
            hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
        );
    }

    #[tokio::test]
    async fn sends_the_exact_request_tencent_expects() {
        let server = TestServer::start(|_, _| status("Ok", "send success")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&outbound(&recipient, "warning_offer"))
            .await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "5000:1045710669157053657849499619".into()
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/");
        assert_eq!(request.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(
            request.header("host"),
            Some(server.url.trim_start_matches("http://"))
        );
        assert_eq!(request.header("x-tc-action"), Some("SendSms"));
        assert_eq!(request.header("x-tc-version"), Some("2021-01-11"));
        assert_eq!(request.header("x-tc-region"), Some("ap-guangzhou"));
        assert_eq!(request.header("x-tc-timestamp"), Some("1772413323"));
        assert_eq!(
            request.json(),
            json!({
                "PhoneNumberSet": ["+8613812345678"],
                "SmsSdkAppId": "1400006666",
                "SignName": "美丽诊所",
                "TemplateId": "1234567",
                "TemplateParamSet": ["王女士", "400-000-0000"],
                "SessionContext": "42"
            })
        );
        assert_signature_verifies(request);
        assert!(!format!("{request:?}").contains(SECRET_KEY));
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
            SendOutcome::OptedOut { reason } | SendOutcome::Deferred { reason, .. } => reason,
            _ => "",
        }
    }

    #[tokio::test]
    async fn the_status_of_our_number_inside_http_200_decides() {
        // Limits lift: 30 s, an hour, China midnight (from 09:02:03, +1 min).
        let thirty = outcome_of(status(
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "单个手机号30秒内下发短信条数超过设定的上限",
        ))
        .await;
        assert_eq!(retryable(&thirty), Some(Some(Duration::from_secs(30))));
        let hour = outcome_of(status("LimitExceeded.PhoneNumberOneHourLimit", "")).await;
        assert_eq!(retryable(&hour), Some(Some(Duration::from_secs(3600))));
        let daily = outcome_of(status("LimitExceeded.PhoneNumberDailyLimit", "")).await;
        assert_eq!(
            retryable(&daily),
            Some(Some(Duration::from_secs(14 * 3600 + 57 * 60 + 57 + 60)))
        );
        let internal = outcome_of(status("InternalError.Timeout", "请求下发短信超时")).await;
        assert_eq!(retryable(&internal), Some(None));

        let blacklisted = outcome_of(status(
            "FailedOperation.PhoneNumberInBlacklist",
            "手机号在免打扰名单库中",
        ))
        .await;
        assert!(
            matches!(blacklisted, SendOutcome::OptedOut { .. }),
            "{blacklisted:?}"
        );

        for (code, says) in [
            (
                "InvalidParameterValue.IncorrectPhoneNumber",
                "not a valid mobile number",
            ),
            (
                "FailedOperation.TemplateIncorrectOrUnapproved",
                "`id` in recall.toml",
            ),
            (
                "FailedOperation.SignatureIncorrectOrUnapproved",
                "`sign_name` in recall.toml",
            ),
            (
                "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                "`params`",
            ),
        ] {
            let outcome = outcome_of(status(code, "refused 13812345678")).await;
            match &outcome {
                SendOutcome::Permanent { error } => assert!(
                    error.contains(code)
                        && error.contains(says)
                        && error.contains("138****5678")
                        && !error.contains("13812345678"),
                    "{error}"
                ),
                other => panic!("{code}: {other:?}"),
            }
        }

        // Outside 08:00-22:00 China time: not now, at 08:01 tomorrow.
        let late = outcome_of(status("FailedOperation.MarketingSendTimeConstraint", "")).await;
        assert_eq!(
            late,
            SendOutcome::Deferred {
                retry_at: DateTime::parse_from_rfc3339("2026-03-03T00:01:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                reason: "Tencent FailedOperation.MarketingSendTimeConstraint: marketing SMS may only go out between 08:00 and 22:00 China time".into(),
            }
        );
    }

    #[tokio::test]
    async fn our_number_is_found_among_several() {
        let reply = Reply::json(
            200,
            json!({"Response": {"SendStatusSet": [
                {"SerialNo": "", "PhoneNumber": "+8613900000000", "Code": "FailedOperation.PhoneNumberInBlacklist", "Message": ""},
                {"SerialNo": "S-ours", "PhoneNumber": "+8613812345678", "Code": "Ok", "Message": "send success"}
            ], "RequestId": "r"}}),
        );
        assert_eq!(
            outcome_of(reply).await,
            SendOutcome::Sent {
                provider_id: "S-ours".into()
            }
        );
    }

    #[tokio::test]
    async fn request_level_errors_are_read_from_response_error() {
        let auth = outcome_of(request_error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ))
        .await;
        assert!(matches!(auth, SendOutcome::Permanent { .. }), "{auth:?}");
        assert!(
            error_text(&auth).contains("configuration") && !error_text(&auth).contains(SECRET_KEY),
            "{auth:?}"
        );
        let app = outcome_of(request_error(
            "InvalidParameterValue.SdkAppIdNotExist",
            "SdkAppId not exist",
        ))
        .await;
        assert!(error_text(&app).contains("sms_sdk_app_id"), "{app:?}");
        let busy = outcome_of(request_error(
            "RequestLimitExceeded",
            "请求的次数超过了频率限制",
        ))
        .await;
        assert_eq!(retryable(&busy), Some(None));
        let internal = outcome_of(request_error("InternalError", "内部错误")).await;
        assert_eq!(retryable(&internal), Some(None));
    }

    #[tokio::test]
    async fn outages_are_retried_and_retry_after_is_respected() {
        let outage = outcome_of(Reply::text(502, "Bad Gateway").header("Retry-After", "45")).await;
        assert_eq!(retryable(&outage), Some(Some(Duration::from_secs(45))));
        let limited = outcome_of(
            status("LimitExceeded.PhoneNumberThirtySecondLimit", "").header("Retry-After", "5"),
        )
        .await;
        assert_eq!(retryable(&limited), Some(Some(Duration::from_secs(5))));
    }

    #[tokio::test]
    async fn a_timeout_is_retryable() {
        let outcome =
            outcome_of(status("Ok", "send success").delayed(Duration::from_secs(3))).await;
        assert_eq!(retryable(&outcome), Some(None));
        assert!(error_text(&outcome).contains("timed out"), "{outcome:?}");
    }

    // -----------------------------------------------------------------------
    // Configuration.

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<crate::senders::SenderConfig>(
            "kind = \"tencent_sms\"\nsms_sdk_app_id = \"1400006666\"\nsign_name = \"x\"\nappid = \"1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `appid`"), "{err}");
        let err = toml::from_str::<Config>(
            "sms_sdk_app_id = \"1\"\nsign_name = \"x\"\n[templates.a]\nid = \"1\"\ncode = \"2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `code`"), "{err}");
    }

    #[test]
    fn a_missing_secret_names_its_variable() {
        let err = build(
            "tencent",
            &config("https://sms.tencentcloudapi.com"),
            &Context::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("TENCENTCLOUD_SECRET_ID") && err.contains("TENCENTCLOUD_SECRET_KEY"),
            "{err}"
        );
        let ctx = Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "TENCENTCLOUD_SECRET_ID".to_string(),
                "id".to_string(),
            )])),
            ..Context::default()
        };
        let err = build("tencent", &config("https://sms.tencentcloudapi.com"), &ctx)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("TENCENTCLOUD_SECRET_KEY") && !err.contains("TENCENTCLOUD_SECRET_ID"),
            "{err}"
        );
    }

    #[test]
    fn every_config_problem_is_reported_at_once() {
        let config: Config = toml::from_str(
            "sms_sdk_app_id = \"app\"\nsign_name = \"\"\nregion = \"\"\ntimeout = \"0s\"\n[templates.a]\nid = \"x\"\n",
        )
        .unwrap();
        let err = build("tencent", &config, &secrets())
            .err()
            .unwrap()
            .to_string();
        for part in [
            "sms_sdk_app_id",
            "sign_name",
            "region",
            "timeout",
            "[senders.tencent.templates.a] id",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }

    #[tokio::test]
    async fn a_template_without_a_mapping_says_what_to_add() {
        let server = TestServer::start(|_, _| status("Ok", "")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&outbound(&recipient, "welcome_back"))
            .await;
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
        let error = error_text(&outcome);
        assert!(
            error.contains("[senders.tencent.templates.welcome_back]")
                && error.contains("id = ")
                && error.contains("params = "),
            "{error}"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_missing_parameter_says_what_to_add() {
        let server = TestServer::start(|_, _| status("Ok", "")).await;
        let recipient = Recipient::default();
        let outcome = sender(&server)
            .send(&Outbound {
                params: Some(r#"{"name":"王女士"}"#),
                ..outbound(&recipient, "warning_offer")
            })
            .await;
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
        let error = error_text(&outcome);
        assert!(
            error.contains("`phone`")
                && error.contains("{2}")
                && error.contains("templates/sms/warning_offer.params.toml")
                && error.contains("[senders.tencent.templates.warning_offer]"),
            "{error}"
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn the_code_table_sorts_codes_into_outcomes() {
        let now = now();
        for (code, expected) in [
            ("Ok", Verdict::Sent),
            ("LimitExceeded.DeliveryFrequencyLimit", Verdict::Retry(None)),
            (
                "LimitExceeded.AppDailyLimit",
                Verdict::Retry(Some(cloud_sign::until_china_midnight(now))),
            ),
            ("LimitExceeded.PhoneNumberCountLimit", Verdict::Permanent),
            (
                "FailedOperation.InsufficientBalanceInSmsPackage",
                Verdict::Retry(None),
            ),
            ("AuthFailure.SecretIdNotFound", Verdict::Permanent),
            ("AuthFailure.SignatureFailure", Verdict::Permanent),
            ("AuthFailure.SignatureExpire", Verdict::Retry(None)),
            (
                "UnauthorizedOperation.RequestIpNotInWhitelist",
                Verdict::Permanent,
            ),
            ("FailedOperation.SomethingNew", Verdict::Permanent),
            ("SomethingElse", Verdict::Retry(None)),
        ] {
            assert_eq!(verdict(code, now).0, expected, "{code}");
        }
    }
}
