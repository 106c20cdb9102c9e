//! Access tokens, and the request plumbing, shared by the WeCom (`wecom`) and
//! WeChat Official Account (`wechat_official`) senders.
//!
//! Both providers authenticate every call with an `access_token` that lives
//! about two hours and answer every call with a JSON body carrying `errcode`
//! and `errmsg`. [`App`] is one app's credentials, HTTP client and
//! [`TokenCache`]: it fetches a token on first use, keeps it until shortly
//! before it expires, and when the provider rejects it as expired or invalid,
//! fetches a new one **once** and repeats the call **once**.
//!
//! There must be one token owner per app: refreshes are serialized behind a
//! lock and re-checked under it, so concurrent sends that all meet a rejected
//! token share a single refresh instead of invalidating each other's tokens.
//! Time is the caller's (`message.now`), never the wall clock.
//!
//! Nothing here may log or put into an error a token, a secret, or a URL
//! that carries one: reqwest errors are stripped of their URL.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

/// An access token. `Debug` hides the value so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(value: impl Into<String>) -> Self {
        AccessToken(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// A token as the provider issued it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: AccessToken,
    /// How long the provider says it is valid (`expires_in`).
    pub expires_in: Duration,
}

/// A cached token is replaced this long before it expires, so a call never
/// starts with a token about to lapse. Tokens that live less than twice this
/// are replaced halfway through their life.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// One app's current access token.
#[derive(Default)]
pub struct TokenCache {
    held: Mutex<Option<Held>>,
}

struct Held {
    token: AccessToken,
    /// From this instant on, the token is fetched anew.
    refresh_at: DateTime<Utc>,
}

impl Held {
    fn new(issued: Issued, now: DateTime<Utc>) -> Held {
        let margin = if issued.expires_in > REFRESH_MARGIN * 2 {
            REFRESH_MARGIN
        } else {
            issued.expires_in / 2
        };
        let life = chrono::Duration::from_std(issued.expires_in - margin)
            .unwrap_or(chrono::Duration::zero());
        Held {
            token: issued.token,
            refresh_at: now + life,
        }
    }

    fn fresh_at(&self, now: DateTime<Utc>) -> bool {
        now < self.refresh_at
    }
}

impl TokenCache {
    /// The cached token if it is still fresh at `now`, otherwise a new one
    /// from `issue`. Callers that find no fresh token wait for each other, so
    /// only one of them fetches.
    pub async fn get<F, Fut, E>(&self, now: DateTime<Utc>, issue: F) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Issued, E>>,
    {
        let mut held = self.held.lock().await;
        if let Some(current) = held.as_ref().filter(|h| h.fresh_at(now)) {
            return Ok(current.token.clone());
        }
        let issued = issue().await?;
        let current = Held::new(issued, now);
        let token = current.token.clone();
        *held = Some(current);
        Ok(token)
    }

    /// The provider rejected `rejected` as expired or invalid: a new token,
    /// unless another caller already replaced it while this one waited for
    /// the lock, in which case that replacement is returned.
    pub async fn replace<F, Fut, E>(
        &self,
        rejected: &AccessToken,
        now: DateTime<Utc>,
        issue: F,
    ) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Issued, E>>,
    {
        let mut held = self.held.lock().await;
        if let Some(current) = held
            .as_ref()
            .filter(|h| h.token != *rejected && h.fresh_at(now))
        {
            return Ok(current.token.clone());
        }
        *held = None;
        let issued = issue().await?;
        let current = Held::new(issued, now);
        let token = current.token.clone();
        *held = Some(current);
        Ok(token)
    }
}

/// What a WeChat-style JSON API answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 0 when the body has no `errcode` (the Official Account token answer).
    pub errcode: i64,
    pub errmsg: String,
    pub body: Value,
}

impl Answer {
    /// `errcode errmsg`, for error messages.
    pub fn describe(&self) -> String {
        format!("errcode {} ({})", self.errcode, self.errmsg)
    }
}

/// A call that got no JSON answer from the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Timeout, refused connection, TLS or DNS failure.
    #[error("{0}")]
    Transport(String),
    /// An HTTP status other than 2xx.
    #[error("HTTP status {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not the JSON the provider sends.
    #[error("unreadable answer: {0}")]
    Decode(String),
}

