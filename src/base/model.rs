//! The vocabulary every other module shares: the five pools, the four
//! channels, follow-up results and outreach statuses.
//!
//! These are closed sets. Rule files, the database and the CLI all spell them
//! with the ids below; `FromStr` is the one place those spellings are parsed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::base::i18n::{Text, t};

/// Defines a closed, string-spelled enum with `as_str`, `ALL`, `Display` and `FromStr`.
macro_rules! spelled_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The id used in rule files, the database and the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// All ids, for error messages and suggestions.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: stringify!($name),
                        given: s.to_string(),
                        known: Self::names(),
                    }),
                }
            }
        }
    };
}

/// A name that is not one of a closed set's ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{given}` (known: {})", known.join(", "))]
pub struct UnknownName {
    pub kind: &'static str,
    pub given: String,
    pub known: Vec<&'static str>,
}

spelled_enum! {
    /// The pool a customer is in (seed 002). Every customer is in exactly one.
    Pool {
        /// 新客池: first visit, including people who came but have not bought.
        New => "new",
        /// 顾客池: has bought, stays active, follow-ups go smoothly.
        Customer => "customer",
        /// 预警池: follow-ups no longer go smoothly; a tendency to churn.
        Warning => "warning",
        /// 维护池: at-risk customers under special care, and where recalled customers land.
        Maintenance => "maintenance",
        /// 流失池: confirmed lost after intervention.
        Churned => "churned",
    }
}

impl Default for Pool {
    /// Where every customer starts.
    fn default() -> Self {
        Pool::New
    }
}

impl Pool {
    /// The pool's name for people: its id in English, in Chinese as
    /// clinics say it (预警池).
    pub fn name(self) -> Text {
        match self {
            Pool::New => t!("pool.new"),
            Pool::Customer => t!("pool.customer"),
            Pool::Warning => t!("pool.warning"),
            Pool::Maintenance => t!("pool.maintenance"),
            Pool::Churned => t!("pool.churned"),
        }
    }
}

spelled_enum! {
    /// The way a message reaches a customer. Which provider carries it is the
    /// sender's business (`[channels.<id>] sender = ...` in `recall.toml`).
    Channel {
        /// 短信: high delivery, high cost, needs an approved template.
        Sms => "sms",
        /// 电话: a call task for a person at the clinic, who records the outcome.
        Phone => "phone",
        /// 微信: high open rate, low cost, backfires when pushed too often.
        Wechat => "wechat",
        /// 邮件: low cost, little used in China.
        Email => "email",
    }
}

impl Channel {
    /// The channel's name for people: its id in English, 短信 in Chinese.
    pub fn name(self) -> Text {
        match self {
            Channel::Sms => t!("channel.sms"),
            Channel::Phone => t!("channel.phone"),
            Channel::Wechat => t!("channel.wechat"),
            Channel::Email => t!("channel.email"),
        }
    }
}

spelled_enum! {
    /// What a clinic's follow-up (回访) achieved.
    FollowupResult {
        /// 跟进顺畅
        Smooth => "smooth",
        /// 跟进不顺畅
        NotSmooth => "not_smooth",
        /// 联系不上
        Unreachable => "unreachable",
        /// 拒绝
        Refused => "refused",
    }
}

spelled_enum! {
    /// Where a message in the outbox stands.
    OutreachStatus {
        /// Waiting for its due time or for a dispatcher.
        Queued => "queued",
        /// Claimed by a dispatcher; the provider may or may not have it yet.
        Sending => "sending",
        /// Accepted by the provider, waiting for a person to act (a WeCom
        /// message staff must confirm, a call task); polled until it settles.
        Awaiting => "awaiting",
        /// The sender accepted it and returned a provider id.
        Sent => "sent",
        /// Permanently failed, or out of attempts; `last_error` says why.
        Failed => "failed",
        /// Never sent on purpose (no consent, do-not-contact, no address); `last_error` says why.
        Suppressed => "suppressed",
        /// The provider reported that the recipient opted out of this channel.
        OptedOut => "opted_out",
        /// Kept back on purpose: the customer is in the rule's control group.
        HeldOut => "held_out",
        /// Taken out of the queue before any provider had it: by a person
        /// (`recall cancel`), or never sendable (a message onboarding
        /// replayed); `last_error` says who and why.
        Cancelled => "cancelled",
        /// Still unsent when its action's `expires_after` ran out (held by
        /// a cap, quiet hours, an outage): never sent late.
        Expired => "expired",
        /// Not sent because the reason its rule fired no longer held when it
        /// was due: the customer moved to another pool or visited since it
        /// was queued (the action's `stale = "cancel"`); `last_error` says which.
        Stale => "stale",
    }
}

