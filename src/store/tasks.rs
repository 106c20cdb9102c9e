//! Phone-call tasks: created by the `phone_tasks` sender, worked by the
//! clinic's staff through `recall tasks`, and closed with an outcome that
//! settles the message and is recorded as a follow-up (回访).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::i18n::{Lang, Text, t};
use crate::base::model::FollowupResult;

/// What a call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Reached, and an appointment was booked.
    ReachedBooked,
    /// Reached and interested, no appointment yet.
    ReachedInterested,
    /// Reached, not interested.
    ReachedDeclined,
    /// Nobody answered: the call is tried again on a later day.
    NoAnswer,
    /// The number is not the customer's.
    WrongNumber,
    /// The customer asked not to be called again.
    OptOut,
}

impl CallOutcome {
    pub const ALL: &'static [CallOutcome] = &[
        CallOutcome::ReachedBooked,
        CallOutcome::ReachedInterested,
        CallOutcome::ReachedDeclined,
        CallOutcome::NoAnswer,
        CallOutcome::WrongNumber,
        CallOutcome::OptOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::ReachedBooked => "reached_booked",
            CallOutcome::ReachedInterested => "reached_interested",
            CallOutcome::ReachedDeclined => "reached_declined",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::WrongNumber => "wrong_number",
            CallOutcome::OptOut => "opt_out",
        }
    }

    /// The outcome as the front desk says it: its code in English, its
    /// word in Chinese (已预约, 有意向, 拒绝, 未接通, 空号, 退订).
    pub fn name(self) -> Text {
        match self {
            CallOutcome::ReachedBooked => t!("tasks.outcome.reached_booked"),
            CallOutcome::ReachedInterested => t!("tasks.outcome.reached_interested"),
            CallOutcome::ReachedDeclined => t!("tasks.outcome.reached_declined"),
            CallOutcome::NoAnswer => t!("tasks.outcome.no_answer"),
            CallOutcome::WrongNumber => t!("tasks.outcome.wrong_number"),
            CallOutcome::OptOut => t!("tasks.outcome.opt_out"),
        }
    }

    /// An outcome from its code (`reached_booked`) or its Chinese word
    /// (`已预约`), spaces around it ignored.
    pub fn parse(text: &str) -> Option<CallOutcome> {
        let text = text.trim();
        CallOutcome::ALL
            .iter()
            .copied()
            .find(|o| o.as_str() == text || o.name().render(Lang::Zh) == text)
    }

    /// Every code with its Chinese word: `reached_booked (已预约), …`.
    pub fn known() -> String {
        CallOutcome::ALL
            .iter()
            .map(|o| format!("{} ({})", o.as_str(), o.name().render(Lang::Zh)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The follow-up result the call counts as, for the rules.
    pub fn followup(self) -> FollowupResult {
        match self {
            CallOutcome::ReachedBooked | CallOutcome::ReachedInterested => FollowupResult::Smooth,
            CallOutcome::ReachedDeclined => FollowupResult::NotSmooth,
            CallOutcome::NoAnswer | CallOutcome::WrongNumber => FollowupResult::Unreachable,
            CallOutcome::OptOut => FollowupResult::Refused,
        }
    }
}

/// A task as staff see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: i64,
    pub outreach_id: i64,
    pub attempt: i64,
    pub staff: String,
    pub due_date: String,
    pub status: String,
    pub outcome: Option<String>,
    pub note: Option<String>,
    pub script: String,
    pub created_at: Timestamp,
    pub done_at: Option<Timestamp>,
    pub customer: String,
    pub customer_name: String,
    pub phone: Option<String>,
    pub rule_id: String,
}

const TASK_COLUMNS: &str =
    "t.id, t.outreach_id, t.attempt, t.staff, t.due_date, t.status, t.outcome, t.note,
    t.script, t.created_at, t.done_at, c.external_id, c.name, c.phone, o.rule_id";

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        outreach_id: r.get(1)?,
        attempt: r.get(2)?,
        staff: r.get(3)?,
        due_date: r.get(4)?,
        status: r.get(5)?,
        outcome: r.get(6)?,
        note: r.get(7)?,
        script: r.get(8)?,
        created_at: r.get(9)?,
        done_at: r.get(10)?,
        customer: r.get(11)?,
        customer_name: r.get(12)?,
        phone: r.get(13)?,
        rule_id: r.get(14)?,
    })
}

/// A task a staff notice is owed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedNotice {
    pub id: i64,
    pub staff: String,
    /// `YYYY-MM-DD`, the clinic-calendar day the call is planned for.
    pub due_date: String,
    /// Not yet done.
    pub open: bool,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub staff: Option<String>,
    /// `YYYY-MM-DD`: tasks planned for this day.
    pub due_date: Option<String>,
    /// `open`, `done`, or all when `None`.
    pub status: Option<String>,
}

