//! What the WeChat senders share: access tokens and the request plumbing
//! of the WeCom (`wecom`) and WeChat Official Account (`wechat_official`)
//! senders, and the `errcode` answer the WeCom robot (`wecom_robot`) reads
//! too.
//!
//! Both providers authenticate every call with an `access_token` that lives
//! about two hours and answer every call with a JSON body carrying `errcode`
//! and `errmsg`. [`App`] is one app's credentials, HTTP client and
//! [`TokenCache`] (`token.rs`): it fetches a token on first use, keeps it
//! until shortly before it expires, and when the provider rejects it as
//! expired or invalid, fetches a new one **once** and repeats the call
//! **once**.
//!
//! There must be one token owner per app: refreshes are serialized behind a
//! lock and re-checked under it, so concurrent sends that all meet a rejected
//! token share a single refresh instead of invalidating each other's tokens.
//! When fetching a token fails, the app backs off: for [`BACKOFF_FIRST`],
//! doubling to [`BACKOFF_MAX`] while it keeps failing, every call gets that
//! failure without a request, so an outage of the token endpoint costs one
//! request per wait, not one per message. Time is the caller's
//! (`message.now`), never the wall clock.
//!
//! Nothing here may log or put into an error a token, a secret, or a URL
//! that carries one: reqwest errors are stripped of their URL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde_json::Value;

use super::kit::http;
use crate::dispatch::sender::SendOutcome;

mod token;

pub use token::{
    AccessToken, BACKOFF_FIRST, BACKOFF_MAX, Issued, REFRESH_MARGIN, TokenCache, Unavailable,
};

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

/// Sends a request and reads the provider's JSON answer; `now` is what a
/// `Retry-After` date is measured from, `timeout` the client's (for the
/// error's words).
pub async fn call(
    request: reqwest::RequestBuilder,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let transport = |e| CallError::Transport(http::describe(e, timeout));
    let response = request.send().await.map_err(transport)?;
    let answer = http::read_answer(response, now)
        .await
        .map_err(|cut| transport(cut.error))?;
    if !(200..300).contains(&answer.status) {
        return Err(CallError::Status {
            status: answer.status,
            retry_after: answer.retry_after,
        });
    }
    let body = match answer.body {
        Some(body @ Value::Object(_)) => body,
        Some(_) => return Err(CallError::Decode("not a JSON object".into())),
        None => return Err(CallError::Decode("not JSON".into())),
    };
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
    /// No token: the token endpoint failed, now or within its backoff; it
    /// is asked again after `retry_in`.
    #[error("{error} (no new token is asked for before {})", humantime::format_duration(*retry_in))]
    Token {
        error: TokenError,
        retry_in: Duration,
    },
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ApiError {
    fn token(unavailable: Unavailable<TokenError>, now: DateTime<Utc>) -> ApiError {
        ApiError::Token {
            error: unavailable.error,
            retry_in: (unavailable.until - now).to_std().unwrap_or_default(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            // A refused token is a setting to fix, not this message's fault:
            // keep the message while someone fixes it.
            ApiError::Token {
                error: TokenError::Refused { .. },
                ..
            } => true,
            ApiError::Token {
                error: TokenError::Call(e),
                ..
            }
            | ApiError::Call(e) => e.is_retryable(),
        }
    }

    /// What a send that got no answer comes to, `what` saying which call:
    /// retried if trying again may help, else failed.
    pub fn outcome(&self, what: &str) -> SendOutcome {
        if self.is_retryable() {
            SendOutcome::Retryable {
                error: format!("{what}: {self}"),
                retry_after: self.retry_after(),
            }
        } else {
            SendOutcome::Permanent {
                error: format!("{what}: {self}"),
            }
        }
    }

    /// When to try again: the provider's Retry-After, or, without a token,
    /// when the app asks for one again (so the message does not come back
    /// to meet the same backoff).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Token { retry_in, .. } => Some(*retry_in),
            ApiError::Call(e) => e.retry_after(),
        }
    }
}

