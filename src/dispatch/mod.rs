//! Dispatch: taking due messages out of the outbox and through their senders.
//!
//! One round: claim due messages (store) → for each, the contact policy
//! (do-not-contact, consent, an address on the channel; otherwise the
//! channel's fallback, or `suppressed` with the reason) → quiet hours and
//! frequency caps (the message waits, no attempt used) → the sender's rate
//! limit (paced) → send. Up to `[dispatch] concurrency` messages are sent at
//! once; their outcomes are written in groups, one transaction per group
//! (group commit). Retryable failures go back to the queue with exponential
//! backoff and jitter until `give_up_after` has passed since the first one
//! (a provider's Retry-After uses no attempt); an opt-out withdraws the
//! customer's consent for that channel, and the customer's other messages on
//! that channel still to be sent in the same round are suppressed (or fall
//! back) as if it had been withdrawn at the claim; a permanent failure falls
//! back to another channel when one is configured. Messages that await a
//! person (WeCom confirmations, call tasks) are polled until they settle, by
//! every dispatcher (`Dispatcher::pass`: the service's loop and each
//! `recall dispatch`). A message is never dropped: every path ends in a
//! status with its reason.
//!
//! Delivery is at-least-once in one window, and this module bounds it: a
//! message holds one of `concurrency` permits from just before it is handed
//! to its sender until its outcome is committed. If the process dies, the
//! messages holding permits are left in `sending` and are requeued at the
//! next start; those a provider had already accepted are sent again. So a
//! crash sends at most `concurrency` messages twice (32 by default). A round
//! ends only after all its outcomes are committed, so a message is never
//! claimed again before its result is durable. Senders get the outreach id
//! as a stable key. Messages requeued after a crash are marked in doubt
//! (`store::outbox::IN_DOUBT`, as are errors a sender marks with
//! `sender::in_doubt`), and their next attempt carries `Outbound::in_doubt`:
//! providers that can be asked (Aliyun's QuerySendDetails, Twilio's message
//! list) are asked before a resend.
//!
//! Where each part is: `round.rs` claims a batch, sends it side by side
//! and commits the outcomes in groups; `policy.rs` decides whether, where
//! and when a message may go (do-not-contact, consent, the address, the
//! fallback, quiet hours, frequency caps, opt-outs learned in the round);
//! `send.rs` paces, hands the message to its sender and turns the answer
//! into the outcome to write (retries with backoff); `poll.rs` asks about
//! messages awaiting a person; `pacer.rs` is a sender's rate limit;
//! `sender.rs` the `Sender` trait; `health.rs` how each sender is doing
//! (failing, paused by a refusal of its credentials or account, probed,
//! resumed) and the alert to staff of each change.

pub mod health;
pub mod pacer;
mod policy;
mod poll;
mod round;
mod send;
pub mod sender;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::base::clock::{Clock, Timestamp};
use crate::base::model::Channel;
use crate::base::phone::CountryCode;
use crate::config::{ChannelPolicy, DispatchSettings};
use crate::store::StoreError;
use crate::store::outbox::{Claimed, Settle};
use crate::store::shared::SharedStore;
use pacer::Pacer;
pub use send::backoff;
use sender::{Outbound, Sender};

/// Counts of one or more dispatch rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: usize,
    pub sent: usize,
    /// Handed to a person (WeCom confirmation, call task), polled later.
    pub awaiting: usize,
    /// Put off without using an attempt (quiet hours, caps, capacity).
    pub deferred: usize,
    pub retried: usize,
    pub failed: usize,
    pub suppressed: usize,
    pub opted_out: usize,
    /// Switched to the channel's fallback.
    pub fell_back: usize,
    /// Claimed but handed back unsent because of shutdown.
    pub released: usize,
}

impl DispatchReport {
    fn add(&mut self, other: DispatchReport) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.awaiting += other.awaiting;
        self.deferred += other.deferred;
        self.retried += other.retried;
        self.failed += other.failed;
        self.suppressed += other.suppressed;
        self.opted_out += other.opted_out;
        self.fell_back += other.fell_back;
        self.released += other.released;
    }
}

/// Counts of one polling pass over messages that await a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    pub polled: usize,
    pub sent: usize,
    pub failed: usize,
    pub opted_out: usize,
    pub pending: usize,
}

/// What one [`Dispatcher::pass`] did: its sending and its polling, each of
/// which may fail on its own (the database held by another process).
#[derive(Debug)]
pub struct Pass {
    pub sent: Result<DispatchReport, StoreError>,
    pub polled: Result<PollReport, StoreError>,
}

/// How one channel goes out.
pub struct Route {
    pub sender_name: String,
    pub sender: Arc<dyn Sender>,
    pub policy: ChannelPolicy,
    /// Shared by every channel of the same sender.
    pub pacer: Option<Arc<Pacer>>,
}

