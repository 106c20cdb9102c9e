//! Sending one message that may go out: paced by its sender's rate limit,
//! handed over, and the sender's answer turned into the outcome to write:
//! sent, awaiting a person, deferred, retried with exponential backoff and
//! jitter (or at the provider's Retry-After) until `give_up_after`, failed
//! or fallen back, opted out, or held while its sender is paused. Every
//! answer also tells the round's health book how the sender is doing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::health::{Attempt, Book};
use super::policy::{OptOuts, address};
use super::sender::SendOutcome;
use super::{Dispatcher, Route, defer, outbound};
use crate::base::clock::{Clock, Timestamp};
use crate::base::i18n::t;
use crate::base::mask;
use crate::base::metrics;
use crate::base::reason::stored;
use crate::config::DispatchSettings;
use crate::store::health::SenderHealth;
use crate::store::outbox::{Claimed, Settle};

impl Dispatcher {
    /// Paces, sends, and turns the sender's answer into an outcome.
    pub(super) async fn send(
        &self,
        clock: Clock,
        message: &Claimed,
        route: &Route,
        opt_outs: &OptOuts,
        health: &Book,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Settle {
        let id = message.id;
        let now = clock.now();
        // How fast: the sender's rate limit.
        if let Some(pacer) = &route.pacer
            && let Err(wait) = pacer.acquire(stop).await
        {
            let until = (now + chrono::Duration::from_std(wait).unwrap_or_default()).timestamp();
            let reason = format!("rate limit of sender {}", route.sender_name);
            let until = until.max(now.timestamp() + 1);
            return defer(id, reason, until, now.timestamp());
        }

        // Pacing may have waited while another message of the customer's
        // came back opted out.
        if let Some(settle) = self.opted_out_this_round(message, opt_outs, now.timestamp()) {
            return settle;
        }

        // Its sender may have been paused since the claim, by another
        // message of this round: it waits, no attempt used.
        if let Some(paused) = health.holding(&route.sender_name, now.timestamp()) {
            return held(id, &paused, now.timestamp());
        }

        let address = address(message, route).unwrap_or_default().to_string();
        let outbound = outbound(message, &address, clock.now());
        let started = std::time::Instant::now();
        let outcome = route.sender.send(&outbound).await;
        metrics::global().send_latency(&route.sender_name, started.elapsed());
        if matches!(outcome, SendOutcome::OptedOut { .. }) {
            opt_outs.learn(message);
        }
        let at = clock.now().timestamp();
        health.learn(
            &route.sender_name,
            &Attempt::of(&outcome),
            at,
            &self.settings,
        );
        self.record(message, route, &address, outcome, clock.now())
    }

    /// What the sender answered, as the outcome to write.
    fn record(
        &self,
        message: &Claimed,
        route: &Route,
        address: &str,
        outcome: SendOutcome,
        now: DateTime<Utc>,
    ) -> Settle {
        let id = message.id;
        let channel = message.channel.as_str();
        let sender = route.sender_name.clone();
        let cost_milli = route.policy.cost_milli;
        let at = now.timestamp();
        match outcome {
            SendOutcome::Sent { provider_id } => Settle::Sent {
                id,
                sender,
                provider_id,
                cost_milli,
                at,
            },
            SendOutcome::Awaiting { provider_id } => {
                tracing::info!(id, channel, to = %mask::address(address), provider_id, "handed to staff; awaiting");
                Settle::Awaiting {
                    id,
                    sender,
                    provider_id,
                    cost_milli,
                    at,
                }
            }
            SendOutcome::Deferred { retry_at, reason } => {
                defer(id, reason, retry_at.timestamp(), at)
            }
            SendOutcome::Retryable { error, retry_after } => {
                // The retry budget runs from the first retryable failure;
                // outages are waited out, however many attempts they take.
                let since = message.retrying_since.unwrap_or(at);
                let budget = self.settings.give_up_after.as_secs() as i64;
                if at - since >= budget {
                    tracing::warn!(id, channel, to = %mask::address(address), attempts = message.attempts, %error,
                        "giving up");
                    let error = stored(t!(
                        "reason.gave_up",
                        budget = humantime::format_duration(self.settings.give_up_after),
                        attempts = message.attempts,
                        error
                    ));
                    Settle::Failed {
                        id,
                        sender,
                        error,
                        at,
                    }
                } else {
                    // A provider's Retry-After is a deferral: no attempt used.
                    let counted = retry_after.is_none();
                    let wait =
                        retry_after.unwrap_or_else(|| backoff(&self.settings, message.attempts));
                    tracing::info!(id, channel, attempts = message.attempts, retry_in = ?wait, %error, "will retry");
                    // The last try falls at the end of the budget, not after it.
                    let retry_at = (at + wait.as_secs().max(1) as i64)
                        .min(since + budget)
                        .max(at + 1);
                    Settle::Retry {
                        id,
                        sender,
                        error,
                        retry_at,
                        counted,
                        at,
                    }
                }
            }
            SendOutcome::Permanent { error } => {
                let why = stored(t!("reason.channel_error", channel, error = &error));
                let failed = Settle::Failed {
                    id,
                    sender,
                    error: error.clone(),
                    at,
                };
                match self.fall_back(message, &why, at, failed) {
                    Ok(fall_back) => fall_back,
                    Err(failed) => {
                        tracing::warn!(id, channel, to = %mask::address(address), %error, "failed");
                        failed
                    }
                }
            }
            // The sender is paused (`health`): the message waits for it,
            // no attempt used, nothing failed. It is due at once, but no
            // round claims a paused sender's messages before its probe.
            SendOutcome::Refused { code, error } => defer(
                id,
                format!("sender {sender} paused ({code}): {error}"),
                at,
                at,
            ),
            SendOutcome::OptedOut { reason } => {
                tracing::info!(id, channel, to = %mask::address(address), %reason,
                    "recipient opted out; consent withdrawn for this channel");
                Settle::OptedOut {
                    id,
                    sender,
                    reason,
                    at,
                }
            }
        }
    }
}

/// A message of a paused sender, not handed over: back to the queue, due
/// at once (the claims leave it until the sender's probe), no attempt used.
fn held(id: i64, paused: &SenderHealth, at: Timestamp) -> Settle {
    let reason = format!(
        "sender {} paused ({}): {}",
        paused.sender,
        paused.code.as_deref().unwrap_or(""),
        paused.last_error.as_deref().unwrap_or("")
    );
    defer(id, reason, at, at)
}

/// Exponential backoff with ±20% jitter: base · 2^(attempt−1), capped.
pub fn backoff(settings: &DispatchSettings, attempt: i64) -> Duration {
    let exponent = attempt.clamp(1, 30) - 1;
    let base = settings.retry_backoff.as_secs_f64() * 2f64.powi(exponent as i32);
    let capped = base.min(settings.max_backoff.as_secs_f64());
    let jitter = 0.8 + fastrand::f64() * 0.4;
    Duration::from_secs_f64(capped * jitter)
}
