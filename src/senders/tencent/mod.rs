//! The `tencent_sms` sender: Tencent Cloud SMS (`SendSms`, API version
//! 2021-01-11), signed with TC3-HMAC-SHA256.
//!
//! Tencent sends approved templates, not free text: each recall template is
//! mapped in `recall.toml` to an approved template id and the ordered list
//! of parameters that fill it (`TemplateParamSet` is positional). The
//! outreach id goes in `SessionContext`, which Tencent hands back in status
//! receipts and replies. Tencent answers per number inside an HTTP 200:
//! `Response.SendStatusSet[i].Code` for our number, or `Response.Error` when
//! the whole request was refused. Credential and account codes
//! (`AuthFailure.*`, arrears, no SMS package) refuse the sender itself,
//! which the dispatcher pauses. An attempt whose answer was lost (a
//! timeout, a 5xx, a cut-off answer) is marked in doubt; Tencent has no
//! look-up by `SessionContext`, so its next attempt sends again.
//!
//! This module must never log or format the SecretKey, and never log message
//! content or an unmasked phone number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::kit::cloud_sign::{self, hmac_sha256, sha256_hex};
use super::kit::{self, http};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::base::phone::{self, CountryCode};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender, in_doubt};

mod codes;

pub use codes::{Verdict, verdict};

/// The `kind` of this sender in `recall.toml`.
pub const KIND: &str = "tencent_sms";
/// What a message whose recall template has no mapping is told to add:
/// the provider, and the keys of `[senders.<name>.templates.<template>]`.
const UNMAPPED: (&str, &str) = (
    "Tencent",
    "id = \"...\" (the approved template's id from the Tencent SMS console) and params = [...] (the parameters that fill {1}, {2}, ... in order)",
);
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
    #[serde(default = "kit::default_timeout_text")]
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

fn default_secret_id_env() -> String {
    "TENCENTCLOUD_SECRET_ID".to_string()
}

