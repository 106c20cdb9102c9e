//! The `Sender` trait: one implementation per provider, one call per message.
//!
//! A sender only talks to its provider. It never touches the store and never
//! decides policy (consent, quiet hours, caps, retries): it says what happened,
//! in one of a few ways, because dispatch branches on exactly those.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::base::content::Content;
use crate::base::i18n::t;
use crate::base::model::Channel;
use crate::base::reason::stored;
use crate::config::RateLimit;
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
    /// What the message says, as the tick rendered it for this channel.
    pub content: &'a Content,
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

impl<'a> Outbound<'a> {
    /// A notice to the clinic's staff, not a customer's message (a WeCom
    /// robot post): `kind` names it in the rule and template fields, there
    /// is no address, and it is always a first attempt.
    pub fn staff_notice(
        kind: &'a str,
        content: &'a Content,
        nobody: &'a Recipient,
        now: DateTime<Utc>,
    ) -> Outbound<'a> {
        Outbound {
            id: 0,
            channel: Channel::Wechat,
            rule_id: kind,
            template: kind,
            content,
            recipient: nobody,
            address: "",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now,
        }
    }
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
    /// The provider refused the sender itself, not the message: its
    /// credentials (a wrong key or signature) or its account (suspended,
    /// out of balance). Every message would fail the same way, so the
    /// dispatcher pauses the sender: the message waits, no attempt used,
    /// and one probe goes out later. `code` is the provider's
    /// (`AuthFailure.SignatureFailure`, `isv.AMOUNT_NOT_ENOUGH`, `20003`).
    Refused { code: String, error: String },
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

    /// Called after each dispatch pass's rounds, even when nothing was due,
    /// for work a sender batches over a round or owes from an earlier one
    /// (e.g. one notice to staff about all the call tasks it created, tried
    /// again until it goes through).
    async fn after_round(&self, now: DateTime<Utc>) {
        let _ = now;
    }

    /// The provider's own rate limit, used when `recall.toml` sets none
    /// (e.g. the WeCom group robot takes 20 messages a minute).
    fn default_rate_limit(&self) -> Option<RateLimit> {
        None
    }

    /// Which of a customer's addresses this sender sends to on `channel`.
    /// The dispatcher reads it before sending: a customer without it is
    /// suppressed or falls back, the same way on every channel, and
    /// [`Outbound::address`] is always this address. Senders that take the
    /// channel's usual address keep the default.
    fn address_kind(&self, channel: Channel) -> AddressKind {
        AddressKind::for_channel(channel)
    }
}

/// Which of a customer's addresses a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// The mobile number (SMS, phone calls).
    Phone,
    Email,
    /// Either WeChat id, the WeCom `external_userid` first: for senders that
    /// take any (the `log` sender).
    AnyWechat,
    /// The WeCom `external_userid` only (the `wecom` sender).
    WecomExternalUserid,
    /// The Official Account `openid` only (the `wechat_official` sender).
    WechatOpenid,
    /// No customer address at all: the message goes to staff (a WeCom
    /// group robot).
    Unaddressed,
}

impl AddressKind {
    /// The usual address of a channel.
    pub fn for_channel(channel: Channel) -> AddressKind {
        match channel {
            Channel::Sms | Channel::Phone => AddressKind::Phone,
            Channel::Email => AddressKind::Email,
            Channel::Wechat => AddressKind::AnyWechat,
        }
    }

    /// The recipient's address of this kind, if they have one (`""` for
    /// [`AddressKind::Unaddressed`]).
    pub fn of(self, recipient: &Recipient) -> Option<&str> {
        let value = match self {
            AddressKind::Phone => recipient.phone.as_deref(),
            AddressKind::Email => recipient.email.as_deref(),
            AddressKind::AnyWechat => recipient
                .wecom_external_userid
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .or(recipient.wechat_openid.as_deref()),
            AddressKind::WecomExternalUserid => recipient.wecom_external_userid.as_deref(),
            AddressKind::WechatOpenid => recipient.wechat_openid.as_deref(),
            AddressKind::Unaddressed => return Some(""),
        };
        value.map(str::trim).filter(|v| !v.is_empty())
    }

    /// Why a recipient without it cannot be sent to, for the outreach log.
    pub fn missing(self) -> String {
        let why = match self {
            AddressKind::Phone => t!("reason.no_address.phone"),
            AddressKind::Email => t!("reason.no_address.email"),
            AddressKind::AnyWechat => t!("reason.no_address.wechat"),
            AddressKind::WecomExternalUserid => t!("reason.no_address.wecom"),
            AddressKind::WechatOpenid => t!("reason.no_address.official"),
            AddressKind::Unaddressed => return String::new(),
        };
        stored(why)
    }
}
