//! The `webhook` sender: any HTTP SMS gateway that takes a JSON request.
//!
//! The body is a minijinja template from `recall.toml`, compiled when the
//! sender is built (a broken template or an unknown variable stops the
//! service from starting, not the first send). Every `{{ ... }}` prints a
//! JSON value, so `"text": {{ content }}` is a correctly quoted string and a
//! message can never break out of the JSON; the rendered body must parse as
//! JSON or the message fails with the reason.
//!
//! Secrets (tokens in headers or in the body) come from environment variables
//! named in the config and never appear in logs or errors; neither do message
//! content or unmasked addresses. The helpers at the bottom (`retry_after`,
//! `describe`, `scrub`) are shared with the other HTTP senders.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use minijinja::{Environment, Error as TemplateError, ErrorKind, UndefinedBehavior, Value};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Deserializer};

use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};
use crate::mask;

/// `[senders.<name>]` with `kind = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway's endpoint. `https://` for anything off this machine;
    /// `http://` is accepted for a gateway on the clinic's own network.
    pub url: String,
    /// The HTTP method: `POST` (the default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Headers sent as written (`{ "X-Account" = "clinic-42" }`). Not for
    /// secrets: `recall.toml` is not a secret store, so `Authorization` and
    /// API-key headers are refused here; they go in `secret_headers`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets: header name → the environment
    /// variable holding the whole value, e.g.
    /// `{ Authorization = "GATEWAY_AUTHORIZATION" }` with
    /// `GATEWAY_AUTHORIZATION="Bearer 3f9c..."` in the service's environment.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// Secrets the body template can use as `secret.<name>`: name → the
    /// environment variable holding it, for gateways that want a key inside
    /// the JSON (`{ key = "GATEWAY_KEY" }`, then `"apikey": {{ secret.key }}`).
    #[serde(default)]
    pub secret_vars: BTreeMap<String, String>,
    /// The JSON body, a minijinja template. Every `{{ ... }}` prints a JSON
    /// value (strings quoted and escaped), so write `"text": {{ content }}`,
    /// never `"text": "{{ content }}"`; build longer strings inside the braces
    /// (`{{ "Ref " ~ id }}`). `|tojson` is accepted too. Variables: `address`,
    /// `content`, `subject`, `html`, `id` (the outreach id, stable across
    /// retries), `template`, `rule`, `channel`, `attempt`, `params` (the
    /// template's provider parameters, an object), `customer.external_id`,
    /// `customer.name`, `secret.<name>` and `now` (RFC 3339, UTC).
    pub body: String,
    /// Where the gateway's message id is in a 2xx JSON answer: a JSON pointer
    /// (`/data/msgid`) or a dotted path (`data.msgid`). Without it, or when the
    /// answer lacks it, the provider id is `webhook-<outreach id>`.
    #[serde(default)]
    pub id_field: Option<String>,
    /// A header that carries `recall-<outreach id>` for gateways that
    /// deduplicate requests (e.g. `Idempotency-Key`); the same value on every
    /// retry of a message.
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// The HTTP status with which the gateway says the recipient opted out
    /// (unsubscribed, blacklisted). With `opted_out_match` too, both must hold.
    /// Such an answer withdraws the customer's SMS consent; it is never retried.
    #[serde(default)]
    pub opted_out_status: Option<u16>,
    /// Text in the answer's body that means the recipient opted out (e.g.
    /// `"UNSUBSCRIBED"`), for gateways that say so in the body. Checked on
    /// every answer, 2xx included, before the status is looked at.
    #[serde(default)]
    pub opted_out_match: Option<String>,
    /// How long to wait for the gateway's answer (default `10s`). A gateway
    /// that does not answer in time is retried later.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Where the gateway puts its result code in a JSON answer, for gateways
    /// that answer HTTP 200 to failures too (`200 {"code":"1001","msg":
    /// "invalid mobile number"}`): a JSON pointer (`/code`) or a dotted path
    /// (`result.code`). With it, a 2xx answer counts as sent only if the code
    /// there is one of `success_codes`. Without it (the default), every 2xx
    /// answer counts as sent, whatever its body says.
    #[serde(default)]
    pub code_field: Option<String>,
    /// The codes at `code_field` that mean the gateway took the message
    /// (e.g. `["0"]`, `["OK"]`; numbers, strings and booleans are compared
    /// as text: `0`, `"0"` both match `"0"`). Required with `code_field`.
    #[serde(default)]
    pub success_codes: Vec<String>,
    /// Where the gateway explains its code (`/msg`), quoted in the error.
    #[serde(default)]
    pub message_field: Option<String>,
    /// Codes worth trying again later (throttling, a busy gateway). Checked on
    /// every answer that has a code, whatever its HTTP status.
    #[serde(default)]
    pub retryable_codes: Vec<String>,
    /// Codes that will never succeed (bad number, unapproved text). Checked
    /// on every answer that has a code, whatever its HTTP status.
    #[serde(default)]
    pub permanent_codes: Vec<String>,
    /// Codes that mean the recipient opted out (blacklisted, unsubscribed):
    /// the customer's SMS consent is withdrawn and the message never retried.
    /// Checked on every answer that has a code, whatever its HTTP status.
    #[serde(default)]
    pub opted_out_codes: Vec<String>,
    /// What a 2xx answer whose code is not a success and in no list above
    /// (or that has no code at `code_field`) means: `"permanent"` (the
    /// default) or `"retryable"`.
    #[serde(default)]
    pub other_codes: OtherCodes,
}

