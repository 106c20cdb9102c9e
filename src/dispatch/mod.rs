//! Dispatch: taking due messages out of the outbox and through their senders.
//!
//! One round: claim due messages (store) → for each, the contact policy
//! (do-not-contact, consent, an address on the channel; otherwise the
//! channel's fallback, or `suppressed` with the reason) → quiet hours and
//! frequency caps (the message waits, no attempt used) → the sender's rate
//! limit (paced) → send → write the outcome at once. Retryable failures go
//! back to the queue with exponential backoff and jitter until
//! `max_attempts`; an opt-out withdraws the customer's consent for that
//! channel; a permanent failure or opt-out falls back to another channel when
//! one is configured. Messages that await a person (WeCom confirmations, call
//! tasks) are polled until they settle. A message is never dropped: every
//! path ends in a status with its reason.
//!
//! Delivery is at-least-once in one narrow window: if the process dies after
//! a provider accepted a message but before its status is written, the
//! message is requeued on restart and sent again. Senders get the outreach
//! id as a stable key; providers that can be asked (Aliyun's
//! QuerySendDetails) are asked before a resend.

mod pacer;
pub mod sender;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::{self, Clock, Timestamp};
use crate::config::{ChannelPolicy, Config, DispatchSettings, QuietHours};
use crate::mask;
use crate::model::Channel;
use crate::senders::{self, BuildError};
use crate::store::outbox::Claimed;
use crate::store::{Store, StoreError};
use pacer::Pacer;
use sender::{Outbound, PollOutcome, SendOutcome, Sender};

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

/// How one channel goes out.
pub struct Route {
    pub sender_name: String,
    pub sender: Arc<dyn Sender>,
    pub policy: ChannelPolicy,
    /// Shared by every channel of the same sender.
    pacer: Option<Arc<Pacer>>,
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
}