impl OutreachStatus {
    /// The status's name for people: its id in English, 排队中 in Chinese.
    pub fn name(self) -> Text {
        match self {
            OutreachStatus::Queued => t!("outreach.queued"),
            OutreachStatus::Sending => t!("outreach.sending"),
            OutreachStatus::Awaiting => t!("outreach.awaiting"),
            OutreachStatus::Sent => t!("outreach.sent"),
            OutreachStatus::Failed => t!("outreach.failed"),
            OutreachStatus::Suppressed => t!("outreach.suppressed"),
            OutreachStatus::OptedOut => t!("outreach.opted_out"),
            OutreachStatus::HeldOut => t!("outreach.held_out"),
            OutreachStatus::Cancelled => t!("outreach.cancelled"),
            OutreachStatus::Expired => t!("outreach.expired"),
            OutreachStatus::Stale => t!("outreach.stale"),
        }
    }

    /// Whether a message in this status still counts as a contact: it went
    /// out, or it is on its way.
    pub fn is_contact(self) -> bool {
        matches!(
            self,
            OutreachStatus::Queued
                | OutreachStatus::Sending
                | OutreachStatus::Awaiting
                | OutreachStatus::Sent
        )
    }
}

spelled_enum! {
    /// A customer's gender as the clinic recorded it.
    Gender {
        Female => "female",
        Male => "male",
        Other => "other",
    }
}

/// The words clinics write for a value of a closed set besides its id
/// (Chinese first): what an import accepts in a cell, and what a rule
/// condition may compare the fact with (`gender == "女"` means
/// `gender == "female"`). Matched without case and surrounding spaces.
pub trait Words: Sized + Copy + 'static {
    /// Every value with the words that mean it, its id among them.
    const WORDS: &'static [(Self, &'static [&'static str])];

    /// The value a word means, if any.
    fn from_word(text: &str) -> Option<Self> {
        let text = text.trim().to_lowercase();
        Self::WORDS
            .iter()
            .find(|(_, words)| words.contains(&text.as_str()))
            .map(|(value, _)| *value)
    }

    /// Every accepted word, for hints.
    fn all_words() -> Vec<&'static str> {
        Self::WORDS
            .iter()
            .flat_map(|(_, words)| words.iter().copied())
            .collect()
    }
}

impl Words for Gender {
    const WORDS: &'static [(Gender, &'static [&'static str])] = &[
        (Gender::Female, &["女", "female", "f"]),
        (Gender::Male, &["男", "male", "m"]),
        (Gender::Other, &["其他", "other"]),
    ];
}

impl Words for FollowupResult {
    const WORDS: &'static [(FollowupResult, &'static [&'static str])] = &[
        (
            FollowupResult::Smooth,
            &["smooth", "顺畅", "正常", "跟进顺畅"],
        ),
        (
            FollowupResult::NotSmooth,
            &["not_smooth", "不顺畅", "跟进不顺畅"],
        ),
        (
            FollowupResult::Unreachable,
            &["unreachable", "未接通", "联系不上", "无人接听"],
        ),
        (FollowupResult::Refused, &["refused", "拒绝", "拒接"]),
    ];
}

impl Words for Pool {
    const WORDS: &'static [(Pool, &'static [&'static str])] = &[
        (Pool::New, &["new", "新客池"]),
        (Pool::Customer, &["customer", "顾客池"]),
        (Pool::Warning, &["warning", "预警池"]),
        (Pool::Maintenance, &["maintenance", "维护池"]),
        (Pool::Churned, &["churned", "流失池"]),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_round_trip_through_their_ids() {
        for pool in Pool::ALL {
            assert_eq!(pool.as_str().parse::<Pool>().unwrap(), *pool);
        }
    }

    #[test]
    fn unknown_pool_lists_the_known_ones() {
        let err = "warn".parse::<Pool>().unwrap_err();
        assert_eq!(err.given, "warn");
        assert!(err.to_string().contains("warning"));
    }

    #[test]
    fn only_pending_and_sent_messages_count_as_contacts() {
        let contacts: Vec<_> = OutreachStatus::ALL
            .iter()
            .filter(|s| s.is_contact())
            .collect();
        assert_eq!(
            contacts,
            [
                &OutreachStatus::Queued,
                &OutreachStatus::Sending,
                &OutreachStatus::Awaiting,
                &OutreachStatus::Sent
            ]
        );
    }

    #[test]
    fn words_mean_their_values_and_every_id_is_a_word() {
        assert_eq!(Gender::from_word(" 女 "), Some(Gender::Female));
        assert_eq!(Gender::from_word("Female"), Some(Gender::Female));
        assert_eq!(
            FollowupResult::from_word("不顺畅"),
            Some(FollowupResult::NotSmooth)
        );
        assert_eq!(Pool::from_word("预警池"), Some(Pool::Warning));
        assert_eq!(Gender::from_word("woman"), None);
        for gender in Gender::ALL {
            assert_eq!(Gender::from_word(gender.as_str()), Some(*gender));
        }
        for result in FollowupResult::ALL {
            assert_eq!(FollowupResult::from_word(result.as_str()), Some(*result));
        }
        for pool in Pool::ALL {
            assert_eq!(Pool::from_word(pool.as_str()), Some(*pool));
        }
    }
}
