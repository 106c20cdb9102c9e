//! One customer's story: finding a customer by clinic id, name or phone,
//! and reading everything recall holds about them in one snapshot — the
//! customer, the pool and every move with its reason, visits, orders,
//! follow-ups, messages with their status and outcomes, call tasks.
//!
//! [`Story::record_at`] turns a story into the record a tick at a given
//! time reads, through the scan's own steps (`scan::add_visit`, …), so the
//! facts derived from it are the facts that tick judged. The CLI's `recall
//! customer` and the web console show a story; neither joins tables itself.
//!
//! Search is served by indexes (migration 11): the clinic id by
//! `customers (clinic_id, external_id)`, the last four digits of a phone by
//! `customers_phone_tail` (through the view `customer_phone_tails`), a word
//! of a name by `customer_name_grams` (its first pair of characters, or its
//! one character). Candidates are then matched in full here.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::model::{FollowupResult, Pool};
use crate::base::phone::{self, CountryCode, Phone};
use crate::store::record::{CustomerRecord, CustomerRow};
use crate::store::scan::{self, ScanOptions};
use crate::store::tasks::CallOutcome;

/// Fewer digits than this are the end of a number, not a whole one.
const WHOLE_NUMBER_DIGITS: usize = 7;

/// What a person typed to find a customer, read: `C0042` (a clinic id),
/// `孙磊` (part of a name), `138 0013 8000` (a whole number in any format),
/// `孙 8000` (part of a name and the last digits of the phone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The query as typed, tried as a clinic id.
    pub id: String,
    /// The query read as a whole phone number.
    pub phone: Option<Phone>,
    /// A word of four or more digits: how the phone ends.
    pub tail: Option<String>,
    /// The other words: each must be part of the name (ASCII letters in
    /// any case).
    pub words: Vec<String>,
    /// The country of numbers typed or stored without a country code (the
    /// clinic's `country_code`).
    pub region: CountryCode,
}

impl Search {
    /// Reads a query of a mainland clinic; `None` when it is blank.
    pub fn parse(query: &str) -> Option<Search> {
        Search::parse_in(query, CountryCode::CHINA)
    }

    /// Reads a query of a clinic whose numbers without a country code are
    /// `region`'s; `None` when it is blank.
    pub fn parse_in(query: &str, region: CountryCode) -> Option<Search> {
        let id = query.trim().to_string();
        if id.is_empty() {
            return None;
        }
        let digits = id.chars().filter_map(ascii_digit).count();
        if digits >= WHOLE_NUMBER_DIGITS
            && let Ok(phone) = phone::parse(&id, Some(region))
        {
            return Some(Search {
                id,
                phone: Some(phone),
                tail: None,
                words: Vec::new(),
                region,
            });
        }
        let (mut tail, mut words) = (None, Vec::new());
        for word in id.split_whitespace() {
            match ascii_digits(word) {
                Some(digits) if digits.len() >= 4 && tail.is_none() => tail = Some(digits),
                _ => words.push(word.to_ascii_lowercase()),
            }
        }
        Some(Search {
            id,
            phone: None,
            tail,
            words,
            region,
        })
    }

    /// Whether a customer with this name and phone matches the digits and
    /// words (the clinic id and whole numbers are matched elsewhere).
    fn matches(&self, name: &str, phone: Option<&str>) -> bool {
        let name = name.to_ascii_lowercase();
        let tail_ok = match &self.tail {
            Some(tail) => phone.is_some_and(|p| digits_of(p, self.region).ends_with(tail.as_str())),
            None => true,
        };
        tail_ok && self.words.iter().all(|w| name.contains(w.as_str()))
    }
}

/// A word's digits in ASCII when it is nothing but digits (full-width
/// digits from a Chinese input method included).
fn ascii_digits(word: &str) -> Option<String> {
    word.chars().map(ascii_digit).collect()
}

/// `7` or `７` as `7`.
fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
        _ => None,
    }
}

/// A stored number's digits, as the phone reader reads them (E.164 without
/// its `+`); the digits as typed when it cannot be read.
fn digits_of(stored: &str, region: CountryCode) -> String {
    match phone::parse(stored, Some(region)) {
        Ok(phone) => phone.digits(),
        Err(_) => stored.chars().filter_map(ascii_digit).collect(),
    }
}

/// The key a word is looked up by in `customer_name_grams`: its first two
/// characters, or its one character.
fn gram(word: &str) -> String {
    word.chars().take(2).collect()
}

// The candidates of a clinic (?1) by an index: the tail index first, then
// each customer by id (CROSS JOIN keeps SQLite from walking the clinic).

