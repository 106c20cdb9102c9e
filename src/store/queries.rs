//! Read-only questions marketers and operators ask: `recall status`,
//! `recall log` and the move history.

use rusqlite::{OptionalExtension, Row, params_from_iter, types::Value};

use super::ticks::TickRow;
use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::model::{Channel, OutreachStatus, Pool};

/// What `recall status` shows.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub customers: i64,
    /// Customers per pool, every pool listed.
    pub pools: Vec<(Pool, i64)>,
    /// Messages per (channel, status), only non-zero counts.
    pub outreach: Vec<(Channel, OutreachStatus, i64)>,
    /// Queued messages already due.
    pub due_now: i64,
    pub last_tick: Option<TickRow>,
    pub unfinished_tick: Option<TickRow>,
    /// Queued messages that failed and wait for a retry, per channel (also
    /// counted as `queued` in `outreach`).
    pub retrying: Vec<Retrying>,
    /// How each sender is doing, as the dispatcher last recorded it.
    pub senders: Vec<crate::store::health::SenderHealth>,
}

/// The queued messages of a channel that are retrying after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrying {
    pub channel: Channel,
    pub count: i64,
    /// The error of the one that failed last.
    pub last_error: String,
}

/// Which outreach rows `recall log` shows.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// The clinic's id of the customer.
    pub customer: Option<String>,
    pub rule: Option<String>,
    pub channel: Option<Channel>,
    pub status: Option<OutreachStatus>,
    /// Messages created at or after this time.
    pub since: Option<Timestamp>,
    /// The newest this many; `None` for all.
    pub limit: Option<u32>,
}

/// One message of the outreach log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i64,
    pub created_at: Timestamp,
    pub due_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub customer: String,
    pub rule_id: String,
    pub pool: String,
    pub channel: String,
    pub template: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sender: Option<String>,
    pub provider_id: Option<String>,
    /// What sending it cost, in thousandths of a yuan.
    pub cost_milli: i64,
    pub subject: Option<String>,
    pub content: String,
}

/// One pool move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveEntry {
    pub id: i64,
    pub at: Timestamp,
    pub customer: String,
    pub from: Option<String>,
    pub to: String,
    pub rule_id: Option<String>,
    pub reason: String,
}

/// Builds `WHERE` clauses with positional parameters.
#[derive(Default)]
struct Where {
    clauses: Vec<&'static str>,
    values: Vec<Value>,
}

impl Where {
    fn add(&mut self, clause: &'static str, value: impl Into<Value>) {
        self.clauses.push(clause);
        self.values.push(value.into());
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn log_entry(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: r.get(0)?,
        created_at: r.get(1)?,
        due_at: r.get(2)?,
        sent_at: r.get(3)?,
        updated_at: r.get(4)?,
        customer: r.get(5)?,
        rule_id: r.get(6)?,
        pool: r.get(7)?,
        channel: r.get(8)?,
        template: r.get(9)?,
        status: r.get(10)?,
        attempts: r.get(11)?,
        last_error: r.get(12)?,
        sender: r.get(13)?,
        provider_id: r.get(14)?,
        subject: r.get(15)?,
        content: r.get(16)?,
        cost_milli: r.get(17)?,
    })
}

