//! Writing what a tick decided: pool moves and new outreach, batch by batch.
//!
//! A tick is a row in `ticks` with a cursor: the highest customer id whose
//! decisions are committed. Each batch commits its moves, its messages and
//! the new cursor in one transaction, so a tick interrupted anywhere resumes
//! after the last committed customer and never judges a customer twice. Unique
//! indexes on (tick, customer) for moves and (tick, customer, rule, action)
//! for messages make a doubled write impossible even if that reasoning failed.

use rusqlite::{OptionalExtension, Row, params};

use super::{Result, Store, StoreError};
use crate::base::clock::Timestamp;
use crate::base::content::Content;
use crate::base::model::{Channel, Pool};

/// A tick as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRow {
    pub id: i64,
    /// The time the tick judged customers at.
    pub at: Timestamp,
    pub done: bool,
    /// Customers with an id up to this one have been judged.
    pub cursor: i64,
    pub evaluated: i64,
    pub moves: i64,
    pub messages: i64,
    pub errors: i64,
    /// When the tick started and finished, by the clock its caller gave
    /// (`engine::TickOptions::clock`): the wall clock for a tick that runs
    /// now, the tick's own time for a replay.
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// What [`Store::begin_tick`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickStart {
    /// A new tick, starting from the first customer.
    New(TickRow),
    /// A tick at this time was interrupted; it continues after its cursor.
    Resume(TickRow),
    /// A tick at this time already finished: there is nothing to do.
    AlreadyDone(TickRow),
    /// A tick at another time was interrupted and must finish first.
    Unfinished(TickRow),
}

/// A pool move decided by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub customer_id: i64,
    pub from: Pool,
    pub to: Pool,
    pub rule_id: String,
    pub reason: String,
}

/// A message a rule queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub customer_id: i64,
    pub rule_id: String,
    /// Position of the action in the rule, so two actions of one rule are two messages.
    pub action_index: i64,
    /// The pool the customer is in after the tick.
    pub pool: Pool,
    pub channel: Channel,
    pub template: String,
    /// What the template rendered (empty when it failed: see `failure`).
    pub content: Content,
    /// The message rendered for the channel's fallback (JSON of
    /// `store::outbox::Fallback`), if the channel has one.
    pub fallback: Option<String>,
    pub due_at: Timestamp,
    /// Set when the message could not even be written (its template failed
    /// to render): it is recorded as `failed` with this error, never dropped.
    pub failure: Option<String>,
    /// The customer is in the rule's control group: recorded, never sent.
    pub held_out: bool,
    /// Days after the contact in which a return counts as the rule's recall.
    pub attribution_days: i64,
    /// Past this time an unsent message is not sent but `expired` (the
    /// action's `expires_after` after `due_at`).
    pub expires_at: Option<Timestamp>,
    /// The staff member a phone message is for (the customer's advisor,
    /// when the action says `assign = "advisor"`); `None`: the round robin.
    pub assign_to: Option<String>,
    /// Not sent (`stale`) if, when it is due, the customer is in another
    /// pool than `pool` or visited after it was queued (the action's
    /// `stale = "cancel"`).
    pub cancel_if_stale: bool,
}

/// The results for one batch of customers.
#[derive(Debug, Clone, Default)]
pub struct TickBatch {
    /// The highest customer id in the batch.
    pub cursor: i64,
    pub evaluated: i64,
    pub errors: i64,
    pub moves: Vec<Move>,
    pub messages: Vec<NewMessage>,
    /// Customers an import added who were judged for the first time (as
    /// genuinely new): they no longer wait for onboarding.
    pub judged_first: Vec<i64>,
}

const TICK_COLUMNS: &str =
    "id, at, status, cursor, evaluated, moves, messages, errors, started_at, finished_at";

fn tick_row(r: &Row<'_>) -> rusqlite::Result<TickRow> {
    let status: String = r.get(2)?;
    Ok(TickRow {
        id: r.get(0)?,
        at: r.get(1)?,
        done: status == "done",
        cursor: r.get(3)?,
        evaluated: r.get(4)?,
        moves: r.get(5)?,
        messages: r.get(6)?,
        errors: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
    })
}

