//! How each sender is doing, learned from its answers: `ok`, `failing` (its
//! last `[dispatch] failing_after` attempts all failed, whatever the
//! reason) or `paused` (the provider refused its credentials or account:
//! [`SendOutcome::Refused`]).
//!
//! A paused sender sends nothing: its messages stay queued, no attempt
//! used, nothing failed. After a wait (`retry_backoff`, doubled after each
//! refused probe, at most `max_backoff`) one message goes out as a probe;
//! if the provider answers about the message rather than refusing the
//! sender, the sender resumes and the rest go out. A reload lets a probe go
//! at once (`Store::probe_paused_now`). The states live in the store
//! (`store::health`), so every dispatcher, `recall status` and `/healthz`
//! see them; each change of state is an incident, logged at WARN or ERROR
//! and told once to staff through `[dispatch] alert` ([`Dispatcher::announce`]).
//!
//! Deciding is pure ([`learn`]); the round loads a [`Book`] at its start,
//! consults and updates it as answers arrive, and saves what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use super::Dispatcher;
use super::sender::{Outbound, SendOutcome};
use crate::base::clock::{Clock, Timestamp};
use crate::base::content::Content;
use crate::base::i18n::{Text, lang, t};
use crate::base::model::Channel;
use crate::config::DispatchSettings;
use crate::store::StoreError;
use crate::store::health::{SenderHealth, SenderState};
use crate::store::outbox::Recipient;
use crate::store::shared::{SharedStore, blocking};

/// What one attempt says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The provider took the message (sent, or handed to a person).
    Through,
    /// The provider answered about the message without failing it (opted
    /// out, not now): the sender works.
    Answered,
    /// The attempt failed. `answered`: the provider judged the message
    /// (a permanent failure), so the credentials passed.
    Failed { error: String, answered: bool },
    /// The provider refused the sender: credentials or account.
    Refused { code: String, error: String },
}

impl Attempt {
    /// What a sender's answer says about the sender.
    pub(super) fn of(outcome: &SendOutcome) -> Attempt {
        match outcome {
            SendOutcome::Sent { .. } | SendOutcome::Awaiting { .. } => Attempt::Through,
            SendOutcome::Deferred { .. } | SendOutcome::OptedOut { .. } => Attempt::Answered,
            SendOutcome::Retryable { error, .. } => Attempt::Failed {
                error: error.clone(),
                answered: false,
            },
            SendOutcome::Permanent { error } => Attempt::Failed {
                error: error.clone(),
                answered: true,
            },
            SendOutcome::Refused { code, error } => Attempt::Refused {
                code: code.clone(),
                error: error.clone(),
            },
        }
    }
}

/// How long a paused sender waits before its next probe, after `probes`
/// refused ones: `retry_backoff` doubled each time, at most `max_backoff`.
/// No jitter: one probe per sender, and `--at` runs must be repeatable.
pub fn probe_wait(settings: &DispatchSettings, probes: i64) -> Duration {
    let factor = 2u32.saturating_pow(probes.clamp(0, 30) as u32);
    settings
        .retry_backoff
        .saturating_mul(factor)
        .min(settings.max_backoff)
        .max(Duration::from_secs(1))
}

/// Applies one attempt's lesson to a sender's health at `now`; returns the
/// new state if the attempt changed it (an incident).
pub(super) fn learn(
    health: &mut SenderHealth,
    attempt: &Attempt,
    now: Timestamp,
    settings: &DispatchSettings,
) -> Option<SenderState> {
    let before = health.state;
    health.updated_at = now;
    let probe_due = health.probe_at.is_none_or(|at| at <= now);
    match attempt {
        Attempt::Through | Attempt::Answered => {
            if matches!(attempt, Attempt::Through) || before == SenderState::Paused {
                health.failures = 0;
            }
            if before == SenderState::Paused || matches!(attempt, Attempt::Through) {
                health.state = SenderState::Ok;
            }
        }
        Attempt::Failed { error, answered } => {
            health.last_error = Some(error.clone());
            if before == SenderState::Paused {
                if *answered {
                    health.state = SenderState::Ok;
                    health.failures = 0;
                } else if probe_due {
                    // The probe did not reach the provider: try later.
                    reschedule_probe(health, now, settings);
                }
            }
            health.failures += 1;
            if health.state == SenderState::Ok
                && health.failures >= i64::from(settings.failing_after.max(1))
            {
                health.state = SenderState::Failing;
            }
        }
        Attempt::Refused { code, error } => {
            health.failures += 1;
            health.code = Some(code.clone());
            health.last_error = Some(error.clone());
            if before != SenderState::Paused {
                health.state = SenderState::Paused;
                health.probes = 0;
                health.probe_at = Some(now + probe_wait(settings, 0).as_secs() as i64);
            } else if probe_due {
                // The probe was refused too (others of the same round that
                // were already on their way are not probes).
                reschedule_probe(health, now, settings);
            }
        }
    }
    if health.state == before {
        return None;
    }
    health.since = now;
    if health.state != SenderState::Paused {
        health.probe_at = None;
        health.probes = 0;
        health.code = None;
    }
    Some(health.state)
}

