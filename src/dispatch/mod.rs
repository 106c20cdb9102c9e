//! Dispatch: taking due messages out of the outbox and through their senders.
//!
//! One round: claim due messages (store) → for each, apply the contact
//! policy (do-not-contact, consent, an address to send to) → send through the
//! channel's sender → write the outcome at once. Retryable failures go back to
//! the queue with exponential backoff and jitter until `max_attempts`; an
//! opt-out withdraws the customer's consent for that channel. A message is
//! never dropped: every path ends in a status with its reason.
//!
//! Delivery is at-least-once in one narrow window: if the process dies after
//! a provider accepted a message but before `sent` is written, the message is
//! requeued on restart and sent again. Senders get the outreach id as a
//! stable key for providers that de-duplicate.

pub mod sender;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{Config, DispatchSettings};
use crate::mask;
use crate::model::Channel;
use crate::senders::{self, BuildError};
use crate::store::outbox::Claimed;
use crate::store::{Store, StoreError};
use sender::{Outbound, SendOutcome, Sender};

/// A store shared between async tasks; every use goes through [`blocking`].
pub type SharedStore = Arc<Mutex<Store>>;

/// Runs a store operation on the blocking pool, so a database busy with a
/// tick never stalls the async runtime.
pub async fn blocking<T: Send + 'static>(
    store: &SharedStore,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// Counts of one or more dispatch rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: usize,
    pub sent: usize,
    /// Handed to a person (WeCom confirmation, call task), polled later.
    pub awaiting: usize,
    /// Put off without using an attempt (capacity, quiet hours, caps).
    pub deferred: usize,
    pub retried: usize,
    pub failed: usize,
    pub suppressed: usize,
    pub opted_out: usize,
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
        self.released += other.released;
    }
}

/// The senders, which channel goes through which, and the retry policy.
pub struct Dispatcher {
    routes: BTreeMap<Channel, (String, Arc<dyn Sender>)>,
    settings: DispatchSettings,
}

impl Dispatcher {
    /// Builds every sender the configuration routes a channel to.
    pub fn build(config: &Config) -> Result<Dispatcher, BuildError> {
        let ctx = senders::Context {
            secrets: senders::Secrets::Environment,
            base_dir: config
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            database: config.database.clone(),
        };
        let mut built: BTreeMap<&str, Arc<dyn Sender>> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for (channel, policy) in &config.channels {
            let name = policy.sender.as_str();
            let sender = match built.get(name) {
                Some(sender) => sender.clone(),
                None => {
                    let entry = config
                        .senders
                        .get(name)
                        .ok_or_else(|| BuildError::new(name, "not defined under [senders]"))?;
                    let sender = senders::build(name, &entry.config, &ctx)?;
                    built.insert(name, sender.clone());
                    sender
                }
            };
            routes.insert(*channel, (name.to_string(), sender));
        }
        Ok(Dispatcher {
            routes,
            settings: config.dispatch.clone(),
        })
    }

