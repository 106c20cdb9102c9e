//! The outbox side of the outreach table: claiming due messages for the
//! dispatcher, the contact counts behind frequency caps, fallbacks, polling
//! messages that await a person, and recording what became of each.
//!
//! A message is claimed (`queued` → `sending`, attempts + 1) in one
//! transaction before anything is sent, and its result is written as soon as
//! the sender answers. Result updates only apply to a message still in the
//! state they expect, so a late or repeated answer cannot overwrite a final
//! status.
//!
//! Every error, reason and note written on a message passes through
//! [`redact`] here, whoever wrote it: providers echo secrets, and this is
//! the one door to `last_error`.

use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::content::Content;
use crate::base::i18n::{Arg, t};
use crate::base::model::{Channel, OutreachStatus, Pool};
use crate::base::reason::stored;
use crate::base::redact::redact;

/// Who a message goes to, with every address the clinic has for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    pub customer_id: i64,
    pub external_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub wechat_openid: Option<String>,
    pub wecom_external_userid: Option<String>,
}

/// A message claimed for sending (or awaiting, for polling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub rule_id: String,
    pub channel: Channel,
    pub template: String,
    pub content: Content,
    /// The error of the previous attempt, if any.
    pub last_error: Option<String>,
    /// The previous attempt may have reached the provider (`last_error`
    /// carries [`IN_DOUBT`]): a sender that can ask its provider asks before
    /// sending again.
    pub in_doubt: bool,
    /// Including this one; deferrals and provider Retry-After waits are not
    /// counted.
    pub attempts: i64,
    /// When the first retryable failure happened, if one has: the start of
    /// the retry budget.
    pub retrying_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub due_at: Timestamp,
    /// Set once a provider has it (for polling).
    pub provider_id: Option<String>,
    /// Whether the tick rendered a fallback for another channel.
    pub has_fallback: bool,
    pub recipient: Recipient,
    /// Whether the customer consented to this message's channel.
    pub consent: bool,
    pub do_not_contact: bool,
}

const CLAIMED_COLUMNS: &str =
    "o.id, o.rule_id, o.channel, o.template, o.subject, o.content, o.content_html,
    o.attempts, o.created_at, o.due_at,
    c.id, c.external_id, c.name, c.phone, c.email, c.wechat_openid, c.wecom_external_userid,
    c.do_not_contact, c.consent_sms, c.consent_phone, c.consent_wechat, c.consent_email,
    o.params, o.last_error, o.provider_id, o.fallback IS NOT NULL, o.retrying_since";

fn claimed_row(r: &Row<'_>) -> rusqlite::Result<Claimed> {
    let channel: String = r.get(2)?;
    let channel: Channel = channel.parse().unwrap_or(Channel::Sms);
    let consents = [r.get::<_, bool>(18)?, r.get(19)?, r.get(20)?, r.get(21)?];
    let last_error: Option<String> = r.get(23)?;
    let consent = match channel {
        Channel::Sms => consents[0],
        Channel::Phone => consents[1],
        Channel::Wechat => consents[2],
        Channel::Email => consents[3],
    };
    Ok(Claimed {
        id: r.get(0)?,
        rule_id: r.get(1)?,
        channel,
        template: r.get(3)?,
        content: Content {
            subject: r.get(4)?,
            body: r.get(5)?,
            html: r.get(6)?,
            params: r.get(22)?,
        },
        in_doubt: is_in_doubt(last_error.as_deref()),
        last_error,
        attempts: r.get(7)?,
        retrying_since: r.get(26)?,
        created_at: r.get(8)?,
        due_at: r.get(9)?,
        provider_id: r.get(24)?,
        has_fallback: r.get(25)?,
        recipient: Recipient {
            customer_id: r.get(10)?,
            external_id: r.get(11)?,
            name: r.get(12)?,
            phone: r.get(13)?,
            email: r.get(14)?,
            wechat_openid: r.get(15)?,
            wecom_external_userid: r.get(16)?,
        },
        do_not_contact: r.get(17)?,
        consent,
    })
}

/// Starts the `last_error` of a message whose previous attempt may have
/// reached its provider without us learning the answer: the dispatcher died
/// while it was being sent ([`Store::requeue_interrupted`]), or the sender
/// lost the answer (a timeout after the request went out). It is the one
/// marker of that state, whoever set it; the next claim reads it as
/// [`Claimed::in_doubt`], and senders whose provider can be asked (Aliyun's
/// QuerySendDetails, Twilio's message list) ask before sending again.
/// Deferring a message keeps it. The start of `reason.in_doubt` in the
/// catalogue, as [`mark_in_doubt`] writes it.
pub const IN_DOUBT: &str = "[in doubt] ";

/// What a message that expired unsent carries in `last_error`.
pub const EXPIRED: &str =
    "expired: still unsent when its action's expires_after ran out; never sent";

