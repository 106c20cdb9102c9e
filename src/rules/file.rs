//! A rule file as written: serde structs with positions, nothing validated.
//! [`super::load`] turns these into [`super::Rule`]s or diagnostics.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

/// One `rules/*.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `[[rule]]` tables, in file order.
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
}

/// One `[[rule]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique across all rule files; the outreach log and reports name rules by it.
    pub id: Spanned<String>,
    /// What the rule is for, in the clinic's words.
    #[serde(default)]
    pub description: String,
    /// The pool or pools the rule watches: `"warning"` or `["warning", "maintenance"]`.
    pub from: Spanned<Pools>,
    /// The pool the rule moves customers to; omit for rules that only send.
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    /// Higher wins when several rules hold for one customer.
    #[serde(default)]
    pub priority: i64,
    /// The condition, in CEL over the customer facts.
    pub when: Spanned<String>,
    /// The rule's actions send to a customer at most once per this long,
    /// whatever the moves, e.g. "30d" (whole days). A rule that only sends
    /// fires again after it within a pool stay; without it, once per stay.
    #[serde(default)]
    pub cooldown: Option<Spanned<String>>,
    /// The older spelling of `cooldown`: `cooldown_days = 30` is
    /// `cooldown = "30d"`.
    #[serde(default)]
    pub cooldown_days: Option<Spanned<i64>>,
    /// Share of the customers the rule fires for that are kept as a control
    /// group (0 to 0.5, e.g. 0.1): they move like the others but are sent
    /// nothing, so the report can tell what the messages changed.
    #[serde(default)]
    pub holdout: Option<Spanned<f64>>,
    /// Days after a contact within which a visit or purchase counts as this
    /// rule's recall (default 30).
    #[serde(default)]
    pub attribution_days: Option<Spanned<i64>>,
    /// `false` keeps the rule in the file without running it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `[[rule.action]]` tables: what to send when the rule fires.
    #[serde(default)]
    pub action: Vec<Spanned<RawAction>>,
}

fn yes() -> bool {
    true
}

/// `from` may be one pool or a list of pools.
#[derive(Debug)]
pub enum Pools {
    /// `from = "warning"`: its place is the place of the whole value.
    One(String),
    Many(Vec<Spanned<String>>),
}

impl Pools {
    /// Each pool name with its place in the file, given the place of the value.
    pub fn items(&self, value_span: Range<usize>) -> Vec<Spanned<String>> {
        match self {
            Pools::One(one) => vec![Spanned::new(value_span, one.clone())],
            Pools::Many(many) => many.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Pools {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PoolsVisitor;

        impl<'de> Visitor<'de> for PoolsVisitor {
            type Value = Pools;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"a pool such as "warning", or a list such as ["warning", "maintenance"]"#,
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Pools, E> {
                Ok(Pools::One(value.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pools, A::Error> {
                let mut pools = Vec::new();
                while let Some(pool) = seq.next_element::<Spanned<String>>()? {
                    pools.push(pool);
                }
                Ok(Pools::Many(pools))
            }
        }

        deserializer.deserialize_any(PoolsVisitor)
    }
}

/// One `[[rule.action]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// `sms`, `phone`, `wechat` or `email`.
    pub channel: Spanned<String>,
    /// A template name under `templates/<channel>/`, without extension.
    pub template: Spanned<String>,
    /// Wait this long after the tick before the message is due, e.g. "2h", "3d".
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    /// A message still unsent this long after it was due (held by a
    /// frequency cap, quiet hours, an outage) expires instead of going out
    /// late with a stale offer, e.g. "14d". Without it a message waits as
    /// long as it must.
    #[serde(default)]
    pub expires_after: Option<Spanned<String>>,
    /// Phone only: who makes the call. `"advisor"`: the customer's own
    /// advisor (专属顾问), or the round robin when they have none or the
    /// advisor cannot take it. Without it: the round robin.
    #[serde(default)]
    pub assign: Option<Spanned<String>>,
    /// What becomes of the message if, when it is due, the customer is no
    /// longer where it was queued (moved to another pool, or visited since):
    /// `"cancel"` (status `stale`, never sent) or `"send"`. Default: cancel
    /// for sms, wechat and email (marketing), send for phone (a call task is
    /// service: staff see the customer's news before they call).
    #[serde(default)]
    pub stale: Option<Spanned<String>>,
}