impl CallError {
    /// Whether trying again later may help: transport failures, throttling,
    /// server errors and garbled answers (a proxy's error page) may pass;
    /// a 4xx (a wrong `endpoint`) will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Transport(_) | CallError::Decode(_) => true,
            CallError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Sends a request and reads the provider's JSON answer.
pub async fn call(request: reqwest::RequestBuilder) -> Result<Answer, CallError> {
    let response = request
        .send()
        .await
        .map_err(|e| CallError::Transport(describe(e)))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(CallError::Status {
            status: status.as_u16(),
            retry_after,
        });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CallError::Transport(describe(e)))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| CallError::Decode(e.to_string()))?;
    if !body.is_object() {
        return Err(CallError::Decode("not a JSON object".into()));
    }
    Ok(Answer {
        errcode: body.get("errcode").and_then(Value::as_i64).unwrap_or(0),
        errmsg: body
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        body,
    })
}

/// A reqwest error as text, without the URL (which may carry a token, a
/// secret or a webhook key) but with its causes.
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How an app gets its tokens.
pub enum Credentials {
    /// WeCom: `GET /cgi-bin/gettoken?corpid=..&corpsecret=..`.
    WeCom { corp_id: String, secret: String },
    /// Official Account: `POST /cgi-bin/stable_token`, which — unlike the
    /// classic `/cgi-bin/token` — does not invalidate tokens other systems of
    /// the clinic hold for the same account.
    Official { app_id: String, secret: String },
}

/// The token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("cannot reach the token endpoint: {0}")]
    Call(#[from] CallError),
    #[error(
        "the token endpoint refused: errcode {errcode} ({errmsg}); check the app id and the secret's environment variable"
    )]
    Refused { errcode: i64, errmsg: String },
}

/// A call that went through [`App::call`] without an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ApiError {
    pub fn is_retryable(&self) -> bool {
        match self {
            // A refused token is a setting to fix, not this message's fault:
            // keep the message while someone fixes it.
            ApiError::Token(TokenError::Refused { .. }) => true,
            ApiError::Token(TokenError::Call(e)) | ApiError::Call(e) => e.is_retryable(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Token(TokenError::Call(e)) | ApiError::Call(e) => e.retry_after(),
            ApiError::Token(TokenError::Refused { .. }) => None,
        }
    }
}

/// One app: its endpoint, credentials, HTTP client and token.
pub struct App {
    pub client: reqwest::Client,
    /// `https://qyapi.weixin.qq.com` or `https://api.weixin.qq.com`, no
    /// trailing slash.
    pub endpoint: String,
    credentials: Credentials,
    /// The `errcode`s that mean "this token is expired or invalid".
    token_errors: &'static [i64],
    cache: TokenCache,
}

impl App {
    pub fn new(
        client: reqwest::Client,
        endpoint: &str,
        credentials: Credentials,
        token_errors: &'static [i64],
    ) -> App {
        App {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            credentials,
            token_errors,
            cache: TokenCache::default(),
        }
    }

    /// `endpoint` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// Whether `errcode` says the token was expired or invalid.
    pub fn is_token_error(&self, errcode: i64) -> bool {
        self.token_errors.contains(&errcode)
    }

    /// Calls an API with the current token (`request` adds it as the
    /// `access_token` query parameter of the request it builds). If the
    /// provider rejects the token, gets a new one once and calls once more;
    /// a second rejection is returned as it is.
    pub async fn call<R>(&self, now: DateTime<Utc>, request: R) -> Result<Answer, ApiError>
    where
        R: Fn(&AccessToken) -> reqwest::RequestBuilder,
    {
        let token = self.cache.get(now, || self.issue()).await?;
        let answer = call(request(&token)).await?;
        if !self.is_token_error(answer.errcode) {
            return Ok(answer);
        }
        tracing::info!(
            errcode = answer.errcode,
            "access token rejected; getting a new one"
        );
        let token = self.cache.replace(&token, now, || self.issue()).await?;
        Ok(call(request(&token)).await?)
    }