/// What crash recovery writes on a message left in `sending`.
fn interrupted() -> String {
    mark_in_doubt(&stored(t!("reason.interrupted")))
}

/// Whether an outreach's `last_error` says its previous attempt is in doubt.
pub fn is_in_doubt(last_error: Option<&str>) -> bool {
    last_error.is_some_and(|e| e.starts_with(IN_DOUBT))
}

/// An error marked with [`IN_DOUBT`] (once).
pub fn mark_in_doubt(error: &str) -> String {
    if error.starts_with(IN_DOUBT) {
        error.to_string()
    } else {
        stored(t!("reason.in_doubt", error))
    }
}

/// A message rendered for a fallback channel, stored on the message as
/// JSON (`outreach.fallback`): the channel, then the content's fields
/// beside it, `{"channel":"sms","subject":null,"content":"…","html":null,
/// "params":null}`, as every version has written it. Rows written by older
/// versions must stay readable: change the shape only with a migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fallback {
    pub channel: Channel,
    #[serde(flatten)]
    pub content: Content,
}

/// The consent column of a channel.
fn consent_column(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "consent_sms",
        Channel::Phone => "consent_phone",
        Channel::Wechat => "consent_wechat",
        Channel::Email => "consent_email",
    }
}

/// `?3, ?4, ...` for a list bound after `first - 1` other parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks `stale` the queued messages due at `now` on `channels` whose
/// action cancels them when stale and whose customer, since the message
/// was queued, moved to another pool or visited (came back): the reason the
/// rule fired no longer holds. Called inside the claim's transaction, so a
/// message is claimed or stale, never both. Returns how many.
fn mark_stale(
    tx: &rusqlite::Transaction<'_>,
    now: Timestamp,
    channels: &[Channel],
) -> Result<usize> {
    let found: Vec<(i64, String, String, bool)> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT o.id, o.pool, p.pool,
                EXISTS (SELECT 1 FROM visits v WHERE v.customer_id = o.customer_id
                        AND v.at > o.created_at AND v.at <= ?1)
             FROM outreach o JOIN customer_pools p ON p.customer_id = o.customer_id
             WHERE o.status = 'queued' AND o.cancel_if_stale = 1 AND o.due_at <= ?1
               AND o.channel IN ({})",
            placeholders(2, channels.len())
        ))?;
        let mut values: Vec<rusqlite::types::Value> = vec![now.into()];
        values.extend(channels.iter().map(|c| c.as_str().to_string().into()));
        stmt.query_map(params_from_iter(values), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut update = tx.prepare_cached(
        "UPDATE outreach SET status = 'stale', last_error = ?2, updated_at = ?3
         WHERE id = ?1 AND status = 'queued'",
    )?;
    let mut stale = 0;
    for (id, queued, current, visited) in found {
        // The CHECK on `pool` keeps these pools; a name is shown as it is.
        let pool = |name: &str| match name.parse::<Pool>() {
            Ok(pool) => Arg::Text(pool.name()),
            Err(_) => Arg::Plain(name.to_string()),
        };
        let reason = if queued != current {
            t!(
                "reason.stale.moved",
                queued = pool(&queued),
                now = pool(&current)
            )
        } else if visited {
            t!("reason.stale.visited")
        } else {
            continue;
        };
        stale += update.execute(params![id, stored(reason), now])?;
    }
    Ok(stale)
}

