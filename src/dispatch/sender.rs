//! The `Sender` trait: one implementation per provider, one call per message.
//!
//! A sender only talks to its provider. It never touches the store and never
//! decides policy (consent, quiet hours, caps, retries): it says what happened,
//! in one of a few ways, because dispatch branches on exactly those.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::Channel;
use crate::store::outbox::Recipient;

/// A message ready to go out.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    /// The outreach row id: stable across retries, so providers that take an
    /// idempotency key or out-id get this.
    pub id: i64,
    pub channel: Channel,
    pub rule_id: &'a str,
    pub template: &'a str,
    pub subject: Option<&'a str>,
    pub content: &'a str,
    pub html: Option<&'a str>,
    /// Provider template parameters rendered from `<template>.params.toml`,
    /// as a JSON object of strings, for providers that send approved
    /// templates (Aliyun/Tencent SMS, WeChat template messages).
    pub params: Option<&'a str>,
    pub recipient: &'a Recipient,
    /// The address on this channel: phone number, email, or WeChat id.
    pub address: &'a str,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// The last error of the previous attempt, if any.
    pub previous_error: Option<&'a str>,
    /// The previous attempt may have reached the provider without our
    /// learning its answer: the dispatcher died while sending it, or the
    /// sender returned an error marked with [`in_doubt`]. A sender whose
    /// provider has no idempotency key but can be asked (Aliyun, Twilio)
    /// must ask before sending again.
    pub in_doubt: bool,
    /// When the message is being sent (the dispatcher's clock).
    pub now: DateTime<Utc>,
}

/// The error of an attempt that may have reached the provider (the request
/// went out, the answer was lost): marked so that the next attempt of the
/// message comes with [`Outbound::in_doubt`] set. The one marker of that
/// state ([`crate::store::outbox::IN_DOUBT`]), shared with crash recovery.
pub fn in_doubt(error: &str) -> String {
    crate::store::outbox::mark_in_doubt(error)
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider accepted the message and gave it this id.
    Sent { provider_id: String },
    /// The provider accepted it, but a person must act before it reaches the
    /// customer (a WeCom message a staff member confirms, a call task). The
    /// dispatcher polls [`Sender::poll`] until it settles. Never "delivered".
    Awaiting { provider_id: String },
    /// Not now, and not a failure: try again at `retry_at` (a daily capacity
    /// is used up, the provider's window is closed). Does not use an attempt.
    Deferred {
        retry_at: DateTime<Utc>,
        reason: String,
    },
    /// Worth trying again later (timeouts, throttling, provider outage).
    Retryable {
        error: String,
        /// When the provider said to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (bad number, unapproved template).
    Permanent { error: String },
    /// The recipient has opted out of this channel (unfollowed, blacklisted,
    /// refused): the customer's consent for the channel is withdrawn.
    OptedOut { reason: String },
}

/// What became of a message that was [`SendOutcome::Awaiting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Still waiting for the person (or the provider): ask again later.
    Pending,
    /// It reached the customer.
    Sent,
    /// It will not reach the customer (the staff member declined, the task
    /// expired, the provider says it failed).
    Failed { error: String },
    /// The recipient opted out.
    OptedOut { reason: String },
    /// Could not ask (provider down): ask again later.
    Unknown { error: String },
}

/// A provider that carries messages of one or more channels.
#[async_trait]
pub trait Sender: Send + Sync {
    /// The sender kind, as in `kind = "..."` in `recall.toml`.
    fn kind(&self) -> &'static str;

    /// Sends one message. Must not panic; every failure is an outcome.
    async fn send(&self, message: &Outbound<'_>) -> SendOutcome;

    /// Asks what became of a message this sender answered
    /// [`SendOutcome::Awaiting`] for. Senders that never await keep the default.
    async fn poll(&self, provider_id: &str, message: &Outbound<'_>) -> PollOutcome {
        let _ = (provider_id, message);
        PollOutcome::Unknown {
            error: format!("the {} sender cannot be polled", self.kind()),
        }
    }

    /// Called after each dispatch round, for work a sender batches over a
    /// round (e.g. one notice to staff about all the call tasks it created).
    async fn after_round(&self, now: DateTime<Utc>) {
        let _ = now;
    }

    /// The provider's own rate limit, used when `recall.toml` sets none
    /// (e.g. the WeCom group robot takes 20 messages a minute).
    fn default_rate_limit(&self) -> Option<RateLimit> {
        None
    }
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    /// Parses `"10/s"`, `"600/min"`, `"20/minute"`, `"1000/h"`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (count, unit) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a rate: write it like \"10/s\" or \"20/min\"")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` in `{text}` is not a whole number"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`: use s, min, h or day"
                ));
            }
        };
        if count == 0 {
            return Err(format!(
                "`{text}` allows nothing; remove the limit or raise it"
            ));
        }
        Ok(RateLimit { count, per })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_units_staff_write() {
        assert_eq!(
            RateLimit::parse("20/min").unwrap(),
            RateLimit {
                count: 20,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(
            RateLimit::parse("10/s").unwrap().per,
            Duration::from_secs(1)
        );
        assert!(RateLimit::parse("10 per s").is_err());
        assert!(RateLimit::parse("0/s").is_err());
        assert!(RateLimit::parse("5/fortnight").is_err());
    }
}