fn reschedule_probe(health: &mut SenderHealth, now: Timestamp, settings: &DispatchSettings) {
    health.probes += 1;
    health.probe_at = Some(now + probe_wait(settings, health.probes).as_secs() as i64);
}

/// Which senders a round may claim for: all but the paused ones, and
/// those paused whose probe is due claim one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Claims {
    pub open: Vec<Channel>,
    /// Per paused sender due for a probe: its channels.
    pub probes: Vec<Vec<Channel>>,
}

/// The senders' health during one round.
pub(super) struct Book {
    senders: Mutex<BTreeMap<String, SenderHealth>>,
    changed: Mutex<BTreeSet<String>>,
}

impl Book {
    /// The health of every sender, as the store has it.
    pub(super) async fn load(store: &SharedStore) -> Result<Book, StoreError> {
        let rows = blocking(store, |s| s.sender_health()).await?;
        Ok(Book {
            senders: Mutex::new(rows.into_iter().map(|h| (h.sender.clone(), h)).collect()),
            changed: Mutex::new(BTreeSet::new()),
        })
    }

    /// If `sender` is paused and its probe is not due: the row, to say why.
    pub(super) fn holding(&self, sender: &str, now: Timestamp) -> Option<SenderHealth> {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders
            .get(sender)
            .filter(|h| h.state == SenderState::Paused && h.probe_at.is_some_and(|at| at > now))
            .cloned()
    }

    /// Learns from one attempt of `sender`'s, logging an incident.
    pub(super) fn learn(
        &self,
        sender: &str,
        attempt: &Attempt,
        now: Timestamp,
        settings: &DispatchSettings,
    ) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let health = senders
            .entry(sender.to_string())
            .or_insert_with(|| SenderHealth::new(sender, now));
        let before = health.clone();
        if let Some(state) = learn(health, attempt, now, settings) {
            log_incident(health, state);
        } else if before.state == SenderState::Paused && health.probes > before.probes {
            tracing::warn!(sender, code = health.code.as_deref().unwrap_or(""),
                error = health.last_error.as_deref().unwrap_or(""),
                next_probe_in = ?probe_wait(settings, health.probes),
                "{}", t!("dispatch.health.probe_refused", sender).render(lang()));
        }
        if *health != before {
            self.changed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sender.to_string());
        }
    }

    /// The rows the round changed.
    pub(super) fn changed(&self) -> Vec<SenderHealth> {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        changed
            .iter()
            .filter_map(|name| senders.get(name).cloned())
            .collect()
    }
}

/// Logs a sender's change of state: ERROR when paused, WARN when failing
/// or back (a person may be fixing it and wants to see it worked).
fn log_incident(health: &SenderHealth, state: SenderState) {
    let sender = health.sender.as_str();
    let code = health.code.as_deref().unwrap_or("");
    let error = health.last_error.as_deref().unwrap_or("");
    let failures = health.failures;
    let text = incident_text(health).render(lang());
    match state {
        SenderState::Paused => tracing::error!(sender, code, error, "{text}"),
        SenderState::Failing => tracing::warn!(sender, failures, error, "{text}"),
        SenderState::Ok => tracing::warn!(sender, "{text}"),
    }
}

/// What an incident says to a person, in the log and the alert.
pub fn incident_text(health: &SenderHealth) -> Text {
    let sender = health.sender.as_str();
    let error = health.last_error.as_deref().unwrap_or("");
    match health.state {
        SenderState::Paused => t!(
            "dispatch.health.paused",
            sender,
            code = health.code.as_deref().unwrap_or(""),
            error
        ),
        SenderState::Failing => t!(
            "dispatch.health.failing",
            sender,
            failures = health.failures,
            error
        ),
        SenderState::Ok => t!("dispatch.health.resumed", sender),
    }
}

impl Dispatcher {
    /// Which channels a round claims for at `now`, given the book.
    pub(super) fn claims(&self, book: &Book, now: Timestamp) -> Claims {
        let mut claims = Claims::default();
        let mut probing: BTreeMap<&str, Vec<Channel>> = BTreeMap::new();
        let senders = book.senders.lock().unwrap_or_else(|p| p.into_inner());
        for (channel, route) in &self.routes {
            match senders.get(&route.sender_name) {
                Some(h) if h.state == SenderState::Paused => {
                    if h.probe_at.is_none_or(|at| at <= now) {
                        probing
                            .entry(&route.sender_name)
                            .or_default()
                            .push(*channel);
                    }
                }
                _ => claims.open.push(*channel),
            }
        }
        claims.probes = probing.into_values().collect();
        claims
    }