impl Store {
    /// Puts messages left in `sending` by a dispatcher that died back in the
    /// queue, marked in doubt ([`interrupted`]): the provider may have taken
    /// them before the crash, so senders that can ask do so before sending
    /// again. Call once when a dispatcher starts, holding the dispatch lock.
    /// Returns how many were requeued.
    pub fn requeue_interrupted(&self, now: Timestamp) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outreach SET status = 'queued', updated_at = ?1, last_error = ?2
             WHERE status = 'sending'",
            params![now, interrupted()],
        )?)
    }

    /// Puts the given messages still in `sending` back in the queue, marked
    /// in doubt like [`Store::requeue_interrupted`] does: a dispatch round
    /// whose outcomes could not be written may have handed them to their
    /// provider already.
    pub fn requeue_in_doubt(&mut self, ids: &[i64], now: Timestamp) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut requeued = 0;
        {
            let mut update = tx.prepare_cached(
                "UPDATE outreach SET status = 'queued', updated_at = ?2, last_error = ?3
                 WHERE id = ?1 AND status = 'sending'",
            )?;
            let interrupted = interrupted();
            for id in ids {
                requeued += update.execute(params![id, now, interrupted])?;
            }
        }
        tx.commit()?;
        Ok(requeued)
    }

    /// Claims up to `limit` messages due at `now` on the given channels,
    /// oldest due first. Queued messages past their `expires_at` (on any
    /// channel) become `expired` first, and due ones on these channels that
    /// went stale ([`mark_stale`]) become `stale`, in the same transaction.
    pub fn claim_due(
        &mut self,
        now: Timestamp,
        channels: &[Channel],
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Expired first, in the same transaction: a message is either
        // claimed before its expiry or expired, never both.
        tx.prepare_cached(
            "UPDATE outreach SET status = 'expired', last_error = ?2, updated_at = ?1
             WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= ?1",
        )?
        .execute(params![now, EXPIRED])?;
        mark_stale(&tx, now, channels)?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT id FROM outreach WHERE status = 'queued' AND due_at <= ?1 AND channel IN ({})
                 ORDER BY due_at, id LIMIT ?2",
                placeholders(3, channels.len())
            ))?;
            let mut values: Vec<rusqlite::types::Value> = vec![now.into(), i64::from(limit).into()];
            values.extend(channels.iter().map(|c| c.as_str().to_string().into()));
            stmt.query_map(params_from_iter(values), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut claimed = Vec::with_capacity(ids.len());
        {
            let mut update = tx.prepare_cached(
                "UPDATE outreach SET status = 'sending', attempts = attempts + 1, held = 0, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut select = tx.prepare_cached(&format!(
                "SELECT {CLAIMED_COLUMNS} FROM outreach o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?1"
            ))?;
            for id in ids {
                update.execute(params![id, now])?;
                claimed.push(select.query_row([id], claimed_row)?);
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// The earliest due time of a queued message on these channels.
    pub fn next_due(&self, channels: &[Channel]) -> Result<Option<Timestamp>> {
        if channels.is_empty() {
            return Ok(None);
        }
        Ok(self.conn.query_row(
            &format!(
                "SELECT min(due_at) FROM outreach WHERE status = 'queued' AND channel IN ({})",
                placeholders(1, channels.len())
            ),
            params_from_iter(channels.iter().map(|c| c.as_str())),
            |r| r.get(0),
        )?)
    }

    /// Messages handed to providers for a customer since `since` (on one
    /// channel, or all), with the earliest of their hand-over times: what a
    /// frequency cap counts.
    pub fn recent_contacts(
        &self,
        customer_id: i64,
        channel: Option<Channel>,
        since: Timestamp,
    ) -> Result<(i64, Option<Timestamp>)> {
        let channel = channel.map(Channel::as_str);
        Ok(self.conn.query_row(
            "SELECT count(*), min(sent_at) FROM outreach
             WHERE customer_id = ?1 AND status IN ('sent', 'awaiting') AND sent_at > ?2
               AND (?3 IS NULL OR channel = ?3)",
            params![customer_id, since, channel],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Every hand-over (sent or awaiting) to these customers since `since`:
    /// (customer, channel, sent_at). One query for a whole dispatch round's
    /// frequency caps.
    pub fn contacts_since(
        &self,
        customers: &[i64],
        since: Timestamp,
    ) -> Result<Vec<(i64, Channel, Timestamp)>> {
        let mut found = Vec::new();
        // SQLite binds at most 32766 parameters; rounds are far smaller.
        for chunk in customers.chunks(500) {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT customer_id, channel, sent_at FROM outreach
                 WHERE status IN ('sent', 'awaiting') AND sent_at > ?1 AND customer_id IN ({})",
                placeholders(2, chunk.len())
            ))?;
            let mut values: Vec<rusqlite::types::Value> = vec![since.into()];
            values.extend(chunk.iter().map(|c| (*c).into()));
            let rows = stmt.query_map(params_from_iter(values), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (customer, channel, at) = row?;
                if let Ok(channel) = channel.parse() {
                    found.push((customer, channel, at));
                }
            }
        }
        Ok(found)
    }

    /// The sender accepted the message.
    pub fn mark_sent(
        &self,
        id: i64,
        sender: &str,
        provider_id: &str,
        cost_milli: i64,
        now: Timestamp,
    ) -> Result<()> {
        write_sent(&self.conn, id, sender, provider_id, cost_milli, now)
    }

    /// Accepted by the provider, waiting for a person to act; polled later.
    pub fn mark_awaiting(
        &self,
        id: i64,
        sender: &str,
        provider_id: &str,
        cost_milli: i64,
        now: Timestamp,
    ) -> Result<()> {
        write_awaiting(&self.conn, id, sender, provider_id, cost_milli, now)
    }

    /// Not now, not a failure: back to the queue until `retry_at`, the
    /// attempt undone, the reason kept for the log (behind [`IN_DOUBT`] if
    /// the previous attempt was in doubt: waiting does not settle the doubt).
    pub fn mark_deferred(
        &self,
        id: i64,
        reason: &str,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        write_deferred(&self.conn, id, reason, retry_at, false, now)
    }

    /// Makes the messages the clinic's policy held back (quiet hours, a
    /// frequency cap) due at `now`, after a reload changed that policy: the
    /// next round judges them by the new one, and holds them again if it
    /// still says wait. Returns how many.
    pub fn release_held(&self, now: Timestamp) -> Result<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE outreach SET due_at = ?1, held = 0, updated_at = ?1
             WHERE held = 1 AND status = 'queued' AND due_at > ?1",
            )?
            .execute(params![now])?)
    }

    /// A retryable failure: back to the queue, due again at `retry_at`;
    /// `counted` false undoes the attempt (the provider said when to come
    /// back).
    pub fn mark_retry(
        &self,
        id: i64,
        sender: &str,
        error: &str,
        retry_at: Timestamp,
        counted: bool,
        now: Timestamp,
    ) -> Result<()> {
        write_retry(&self.conn, id, sender, error, retry_at, counted, now)
    }

    /// Puts `failed` messages back in the queue, due at `now`, with a fresh
    /// attempt count and retry budget (after an outage outlasted it), the
    /// error kept in the log. Only those on `channel` and failed at or after
    /// `since`, when given. Returns how many were requeued.
    pub fn requeue_failed(
        &mut self,
        channel: Option<Channel>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outreach SET status = 'queued', attempts = 0, retrying_since = NULL,
                due_at = ?1, updated_at = ?1,
                last_error = ?4 || coalesce(last_error, ?5)
             WHERE status = 'failed'
               AND (?2 IS NULL OR channel = ?2)
               AND (?3 IS NULL OR updated_at >= ?3)",
            params![
                now,
                channel.map(|c| c.as_str()),
                since,
                // The sentence up to its `{error}`, which SQL appends.
                stored(t!("reason.requeued_by_hand", error = "")),
                OutreachStatus::Failed.as_str()
            ],
        )?)
    }

    /// A permanent failure, or out of attempts (also for awaiting messages
    /// the provider says will not arrive).
    pub fn mark_failed(&self, id: i64, sender: &str, error: &str, now: Timestamp) -> Result<()> {
        write_failed(&self.conn, id, sender, error, now)
    }

    /// Not sent on purpose: no consent, do-not-contact, no address.
    pub fn mark_suppressed(&self, id: i64, reason: &str, now: Timestamp) -> Result<()> {
        write_suppressed(&self.conn, id, reason, now)
    }

    /// The provider says the recipient opted out: record it on the message
    /// and withdraw the customer's consent for the channel, in one transaction.
    pub fn mark_opted_out(
        &mut self,
        id: i64,
        sender: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        write_opted_out(&tx, id, sender, reason, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Gives claimed messages back to the queue untouched (the dispatcher is
    /// stopping and did not send them): status `queued`, the attempt undone.
    pub fn release(&mut self, ids: &[i64], now: Timestamp) -> Result<()> {
        let tx = self.conn.transaction()?;
        for id in ids {
            write_release(&tx, *id, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Switches a message that cannot go out on its channel to the fallback
    /// the tick rendered for it, if that channel is one of `routed`: same
    /// message, new channel, back in the queue now with a fresh attempt
    /// count. Returns the new channel, or `None` if there is no usable fallback.
    pub fn fall_back(
        &self,
        id: i64,
        why: &str,
        routed: &[Channel],
        now: Timestamp,
    ) -> Result<Option<Channel>> {
        write_fall_back(&self.conn, id, why, routed, now)
    }

    /// Messages awaiting a person whose last poll is older than `before`,
    /// oldest first, on the given channels.
    pub fn awaiting_to_poll(
        &self,
        before: Timestamp,
        channels: &[Channel],
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CLAIMED_COLUMNS} FROM outreach o JOIN customers c ON c.id = o.customer_id
             WHERE o.status = 'awaiting' AND coalesce(o.polled_at, 0) < ?1 AND o.channel IN ({})
             ORDER BY coalesce(o.polled_at, 0), o.id LIMIT ?2",
            placeholders(3, channels.len())
        ))?;
        let mut values: Vec<rusqlite::types::Value> = vec![before.into(), i64::from(limit).into()];
        values.extend(channels.iter().map(|c| c.as_str().to_string().into()));
        let rows = stmt.query_map(params_from_iter(values), claimed_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that an awaiting message was asked about and is still pending.
    pub fn mark_polled(&self, id: i64, note: Option<&str>, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET polled_at = ?2, last_error = coalesce(?3, last_error)
             WHERE id = ?1 AND status = 'awaiting'",
            params![id, now, note.map(redact)],
        )?;
        Ok(())
    }

    /// An awaiting message reached the customer (the provider says so).
    pub fn mark_delivered(&self, id: i64, now: Timestamp) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE outreach SET status = 'sent', polled_at = ?2, updated_at = ?2, last_error = NULL
             WHERE id = ?1 AND status = 'awaiting'",
            params![id, now],
        )?;
        if changed == 1 {
            self.record_outcome(id, "delivered", now, 0, "provider", "poll")?;
        }
        Ok(())
    }
}

/// Which queued messages `recall cancel` takes out; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelFilter {
    pub rule: Option<String>,
    pub channel: Option<Channel>,
    /// The clinic's customer id.
    pub customer: Option<String>,
    pub template: Option<String>,
}