    /// Asks the provider for a new token.
    async fn issue(&self) -> Result<Issued, TokenError> {
        let answer =
            match &self.credentials {
                Credentials::WeCom { corp_id, secret } => {
                    call(self.client.get(self.url("/cgi-bin/gettoken")).query(&[
                        ("corpid", corp_id.as_str()),
                        ("corpsecret", secret.as_str()),
                    ]))
                    .await?
                }
                Credentials::Official { app_id, secret } => {
                    call(self.client.post(self.url("/cgi-bin/stable_token")).json(
                        &serde_json::json!({
                            "grant_type": "client_credential",
                            "appid": app_id,
                            "secret": secret,
                            "force_refresh": false,
                        }),
                    ))
                    .await?
                }
            };
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        match serde_json::from_value::<Token>(answer.body.clone()) {
            Ok(token) if answer.errcode == 0 && !token.access_token.is_empty() => Ok(Issued {
                token: AccessToken(token.access_token),
                expires_in: Duration::from_secs(token.expires_in),
            }),
            _ if answer.errcode != 0 => Err(TokenError::Refused {
                errcode: answer.errcode,
                errmsg: answer.errmsg,
            }),
            _ => Err(TokenError::Call(CallError::Decode(
                "no access_token/expires_in in the token answer".into(),
            ))),
        }
    }
}

/// Deserializes a humantime duration (`"10s"`, `"3d"`) for sender configs.
pub fn duration<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write it like \"10s\", \"5min\" or \"3d\""
        ))
    })
}

/// Checks an `endpoint` setting: an http(s) URL without a query.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("endpoint `{endpoint}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(format!(
            "endpoint `{endpoint}` must be an http(s) address without a query, like \"https://api.weixin.qq.com\""
        ));
    }
    Ok(())
}

/// A client with the sender's timeout. Building touches no network.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    if timeout.is_zero() {
        return Err("timeout must be more than zero".into());
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// An issuer that hands out `T1`, `T2`, ... and counts its calls.
    fn issuer(count: &AtomicUsize, expires_in: u64) -> impl Future<Output = Result<Issued, ()>> {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::task::yield_now().await;
            Ok(Issued {
                token: AccessToken::new(format!("T{n}")),
                expires_in: Duration::from_secs(expires_in),
            })
        }
    }

    #[tokio::test]
    async fn a_token_is_fetched_once_and_kept_until_the_margin_before_expiry() {
        let cache = TokenCache::default();
        let count = AtomicUsize::new(0);
        for second in [0, 60, 7200 - 301] {
            let token = cache
                .get(at(second), || issuer(&count, 7200))
                .await
                .unwrap();
            assert_eq!(token.as_str(), "T1");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let token = cache
            .get(at(7200 - 300), || issuer(&count, 7200))
            .await
            .unwrap();
        assert_eq!(token.as_str(), "T2");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_lived_tokens_are_replaced_halfway() {
        let cache = TokenCache::default();
        let count = AtomicUsize::new(0);
        cache.get(at(0), || issuer(&count, 100)).await.unwrap();
        cache.get(at(49), || issuer(&count, 100)).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        cache.get(at(50), || issuer(&count, 100)).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_rejected_token_is_replaced_but_a_replacement_is_not() {
        let cache = TokenCache::default();
        let count = AtomicUsize::new(0);
        let first = cache.get(at(0), || issuer(&count, 7200)).await.unwrap();
        let second = cache
            .replace(&first, at(1), || issuer(&count, 7200))
            .await
            .unwrap();
        assert_eq!(second.as_str(), "T2");
        // A caller still holding T1 learns of T2 without another fetch.
        let again = cache
            .replace(&first, at(2), || issuer(&count, 7200))
            .await
            .unwrap();
        assert_eq!(again.as_str(), "T2");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch_and_one_refresh() {
        let cache = Arc::new(TokenCache::default());
        let count = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                let token = cache.get(at(0), || issuer(&count, 7200)).await.unwrap();
                // The provider rejects T1 only; whoever still holds it asks
                // for a replacement.
                if token.as_str() == "T1" {
                    cache
                        .replace(&token, at(0), || issuer(&count, 7200))
                        .await
                        .unwrap()
                } else {
                    token
                }
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().as_str(), "T2");
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_returned_and_the_next_call_tries_again() {
        let cache = TokenCache::default();
        let failed: Result<AccessToken, &str> = cache.get(at(0), || async { Err("down") }).await;
        assert_eq!(failed.unwrap_err(), "down");
        let count = AtomicUsize::new(0);
        assert_eq!(
            cache
                .get(at(1), || issuer(&count, 7200))
                .await
                .unwrap()
                .as_str(),
            "T1"
        );
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let token = AccessToken::new("s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn endpoints_must_be_plain_http_addresses() {
        assert!(check_endpoint("https://api.weixin.qq.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(check_endpoint("api.weixin.qq.com").is_err());
        assert!(check_endpoint("ftp://x").is_err());
        assert!(check_endpoint("https://x/?key=1").is_err());
    }
}
