//! Outcomes of contacts: what became of each message beyond its delivery.
//!
//! Attribution credits each visit and each order to the **last contact
//! before it** (a message that was sent, or a call that reached the
//! customer) when it falls within that contact's attribution window; the
//! contact's rule and channel get the recall, and the order's amount is the
//! recalled revenue.
//!
//! A credit depends only on the customer's returns and sent messages, in
//! whatever order they arrive: a visit imported before the call that
//! preceded it was marked reached is credited once the call is. So the
//! credits are recomputed per customer: triggers (migration 4) queue a
//! customer in `attribution_queue` whenever one of their visits or orders
//! is added, corrected, moved or removed, or one of their messages becomes
//! sent (or stops being sent), and [`Store::attribute`] recomputes the
//! queued customers' credits and brings the `outcomes` rows in line:
//! cheap to run after every tick and import, and idempotent.

use std::collections::HashMap;

use rusqlite::{Transaction, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;

/// The kinds of outcome a message can have.
pub const OUTCOME_KINDS: &[&str] = &[
    "delivered",
    "responded",
    "booked",
    "visited",
    "purchased",
    "opted_out",
];

/// One credit: the message a return is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Credit {
    outreach_id: i64,
    at: Timestamp,
    amount_cents: i64,
}

impl Store {
    /// Recomputes the credits of every customer whose returns or sent
    /// messages changed since the last run. Returns how many credits were
    /// recorded anew (a credit that moved to another message, or whose
    /// amount was corrected, counts once; unchanged credits do not count).
    pub fn attribute(&mut self) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let queued: Vec<i64> = {
            // A customer who was never sent anything has no credit to give
            // or take back (credits hang on messages): skipped, which makes
            // the first import of a clinic's history cheap.
            let mut stmt = tx.prepare(
                "SELECT q.customer_id FROM attribution_queue q
                 WHERE EXISTS (SELECT 1 FROM outreach o WHERE o.customer_id = q.customer_id)
                 ORDER BY 1",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut added = 0;
        for customer_id in queued {
            added += credit_customer(&tx, customer_id)?;
        }
        tx.execute("DELETE FROM attribution_queue", [])?;
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

/// Brings one customer's credited visits and purchases in line with their
/// returns and sent messages; returns how many credits were written.
///
/// Each query starts from the customer's own messages (`outreach_customer`);
/// the unary `+` keeps SQLite from starting at every sent message of the
/// clinic (`outreach_due`) or every credit (`outcomes_kind`) instead, which
/// it did, making an import that touched many customers take customers ×
/// messages (2.8 ms a customer on the 3,000-customer demo, 8 µs now).
fn credit_customer(tx: &Transaction<'_>, customer_id: i64) -> Result<usize> {
    // What the credits should be, by the event behind each ('visit:12').
    let mut wanted: HashMap<String, (&str, Credit)> = HashMap::new();
    for (table, kind, prefix, amount) in [
        ("visits", "visited", "visit", "0"),
        ("orders", "purchased", "order", "e.amount_cents"),
    ] {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT eid, at, amount, oid FROM (
                SELECT e.id AS eid, e.at AS at, {amount} AS amount, o.id AS oid,
                       row_number() OVER (PARTITION BY e.id ORDER BY o.sent_at DESC, o.id DESC) AS rn
                FROM {table} e JOIN outreach o ON o.customer_id = e.customer_id
                WHERE e.customer_id = ?1 AND o.customer_id = ?1 AND +o.status = 'sent'
                  AND e.at >= o.sent_at AND e.at <= o.sent_at + o.attribution_days * 86400
             ) WHERE rn = 1"
        ))?;
        let rows = stmt.query_map([customer_id], |r| {
            Ok((
                format!("{prefix}:{}", r.get::<_, i64>(0)?),
                Credit {
                    at: r.get(1)?,
                    amount_cents: r.get(2)?,
                    outreach_id: r.get(3)?,
                },
            ))
        })?;
        for row in rows {
            let (reference, credit) = row?;
            wanted.insert(reference, (kind, credit));
        }
    }
    // What they are: keep those that match, delete the rest.
    let existing: Vec<(i64, String, String, Credit)> = tx
        .prepare_cached(
            "SELECT x.id, x.kind, x.ref, x.outreach_id, x.at, x.amount_cents
             FROM outcomes x JOIN outreach o ON o.id = x.outreach_id
             WHERE o.customer_id = ?1 AND x.source = 'attribution'
               AND +x.kind IN ('visited', 'purchased')",
        )?
        .query_map([customer_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                Credit {
                    outreach_id: r.get(3)?,
                    at: r.get(4)?,
                    amount_cents: r.get(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, kind, reference, credit) in existing {
        if wanted.get(&reference) == Some(&(kind.as_str(), credit)) {
            wanted.remove(&reference);
        } else {
            tx.prepare_cached("DELETE FROM outcomes WHERE id = ?1")?
                .execute([id])?;
        }
    }
    let mut added = 0;
    let mut wanted: Vec<_> = wanted.into_iter().collect();
    wanted.sort_by_key(|(reference, (kind, credit))| {
        (credit.at, *kind == "purchased", reference.clone())
    });
    for (reference, (kind, credit)) in wanted {
        // A credit of the same message for the same event, but with an old
        // time or amount, was deleted above; a row elsewhere (another
        // customer's message, before the event moved) is that customer's to
        // remove, and both are queued.
        added += tx
            .prepare_cached(
                "INSERT INTO outcomes (outreach_id, kind, at, amount_cents, source, ref)
                 VALUES (?1, ?2, ?3, ?4, 'attribution', ?5)",
            )?
            .execute(params![
                credit.outreach_id,
                kind,
                credit.at,
                credit.amount_cents,
                reference
            ])?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::model::Channel;
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
    fn a_return_is_credited_whichever_comes_first_the_return_or_the_contact() {
        // C1: an SMS sent at T0, then a call handed over at T0 + 2 days that
        // a person confirms later. C2: only a WeCom message awaiting staff.
        let f = outbox(
            vec![
                NewCustomer::named("C1", "王丽"),
                NewCustomer::named("C2", "李雷"),
            ],
            Channel::Sms,
            None,
        );
        crate::testing::queue_more(&f.store, 1, Channel::Phone, T0 + 2 * 86_400);
        let mut store = f.store.lock().unwrap();
        let sms = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
        assert_eq!(sms.len(), 2);
        store.mark_sent(sms[0].id, "log", "p1", 0, T0).unwrap();
        store
            .mark_awaiting(sms[1].id, "wecom", "p2", 0, T0)
            .unwrap();
        let call = store
            .claim_due(T0 + 2 * 86_400, &[Channel::Phone], 10)
            .unwrap();
        store
            .mark_awaiting(call[0].id, "calls", "p3", 0, T0 + 2 * 86_400)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        ingest.add_visit(1, T0 + 3 * 86_400, None).unwrap();
        ingest
            .add_order(1, T0 + 3 * 86_400, 500_000, None, None)
            .unwrap();
        ingest.add_visit(2, T0 + 3 * 86_400, None).unwrap(); // visit 2
        ingest.commit().unwrap();
        // The call and the WeCom message are not contacts yet: C1's returns
        // go to the SMS, C2's to nothing.
        assert_eq!(store.attribute().unwrap(), 2);
        assert_eq!(
            outcomes(&store),
            [
                (1, "visited".to_string(), 0, "visit:1".to_string()),
                (1, "purchased".to_string(), 500_000, "order:1".to_string()),
            ]
        );
        // The call reached C1 (as `recall tasks done` records it) and staff
        // confirmed C2's WeCom message: the call is now C1's last contact
        // before the returns, which move to it, not credited twice.
        for id in [call[0].id, sms[1].id] {
            store
                .conn
                .execute(
                    "UPDATE outreach SET status = 'sent' WHERE id = ?1 AND status = 'awaiting'",
                    [id],
                )
                .unwrap();
        }
        assert_eq!(store.attribute().unwrap(), 3);
        assert_eq!(
            outcomes(&store),
            [
                (3, "visited".to_string(), 0, "visit:1".to_string()),
                (3, "purchased".to_string(), 500_000, "order:1".to_string()),
                (2, "visited".to_string(), 0, "visit:2".to_string()),
            ]
        );
        assert_eq!(store.attribute().unwrap(), 0, "idempotent");
        assert_eq!(outcomes(&store).len(), 3);
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
