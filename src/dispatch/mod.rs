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
//! person (WeCom confirmations, call tasks) are polled until they settle. A
//! message is never dropped: every path ends in a status with its reason.
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

mod pacer;
pub mod sender;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::clock::{self, Clock, Timestamp};
use crate::config::{ChannelPolicy, Config, DispatchSettings, QuietHours};
use crate::mask;
use crate::metrics;
use crate::model::Channel;
use crate::senders::{self, BuildError};
use crate::store::outbox::{Claimed, Settle, Settled};
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

    /// One round: claim a batch of due messages, send up to `concurrency`
    /// of them at a time, and write their outcomes in groups (one
    /// transaction per group). A message holds one of `concurrency` permits
    /// from before it is sent until its outcome is committed, so at most
    /// `concurrency` messages are ever between "handed to the provider" and
    /// "result durable" — the whole at-least-once window after a crash. The
    /// round ends only when every outcome is committed, so nothing is
    /// claimed again before its result is durable.
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
        let claimed_count = claimed.len();
        if claimed.is_empty() {
            return Ok(DispatchReport::default());
        }
        let claimed_ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        let caps = match self.cap_book(store, &claimed, now).await {
            Ok(caps) => caps,
            Err(e) => {
                release_unsettled(store, claimed_ids, clock, stop).await;
                return Err(e);
            }
        };
        let opt_outs = OptOuts::default();
        let permits = Arc::new(Semaphore::new(self.concurrency()));
        let (tx, rx) = mpsc::unbounded_channel::<(Settle, OwnedSemaphorePermit)>();
        let mut remaining = claimed.into_iter().peekable();

        let sends = async {
            let mut in_flight = FuturesUnordered::new();
            let mut started = 0usize;
            loop {
                // In-flight sends always finish; new ones start only until
                // a stop (the first one of a round always starts).
                let may_start = remaining.peek().is_some() && (started == 0 || !stop());
                tokio::select! {
                    biased;
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    permit = permits.clone().acquire_owned(), if may_start => {
                        let permit = permit.expect("the semaphore is never closed");
                        let Some(message) = remaining.next() else { continue };
                        started += 1;
                        let tx = tx.clone();
                        let caps = &caps;
                        let opt_outs = &opt_outs;
                        in_flight.push(async move {
                            let outcome = self.handle(clock, message, caps, opt_outs, stop).await;
                            // The writer is gone only if it failed; the
                            // round reports that error.
                            let _ = tx.send((outcome, permit));
                        });
                    }
                    else => break,
                }
            }
            drop(tx);
            Ok::<_, StoreError>(())
        };
        let ((), mut report) = match tokio::try_join!(sends, self.write_outcomes(store, rx)) {
            Ok(done) => done,
            Err(e) => {
                release_unsettled(store, claimed_ids, clock, stop).await;
                return Err(e);
            }
        };

        let unsent: Vec<i64> = remaining.map(|m| m.id).collect();
        if !unsent.is_empty() {
            report.released += unsent.len();
            let now = clock.now().timestamp();
            blocking(store, move |s| s.release(&unsent, now)).await?;
        }
        report.claimed = claimed_count;
        Ok(report)
    }

    fn concurrency(&self) -> usize {
        (self.settings.concurrency as usize).max(1)
    }

    /// Commits outcomes as they arrive, each group in one transaction: all
    /// that waited while the previous commit ran, up to `concurrency`. The
    /// permits of a group are returned only once it is committed.
    async fn write_outcomes(
        &self,
        store: &SharedStore,
        mut outcomes: mpsc::UnboundedReceiver<(Settle, OwnedSemaphorePermit)>,
    ) -> Result<DispatchReport, StoreError> {
        let mut report = DispatchReport::default();
        while let Some(first) = outcomes.recv().await {
            let mut group = vec![first];
            while group.len() < self.concurrency() {
                match outcomes.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let (settles, permits): (Vec<Settle>, Vec<OwnedSemaphorePermit>) =
                group.into_iter().unzip();
            let (settles, done) = commit(store, settles).await?;
            drop(permits);
            metrics::global().group_committed(settles.len());
            for (settle, settled) in settles.iter().zip(done) {
                self.count(settle, settled, &mut report);
            }
        }
        Ok(report)
    }

    /// Counts a committed outcome in the report and the metrics.
    fn count(&self, settle: &Settle, settled: Settled, report: &mut DispatchReport) {
        let settle = match (settle, settled) {
            (Settle::FallBack { id, note, .. }, Settled::FellBack(to)) => {
                tracing::info!(id, to = to.as_str(), why = %note, "falling back");
                report.fell_back += 1;
                metrics::global().dispatched("fell_back");
                return;
            }
            (Settle::FallBack { otherwise, .. }, _) => otherwise.as_ref(),
            (other, _) => other,
        };
        let (field, name) = match settle {
            Settle::Sent { .. } => (&mut report.sent, "sent"),
            Settle::Awaiting { .. } => (&mut report.awaiting, "awaiting"),
            Settle::Deferred { .. } => (&mut report.deferred, "deferred"),
            Settle::Retry { .. } => (&mut report.retried, "retried"),
            Settle::Failed { .. } => (&mut report.failed, "failed"),
            Settle::Suppressed { .. } => (&mut report.suppressed, "suppressed"),
            Settle::OptedOut { .. } => (&mut report.opted_out, "opted_out"),
            Settle::Release { .. } | Settle::FallBack { .. } => (&mut report.released, "released"),
        };
        *field += 1;
        metrics::global().dispatched(name);
    }

    /// What the frequency caps of these messages' customers have already
    /// counted (one query), if any cap is configured.
    async fn cap_book(
        &self,
        store: &SharedStore,
        claimed: &[Claimed],
        now: Timestamp,
    ) -> Result<CapBook, StoreError> {
        let longest = self
            .routes
            .values()
            .filter_map(|r| r.policy.cap)
            .chain(self.settings.cap)
            .map(|cap| cap.window.as_secs() as i64)
            .max();
        let Some(window) = longest else {
            return Ok(CapBook::default());
        };
        let mut customers: Vec<i64> = claimed.iter().map(|m| m.recipient.customer_id).collect();
        customers.sort_unstable();
        customers.dedup();
        let since = now - window;
        let rows = blocking(store, move |s| s.contacts_since(&customers, since)).await?;
        let mut book: HashMap<i64, Vec<(Channel, Timestamp)>> = HashMap::new();
        for (customer, channel, at) in rows {
            book.entry(customer).or_default().push((channel, at));
        }
        Ok(CapBook {
            contacts: Mutex::new(book),
        })
    }

    /// Decides what becomes of one claimed message, sending it if it may go
    /// out. Touches no store: the outcome is written by the round's writer.
    async fn handle(
        &self,
        clock: Clock,
        message: Claimed,
        caps: &CapBook,
        opt_outs: &OptOuts,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Settle {
        let id = message.id;
        let channel = message.channel;
        let customer = message.recipient.external_id.clone();
        let now = clock.now();
        let at = now.timestamp();
        let Some(route) = self.routes.get(&channel) else {
            // claim_due only claims routed channels; a route removed by a
            // reload mid-round puts the message back.
            return Settle::Release { id, at };
        };

        // Who may be reached, and where.
        match blocked(&message) {
            Some(Blocked::Everywhere(reason)) => {
                tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                return Settle::Suppressed {
                    id,
                    reason: reason.to_string(),
                    at,
                };
            }
            Some(Blocked::Here(reason)) => {
                let suppressed = Settle::Suppressed {
                    id,
                    reason: reason.to_string(),
                    at,
                };
                return match self.fall_back(&message, reason, at, suppressed) {
                    Ok(fall_back) => fall_back,
                    Err(suppressed) => {
                        tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                        suppressed
                    }
                };
            }
            None => {}
        }
        // Consent was read at the claim; an opt-out answered since, in this
        // round, counts as much as one read from the database.
        if let Some(settle) = self.opted_out_this_round(&message, opt_outs, at) {
            return settle;
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
            return defer(id, reason, until, at);
        }
        if let Some((until, reason)) = self.cap_until(caps, &message, route, at) {
            return defer(id, reason, until, at);
        }
        let sent = self.send(clock, &message, route, opt_outs, stop).await;
        if !matches!(sent, Settle::Sent { .. } | Settle::Awaiting { .. }) {
            caps.forget(message.recipient.customer_id, channel, at);
        }
        sent
    }

    /// Paces, sends, and turns the sender's answer into an outcome.
    async fn send(
        &self,
        clock: Clock,
        message: &Claimed,
        route: &Route,
        opt_outs: &OptOuts,
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

        let address = address(message).unwrap_or_default().to_string();
        let outbound = outbound(message, &address, clock.now());
        let started = std::time::Instant::now();
        let outcome = route.sender.send(&outbound).await;
        metrics::global().send_latency(&route.sender_name, started.elapsed());
        if matches!(outcome, SendOutcome::OptedOut { .. }) {
            opt_outs.learn(message);
        }
        self.record(message, route, &address, outcome, clock.now())
    }

    /// If another message of this round found the customer opted out of
    /// this channel: the fallback, or `suppressed` with the reason, as for a
    /// customer whose consent is already withdrawn.
    fn opted_out_this_round(
        &self,
        message: &Claimed,
        opt_outs: &OptOuts,
        at: Timestamp,
    ) -> Option<Settle> {
        let learned_from = opt_outs.learned(message)?;
        let reason = format!(
            "opted out of {} (the provider's answer to message {learned_from} in this dispatch round)",
            message.channel
        );
        let suppressed = Settle::Suppressed {
            id: message.id,
            reason: reason.clone(),
            at,
        };
        Some(match self.fall_back(message, &reason, at, suppressed) {
            Ok(fall_back) => fall_back,
            Err(suppressed) => {
                tracing::info!(id = message.id, channel = message.channel.as_str(),
                    customer = %message.recipient.external_id, %reason, "suppressed");
                suppressed
            }
        })
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
        match redacted(outcome) {
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
                    let error = format!(
                        "gave up after {} of retries ({} attempts): {error}",
                        humantime::format_duration(self.settings.give_up_after),
                        message.attempts
                    );
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
                let why = format!("{channel}: {error}");
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

    /// The switch to the message's fallback channel if it has one that is
    /// routed (with `otherwise` written if the stored fallback turns out
    /// unusable), or `otherwise` back when there is none.
    fn fall_back(
        &self,
        message: &Claimed,
        why: &str,
        at: Timestamp,
        otherwise: Settle,
    ) -> Result<Settle, Settle> {
        let Some(fallback) = self
            .routes
            .get(&message.channel)
            .and_then(|r| r.policy.fallback)
        else {
            return Err(otherwise);
        };
        if !message.has_fallback || !self.routes.contains_key(&fallback) {
            return Err(otherwise);
        }
        Ok(Settle::FallBack {
            id: message.id,
            note: format!("{why}; falling back to {fallback}"),
            routed: self.channels(),
            at,
            otherwise: Box::new(otherwise),
        })
    }

    /// When the customer's frequency caps allow this message, if they do not
    /// now. When they allow it, the contact is counted at once, so another
    /// message of the same customer in the same round sees it.
    fn cap_until(
        &self,
        caps: &CapBook,
        message: &Claimed,
        route: &Route,
        now: Timestamp,
    ) -> Option<(Timestamp, String)> {
        let checks = [
            (route.policy.cap, Some(message.channel)),
            (self.settings.cap, None),
        ];
        if checks.iter().all(|(cap, _)| cap.is_none()) {
            return None;
        }
        let customer = message.recipient.customer_id;
        let mut book = caps.contacts.lock().unwrap_or_else(|p| p.into_inner());
        let contacts = book.entry(customer).or_default();
        let mut latest: Option<(Timestamp, String)> = None;
        for (cap, channel) in checks {
            let Some(cap) = cap else { continue };
            let window = cap.window.as_secs() as i64;
            let since = now - window;
            let counted = contacts
                .iter()
                .filter(|(c, at)| *at > since && channel.is_none_or(|ch| ch == *c))
                .map(|(_, at)| *at);
            let (count, oldest) = counted.fold((0i64, None::<Timestamp>), |(n, o), at| {
                (n + 1, Some(o.map_or(at, |o: Timestamp| o.min(at))))
            });
            if count >= i64::from(cap.count) {
                let until = oldest.unwrap_or(now) + window + 1;
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
        if latest.is_none() {
            contacts.push((message.channel, now));
        }
        latest
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
            let answer = match route.sender.poll(&provider_id, &outbound).await {
                PollOutcome::Failed { error } => PollOutcome::Failed {
                    error: senders::redact_secrets(&error),
                },
                PollOutcome::OptedOut { reason } => PollOutcome::OptedOut {
                    reason: senders::redact_secrets(&reason),
                },
                PollOutcome::Unknown { error } => PollOutcome::Unknown {
                    error: senders::redact_secrets(&error),
                },
                other => other,
            };
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
        in_doubt: message.in_doubt,
        now,
    }
}

/// A sender's answer with every secret taken out of its text, before it is
/// logged or stored: providers echo requests, headers and URLs.
fn redacted(outcome: SendOutcome) -> SendOutcome {
    match outcome {
        SendOutcome::Deferred { retry_at, reason } => SendOutcome::Deferred {
            retry_at,
            reason: senders::redact_secrets(&reason),
        },
        SendOutcome::Retryable { error, retry_after } => SendOutcome::Retryable {
            error: senders::redact_secrets(&error),
            retry_after,
        },
        SendOutcome::Permanent { error } => SendOutcome::Permanent {
            error: senders::redact_secrets(&error),
        },
        SendOutcome::OptedOut { reason } => SendOutcome::OptedOut {
            reason: senders::redact_secrets(&reason),
        },
        other => other,
    }
}

/// A deferral: back to the queue until `until`, no attempt used.
fn defer(id: i64, reason: String, until: Timestamp, at: Timestamp) -> Settle {
    tracing::debug!(id, %reason, "deferred");
    Settle::Deferred {
        id,
        reason,
        until,
        at,
    }
}

/// Writes a group of outcomes in one transaction. A failed commit (the
/// database busy beyond its timeout) is tried again a few times before the
/// round gives up; nothing of the group is durable until one succeeds.
async fn commit(
    store: &SharedStore,
    settles: Vec<Settle>,
) -> Result<(Vec<Settle>, Vec<Settled>), StoreError> {
    let settles = Arc::new(settles);
    let mut tries = 0;
    loop {
        let group = settles.clone();
        match blocking(store, move |s| s.settle(&group)).await {
            Ok(done) => {
                let settles = Arc::try_unwrap(settles).unwrap_or_else(|shared| (*shared).clone());
                return Ok((settles, done));
            }
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::warn!(error = %e, tries, "could not write dispatch outcomes; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// After a round failed (its outcomes could not be committed: the database
/// held by another process past the busy timeout), gives every message of
/// the round still in `sending` back to the queue, the attempt undone, so
/// the next round sends it instead of it waiting for a restart. Those a
/// provider had accepted are sent again: at most `concurrency`, the same
/// window as a crash. Tried until it succeeds or the dispatcher stops (a
/// restart requeues them then).
async fn release_unsettled(
    store: &SharedStore,
    ids: Vec<i64>,
    clock: Clock,
    stop: &(dyn Fn() -> bool + Sync),
) {
    let ids = Arc::new(ids);
    let mut wait = Duration::from_secs(1);
    loop {
        let round = ids.clone();
        let now = clock.now().timestamp();
        // In doubt, not merely released: some may have reached their
        // provider before the round failed to record it.
        match blocking(store, move |s| s.requeue_in_doubt(&round, now)).await {
            Ok(requeued) => {
                tracing::warn!(
                    messages = requeued,
                    "dispatch round failed; its unsettled messages are back in the queue, in doubt"
                );
                return;
            }
            Err(e) if !stop() => {
                tracing::warn!(error = %e, retry_in = ?wait,
                    "cannot give a failed round's messages back to the queue yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                tracing::error!(error = %e,
                    "stopping with a failed round's messages in sending; the next start requeues them");
                return;
            }
        }
    }
}

/// The contacts frequency caps count for the customers of one round: from
/// the database at the claim, plus the round's own sends as they start.
#[derive(Default)]
struct CapBook {
    contacts: Mutex<HashMap<i64, Vec<(Channel, Timestamp)>>>,
}

impl CapBook {
    /// Takes back a contact counted for a send that did not hand the
    /// message over.
    fn forget(&self, customer: i64, channel: Channel, at: Timestamp) {
        let mut book = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(contacts) = book.get_mut(&customer)
            && let Some(i) = contacts.iter().rposition(|c| *c == (channel, at))
        {
            contacts.remove(i);
        }
    }
}

/// The opt-outs providers answered during one round: (customer, channel) →
/// the message whose answer said so. Consent is read when messages are
/// claimed, so without this a customer's other messages on the channel in
/// the same round would still go out.
#[derive(Default)]
struct OptOuts {
    learned: Mutex<HashMap<(i64, Channel), i64>>,
}

impl OptOuts {
    fn learn(&self, message: &Claimed) {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned
            .entry((message.recipient.customer_id, message.channel))
            .or_insert(message.id);
    }

    /// The message whose answer said this one's customer opted out of its
    /// channel, if one did in this round.
    fn learned(&self, message: &Claimed) -> Option<i64> {
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned
            .get(&(message.recipient.customer_id, message.channel))
            .copied()
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
