//! Customer facts: the named values rule conditions and templates read.
//!
//! [`CATALOGUE`] is the single list of facts, their types and their exact
//! definitions; `recall facts`, `docs/facts.md`, `recall check` and the CEL
//! resolver all follow it. [`Facts::derive`] computes them from the raw
//! aggregates the store reads, as a pure function of those rows, the tick's
//! time and the clinic's time zone. It never touches SQLite or the clock.

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelNull, CelString};
use cel::common::value::{CowVal, Val};
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::sync::{Arc, OnceLock};

use crate::churn::ChurnModel;
use crate::clock::{self, Timestamp};
use crate::config::Cycles;
use crate::model::{FollowupResult, Gender, Pool};
use crate::predict::{self, RiskBand, Summary};

/// The type of a fact's value, as rule conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactType {
    Int,
    Double,
    Bool,
    String,
    StringList,
}

impl FactType {
    pub fn as_str(self) -> &'static str {
        match self {
            FactType::Int => "int",
            FactType::Double => "double",
            FactType::Bool => "bool",
            FactType::String => "string",
            FactType::StringList => "list of strings",
        }
    }
}

/// One fact's name, type and definition.
#[derive(Debug, Clone, Copy)]
pub struct FactDef {
    pub name: &'static str,
    pub ty: FactType,
    /// Whether the fact can be `null` (nothing to measure, e.g. no visit yet).
    pub nullable: bool,
    /// The exact definition, in English.
    pub definition: &'static str,
    /// The same, in Chinese.
    pub definition_zh: &'static str,
    /// Whether the churn model computes it (null until a model is fitted).
    pub from_model: bool,
}

const fn fact(
    name: &'static str,
    ty: FactType,
    nullable: bool,
    definition: &'static str,
    definition_zh: &'static str,
) -> FactDef {
    FactDef {
        name,
        ty,
        nullable,
        definition,
        definition_zh,
        from_model: matches!(
            name.as_bytes(),
            b"churn_risk"
                | b"churn_score"
                | b"churn_band"
                | b"p_alive"
                | b"expected_visits_90d"
                | b"predicted_clv"
        ),
    }
}

use FactType::{Bool, Double, Int, String as Str, StringList};