impl Store {
    /// Starts (or finds) the tick at `at`. `describe` formats times for the
    /// time-backwards error.
    pub fn begin_tick(
        &self,
        at: Timestamp,
        wall_now: Timestamp,
        describe: impl Fn(Timestamp) -> String,
    ) -> Result<TickStart> {
        let same: Option<TickRow> = self
            .conn
            .query_row(
                &format!("SELECT {TICK_COLUMNS} FROM ticks WHERE at = ?1"),
                [at],
                tick_row,
            )
            .optional()?;
        if let Some(tick) = same {
            return Ok(if tick.done {
                TickStart::AlreadyDone(tick)
            } else {
                TickStart::Resume(tick)
            });
        }
        if let Some(unfinished) = self.unfinished_tick()? {
            return Ok(TickStart::Unfinished(unfinished));
        }
        if let Some(last) = self.last_tick()?
            && last.at > at
        {
            return Err(StoreError::TimeBackwards {
                at: describe(at),
                last: describe(last.at),
            });
        }
        self.conn.execute(
            "INSERT INTO ticks (at, status, started_at) VALUES (?1, 'running', ?2)",
            params![at, wall_now],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(TickStart::New(self.tick(id)?))
    }

    pub fn tick(&self, id: i64) -> Result<TickRow> {
        Ok(self.conn.query_row(
            &format!("SELECT {TICK_COLUMNS} FROM ticks WHERE id = ?1"),
            [id],
            tick_row,
        )?)
    }

    /// The interrupted tick, if one is waiting to be finished.
    pub fn unfinished_tick(&self) -> Result<Option<TickRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {TICK_COLUMNS} FROM ticks WHERE status = 'running' ORDER BY at LIMIT 1"
                ),
                [],
                tick_row,
            )
            .optional()?)
    }

    /// The tick with the latest time, finished or not.
    pub fn last_tick(&self) -> Result<Option<TickRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {TICK_COLUMNS} FROM ticks ORDER BY at DESC LIMIT 1"),
                [],
                tick_row,
            )
            .optional()?)
    }

    /// Commits one batch of a tick: its moves, its messages and the cursor,
    /// all or nothing. Returns the number of moves and messages written.
    pub fn commit_batch(&mut self, tick: &TickRow, batch: &TickBatch) -> Result<(i64, i64)> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut moves = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO transitions (customer_id, tick_id, from_pool, to_pool, rule_id, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE customer_pools SET pool = ?2, entered_at = ?3, transition_id = ?4
                 WHERE customer_id = ?1 AND pool = ?5",
            )?;
            for m in &batch.moves {
                let inserted = insert.execute(params![
                    m.customer_id,
                    tick.id,
                    m.from.as_str(),
                    m.to.as_str(),
                    m.rule_id,
                    m.reason,
                    tick.at
                ])?;
                if inserted == 1 {
                    let transition = tx.last_insert_rowid();
                    update.execute(params![
                        m.customer_id,
                        m.to.as_str(),
                        tick.at,
                        transition,
                        m.from.as_str()
                    ])?;
                    moves += 1;
                }
            }
        }
        let mut messages = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outreach (customer_id, tick_id, rule_id, action_index, pool, channel,
                    template, subject, content, content_html, params, fallback, attribution_days, status,
                    last_error, created_at, due_at, updated_at, expires_at, assign_to, cancel_if_stale)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?14, ?15, ?17,
                    CASE WHEN ?13 IS NOT NULL THEN 'failed' WHEN ?16 THEN 'held_out' ELSE 'queued' END,
                    ?13, ?11, ?12, ?11, ?18, ?19, ?20)",
            )?;
            for m in &batch.messages {
                messages += insert.execute(params![
                    m.customer_id,
                    tick.id,
                    m.rule_id,
                    m.action_index,
                    m.pool.as_str(),
                    m.channel.as_str(),
                    m.template,
                    m.content.subject,
                    m.content.body,
                    m.content.html,
                    tick.at,
                    m.due_at,
                    m.failure,
                    m.content.params,
                    m.fallback,
                    m.held_out,
                    m.attribution_days,
                    m.expires_at,
                    m.assign_to,
                    m.cancel_if_stale
                ])? as i64;
            }
        }
        {
            let mut judged =
                tx.prepare_cached("UPDATE customers SET onboarding = 0 WHERE id = ?1")?;
            for customer in &batch.judged_first {
                judged.execute([customer])?;
            }
        }
        tx.prepare_cached(
            "UPDATE ticks SET cursor = ?2, evaluated = evaluated + ?3, moves = moves + ?4,
                messages = messages + ?5, errors = errors + ?6
             WHERE id = ?1",
        )?
        .execute(params![
            tick.id,
            batch.cursor,
            batch.evaluated,
            moves,
            messages,
            batch.errors
        ])?;
        tx.commit()?;
        Ok((moves, messages))
    }

    /// Marks a tick finished.
    pub fn finish_tick(&self, id: i64, wall_now: Timestamp) -> Result<TickRow> {
        self.conn.execute(
            "UPDATE ticks SET status = 'done', finished_at = ?2 WHERE id = ?1",
            params![id, wall_now],
        )?;
        self.tick(id)
    }
}