/// Why a message cannot go out on its channel as it stands.
enum Blocked {
    /// Do-not-contact: no channel at all.
    Everywhere(&'static str),
    /// This channel only: a fallback may still reach the customer.
    Here(&'static str),
}

impl Dispatcher {
    /// Builds every sender the configuration routes a channel to. Senders
    /// shared by several channels are built once and share their rate limit.
    pub fn build(config: &Config) -> Result<Dispatcher, BuildError> {
        let ctx = senders::Context {
            secrets: senders::Secrets::Environment,
            base_dir: config
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            database: config.database.clone(),
            timezone: config.clinic.timezone,
            senders: config
                .senders
                .iter()
                .map(|(name, entry)| (name.clone(), entry.config.clone()))
                .collect(),
        };
        // A sender shared by several channels is built once and shares its pacer.
        type Built = (Arc<dyn Sender>, Option<Arc<Pacer>>);
        let mut built: BTreeMap<&str, Built> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for (channel, policy) in &config.channels {
            let name = policy.sender.as_str();
            let (sender, pacer) = match built.get(name) {
                Some(entry) => entry.clone(),
                None => {
                    let entry = config
                        .senders
                        .get(name)
                        .ok_or_else(|| BuildError::new(name, "not defined under [senders]"))?;
                    let sender = senders::build(name, &entry.config, &ctx)?;
                    let rate = entry.rate_limit.or_else(|| sender.default_rate_limit());
                    let pacer = rate.map(|r| Arc::new(Pacer::new(r)));
                    built.insert(name, (sender.clone(), pacer.clone()));
                    (sender, pacer)
                }
            };
            routes.insert(
                *channel,
                Route {
                    sender_name: name.to_string(),
                    sender,
                    policy: policy.clone(),
                    pacer,
                },
            );
        }
        Ok(Dispatcher {
            routes,
            settings: config.dispatch.clone(),
            tz: config.clinic.timezone,
        })
    }

    /// A dispatcher with explicit routes, for tests and tools.
    pub fn with_routes(
        routes: BTreeMap<Channel, Route>,
        settings: DispatchSettings,
        tz: Tz,
    ) -> Self {
        Dispatcher {
            routes,
            settings,
            tz,
        }
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
        if total.claimed > 0 {
            self.after_round(clock).await;
        }
        Ok(total)
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
            self.handle(store, clock, message, &mut report, stop)
                .await?;
            if stop() {
                let ids: Vec<i64> = remaining.map(|m| m.id).collect();
                report.released += ids.len();
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
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), StoreError> {
        let id = message.id;
        let channel = message.channel;
        let customer = message.recipient.external_id.clone();
        let now = clock.now();
        let Some(route) = self.routes.get(&channel) else {
            // claim_due only claims routed channels; a route removed by a
            // reload mid-round puts the message back.
            report.released += 1;
            let now = now.timestamp();
            return blocking(store, move |s| s.release(&[id], now)).await;
        };

        // Who may be reached, and where.
        match blocked(&message) {
            Some(Blocked::Everywhere(reason)) => {
                tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                report.suppressed += 1;
                let now = now.timestamp();
                return blocking(store, move |s| s.mark_suppressed(id, reason, now)).await;
            }
            Some(Blocked::Here(reason)) => {
                if self.fall_back(store, &message, reason, now, report).await? {
                    return Ok(());
                }
                tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                report.suppressed += 1;
                let now = now.timestamp();
                return blocking(store, move |s| s.mark_suppressed(id, reason, now)).await;
            }
            None => {}
        }

        // When: quiet hours, then frequency caps. Waiting uses no attempt.
        if let Some(until) = route
            .policy
            .quiet_hours
            .and_then(|q| quiet_until(q, now, self.tz))
        {
            let reason = format!(
                "quiet hours for {channel}; waits until {}",
                clock::format_local(until, self.tz)
            );
            return self.defer(store, id, reason, until, now, report).await;
        }
        if let Some((until, reason)) = self.cap_until(store, &message, route, now).await? {
            return self.defer(store, id, reason, until, now, report).await;
        }

        // How fast: the sender's rate limit.
        if let Some(pacer) = &route.pacer
            && let Err(wait) = pacer.acquire(stop).await
        {
            let until = (now + chrono::Duration::from_std(wait).unwrap_or_default()).timestamp();
            let reason = format!("rate limit of sender {}", route.sender_name);
            let until = until.max(now.timestamp() + 1);
            return self.defer(store, id, reason, until, now, report).await;
        }

        let address = address(&message).unwrap_or_default().to_string();
        let outbound = outbound(&message, &address, clock.now());
        let outcome = route.sender.send(&outbound).await;
        self.record(
            store,
            &message,
            route,
            &address,
            outcome,
            clock.now(),
            report,
        )
        .await
    }

    /// Writes what the sender answered.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        store: &SharedStore,
        message: &Claimed,
        route: &Route,
        address: &str,
        outcome: SendOutcome,
        now: DateTime<Utc>,
        report: &mut DispatchReport,
    ) -> Result<(), StoreError> {
        let id = message.id;
        let channel = message.channel.as_str();
        let sender_name = route.sender_name.clone();
        let cost = route.policy.cost_milli;
        let at = now.timestamp();
        match outcome {
            SendOutcome::Sent { provider_id } => {
                report.sent += 1;
                blocking(store, move |s| {
                    s.mark_sent(id, &sender_name, &provider_id, cost, at)
                })
                .await
            }
            SendOutcome::Awaiting { provider_id } => {
                tracing::info!(id, channel, to = %mask::address(address), provider_id, "handed to staff; awaiting");
                report.awaiting += 1;
                blocking(store, move |s| {
                    s.mark_awaiting(id, &sender_name, &provider_id, cost, at)
                })
                .await
            }
            SendOutcome::Deferred { retry_at, reason } => {
                self.defer(store, id, reason, retry_at.timestamp(), now, report)
                    .await
            }
            SendOutcome::Retryable { error, retry_after } => {
                if message.attempts >= i64::from(self.settings.max_attempts) {
                    tracing::warn!(id, channel, to = %mask::address(address), attempts = message.attempts, %error,
                        "giving up");
                    report.failed += 1;
                    let error = format!("gave up after {} attempts: {error}", message.attempts);
                    blocking(store, move |s| s.mark_failed(id, &sender_name, &error, at)).await
                } else {
                    let wait =
                        retry_after.unwrap_or_else(|| backoff(&self.settings, message.attempts));
                    tracing::info!(id, channel, attempts = message.attempts, retry_in = ?wait, %error, "will retry");
                    report.retried += 1;
                    let retry_at = at + wait.as_secs().max(1) as i64;
                    blocking(store, move |s| {
                        s.mark_retry(id, &sender_name, &error, retry_at, at)
                    })
                    .await
                }
            }
            SendOutcome::Permanent { error } => {
                let why = format!("{channel}: {error}");
                if self.fall_back(store, message, &why, now, report).await? {
                    return Ok(());
                }
                tracing::warn!(id, channel, to = %mask::address(address), %error, "failed");
                report.failed += 1;
                blocking(store, move |s| s.mark_failed(id, &sender_name, &error, at)).await
            }
            SendOutcome::OptedOut { reason } => {
                tracing::info!(id, channel, to = %mask::address(address), %reason,
                    "recipient opted out; consent withdrawn for this channel");
                report.opted_out += 1;
                blocking(store, move |s| {
                    s.mark_opted_out(id, &sender_name, &reason, at)
                })
                .await?;
                Ok(())
            }
        }
    }

    /// Switches the message to its fallback channel if it has one that is
    /// routed. Returns whether it did.
    async fn fall_back(
        &self,
        store: &SharedStore,
        message: &Claimed,
        why: &str,
        now: DateTime<Utc>,
        report: &mut DispatchReport,
    ) -> Result<bool, StoreError> {
        let Some(fallback) = self
            .routes
            .get(&message.channel)
            .and_then(|r| r.policy.fallback)
        else {
            return Ok(false);
        };
        if !message.has_fallback || !self.routes.contains_key(&fallback) {
            return Ok(false);
        }
        let id = message.id;
        let routed = self.channels();
        let note = format!("{why}; falling back to {fallback}");
        let at = now.timestamp();
        let switched = blocking(store, move |s| s.fall_back(id, &note, &routed, at)).await?;
        if let Some(to) = switched {
            tracing::info!(
                id,
                from = message.channel.as_str(),
                to = to.as_str(),
                why,
                "falling back"
            );
            report.fell_back += 1;
        }
        Ok(switched.is_some())
    }

    async fn defer(
        &self,
        store: &SharedStore,
        id: i64,
        reason: String,
        until: Timestamp,
        now: DateTime<Utc>,
        report: &mut DispatchReport,
    ) -> Result<(), StoreError> {
        tracing::debug!(id, %reason, "deferred");
        report.deferred += 1;
        let now = now.timestamp();
        blocking(store, move |s| s.mark_deferred(id, &reason, until, now)).await
    }

    /// When the customer's frequency caps allow this message, if they do not now.
    async fn cap_until(
        &self,
        store: &SharedStore,
        message: &Claimed,
        route: &Route,
        now: DateTime<Utc>,
    ) -> Result<Option<(Timestamp, String)>, StoreError> {
        let checks = [
            (route.policy.cap, Some(message.channel)),
            (self.settings.cap, None),
        ];
        let mut latest: Option<(Timestamp, String)> = None;
        for (cap, channel) in checks {
            let Some(cap) = cap else { continue };
            let window = cap.window.as_secs() as i64;
            let since = now.timestamp() - window;
            let customer = message.recipient.customer_id;
            let (count, oldest) =
                blocking(store, move |s| s.recent_contacts(customer, channel, since)).await?;
            if count >= i64::from(cap.count) {
                let until = oldest.unwrap_or(now.timestamp()) + window + 1;
                let scope = channel.map_or("all channels".to_string(), |c| c.to_string());
                let reason = format!(
                    "frequency cap of {} per {} on {scope} reached; waits until {}",
                    cap.count,
                    humantime::format_duration(cap.window),
                    clock::format_local(until, self.tz)
                );
                if latest.as_ref().is_none_or(|(t, _)| until > *t) {
                    latest = Some((until, reason));
                }
            }
        }
        Ok(latest)
    }

    /// Asks the senders about messages that await a person and were not
    /// asked for `every`, and settles those that have an answer.
    pub async fn poll_awaiting(
        &self,
        store: &SharedStore,
        clock: Clock,
        every: Duration,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<PollReport, StoreError> {
        let mut report = PollReport::default();
        let now = clock.now();
        let before = now.timestamp() - every.as_secs() as i64;
        let channels = self.channels();
        let limit = self.settings.batch_size;
        let waiting =
            blocking(store, move |s| s.awaiting_to_poll(before, &channels, limit)).await?;
        for message in waiting {
            if stop() {
                break;
            }
            let Some(route) = self.routes.get(&message.channel) else {
                continue;
            };
            let Some(provider_id) = message.provider_id.clone() else {
                continue;
            };
            report.polled += 1;
            let address = address(&message).unwrap_or_default().to_string();
            let outbound = outbound(&message, &address, clock.now());
            let answer = route.sender.poll(&provider_id, &outbound).await;
            let id = message.id;
            let at = clock.now().timestamp();
            let sender_name = route.sender_name.clone();
            match answer {
                PollOutcome::Sent => {
                    report.sent += 1;
                    blocking(store, move |s| s.mark_delivered(id, at)).await?;
                }
                PollOutcome::Failed { error } => {
                    report.failed += 1;
                    tracing::info!(id, channel = message.channel.as_str(), %error, "awaiting message failed");
                    blocking(store, move |s| s.mark_failed(id, &sender_name, &error, at)).await?;
                }
                PollOutcome::OptedOut { reason } => {
                    report.opted_out += 1;
                    blocking(store, move |s| {
                        s.mark_opted_out(id, &sender_name, &reason, at)
                    })
                    .await?;
                }
                PollOutcome::Pending => {
                    report.pending += 1;
                    blocking(store, move |s| s.mark_polled(id, None, at)).await?;
                }
                PollOutcome::Unknown { error } => {
                    report.pending += 1;
                    let note = format!("could not ask the provider: {error}");
                    blocking(store, move |s| s.mark_polled(id, Some(&note), at)).await?;
                }
            }
        }
        Ok(report)
    }
}

fn outbound<'a>(message: &'a Claimed, address: &'a str, now: DateTime<Utc>) -> Outbound<'a> {
    Outbound {
        id: message.id,
        channel: message.channel,
        rule_id: &message.rule_id,
        template: &message.template,
        subject: message.subject.as_deref(),
        content: &message.content,
        html: message.html.as_deref(),
        params: message.params.as_deref(),
        recipient: &message.recipient,
        address,
        attempt: message.attempts,
        previous_error: message.last_error.as_deref(),
        now,
    }
}

/// Why a message must not go out on its channel, if it must not.
fn blocked(message: &Claimed) -> Option<Blocked> {
    if message.do_not_contact {
        Some(Blocked::Everywhere("customer is marked do-not-contact"))
    } else if !message.consent {
        Some(Blocked::Here(match message.channel {
            Channel::Sms => "no consent for sms",
            Channel::Phone => "no consent for phone calls",
            Channel::Wechat => "no consent for wechat",
            Channel::Email => "no consent for email",
        }))
    } else if address(message).is_none() {
        Some(Blocked::Here(match message.channel {
            Channel::Sms | Channel::Phone => "no phone number on record",
            Channel::Wechat => "no wechat id on record",
            Channel::Email => "no email address on record",
        }))
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

/// The end of the quiet window `now` is in (clinic time), if it is in one.
fn quiet_until(quiet: QuietHours, now: DateTime<Utc>, tz: Tz) -> Option<Timestamp> {
    let local = now.with_timezone(&tz);
    if !quiet.contains(local.time()) {
        return None;
    }
    let mut day = local.date_naive();
    if local.time() >= quiet.end {
        day = day.succ_opt()?;
    }
    clock::local_to_utc(day.and_time(quiet.end), tz).map(|t| t.timestamp())
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