/// Every fact a rule condition can use. "Days" are clinic-calendar days in the
/// clinic's time zone: something that happened yesterday at any hour is 1 day
/// ago. Only events at or before the tick's time count, so a tick `--at` a past
/// time sees the history as it was then.
pub const CATALOGUE: &[FactDef] = &[
    fact(
        "pool",
        Str,
        false,
        "The customer's current pool: new, customer, warning, maintenance or churned.",
        "顾客当前所在的池：new、customer、warning、maintenance 或 churned。",
    ),
    fact(
        "days_in_pool",
        Int,
        false,
        "Days since the customer entered the current pool.",
        "进入当前池至今的天数。",
    ),
    fact(
        "days_since_first_visit",
        Int,
        true,
        "Days since the customer's first visit; null if there is no visit.",
        "距首次到院的天数；从未到院为 null。",
    ),
    fact(
        "days_since_last_visit",
        Int,
        true,
        "Days since the customer's most recent visit; null if there is no visit.",
        "距最近一次到院的天数；从未到院为 null。",
    ),
    fact("visit_count", Int, false, "Number of visits.", "到院次数。"),
    fact(
        "visited_in_pool",
        Bool,
        false,
        "Whether the customer has visited at or after the moment they entered the current pool.",
        "进入当前池之后（含进入当时）是否到过院。",
    ),
    fact(
        "days_since_last_purchase",
        Int,
        true,
        "Days since the customer's most recent order; null if there is no order.",
        "距最近一次消费的天数；从未消费为 null。",
    ),
    fact(
        "purchase_count",
        Int,
        false,
        "Number of orders.",
        "消费（订单）次数。",
    ),
    fact(
        "purchased_in_pool",
        Bool,
        false,
        "Whether the customer has placed an order at or after the moment they entered the current pool.",
        "进入当前池之后（含进入当时）是否有过消费。",
    ),
    fact(
        "total_spend",
        Double,
        false,
        "Sum of all order amounts, in the clinic's currency (yuan), e.g. 12800.0.",
        "全部订单金额之和（元），如 12800.0。",
    ),
    fact(
        "last_followup_result",
        Str,
        true,
        "Result of the most recent follow-up (回访): smooth, not_smooth, unreachable or refused; null if there is none.",
        "最近一次回访结果：smooth、not_smooth、unreachable 或 refused；没有回访为 null。",
    ),
    fact(
        "days_since_last_followup",
        Int,
        true,
        "Days since the most recent follow-up; null if there is none.",
        "距最近一次回访的天数；没有回访为 null。",
    ),
    fact(
        "not_smooth_followups_30d",
        Int,
        false,
        "Follow-ups in the 30 days (720 hours) up to the tick whose result is not smooth: not_smooth, unreachable or refused.",
        "截至本次评估前 30 天（720 小时）内结果不顺畅的回访次数：not_smooth、unreachable 或 refused。",
    ),
    fact(
        "contacts_in_pool",
        Int,
        false,
        "Messages created for the customer since entering the current pool that were sent or are still queued or sending (not failed, suppressed or opted out). Messages of the rule that moved the customer into the pool count.",
        "进入当前池以来为该顾客生成、已发送或仍在排队/发送中的消息数（不含失败、被抑制、退订）。把顾客移入本池的规则所发的消息也计入。",
    ),
    fact(
        "days_since_last_contact",
        Int,
        true,
        "Days since the most recent message that was sent to the customer; null if none was.",
        "距最近一次成功发送给该顾客的消息的天数；从未发送为 null。",
    ),
    fact(
        "age",
        Int,
        true,
        "Age in completed years from the birth date; null if the birth date is unknown.",
        "按出生日期计算的周岁；出生日期未知为 null。",
    ),
    fact(
        "gender",
        Str,
        true,
        "female, male or other; null if unknown.",
        "female、male 或 other；未知为 null。",
    ),
    fact(
        "city",
        Str,
        true,
        "The customer's city as the clinic recorded it, e.g. \"上海\"; null if unknown.",
        "顾客所在城市（按机构登记），如 \"上海\"；未知为 null。",
    ),
    fact(
        "source_channel",
        Str,
        true,
        "Where the customer came from (e.g. \"美团\", \"referral\"); null if unknown.",
        "顾客来源渠道（如 \"美团\"、\"referral\"）；未知为 null。",
    ),
    fact(
        "tags",
        StringList,
        false,
        "The customer's tags, e.g. [\"vip\", \"玻尿酸\"]; empty if none. Test with `\"vip\" in tags`.",
        "顾客标签，如 [\"vip\", \"玻尿酸\"]；没有为空列表。用 `\"vip\" in tags` 判断。",
    ),
    fact(
        "last_treatment",
        Str,
        true,
        "The treatment cycles (`[cycles]` in recall.toml) name of the customer's most recent order that has a cycle: its project if the project has a cycle, else its department. When several such orders share the latest time, the one with the shortest cycle. Null if no order has a cycle.",
        "顾客最近一次有疗程周期（recall.toml 的 `[cycles]`）的订单所对应的名称：项目有周期时为项目名，否则为科室名。同一时间有多个这样的订单时，取周期最短的。没有任何订单有周期时为 null。",
    ),
    fact(
        "expected_revisit_days",
        Int,
        true,
        "The cycle, in days, of `last_treatment`: how long after it the next treatment is due. Null if `last_treatment` is null.",
        "`last_treatment` 的周期天数：做完后多少天该做下一次。`last_treatment` 为 null 时为 null。",
    ),
    fact(
        "days_overdue",
        Int,
        true,
        "Days since the order of `last_treatment` minus `expected_revisit_days`: 0 on the day the next treatment is due, positive when it is late, negative before (−10: due in 10 days). Null if `last_treatment` is null.",
        "距 `last_treatment` 那次订单的天数减去 `expected_revisit_days`：到期当天为 0，逾期为正数，未到期为负数（−10 表示还有 10 天到期）。`last_treatment` 为 null 时为 null。",
    ),
    fact(
        "churn_risk",
        Double,
        true,
        "The churn model's probability (0–1) that the customer makes no visit in the next `churn_window_days` days (`[model]`, default 90): P0 of the BG/NBD model fitted on the clinic's visits (see `recall model show`). Null until a model has been fitted, and for customers without a visit.",
        "流失模型给出的概率（0–1）：顾客在接下来 `churn_window_days` 天（`[model]`，默认 90）内不到院的概率，即用本机构到院记录拟合的 BG/NBD 模型的 P0（见 `recall model show`）。尚未拟合模型时、以及从未到院的顾客为 null。",
    ),
    fact(
        "churn_score",
        Int,
        true,
        "`churn_risk` in percent, rounded: 0–100. Null when `churn_risk` is.",
        "`churn_risk` 的百分数（四舍五入）：0–100。`churn_risk` 为 null 时为 null。",
    ),
    fact(
        "churn_band",
        Str,
        true,
        "low, medium or high: `churn_score` cut at `medium_risk_from` (default 50) and `high_risk_from` (default 80) of `[model]`. Null when `churn_score` is.",
        "low、medium 或 high：按 `[model]` 的 `medium_risk_from`（默认 50）与 `high_risk_from`（默认 80）划分 `churn_score`。`churn_score` 为 null 时为 null。",
    ),
    fact(
        "p_alive",
        Double,
        true,
        "The churn model's probability (0–1) that the customer is still a customer at all (has not silently left for good). 1 for everyone with a single visit day, which is why rules should rank by `churn_risk`. Null as `churn_risk` is.",
        "流失模型给出的顾客仍然“活跃”（没有悄然永久离开）的概率（0–1）。只到过一天院的顾客都是 1，所以规则应按 `churn_risk` 排序。与 `churn_risk` 同样可能为 null。",
    ),
    fact(
        "expected_visits_90d",
        Double,
        true,
        "Visits (days with a visit) the churn model expects in the next `visit_window_days` days (`[model]`, default 90). Null as `churn_risk` is.",
        "流失模型预计顾客在接下来 `visit_window_days` 天（`[model]`，默认 90）内的到院天数。与 `churn_risk` 同样可能为 null。",
    ),
    fact(
        "predicted_clv",
        Double,
        true,
        "Predicted customer lifetime value in yuan: the visits the model expects in each of the next `clv_months` months (default 12) times the Gamma-Gamma expected spend per visit, discounted at `monthly_discount_rate` (default 1 %). Null as `churn_risk` is, and when the clinic has too few repeat purchases to fit the spend model.",
        "预测顾客终身价值（元）：模型预计未来 `clv_months` 个月（默认 12）每月的到院次数 × Gamma-Gamma 模型预计的每次消费额，按 `monthly_discount_rate`（默认每月 1%）折现后求和。与 `churn_risk` 同样可能为 null；复购消费太少、无法拟合消费模型时也为 null。",
    ),
];