/// By the last four digits of their phone (?2).
const BY_TAIL: &str = "SELECT c.id, c.external_id, c.name, c.phone, p.pool
    FROM customer_phone_tails t CROSS JOIN customers c ON c.id = t.id
    LEFT JOIN customer_pools p ON p.customer_id = c.id
    WHERE t.tail = ?2 AND t.clinic_id = ?1";

/// By a character or a pair of characters of their name (?2).
const BY_NAME: &str = "SELECT c.id, c.external_id, c.name, c.phone, p.pool
    FROM customer_name_grams g CROSS JOIN customers c ON c.id = g.customer_id
    LEFT JOIN customer_pools p ON p.customer_id = c.id
    WHERE g.gram = ?2 AND c.clinic_id = ?1";

/// A customer a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub pool: Option<Pool>,
}

/// A pool move, with the reason the rule gave (the facts it read).
#[derive(Debug, Clone)]
pub struct StoryMove {
    pub at: Timestamp,
    pub from: Option<Pool>,
    pub to: Pool,
    pub rule_id: Option<String>,
    pub reason: String,
    /// The time of the tick that made it, if a tick did.
    pub tick_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct StoryVisit {
    pub at: Timestamp,
    pub department: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoryOrder {
    pub at: Timestamp,
    pub amount_cents: i64,
    pub project: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoryFollowup {
    pub at: Timestamp,
    pub staff: Option<String>,
    pub result: Option<FollowupResult>,
    pub note: Option<String>,
}

/// A message and what became of it.
#[derive(Debug, Clone)]
pub struct StoryMessage {
    pub id: i64,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// The time of the tick that queued it, if a tick did.
    pub tick_at: Option<Timestamp>,
    pub rule_id: String,
    pub channel: String,
    pub template: String,
    /// Its status today.
    pub status: String,
    pub last_error: Option<String>,
    pub subject: Option<String>,
    pub content: String,
    /// What it achieved (`delivered`, `booked`, `visited`, …), in time order.
    pub outcomes: Vec<String>,
}

/// A call task for the clinic's staff and its result.
#[derive(Debug, Clone)]
pub struct StoryTask {
    pub id: i64,
    pub created_at: Timestamp,
    pub staff: String,
    pub due_date: String,
    pub status: String,
    pub outcome: Option<CallOutcome>,
    pub note: Option<String>,
    pub done_at: Option<Timestamp>,
}

/// Everything recall holds about one customer, read from one snapshot.
#[derive(Debug, Clone)]
pub struct Story {
    /// The customer's row, with the current pool and since when.
    pub customer: CustomerRow,
    pub phone: Option<String>,
    pub do_not_contact: bool,
    /// Whether the customer has a pool at all (every imported one has).
    pub placed: bool,
    pub moves: Vec<StoryMove>,
    pub visits: Vec<StoryVisit>,
    pub orders: Vec<StoryOrder>,
    pub followups: Vec<StoryFollowup>,
    pub messages: Vec<StoryMessage>,
    pub tasks: Vec<StoryTask>,
}

/// One entry of a story's timeline.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Visit(&'a StoryVisit),
    Order(&'a StoryOrder),
    Followup(&'a StoryFollowup),
    Move(&'a StoryMove),
    Message(&'a StoryMessage),
    Task(&'a StoryTask),
}

impl Event<'_> {
    /// When it happened: a message when it was queued, a task when it was made.
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Visit(v) => v.at,
            Event::Order(o) => o.at,
            Event::Followup(f) => f.at,
            Event::Move(m) => m.at,
            Event::Message(m) => m.created_at,
            Event::Task(t) => t.created_at,
        }
    }

    /// Its kind, as JSON and CSV name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Visit(_) => "visit",
            Event::Order(_) => "order",
            Event::Followup(_) => "followup",
            Event::Move(_) => "move",
            Event::Message(_) => "message",
            Event::Task(_) => "call_task",
        }
    }

    /// Within one instant: what the customer did, then what recall decided
    /// on it (the move), then what it sent.
    fn rank(&self) -> u8 {
        match self {
            Event::Visit(_) => 0,
            Event::Order(_) => 1,
            Event::Followup(_) => 2,
            Event::Move(_) => 3,
            Event::Message(_) => 4,
            Event::Task(_) => 5,
        }
    }
}

impl Story {
    /// Everything that happened at or before `until`, in time order.
    pub fn timeline(&self, until: Timestamp) -> Vec<Event<'_>> {
        let mut events: Vec<Event<'_>> = self
            .visits
            .iter()
            .map(Event::Visit)
            .chain(self.orders.iter().map(Event::Order))
            .chain(self.followups.iter().map(Event::Followup))
            .chain(self.moves.iter().map(Event::Move))
            .chain(self.messages.iter().map(Event::Message))
            .chain(self.tasks.iter().map(Event::Task))
            .filter(|e| e.at() <= until)
            .collect();
        // A stable sort: rows of one kind stay in the order they were read.
        events.sort_by_key(|e| (e.at(), e.rank()));
        events
    }

    /// The customer's pool after everything at or before `at`, and since
    /// when; `None` if they were not a customer yet.
    pub fn pool_after(&self, at: Timestamp) -> Option<(Pool, Timestamp)> {
        self.pool_as_of(at, false)
    }

    /// The pool a tick at `at` judges the customer in: as [`Story::pool_after`],
    /// but before the moves of that tick itself.
    pub fn pool_before_tick(&self, at: Timestamp) -> Option<(Pool, Timestamp)> {
        self.pool_as_of(at, true)
    }

    fn pool_as_of(&self, at: Timestamp, before_tick: bool) -> Option<(Pool, Timestamp)> {
        let counts = |m: &&StoryMove| m.at <= at && !(before_tick && m.tick_at == Some(at));
        let skipped = self.moves.iter().any(|m| !counts(&m));
        if !skipped && self.placed {
            // Nothing later or left out: the current pool, as ticks read it.
            let c = &self.customer;
            return Some((c.pool, c.entered_at));
        }
        self.moves
            .iter()
            .filter(counts)
            .max_by_key(|m| m.at)
            .map(|m| (m.to, m.at))
    }

    /// What a tick at `at` reads about this customer, through the scan's
    /// own steps: events at or before `at`, the pool before the tick's own
    /// moves, messages other than the ones it queued. `None` if the
    /// customer was not in a pool yet. Statuses are today's.
    pub fn record_at(&self, at: Timestamp, options: ScanOptions) -> Option<CustomerRecord> {
        let (pool, entered_at) = self.pool_before_tick(at)?;
        let mut record = CustomerRecord {
            customer: CustomerRow {
                pool,
                entered_at,
                ..self.customer.clone()
            },
            ..CustomerRecord::default()
        };
        // Visits in time order, then orders, which read the first visit.
        for visit in self.visits.iter().filter(|v| v.at <= at) {
            scan::add_visit(&mut record, visit.at, options.repeat_offset);
        }
        for order in self.orders.iter().filter(|o| o.at <= at) {
            let (project, department) = (order.project.as_deref(), order.department.as_deref());
            scan::add_order(
                &mut record,
                order.at,
                order.amount_cents,
                project,
                department,
                options,
            );
        }
        for followup in self.followups.iter().filter(|f| f.at <= at) {
            scan::add_followup(&mut record, followup.at, followup.result, at);
        }
        let mut messages: Vec<&StoryMessage> = self
            .messages
            .iter()
            .filter(|m| m.created_at <= at && m.tick_at != Some(at))
            .collect();
        messages.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        for m in messages {
            let status = m.status.as_str();
            scan::add_message(&mut record, &m.rule_id, m.created_at, status, m.sent_at, at);
        }
        Some(record)
    }
}

impl Store {
    /// The customers of a clinic a search finds, by id: the one whose
    /// clinic id is the query, those with the number, those whose phone
    /// ends with the digits and whose name holds every word.
    pub fn find_customers(&self, clinic_id: i64, search: &Search) -> Result<Vec<Candidate>> {
        let mut found = self.candidates(
            "SELECT c.id, c.external_id, c.name, c.phone, p.pool FROM customers c
             LEFT JOIN customer_pools p ON p.customer_id = c.id
             WHERE c.clinic_id = ?1 AND c.external_id = ?2",
            params![clinic_id, search.id],
        )?;
        if let Some(phone) = &search.phone {
            let national = phone.national();
            let tail = &national[national.len().saturating_sub(4)..];
            found.extend(
                self.candidates(BY_TAIL, params![clinic_id, tail])?
                    .into_iter()
                    .filter(|c| {
                        c.phone.as_deref().is_some_and(|p| {
                            phone::parse(p, Some(search.region)).as_ref() == Ok(phone)
                        })
                    }),
            );
        } else if let Some(tail) = &search.tail {
            let last4 = &tail[tail.len() - 4..];
            found.extend(
                self.candidates(BY_TAIL, params![clinic_id, last4])?
                    .into_iter()
                    .filter(|c| search.matches(&c.name, c.phone.as_deref())),
            );
        } else if let Some(word) = search.words.first() {
            found.extend(
                self.candidates(BY_NAME, params![clinic_id, gram(word)])?
                    .into_iter()
                    .filter(|c| search.matches(&c.name, c.phone.as_deref())),
            );
        }
        found.sort_by_key(|c| c.id);
        found.dedup_by_key(|c| c.id);
        Ok(found)
    }

