//! Customer facts: the named values rule conditions and templates read.
//!
//! [`CATALOGUE`] is the single list of facts, their types and their exact
//! definitions; `recall facts`, `docs/facts.md`, `recall check` and the CEL
//! resolver all follow it. [`Facts::derive`] computes them from the raw
//! aggregates the store reads, as a pure function of those rows, the tick's
//! time and the clinic's time zone. It never touches SQLite or the clock.

mod catalogue;
mod value;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use std::sync::{Arc, OnceLock};

use crate::base::clock::{self, Timestamp};
use crate::base::model::{FollowupResult, Gender, Pool};
use crate::churn::ChurnModel;
use crate::config::Cycles;
use crate::predict::{self, RiskBand, Summary};
use crate::store::record::CustomerRecord;

pub use catalogue::{CATALOGUE, FactDef, FactType, lookup, names};
pub use value::FactValue;

/// What facts need besides a customer's record and the time.
#[derive(Debug, Clone, Copy)]
pub struct FactContext<'a> {
    pub tz: Tz,
    pub cycles: &'a Cycles,
    /// The churn model in use; without one the churn facts are null.
    pub model: Option<&'a Arc<ChurnModel>>,
}

impl FactContext<'static> {
    /// Only a time zone: no cycles, no model.
    pub fn plain(tz: Tz) -> Self {
        static NO_CYCLES: Cycles = Cycles(std::collections::BTreeMap::new());
        FactContext {
            tz,
            cycles: &NO_CYCLES,
            model: None,
        }
    }
}

/// The facts of one customer at one time.
#[derive(Debug, Clone)]
pub struct Facts {
    pub pool: Pool,
    pub days_in_pool: i64,
    pub days_since_first_visit: Option<i64>,
    pub days_since_last_visit: Option<i64>,
    pub visit_count: i64,
    pub visited_in_pool: bool,
    pub days_since_last_purchase: Option<i64>,
    pub purchase_count: i64,
    pub purchased_in_pool: bool,
    pub total_spend: f64,
    pub last_followup_result: Option<FollowupResult>,
    pub days_since_last_followup: Option<i64>,
    pub not_smooth_followups_30d: i64,
    pub contacts_in_pool: i64,
    pub days_since_last_contact: Option<i64>,
    pub age: Option<i64>,
    pub birth_month: Option<i64>,
    pub days_to_birthday: Option<i64>,
    /// The month of the tick, clinic calendar: 1–12.
    pub current_month: i64,
    pub gender: Option<Gender>,
    pub city: Option<String>,
    pub source_channel: Option<String>,
    pub advisor: Option<String>,
    pub tags: Vec<String>,
    pub last_treatment: Option<String>,
    pub expected_revisit_days: Option<i64>,
    pub days_overdue: Option<i64>,
    /// The churn facts, computed when first read.
    pub outlook: Outlook,
}

/// A customer's churn facts: the model and the customer's summary, and the
/// costlier predictions computed on first use (most conditions never read
/// them, and a CLV takes a dozen hypergeometric series).
#[derive(Debug, Clone, Default)]
pub struct Outlook {
    input: Option<(Arc<ChurnModel>, Summary)>,
    expected_visits: OnceLock<Option<f64>>,
    clv: OnceLock<Option<f64>>,
}

impl Outlook {
    pub fn new(model: Arc<ChurnModel>, summary: Summary) -> Self {
        Outlook {
            input: Some((model, summary)),
            ..Outlook::default()
        }
    }

    /// The fit the predictions come from.
    pub fn fit_id(&self) -> Option<i64> {
        self.input.as_ref().map(|(m, _)| m.fit_id)
    }

    /// The summary the predictions start from (in days).
    pub fn summary(&self) -> Option<&Summary> {
        self.input.as_ref().map(|(_, s)| s)
    }

    pub fn churn_risk(&self) -> Option<f64> {
        let (m, s) = self.input.as_ref()?;
        finite(
            m.model
                .purchases
                .p_no_purchase(s, m.scoring.churn_window_days),
        )
    }