impl Route {
    pub fn new(sender_name: &str, sender: Arc<dyn Sender>, policy: ChannelPolicy) -> Self {
        let pacer = sender
            .default_rate_limit()
            .map(|rate| Arc::new(Pacer::new(rate)));
        Route {
            sender_name: sender_name.to_string(),
            sender,
            policy,
            pacer,
        }
    }
}

/// The senders, which channel goes through which, and the policy.
pub struct Dispatcher {
    routes: BTreeMap<Channel, Route>,
    settings: DispatchSettings,
    tz: Tz,
    /// `[dispatch] alert`: the sender (by name) that tells staff when a
    /// sender starts failing, is paused or is back.
    alert: Option<(String, Arc<dyn Sender>)>,
    /// The country of numbers stored without a country code.
    region: CountryCode,
}

impl Dispatcher {
    /// A dispatcher with these routes (`senders::dispatcher` builds them
    /// from the configuration).
    pub fn with_routes(
        routes: BTreeMap<Channel, Route>,
        settings: DispatchSettings,
        tz: Tz,
    ) -> Self {
        Dispatcher {
            routes,
            settings,
            tz,
            alert: None,
            region: CountryCode::CHINA,
        }
    }

    /// The same, telling staff of each sender incident through `alert`.
    pub fn with_alert(mut self, name: &str, alert: Arc<dyn Sender>) -> Self {
        self.alert = Some((name.to_string(), alert));
        self
    }

    /// Numbers stored without a country code belong to `region` (the
    /// clinic's `country_code`): a number that is no number of its region
    /// fails locally, before any provider is called.
    pub fn in_region(mut self, region: CountryCode) -> Self {
        self.region = region;
        self
    }

    /// Channels that have a sender. Messages on other channels wait.
    pub fn channels(&self) -> Vec<Channel> {
        self.routes.keys().copied().collect()
    }

    /// Dispatches rounds until nothing is due at the clock's time, or until
    /// `stop` says to stop.
    pub async fn drain(
        &self,
        store: &SharedStore,
        clock: Clock,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<DispatchReport, StoreError> {
        let mut total = DispatchReport::default();
        loop {
            let round = self.round(store, clock, stop).await?;
            total.add(round);
            // Messages deferred or retried within the round are due later;
            // fallbacks are due now and are picked up by the next round.
            if round.claimed == 0 || stop() {
                break;
            }
        }
        // Even when nothing was claimed: work a sender owes from earlier
        // rounds (a staff notice that failed) is retried here, and so is an
        // alert about a sender's incident.
        self.after_round(clock).await;
        self.announce(store, clock).await;
        Ok(total)
    }

    /// One dispatch pass, as every dispatcher runs it (`recall run` every
    /// `dispatch_every`, each `recall dispatch`, the demo's replay): send
    /// what is due, then ask about messages awaiting a person that were not
    /// asked for `[dispatch] poll_every`. Polling runs even when sending
    /// failed, so a clinic that dispatches from cron learns what became of
    /// its WeCom tasks and call tasks as the service would.
    pub async fn pass(
        &self,
        store: &SharedStore,
        clock: Clock,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Pass {
        let sent = self.drain(store, clock, stop).await;
        let polled = if stop() {
            Ok(PollReport::default())
        } else {
            self.poll_awaiting(store, clock, self.settings.poll_every, stop)
                .await
        };
        Pass { sent, polled }
    }

    /// Lets each sender finish work it batches over a round.
    async fn after_round(&self, clock: Clock) {
        let mut done: Vec<&str> = Vec::new();
        for route in self.routes.values() {
            if !done.contains(&route.sender_name.as_str()) {
                done.push(&route.sender_name);
                route.sender.after_round(clock.now()).await;
            }
        }
    }
}

/// What a sender gets of a claimed message: its content and recipient
/// lent, not copied, with the address its route takes and the round's now.
fn outbound<'a>(message: &'a Claimed, address: &'a str, now: DateTime<Utc>) -> Outbound<'a> {
    Outbound {
        id: message.id,
        channel: message.channel,
        rule_id: &message.rule_id,
        template: &message.template,
        content: &message.content,
        recipient: &message.recipient,
        address,
        attempt: message.attempts,
        previous_error: message.last_error.as_deref(),
        in_doubt: message.in_doubt,
        now,
    }
}

/// A deferral: back to the queue until `until`, no attempt used.
fn defer(id: i64, reason: String, until: Timestamp, at: Timestamp) -> Settle {
    tracing::debug!(id, %reason, "deferred");
    Settle::Deferred {
        id,
        reason,
        until,
        held: false,
        at,
    }
}

/// A deferral by the clinic's policy (quiet hours, a frequency cap): like
/// [`defer`], and released early by a reload that changes the policy.
fn hold(id: i64, reason: String, until: Timestamp, at: Timestamp) -> Settle {
    tracing::debug!(id, %reason, "held");
    Settle::Deferred {
        id,
        reason,
        until,
        held: true,
        at,
    }
}

#[cfg(test)]
mod tests;