/// The definition of a fact by name.
pub fn lookup(name: &str) -> Option<&'static FactDef> {
    CATALOGUE.iter().find(|f| f.name == name)
}

/// All fact names, for suggestions.
pub fn names() -> impl Iterator<Item = &'static str> + Clone {
    CATALOGUE.iter().map(|f| f.name)
}

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
    /// JSON array of strings, as stored.
    pub tags: String,
    pub pool: Pool,
    pub entered_at: Timestamp,
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
    /// Latest order per (project, department); read only when the clinic
    /// has treatment cycles.
    pub treatments: Vec<TreatmentAgg>,
    /// Read only when a churn model is in use.
    pub repeat: RepeatAgg,
}

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
    pub gender: Option<Gender>,
    pub city: Option<String>,
    pub source_channel: Option<String>,
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
            age: c
                .birth_date
                .as_deref()
                .and_then(parse_date)
                .map(|birth| clock::age_on(birth, clock::day_to_date(today))),
            gender: c.gender.as_deref().and_then(|g| g.parse().ok()),
            city: c.city.clone().filter(|s| !s.is_empty()),
            source_channel: c.source_channel.clone().filter(|s| !s.is_empty()),
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
            "gender" => Text(self.gender.map(|g| g.as_str())),
            "city" => Text(self.city.as_deref()),
            "source_channel" => Text(self.source_channel.as_deref()),
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

    /// The value of one fact as a CEL value; `None` for names that are not facts.
    pub fn cel_value(&self, name: &str) -> Option<CowVal<'_, '_>> {
        self.get(name).map(FactValue::to_cel)
    }
}