/// What an unlisted, unsuccessful code means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherCodes {
    #[default]
    Permanent,
    Retryable,
}

fn default_method() -> String {
    "POST".to_string()
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Deserializes `"10s"`, `"500ms"`, `"1m"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    let value = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("`{text}` is not a duration like \"10s\": {e}"))
    })?;
    if value.is_zero() {
        return Err(serde::de::Error::custom(
            "a timeout of zero would never wait",
        ));
    }
    Ok(value)
}

/// Headers that always carry credentials: only `secret_headers` may set them.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// The variables a body template may use.
const VARIABLES: &[&str] = &[
    "address", "content", "subject", "html", "id", "template", "rule", "channel", "attempt",
    "params", "customer", "secret", "now",
];

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let error = |message: String| BuildError::new(name, message);

    let url = Url::parse(&config.url).map_err(|e| error(format!("url `{}`: {e}", config.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(error(format!(
            "url `{}` must start with https:// (or http:// on the clinic's own network)",
            config.url
        )));
    }
    let method = match config.method.to_ascii_uppercase().as_str() {
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        other => {
            return Err(error(format!(
                "method `{other}` cannot carry a JSON body: use POST, PUT or PATCH"
            )));
        }
    };

    let mut headers = HeaderMap::new();
    for (key, value) in &config.headers {
        let header = header_name(key).map_err(error)?;
        if SECRET_HEADERS.contains(&header.as_str()) {
            return Err(error(format!(
                "headers.{key} holds a secret, which recall.toml must not: \
                 write secret_headers = {{ {key} = \"SOME_ENV_VAR\" }} and set SOME_ENV_VAR"
            )));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            error(format!(
                "headers.{key}: the value is not a valid header value"
            ))
        })?;
        headers.insert(header, value);
    }
    for (key, var) in &config.secret_headers {
        let header = header_name(key).map_err(error)?;
        if config.headers.keys().any(|k| k.eq_ignore_ascii_case(key)) {
            return Err(error(format!(
                "header `{key}` is in both headers and secret_headers; keep it in one"
            )));
        }
        let secret = ctx.secret(name, var)?;
        let mut value = HeaderValue::from_str(secret.trim()).map_err(|_| {
            error(format!(
                "secret_headers.{key}: environment variable {var} does not hold a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    let idempotency_header = config
        .idempotency_header
        .as_deref()
        .map(header_name)
        .transpose()
        .map_err(error)?;

    let mut secrets = BTreeMap::new();
    for (key, var) in &config.secret_vars {
        secrets.insert(key.clone(), ctx.secret(name, var)?);
    }

    let env = body_environment(&config.body).map_err(error)?;

    let id_pointer = config.id_field.as_deref().map(json_pointer);
    let opted_out = match (config.opted_out_status, &config.opted_out_match) {
        (None, None) => None,
        (status, matches) => {
            let status = status
                .map(|code| {
                    StatusCode::from_u16(code).map_err(|_| {
                        error(format!("opted_out_status {code} is not an HTTP status"))
                    })
                })
                .transpose()?;
            if matches.as_deref().is_some_and(|m| m.trim().is_empty()) {
                return Err(error("opted_out_match must not be empty".to_string()));
            }
            Some(OptOut {
                status,
                matches: matches.clone(),
            })
        }
    };

    let codes = answer_codes(config).map_err(error)?;

    let client = http_client(config.timeout).map_err(error)?;
    Ok(Arc::new(WebhookSender {
        name: name.to_string(),
        client,
        method,
        url,
        headers,
        idempotency_header,
        env,
        secrets,
        id_pointer,
        opted_out,
        codes,
        timeout: config.timeout,
    }))
}

/// The result-code settings, checked: a code field needs its success codes,
/// code lists need a code field, and no code may mean two things.
fn answer_codes(config: &Config) -> Result<Option<AnswerCodes>, String> {
    let lists = [
        ("success_codes", &config.success_codes),
        ("retryable_codes", &config.retryable_codes),
        ("permanent_codes", &config.permanent_codes),
        ("opted_out_codes", &config.opted_out_codes),
    ];
    let Some(field) = config.code_field.as_deref() else {
        if let Some((list, _)) = lists.iter().find(|(_, codes)| !codes.is_empty()) {
            return Err(format!(
                "{list} needs code_field: where in the answer the gateway puts its code (e.g. code_field = \"/code\")"
            ));
        }
        if config.message_field.is_some() || config.other_codes != OtherCodes::Permanent {
            return Err(
                "message_field and other_codes need code_field: where in the answer the gateway puts its code (e.g. code_field = \"/code\")"
                    .to_string(),
            );
        }
        return Ok(None);
    };
    if field.trim().is_empty() {
        return Err("code_field must not be empty".to_string());
    }
    if config.success_codes.is_empty() {
        return Err(format!(
            "code_field = {field:?} needs success_codes: the code(s) with which the gateway says it took the message (e.g. success_codes = [\"0\"])"
        ));
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (list, codes) in lists {
        for code in codes.iter() {
            if let Some(other) = seen.insert(code.as_str(), list)
                && other != list
            {
                return Err(format!(
                    "code {code:?} is in both {other} and {list}; keep it in one"
                ));
            }
        }
    }
    let set = |codes: &Vec<String>| codes.iter().cloned().collect::<BTreeSet<String>>();
    Ok(Some(AnswerCodes {
        field: json_pointer(field),
        message: config.message_field.as_deref().map(json_pointer),
        success: set(&config.success_codes),
        retryable: set(&config.retryable_codes),
        permanent: set(&config.permanent_codes),
        opted_out: set(&config.opted_out_codes),
        other: config.other_codes,
    }))
}

fn header_name(key: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| format!("`{key}` is not a valid header name"))
}

/// `/data/msgid` stays; `data.msgid` becomes `/data/msgid`.
fn json_pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_string()
    } else {
        format!(
            "/{}",
            field
                .replace('~', "~0")
                .replace('/', "~1")
                .replace('.', "/")
        )
    }
}

/// An HTTP client for a provider: the given timeout for the whole exchange,
/// no redirects (a provider that redirects a POST is misconfigured).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("recall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The environment the body renders in: strict about undefined variables,
/// every printed value as JSON.
fn body_environment(source: &str) -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("tojson", tojson);
    env.set_formatter(|out, _state, value| {
        let text = if value.is_safe() {
            value.as_str().unwrap_or_default().to_string()
        } else {
            to_json(value)?
        };
        out.write_str(&text)
            .map_err(|_| TemplateError::new(ErrorKind::WriteFailure, "cannot write the body"))
    });
    env.add_template_owned("body", source.to_string())
        .map_err(|e| format!("body: the template does not compile: {e}"))?;
    let template = env
        .get_template("body")
        .map_err(|e| format!("body: the template does not compile: {e}"))?;
    let unknown: BTreeSet<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !VARIABLES.contains(&v.as_str()) && env.globals().all(|(g, _)| g != v))
        .collect();
    if let Some(first) = unknown.first() {
        let suggestion = VARIABLES
            .iter()
            .map(|known| (strsim::jaro_winkler(first, known), known))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, known)| format!(" (did you mean `{known}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "body: unknown variable `{first}`{suggestion}; known: {}",
            VARIABLES.join(", ")
        ));
    }
    Ok(env)
}

