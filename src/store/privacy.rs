//! Personal data on request, and for no longer than needed: a customer's
//! data export and erasure (PIPL data-access and deletion requests), and
//! the retention pruning of finished messages.
//!
//! Erasure anonymises rather than deletes: the rows the report counts
//! (visits, orders, moves, messages and their outcomes) stay, stripped of
//! everything that identifies or describes the person, so the clinic's
//! statistics do not change when a customer is forgotten.

use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

use super::{Result, Store};
use crate::base::clock::Timestamp;

/// Statuses after which a message never changes again.
const FINAL: &str =
    "('sent', 'failed', 'suppressed', 'opted_out', 'held_out', 'cancelled', 'expired')";

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub outcomes: usize,
    pub call_tasks: usize,
}

/// What forgetting a customer changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// The customer's row id; the row stays, as `forgotten-<id>`.
    pub customer_id: i64,
    pub visits: usize,
    pub orders: usize,
    pub followups: usize,
    pub moves: usize,
    pub messages: usize,
    pub call_tasks: usize,
}

impl Store {
    /// Deletes messages in a final status last changed before `before`, with
    /// their outcomes and call tasks, in one transaction. Pool moves stay.
    pub fn prune_messages(&mut self, before: Timestamp) -> Result<Pruned> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old = format!("SELECT id FROM outreach WHERE status IN {FINAL} AND updated_at < ?1");
        let outcomes = tx.execute(
            &format!("DELETE FROM outcomes WHERE outreach_id IN ({old})"),
            [before],
        )?;
        let call_tasks = tx.execute(
            &format!("DELETE FROM call_tasks WHERE outreach_id IN ({old})"),
            [before],
        )?;
        let messages = tx.execute(
            &format!("DELETE FROM outreach WHERE status IN {FINAL} AND updated_at < ?1"),
            [before],
        )?;
        tx.commit()?;
        Ok(Pruned {
            messages,
            outcomes,
            call_tasks,
        })
    }

    /// The row id of a clinic's customer.
    fn customer_row(&self, clinic_id: i64, external_id: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM customers WHERE clinic_id = ?1 AND external_id = ?2",
                params![clinic_id, external_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Everything recall holds about one customer, as JSON: the profile, the
    /// current pool and every move, visits, orders, follow-ups, messages with
    /// their content, outcomes and call tasks. Every column of every row is
    /// included, so a column added later is exported without a change here.
    pub fn export_customer(&self, clinic_id: i64, external_id: &str) -> Result<Option<Value>> {
        let Some(id) = self.customer_row(clinic_id, external_id)? else {
            return Ok(None);
        };
        let mut export = Map::new();
        let profile = self.rows("SELECT * FROM customers WHERE id = ?1", id)?;
        export.insert(
            "customer".into(),
            profile.into_iter().next().unwrap_or(Value::Null),
        );
        let sections = [
            (
                "current_pool",
                "SELECT pool, entered_at FROM customer_pools WHERE customer_id = ?1",
            ),
            (
                "moves",
                "SELECT * FROM transitions WHERE customer_id = ?1 ORDER BY at, id",
            ),
            (
                "visits",
                "SELECT * FROM visits WHERE customer_id = ?1 ORDER BY at, id",
            ),
            (
                "orders",
                "SELECT * FROM orders WHERE customer_id = ?1 ORDER BY at, id",
            ),
            (
                "followups",
                "SELECT * FROM followups WHERE customer_id = ?1 ORDER BY at, id",
            ),
            (
                "messages",
                "SELECT * FROM outreach WHERE customer_id = ?1 ORDER BY created_at, id",
            ),
            (
                "outcomes",
                "SELECT oc.* FROM outcomes oc JOIN outreach o ON o.id = oc.outreach_id
                 WHERE o.customer_id = ?1 ORDER BY oc.at, oc.id",
            ),
            (
                "call_tasks",
                "SELECT * FROM call_tasks WHERE customer_id = ?1 ORDER BY created_at, id",
            ),
        ];
        for (name, sql) in sections {
            export.insert(name.into(), Value::Array(self.rows(sql, id)?));
        }
        Ok(Some(Value::Object(export)))
    }

    /// Rows of a query with one id parameter, as JSON objects by column name.
    fn rows(&self, sql: &str, id: i64) -> Result<Vec<Value>> {
        let mut stmt = self.conn.prepare(sql)?;
        let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
        let rows = stmt.query_map([id], |r| {
            let mut row = Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(x) => Value::from(x),
                    ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::from(hex::encode(b)),
                };
                row.insert(name.clone(), value);
            }
            Ok(Value::Object(row))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Erases a customer's personal data in one transaction, keeping the
    /// rows the statistics count: the customer becomes `forgotten-<id>`
    /// with no name, contact details, birth date, city, source or tags, and
    /// no consent (do-not-contact); visit, order and follow-up notes and
    /// external ids, message content and rendered parameters and fallbacks,
    /// provider ids and errors, call scripts and notes, and the fact values
    /// in the reasons of pool moves are removed. Queued messages are
    /// suppressed. Running it again changes nothing. `None` if there is no
    /// such customer.
    pub fn forget_customer(
        &mut self,
        clinic_id: i64,
        external_id: &str,
        now: Timestamp,
    ) -> Result<Option<Forgotten>> {
        let Some(id) = self.customer_row(clinic_id, external_id)? else {
            return Ok(None);
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE customers SET external_id = 'forgotten-' || id, name = '', phone = NULL,
                email = NULL, wechat_openid = NULL, wecom_external_userid = NULL, gender = NULL,
                birth_date = NULL, city = NULL, source_channel = NULL, advisor = NULL, tags = '[]',
                consent_sms = 0, consent_phone = 0, consent_wechat = 0, consent_email = 0,
                do_not_contact = 1, updated_at = ?2
             WHERE id = ?1",
            params![id, now],
        )?;
        let visits = tx.execute(
            "UPDATE visits SET note = NULL, external_id = NULL WHERE customer_id = ?1",
            [id],
        )?;
        let orders = tx.execute(
            "UPDATE orders SET external_id = NULL WHERE customer_id = ?1",
            [id],
        )?;
        let followups = tx.execute(
            "UPDATE followups SET note = NULL, external_id = NULL WHERE customer_id = ?1",
            [id],
        )?;
        // Only `reason` may change in the append-only transitions (see the
        // triggers in migrations.rs): the pools and times stay for the report.
        let moves = tx.execute(
            "UPDATE transitions SET reason = 'forgotten at the customer''s request'
             WHERE customer_id = ?1",
            [id],
        )?;
        // Nothing more goes to this customer.
        tx.execute(
            "UPDATE outreach SET status = 'suppressed', updated_at = ?2
             WHERE customer_id = ?1 AND status IN ('queued', 'sending')",
            params![id, now],
        )?;
        let messages = tx.execute(
            "UPDATE outreach SET content = '', subject = NULL, content_html = NULL, params = NULL,
                fallback = NULL, provider_id = NULL,
                last_error = CASE WHEN last_error IS NULL THEN NULL ELSE 'forgotten' END
             WHERE customer_id = ?1",
            [id],
        )?;
        let call_tasks = tx.execute(
            "UPDATE call_tasks SET script = '', note = NULL WHERE customer_id = ?1",
            [id],
        )?;
        tx.commit()?;
        Ok(Some(Forgotten {
            customer_id: id,
            visits,
            orders,
            followups,
            moves,
            messages,
            call_tasks,
        }))
    }
}