/// A message `recall cancel` took out of the queue (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledRow {
    pub id: i64,
    pub customer: String,
    pub rule_id: String,
    pub channel: String,
    pub template: String,
    pub due_at: Timestamp,
}

/// What [`Store::cancel_queued`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cancelled {
    /// The queued messages that matched: cancelled, unless a dry run.
    pub rows: Vec<CancelledRow>,
    /// Messages that matched but a provider already has (`sending`,
    /// `awaiting`): left alone.
    pub handed_over: i64,
}

const CANCEL_WHERE: &str = "(?1 IS NULL OR o.rule_id = ?1) AND (?2 IS NULL OR o.channel = ?2)
    AND (?3 IS NULL OR c.external_id = ?3) AND (?4 IS NULL OR o.template = ?4)";

impl Store {
    /// Takes the queued messages that match `filter` out of the queue
    /// (`cancelled`, `note` saying who and why), in one transaction: the
    /// dispatcher claims only queued messages in its own, so each message
    /// is either claimed and sent or cancelled, never both. Nothing a
    /// provider has is touched. A dry run only reads.
    pub fn cancel_queued(
        &mut self,
        clinic_id: i64,
        filter: &CancelFilter,
        note: &str,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<Cancelled> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let bound = params![
            filter.rule,
            filter.channel.map(Channel::as_str),
            filter.customer,
            filter.template,
            clinic_id
        ];
        let rows: Vec<CancelledRow> = tx
            .prepare(&format!(
                "SELECT o.id, c.external_id, o.rule_id, o.channel, o.template, o.due_at
                 FROM outreach o JOIN customers c ON c.id = o.customer_id
                 WHERE o.status = 'queued' AND c.clinic_id = ?5 AND {CANCEL_WHERE}
                 ORDER BY o.due_at, o.id"
            ))?
            .query_map(bound, |r| {
                Ok(CancelledRow {
                    id: r.get(0)?,
                    customer: r.get(1)?,
                    rule_id: r.get(2)?,
                    channel: r.get(3)?,
                    template: r.get(4)?,
                    due_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let handed_over = tx.query_row(
            &format!(
                "SELECT count(*) FROM outreach o JOIN customers c ON c.id = o.customer_id
                 WHERE o.status IN ('sending', 'awaiting') AND c.clinic_id = ?5 AND {CANCEL_WHERE}"
            ),
            bound,
            |r| r.get(0),
        )?;
        if !dry_run {
            let mut cancel = tx.prepare_cached(
                "UPDATE outreach SET status = 'cancelled', last_error = ?2, updated_at = ?3
                 WHERE id = ?1 AND status = 'queued'",
            )?;
            for row in &rows {
                cancel.execute(params![row.id, redact(note), now])?;
            }
        }
        tx.commit()?;
        Ok(Cancelled { rows, handed_over })
    }
}

/// What became of one claimed message, to be written with others in one
/// transaction by [`Store::settle`]. Every write keeps the guard of its
/// single-message twin (`WHERE status = 'sending'` ...), so a late or
/// repeated answer still cannot overwrite a final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Sent {
        id: i64,
        sender: String,
        provider_id: String,
        cost_milli: i64,
        at: Timestamp,
    },
    Awaiting {
        id: i64,
        sender: String,
        provider_id: String,
        cost_milli: i64,
        at: Timestamp,
    },
    Deferred {
        id: i64,
        reason: String,
        until: Timestamp,
        /// Held by the clinic's policy (quiet hours, a frequency cap), which
        /// a reload may change: [`Store::release_held`] makes it due again.
        held: bool,
        at: Timestamp,
    },
    Retry {
        id: i64,
        sender: String,
        error: String,
        retry_at: Timestamp,
        /// False when the provider said when to come back (Retry-After,
        /// throttling): the attempt is undone.
        counted: bool,
        at: Timestamp,
    },
    Failed {
        id: i64,
        sender: String,
        error: String,
        at: Timestamp,
    },
    Suppressed {
        id: i64,
        reason: String,
        at: Timestamp,
    },
    OptedOut {
        id: i64,
        sender: String,
        reason: String,
        at: Timestamp,
    },
    /// Switch to the fallback if it is usable (see [`Store::fall_back`]);
    /// otherwise write `otherwise`.
    FallBack {
        id: i64,
        note: String,
        routed: Vec<Channel>,
        at: Timestamp,
        otherwise: Box<Settle>,
    },
    /// Claimed but not sent (stopping): back to the queue, attempt undone.
    Release { id: i64, at: Timestamp },
}

impl Settle {
    /// The outreach row it writes.
    pub fn id(&self) -> i64 {
        match self {
            Settle::Sent { id, .. }
            | Settle::Awaiting { id, .. }
            | Settle::Deferred { id, .. }
            | Settle::Retry { id, .. }
            | Settle::Failed { id, .. }
            | Settle::Suppressed { id, .. }
            | Settle::OptedOut { id, .. }
            | Settle::FallBack { id, .. }
            | Settle::Release { id, .. } => *id,
        }
    }
}

/// What [`Store::settle`] did with one [`Settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Written as asked.
    Written,
    /// A fallback was taken: the message is queued on this channel.
    FellBack(Channel),
    /// The fallback was not usable; `otherwise` was written.
    NoFallback,
}

impl Store {
    /// Writes the outcomes of several messages in one transaction (group
    /// commit): one fsync for the lot. When it returns, every one of them is
    /// durable; none is when it fails.
    pub fn settle(&mut self, outcomes: &[Settle]) -> Result<Vec<Settled>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut done = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            done.push(settle_one(&tx, outcome)?);
        }
        tx.commit()?;
        Ok(done)
    }
}

