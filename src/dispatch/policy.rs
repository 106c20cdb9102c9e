//! The contact policy of one claimed message: whether it may go out at all
//! (do-not-contact, consent, the address its sender takes, an opt-out
//! learned earlier in the round), else its fallback or `suppressed` with
//! the reason; and when (quiet hours, frequency caps), else back to the
//! queue with no attempt used. Decides only: the round writes.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::health::Book;
use super::sender::AddressKind;
use super::{Dispatcher, Route, hold};
use crate::base::clock::{self, Clock, Timestamp};
use crate::base::i18n::t;
use crate::base::mask;
use crate::base::model::Channel;
use crate::base::phone::{self, CountryCode};
use crate::base::reason::stored;
use crate::config::QuietHours;
use crate::store::StoreError;
use crate::store::outbox::{Claimed, Settle};
use crate::store::shared::{SharedStore, blocking};

/// Why a message cannot go out on its channel as it stands.
enum Blocked {
    /// Do-not-contact: no channel at all.
    Everywhere(String),
    /// This channel only: a fallback may still reach the customer.
    Here(String),
    /// The address is no address at all (a phone number no number of its
    /// region looks like): a fallback may reach the customer, else the
    /// message fails here, without a provider call, for a person to fix.
    Invalid(String),
}

impl Dispatcher {
    /// Decides what becomes of one claimed message, sending it if it may go
    /// out. Touches no store: the outcome is written by the round's writer.
    pub(super) async fn handle(
        &self,
        clock: Clock,
        message: Claimed,
        caps: &CapBook,
        opt_outs: &OptOuts,
        health: &Book,
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
        match blocked(&message, route, self.region) {
            Some(Blocked::Everywhere(reason)) => {
                tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                return Settle::Suppressed { id, reason, at };
            }
            Some(Blocked::Here(reason)) => {
                let suppressed = Settle::Suppressed {
                    id,
                    reason: reason.clone(),
                    at,
                };
                return match self.fall_back(&message, &reason, at, suppressed) {
                    Ok(fall_back) => fall_back,
                    Err(suppressed) => {
                        tracing::info!(id, channel = channel.as_str(), %customer, reason, "suppressed");
                        suppressed
                    }
                };
            }
            Some(Blocked::Invalid(reason)) => {
                let failed = Settle::Failed {
                    id,
                    sender: route.sender_name.clone(),
                    error: reason.clone(),
                    at,
                };
                return match self.fall_back(&message, &reason, at, failed) {
                    Ok(fall_back) => fall_back,
                    Err(failed) => {
                        tracing::warn!(id, channel = channel.as_str(), %customer, %reason, "{}", "invalid address");
                        failed
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
            let reason = stored(t!(
                "reason.quiet_hours",
                channel,
                until = clock::format_local(until, self.tz)
            ));
            return hold(id, reason, until, at);
        }
        if let Some((until, reason)) = self.cap_until(caps, &message, route, at) {
            return hold(id, reason, until, at);
        }
        let sent = self
            .send(clock, &message, route, opt_outs, health, stop)
            .await;
        if !matches!(sent, Settle::Sent { .. } | Settle::Awaiting { .. }) {
            caps.forget(message.recipient.customer_id, channel, at);
        }
        sent
    }

    /// If another message of this round found the customer opted out of
    /// this channel: the fallback, or `suppressed` with the reason, as for a
    /// customer whose consent is already withdrawn.
    pub(super) fn opted_out_this_round(
        &self,
        message: &Claimed,
        opt_outs: &OptOuts,
        at: Timestamp,
    ) -> Option<Settle> {
        let learned_from = opt_outs.learned(message)?;
        let reason = stored(t!(
            "reason.opted_out_this_round",
            channel = message.channel,
            message = learned_from
        ));
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

    /// The switch to the message's fallback channel if it has one that is
    /// routed (with `otherwise` written if the stored fallback turns out
    /// unusable), or `otherwise` back when there is none.
    pub(super) fn fall_back(
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
            note: stored(t!("reason.falling_back", why, fallback)),
            routed: self.channels(),
            at,
            otherwise: Box::new(otherwise),
        })
    }

    /// What the frequency caps of these messages' customers have already
    /// counted (one query), if any cap is configured.
    pub(super) async fn cap_book(
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
                let scope = channel.map_or(t!("reason.all_channels"), Channel::name);
                let reason = stored(t!(
                    "reason.cap",
                    count = cap.count,
                    window = humantime::format_duration(cap.window),
                    scope,
                    until = clock::format_local(until, self.tz)
                ));
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
}

/// The contacts frequency caps count for the customers of one round: from
/// the database at the claim, plus the round's own sends as they start.
#[derive(Default)]
pub(super) struct CapBook {
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
pub(super) struct OptOuts {
    learned: Mutex<HashMap<(i64, Channel), i64>>,
}

impl OptOuts {
    pub(super) fn learn(&self, message: &Claimed) {
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

/// Why a message must not go out on its channel through `route`, if it
/// must not. The address is the one the route's sender takes: a customer
/// without it is blocked here, before any sender sees the message.
fn blocked(message: &Claimed, route: &Route, region: CountryCode) -> Option<Blocked> {
    if message.do_not_contact {
        Some(Blocked::Everywhere(stored(t!("reason.do_not_contact"))))
    } else if !message.consent {
        Some(Blocked::Here(stored(match message.channel {
            Channel::Sms => t!("reason.no_consent.sms"),
            Channel::Phone => t!("reason.no_consent.phone"),
            Channel::Wechat => t!("reason.no_consent.wechat"),
            Channel::Email => t!("reason.no_consent.email"),
        })))
    } else if let Some(address) = address(message, route) {
        if route.sender.address_kind(message.channel) != AddressKind::Phone {
            return None;
        }
        let why = phone::parse(address, Some(region))
            .and_then(|p| p.check())
            .err()?;
        let number = mask::phone(address);
        Some(Blocked::Invalid(stored(t!(
            "reason.invalid_address",
            number,
            why
        ))))
    } else {
        Some(Blocked::Here(
            route.sender.address_kind(message.channel).missing(),
        ))
    }
}

/// The address a message goes to on its channel through `route`.
pub(super) fn address<'a>(message: &'a Claimed, route: &Route) -> Option<&'a str> {
    route
        .sender
        .address_kind(message.channel)
        .of(&message.recipient)
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
