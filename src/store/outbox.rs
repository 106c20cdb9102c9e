//! The outbox side of the outreach table: claiming due messages for the
//! dispatcher and recording what became of each.
//!
//! A message is claimed (`queued` → `sending`, attempts + 1) in one
//! transaction before anything is sent, and its result is written as soon as
//! the sender answers. Result updates only apply to a message still in
//! `sending`, so a late or repeated answer cannot overwrite a final status.

use rusqlite::{Row, params, params_from_iter};

use super::{Result, Store};
use crate::clock::Timestamp;
use crate::model::Channel;

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

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub rule_id: String,
    pub channel: Channel,
    pub template: String,
    pub subject: Option<String>,
    pub content: String,
    pub html: Option<String>,
    /// Provider template parameters (JSON object text).
    pub params: Option<String>,
    /// The error of the previous attempt, if any.
    pub last_error: Option<String>,
    /// Including this one.
    pub attempts: i64,
    pub created_at: Timestamp,
    pub due_at: Timestamp,
    pub recipient: Recipient,
    /// Whether the customer consented to this message's channel.
    pub consent: bool,
    pub do_not_contact: bool,
}

fn claimed_row(r: &Row<'_>) -> rusqlite::Result<Claimed> {
    let channel: String = r.get(2)?;
    let channel: Channel = channel.parse().unwrap_or(Channel::Sms);
    let consents = [r.get::<_, bool>(18)?, r.get(19)?, r.get(20)?, r.get(21)?];
    let params = r.get(22)?;
    let last_error = r.get(23)?;
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
        subject: r.get(4)?,
        content: r.get(5)?,
        html: r.get(6)?,
        params,
        last_error,
        attempts: r.get(7)?,
        created_at: r.get(8)?,
        due_at: r.get(9)?,
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

impl Store {
    /// Puts messages left in `sending` by a dispatcher that died back in the
    /// queue. Call once when a dispatcher starts (there is one dispatcher
    /// per database). Returns how many were requeued.
    pub fn requeue_interrupted(&self, now: Timestamp) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outreach SET status = 'queued', updated_at = ?1,
                last_error = 'interrupted while sending; requeued'
             WHERE status = 'sending'",
            [now],
        )?)
    }

    /// Claims up to `limit` messages due at `now` on the given channels,
    /// oldest due first.
    pub fn claim_due(
        &mut self,
        now: Timestamp,
        channels: &[Channel],
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..channels.len()).map(|i| format!("?{}", i + 3)).collect();
        let marks = marks.join(", ");
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT id FROM outreach WHERE status = 'queued' AND due_at <= ?1 AND channel IN ({marks})
                 ORDER BY due_at, id LIMIT ?2"
            ))?;
            let mut values: Vec<rusqlite::types::Value> = vec![now.into(), i64::from(limit).into()];
            values.extend(channels.iter().map(|c| c.as_str().to_string().into()));
            // ?1 is now, ?2 the limit, ?3... the channels.
            stmt.query_map(params_from_iter(values), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut claimed = Vec::with_capacity(ids.len());
        {
            let mut update = tx.prepare_cached(
                "UPDATE outreach SET status = 'sending', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut select = tx.prepare_cached(
                "SELECT o.id, o.rule_id, o.channel, o.template, o.subject, o.content, o.content_html,
                        o.attempts, o.created_at, o.due_at,
                        c.id, c.external_id, c.name, c.phone, c.email, c.wechat_openid, c.wecom_external_userid,
                        c.do_not_contact, c.consent_sms, c.consent_phone, c.consent_wechat, c.consent_email,
                        o.params, o.last_error
                 FROM outreach o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?1",
            )?;
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
        let marks = vec!["?"; channels.len()].join(", ");
        Ok(self.conn.query_row(
            &format!(
                "SELECT min(due_at) FROM outreach WHERE status = 'queued' AND channel IN ({marks})"
            ),
            params_from_iter(channels.iter().map(|c| c.as_str())),
            |r| r.get(0),
        )?)
    }

    /// The sender accepted the message.
    pub fn mark_sent(
        &self,
        id: i64,
        sender: &str,
        provider_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'sent', sender = ?2, provider_id = ?3, sent_at = ?4,
                updated_at = ?4, last_error = NULL
             WHERE id = ?1 AND status = 'sending'",
            params![id, sender, provider_id, now],
        )?;
        Ok(())
    }

    /// Accepted by the provider, waiting for a person to act; polled later.
    pub fn mark_awaiting(
        &self,
        id: i64,
        sender: &str,
        provider_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'awaiting', sender = ?2, provider_id = ?3, updated_at = ?4,
                last_error = NULL
             WHERE id = ?1 AND status = 'sending'",
            params![id, sender, provider_id, now],
        )?;
        Ok(())
    }

    /// Not now, not a failure: back to the queue until `retry_at`, the
    /// attempt undone, the reason kept for the log.
    pub fn mark_deferred(
        &self,
        id: i64,
        reason: &str,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'queued', attempts = max(attempts - 1, 0), last_error = ?2,
                due_at = ?3, updated_at = ?4
             WHERE id = ?1 AND status = 'sending'",
            params![id, reason, retry_at, now],
        )?;
        Ok(())
    }

    /// A retryable failure: back to the queue, due again at `retry_at`.
    pub fn mark_retry(
        &self,
        id: i64,
        sender: &str,
        error: &str,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'queued', sender = ?2, last_error = ?3, due_at = ?4, updated_at = ?5
             WHERE id = ?1 AND status = 'sending'",
            params![id, sender, error, retry_at, now],
        )?;
        Ok(())
    }

    /// A permanent failure, or out of attempts.
    pub fn mark_failed(&self, id: i64, sender: &str, error: &str, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'failed', sender = ?2, last_error = ?3, updated_at = ?4
             WHERE id = ?1 AND status = 'sending'",
            params![id, sender, error, now],
        )?;
        Ok(())
    }

    /// Not sent on purpose: no consent, do-not-contact, no address.
    pub fn mark_suppressed(&self, id: i64, reason: &str, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "UPDATE outreach SET status = 'suppressed', last_error = ?2, updated_at = ?3
             WHERE id = ?1 AND status = 'sending'",
            params![id, reason, now],
        )?;
        Ok(())
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
        let target: Option<(i64, String)> = tx
            .query_row(
                "SELECT customer_id, channel FROM outreach WHERE id = ?1 AND status = 'sending'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((customer, channel)) = target {
            tx.execute(
                "UPDATE outreach SET status = 'opted_out', sender = ?2, last_error = ?3, updated_at = ?4
                 WHERE id = ?1",
                params![id, sender, reason, now],
            )?;
            let column = match channel.parse::<Channel>() {
                Ok(Channel::Sms) => "consent_sms",
                Ok(Channel::Phone) => "consent_phone",
                Ok(Channel::Wechat) => "consent_wechat",
                Ok(Channel::Email) | Err(_) => "consent_email",
            };
            tx.execute(
                &format!("UPDATE customers SET {column} = 0, updated_at = ?2 WHERE id = ?1"),
                params![customer, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// Gives claimed messages back to the queue untouched (the dispatcher is
    /// stopping and did not send them): status `queued`, the attempt undone.
    pub fn release(&self, ids: &[i64], now: Timestamp) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE outreach SET status = 'queued', attempts = max(attempts - 1, 0), updated_at = ?2
             WHERE id = ?1 AND status = 'sending'",
        )?;
        for id in ids {
            stmt.execute(params![id, now])?;
        }
        Ok(())
    }
}