    fn candidates(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Candidate>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| {
            let pool: Option<String> = r.get(4)?;
            Ok(Candidate {
                id: r.get(0)?,
                external_id: r.get(1)?,
                name: r.get(2)?,
                phone: r.get(3)?,
                pool: pool.and_then(|p| p.parse().ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Everything recall holds about one customer, from one snapshot;
    /// `None` if there is no such customer.
    pub fn story(&self, customer_id: i64) -> Result<Option<Story>> {
        let tx = self.conn.unchecked_transaction()?;
        let Some((customer, phone, do_not_contact)) = tx
            .prepare_cached(
                "SELECT id, external_id, name, gender, birth_date, city, source_channel, tags,
                        advisor, NULL, phone, do_not_contact
                 FROM customers WHERE id = ?1",
            )?
            .query_row([customer_id], |r| {
                Ok((scan::customer_row(r)?, r.get(10)?, r.get(11)?))
            })
            .optional()?
        else {
            return Ok(None);
        };
        let mut story = Story {
            customer,
            phone,
            do_not_contact,
            placed: false,
            moves: Vec::new(),
            visits: Vec::new(),
            orders: Vec::new(),
            followups: Vec::new(),
            messages: Vec::new(),
            tasks: Vec::new(),
        };
        if let Some((pool, entered_at)) = tx
            .prepare_cached("SELECT pool, entered_at FROM customer_pools WHERE customer_id = ?1")?
            .query_row([customer_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Timestamp>(1)?))
            })
            .optional()?
        {
            story.customer.pool = pool.parse().unwrap_or_default();
            story.customer.entered_at = entered_at;
            story.placed = true;
        }
        let pool = |text: Option<String>| text.and_then(|p| p.parse::<Pool>().ok());
        story.moves = tx
            .prepare_cached(
                "SELECT t.at, t.from_pool, t.to_pool, t.rule_id, t.reason, k.at
                 FROM transitions t LEFT JOIN ticks k ON k.id = t.tick_id
                 WHERE t.customer_id = ?1 ORDER BY t.at, t.id",
            )?
            .query_map([customer_id], |r| {
                Ok(StoryMove {
                    at: r.get(0)?,
                    from: pool(r.get(1)?),
                    to: pool(r.get(2)?).unwrap_or_default(),
                    rule_id: r.get(3)?,
                    reason: r.get(4)?,
                    tick_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        story.visits = tx
            .prepare_cached(
                "SELECT at, department, note FROM visits WHERE customer_id = ?1 ORDER BY at, id",
            )?
            .query_map([customer_id], |r| {
                Ok(StoryVisit {
                    at: r.get(0)?,
                    department: r.get(1)?,
                    note: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        story.orders = tx
            .prepare_cached(
                "SELECT at, amount_cents, project, department FROM orders
                 WHERE customer_id = ?1 ORDER BY at, id",
            )?
            .query_map([customer_id], |r| {
                Ok(StoryOrder {
                    at: r.get(0)?,
                    amount_cents: r.get(1)?,
                    project: r.get(2)?,
                    department: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        story.followups = tx
            .prepare_cached(
                "SELECT at, staff, result, note FROM followups WHERE customer_id = ?1 ORDER BY at, id",
            )?
            .query_map([customer_id], |r| {
                let result: Option<String> = r.get(2)?;
                Ok(StoryFollowup {
                    at: r.get(0)?,
                    staff: r.get(1)?,
                    result: result.and_then(|s| s.parse().ok()),
                    note: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        story.messages = tx
            .prepare_cached(
                "SELECT o.id, o.created_at, o.sent_at, k.at, o.rule_id, o.channel, o.template,
                        o.status, o.last_error, o.subject, o.content,
                        (SELECT group_concat(kind, ',') FROM
                            (SELECT kind FROM outcomes WHERE outreach_id = o.id ORDER BY at, id))
                 FROM outreach o LEFT JOIN ticks k ON k.id = o.tick_id
                 WHERE o.customer_id = ?1 ORDER BY o.created_at, o.id",
            )?
            .query_map([customer_id], |r| {
                let outcomes: Option<String> = r.get(11)?;
                Ok(StoryMessage {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    sent_at: r.get(2)?,
                    tick_at: r.get(3)?,
                    rule_id: r.get(4)?,
                    channel: r.get(5)?,
                    template: r.get(6)?,
                    status: r.get(7)?,
                    last_error: r.get(8)?,
                    subject: r.get(9)?,
                    content: r.get(10)?,
                    outcomes: outcomes
                        .map(|o| o.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        story.tasks = tx
            .prepare_cached(
                "SELECT t.id, t.created_at, t.staff, t.due_date, t.status, t.outcome, t.note,
                        t.done_at
                 FROM outreach o JOIN call_tasks t ON t.outreach_id = o.id
                 WHERE o.customer_id = ?1 ORDER BY t.created_at, t.id",
            )?
            .query_map([customer_id], |r| {
                let outcome: Option<String> = r.get(5)?;
                Ok(StoryTask {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    staff: r.get(2)?,
                    due_date: r.get(3)?,
                    status: r.get(4)?,
                    outcome: outcome.as_deref().and_then(CallOutcome::parse),
                    note: r.get(6)?,
                    done_at: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        tx.finish()?;
        Ok(Some(story))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ingest::NewCustomer;

    /// A clinic of four customers (numbers as staff type them).
    fn clinic() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("recall.db")).unwrap();
        let clinic = store
            .ensure_clinic("c", "诊所", "Asia/Shanghai", 0)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        for (id, name, phone) in [
            ("C1", "孙磊", Some("138 0013 8000")),
            ("C2", "孙丽", Some("+86-139-0013-8000")),
            ("C3", "王孙磊", Some("１３７００１３７１２３")),
            ("C4", "Anna Smith", None),
        ] {
            let customer = NewCustomer {
                phone: phone.map(str::to_string),
                ..NewCustomer::named(id, name)
            };
            ingest.add_customer(clinic, &customer, 100).unwrap();
        }
        ingest.commit().unwrap();
        (dir, store, clinic)
    }

    fn find(store: &Store, clinic: i64, query: &str) -> Vec<String> {
        let search = Search::parse(query).unwrap();
        store
            .find_customers(clinic, &search)
            .unwrap()
            .into_iter()
            .map(|c| c.external_id)
            .collect()
    }

    #[test]
    fn search_finds_by_id_name_part_phone_in_any_format_and_tail_with_name() {
        let (_dir, store, clinic) = clinic();
        assert_eq!(find(&store, clinic, "C3"), ["C3"]);
        assert_eq!(find(&store, clinic, "孙磊"), ["C1", "C3"]);
        assert_eq!(find(&store, clinic, "孙"), ["C1", "C2", "C3"]);
        assert_eq!(find(&store, clinic, "13800138000"), ["C1"]);
        assert_eq!(find(&store, clinic, "+86 138-0013-8000"), ["C1"]);
        assert_eq!(find(&store, clinic, "13700137123"), ["C3"]);
        assert_eq!(find(&store, clinic, "8000"), ["C1", "C2"]);
        assert_eq!(find(&store, clinic, "孙丽 8000"), ["C2"]);
        assert_eq!(find(&store, clinic, "8000 磊"), ["C1"]);
        assert_eq!(find(&store, clinic, "７１２３"), ["C3"]);
        assert_eq!(find(&store, clinic, "smith"), ["C4"]);
        assert_eq!(find(&store, clinic, "anna SMI"), ["C4"]);
        assert!(find(&store, clinic, "李").is_empty());
        assert!(find(&store, clinic, "孙 9999").is_empty());
        assert!(Search::parse("  ").is_none());
    }

    #[test]
    fn search_follows_a_renamed_customer() {
        let (_dir, store, clinic) = clinic();
        store
            .conn
            .execute(
                "UPDATE customers SET name = '孙悦' WHERE external_id = 'C1'",
                [],
            )
            .unwrap();
        assert_eq!(find(&store, clinic, "孙磊"), ["C3"]);
        assert_eq!(find(&store, clinic, "孙悦"), ["C1"]);
    }

    #[test]
    fn search_is_served_by_indexes() {
        let (_dir, store, _) = clinic();
        let plan = |sql: &str| -> String {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt
                .query_map(params![1, "x"], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
        };
        let tail = plan(BY_TAIL);
        assert!(
            tail.contains("USING INDEX customers_phone_tail (<expr>=? AND clinic_id=?)"),
            "{tail}"
        );
        let name = plan(BY_NAME);
        assert!(
            name.contains("SEARCH g USING PRIMARY KEY (gram=?)"),
            "{name}"
        );
        assert!(!name.contains("SCAN"), "{name}");
    }
}
