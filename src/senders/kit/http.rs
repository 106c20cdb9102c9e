//! The HTTP plumbing of every HTTP sender: one client builder with one
//! timeout convention, the `timeout` and `endpoint` settings, `Retry-After`,
//! and transport errors as text without their URL.
//!
//! The timeout convention: a sender's config keeps `timeout = "10s"` as
//! written (a humantime duration longer than zero; [`default_timeout_text`]
//! when absent), and its pure `validate` reads it with [`timeout_setting`],
//! so `recall check` reports a bad one at its line together with every
//! other problem of the section; [`client`] gives the whole exchange that
//! long and the connection at most 10 s of it. [`connection`] checks the
//! `endpoint` and `timeout` an HTTP sender's config has.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::senders::{Invalid, Problems};

/// How long a sender waits for its provider when its config does not say.
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// [`default_timeout`] as written in `recall.toml`.
pub fn default_timeout_text() -> String {
    humantime::format_duration(default_timeout()).to_string()
}

/// Reads a duration as written in `recall.toml` (`"10s"`, `"500ms"`,
/// `"3d"`); zero is refused, as a timeout of zero would never wait.
/// `example` is what the error suggests.
pub fn parse_duration(text: &str, example: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(value) if value.is_zero() => Err(format!("`{text}` must be longer than zero")),
        Ok(value) => Ok(value),
        Err(e) => Err(format!(
            "`{text}` is not a duration like \"{example}\": {e}"
        )),
    }
}

/// A duration setting `key` (`timeout`, `confirm_within`), kept as written
/// in the config and read by a pure `validate` with [`parse_duration`].
pub fn duration_setting(key: &str, value: &str, example: &str) -> Result<Duration, Invalid> {
    parse_duration(value, example).map_err(|why| {
        Invalid::new(
            key,
            format!("{key} {why}"),
            format!("{key} `{value}` 应是大于零的时长，例如 \"{example}\""),
        )
    })
}

/// The `timeout` setting: how long one call to the provider may take.
pub fn timeout_setting(value: &str) -> Result<Duration, Invalid> {
    duration_setting("timeout", value, "10s")
}

/// Where and how long to call a provider: the `endpoint` and `timeout`
/// settings of an HTTP sender, checked.
#[derive(Debug, Clone)]
pub struct Connection {
    pub endpoint: Url,
    pub timeout: Duration,
}

/// Checks `endpoint` (an http(s) URL like `example`) and `timeout`, adding
/// what is wrong to `problems`.
pub fn connection(
    problems: &mut Problems,
    endpoint: &str,
    example: &str,
    timeout: &str,
) -> Option<Connection> {
    let endpoint = problems.take(endpoint_setting(endpoint, example));
    let timeout = problems.take(timeout_setting(timeout));
    Some(Connection {
        endpoint: endpoint?,
        timeout: timeout?,
    })
}

/// An HTTP client for a provider: the given timeout for the whole exchange,
/// no redirects (a provider that redirects a POST is misconfigured).
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("recall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Checks an `endpoint` setting: an http(s) URL with a host and no query.
pub fn parse_endpoint(field: &str, value: &str, example: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| {
        format!("{field} `{value}` is not a URL ({e}); write it like \"{example}\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{field} `{value}` must be an http(s) URL like \"{example}\""
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{field} `{value}` must not carry a query or fragment; write it like \"{example}\""
        ));
    }
    Ok(url)
}

/// The `endpoint` setting, checked as [`parse_endpoint`] does.
pub fn endpoint_setting(value: &str, example: &str) -> Result<Url, Invalid> {
    parse_endpoint("endpoint", value, example).map_err(|why| {
        Invalid::new(
            "endpoint",
            why,
            format!("endpoint `{value}` 应是不带查询参数的 http(s) 地址，例如 \"{example}\""),
        )
    })
}

/// The `Host` header for a URL: host, plus the port when it is not the
/// scheme's default (test servers on 127.0.0.1). Signed requests set it
/// explicitly so the header sent is the header signed.
pub fn host_header(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date
/// measured from the dispatcher's `now`. A date already past asks for no
/// particular wait, so the dispatcher's own backoff applies.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// What a provider answered: its status, the wait its `Retry-After` asks
/// for, and its body when that is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Option<serde_json::Value>,
}

impl Answer {
    /// A top-level string field of the body.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.body.as_ref()?.get(name)?.as_str()
    }
}

/// An answer cut off while it was read: the provider may have acted on
/// the request.
#[derive(Debug)]
pub struct CutOff {
    pub error: reqwest::Error,
    pub retry_after: Option<Duration>,
}

/// Reads a provider's whole answer; `now` is what a `Retry-After` date is
/// measured from.
pub async fn read_answer(
    response: reqwest::Response,
    now: DateTime<Utc>,
) -> Result<Answer, CutOff> {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), now);
    match response.bytes().await {
        Ok(bytes) => Ok(Answer {
            status,
            retry_after,
            body: serde_json::from_slice(&bytes).ok(),
        }),
        Err(error) => Err(CutOff { error, retry_after }),
    }
}

/// A request error in a few words, without the URL: "no answer within 10s",
/// "cannot connect: ... Connection refused".
pub fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let what = if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let causes = causes(&error);
    if causes.is_empty() {
        format!("{what}: {error}")
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

/// A transport error as text, with its causes but without the URL (whose
/// query may hold the phone number or a key).
pub fn error_text(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    for cause in causes(&error) {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// What caused an error, outermost first.
fn causes(error: &reqwest::Error) -> Vec<String> {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keeps_only_a_non_default_port() {
        let url = Url::parse("https://dysmsapi.aliyuncs.com").unwrap();
        assert_eq!(host_header(&url).unwrap(), "dysmsapi.aliyuncs.com");
        let url = Url::parse("http://127.0.0.1:8123/").unwrap();
        assert_eq!(host_header(&url).unwrap(), "127.0.0.1:8123");
    }

    #[test]
    fn endpoints_and_timeouts_are_checked() {
        assert!(parse_endpoint("endpoint", "https://x.example", "https://x").is_ok());
        assert!(parse_endpoint("endpoint", "http://127.0.0.1:8080", "https://x").is_ok());
        assert!(parse_endpoint("endpoint", "x.example", "https://x").is_err());
        assert!(parse_endpoint("endpoint", "ftp://x.example", "https://x").is_err());
        assert!(parse_endpoint("endpoint", "https://x.example/?a=1", "https://x").is_err());
        assert_eq!(
            timeout_setting("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        let zero = timeout_setting("0s").unwrap_err();
        assert_eq!(zero.key, "timeout");
        assert_eq!(zero.message, "timeout `0s` must be longer than zero");
        let soon = timeout_setting("soon").unwrap_err().message;
        assert!(
            soon.starts_with("timeout `soon` is not a duration like \"10s\""),
            "{soon}"
        );
        let days = duration_setting("confirm_within", "3 days?", "3d").unwrap_err();
        assert_eq!(days.key, "confirm_within");
        assert!(days.message_zh.contains("例如 \"3d\""), "{days:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(60)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:26:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), None);
    }
}