    /// A dispatcher with explicit routes, for tests and tools.
    pub fn with_routes(
        routes: BTreeMap<Channel, (String, Arc<dyn Sender>)>,
        settings: DispatchSettings,
    ) -> Self {
        Dispatcher { routes, settings }
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
            if round.claimed == 0 || stop() {
                return Ok(total);
            }
        }
    }

    /// One round: claim a batch of due messages and handle each.
    pub async fn round(
        &self,
        store: &SharedStore,
        clock: Clock,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<DispatchReport, StoreError> {
        let channels = self.channels();
        let limit = self.settings.batch_size;
        let now = clock.now().timestamp();
        let claimed = blocking(store, move |s| s.claim_due(now, &channels, limit)).await?;
        let mut report = DispatchReport {
            claimed: claimed.len(),
            ..DispatchReport::default()
        };
        let mut remaining = claimed.into_iter();
        while let Some(message) = remaining.next() {
            self.handle(store, clock, message, &mut report).await?;
            if stop() {
                let ids: Vec<i64> = remaining.map(|m| m.id).collect();
                report.released = ids.len();
                if !ids.is_empty() {
                    let now = clock.now().timestamp();
                    blocking(store, move |s| s.release(&ids, now)).await?;
                }
                break;
            }
        }
        Ok(report)
    }

    async fn handle(
        &self,
        store: &SharedStore,
        clock: Clock,
        message: Claimed,
        report: &mut DispatchReport,
    ) -> Result<(), StoreError> {
        let id = message.id;
        if let Some(reason) = suppression(&message) {
            let now = clock.now().timestamp();
            tracing::info!(id, channel = message.channel.as_str(), customer = %message.recipient.external_id,
                reason, "suppressed");
            report.suppressed += 1;
            return blocking(store, move |s| s.mark_suppressed(id, reason, now)).await;
        }
        let Some((sender_name, sender)) = self.routes.get(&message.channel) else {
            // claim_due only claims routed channels; a route removed by a
            // reload mid-round puts the message back.
            let now = clock.now().timestamp();
            report.released += 1;
            return blocking(store, move |s| s.release(&[id], now)).await;
        };
        let address = address(&message).unwrap_or_default().to_string();
        let outbound = Outbound {
            id,
            channel: message.channel,
            rule_id: &message.rule_id,
            template: &message.template,
            subject: message.subject.as_deref(),
            content: &message.content,
            html: message.html.as_deref(),
            params: message.params.as_deref(),
            recipient: &message.recipient,
            address: &address,
            attempt: message.attempts,
            previous_error: message.last_error.as_deref(),
            now: clock.now(),
        };
        let outcome = sender.send(&outbound).await;
        let now = clock.now().timestamp();
        let sender_name = sender_name.clone();
        match outcome {
            SendOutcome::Sent { provider_id } => {
                report.sent += 1;
                blocking(store, move |s| {
                    s.mark_sent(id, &sender_name, &provider_id, now)
                })
                .await
            }
            SendOutcome::Awaiting { provider_id } => {
                report.awaiting += 1;
                blocking(store, move |s| {
                    s.mark_awaiting(id, &sender_name, &provider_id, now)
                })
                .await
            }
            SendOutcome::Deferred { retry_at, reason } => {
                report.deferred += 1;
                let retry_at = retry_at.timestamp();
                blocking(store, move |s| s.mark_deferred(id, &reason, retry_at, now)).await
            }
            SendOutcome::Retryable { error, retry_after } => {
                if message.attempts >= i64::from(self.settings.max_attempts) {
                    tracing::warn!(id, channel = message.channel.as_str(), to = %mask::address(&address),
                        attempts = message.attempts, %error, "giving up");
                    report.failed += 1;
                    let error = format!("gave up after {} attempts: {error}", message.attempts);
                    blocking(store, move |s| s.mark_failed(id, &sender_name, &error, now)).await
                } else {
                    let wait =
                        retry_after.unwrap_or_else(|| backoff(&self.settings, message.attempts));
                    tracing::info!(id, channel = message.channel.as_str(), attempts = message.attempts,
                        retry_in = ?wait, %error, "will retry");
                    report.retried += 1;
                    let retry_at = now + wait.as_secs().max(1) as i64;
                    blocking(store, move |s| {
                        s.mark_retry(id, &sender_name, &error, retry_at, now)
                    })
                    .await
                }
            }
            SendOutcome::Permanent { error } => {
                tracing::warn!(id, channel = message.channel.as_str(), to = %mask::address(&address), %error, "failed");
                report.failed += 1;
                blocking(store, move |s| s.mark_failed(id, &sender_name, &error, now)).await
            }
            SendOutcome::OptedOut { reason } => {
                tracing::info!(id, channel = message.channel.as_str(), to = %mask::address(&address), %reason,
                    "recipient opted out; consent withdrawn for this channel");
                report.opted_out += 1;
                blocking(store, move |s| {
                    s.mark_opted_out(id, &sender_name, &reason, now)
                })
                .await
            }
        }
    }
}

/// Why a message must not be sent, if it must not.
fn suppression(message: &Claimed) -> Option<&'static str> {
    if message.do_not_contact {
        Some("customer is marked do-not-contact")
    } else if !message.consent {
        Some(match message.channel {
            Channel::Sms => "no consent for sms",
            Channel::Phone => "no consent for phone calls",
            Channel::Wechat => "no consent for wechat",
            Channel::Email => "no consent for email",
        })
    } else if address(message).is_none() {
        Some(match message.channel {
            Channel::Sms | Channel::Phone => "no phone number on record",
            Channel::Wechat => "no wechat id on record",
            Channel::Email => "no email address on record",
        })
    } else {
        None
    }
}

/// The address a message goes to on its channel.
fn address(message: &Claimed) -> Option<&str> {
    let r = &message.recipient;
    let value = match message.channel {
        Channel::Sms | Channel::Phone => r.phone.as_deref(),
        Channel::Email => r.email.as_deref(),
        Channel::Wechat => r
            .wecom_external_userid
            .as_deref()
            .or(r.wechat_openid.as_deref()),
    };
    value.filter(|v| !v.trim().is_empty())
}

/// Exponential backoff with ±20% jitter: base · 2^(attempt−1), capped.
pub fn backoff(settings: &DispatchSettings, attempt: i64) -> Duration {
    let exponent = attempt.clamp(1, 30) - 1;
    let base = settings.retry_backoff.as_secs_f64() * 2f64.powi(exponent as i32);
    let capped = base.min(settings.max_backoff.as_secs_f64());
    let jitter = 0.8 + fastrand::f64() * 0.4;
    Duration::from_secs_f64(capped * jitter)
}

#[cfg(test)]
mod tests;