    pub fn churn_score(&self) -> Option<i64> {
        self.churn_risk()
            .map(|risk| (risk * 100.0).round().clamp(0.0, 100.0) as i64)
    }

    pub fn churn_band(&self) -> Option<RiskBand> {
        let (m, _) = self.input.as_ref()?;
        self.churn_score()
            .map(|score| m.scoring.bands.band(score as u8))
    }

    pub fn p_alive(&self) -> Option<f64> {
        let (m, s) = self.input.as_ref()?;
        finite(m.model.purchases.p_alive(s))
    }

    pub fn expected_visits(&self) -> Option<f64> {
        *self.expected_visits.get_or_init(|| {
            let (m, s) = self.input.as_ref()?;
            m.model
                .purchases
                .expected_purchases(s, m.scoring.visit_window_days)
                .ok()
                .and_then(finite)
        })
    }

    pub fn clv(&self) -> Option<f64> {
        *self.clv.get_or_init(|| {
            let (m, s) = self.input.as_ref()?;
            m.model.spend.as_ref()?;
            predict::score(&m.model, s, &m.scoring)
                .ok()?
                .clv
                .and_then(finite)
                .map(|yuan| (yuan * 100.0).round() / 100.0)
        })
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl Facts {
    /// Computes the facts of a customer at `now` (Unix seconds) in the
    /// clinic's zone, without treatment cycles or a churn model.
    pub fn derive(record: &CustomerRecord, now: Timestamp, tz: Tz) -> Facts {
        Facts::derive_in(record, now, &FactContext::plain(tz))
    }

    /// Computes the facts of a customer at `now` (Unix seconds).
    pub fn derive_in(record: &CustomerRecord, now: Timestamp, context: &FactContext<'_>) -> Facts {
        let tz = context.tz;
        let today = clock::local_day(now, tz);
        let days_since = |at: Option<Timestamp>| at.map(|t| today - clock::local_day(t, tz));
        let c = &record.customer;
        let entered = c.entered_at;
        let date = clock::day_to_date(today);
        let birth = c.birth_date.as_deref().and_then(parse_date);
        Facts {
            pool: c.pool,
            days_in_pool: today - clock::local_day(entered, tz),
            days_since_first_visit: days_since(record.visits.first_at),
            days_since_last_visit: days_since(record.visits.last_at),
            visit_count: record.visits.count,
            visited_in_pool: record.visits.last_at.is_some_and(|t| t >= entered),
            days_since_last_purchase: days_since(record.orders.last_at),
            purchase_count: record.orders.count,
            purchased_in_pool: record.orders.last_at.is_some_and(|t| t >= entered),
            total_spend: record.orders.total_cents as f64 / 100.0,
            last_followup_result: record.followups.last_result,
            days_since_last_followup: days_since(record.followups.last_at),
            not_smooth_followups_30d: record.followups.not_smooth_30d,
            contacts_in_pool: record.outreach.contacts_in_pool,
            days_since_last_contact: days_since(record.outreach.last_contact_at),
            age: birth.map(|birth| clock::age_on(birth, date)),
            birth_month: birth.map(|birth| i64::from(birth.month())),
            days_to_birthday: birth.map(|birth| days_to_birthday(birth, date)),
            current_month: i64::from(date.month()),
            gender: c.gender.as_deref().and_then(|g| g.parse().ok()),
            city: c.city.clone().filter(|s| !s.is_empty()),
            source_channel: c.source_channel.clone().filter(|s| !s.is_empty()),
            advisor: c
                .advisor
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            tags: serde_json::from_str(&c.tags).unwrap_or_default(),
            last_treatment: None,
            expected_revisit_days: None,
            days_overdue: None,
            outlook: Outlook::default(),
        }
        .with_cycle(record, today, context)
        .with_outlook(record, today, context)
    }

    /// The treatment-cycle facts: the latest order with a cycle.
    fn with_cycle(
        mut self,
        record: &CustomerRecord,
        today: i64,
        context: &FactContext<'_>,
    ) -> Self {
        let latest = record
            .treatments
            .iter()
            .filter_map(|t| {
                let (name, days) = context
                    .cycles
                    .of(t.project.as_deref(), t.department.as_deref())?;
                Some((t.last_at, std::cmp::Reverse(days), name))
            })
            .max();
        if let Some((at, std::cmp::Reverse(days), name)) = latest {
            let since = today - clock::local_day(at, context.tz);
            self.last_treatment = Some(name.to_string());
            self.expected_revisit_days = Some(days);
            self.days_overdue = Some(since - days);
        }
        self
    }

    /// The churn facts' input: the customer's summary in days, as the
    /// model was fitted (see [`crate::churn::summary`]).
    fn with_outlook(
        mut self,
        record: &CustomerRecord,
        today: i64,
        context: &FactContext<'_>,
    ) -> Self {
        if let Some(model) = context.model
            && let Some(summary) = crate::churn::summary(record, today, context.tz)
        {
            self.outlook = Outlook::new(model.clone(), summary);
        }
        self
    }

    /// The value of one fact; `None` for names that are not facts.
    pub fn get(&self, name: &str) -> Option<FactValue<'_>> {
        use FactValue::{Bool, Double, Int, List, Text};
        Some(match name {
            "pool" => Text(Some(self.pool.as_str())),
            "days_in_pool" => Int(Some(self.days_in_pool)),
            "days_since_first_visit" => Int(self.days_since_first_visit),
            "days_since_last_visit" => Int(self.days_since_last_visit),
            "visit_count" => Int(Some(self.visit_count)),
            "visited_in_pool" => Bool(self.visited_in_pool),
            "days_since_last_purchase" => Int(self.days_since_last_purchase),
            "purchase_count" => Int(Some(self.purchase_count)),
            "purchased_in_pool" => Bool(self.purchased_in_pool),
            "total_spend" => Double(Some(self.total_spend)),
            "last_followup_result" => Text(self.last_followup_result.map(|r| r.as_str())),
            "days_since_last_followup" => Int(self.days_since_last_followup),
            "not_smooth_followups_30d" => Int(Some(self.not_smooth_followups_30d)),
            "contacts_in_pool" => Int(Some(self.contacts_in_pool)),
            "days_since_last_contact" => Int(self.days_since_last_contact),
            "age" => Int(self.age),
            "birth_month" => Int(self.birth_month),
            "days_to_birthday" => Int(self.days_to_birthday),
            "current_month" => Int(Some(self.current_month)),
            "gender" => Text(self.gender.map(|g| g.as_str())),
            "city" => Text(self.city.as_deref()),
            "source_channel" => Text(self.source_channel.as_deref()),
            "advisor" => Text(self.advisor.as_deref()),
            "tags" => List(&self.tags),
            "last_treatment" => Text(self.last_treatment.as_deref()),
            "expected_revisit_days" => Int(self.expected_revisit_days),
            "days_overdue" => Int(self.days_overdue),
            "churn_risk" => Double(self.outlook.churn_risk()),
            "churn_score" => Int(self.outlook.churn_score()),
            "churn_band" => Text(self.outlook.churn_band().map(RiskBand::as_str)),
            "p_alive" => Double(self.outlook.p_alive()),
            "expected_visits_90d" => Double(self.outlook.expected_visits()),
            "predicted_clv" => Double(self.outlook.clv()),
            _ => return None,
        })
    }
}

/// Days from `today` to the customer's next birthday: 0 on the birthday,
/// at most 365. Someone born on 29 February has their birthday on 28
/// February in years without a 29th, so it stays in their birth month
/// (`birth_month` and a birthday-month rule agree with it).
pub fn days_to_birthday(birth: NaiveDate, today: NaiveDate) -> i64 {
    let in_year = |year: i32| {
        NaiveDate::from_ymd_opt(year, birth.month(), birth.day())
            .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
            .unwrap_or(today)
    };
    let this_year = in_year(today.year());
    let next = if this_year >= today {
        this_year
    } else {
        in_year(today.year() + 1)
    };
    (next - today).num_days()
}

/// `YYYY-MM-DD`, as the store keeps dates (faster than a format string, and
/// this runs for every customer of every tick).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

#[cfg(test)]
mod tests;