impl Store {
    pub fn status(&self, now: Timestamp) -> Result<Status> {
        let mut status = Status {
            customers: self
                .conn
                .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?,
            ..Status::default()
        };
        let mut counts = std::collections::HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT pool, count(*) FROM customer_pools GROUP BY pool")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (pool, n) = row?;
            counts.insert(pool, n);
        }
        status.pools = Pool::ALL
            .iter()
            .map(|p| (*p, counts.get(p.as_str()).copied().unwrap_or(0)))
            .collect();
        let mut stmt = self.conn.prepare(
            "SELECT channel, status, count(*) FROM outreach GROUP BY channel, status ORDER BY channel, status",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (channel, state, n) = row?;
            if let (Ok(channel), Ok(state)) = (channel.parse(), state.parse()) {
                status.outreach.push((channel, state, n));
            }
        }
        status.due_now = self.conn.query_row(
            "SELECT count(*) FROM outreach WHERE status = 'queued' AND due_at <= ?1",
            [now],
            |r| r.get(0),
        )?;
        status.last_tick = self.last_tick()?;
        status.unfinished_tick = self.unfinished_tick()?;
        // A retry sets `retrying_since`; the last error is the newest's.
        let mut stmt = self.conn.prepare(
            "SELECT channel, count(*),
                (SELECT last_error FROM outreach l WHERE l.channel = o.channel AND l.status = 'queued'
                   AND l.retrying_since IS NOT NULL ORDER BY l.updated_at DESC, l.id DESC LIMIT 1)
             FROM outreach o WHERE status = 'queued' AND retrying_since IS NOT NULL
             GROUP BY channel ORDER BY channel",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })? {
            let (channel, count, last_error) = row?;
            if let Ok(channel) = channel.parse() {
                status.retrying.push(Retrying {
                    channel,
                    count,
                    last_error: last_error.unwrap_or_default(),
                });
            }
        }
        status.senders = self.sender_health()?;
        Ok(status)
    }

    /// The outreach log, oldest first, newest `limit` entries.
    pub fn log(&self, filter: &LogFilter) -> Result<Vec<LogEntry>> {
        let mut w = Where::default();
        if let Some(customer) = &filter.customer {
            w.add("c.external_id = ?", customer.clone());
        }
        if let Some(rule) = &filter.rule {
            w.add("o.rule_id = ?", rule.clone());
        }
        if let Some(channel) = filter.channel {
            w.add("o.channel = ?", channel.as_str().to_string());
        }
        if let Some(status) = filter.status {
            w.add("o.status = ?", status.as_str().to_string());
        }
        if let Some(since) = filter.since {
            w.add("o.created_at >= ?", since);
        }
        let limit = filter.limit.map_or(-1, i64::from);
        let sql = format!(
            "SELECT * FROM (
                SELECT o.id, o.created_at, o.due_at, o.sent_at, o.updated_at, c.external_id, o.rule_id,
                       o.pool, o.channel, o.template, o.status, o.attempts, o.last_error, o.sender,
                       o.provider_id, o.subject, o.content, o.cost_milli
                FROM outreach o JOIN customers c ON c.id = o.customer_id
                {} ORDER BY o.created_at DESC, o.id DESC LIMIT {limit}
             ) ORDER BY created_at, id",
            w.sql()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(w.values), log_entry)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One message of the outreach log.
    pub fn message(&self, id: i64) -> Result<Option<LogEntry>> {
        Ok(self
            .conn
            .query_row(
                "SELECT o.id, o.created_at, o.due_at, o.sent_at, o.updated_at, c.external_id, o.rule_id,
                        o.pool, o.channel, o.template, o.status, o.attempts, o.last_error, o.sender,
                        o.provider_id, o.subject, o.content, o.cost_milli
                 FROM outreach o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?1",
                [id],
                log_entry,
            )
            .optional()?)
    }

    /// The moves and messages one tick wrote.
    pub fn tick_results(&self, tick_id: i64) -> Result<(Vec<MoveEntry>, Vec<LogEntry>)> {
        let mut stmt = self.conn.prepare(
            "SELECT t.id, t.at, c.external_id, t.from_pool, t.to_pool, t.rule_id, t.reason
             FROM transitions t JOIN customers c ON c.id = t.customer_id
             WHERE t.tick_id = ?1 ORDER BY t.id",
        )?;
        let moves = stmt
            .query_map([tick_id], |r| {
                Ok(MoveEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    customer: r.get(2)?,
                    from: r.get(3)?,
                    to: r.get(4)?,
                    rule_id: r.get(5)?,
                    reason: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.created_at, o.due_at, o.sent_at, o.updated_at, c.external_id, o.rule_id,
                    o.pool, o.channel, o.template, o.status, o.attempts, o.last_error, o.sender,
                    o.provider_id, o.subject, o.content, o.cost_milli
             FROM outreach o JOIN customers c ON c.id = o.customer_id
             WHERE o.tick_id = ?1 ORDER BY o.id",
        )?;
        let messages = stmt
            .query_map([tick_id], log_entry)?
            .collect::<rusqlite::Result<_>>()?;
        Ok((moves, messages))
    }

    /// The current pool of a customer, by the clinic's id.
    pub fn pool_of(&self, external_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT p.pool FROM customer_pools p JOIN customers c ON c.id = p.customer_id
                 WHERE c.external_id = ?1",
                [external_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Pool moves, oldest first, newest `limit` entries.
    pub fn moves(&self, filter: &LogFilter) -> Result<Vec<MoveEntry>> {
        let mut w = Where::default();
        if let Some(customer) = &filter.customer {
            w.add("c.external_id = ?", customer.clone());
        }
        if let Some(rule) = &filter.rule {
            w.add("t.rule_id = ?", rule.clone());
        }
        if let Some(since) = filter.since {
            w.add("t.at >= ?", since);
        }
        let limit = filter.limit.map_or(-1, i64::from);
        let sql = format!(
            "SELECT * FROM (
                SELECT t.id, t.at, c.external_id, t.from_pool, t.to_pool, t.rule_id, t.reason
                FROM transitions t JOIN customers c ON c.id = t.customer_id
                {} ORDER BY t.at DESC, t.id DESC LIMIT {limit}
             ) ORDER BY at, id",
            w.sql()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(w.values), |r| {
            Ok(MoveEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                customer: r.get(2)?,
                from: r.get(3)?,
                to: r.get(4)?,
                rule_id: r.get(5)?,
                reason: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
