//! Reading customer facts for a tick, in batches, from one consistent snapshot.
//!
//! A tick reads through a [`Reader`] (its own read-only connection) while the
//! store's main connection writes the tick's results. In WAL mode the reader
//! keeps seeing the database as it was when the snapshot began, so every
//! customer of a tick is judged on the same data. Memory stays flat: one
//! batch of customers at a time, each read by customer-id range over the
//! `(customer_id, ...)` indexes. Where SQLite's grouping costs more than the
//! rows themselves (visits, orders, outreach), the rows come in customer
//! order and are summed here.
//! Only events at or before the tick's time count.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, params};

use super::Result;
use crate::base::clock::Timestamp;
use crate::base::model::{FollowupResult, Pool};
use crate::store::record::{CustomerRecord, CustomerRow, OrderAgg, TreatmentAgg};

/// A read-only connection that can hold a snapshot across many batches.
pub struct Reader {
    conn: Connection,
    in_snapshot: bool,
    options: ScanOptions,
}

/// What a scan reads beyond the facts every tick needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// The latest order per (project, department), for treatment cycles.
    pub treatments: bool,
    /// Visit days and repeat spend for the churn model, with the clinic's
    /// UTC offset in seconds (days are `(at + offset) / 86400`).
    pub repeat_offset: Option<i64>,
}

impl Reader {
    pub(super) fn new(conn: Connection) -> Self {
        Reader {
            conn,
            in_snapshot: false,
            options: ScanOptions::default(),
        }
    }

    pub fn with_options(mut self, options: ScanOptions) -> Self {
        self.options = options;
        self
    }

    /// Starts a read transaction: every batch until [`Reader::end_snapshot`]
    /// sees the same data.
    pub fn begin_snapshot(&mut self) -> Result<()> {
        if !self.in_snapshot {
            self.conn.execute_batch("BEGIN DEFERRED")?;
            self.in_snapshot = true;
        }
        Ok(())
    }

    pub fn end_snapshot(&mut self) -> Result<()> {
        if self.in_snapshot {
            self.conn.execute_batch("COMMIT")?;
            self.in_snapshot = false;
        }
        Ok(())
    }