fn settle_one(conn: &rusqlite::Connection, outcome: &Settle) -> Result<Settled> {
    match outcome {
        Settle::Sent {
            id,
            sender,
            provider_id,
            cost_milli,
            at,
        } => write_sent(conn, *id, sender, provider_id, *cost_milli, *at)?,
        Settle::Awaiting {
            id,
            sender,
            provider_id,
            cost_milli,
            at,
        } => write_awaiting(conn, *id, sender, provider_id, *cost_milli, *at)?,
        Settle::Deferred {
            id,
            reason,
            until,
            held,
            at,
        } => write_deferred(conn, *id, reason, *until, *held, *at)?,
        Settle::Retry {
            id,
            sender,
            error,
            retry_at,
            counted,
            at,
        } => write_retry(conn, *id, sender, error, *retry_at, *counted, *at)?,
        Settle::Failed {
            id,
            sender,
            error,
            at,
        } => write_failed(conn, *id, sender, error, *at)?,
        Settle::Suppressed { id, reason, at } => write_suppressed(conn, *id, reason, *at)?,
        Settle::OptedOut {
            id,
            sender,
            reason,
            at,
        } => write_opted_out(conn, *id, sender, reason, *at)?,
        Settle::FallBack {
            id,
            note,
            routed,
            at,
            otherwise,
        } => {
            return match write_fall_back(conn, *id, note, routed, *at)? {
                Some(channel) => Ok(Settled::FellBack(channel)),
                None => {
                    settle_one(conn, otherwise)?;
                    Ok(Settled::NoFallback)
                }
            };
        }
        Settle::Release { id, at } => write_release(conn, *id, *at)?,
    }
    Ok(Settled::Written)
}

