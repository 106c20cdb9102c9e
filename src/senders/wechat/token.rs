//! One app's access token: fetched on first use, kept until shortly before
//! it expires, replaced once when the provider rejects it, and not asked
//! for again while the token endpoint is failing (a backoff per app).
//!
//! Pure of the network: the caller hands in how to get a token (`issue`)
//! and the time (`now`, the message's, never the wall clock). A token
//! never reaches a log or an error: [`AccessToken`]'s `Debug` hides it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// After the token endpoint fails, no token is asked for this long ...
pub const BACKOFF_FIRST: Duration = Duration::from_secs(30);
/// ... doubling while it keeps failing, up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// One app's current access token, or its last failure to get one.
pub struct TokenCache<E> {
    slot: Mutex<Slot<E>>,
}

impl<E> Default for TokenCache<E> {
    fn default() -> Self {
        TokenCache {
            slot: Mutex::new(Slot {
                held: None,
                failed: None,
            }),
        }
    }
}

struct Slot<E> {
    held: Option<Held>,
    failed: Option<Failed<E>>,
}

/// The last failure to get a token, and when to ask again.
struct Failed<E> {
    error: E,
    until: DateTime<Utc>,
    wait: Duration,
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

/// No token now: the token endpoint failed with `error` (this call, or an
/// earlier one whose backoff still runs) and is asked again at `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable<E> {
    pub error: E,
    pub until: DateTime<Utc>,
}

/// What asking the provider for a token gives: the token, or the failure
/// and the wait the provider asked for, if it did.
pub type Issuing<E> = Result<Issued, (E, Option<Duration>)>;

impl<E: Clone> TokenCache<E> {
    /// The cached token if it is still fresh at `now`, otherwise a new one
    /// from `issue`, unless an earlier failure's backoff still runs.
    /// Callers that find no fresh token wait for each other, so only one of
    /// them fetches.
    pub async fn get<Fut: Future<Output = Issuing<E>>>(
        &self,
        now: DateTime<Utc>,
        issue: impl FnOnce() -> Fut,
    ) -> Result<AccessToken, Unavailable<E>> {
        self.fresh(None, now, issue).await
    }

    /// The provider rejected `rejected` as expired or invalid: a new token,
    /// unless another caller already replaced it while this one waited for
    /// the lock, in which case that replacement is returned.
    pub async fn replace<Fut: Future<Output = Issuing<E>>>(
        &self,
        rejected: &AccessToken,
        now: DateTime<Utc>,
        issue: impl FnOnce() -> Fut,
    ) -> Result<AccessToken, Unavailable<E>> {
        self.fresh(Some(rejected), now, issue).await
    }

    /// The held token if it is fresh at `now` and not `rejected`; else asks
    /// `issue` for a token, unless the last failure's backoff runs at `now`.
    /// A failure starts or doubles the backoff (or waits as long as the
    /// provider said, if longer); a success ends it.
    async fn fresh<Fut: Future<Output = Issuing<E>>>(
        &self,
        rejected: Option<&AccessToken>,
        now: DateTime<Utc>,
        issue: impl FnOnce() -> Fut,
    ) -> Result<AccessToken, Unavailable<E>> {
        let mut slot = self.slot.lock().await;
        if let Some(current) = slot
            .held
            .as_ref()
            .filter(|h| Some(&h.token) != rejected && h.fresh_at(now))
        {
            return Ok(current.token.clone());
        }
        slot.held = None;
        if let Some(failed) = slot.failed.as_ref().filter(|f| now < f.until) {
            return Err(Unavailable {
                error: failed.error.clone(),
                until: failed.until,
            });
        }
        match issue().await {
            Ok(issued) => {
                let current = Held::new(issued, now);
                let token = current.token.clone();
                slot.held = Some(current);
                slot.failed = None;
                Ok(token)
            }
            Err((error, asked)) => {
                let wait = slot
                    .failed
                    .as_ref()
                    .map_or(BACKOFF_FIRST, |f| (f.wait * 2).min(BACKOFF_MAX))
                    .max(asked.unwrap_or_default());
                let until = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                tracing::warn!(retry_in = ?wait, "could not get an access token; not asking again before then");
                slot.failed = Some(Failed {
                    error: error.clone(),
                    until,
                    wait,
                });
                Err(Unavailable { error, until })
            }
        }
    }
}