/// A customer's recent history, for call scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// (time, department)
    pub visits: Vec<(Timestamp, Option<String>)>,
    /// (time, amount in cents, project)
    pub orders: Vec<(Timestamp, i64, Option<String>)>,
    /// (time, staff, result, note)
    pub followups: Vec<(Timestamp, Option<String>, String, Option<String>)>,
}

/// A call task to create, for one attempt of a phone message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask<'a> {
    pub outreach_id: i64,
    pub attempt: i64,
    pub customer_id: i64,
    /// Who makes the call.
    pub staff: &'a str,
    /// The call went to the customer's own advisor, not by round robin: the
    /// round robin's turn does not move.
    pub via_advisor: bool,
    /// `YYYY-MM-DD`, the clinic-calendar day the call is planned for.
    pub due_date: &'a str,
    pub script: &'a str,
    /// A staff notice is owed for it.
    pub notice: bool,
}

/// How `complete_task` should settle the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The contact happened: the message counts as sent.
    Sent,
    /// Try again at this time (a new task on a later day).
    Retry(Timestamp),
    /// The message failed with this error.
    Failed(&'static str),
    /// The customer opted out of calls.
    OptedOut,
}

impl Store {
    /// Creates the task for one attempt of a phone message (or returns the
    /// existing one: creating is idempotent), owing a staff notice about it
    /// if `notice`. Returns its id.
    pub fn create_task(&self, task: &NewTask<'_>, now: Timestamp) -> Result<i64> {
        let NewTask {
            outreach_id,
            attempt,
            customer_id,
            staff,
            via_advisor,
            due_date,
            script,
            notice,
        } = *task;
        self.conn.execute(
            "INSERT OR IGNORE INTO call_tasks (outreach_id, attempt, customer_id, staff, due_date, script, status, created_at, notice_pending, via_advisor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8, ?9)",
            params![outreach_id, attempt, customer_id, staff, due_date, script, now, notice, via_advisor],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM call_tasks WHERE outreach_id = ?1 AND attempt = ?2",
            params![outreach_id, attempt],
            |r| r.get(0),
        )?)
    }

    /// The tasks a staff notice is still owed for (created with `notice`),
    /// oldest first.
    pub fn notices_owed(&self) -> Result<Vec<OwedNotice>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, staff, due_date, status = 'open' FROM call_tasks
             WHERE notice_pending = 1 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OwedNotice {
                id: r.get(0)?,
                staff: r.get(1)?,
                due_date: r.get(2)?,
                open: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The notice about these tasks went through, or was given up: none is
    /// owed for them any more.
    pub fn notices_settled(&mut self, ids: &[i64]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE call_tasks SET notice_pending = 0 WHERE id = ?1")?;
            for id in ids {
                update.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Tasks planned for a day, per staff member.
    pub fn tasks_per_staff(&self, due_date: &str) -> Result<BTreeMap<String, i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT staff, count(*) FROM call_tasks WHERE due_date = ?1 GROUP BY staff",
        )?;
        let rows = stmt.query_map([due_date], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The staff member who got the most recent task by round robin (not
    /// as a customer's advisor), for the next turn.
    pub fn last_assigned_staff(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT staff FROM call_tasks WHERE via_advisor = 0 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The staff member the tick meant a phone message for (its action's
    /// `assign = "advisor"`: the customer's advisor then), if any.
    pub fn assigned_to(&self, outreach_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT assign_to FROM outreach WHERE id = ?1",
                [outreach_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn task(&self, id: i64) -> Result<Option<TaskRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM call_tasks t JOIN customers c ON c.id = t.customer_id
                     JOIN outreach o ON o.id = t.outreach_id WHERE t.id = ?1"
                ),
                [id],
                task_row,
            )
            .optional()?)
    }

    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM call_tasks t JOIN customers c ON c.id = t.customer_id
             JOIN outreach o ON o.id = t.outreach_id
             WHERE (?1 IS NULL OR t.staff = ?1) AND (?2 IS NULL OR t.due_date = ?2) AND (?3 IS NULL OR t.status = ?3)
             ORDER BY t.due_date, t.staff, t.id"
        ))?;
        let rows = stmt.query_map(
            params![filter.staff, filter.due_date, filter.status],
            task_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The customer's last `limit` visits, orders and follow-ups, newest first.
    pub fn history(&self, customer_id: i64, limit: i64) -> Result<History> {
        let mut history = History::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, department FROM visits WHERE customer_id = ?1 ORDER BY at DESC LIMIT ?2",
        )?;
        history.visits = stmt
            .query_map(params![customer_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, amount_cents, project FROM orders WHERE customer_id = ?1 ORDER BY at DESC LIMIT ?2",
        )?;
        history.orders = stmt
            .query_map(params![customer_id, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, staff, result, note FROM followups WHERE customer_id = ?1 ORDER BY at DESC LIMIT ?2",
        )?;
        history.followups = stmt
            .query_map(params![customer_id, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(history)
    }

    /// Closes an open task with what the call achieved, in one transaction:
    /// the task, the message it belongs to (`settle`), the customer's phone
    /// consent on an opt-out, and a follow-up record the rules will see.
    /// Returns `None` when there is no open task with this id.
    pub fn complete_task(
        &mut self,
        id: i64,
        outcome: CallOutcome,
        note: Option<&str>,
        settle: Settle,
        now: Timestamp,
    ) -> Result<Option<TaskRow>> {
        let completion = Completion {
            id,
            outcome,
            note,
            settle,
        };
        match self.complete_tasks(&[completion], now)? {
            None => self.task(id),
            Some(_) => Ok(None),
        }
    }

    /// Closes several open tasks as [`Store::complete_task`] closes one, all
    /// in one transaction: all of them, or none when one of them is not
    /// open (its id is returned; nothing is written).
    pub fn complete_tasks(
        &mut self,
        completions: &[Completion<'_>],
        now: Timestamp,
    ) -> Result<Option<i64>> {
        let tx = self.conn.transaction()?;
        for completion in completions {
            if !complete_in(&tx, completion, now)? {
                // Dropping the transaction rolls back what came before.
                return Ok(Some(completion.id));
            }
        }
        tx.commit()?;
        Ok(None)
    }
}

/// One task to close: what the call achieved and how its message settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion<'a> {
    pub id: i64,
    pub outcome: CallOutcome,
    pub note: Option<&'a str>,
    pub settle: Settle,
}

/// Closes one open task inside `tx`; `false` when it is not open.
fn complete_in(
    tx: &rusqlite::Transaction<'_>,
    completion: &Completion<'_>,
    now: Timestamp,
) -> Result<bool> {
    let Completion {
        id,
        outcome,
        note,
        settle,
    } = *completion;
    let open: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT outreach_id, customer_id, staff FROM call_tasks WHERE id = ?1 AND status = 'open'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((outreach_id, customer_id, staff)) = open else {
        return Ok(false);
    };
    tx.execute(
        "UPDATE call_tasks SET status = 'done', outcome = ?2, note = ?3, done_at = ?4 WHERE id = ?1",
        params![id, outcome.as_str(), note, now],
    )?;
    let why = format!("call: {}", outcome.as_str());
    match settle {
        Settle::Sent => {
            tx.execute(
                    "UPDATE outreach SET status = 'sent', updated_at = ?2, polled_at = ?2, last_error = NULL
                     WHERE id = ?1 AND status = 'awaiting'",
                    params![outreach_id, now],
                )?;
        }
        Settle::Retry(at) => {
            tx.execute(
                    "UPDATE outreach SET status = 'queued', due_at = ?2, updated_at = ?3, last_error = ?4
                     WHERE id = ?1 AND status = 'awaiting'",
                    params![outreach_id, at, now, why],
                )?;
        }
        Settle::Failed(error) => {
            tx.execute(
                "UPDATE outreach SET status = 'failed', updated_at = ?2, last_error = ?3
                     WHERE id = ?1 AND status = 'awaiting'",
                params![outreach_id, now, format!("{why}: {error}")],
            )?;
        }
        Settle::OptedOut => {
            tx.execute(
                "UPDATE outreach SET status = 'opted_out', updated_at = ?2, last_error = ?3
                     WHERE id = ?1 AND status = 'awaiting'",
                params![outreach_id, now, why],
            )?;
            tx.execute(
                "UPDATE customers SET consent_phone = 0, updated_at = ?2 WHERE id = ?1",
                params![customer_id, now],
            )?;
        }
    }
    let kinds: &[&str] = match outcome {
        CallOutcome::ReachedBooked => &["responded", "booked"],
        CallOutcome::ReachedInterested | CallOutcome::ReachedDeclined => &["responded"],
        CallOutcome::OptOut => &["opted_out"],
        CallOutcome::NoAnswer | CallOutcome::WrongNumber => &[],
    };
    for kind in kinds {
        tx.execute(
            "INSERT OR IGNORE INTO outcomes (outreach_id, kind, at, amount_cents, source, ref)
                 VALUES (?1, ?2, ?3, 0, 'call', ?4)",
            params![outreach_id, kind, now, format!("task:{id}")],
        )?;
    }
    let followup_note = match note {
        Some(note) => format!("call task #{id}: {}; {note}", outcome.as_str()),
        None => format!("call task #{id}: {}", outcome.as_str()),
    };
    tx.execute(
        "INSERT INTO followups (customer_id, at, staff, result, note) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            customer_id,
            now,
            staff,
            outcome.followup().as_str(),
            followup_note
        ],
    )?;
    Ok(true)
}