fn write_sent(
    conn: &rusqlite::Connection,
    id: i64,
    sender: &str,
    provider_id: &str,
    cost_milli: i64,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'sent', sender = ?2, provider_id = ?3, sent_at = ?4,
            updated_at = ?4, last_error = NULL, cost_milli = ?5
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, sender, provider_id, now, cost_milli])?;
    Ok(())
}

fn write_awaiting(
    conn: &rusqlite::Connection,
    id: i64,
    sender: &str,
    provider_id: &str,
    cost_milli: i64,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'awaiting', sender = ?2, provider_id = ?3, sent_at = ?4,
            updated_at = ?4, last_error = NULL, cost_milli = ?5, polled_at = ?4
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, sender, provider_id, now, cost_milli])?;
    Ok(())
}

fn write_deferred(
    conn: &rusqlite::Connection,
    id: i64,
    reason: &str,
    retry_at: Timestamp,
    held: bool,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'queued', attempts = max(attempts - 1, 0),
            last_error = CASE WHEN instr(coalesce(last_error, ''), ?5) = 1 THEN ?5 || ?2 ELSE ?2 END,
            due_at = ?3, updated_at = ?4, held = ?6
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, redact(reason), retry_at, now, IN_DOUBT, held])?;
    Ok(())
}

fn write_retry(
    conn: &rusqlite::Connection,
    id: i64,
    sender: &str,
    error: &str,
    retry_at: Timestamp,
    counted: bool,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'queued', sender = ?2, last_error = ?3, due_at = ?4, updated_at = ?5,
            attempts = CASE WHEN ?6 THEN attempts ELSE max(attempts - 1, 0) END,
            retrying_since = coalesce(retrying_since, ?5)
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, sender, redact(error), retry_at, now, counted])?;
    Ok(())
}

