//! What the store reads about one customer for a tick: the customer's own
//! row and aggregates of their visits, orders, follow-ups and outreach up to
//! the tick's time. `facts` derives the facts rules see from a record; the
//! churn model reads its visit days and spend.

use crate::base::clock::Timestamp;
use crate::base::model::{FollowupResult, Pool};

/// A customer's own record, as the store reads it for a tick.
#[derive(Debug, Clone, Default)]
pub struct CustomerRow {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    pub city: Option<String>,
    pub source_channel: Option<String>,
    /// The customer's own advisor (专属顾问), as imported.
    pub advisor: Option<String>,
    /// JSON array of strings, as stored.
    pub tags: String,
    pub pool: Pool,
    pub entered_at: Timestamp,
    /// Set while the customer waits for onboarding (an import added them
    /// and nothing has judged them yet): the earliest time anything is
    /// known of them, their first record or first visit, order or follow-up.
    pub history_from: Option<Timestamp>,
}

/// Visits up to the tick's time.
#[derive(Debug, Clone, Copy, Default)]
pub struct VisitAgg {
    pub count: i64,
    pub first_at: Option<Timestamp>,
    pub last_at: Option<Timestamp>,
}

/// Orders up to the tick's time.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderAgg {
    pub count: i64,
    pub total_cents: i64,
    pub last_at: Option<Timestamp>,
}

/// Follow-ups up to the tick's time.
#[derive(Debug, Clone, Default)]
pub struct FollowupAgg {
    pub last_at: Option<Timestamp>,
    pub last_result: Option<FollowupResult>,
    /// Not-smooth follow-ups in the 30 days up to the tick.
    pub not_smooth_30d: i64,
}

/// The latest order of one (project, department), for treatment cycles.
#[derive(Debug, Clone, Default)]
pub struct TreatmentAgg {
    pub project: Option<String>,
    pub department: Option<String>,
    pub last_at: Timestamp,
}

/// What the churn model reads: visit days and spend after the first day.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepeatAgg {
    /// Distinct clinic days with a visit.
    pub visit_days: i64,
    /// Order amounts on days after the first visit day.
    pub repeat_spend_cents: i64,
}

/// Outreach up to the tick's time.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutreachAgg {
    pub contacts_in_pool: i64,
    pub last_contact_at: Option<Timestamp>,
}

/// Everything the store reads about one customer for a tick.
#[derive(Debug, Clone, Default)]
pub struct CustomerRecord {
    pub customer: CustomerRow,
    pub visits: VisitAgg,
    pub orders: OrderAgg,
    pub followups: FollowupAgg,
    pub outreach: OutreachAgg,
    /// (rule id, time it last fired) for rules that fired in the current pool stay.
    pub fired_in_pool: Vec<(String, Timestamp)>,
    /// (rule id, time it last queued a message for the customer, whatever
    /// became of it) for every rule, in any pool: what cooldowns count from.
    pub last_fired: Vec<(String, Timestamp)>,
    /// Latest order per (project, department); read only when the clinic
    /// has treatment cycles.
    pub treatments: Vec<TreatmentAgg>,
    /// Read only when a churn model is in use.
    pub repeat: RepeatAgg,
}
