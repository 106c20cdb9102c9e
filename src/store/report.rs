//! The numbers behind `recall report`: read-only aggregates over the pool
//! history, visits, orders, messages and outcomes. Definitions are in
//! `docs/report.md`; `crate::report` turns these into KPIs.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{Result, Store};
use crate::base::clock::Timestamp;

/// One message handed over in the report's period, with what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub id: i64,
    pub customer_id: i64,
    pub rule_id: String,
    pub channel: String,
    pub pool: String,
    pub clinic: String,
    /// When it was handed over (`sent_at`).
    pub at: Timestamp,
    /// Reached the customer (`sent`).
    pub contact: bool,
    pub cost_milli: i64,
    pub responded: bool,
    pub booked: bool,
    pub visited: bool,
    pub purchased: bool,
    /// Credited order amounts.
    pub revenue_cents: i64,
}

/// One customer in one rule's treated or control group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMember {
    pub treated: bool,
    pub returned: bool,
    /// What the customer bought within the window (in fen, 分).
    pub revenue_cents: i64,
    /// What the rule's messages to the customer cost (in 厘); 0 for the
    /// control group, which was sent nothing.
    pub cost_milli: i64,
}

impl Store {
    /// Customers per pool at an instant (the pool of their latest move before it).
    pub fn pools_at(&self, at: Timestamp) -> Result<BTreeMap<String, i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT to_pool, count(*) FROM (
                SELECT to_pool, row_number() OVER (PARTITION BY customer_id ORDER BY at DESC, id DESC) AS rn
                FROM transitions WHERE at < ?1
             ) WHERE rn = 1 GROUP BY to_pool",
        )?;
        let rows = stmt.query_map([at], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Moves between pools in `[from, to)`: (from pool, to pool) → count.
    pub fn moves_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BTreeMap<(String, String), i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT from_pool, to_pool, count(*) FROM transitions
             WHERE from_pool IS NOT NULL AND at >= ?1 AND at < ?2 GROUP BY from_pool, to_pool",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Customers first placed in `[from, to)`.
    pub fn new_customers(&self, from: Timestamp, to: Timestamp) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM transitions WHERE from_pool IS NULL AND at >= ?1 AND at < ?2",
            params![from, to],
            |r| r.get(0),
        )?)
    }

    /// (cohort, retained): customers whose `days`-day window after their
    /// first visit closes in the period, i.e. whose first visit is in
    /// `[from - days, to - days)`, and those of them with another visit
    /// within `days` after the first (all of it before `to`).
    pub fn retention(&self, from: Timestamp, to: Timestamp, days: i64) -> Result<(i64, i64)> {
        self.second_within("visits", from, to, days)
    }

    /// (cohort, repeated) for orders: the repurchase rate's parts, the
    /// cohort taken as for [`Store::retention`] on first orders.
    pub fn repurchase(&self, from: Timestamp, to: Timestamp, days: i64) -> Result<(i64, i64)> {
        self.second_within("orders", from, to, days)
    }

    fn second_within(
        &self,
        table: &'static str,
        from: Timestamp,
        to: Timestamp,
        days: i64,
    ) -> Result<(i64, i64)> {
        let window = days * 86_400;
        Ok(self.conn.query_row(
            &format!(
                "WITH first AS (SELECT customer_id, min(at) AS first_at FROM {table} GROUP BY customer_id)
                 SELECT count(*), coalesce(sum(EXISTS (
                     SELECT 1 FROM {table} e WHERE e.customer_id = f.customer_id
                       AND e.at > f.first_at AND e.at <= f.first_at + ?3)), 0)
                 FROM first f WHERE f.first_at >= ?1 - ?3 AND f.first_at < ?2 - ?3"
            ),
            params![from, to, window],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Distinct customers with a visit in `[to - days, to)`.
    pub fn visitors(&self, to: Timestamp, days: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(DISTINCT customer_id) FROM visits WHERE at >= ?1 AND at < ?2",
            params![to - days * 86_400, to],
            |r| r.get(0),
        )?)
    }

    /// Messages handed over in `[from, to)`, with their outcomes.
    pub fn contacts(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ContactRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.customer_id, o.rule_id, o.channel, o.pool, cl.code, o.sent_at, o.status = 'sent',
                    o.cost_milli,
                    EXISTS (SELECT 1 FROM outcomes x WHERE x.outreach_id = o.id AND x.kind = 'responded'),
                    EXISTS (SELECT 1 FROM outcomes x WHERE x.outreach_id = o.id AND x.kind = 'booked'),
                    EXISTS (SELECT 1 FROM outcomes x WHERE x.outreach_id = o.id AND x.kind = 'visited'),
                    EXISTS (SELECT 1 FROM outcomes x WHERE x.outreach_id = o.id AND x.kind = 'purchased'),
                    (SELECT coalesce(sum(amount_cents), 0) FROM outcomes x WHERE x.outreach_id = o.id AND x.kind = 'purchased')
             FROM outreach o JOIN customers c ON c.id = o.customer_id JOIN clinics cl ON cl.id = c.clinic_id
             WHERE o.sent_at >= ?1 AND o.sent_at < ?2
             ORDER BY o.sent_at, o.id",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok(ContactRow {
                id: r.get(0)?,
                customer_id: r.get(1)?,
                rule_id: r.get(2)?,
                channel: r.get(3)?,
                pool: r.get(4)?,
                clinic: r.get(5)?,
                at: r.get(6)?,
                contact: r.get(7)?,
                cost_milli: r.get(8)?,
                responded: r.get(9)?,
                booked: r.get(10)?,
                visited: r.get(11)?,
                purchased: r.get(12)?,
                revenue_cents: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// For rules with a control group in `[from, to)`: each customer the
    /// rule fired for in the period, once per rule, in the treated group
    /// (intention to treat: every message of the rule that was not held out,
    /// whatever became of it: sent, awaiting, suppressed, failed, opted
    /// out, cancelled, expired or still queued) or the control group (held
    /// out), and whether they returned within the attribution window after
    /// the first time the rule fired for them in the period (`created_at`,
    /// for both groups alike). Only a tick's messages count: those
    /// onboarding replayed (no tick) were never a decision.
    pub fn holdout_groups(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BTreeMap<String, Vec<GroupMember>>> {
        let mut stmt = self.conn.prepare(
            "WITH entries AS (
                SELECT rule_id, customer_id, status <> 'held_out' AS treated,
                       min(created_at) AS at, attribution_days, sum(cost_milli) AS cost
                FROM outreach
                WHERE created_at >= ?1 AND created_at < ?2 AND tick_id IS NOT NULL
                  AND rule_id IN (SELECT DISTINCT rule_id FROM outreach
                                  WHERE status = 'held_out' AND created_at >= ?1 AND created_at < ?2)
                GROUP BY rule_id, customer_id, status <> 'held_out'
             )
             SELECT e.rule_id, e.treated,
                    EXISTS (SELECT 1 FROM visits v WHERE v.customer_id = e.customer_id
                              AND v.at > e.at AND v.at <= e.at + e.attribution_days * 86400)
                 OR EXISTS (SELECT 1 FROM orders d WHERE d.customer_id = e.customer_id
                              AND d.at > e.at AND d.at <= e.at + e.attribution_days * 86400),
                    (SELECT coalesce(sum(d.amount_cents), 0) FROM orders d
                      WHERE d.customer_id = e.customer_id
                        AND d.at > e.at AND d.at <= e.at + e.attribution_days * 86400),
                    e.cost
             FROM entries e
             ORDER BY e.rule_id",
        )?;
        let mut groups: BTreeMap<String, Vec<GroupMember>> = BTreeMap::new();
        let rows = stmt.query_map(params![from, to], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (rule, treated, returned, revenue_cents, cost_milli) = row?;
            groups.entry(rule).or_default().push(GroupMember {
                treated,
                returned,
                revenue_cents,
                cost_milli,
            });
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use crate::base::model::Channel;
    use crate::store::ingest::NewCustomer;
    use crate::testing::{T0, outbox};

    use super::GroupMember;

    #[test]
    fn both_groups_are_followed_from_the_time_the_rule_fired() {
        // Rule `r` fired for C1 and C2 at T0; C2 was held out. C1's message
        // waited two days (quiet hours, caps) before it went out; C1 came
        // back the day after the rule fired, before the hand-over.
        let f = outbox(
            vec![
                NewCustomer::named("C1", "王丽"),
                NewCustomer::named("C2", "李雷"),
            ],
            Channel::Sms,
            None,
        );
        let mut store = f.store.lock().unwrap();
        store
            .conn
            .execute("UPDATE outreach SET status = 'held_out' WHERE id = 2", [])
            .unwrap();
        let claimed = store
            .claim_due(T0 + 2 * 86_400, &[Channel::Sms], 10)
            .unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .mark_sent(claimed[0].id, "log", "p", 45, T0 + 2 * 86_400)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        ingest.add_visit(1, T0 + 86_400, None).unwrap();
        ingest
            .add_order(1, T0 + 86_400, 98_000, None, None)
            .unwrap();
        // Outside the window: not the rule's.
        ingest
            .add_order(1, T0 + 400 * 86_400, 5_000, None, None)
            .unwrap();
        ingest.commit().unwrap();
        let groups = store.holdout_groups(T0 - 86_400, T0 + 30 * 86_400).unwrap();
        let mut r = groups["r"].clone();
        r.sort_by_key(|m| !m.treated);
        assert_eq!(
            r,
            [
                GroupMember {
                    treated: true,
                    returned: true,
                    revenue_cents: 98_000,
                    cost_milli: 45,
                },
                GroupMember {
                    treated: false,
                    returned: false,
                    revenue_cents: 0,
                    cost_milli: 0,
                },
            ]
        );
    }
}