fn to_json(value: &Value) -> Result<String, TemplateError> {
    serde_json::to_string(value).map_err(|e| {
        TemplateError::new(
            ErrorKind::InvalidOperation,
            format!("cannot print as JSON: {e}"),
        )
    })
}

/// `{{ x|tojson }}`: the same JSON the formatter prints, marked safe so it is
/// not quoted twice.
fn tojson(value: Value) -> Result<Value, TemplateError> {
    to_json(&value).map(Value::from_safe_string)
}

/// When an answer means the recipient opted out.
#[derive(Debug)]
struct OptOut {
    status: Option<StatusCode>,
    matches: Option<String>,
}

impl OptOut {
    fn holds(&self, status: StatusCode, body: &str) -> bool {
        self.status.is_none_or(|s| s == status)
            && self.matches.as_deref().is_none_or(|m| body.contains(m))
    }
}

/// How the gateway's result code in the answer body is read.
#[derive(Debug)]
struct AnswerCodes {
    /// JSON pointer to the code.
    field: String,
    /// JSON pointer to the explanation.
    message: Option<String>,
    success: BTreeSet<String>,
    retryable: BTreeSet<String>,
    permanent: BTreeSet<String>,
    opted_out: BTreeSet<String>,
    other: OtherCodes,
}

/// A scalar JSON value as text: strings as they are, numbers and booleans
/// as JSON writes them.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub struct WebhookSender {
    name: String,
    client: reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    idempotency_header: Option<HeaderName>,
    env: Environment<'static>,
    secrets: BTreeMap<String, String>,
    id_pointer: Option<String>,
    opted_out: Option<OptOut>,
    codes: Option<AnswerCodes>,
    timeout: Duration,
}