/// One app: its endpoint, credentials, HTTP client and token.
pub struct App {
    client: reqwest::Client,
    /// `https://qyapi.weixin.qq.com` or `https://api.weixin.qq.com`, no
    /// trailing slash.
    endpoint: String,
    /// The client's timeout, named in its errors.
    timeout: Duration,
    credentials: Credentials,
    /// The `errcode`s that mean "this token is expired or invalid".
    token_errors: &'static [i64],
    cache: TokenCache<TokenError>,
}

impl App {
    /// An app at `connection`'s endpoint, with the kit's client for its
    /// timeout. Building touches no network.
    pub fn new(
        connection: &http::Connection,
        credentials: Credentials,
        token_errors: &'static [i64],
    ) -> Result<App, String> {
        Ok(App {
            client: http::client(connection.timeout)?,
            endpoint: connection
                .endpoint
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            timeout: connection.timeout,
            credentials,
            token_errors,
            cache: TokenCache::default(),
        })
    }

    /// POSTs `body` as JSON to `path` with the access token, as [`App::call`].
    pub async fn post(
        &self,
        now: DateTime<Utc>,
        path: &str,
        body: &Value,
    ) -> Result<Answer, ApiError> {
        self.call(now, |token| {
            self.request(Method::POST, path, token).json(body)
        })
        .await
    }

    /// GETs `path` with the access token and `query`, as [`App::call`].
    pub async fn get(
        &self,
        now: DateTime<Utc>,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer, ApiError> {
        self.call(now, |token| {
            self.request(Method::GET, path, token).query(query)
        })
        .await
    }

    /// A request to `path` carrying `token` as `access_token`.
    fn request(&self, method: Method, path: &str, token: &AccessToken) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .query(&[("access_token", token.as_str())])
    }

    /// `endpoint` + `path`.
    fn url(&self, path: &str) -> String {
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
    async fn call<R>(&self, now: DateTime<Utc>, request: R) -> Result<Answer, ApiError>
    where
        R: Fn(&AccessToken) -> reqwest::RequestBuilder,
    {
        let token = self
            .cache
            .get(now, || self.issue(now))
            .await
            .map_err(|u| ApiError::token(u, now))?;
        let answer = call(request(&token), now, self.timeout).await?;
        if !self.is_token_error(answer.errcode) {
            return Ok(answer);
        }
        tracing::info!(
            errcode = answer.errcode,
            "access token rejected; getting a new one"
        );
        let token = self
            .cache
            .replace(&token, now, || self.issue(now))
            .await
            .map_err(|u| ApiError::token(u, now))?;
        Ok(call(request(&token), now, self.timeout).await?)
    }

    /// Asks the provider for a new token; a failure comes with the wait
    /// the provider asked for, if it did (Retry-After).
    async fn issue(&self, now: DateTime<Utc>) -> Result<Issued, (TokenError, Option<Duration>)> {
        self.request_token(now).await.map_err(|e| {
            let asked = match &e {
                TokenError::Call(call) => call.retry_after(),
                TokenError::Refused { .. } => None,
            };
            (e, asked)
        })
    }

    async fn request_token(&self, now: DateTime<Utc>) -> Result<Issued, TokenError> {
        let request = match &self.credentials {
            Credentials::WeCom { corp_id, secret } => {
                self.client.get(self.url("/cgi-bin/gettoken")).query(&[
                    ("corpid", corp_id.as_str()),
                    ("corpsecret", secret.as_str()),
                ])
            }
            Credentials::Official { app_id, secret } => self
                .client
                .post(self.url("/cgi-bin/stable_token"))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": app_id,
                    "secret": secret,
                    "force_refresh": false,
                })),
        };
        let answer = call(request, now, self.timeout).await?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        match serde_json::from_value::<Token>(answer.body.clone()) {
            Ok(token) if answer.errcode == 0 && !token.access_token.is_empty() => Ok(Issued {
                token: AccessToken::new(token.access_token),
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

#[cfg(test)]
mod tests;