fn write_failed(
    conn: &rusqlite::Connection,
    id: i64,
    sender: &str,
    error: &str,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'failed', sender = ?2, last_error = ?3, updated_at = ?4
         WHERE id = ?1 AND status IN ('sending', 'awaiting')",
    )?
    .execute(params![id, sender, redact(error), now])?;
    Ok(())
}

fn write_suppressed(
    conn: &rusqlite::Connection,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'suppressed', last_error = ?2, updated_at = ?3
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, redact(reason), now])?;
    Ok(())
}

/// Records the opt-out on the message and withdraws the customer's consent
/// for the channel. The caller provides the transaction.
fn write_opted_out(
    conn: &rusqlite::Connection,
    id: i64,
    sender: &str,
    reason: &str,
    now: Timestamp,
) -> Result<()> {
    let target: Option<(i64, String)> = conn
        .query_row(
            "SELECT customer_id, channel FROM outreach WHERE id = ?1 AND status IN ('sending', 'awaiting')",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((customer, channel)) = target {
        conn.execute(
            "UPDATE outreach SET status = 'opted_out', sender = ?2, last_error = ?3, updated_at = ?4
             WHERE id = ?1",
            params![id, sender, redact(reason), now],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO outcomes (outreach_id, kind, at, amount_cents, source, ref)
             VALUES (?1, 'opted_out', ?2, 0, 'provider', ?3)",
            params![id, now, format!("sender:{sender}")],
        )?;
        if let Ok(channel) = channel.parse::<Channel>() {
            conn.execute(
                &format!(
                    "UPDATE customers SET {} = 0, updated_at = ?2 WHERE id = ?1",
                    consent_column(channel)
                ),
                params![customer, now],
            )?;
        }
    }
    Ok(())
}

fn write_release(conn: &rusqlite::Connection, id: i64, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outreach SET status = 'queued', attempts = max(attempts - 1, 0), updated_at = ?2
         WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, now])?;
    Ok(())
}