    /// Tells staff, through `[dispatch] alert`, of every sender whose
    /// state changed since they were last told: one notice per incident
    /// (starts failing, paused, back), not per message. A notice that does
    /// not go through stays owed, for the next pass.
    pub(super) async fn announce(&self, store: &SharedStore, clock: Clock) {
        let Some((alert_name, alert)) = &self.alert else {
            return;
        };
        let rows = match blocking(store, |s| s.sender_health()).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "{}", t!("dispatch.health.alert_unread").render(lang()));
                return;
            }
        };
        let owed = rows
            .into_iter()
            .filter(|h| h.state != h.announced && &h.sender != alert_name);
        for health in owed {
            let content = Content::text(incident_text(&health).render(lang()));
            let recipient = Recipient::default();
            let notice = Outbound::staff_notice("sender_alert", &content, &recipient, clock.now());
            let told = match alert.send(&notice).await {
                SendOutcome::Sent { .. } | SendOutcome::Awaiting { .. } => true,
                SendOutcome::Permanent { error } | SendOutcome::Refused { error, .. } => {
                    tracing::error!(alert = %alert_name, sender = %health.sender, %error,
                        "{}", t!("dispatch.health.alert_refused").render(lang()));
                    true
                }
                SendOutcome::Retryable { error, .. } => {
                    tracing::warn!(alert = %alert_name, sender = %health.sender, %error,
                        "{}", t!("dispatch.health.alert_later").render(lang()));
                    false
                }
                SendOutcome::Deferred { reason: error, .. }
                | SendOutcome::OptedOut { reason: error } => {
                    tracing::warn!(alert = %alert_name, sender = %health.sender, %error,
                        "{}", t!("dispatch.health.alert_later").render(lang()));
                    false
                }
            };
            if told {
                let (sender, state) = (health.sender.clone(), health.state);
                if let Err(e) = blocking(store, move |s| s.mark_announced(&sender, state)).await {
                    tracing::warn!(error = %e, "{}", t!("dispatch.health.alert_unread").render(lang()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DispatchSettings {
        DispatchSettings {
            failing_after: 3,
            retry_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
            ..DispatchSettings::default()
        }
    }

    fn failed(answered: bool) -> Attempt {
        Attempt::Failed {
            error: "connection refused".into(),
            answered,
        }
    }

    fn refused() -> Attempt {
        Attempt::Refused {
            code: "AuthFailure.SignatureFailure".into(),
            error: "bad key".into(),
        }
    }

    #[test]
    fn a_sender_is_failing_after_n_failures_in_a_row_and_ok_after_one_success() {
        let s = settings();
        let mut h = SenderHealth::new("sms", 0);
        assert_eq!(learn(&mut h, &failed(false), 10, &s), None);
        assert_eq!(learn(&mut h, &Attempt::Answered, 15, &s), None);
        assert_eq!(learn(&mut h, &failed(true), 20, &s), None);
        assert_eq!(
            learn(&mut h, &failed(false), 30, &s),
            Some(SenderState::Failing)
        );
        assert_eq!((h.failures, h.since), (3, 30));
        assert_eq!(learn(&mut h, &failed(false), 40, &s), None);
        assert_eq!(
            learn(&mut h, &Attempt::Through, 50, &s),
            Some(SenderState::Ok)
        );
        assert_eq!(h.failures, 0);
    }

    #[test]
    fn a_refusal_pauses_and_only_a_probe_that_the_provider_answers_resumes() {
        let s = settings();
        let mut h = SenderHealth::new("sms", 0);
        assert_eq!(
            learn(&mut h, &refused(), 100, &s),
            Some(SenderState::Paused)
        );
        assert_eq!((h.probe_at, h.probes), (Some(160), 0));
        // Others of the same round, already on their way: not probes.
        assert_eq!(learn(&mut h, &refused(), 100, &s), None);
        assert_eq!((h.probe_at, h.probes), (Some(160), 0));
        // The probe is refused: the next waits twice as long.
        assert_eq!(learn(&mut h, &refused(), 160, &s), None);
        assert_eq!((h.probe_at, h.probes), (Some(280), 1));
        // The probe does not reach the provider: still paused, later.
        assert_eq!(learn(&mut h, &failed(false), 280, &s), None);
        assert_eq!((h.probe_at, h.probes), (Some(280 + 240), 2));
        // The provider judges the message: the credentials passed.
        assert_eq!(learn(&mut h, &failed(true), 520, &s), Some(SenderState::Ok));
        assert_eq!((h.probe_at, h.code.as_deref()), (None, None));
        assert_eq!(h.failures, 1, "the refusals do not count once it resumed");
    }

    #[test]
    fn probes_wait_longer_each_time_up_to_max_backoff() {
        let s = settings();
        let waits: Vec<u64> = (0..6).map(|p| probe_wait(&s, p).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 600, 600]);
    }
}
