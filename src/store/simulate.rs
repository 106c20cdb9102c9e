//! Operations only ever run on a **copy** of a clinic's database, made for
//! `recall simulate`: rewinding it to a past instant, and treating queued
//! messages as delivered. Never on the live database: [`Store::rewind_copy`]
//! refuses a file that is not a simulation copy.

use rusqlite::params;

use super::{Result, Store, StoreError};
use crate::base::clock::Timestamp;

/// The suffix every simulation copy's file name ends with.
pub const COPY_SUFFIX: &str = ".simulation.db";

impl Store {
    /// Copies the database to `target` (a path ending in [`COPY_SUFFIX`])
    /// and opens the copy.
    pub fn simulation_copy(&self, target: &std::path::Path) -> Result<Store> {
        self.backup_to(target)?;
        Store::open(target)
    }

    /// Forgets everything that happened at or after `at` in a simulation
    /// copy: ticks, moves (pools go back to where they were), messages and
    /// their outcomes and call tasks. Visits, orders and follow-ups stay:
    /// the simulation replays the rules over the real history. Nobody waits
    /// for onboarding in a copy: the replay judges every customer.
    pub fn rewind_copy(&mut self, at: Timestamp) -> Result<()> {
        if !self.path.to_string_lossy().ends_with(COPY_SUFFIX) {
            return Err(StoreError::Sql(rusqlite::Error::InvalidPath(
                self.path.clone(),
            )));
        }
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "DROP TRIGGER IF EXISTS transitions_append_only_update;
             DROP TRIGGER IF EXISTS transitions_append_only_delete;",
        )?;
        tx.execute(
            "DELETE FROM outcomes WHERE outreach_id IN (SELECT id FROM outreach WHERE created_at >= ?1)",
            [at],
        )?;
        tx.execute(
            "DELETE FROM call_tasks WHERE outreach_id IN (SELECT id FROM outreach WHERE created_at >= ?1)",
            [at],
        )?;
        tx.execute("DELETE FROM outreach WHERE created_at >= ?1", [at])?;
        // Customers first seen after `at` keep their first placement (they
        // join the simulation when they appear); later moves go.
        tx.execute(
            "DELETE FROM customer_pools WHERE transition_id IN (SELECT id FROM transitions WHERE at >= ?1 AND from_pool IS NOT NULL)",
            [at],
        )?;
        tx.execute(
            "DELETE FROM transitions WHERE at >= ?1 AND from_pool IS NOT NULL",
            [at],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO customer_pools (customer_id, pool, entered_at, transition_id)
             SELECT customer_id, to_pool, at, id FROM (
                SELECT customer_id, to_pool, at, id,
                       row_number() OVER (PARTITION BY customer_id ORDER BY at DESC, id DESC) AS rn
                FROM transitions
             ) WHERE rn = 1",
            [],
        )?;
        tx.execute(
            "DELETE FROM ticks WHERE at >= ?1 OR status <> 'done'",
            params![at],
        )?;
        // Fits after the start are made again on the replay's schedule.
        tx.execute(
            "UPDATE ticks SET model_fit_id = NULL WHERE model_fit_id IN (SELECT id FROM model_fits WHERE as_of >= ?1)",
            params![at],
        )?;
        tx.execute("DELETE FROM model_fits WHERE as_of >= ?1", params![at])?;
        tx.execute("DELETE FROM meta", [])?;
        // A replay judges every customer, whether they wait for onboarding or not.
        tx.execute(
            "UPDATE customers SET onboarding = 0 WHERE onboarding = 1",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Messages created since `since`, per (channel, status).
    pub fn messages_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(crate::base::model::Channel, String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT channel, status, count(*) FROM outreach WHERE created_at >= ?1 GROUP BY channel, status",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (channel, status, n) = row?;
            if let Ok(channel) = channel.parse() {
                out.push((channel, status, n));
            }
        }
        Ok(out)
    }

    /// Treats every queued message as delivered at its due time (a
    /// simulation does not send, but the rules should see contacts happen).
    pub fn deliver_queued_copy(&self) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outreach SET status = 'sent', sent_at = due_at, sender = 'simulation', updated_at = due_at
             WHERE status = 'queued'",
            [],
        )?)
    }
}