fn default_secret_key_env() -> String {
    "TENCENTCLOUD_SECRET_KEY".to_string()
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(name: &str, config: &Config) -> Result<cloud_sign::Settings, Vec<Invalid>> {
    let mut problems = Problems::default();
    if !digits(config.sms_sdk_app_id.trim()) {
        problems.push(Invalid::new(
            "sms_sdk_app_id",
            format!(
                "sms_sdk_app_id `{}` must be the application's SdkAppId, digits like \"1400006666\"",
                config.sms_sdk_app_id
            ),
            format!(
                "sms_sdk_app_id `{}` 应是短信应用的 SdkAppId，全为数字，例如 \"1400006666\"",
                config.sms_sdk_app_id
            ),
        ));
    }
    if let Some(invalid) =
        cloud_sign::sign_name_setting(&config.sign_name, "Tencent SMS console", "腾讯云短信控制台")
    {
        problems.push(invalid);
    }
    if config.region.trim().is_empty() {
        problems.push(Invalid::new(
            "region",
            "region is empty: use the SMS application's region, like \"ap-guangzhou\"",
            "region 为空：请填写短信应用所在的地域，例如 \"ap-guangzhou\"",
        ));
    }
    if config.templates.is_empty() {
        problems.push(Invalid::new(
            "templates",
            format!(
                "no templates are mapped: add [senders.{name}.templates.<recall template>] with id = \"...\" and params = [...] for each SMS template"
            ),
            format!(
                "没有映射任何模板：请为每个短信模板添加 [senders.{name}.templates.<recall 模板名>] 并写 id = \"...\" 和 params = [...]"
            ),
        ));
    }
    for (template, mapping) in &config.templates {
        if !digits(mapping.id.trim()) {
            problems.push(Invalid::new(
                format!("templates.{template}.id"),
                format!(
                    "[senders.{name}.templates.{template}] id `{}` must be the approved template's id, digits like \"1234567\"",
                    mapping.id
                ),
                format!(
                    "[senders.{name}.templates.{template}] id `{}` 应是审核通过的模板 ID，全为数字，例如 \"1234567\"",
                    mapping.id
                ),
            ));
        }
        if mapping.params.iter().any(|p| p.trim().is_empty()) {
            problems.push(cloud_sign::empty_param_names(name, template));
        }
    }
    let settings = cloud_sign::settings(
        &mut problems,
        &config.endpoint,
        "https://sms.tencentcloudapi.com",
        &config.timeout,
        &[
            ("secret_id_env", &config.secret_id_env),
            ("secret_key_env", &config.secret_key_env),
        ],
    );
    problems.finish(settings)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let settings = validate(name, config).map_err(|p| BuildError::invalid(name, &p))?;
    let [secret_id, secret_key] =
        kit::secrets(ctx, name, [&config.secret_id_env, &config.secret_key_env])?;
    let client = kit::client(settings.timeout).map_err(|e| BuildError::new(name, e))?;
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
    settings: cloud_sign::Settings,
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
/// echoes it: numbers without a country code are mainland ones (+86). A
/// number `base::phone` cannot read goes as typed, for Tencent to judge.
pub fn phone_number(address: &str) -> String {
    match phone::parse(address, Some(CountryCode::CHINA)) {
        Ok(phone) => phone.e164(),
        Err(_) => address.trim().to_string(),
    }
}

impl TencentSms {
    /// `TemplateParamSet` for a message, or why it cannot be built.
    fn template_param_set(
        &self,
        mapping: &TemplateMapping,
        message: &Outbound<'_>,
    ) -> Result<Vec<String>, String> {
        let params = cloud_sign::message_params(message)?;
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
            Verdict::Refused => SendOutcome::Refused {
                code: code.to_string(),
                error,
            },
            Verdict::OptedOut => SendOutcome::OptedOut {
                reason: format!("Tencent {code}: {text} — {hint}"),
            },
        }
    }

    /// Posts a signed SendSms for one number; the answer, or the outcome of
    /// an attempt that got none.
    async fn send_sms(
        &self,
        message: &Outbound<'_>,
        mapping: &TemplateMapping,
        phone: &str,
        param_set: Vec<String>,
    ) -> Result<http::Answer, SendOutcome> {
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
        let response = request.send().await.map_err(|e| {
            let error = if e.is_connect() {
                format!(
                    "could not reach Tencent for SendSms: {}",
                    http::error_text(e)
                )
            } else if e.is_timeout() {
                in_doubt(&format!(
                    "SendSms timed out after {}; the message may have gone out (Tencent SendSms is not idempotent)",
                    humantime::format_duration(self.settings.timeout)
                ))
            } else {
                in_doubt(&format!("SendSms failed: {}", http::error_text(e)))
            };
            SendOutcome::Retryable {
                error,
                retry_after: None,
            }
        })?;
        http::read_answer(response, message.now)
            .await
            .map_err(|cut| SendOutcome::Retryable {
                error: in_doubt(&format!(
                    "SendSms: the answer was cut off ({}); the message may have gone out",
                    http::error_text(cut.error)
                )),
                retry_after: cut.retry_after,
            })
    }

    /// What SendSms's answer says of our number: `Response.Error` when the
    /// whole request was refused, else our entry of `SendStatusSet`.
    fn read_answer(
        &self,
        answer: &http::Answer,
        message: &Outbound<'_>,
        mapping: &TemplateMapping,
        phone: &str,
    ) -> SendOutcome {
        let (status, retry_after) = (answer.status, answer.retry_after);
        let response = answer.body.as_ref().and_then(|a| a.get("Response"));
        let Some(response) = response.filter(|_| status < 300) else {
            let error =
                format!("Tencent answered SendSms with HTTP {status} and no readable Response");
            // A 5xx or an unreadable 2xx may come after Tencent took it.
            if !(300..500).contains(&status) {
                return SendOutcome::Retryable {
                    error: in_doubt(&format!("{error}; the message may have gone out")),
                    retry_after,
                };
            }
            return if status == 429 {
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
            let text = scrub(
                error.get("Message").and_then(Value::as_str).unwrap_or(""),
                message,
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
            .find(|s| s.get("PhoneNumber").and_then(Value::as_str) == Some(phone))
            .or(match statuses {
                [only] => Some(only),
                _ => None,
            });
        let Some(ours) = ours else {
            return SendOutcome::Retryable {
                error: in_doubt(&format!(
                    "Tencent's answer to SendSms has no status for {} (request {request_id}); the message may have gone out",
                    mask::phone(phone)
                )),
                retry_after,
            };
        };
        let code = ours.get("Code").and_then(Value::as_str).unwrap_or("");
        let text = scrub(
            ours.get("Message").and_then(Value::as_str).unwrap_or(""),
            message,
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
                    to = %mask::phone(phone),
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

/// Tencent's text, fit for an error: secrets, the number (read as a
/// mainland one when it has no country code), the name and the content out
/// of it.
fn scrub(text: &str, message: &Outbound<'_>) -> String {
    kit::scrub(text, message, Some(CountryCode::CHINA))
}

#[async_trait]
impl Sender for TencentSms {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let (mapping, param_set) =
            match cloud_sign::mapped(&self.templates, &self.name, message, UNMAPPED, |mapping| {
                self.template_param_set(mapping, message)
            }) {
                Ok(template) => template,
                Err(outcome) => return outcome,
            };
        let phone = phone_number(message.address);
        match self.send_sms(message, mapping, &phone, param_set).await {
            Ok(answer) => self.read_answer(&answer, message, mapping, &phone),
            Err(outcome) => outcome,
        }
    }
}

#[cfg(test)]
mod tests;
