//! The catalogue of facts: every fact's name, type and exact definition,
//! in English and Chinese. `recall facts`, `docs/facts.md`, `recall check`
//! and the CEL resolver all follow it.

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
        "The customer's current pool: new, customer, warning, maintenance or churned. Conditions may also use the pool's Chinese name: `pool == \"预警池\"`.",
        "顾客当前所在的池：new、customer、warning、maintenance 或 churned。条件中也可写池的中文名：`pool == \"预警池\"`。",
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
        "Result of the most recent follow-up (回访): smooth, not_smooth, unreachable or refused; null if there is none. Conditions may also use the words an import accepts: `last_followup_result == \"不顺畅\"` is `== \"not_smooth\"`.",
        "最近一次回访结果：smooth、not_smooth、unreachable 或 refused；没有回访为 null。条件中也可写导入时接受的中文：`last_followup_result == \"不顺畅\"` 即 `== \"not_smooth\"`。",
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
        "birth_month",
        Int,
        true,
        "The month of the birth date, 1–12; null if the birth date is unknown. A birthday-month rule: `birth_month == current_month`.",
        "出生日期的月份，1–12；出生日期未知为 null。生日月规则写作 `birth_month == current_month`。",
    ),
    fact(
        "days_to_birthday",
        Int,
        true,
        "Clinic-calendar days to the next birthday: 0 on the birthday, 7 a week before, at most 365. Someone born on 29 February has their birthday on 28 February in years without a 29th (so it stays in their birth month). Null if the birth date is unknown.",
        "距下一个生日的天数（机构日历）：生日当天为 0，提前一周为 7，最多 365。2 月 29 日出生的顾客在没有 29 日的年份按 2 月 28 日过生日（仍在出生月内）。出生日期未知为 null。",
    ),
    fact(
        "current_month",
        Int,
        false,
        "The month of the tick's day in the clinic's calendar, 1–12, e.g. for `birth_month == current_month`.",
        "本次评估当天（机构日历）的月份，1–12，如用于 `birth_month == current_month`。",
    ),
    fact(
        "gender",
        Str,
        true,
        "female, male or other; null if unknown. Conditions may also compare it with the words an import accepts: `gender == \"女\"` is `gender == \"female\"`.",
        "female、male 或 other；未知为 null。条件中也可写导入时接受的中文：`gender == \"女\"` 即 `gender == \"female\"`。",
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
        "advisor",
        Str,
        true,
        "The customer's own advisor (专属顾问) as imported (column `advisor`, 专属顾问), e.g. \"王芳\"; null if none. Phone actions with `assign = \"advisor\"` give the call to this person.",
        "顾客的专属顾问（导入列 `advisor`／专属顾问），如 \"王芳\"；没有为 null。电话动作写 `assign = \"advisor\"` 时由此人拨打。",
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