impl WebhookSender {
    /// The rendered body, checked to be JSON.
    fn render(&self, message: &Outbound<'_>) -> Result<String, String> {
        let params: serde_json::Value = match message.params {
            None => serde_json::Value::Object(Default::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("the message's params are not a JSON object: {e}"))?,
        };
        let context = minijinja::context! {
            address => message.address,
            content => message.content,
            subject => message.subject,
            html => message.html,
            id => message.id,
            template => message.template,
            rule => message.rule_id,
            channel => message.channel.as_str(),
            attempt => message.attempt,
            params => Value::from_serialize(&params),
            customer => minijinja::context! {
                external_id => &message.recipient.external_id,
                name => &message.recipient.name,
            },
            secret => Value::from_serialize(&self.secrets),
            now => message.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let body = self
            .env
            .get_template("body")
            .and_then(|t| t.render(context))
            .map_err(|e| format!("the body template failed: {e}"))?;
        serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
            format!(
                "the body template did not render JSON ({e}); every {{{{ }}}} prints a JSON value, \
                 so write \"text\": {{{{ content }}}}, not \"text\": \"{{{{ content }}}}\""
            )
        })?;
        Ok(body)
    }

    /// What the result code in an answer means, when it decides: a listed
    /// code (any status), or a 2xx answer without a success code. `None`
    /// leaves the answer to the HTTP status (a 2xx with a success code is
    /// sent).
    fn classify_code(
        &self,
        codes: &AnswerCodes,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        message: &Outbound<'_>,
    ) -> Option<SendOutcome> {
        let answer: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let at = |pointer: &str| {
            answer
                .as_ref()
                .and_then(|a| a.pointer(pointer))
                .and_then(scalar_text)
        };
        let code = at(&codes.field);
        let said = || match (&code, codes.message.as_deref().and_then(at)) {
            (Some(code), Some(text)) => format!(
                "the gateway answered {status} with code {code}: {}",
                scrub(&text, message)
            ),
            (Some(code), None) => format!(
                "the gateway answered {status} with code {code}: {}",
                scrub(body, message)
            ),
            (None, _) => format!(
                "the gateway answered {status} without a code at {}: {}",
                codes.field,
                scrub(body, message)
            ),
        };
        if let Some(code) = &code {
            if codes.opted_out.contains(code) {
                return Some(SendOutcome::OptedOut {
                    reason: format!("{} (the recipient opted out)", said()),
                });
            }
            if codes.retryable.contains(code) {
                return Some(SendOutcome::Retryable {
                    error: said(),
                    retry_after: retry_after(headers, message.now),
                });
            }
            if codes.permanent.contains(code) {
                return Some(SendOutcome::Permanent { error: said() });
            }
        }
        if !status.is_success() || code.as_ref().is_some_and(|c| codes.success.contains(c)) {
            return None;
        }
        let error = format!(
            "{}; the success codes are {}",
            said(),
            codes
                .success
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(match codes.other {
            OtherCodes::Permanent => SendOutcome::Permanent { error },
            OtherCodes::Retryable => SendOutcome::Retryable {
                error,
                retry_after: retry_after(headers, message.now),
            },
        })
    }

    /// What an answer from the gateway means.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        message: &Outbound<'_>,
    ) -> SendOutcome {
        if self
            .opted_out
            .as_ref()
            .is_some_and(|o| o.holds(status, body))
        {
            return SendOutcome::OptedOut {
                reason: format!(
                    "the gateway answered {status} saying the recipient opted out: {}",
                    scrub(body, message)
                ),
            };
        }
        if let Some(codes) = &self.codes
            && let Some(outcome) = self.classify_code(codes, status, headers, body, message)
        {
            return outcome;
        }
        if status.is_success() {
            let found = self.id_pointer.as_deref().and_then(|pointer| {
                let answer: serde_json::Value = serde_json::from_str(body).ok()?;
                match answer.pointer(pointer)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            });
            if found.is_none()
                && let Some(pointer) = &self.id_pointer
            {
                tracing::warn!(sender = %self.name, id = message.id, field = %pointer,
                    "the gateway accepted the message but its answer has no id there");
            }
            return SendOutcome::Sent {
                provider_id: found.unwrap_or_else(|| format!("webhook-{}", message.id)),
            };
        }
        let error = format!("the gateway answered {status}: {}", scrub(body, message));
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            SendOutcome::Retryable {
                error,
                retry_after: retry_after(headers, message.now),
            }
        } else {
            SendOutcome::Permanent { error }
        }
    }
}

