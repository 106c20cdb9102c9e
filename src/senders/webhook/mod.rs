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
//! content or unmasked addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minijinja::{Environment, Error as TemplateError, ErrorKind, UndefinedBehavior, Value};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::kit::{self, describe, http, retry_after};
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};

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
    #[serde(default = "kit::default_timeout_text")]
    pub timeout: String,
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

/// What [`validate`] checked of a webhook config: everything but its
/// secrets, ready for [`build`].
pub struct Checked {
    url: Url,
    method: Method,
    /// The plain headers; secret ones are added by [`build`].
    headers: HeaderMap,
    /// Secret headers: the header and the variable holding its value.
    secret_headers: Vec<(HeaderName, String, String)>,
    idempotency_header: Option<HeaderName>,
    env: Environment<'static>,
    opted_out: Option<OptOut>,
    codes: Option<AnswerCodes>,
    timeout: Duration,
}

/// Checks a config without touching the environment or the network, and
/// reports every problem at once.
pub fn validate(config: &Config) -> Result<Checked, Vec<Invalid>> {
    let mut problems = Problems::default();
    let url = problems.take(url_setting(&config.url));
    let method = problems.take(method_setting(&config.method));
    let mut headers = HeaderMap::new();
    for (key, value) in &config.headers {
        if let Some((header, value)) = problems.take(plain_header(key, value)) {
            headers.insert(header, value);
        }
    }
    let mut secret_headers = Vec::new();
    for (key, var) in &config.secret_headers {
        if config.headers.keys().any(|k| k.eq_ignore_ascii_case(key)) {
            problems.push(Invalid::new(
                "secret_headers",
                format!("header `{key}` is in both headers and secret_headers; keep it in one"),
                format!("请求头 `{key}` 同时写在 headers 和 secret_headers 中：只保留一处"),
            ));
        }
        if let Some(header) = problems.take(header_setting("secret_headers", key)) {
            secret_headers.push((header, key.clone(), var.clone()));
        }
    }
    let idempotency_header = problems.take(
        config
            .idempotency_header
            .as_deref()
            .map(|key| header_setting("idempotency_header", key))
            .transpose(),
    );
    let env = problems.take(
        body_environment(&config.body)
            .map_err(|why| Invalid::new("body", why.clone(), format!("body 模板有误：{why}"))),
    );
    let opted_out = problems.take(opt_out(config));
    let codes = problems.take(answer_codes(config));
    let timeout = problems.take(http::timeout_setting(&config.timeout));
    let checked = (|| {
        Some(Checked {
            url: url?,
            method: method?,
            headers,
            secret_headers,
            idempotency_header: idempotency_header?,
            env: env?,
            opted_out: opted_out?,
            codes: codes?,
            timeout: timeout?,
        })
    })();
    problems.finish(checked)
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let error = |message: String| BuildError::new(name, message);
    let checked = validate(config).map_err(|p| BuildError::invalid(name, &p))?;
    // Every secret is read before any is refused: all missing ones are named.
    let mut failed = Vec::new();
    let mut headers = checked.headers;
    for (header, key, var) in checked.secret_headers {
        let value = ctx.secret(name, &var).and_then(|secret| {
            HeaderValue::from_str(secret.trim()).map_err(|_| {
                error(format!(
                    "secret_headers.{key}: environment variable {var} does not hold a valid header value"
                ))
            })
        });
        match value {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(header, value);
            }
            Err(e) => failed.push(e),
        }
    }
    let mut secrets = BTreeMap::new();
    for (key, var) in &config.secret_vars {
        match ctx.secret(name, var) {
            Ok(secret) => {
                secrets.insert(key.clone(), secret);
            }
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        return Err(BuildError::all(name, failed));
    }
    let client = kit::client(checked.timeout).map_err(error)?;
    Ok(Arc::new(WebhookSender {
        name: name.to_string(),
        client,
        method: checked.method,
        url: checked.url,
        headers,
        idempotency_header: checked.idempotency_header,
        env: checked.env,
        secrets,
        id_pointer: config.id_field.as_deref().map(json_pointer),
        opted_out: checked.opted_out,
        codes: checked.codes,
        timeout: checked.timeout,
    }))
}

fn url_setting(text: &str) -> Result<Url, Invalid> {
    let wrong = |en: String| {
        Invalid::new(
            "url",
            en,
            format!("url `{text}` 应以 https:// 开头（诊所内网的网关可用 http://）"),
        )
    };
    let url = Url::parse(text).map_err(|e| wrong(format!("url `{text}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(wrong(format!(
            "url `{text}` must start with https:// (or http:// on the clinic's own network)"
        )));
    }
    Ok(url)
}

fn method_setting(text: &str) -> Result<Method, Invalid> {
    match text.to_ascii_uppercase().as_str() {
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        other => Err(Invalid::new(
            "method",
            format!("method `{other}` cannot carry a JSON body: use POST, PUT or PATCH"),
            format!("method `{other}` 不能携带 JSON 请求体：请用 POST、PUT 或 PATCH"),
        )),
    }
}