/// One fact's value, borrowed from [`Facts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FactValue<'a> {
    Int(Option<i64>),
    Double(Option<f64>),
    Bool(bool),
    Text(Option<&'a str>),
    List(&'a [String]),
}

impl<'a> FactValue<'a> {
    /// As CEL sees it: missing values are `null`.
    pub fn to_cel(self) -> CowVal<'a, 'a> {
        match self {
            FactValue::Int(Some(v)) => CowVal::owned(CelInt::from(v)),
            FactValue::Double(Some(v)) => CowVal::owned(CelDouble::from(v)),
            FactValue::Bool(v) => CowVal::owned(CelBool::from(v)),
            FactValue::Text(Some(v)) => CowVal::owned(CelString::from(v)),
            FactValue::Int(None) | FactValue::Double(None) | FactValue::Text(None) => {
                CowVal::owned(CelNull)
            }
            FactValue::List(items) => {
                let items: Vec<Box<dyn Val + 'a>> = items
                    .iter()
                    .map(|t| Box::new(CelString::from(t.as_str())) as Box<dyn Val>)
                    .collect();
                CowVal::owned(CelList::from(items))
            }
        }
    }

    /// As templates see it: missing values are `none`.
    pub fn to_template(self) -> minijinja::Value {
        match self {
            FactValue::Int(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::Double(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::Bool(v) => minijinja::Value::from(v),
            FactValue::Text(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::List(items) => minijinja::Value::from(items.to_vec()),
        }
    }
}

/// As a decision's reason shows it: `null`, `90`, `12800.5`, `true`, `"上海"`, `["vip"]`.
impl std::fmt::Display for FactValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FactValue::Int(Some(v)) => write!(f, "{v}"),
            FactValue::Double(Some(v)) => write!(f, "{v}"),
            FactValue::Bool(v) => write!(f, "{v}"),
            FactValue::Text(Some(v)) => write!(f, "{v:?}"),
            FactValue::Int(None) | FactValue::Double(None) | FactValue::Text(None) => {
                f.write_str("null")
            }
            FactValue::List(items) => write!(f, "{items:?}"),
        }
    }
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

impl cel::context::VariableResolver for Facts {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.cel_value(variable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_time;

    const TZ: Tz = chrono_tz::Asia::Shanghai;

    fn at(text: &str) -> Timestamp {
        parse_time(text, TZ).unwrap().timestamp()
    }

    fn record() -> CustomerRecord {
        CustomerRecord {
            customer: CustomerRow {
                id: 1,
                external_id: "C1".into(),
                name: "王丽".into(),
                gender: Some("female".into()),
                birth_date: Some("1990-06-15".into()),
                city: Some("上海".into()),
                source_channel: None,
                tags: r#"["vip","玻尿酸"]"#.into(),
                pool: Pool::Customer,
                entered_at: at("2026-03-01 10:00"),
            },
            visits: VisitAgg {
                count: 3,
                first_at: Some(at("2026-01-05 15:00")),
                last_at: Some(at("2026-03-20 23:50")),
            },
            orders: OrderAgg {
                count: 2,
                total_cents: 1_280_050,
                last_at: Some(at("2026-02-10 11:00")),
            },
            followups: FollowupAgg {
                last_at: Some(at("2026-03-30 09:00")),
                last_result: Some(FollowupResult::NotSmooth),
                not_smooth_30d: 2,
            },
            outreach: OutreachAgg {
                contacts_in_pool: 1,
                last_contact_at: None,
            },
            fired_in_pool: Vec::new(),
            treatments: Vec::new(),
            repeat: RepeatAgg::default(),
        }
    }

    fn treatment(project: Option<&str>, department: &str, at_text: &str) -> TreatmentAgg {
        TreatmentAgg {
            project: project.map(str::to_string),
            department: Some(department.to_string()),
            last_at: at(at_text),
        }
    }

    #[test]
    fn the_latest_order_with_a_cycle_decides_how_overdue() {
        let cycles = Cycles(
            [("肉毒素除皱", 120), ("玻尿酸", 270), ("皮肤科", 60)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
        );
        let context = FactContext {
            tz: TZ,
            cycles: &cycles,
            model: None,
        };
        let mut r = record();
        r.treatments = vec![
            treatment(Some("肉毒素除皱"), "注射科", "2026-01-10 10:00"),
            // Later, but no cycle for the project or the department.
            treatment(Some("双眼皮"), "整形外科", "2026-02-01 10:00"),
        ];
        let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
        assert_eq!(facts.last_treatment.as_deref(), Some("肉毒素除皱"));
        assert_eq!(facts.expected_revisit_days, Some(120));
        assert_eq!(facts.days_overdue, Some(130 - 120));
        // A project without a cycle falls back to its department's.
        r.treatments
            .push(treatment(Some("光子嫩肤"), "皮肤科", "2026-05-10 10:00"));
        let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
        assert_eq!(facts.last_treatment.as_deref(), Some("皮肤科"));
        assert_eq!(facts.days_overdue, Some(10 - 60));
        // Two on the same visit: the one due first.
        r.treatments
            .push(treatment(Some("玻尿酸"), "注射科", "2026-05-10 10:00"));
        let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
        assert_eq!(facts.expected_revisit_days, Some(60));
        // Without cycles, nothing to say.
        assert_eq!(Facts::derive(&r, at("2026-05-20"), TZ).days_overdue, None);
    }

    fn churn_model() -> Arc<ChurnModel> {
        Arc::new(ChurnModel {
            fit_id: 7,
            as_of: 0,
            model: predict::Model {
                unit: predict::TimeUnit::Days,
                purchases: predict::BgNbd {
                    r: 0.5,
                    alpha: 30.0,
                    a: 0.6,
                    b: 2.5,
                },
                spend: Some(predict::GammaGamma {
                    p: 6.0,
                    q: 4.0,
                    v: 2_000.0,
                }),
            },
            scoring: predict::ScoreConfig::default(),
        })
    }

    #[test]
    fn churn_facts_follow_the_model_and_the_history_at_the_tick() {
        let model = churn_model();
        let context = FactContext {
            tz: TZ,
            cycles: &Cycles::default(),
            model: Some(&model),
        };
        let mut r = record();
        r.repeat = RepeatAgg {
            visit_days: 3,
            repeat_spend_cents: 1_000_000,
        };
        let soon = Facts::derive_in(&r, at("2026-03-25 09:00"), &context);
        let later = Facts::derive_in(&r, at("2026-09-25 09:00"), &context);
        let risk = |f: &Facts| match f.get("churn_risk") {
            Some(FactValue::Double(Some(v))) => v,
            other => panic!("{other:?}"),
        };
        assert!(
            risk(&soon) < risk(&later),
            "six months of silence raise the risk"
        );
        let summary = later.outlook.summary().unwrap();
        assert_eq!(
            (
                summary.frequency,
                summary.recency,
                summary.age,
                summary.monetary
            ),
            (2, 74.0, 263.0, 5_000.0)
        );
        let score = predict::score(&model.model, summary, &model.scoring).unwrap();
        assert_eq!(
            later.get("churn_score"),
            Some(FactValue::Int(Some(i64::from(score.risk_score))))
        );
        assert_eq!(
            later.get("churn_band"),
            Some(FactValue::Text(Some(score.band.as_str())))
        );
        assert_eq!(
            later.get("p_alive"),
            Some(FactValue::Double(Some(score.p_alive)))
        );
        assert_eq!(
            later.get("expected_visits_90d"),
            Some(FactValue::Double(Some(score.expected_visits)))
        );
        let clv = (score.clv.unwrap() * 100.0).round() / 100.0;
        assert_eq!(
            later.get("predicted_clv"),
            Some(FactValue::Double(Some(clv)))
        );
        assert_eq!(later.outlook.fit_id(), Some(7));
    }

    #[test]
    fn churn_facts_are_null_without_a_model_or_a_visit() {
        let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
        for name in [
            "churn_risk",
            "churn_score",
            "churn_band",
            "p_alive",
            "predicted_clv",
        ] {
            assert_eq!(facts.get(name).unwrap().to_string(), "null", "{name}");
        }
        let model = churn_model();
        let context = FactContext {
            tz: TZ,
            cycles: &Cycles::default(),
            model: Some(&model),
        };
        let mut r = record();
        r.visits = VisitAgg::default();
        let facts = Facts::derive_in(&r, at("2026-04-01"), &context);
        assert_eq!(facts.get("churn_risk"), Some(FactValue::Double(None)));
        assert!(
            CATALOGUE.iter().filter(|f| f.from_model).count() == 6,
            "every churn fact is marked as the model's"
        );
    }

    #[test]
    fn days_are_calendar_days_in_the_clinic_zone() {
        let facts = Facts::derive(&record(), at("2026-03-21 00:10"), TZ);
        // Last visit 23:50 the evening before: one day ago, though 20 minutes.
        assert_eq!(facts.days_since_last_visit, Some(1));
        assert_eq!(facts.days_in_pool, 20);
        assert_eq!(facts.days_since_first_visit, Some(75));
        assert_eq!(facts.days_since_last_purchase, Some(39));
    }

    #[test]
    fn in_pool_flags_compare_with_the_moment_of_entry() {
        let facts = Facts::derive(&record(), at("2026-04-01 09:00"), TZ);
        assert!(
            facts.visited_in_pool,
            "visit on 03-20 is after entry on 03-01"
        );
        assert!(!facts.purchased_in_pool, "order on 02-10 is before entry");
    }

    #[test]
    fn money_is_yuan_and_profile_facts_are_typed() {
        let facts = Facts::derive(&record(), at("2026-06-14 09:00"), TZ);
        assert_eq!(facts.total_spend, 12800.5);
        assert_eq!(facts.age, Some(35));
        assert_eq!(facts.gender, Some(Gender::Female));
        assert_eq!(facts.tags, ["vip", "玻尿酸"]);
        assert_eq!(facts.days_since_last_contact, None);
    }

    #[test]
    fn missing_history_is_null_not_zero() {
        let mut r = record();
        r.visits = VisitAgg::default();
        r.customer.birth_date = None;
        r.customer.city = Some(String::new());
        let facts = Facts::derive(&r, at("2026-04-01"), TZ);
        assert_eq!(facts.days_since_last_visit, None);
        assert_eq!(facts.visit_count, 0);
        assert!(!facts.visited_in_pool);
        assert_eq!(facts.age, None);
        assert_eq!(facts.city, None);
    }

    #[test]
    fn every_catalogued_fact_resolves_and_nothing_else_does() {
        let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
        for def in CATALOGUE {
            assert!(
                facts.cel_value(def.name).is_some(),
                "{} does not resolve",
                def.name
            );
        }
        assert!(facts.cel_value("favourite_colour").is_none());
    }

    #[test]
    fn values_display_as_reasons_show_them() {
        let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
        let shown: Vec<String> = [
            "city",
            "total_spend",
            "visited_in_pool",
            "days_since_last_contact",
            "tags",
        ]
        .iter()
        .map(|n| facts.get(n).unwrap().to_string())
        .collect();
        assert_eq!(
            shown,
            [
                "\"上海\"",
                "12800.5",
                "true",
                "null",
                "[\"vip\", \"玻尿酸\"]"
            ]
        );
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_date("1990-06-15"),
            NaiveDate::from_ymd_opt(1990, 6, 15)
        );
        assert_eq!(parse_date("1990-02-30"), None);
        assert_eq!(parse_date("15/06/1990"), None);
    }

    #[test]
    fn docs_define_every_fact() {
        let docs = include_str!("../docs/facts.md");
        for def in CATALOGUE {
            assert!(
                docs.contains(&format!("`{}`", def.name)),
                "docs/facts.md does not define `{}`",
                def.name
            );
        }
    }
}
