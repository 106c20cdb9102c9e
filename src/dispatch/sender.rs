//! The `Sender` trait: one implementation per provider, one call per message.
//!
//! A sender only talks to its provider. It never touches the store and never
//! decides policy (consent, retries, quiet hours): it says what happened, in
//! one of four ways, because dispatch branches on exactly those.

use std::time::Duration;

use async_trait::async_trait;

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
    pub recipient: &'a Recipient,
    /// The address on this channel: phone number, email, or WeChat id.
    pub address: &'a str,
    /// 1 for the first attempt.
    pub attempt: i64,
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider accepted the message and gave it this id.
    Sent { provider_id: String },
    /// Worth trying again later (timeouts, throttling, provider outage).
    Retryable {
        error: String,
        /// When the provider said to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (bad number, unapproved template).
    Permanent { error: String },
    /// The recipient has opted out of this channel.
    OptedOut { reason: String },
}

/// A provider that carries messages of one or more channels.
#[async_trait]
pub trait Sender: Send + Sync {
    /// The sender kind, as in `kind = "..."` in `recall.toml`.
    fn kind(&self) -> &'static str;

    /// Sends one message. Must not panic; every failure is an outcome.
    async fn send(&self, message: &Outbound<'_>) -> SendOutcome;
}
