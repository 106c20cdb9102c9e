//! Onboarding: the customers an import added wait (`customers.onboarding`)
//! until `recall onboard` places them where their history puts them. The
//! history is replayed on a simulation copy; what the replay did to the
//! waiting customers is read from the copy ([`Store::replayed`]) and
//! written on the live database in one transaction
//! ([`Store::record_onboarding`]): their moves, with the reason
//! "onboarding: ...", and the messages the rules fired in the pool they end
//! in, as `cancelled` rows that no dispatcher will ever claim, so a rule
//! that fires once per stay (or has a cooldown) knows it already fired.

use rusqlite::params;

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::model::Pool;

/// What every onboarding move's reason starts with.
pub const ONBOARDING: &str = "onboarding";

/// The `last_error` of a message onboarding replayed: never sendable.
pub const REPLAYED: &str = "onboarding: replayed from the history; never sent";

/// One move a replay made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedMove {
    pub from: Pool,
    pub to: Pool,
    pub rule_id: String,
    pub reason: String,
    pub at: Timestamp,
}

/// One message a replay's rules fired in the pool the customer ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedMessage {
    pub rule_id: String,
    pub action_index: i64,
    pub pool: String,
    pub channel: String,
    pub template: String,
    pub subject: Option<String>,
    pub content: String,
    pub content_html: Option<String>,
    pub params: Option<String>,
    pub attribution_days: i64,
    pub created_at: Timestamp,
    pub due_at: Timestamp,
}

/// What a replay did to one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub customer_id: i64,
    /// Where the replay left them.
    pub pool: Pool,
    pub moves: Vec<ReplayedMove>,
    pub fired: Vec<ReplayedMessage>,
}

/// What [`Store::record_onboarding`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Onboarded {
    pub customers: usize,
    pub moves: usize,
    pub messages: usize,
}

impl Store {
    /// The customers of a clinic who wait for onboarding, by id.
    pub fn waiting_for_onboarding(&self, clinic_id: i64) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM customers WHERE clinic_id = ?1 AND onboarding = 1 ORDER BY id",
        )?;
        let ids = stmt.query_map([clinic_id], |r| r.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// What a replay from `from` on did to these customers (read on the
    /// replayed copy): their moves by a tick, in order, and the messages
    /// fired in the pool stay they ended in.
    pub fn replayed(&self, customers: &[i64], from: Timestamp) -> Result<Vec<Replayed>> {
        let mut all = Vec::with_capacity(customers.len());
        let mut pool_of = self
            .conn
            .prepare_cached("SELECT pool, entered_at FROM customer_pools WHERE customer_id = ?1")?;
        let mut moves_of = self.conn.prepare_cached(
            "SELECT from_pool, to_pool, coalesce(rule_id, ''), reason, at FROM transitions
             WHERE customer_id = ?1 AND tick_id IS NOT NULL AND at >= ?2 ORDER BY at, id",
        )?;
        let mut fired_of = self.conn.prepare_cached(
            "SELECT rule_id, action_index, pool, channel, template, subject, content, content_html,
                    params, attribution_days, created_at, due_at
             FROM outreach WHERE customer_id = ?1 AND created_at >= ?2 ORDER BY created_at, id",
        )?;
        for &customer_id in customers {
            let (pool, entered_at): (String, Timestamp) =
                pool_of.query_row([customer_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let moves = moves_of
                .query_map(params![customer_id, from], |r| {
                    let pool = |i| -> rusqlite::Result<Pool> {
                        Ok(r.get::<_, String>(i)?.parse().unwrap_or_default())
                    };
                    Ok(ReplayedMove {
                        from: pool(0)?,
                        to: pool(1)?,
                        rule_id: r.get(2)?,
                        reason: r.get(3)?,
                        at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let fired = fired_of
                .query_map(params![customer_id, from.max(entered_at)], |r| {
                    Ok(ReplayedMessage {
                        rule_id: r.get(0)?,
                        action_index: r.get(1)?,
                        pool: r.get(2)?,
                        channel: r.get(3)?,
                        template: r.get(4)?,
                        subject: r.get(5)?,
                        content: r.get(6)?,
                        content_html: r.get(7)?,
                        params: r.get(8)?,
                        attribution_days: r.get(9)?,
                        created_at: r.get(10)?,
                        due_at: r.get(11)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            all.push(Replayed {
                customer_id,
                pool: pool.parse().unwrap_or_default(),
                moves,
                fired,
            });
        }
        Ok(all)
    }

    /// Writes what the replay did for each customer who still waits for
    /// onboarding, all or nothing: the moves (no tick; the reason
    /// "onboarding: " and the rule's), the pool they end in, the fired
    /// messages as `cancelled` ([`REPLAYED`]), and the end of their wait.
    pub fn record_onboarding(
        &mut self,
        replayed: &[Replayed],
        now: Timestamp,
    ) -> Result<Onboarded> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut done = Onboarded::default();
        {
            let mut judged = tx.prepare_cached(
                "UPDATE customers SET onboarding = 0 WHERE id = ?1 AND onboarding = 1",
            )?;
            let mut insert_move = tx.prepare_cached(
                "INSERT INTO transitions (customer_id, tick_id, from_pool, to_pool, rule_id, reason, at)
                 VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut set_pool = tx.prepare_cached(
                "UPDATE customer_pools SET pool = ?2, entered_at = ?3, transition_id = ?4
                 WHERE customer_id = ?1",
            )?;
            let mut insert_message = tx.prepare_cached(
                "INSERT INTO outreach (customer_id, tick_id, rule_id, action_index, pool, channel,
                    template, subject, content, content_html, params, attribution_days, status,
                    last_error, created_at, due_at, updated_at)
                 VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'cancelled',
                    ?12, ?13, ?14, ?15)",
            )?;
            for customer in replayed {
                // Judged since (by a tick that found them new): left alone.
                if judged.execute([customer.customer_id])? == 0 {
                    continue;
                }
                done.customers += 1;
                for m in &customer.moves {
                    insert_move.execute(params![
                        customer.customer_id,
                        m.from.as_str(),
                        m.to.as_str(),
                        m.rule_id,
                        format!("{ONBOARDING}: {}", m.reason),
                        m.at
                    ])?;
                    let transition = tx.last_insert_rowid();
                    set_pool.execute(params![
                        customer.customer_id,
                        m.to.as_str(),
                        m.at,
                        transition
                    ])?;
                    done.moves += 1;
                }
                for m in &customer.fired {
                    insert_message.execute(params![
                        customer.customer_id,
                        m.rule_id,
                        m.action_index,
                        m.pool,
                        m.channel,
                        m.template,
                        m.subject,
                        m.content,
                        m.content_html,
                        m.params,
                        m.attribution_days,
                        REPLAYED,
                        m.created_at,
                        m.due_at,
                        now
                    ])?;
                    done.messages += 1;
                }
            }
        }
        tx.commit()?;
        Ok(done)
    }
}
