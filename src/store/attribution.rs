//! Outcomes of contacts: what became of each message beyond its delivery.
//!
//! Attribution credits each visit and each order to the **last contact
//! before it** (a message that was sent, or a call that reached the
//! customer) when it falls within that contact's attribution window; the
//! contact's rule and channel get the recall, and the order's amount is the
//! recalled revenue. It reads visits and orders incrementally (by id), so it
//! is cheap to run after every tick and import, and idempotent.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::clock::Timestamp;

/// The kinds of outcome a message can have.
pub const OUTCOME_KINDS: &[&str] = &[
    "delivered",
    "responded",
    "booked",
    "visited",
    "purchased",
    "opted_out",
];

impl Store {
    /// Credits visits and orders added since the last run to the last
    /// contact before each. Returns how many outcomes were recorded.
    pub fn attribute(&mut self) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut added = 0;
        for (table, kind, prefix, amount, key) in [
            ("visits", "visited", "visit", "0", "attributed_visit_id"),
            (
                "orders",
                "purchased",
                "order",
                "e.amount_cents",
                "attributed_order_id",
            ),
        ] {
            let after: i64 = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let last: Option<i64> =
                tx.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))?;
            let Some(last) = last.filter(|l| *l > after) else {
                continue;
            };
            added += tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO outcomes (outreach_id, kind, at, amount_cents, source, ref)
                     SELECT oid, '{kind}', at, amount, 'attribution', '{prefix}:' || eid FROM (
                        SELECT e.id AS eid, e.at AS at, {amount} AS amount, o.id AS oid,
                               row_number() OVER (PARTITION BY e.id ORDER BY o.sent_at DESC, o.id DESC) AS rn
                        FROM {table} e JOIN outreach o ON o.customer_id = e.customer_id
                        WHERE e.id > ?1 AND e.id <= ?2 AND o.status = 'sent'
                          AND e.at >= o.sent_at AND e.at <= o.sent_at + o.attribution_days * 86400
                     ) WHERE rn = 1"
                ),
                params![after, last],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, last],
            )?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Records an outcome of a message reported by a person or a provider
    /// (a reply, a booking). Recording the same event twice changes nothing.
    pub fn record_outcome(
        &self,
        outreach_id: i64,
        kind: &str,
        at: Timestamp,
        amount_cents: i64,
        source: &str,
        reference: &str,
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO outcomes (outreach_id, kind, at, amount_cents, source, ref)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![outreach_id, kind, at, amount_cents, source, reference],
        )? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Channel;
    use crate::store::ingest::NewCustomer;
    use crate::testing::{T0, outbox};

    fn outcomes(store: &Store) -> Vec<(i64, String, i64, String)> {
        let mut stmt = store
            .conn
            .prepare("SELECT outreach_id, kind, amount_cents, ref FROM outcomes ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn returns_are_credited_to_the_last_contact_within_its_window() {
        let f = outbox(vec![NewCustomer::named("C1", "王丽")], Channel::Sms, None);
        crate::testing::queue_more(&f.store, 1, Channel::Wechat, T0 + 10 * 86_400);
        let mut store = f.store.lock().unwrap();
        // Both messages sent at their due time.
        store
            .conn
            .execute("UPDATE outreach SET status = 'sent', sent_at = due_at", [])
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        ingest.add_visit(1, T0 - 86_400, None).unwrap(); // before any contact
        ingest.add_visit(1, T0 + 5 * 86_400, None).unwrap(); // after the SMS only
        ingest
            .add_order(1, T0 + 12 * 86_400, 680_000, None, None)
            .unwrap(); // after both: the WeChat one
        ingest
            .add_order(1, T0 + 50 * 86_400, 100, None, None)
            .unwrap(); // past the 30-day window
        ingest.commit().unwrap();
        assert_eq!(store.attribute().unwrap(), 2);
        assert_eq!(
            outcomes(&store),
            [
                (1, "visited".to_string(), 0, "visit:2".to_string()),
                (2, "purchased".to_string(), 680_000, "order:1".to_string()),
            ]
        );
        // Running again adds nothing; new events are picked up.
        assert_eq!(store.attribute().unwrap(), 0);
        let mut ingest = store.ingest().unwrap();
        ingest.add_visit(1, T0 + 11 * 86_400, None).unwrap();
        ingest.commit().unwrap();
        assert_eq!(store.attribute().unwrap(), 1);
    }

    #[test]
    fn messages_that_never_went_out_get_no_credit() {
        let f = outbox(vec![NewCustomer::named("C1", "王丽")], Channel::Sms, None);
        let mut store = f.store.lock().unwrap();
        store
            .conn
            .execute("UPDATE outreach SET status = 'held_out'", [])
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        ingest.add_visit(1, T0 + 86_400, None).unwrap();
        ingest.commit().unwrap();
        assert_eq!(store.attribute().unwrap(), 0);
    }
}
