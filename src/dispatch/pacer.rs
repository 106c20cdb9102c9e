//! Pacing a sender to its rate limit: a sliding window of send times.
//!
//! Waiting happens here, in the dispatcher, so the provider rarely has to
//! throttle us. Long waits are not slept through: the message is deferred
//! instead, so a shutdown never waits on a pacer.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::RateLimit;

/// The longest the dispatcher sleeps for a rate limit before deferring.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub struct Pacer {
    rate: RateLimit,
    sent: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    pub fn new(rate: RateLimit) -> Self {
        Pacer {
            rate,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more message fits in the window and counts it. Gives
    /// up with the remaining wait when that is longer than [`MAX_WAIT`] or
    /// when `stop` says to stop.
    pub async fn acquire(&self, stop: &(dyn Fn() -> bool + Sync)) -> Result<(), Duration> {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.rate.per)
                {
                    sent.pop_front();
                }
                if sent.len() < self.rate.count as usize {
                    sent.push_back(now);
                    return Ok(());
                }
                let oldest = *sent.front().expect("window is full, so not empty");
                (oldest + self.rate.per).saturating_duration_since(now)
            };
            if wait > MAX_WAIT || stop() {
                return Err(wait);
            }
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_and_never_beyond_it() {
        let pacer = Pacer::new(RateLimit {
            count: 2,
            per: Duration::from_secs(1),
        });
        let start = Instant::now();
        for _ in 0..6 {
            pacer.acquire(&|| false).await.unwrap();
        }
        // 6 messages at 2 per second: the last goes out after 2 seconds.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn long_waits_are_given_back_as_a_deferral() {
        let pacer = Pacer::new(RateLimit {
            count: 1,
            per: Duration::from_secs(60),
        });
        pacer.acquire(&|| false).await.unwrap();
        let wait = pacer.acquire(&|| false).await.unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_interrupts_the_wait() {
        let pacer = Pacer::new(RateLimit {
            count: 1,
            per: Duration::from_secs(10),
        });
        pacer.acquire(&|| false).await.unwrap();
        assert!(pacer.acquire(&|| true).await.is_err());
    }
}