/// A header of `headers`: a valid name and value, and no credential.
fn plain_header(key: &str, value: &str) -> Result<(HeaderName, HeaderValue), Invalid> {
    let header = header_setting("headers", key)?;
    if SECRET_HEADERS.contains(&header.as_str()) {
        return Err(Invalid::new(
            "headers",
            format!(
                "headers.{key} holds a secret, which recall.toml must not: write secret_headers = {{ {key} = \"SOME_ENV_VAR\" }} and set SOME_ENV_VAR"
            ),
            format!("headers.{key} 是密钥，不能写在 recall.toml 里"),
        )
        .hint(
            format!("write secret_headers = {{ {key} = \"SOME_ENV_VAR\" }} and set SOME_ENV_VAR in the service's environment"),
            format!("请写 secret_headers = {{ {key} = \"某环境变量\" }}，并在服务的环境中设置该变量"),
        ));
    }
    let value = HeaderValue::from_str(value).map_err(|_| {
        Invalid::new(
            "headers",
            format!("headers.{key}: the value is not a valid header value"),
            format!("headers.{key}：不是合法的请求头取值"),
        )
    })?;
    Ok((header, value))
}

/// A header name given under `key`.
fn header_setting(key: &str, name: &str) -> Result<HeaderName, Invalid> {
    header_name(name)
        .map_err(|why| Invalid::new(key, why, format!("`{name}` 不是合法的请求头名称")))
}

/// `opted_out_status` and `opted_out_match`, checked.
fn opt_out(config: &Config) -> Result<Option<OptOut>, Invalid> {
    let (status, matches) = match (config.opted_out_status, &config.opted_out_match) {
        (None, None) => return Ok(None),
        pair => pair,
    };
    let status = status
        .map(|code| {
            StatusCode::from_u16(code).map_err(|_| {
                Invalid::new(
                    "opted_out_status",
                    format!("opted_out_status {code} is not an HTTP status"),
                    format!("opted_out_status {code} 不是 HTTP 状态码"),
                )
            })
        })
        .transpose()?;
    if matches.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(Invalid::new(
            "opted_out_match",
            "opted_out_match must not be empty",
            "opted_out_match 不能为空",
        ));
    }
    Ok(Some(OptOut {
        status,
        matches: matches.clone(),
    }))
}

/// The result-code settings, checked: a code field needs its success codes,
/// code lists need a code field, and no code may mean two things.
fn answer_codes(config: &Config) -> Result<Option<AnswerCodes>, Invalid> {
    let lists = [
        ("success_codes", &config.success_codes),
        ("retryable_codes", &config.retryable_codes),
        ("permanent_codes", &config.permanent_codes),
        ("opted_out_codes", &config.opted_out_codes),
    ];
    let Some(field) = config.code_field.as_deref() else {
        if let Some((list, _)) = lists.iter().find(|(_, codes)| !codes.is_empty()) {
            return Err(Invalid::new(
                *list,
                format!(
                    "{list} needs code_field: where in the answer the gateway puts its code (e.g. code_field = \"/code\")"
                ),
                format!(
                    "{list} 需要 code_field：网关在应答中放结果码的位置（例如 code_field = \"/code\"）"
                ),
            ));
        }
        if config.message_field.is_some() || config.other_codes != OtherCodes::Permanent {
            let key = if config.message_field.is_some() {
                "message_field"
            } else {
                "other_codes"
            };
            return Err(Invalid::new(
                key,
                "message_field and other_codes need code_field: where in the answer the gateway puts its code (e.g. code_field = \"/code\")",
                "message_field 和 other_codes 需要 code_field：网关在应答中放结果码的位置（例如 code_field = \"/code\"）",
            ));
        }
        return Ok(None);
    };
    if field.trim().is_empty() {
        return Err(Invalid::new(
            "code_field",
            "code_field must not be empty",
            "code_field 不能为空",
        ));
    }
    if config.success_codes.is_empty() {
        return Err(Invalid::new(
            "code_field",
            format!(
                "code_field = {field:?} needs success_codes: the code(s) with which the gateway says it took the message (e.g. success_codes = [\"0\"])"
            ),
            format!(
                "code_field = {field:?} 需要 success_codes：网关表示已受理消息的结果码（例如 success_codes = [\"0\"]）"
            ),
        ));
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (list, codes) in lists {
        for code in codes.iter() {
            if let Some(other) = seen.insert(code.as_str(), list)
                && other != list
            {
                return Err(Invalid::new(
                    list,
                    format!("code {code:?} is in both {other} and {list}; keep it in one"),
                    format!("结果码 {code:?} 同时出现在 {other} 和 {list} 中：只保留一处"),
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
        let params: serde_json::Value = match message.content.params.as_deref() {
            None => serde_json::Value::Object(Default::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("the message's params are not a JSON object: {e}"))?,
        };
        let context = minijinja::context! {
            address => message.address,
            content => message.content.body,
            subject => message.content.subject,
            html => message.content.html,
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
                kit::scrub_body(&text, message, None)
            ),
            (Some(code), None) => format!(
                "the gateway answered {status} with code {code}: {}",
                kit::scrub_body(body, message, None)
            ),
            (None, _) => format!(
                "the gateway answered {status} without a code at {}: {}",
                codes.field,
                kit::scrub_body(body, message, None)
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
                    kit::scrub_body(body, message, None)
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
        let error = format!(
            "the gateway answered {status}: {}",
            kit::scrub_body(body, message, None)
        );
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

#[cfg(test)]
mod tests;