    /// Number of customers of a clinic that exist at `at`.
    pub fn count_customers(&self, clinic_id: i64, at: Timestamp) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM customers c JOIN customer_pools p ON p.customer_id = c.id
             WHERE c.clinic_id = ?1 AND p.entered_at <= ?2",
            params![clinic_id, at],
            |r| r.get(0),
        )?)
    }

    /// The next batch of customers with id greater than `after`, with
    /// everything the facts need, as of `at`. `last` is `None` when no
    /// customer is left; customers who do not exist yet at `at` are skipped,
    /// so a batch can be empty while `last` moves on.
    pub fn scan_batch(
        &self,
        clinic_id: i64,
        at: Timestamp,
        after: i64,
        limit: usize,
    ) -> Result<Batch> {
        let mut records = self.read_customers(clinic_id, after, limit)?;
        let Some(last) = records.last().map(|r| r.customer.id) else {
            return Ok(Batch {
                records,
                last: None,
            });
        };
        let range = IdRange { after, last, at };
        self.merge_pools(range, &mut records)?;
        // Customers without a pool yet, or who enter it after `at`, do not exist for this tick.
        records.retain(|r| r.customer.entered_at <= at);
        self.merge_visits(range, &mut records)?;
        if self.options.treatments || self.options.repeat_offset.is_some() {
            self.merge_order_rows(range, &mut records)?;
        } else {
            self.merge_order_totals(range, &mut records)?;
        }
        self.merge_followups(range, &mut records)?;
        self.merge_outreach(range, &mut records)?;
        Ok(Batch {
            records,
            last: Some(last),
        })
    }

    /// Up to `limit` customers of the clinic with id greater than `after`,
    /// in id order, with nothing but their own row.
    fn read_customers(
        &self,
        clinic_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>> {
        // `+c.clinic_id` keeps SQLite on the rowid range (an index on
        // clinic_id would make every batch scan the whole clinic). The
        // history of a customer waiting for onboarding is looked up for
        // them alone (each a few index probes).
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, external_id, name, gender, birth_date, city, source_channel, tags, advisor,
                    CASE WHEN onboarding = 1 THEN min(created_at,
                        coalesce((SELECT min(at) FROM visits v WHERE v.customer_id = customers.id), created_at),
                        coalesce((SELECT min(at) FROM orders o WHERE o.customer_id = customers.id), created_at),
                        coalesce((SELECT min(at) FROM followups f WHERE f.customer_id = customers.id), created_at))
                    END
                 FROM customers WHERE +clinic_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![clinic_id, after, limit as i64], |r| {
                Ok(CustomerRecord {
                    customer: customer_row(r)?,
                    ..CustomerRecord::default()
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Each customer's pool and when they entered it.
    fn merge_pools(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        // Pools by range and merged here: a sequential read, where a join
        // would look every customer up in the pools table.
        self.merge(
            "SELECT customer_id, pool, entered_at FROM customer_pools
             WHERE customer_id > ?1 AND customer_id <= ?2",
            params![range.after, range.last],
            records,
            |record, r| {
                let pool: String = r.get(1)?;
                record.customer.pool = pool.parse().unwrap_or(Pool::New);
                record.customer.entered_at = r.get(2)?;
                Ok(())
            },
        )
    }

    /// Visits: count, first and last, and the clinic days with a visit.
    fn merge_visits(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        // Visits in (customer, time) order, counted here: cheaper than
        // SQLite's grouping, and the distinct clinic days the churn model
        // needs are simply the day changes (`(at + offset) / 86400` is the
        // clinic day).
        let offset = self.options.repeat_offset;
        self.merge(
            "SELECT customer_id, at FROM visits
             WHERE customer_id > ?1 AND customer_id <= ?2 AND at <= ?3
             ORDER BY customer_id, at",
            params![range.after, range.last, range.at],
            records,
            |record, r| {
                add_visit(record, r.get(1)?, offset);
                Ok(())
            },
        )
    }

    /// Orders row by row, for the treatment cycles and the churn model:
    /// the totals, the repeat spend and the latest order per treatment.
    /// Runs after [`Reader::merge_visits`], which the repeat spend needs.
    fn merge_order_rows(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        // Cycles and the churn model need more than the aggregate: one
        // pass over the orders (index-only, see migration 3) computes
        // it all here, cheaper than one grouped query per need.
        let options = self.options;
        self.merge(
            "SELECT customer_id, at, amount_cents, project, department FROM orders
             WHERE customer_id > ?1 AND customer_id <= ?2 AND at <= ?3
             ORDER BY customer_id",
            params![range.after, range.last, range.at],
            records,
            |record, r| {
                let (project, department) = (text(r, 3)?, text(r, 4)?);
                add_order(record, r.get(1)?, r.get(2)?, project, department, options);
                Ok(())
            },
        )
    }

    /// Orders grouped by SQLite: count, total and latest, all a tick
    /// needs without cycles or a churn model.
    fn merge_order_totals(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        self.merge(
            "SELECT customer_id, count(*), sum(amount_cents), max(at) FROM orders
             WHERE customer_id > ?1 AND customer_id <= ?2 AND at <= ?3
             GROUP BY customer_id ORDER BY customer_id",
            params![range.after, range.last, range.at],
            records,
            |record, r| {
                record.orders = OrderAgg {
                    count: r.get(1)?,
                    total_cents: r.get(2)?,
                    last_at: r.get(3)?,
                };
                Ok(())
            },
        )
    }

    /// Follow-ups: the latest and its result, and the not-smooth ones of
    /// the last 30 days.
    fn merge_followups(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        // Follow-ups in (customer, time) order, off the covering index: the
        // last one read is the latest.
        let at = range.at;
        self.merge(
            "SELECT customer_id, at, result FROM followups
             WHERE customer_id > ?1 AND customer_id <= ?2 AND at <= ?3
             ORDER BY customer_id, at",
            params![range.after, range.last, at],
            records,
            |record, r| {
                let result = text(r, 2)?.and_then(|s| s.parse::<FollowupResult>().ok());
                add_followup(record, r.get(1)?, result, at);
                Ok(())
            },
        )
    }

    /// Messages: contacts in the current pool stay, the last one sent, and
    /// when each rule last fired in this stay. Runs after
    /// [`Reader::merge_pools`], which says when the stay began.
    fn merge_outreach(&self, range: IdRange, records: &mut [CustomerRecord]) -> Result<()> {
        // One pass over the customers' messages (index-only, in (customer,
        // rule) order). Summed here, not in SQL: a grouped join on the
        // pools costs SQLite three times more.
        let at = range.at;
        self.merge(
            "SELECT customer_id, rule_id, created_at, status, sent_at FROM outreach
             WHERE customer_id > ?1 AND customer_id <= ?2 AND created_at <= ?3
             ORDER BY customer_id, rule_id",
            params![range.after, range.last, at],
            records,
            |record, r| {
                let rule = text(r, 1)?.unwrap_or_default();
                let status = text(r, 3)?.unwrap_or_default();
                add_message(record, rule, r.get(2)?, status, r.get(4)?, at);
                Ok(())
            },
        )
    }

    /// Runs an aggregate over a customer-id range (rows ordered by customer
    /// id, first column the id) and applies each row to its customer.
    fn merge(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        records: &mut [CustomerRecord],
        apply: impl Fn(&mut CustomerRecord, &Row<'_>) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut index = 0;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            while index < records.len() && records[index].customer.id < id {
                index += 1;
            }
            // Ids missing from the batch belong to another clinic or to a
            // customer who does not exist yet at `at`.
            if index < records.len() && records[index].customer.id == id {
                apply(&mut records[index], row)?;
            }
        }
        Ok(())
    }
}

// What each row adds to its customer's record. The scan feeds a batch's
// rows through these, and `store::story` one customer's, so a story's facts
// are a tick's facts.

/// A visit at `at`; visits come in time order. `offset`: the clinic's UTC
/// offset when the churn model counts visit days.
pub(super) fn add_visit(record: &mut CustomerRecord, at: Timestamp, offset: Option<i64>) {
    let visits = &mut record.visits;
    if let Some(offset) = offset
        && visits
            .last_at
            .is_none_or(|last| (last + offset) / 86_400 != (at + offset) / 86_400)
    {
        record.repeat.visit_days += 1;
    }
    visits.count += 1;
    visits.first_at = visits.first_at.or(Some(at));
    visits.last_at = Some(at);
}

/// An order, in any order, after every visit: the totals, the repeat
/// spend and the latest order per treatment.
pub(super) fn add_order(
    record: &mut CustomerRecord,
    at: Timestamp,
    cents: i64,
    project: Option<&str>,
    department: Option<&str>,
    options: ScanOptions,
) {
    let orders = &mut record.orders;
    orders.count += 1;
    orders.total_cents += cents;
    orders.last_at = orders.last_at.max(Some(at));
    // Spend on the days after the first visit day.
    if let (Some(offset), Some(first)) = (options.repeat_offset, record.visits.first_at)
        && (at + offset) / 86_400 > (first + offset) / 86_400
    {
        record.repeat.repeat_spend_cents += cents;
    }
    if options.treatments && (project.is_some() || department.is_some()) {
        let seen = record
            .treatments
            .iter_mut()
            .find(|t| t.project.as_deref() == project && t.department.as_deref() == department);
        match seen {
            Some(t) => t.last_at = t.last_at.max(at),
            None => record.treatments.push(TreatmentAgg {
                project: project.map(str::to_string),
                department: department.map(str::to_string),
                last_at: at,
            }),
        }
    }
}

/// A follow-up, in time order (the last one is the latest), judged at `now`.
pub(super) fn add_followup(
    record: &mut CustomerRecord,
    followed: Timestamp,
    result: Option<FollowupResult>,
    now: Timestamp,
) {
    // 2592000 s is the 30-day window of `not_smooth_followups_30d`.
    let followups = &mut record.followups;
    if result != Some(FollowupResult::Smooth) && followed > now - 2_592_000 {
        followups.not_smooth_30d += 1;
    }
    followups.last_at = Some(followed);
    followups.last_result = result;
}

/// A message, in rule order, after the pool is known, judged at `now`:
/// the last contact sent, contacts in the current pool stay, when each
/// rule last fired in it, and when each rule last fired at all.
pub(super) fn add_message(
    record: &mut CustomerRecord,
    rule: &str,
    created: Timestamp,
    status: &str,
    sent: Option<Timestamp>,
    now: Timestamp,
) {
    let outreach = &mut record.outreach;
    if status == "sent" && sent.is_some_and(|s| s <= now) {
        outreach.last_contact_at = outreach.last_contact_at.max(sent);
    }
    latest(&mut record.last_fired, rule, created);
    if created < record.customer.entered_at {
        return;
    }
    if matches!(status, "queued" | "sending" | "awaiting" | "sent") {
        outreach.contacts_in_pool += 1;
    }
    latest(&mut record.fired_in_pool, rule, created);
}

/// Keeps the latest time of `rule` in a list filled in rule order.
fn latest(fired: &mut Vec<(String, Timestamp)>, rule: &str, at: Timestamp) {
    match fired.last_mut() {
        Some((id, last)) if id == rule => *last = (*last).max(at),
        _ => fired.push((rule.to_string(), at)),
    }
}

/// The customer-id range of a batch, `(after, last]`, and the tick's time.
#[derive(Debug, Clone, Copy)]
struct IdRange {
    after: i64,
    last: i64,
    at: Timestamp,
}

/// One batch of a scan.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<CustomerRecord>,
    /// The highest customer id read; the next batch starts after it.
    pub last: Option<i64>,
}

/// A nullable text column without allocating.
fn text<'r>(r: &'r Row<'_>, index: usize) -> rusqlite::Result<Option<&'r str>> {
    match r.get_ref(index)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|e| rusqlite::Error::Utf8Error(index, e)),
        other => Err(rusqlite::Error::InvalidColumnType(
            index,
            "text".into(),
            other.data_type(),
        )),
    }
}

pub(super) fn customer_row(r: &Row<'_>) -> rusqlite::Result<CustomerRow> {
    Ok(CustomerRow {
        id: r.get(0)?,
        external_id: r.get(1)?,
        name: r.get(2)?,
        gender: r.get(3)?,
        birth_date: r.get(4)?,
        city: r.get(5)?,
        source_channel: r.get(6)?,
        tags: r.get(7)?,
        advisor: r.get(8)?,
        history_from: r.get(9)?,
        pool: Pool::New,
        // Set from the pools table; a customer without a pool never exists for a tick.
        entered_at: Timestamp::MAX,
    })
}
