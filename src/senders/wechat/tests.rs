//! Tests of what the WeChat senders share: the token cache (one fetch, one
//! refresh, one backoff for concurrent callers). Their `endpoint` and
//! `timeout` settings are the kit's (`kit::http`), tested there.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

/// What a test issuer fails with: a text and the provider's Retry-After.
type Failure = (&'static str, Option<Duration>);

/// An issuer that hands out `T1`, `T2`, ... and counts its calls.
fn issuer(count: &AtomicUsize, expires_in: u64) -> impl Future<Output = Result<Issued, Failure>> {
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

/// An issuer that fails, counting its calls.
fn failing(
    count: &AtomicUsize,
    asked: Option<Duration>,
) -> impl Future<Output = Result<Issued, Failure>> {
    count.fetch_add(1, Ordering::SeqCst);
    async move { Err(("down", asked)) }
}

#[tokio::test]
async fn a_failed_fetch_backs_off_once_for_every_caller_doubling_while_it_fails() {
    let cache = TokenCache::default();
    let count = AtomicUsize::new(0);
    let failed = cache.get(at(0), || failing(&count, None)).await;
    assert_eq!(
        failed,
        Err(Unavailable {
            error: "down",
            until: at(30)
        })
    );
    // Every call within the wait gets the failure, without a fetch.
    for second in [0, 1, 29] {
        let again = cache.get(at(second), || failing(&count, None)).await;
        assert_eq!(again.unwrap_err().until, at(30));
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Then one fetch; failing again doubles the wait, up to 10 minutes.
    let mut now = 30;
    for wait in [60, 120, 240, 480, 600, 600] {
        let failed = cache.get(at(now), || failing(&count, None)).await;
        assert_eq!(failed.unwrap_err().until, at(now + wait));
        now += wait;
    }
    assert_eq!(count.load(Ordering::SeqCst), 7);
    // A success ends the backoff.
    let tokens = AtomicUsize::new(0);
    let token = cache.get(at(now), || issuer(&tokens, 7200)).await.unwrap();
    assert_eq!(token.as_str(), "T1");
    let failed = cache
        .replace(&token, at(now + 1), || failing(&count, None))
        .await;
    assert_eq!(failed.unwrap_err().until, at(now + 1 + 30));
}

#[tokio::test]
async fn a_provider_that_asks_for_a_longer_wait_gets_it() {
    let cache = TokenCache::default();
    let count = AtomicUsize::new(0);
    let failed = cache
        .get(at(0), || failing(&count, Some(Duration::from_secs(120))))
        .await;
    assert_eq!(failed.unwrap_err().until, at(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_meeting_a_failing_endpoint_share_one_fetch() {
    let cache = Arc::new(TokenCache::default());
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let cache = cache.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            cache.get(at(0), || failing(&count, None)).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err().error, "down");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn tokens_never_show_in_debug_output() {
    let token = AccessToken::new("s3cret-token");
    assert!(!format!("{token:?}").contains("s3cret"));
}