#[async_trait]
impl Sender for WebhookSender {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let body = match self.render(message) {
            Ok(body) => body,
            Err(error) => return SendOutcome::Permanent { error },
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(header) = &self.idempotency_header {
            request = request.header(header.clone(), format!("recall-{}", message.id));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return SendOutcome::Retryable {
                    error: format!("gateway: {}", describe(e, self.timeout)),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => {
                return SendOutcome::Retryable {
                    error: format!(
                        "gateway answered {status}, then {}",
                        describe(e, self.timeout)
                    ),
                    retry_after: None,
                };
            }
        };
        let outcome = self.classify(status, &headers, &text, message);
        tracing::debug!(sender = %self.name, id = message.id, to = %mask::address(message.address),
            %status, "webhook answered");
        outcome
    }
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date
/// (measured from the dispatcher's `now`).
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A request error in a few words, without the URL: "no answer within 10s",
/// "cannot connect: ... Connection refused".
pub(crate) fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let what = if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        format!("{what}: {error}")
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

/// A provider's answer, fit for an error message and a log line: the
/// recipient's address masked, the content and name taken out, one line,
/// at most 300 characters.
pub(crate) fn scrub(text: &str, message: &Outbound<'_>) -> String {
    let mut text = super::redact_secrets(text);
    if !message.content.trim().is_empty() {
        text = text.replace(message.content, "<content>");
        // Echoed inside a JSON answer, the content is escaped.
        let escaped = serde_json::to_string(message.content).unwrap_or_default();
        text = text.replace(escaped.trim_matches('"'), "<content>");
    }
    let mut text = text.replace(['\r', '\n'], " ");
    let name = message.recipient.name.trim();
    if name.chars().count() >= 2 {
        text = text.replace(name, &mask::name(name));
    }
    let address = message.address.trim();
    if !address.is_empty() {
        text = text.replace(address, &mask::address(address));
    }
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;
    use crate::testing::{Reply, TestServer};

    const BODY: &str = r#"{"to": {{ address|tojson }}, "text": {{ content }}, "ref": {{ id }},
        "code": {{ params.code }}, "customer": {{ customer.external_id }}, "key": {{ secret.key }}}"#;

    fn recipient() -> Recipient {
        Recipient {
            external_id: "C-0042".into(),
            name: "王丽".into(),
            ..Recipient::default()
        }
    }

    fn message(recipient: &Recipient) -> Outbound<'_> {
        Outbound {
            id: 7,
            channel: Channel::Sms,
            rule_id: "warning-recall",
            template: "recall_offer",
            subject: None,
            content: "王女士您好，\"回来看看\"\n回T退订",
            html: None,
            params: Some(r#"{"code":"8831"}"#),
            recipient,
            address: "+8613812345678",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: "2025-03-01T08:00:00Z".parse().unwrap(),
        }
    }