fn write_fall_back(
    conn: &rusqlite::Connection,
    id: i64,
    why: &str,
    routed: &[Channel],
    now: Timestamp,
) -> Result<Option<Channel>> {
    let stored: Option<Option<String>> = conn
        .query_row(
            "SELECT fallback FROM outreach WHERE id = ?1 AND status IN ('sending', 'awaiting')",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(fallback) = stored
        .flatten()
        .and_then(|json| serde_json::from_str::<Fallback>(&json).ok())
    else {
        return Ok(None);
    };
    if !routed.contains(&fallback.channel) {
        return Ok(None);
    }
    conn.execute(
        "UPDATE outreach SET channel = ?2, subject = ?3, content = ?4, content_html = ?5, params = ?6,
            fallback = NULL, status = 'queued', attempts = 0, retrying_since = NULL,
            due_at = ?7, updated_at = ?7,
            last_error = ?8, sender = NULL, provider_id = NULL, sent_at = NULL
         WHERE id = ?1",
        params![
            id,
            fallback.channel.as_str(),
            fallback.content.subject,
            fallback.content.body,
            fallback.content.html,
            fallback.content.params,
            now,
            redact(why)
        ],
    )?;
    Ok(Some(fallback.channel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ingest::NewCustomer;
    use crate::testing::{T0, outbox};

    /// `outreach.fallback` as the versions before the one content type wrote
    /// it (a `Fallback` of five flat fields, the body named `content`).
    const EARLIER_FALLBACK: &str = r#"{"channel":"sms","subject":null,"content":"王女士您好，好久不见","html":null,"params":"{\"name\":\"王女士\"}"}"#;

    fn earlier_content() -> Content {
        Content {
            params: Some(r#"{"name":"王女士"}"#.into()),
            ..Content::text("王女士您好，好久不见")
        }
    }

    #[test]
    fn a_fallback_stored_by_an_earlier_version_reads_and_writes_the_same() {
        let fallback: Fallback = serde_json::from_str(EARLIER_FALLBACK).unwrap();
        assert_eq!(
            fallback,
            Fallback {
                channel: Channel::Sms,
                content: earlier_content(),
            }
        );
        // Written back byte for byte, so an earlier version still reads it.
        assert_eq!(serde_json::to_string(&fallback).unwrap(), EARLIER_FALLBACK);
    }

    #[test]
    fn a_message_queued_by_an_earlier_version_falls_back_to_its_stored_content() {
        let fixture = outbox(
            vec![NewCustomer {
                phone: Some("13812345678".into()),
                ..NewCustomer::named("C1", "王丽")
            }],
            Channel::Wechat,
            None,
        );
        let mut store = fixture.store.lock().unwrap();
        store
            .conn
            .execute("UPDATE outreach SET fallback = ?1", [EARLIER_FALLBACK])
            .unwrap();
        let claimed = store.claim_due(T0, &[Channel::Wechat], 10).unwrap();
        assert!(claimed[0].has_fallback);
        let routed = [Channel::Sms, Channel::Wechat];
        assert_eq!(
            store
                .fall_back(claimed[0].id, "no wechat id", &routed, T0)
                .unwrap(),
            Some(Channel::Sms)
        );
        let again = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].channel, Channel::Sms);
        assert_eq!(again[0].content, earlier_content());
        assert!(!again[0].has_fallback);
    }

    fn status(store: &Store, id: i64) -> String {
        store
            .conn
            .query_row("SELECT status FROM outreach WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    #[test]
    fn a_claim_expires_what_is_past_its_expiry_and_never_claims_it() {
        let fixture = outbox(
            vec![
                NewCustomer::named("C1", "王丽"),
                NewCustomer::named("C2", "李娜"),
            ],
            Channel::Sms,
            None,
        );
        let mut store = fixture.store.lock().unwrap();
        store
            .conn
            .execute_batch(&format!(
                "UPDATE outreach SET expires_at = {} WHERE id = 1;
                 UPDATE outreach SET expires_at = {} WHERE id = 2;",
                T0 + 60,
                T0 + 61
            ))
            .unwrap();
        // On time: both go. Handed back (a deferral), then one past its expiry.
        let claimed = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
        assert_eq!(claimed.len(), 2);
        store.release(&[1, 2], T0).unwrap();
        let claimed = store.claim_due(T0 + 61, &[Channel::Sms], 10).unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
        assert_eq!(status(&store, 1), "expired");
        assert_eq!(status(&store, 2), "expired");
        // The log says why.
        let last: Option<String> = store
            .conn
            .query_row("SELECT last_error FROM outreach WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last.as_deref(), Some(EXPIRED));
    }

    #[test]
    fn a_claim_marks_stale_what_moved_on_or_came_back_and_never_claims_it() {
        let fixture = outbox(
            vec![
                NewCustomer::named("C1", "王丽"),
                NewCustomer::named("C2", "李娜"),
                NewCustomer::named("C3", "张敏"),
                NewCustomer::named("C4", "刘洋"),
            ],
            Channel::Sms,
            None,
        );
        let mut store = fixture.store.lock().unwrap();
        // Queued in `warning` at T0. C1 has left it; C2 is still there but
        // came back after; C3 came before; C4 left, but its action sends
        // stale messages all the same.
        store
            .conn
            .execute_batch(&format!(
                "UPDATE outreach SET cancel_if_stale = 1 WHERE customer_id <> 4;
                 UPDATE customer_pools SET pool = 'warning' WHERE customer_id IN (2, 3);
                 INSERT INTO visits (customer_id, at) VALUES (2, {}), (3, {});",
                T0 + 5,
                T0 - 5
            ))
            .unwrap();
        let claimed = store.claim_due(T0 + 10, &[Channel::Sms], 10).unwrap();
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        assert_eq!(ids, [3, 4]);
        assert_eq!(status(&store, 1), "stale");
        assert_eq!(status(&store, 2), "stale");
        let reason = |id: i64| -> String {
            store
                .conn
                .query_row("SELECT last_error FROM outreach WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(
            reason(1),
            "stale: queued in the warning pool, the customer is now in new; not sent"
        );
        assert_eq!(
            reason(2),
            "stale: the customer visited after it was queued; not sent"
        );
        let zh = crate::base::reason::read_back(&reason(1)).unwrap();
        assert_eq!(
            zh.render(crate::base::i18n::Lang::Zh),
            "已失效：排队时顾客在预警池，现在已在新客池；未发送"
        );
    }

    #[test]
    fn cancel_leaves_a_claimed_message_to_its_dispatcher() {
        let fixture = outbox(
            vec![
                NewCustomer::named("C1", "王丽"),
                NewCustomer::named("C2", "李娜"),
            ],
            Channel::Sms,
            None,
        );
        let mut store = fixture.store.lock().unwrap();
        let claimed = store.claim_due(T0, &[Channel::Sms], 1).unwrap();
        assert_eq!(claimed[0].id, 1);
        let filter = CancelFilter {
            rule: Some("r".into()),
            ..CancelFilter::default()
        };
        let dry = store.cancel_queued(1, &filter, "why", true, T0).unwrap();
        assert_eq!((dry.rows.len(), dry.handed_over), (1, 1));
        assert_eq!(status(&store, 2), "queued", "a dry run writes nothing");
        let done = store.cancel_queued(1, &filter, "why", false, T0).unwrap();
        assert_eq!(done.rows[0].id, 2);
        assert_eq!(status(&store, 2), "cancelled");
        // The dispatcher's outcome still lands on its message; the
        // cancelled one is never claimed.
        store.mark_sent(1, "log", "p1", 45, T0).unwrap();
        assert_eq!(status(&store, 1), "sent");
        assert!(
            store
                .claim_due(T0 + 10, &[Channel::Sms], 10)
                .unwrap()
                .is_empty()
        );
    }
}