    fn context() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([
                (
                    "GATEWAY_AUTH".to_string(),
                    "Bearer s3cret-token".to_string(),
                ),
                ("GATEWAY_KEY".to_string(), "k-123".to_string()),
            ])),
            ..Context::default()
        }
    }

    fn config(url: &str, extra: &str) -> Config {
        toml::from_str(&format!(
            "url = {url:?}\nbody = '''{BODY}'''\nsecret_headers = {{ Authorization = \"GATEWAY_AUTH\" }}\n\
             secret_vars = {{ key = \"GATEWAY_KEY\" }}\n{extra}"
        ))
        .unwrap()
    }

    async fn send_to(server: &TestServer, extra: &str) -> SendOutcome {
        let sender = build(
            "gateway",
            &config(&format!("{}/sms/send", server.url), extra),
            &context(),
        )
        .unwrap();
        let recipient = recipient();
        sender.send(&message(&recipient)).await
    }

    #[tokio::test]
    async fn posts_the_rendered_json_with_headers_and_takes_the_id_from_the_answer() {
        let server = TestServer::start(|_, _| {
            Reply::json(200, serde_json::json!({"data": {"msgid": "G-991"}}))
        })
        .await;
        let outcome = send_to(
            &server,
            "headers = { \"X-Account\" = \"clinic-42\" }\nid_field = \"/data/msgid\"\nidempotency_header = \"Idempotency-Key\"\n",
        )
        .await;
        assert_eq!(
            outcome,
            SendOutcome::Sent {
                provider_id: "G-991".into()
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/sms/send");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(request.header("x-account"), Some("clinic-42"));
        assert_eq!(request.header("idempotency-key"), Some("recall-7"));
        assert_eq!(
            request.json(),
            serde_json::json!({
                "to": "+8613812345678",
                "text": "王女士您好，\"回来看看\"\n回T退订",
                "ref": 7,
                "code": "8831",
                "customer": "C-0042",
                "key": "k-123",
            })
        );
    }

    #[tokio::test]
    async fn a_dotted_id_field_and_a_missing_one_both_count_as_sent() {
        let server = TestServer::start(|_, index| {
            if index == 0 {
                Reply::json(201, serde_json::json!({"data": {"msgid": 5501}}))
            } else {
                Reply::text(202, "queued")
            }
        })
        .await;
        assert_eq!(
            send_to(&server, "id_field = \"data.msgid\"\nmethod = \"put\"\n").await,
            SendOutcome::Sent {
                provider_id: "5501".into()
            }
        );
        assert_eq!(
            send_to(&server, "id_field = \"data.msgid\"\n").await,
            SendOutcome::Sent {
                provider_id: "webhook-7".into()
            }
        );
        assert_eq!(server.requests()[0].method, "PUT");
    }

    #[tokio::test]
    async fn throttling_and_outages_are_retried_when_the_gateway_says() {
        let server = TestServer::start(|_, index| match index {
            0 => Reply::text(429, "slow down").header("Retry-After", "120"),
            1 => Reply::text(503, "maintenance")
                .header("Retry-After", "Sat, 01 Mar 2025 08:00:30 GMT"),
            _ => Reply::text(500, "boom"),
        })
        .await;
        let throttled = send_to(&server, "").await;
        assert_eq!(
            throttled,
            SendOutcome::Retryable {
                error: "the gateway answered 429 Too Many Requests: slow down".into(),
                retry_after: Some(Duration::from_secs(120)),
            }
        );
        let SendOutcome::Retryable { retry_after, .. } = send_to(&server, "").await else {
            panic!("503 must be retryable");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(30)));
        let SendOutcome::Retryable { error, retry_after } = send_to(&server, "").await else {
            panic!("500 must be retryable");
        };
        assert_eq!(retry_after, None);
        assert!(error.contains("500"), "{error}");
    }

    #[tokio::test]
    async fn other_client_errors_are_permanent_and_never_echo_the_address_or_content() {
        let server = TestServer::start(|request, _| {
            let echoed = request.json();
            Reply::text(
                400,
                &format!(
                    "bad number {} for text {}",
                    echoed["to"].as_str().unwrap(),
                    echoed["text"].as_str().unwrap()
                ),
            )
        })
        .await;
        let SendOutcome::Permanent { error } = send_to(&server, "").await else {
            panic!("400 must be permanent");
        };
        assert!(
            error.starts_with("the gateway answered 400 Bad Request: bad number"),
            "{error}"
        );
        assert!(!error.contains("13812345678"), "{error}");
        assert!(error.contains("+86138****5678"), "{error}");
        assert!(!error.contains("回来看看"), "{error}");
        assert!(error.ends_with("for text <content>"), "{error}");
        let server = TestServer::start(|request, _| Reply::json(422, request.json())).await;
        let SendOutcome::Permanent { error } = send_to(&server, "").await else {
            panic!("422 must be permanent");
        };
        assert!(
            !error.contains("回来看看") && error.contains("<content>"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_gateways_opt_out_answer_withdraws_consent() {
        let server = TestServer::start(|_, index| match index {
            0 => Reply::json(409, serde_json::json!({"error": "UNSUBSCRIBED"})),
            1 => Reply::json(409, serde_json::json!({"error": "DUPLICATE"})),
            _ => Reply::json(200, serde_json::json!({"result": "BLACKLISTED"})),
        })
        .await;
        let both = "opted_out_status = 409\nopted_out_match = \"UNSUBSCRIBED\"\n";
        let SendOutcome::OptedOut { reason } = send_to(&server, both).await else {
            panic!("409 UNSUBSCRIBED must be an opt-out");
        };
        assert!(reason.contains("UNSUBSCRIBED"), "{reason}");
        assert!(matches!(
            send_to(&server, both).await,
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            send_to(&server, "opted_out_match = \"BLACKLISTED\"\n").await,
            SendOutcome::OptedOut { .. }
        ));
    }

    /// Gateways (many Chinese SMS gateways among them) that answer HTTP 200
    /// with an error code in the body.
    fn coded(code: serde_json::Value, msg: &str) -> Reply {
        Reply::json(
            200,
            serde_json::json!({"code": code, "msg": msg, "data": {"msgid": "G-1"}}),
        )
    }

    const CODES: &str = "code_field = \"/code\"\nsuccess_codes = [\"0\"]\nmessage_field = \"msg\"\nid_field = \"data.msgid\"\n";

    #[tokio::test]
    async fn a_200_with_an_error_code_is_not_sent_when_a_success_check_is_configured() {
        let server = TestServer::start(|_, index| match index {
            0 | 1 => coded(serde_json::json!("1001"), "invalid mobile number"),
            2 => coded(serde_json::json!(0), "ok"),
            _ => Reply::text(200, "OK"),
        })
        .await;
        // Without a success check, today's behaviour: any 2xx is sent.
        assert_eq!(
            send_to(&server, "id_field = \"data.msgid\"\n").await,
            SendOutcome::Sent {
                provider_id: "G-1".into()
            }
        );
        assert_eq!(
            send_to(&server, CODES).await,
            SendOutcome::Permanent {
                error: "the gateway answered 200 OK with code 1001: invalid mobile number; \
                        the success codes are 0"
                    .into()
            }
        );
        // A numeric success code matches its text.
        assert_eq!(
            send_to(&server, CODES).await,
            SendOutcome::Sent {
                provider_id: "G-1".into()
            }
        );
        let SendOutcome::Permanent { error } = send_to(&server, CODES).await else {
            panic!("a 200 without a code must not be sent");
        };
        assert_eq!(
            error,
            "the gateway answered 200 OK without a code at /code: OK; the success codes are 0"
        );
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn body_codes_map_to_retryable_permanent_and_opted_out() {
        let server = TestServer::start(|_, index| match index {
            0 => coded(serde_json::json!("1005"), "too frequent").header("Retry-After", "60"),
            1 => coded(serde_json::json!(1010), "user in blacklist"),
            2 => Reply::json(
                500,
                serde_json::json!({"code": "1002", "msg": "template not approved"}),
            ),
            _ => coded(serde_json::json!("9999"), "system busy"),
        })
        .await;
        let lists = format!(
            "{CODES}retryable_codes = [\"1005\"]\nopted_out_codes = [\"1010\"]\npermanent_codes = [\"1002\"]\n"
        );
        assert_eq!(
            send_to(&server, &lists).await,
            SendOutcome::Retryable {
                error: "the gateway answered 200 OK with code 1005: too frequent".into(),
                retry_after: Some(Duration::from_secs(60)),
            }
        );
        let SendOutcome::OptedOut { reason } = send_to(&server, &lists).await else {
            panic!("an opt-out code must be an opt-out");
        };
        assert!(reason.contains("code 1010: user in blacklist"), "{reason}");
        // A listed code wins over the HTTP status (500 alone would be retried).
        assert_eq!(
            send_to(&server, &lists).await,
            SendOutcome::Permanent {
                error: "the gateway answered 500 Internal Server Error with code 1002: template not approved"
                    .into()
            }
        );
        let SendOutcome::Retryable { error, .. } =
            send_to(&server, &format!("{lists}other_codes = \"retryable\"\n")).await
        else {
            panic!("other_codes = retryable must retry an unlisted code");
        };
        assert!(error.contains("code 9999: system busy"), "{error}");
    }

    #[test]
    fn code_settings_are_checked_when_built() {
        let build_with = |extra: &str| {
            let config: Config = toml::from_str(&format!(
                "url = \"https://sms.example.com/\"\nbody = '{{}}'\n{extra}"
            ))
            .unwrap();
            build("gateway", &config, &context())
                .err()
                .map(|e| e.to_string())
        };
        assert!(build_with(CODES).is_none());
        let err = build_with("retryable_codes = [\"1005\"]\n").unwrap();
        assert!(err.contains("retryable_codes needs code_field"), "{err}");
        let err = build_with("code_field = \"/code\"\n").unwrap();
        assert!(err.contains("needs success_codes"), "{err}");
        let err = build_with(&format!("{CODES}permanent_codes = [\"0\"]\n")).unwrap();
        assert!(
            err.contains("\"0\" is in both success_codes and permanent_codes"),
            "{err}"
        );
        assert!(
            toml::from_str::<Config>(
                "url = \"https://x.example/\"\nbody = '{}'\nother_codes = \"ignore\"\n"
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_gateway_slower_than_the_timeout_is_retried() {
        let server = TestServer::start(|_, _| {
            Reply::json(200, serde_json::json!({})).delayed(Duration::from_secs(3))
        })
        .await;
        let outcome = send_to(&server, "timeout = \"200ms\"\n").await;
        assert_eq!(
            outcome,
            SendOutcome::Retryable {
                error: "gateway: no answer within 200ms".into(),
                retry_after: None,
            }
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_retried() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let sender = build(
            "gateway",
            &config(&format!("http://127.0.0.1:{port}/"), ""),
            &context(),
        )
        .unwrap();
        let recipient = recipient();
        let SendOutcome::Retryable { error, .. } = sender.send(&message(&recipient)).await else {
            panic!("a refused connection must be retryable");
        };
        assert!(error.starts_with("gateway: cannot connect"), "{error}");
    }

    #[tokio::test]
    async fn a_body_that_renders_to_broken_json_is_permanent_and_nothing_is_sent() {
        let server = TestServer::start(|_, _| Reply::json(200, serde_json::json!({}))).await;
        let config: Config = toml::from_str(&format!(
            "url = \"{}/\"\nbody = '{{\"text\": \"{{{{ content }}}}\"}}'\n",
            server.url
        ))
        .unwrap();
        let sender = build("gateway", &config, &context()).unwrap();
        let recipient = recipient();
        let SendOutcome::Permanent { error } = sender.send(&message(&recipient)).await else {
            panic!("broken JSON must be permanent");
        };
        assert!(error.contains("did not render JSON"), "{error}");
        assert!(!error.contains("回来看看"), "{error}");
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_template_that_needs_a_missing_param_fails_that_message_only() {
        let server = TestServer::start(|_, _| Reply::json(200, serde_json::json!({}))).await;
        let sender = build(
            "gateway",
            &config(&format!("{}/", server.url), ""),
            &context(),
        )
        .unwrap();
        let recipient = recipient();
        let SendOutcome::Permanent { error } = sender
            .send(&Outbound {
                params: None,
                ..message(&recipient)
            })
            .await
        else {
            panic!("a missing param must be permanent");
        };
        assert!(error.contains("body template failed"), "{error}");
        assert!(server.requests().is_empty());
    }

    #[test]
    fn template_mistakes_stop_the_build() {
        let build_with = |body: &str| {
            let config: Config = toml::from_str(&format!(
                "url = \"https://sms.example.com/\"\nbody = '''{body}'''\n"
            ))
            .unwrap();
            build("gateway", &config, &context())
                .err()
                .unwrap()
                .to_string()
        };
        let err = build_with(r#"{"text": {{ content }"#);
        assert!(err.contains("does not compile"), "{err}");
        let err = build_with(r#"{"text": {{ contnet }}}"#);
        assert!(
            err.contains("unknown variable `contnet`") && err.contains("`content`"),
            "{err}"
        );
    }

    #[test]
    fn config_rejects_unknown_keys_and_names_missing_secrets() {
        let err =
            toml::from_str::<Config>("url = \"https://x.example/\"\nbody = '{}'\nheader = {}\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field `header`"), "{err}");
        let config: Config = toml::from_str(
            "url = \"https://x.example/\"\nbody = '{}'\nsecret_headers = { Authorization = \"NOT_SET\" }\n",
        )
        .unwrap();
        let err = build("gateway", &config, &context())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("NOT_SET"), "{err}");
        let config: Config = toml::from_str(
            "url = \"https://x.example/\"\nbody = '{}'\nheaders = { Authorization = \"Bearer abc\" }\n",
        )
        .unwrap();
        let err = build("gateway", &config, &context())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("secret_headers") && !err.contains("abc"),
            "{err}"
        );
        let config: Config = toml::from_str("url = \"ftp://x.example/\"\nbody = '{}'\n").unwrap();
        assert!(build("gateway", &config, &context()).is_err());
        let config: Config =
            toml::from_str("url = \"https://x.example/\"\nbody = '{}'\nmethod = \"GET\"\n")
                .unwrap();
        assert!(build("gateway", &config, &context()).is_err());
        assert!(
            toml::from_str::<Config>(
                "url = \"https://x.example/\"\nbody = '{}'\ntimeout = \"soon\"\n"
            )
            .is_err()
        );
    }
}
