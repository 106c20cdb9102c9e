//! The recall report (留存及流失召回回流统计表): KPIs over a period, computed
//! from the store's aggregates, in Chinese or English.
//!
//! Every formula is written down in `docs/report.md`; this module follows
//! it. [`build`] reads; [`Report::rows`] flattens the numbers for CSV and
//! JSON; [`Report::render`] lays them out as tables for people.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::{self, Timestamp};
use crate::model::Pool;
use crate::store::report::ContactRow;
use crate::store::{Store, StoreError};

/// How the recall section is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Rule,
    Channel,
    Pool,
    Clinic,
    Month,
}

pub use crate::diag::Lang;

/// Fewer customers than this in a treated or control group: too few to tell.
pub const MIN_GROUP: i64 = 20;

/// One group of the recall section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recall {
    pub group: String,
    /// Messages handed over.
    pub messages: i64,
    /// Of those, contacts (reached the customer).
    pub contacts: i64,
    pub contacted_customers: i64,
    pub cost_milli: i64,
    pub recalled_customers: i64,
    pub revenue_cents: i64,
    pub responded: i64,
    pub booked: i64,
    pub visited: i64,
    pub purchased: i64,
}

impl Recall {
    pub fn recall_rate(&self) -> Option<f64> {
        ratio(self.recalled_customers, self.contacted_customers)
    }

    pub fn cost_per_recalled(&self) -> Option<f64> {
        (self.recalled_customers > 0)
            .then(|| self.cost_milli as f64 / 1000.0 / self.recalled_customers as f64)
    }

    pub fn roi(&self) -> Option<f64> {
        (self.cost_milli > 0).then(|| {
            let cost = self.cost_milli as f64 / 1000.0;
            (self.revenue_cents as f64 / 100.0 - cost) / cost
        })
    }
}

/// Treated against control for one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplift {
    pub rule: String,
    pub treated: i64,
    pub treated_returned: i64,
    pub control: i64,
    pub control_returned: i64,
    /// Treated rate − control rate, with its 95% interval.
    pub difference: Option<(f64, f64, f64)>,
    pub verdict: Verdict,
}

/// What the uplift numbers allow one to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    TooFew,
    Helped,
    Hurt,
    Unclear,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub from: Timestamp,
    pub to: Timestamp,
    pub by: By,
    pub pools_start: BTreeMap<Pool, i64>,
    pub pools_end: BTreeMap<Pool, i64>,
    /// (from, to) → moves in the period.
    pub moves: BTreeMap<(Pool, Pool), i64>,
    pub new_customers: i64,
    pub new_previous: i64,
    pub churned: i64,
    /// Customers not churned at the start.
    pub churn_base: i64,
    /// (months, cohort, retained)
    pub retention: Vec<(i64, i64, i64)>,
    /// (cohort, repurchased): see `Store::repurchase`
    pub repurchase: (i64, i64),
    /// (visited in 30 days, visited in 365 days)
    pub active: (i64, i64),
    pub recall: Vec<Recall>,
    pub recall_total: Recall,
    pub uplift: Vec<Uplift>,
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Report {
    /// The recall rows of each group, then the total (its `group` is empty).
    fn recall_rows(&self) -> impl Iterator<Item = &Recall> {
        self.recall
            .iter()
            .chain(std::iter::once(&self.recall_total))
    }

    pub fn growth(&self) -> Option<f64> {
        (self.new_previous > 0)
            .then(|| (self.new_customers - self.new_previous) as f64 / self.new_previous as f64)
    }

    pub fn churn_rate(&self) -> Option<f64> {
        ratio(self.churned, self.churn_base)
    }

    pub fn repurchase_rate(&self) -> Option<f64> {
        ratio(self.repurchase.1, self.repurchase.0)
    }

    pub fn active_ratio(&self) -> Option<f64> {
        ratio(self.active.0, self.active.1)
    }
}

/// Reads the report for `[from, to)`.
pub fn build(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: By,
    tz: Tz,
) -> Result<Report, StoreError> {
    let (from, to) = (from.timestamp(), to.timestamp());
    let pools = |at| -> Result<BTreeMap<Pool, i64>, StoreError> {
        let found = store.pools_at(at)?;
        Ok(Pool::ALL
            .iter()
            .map(|p| (*p, found.get(p.as_str()).copied().unwrap_or(0)))
            .collect())
    };
    let pools_start = pools(from)?;
    let pools_end = pools(to)?;
    let moves: BTreeMap<(Pool, Pool), i64> = store
        .moves_between(from, to)?
        .into_iter()
        .filter_map(|((a, b), n)| Some(((a.parse().ok()?, b.parse().ok()?), n)))
        .collect();
    let churned = moves
        .iter()
        .filter(|((a, b), _)| *b == Pool::Churned && *a != Pool::Churned)
        .map(|(_, n)| n)
        .sum();
    let churn_base = pools_start
        .iter()
        .filter(|(p, _)| **p != Pool::Churned)
        .map(|(_, n)| n)
        .sum();
    let length = to - from;
    let retention = [1, 3, 6]
        .into_iter()
        .map(|months| {
            store
                .retention(from, to, months * 30)
                .map(|(cohort, retained)| (months, cohort, retained))
        })
        .collect::<Result<_, _>>()?;
    let contacts = store.contacts(from, to)?;
    let recall_total = summarise("", &contacts);
    let mut groups: BTreeMap<String, Vec<ContactRow>> = BTreeMap::new();
    for c in contacts {
        let key = match by {
            By::Rule => c.rule_id.clone(),
            By::Channel => c.channel.clone(),
            By::Pool => c.pool.clone(),
            By::Clinic => c.clinic.clone(),
            By::Month => clock::format_local(c.at, tz).chars().take(7).collect(),
        };
        groups.entry(key).or_default().push(c);
    }
    let recall = groups
        .iter()
        .map(|(key, rows)| summarise(key, rows))
        .collect();
    let uplift = store
        .holdout_groups(from, to)?
        .into_iter()
        .map(|(rule, members)| {
            let count =
                |treated: bool| members.iter().filter(|m| m.treated == treated).count() as i64;
            let returned = |treated: bool| {
                members
                    .iter()
                    .filter(|m| m.treated == treated && m.returned)
                    .count() as i64
            };
            uplift(
                rule,
                (returned(true), count(true)),
                (returned(false), count(false)),
            )
        })
        .collect();
    Ok(Report {
        from,
        to,
        by,
        pools_start,
        pools_end,
        moves,
        new_customers: store.new_customers(from, to)?,
        new_previous: store.new_customers(from - length, from)?,
        churned,
        churn_base,
        retention,
        repurchase: store.repurchase(from, to, 180)?,
        active: (store.visitors(to, 30)?, store.visitors(to, 365)?),
        recall,
        recall_total,
        uplift,
    })
}

/// The recall numbers of a set of messages.
fn summarise(group: &str, rows: &[ContactRow]) -> Recall {
    let contacts: Vec<&ContactRow> = rows.iter().filter(|c| c.contact).collect();
    let customers = |f: &dyn Fn(&ContactRow) -> bool| {
        contacts
            .iter()
            .filter(|c| f(c))
            .map(|c| c.customer_id)
            .collect::<BTreeSet<_>>()
            .len() as i64
    };
    let count = |f: &dyn Fn(&ContactRow) -> bool| contacts.iter().filter(|c| f(c)).count() as i64;
    Recall {
        group: group.to_string(),
        messages: rows.len() as i64,
        contacts: contacts.len() as i64,
        contacted_customers: customers(&|_| true),
        cost_milli: rows.iter().map(|c| c.cost_milli).sum(),
        recalled_customers: customers(&|c| c.visited || c.purchased),
        revenue_cents: contacts.iter().map(|c| c.revenue_cents).sum(),
        responded: count(&|c| c.responded),
        booked: count(&|c| c.booked),
        visited: count(&|c| c.visited),
        purchased: count(&|c| c.purchased),
    }
}

/// Treated (returned, n) against control (returned, n).
pub fn uplift(rule: String, treated: (i64, i64), control: (i64, i64)) -> Uplift {
    let difference = (treated.1 > 0 && control.1 > 0)
        .then(|| newcombe(treated.0, treated.1, control.0, control.1));
    let verdict = match difference {
        _ if treated.1 < MIN_GROUP || control.1 < MIN_GROUP => Verdict::TooFew,
        Some((_, lo, _)) if lo > 0.0 => Verdict::Helped,
        Some((_, _, hi)) if hi < 0.0 => Verdict::Hurt,
        _ => Verdict::Unclear,
    };
    Uplift {
        rule,
        treated: treated.1,
        treated_returned: treated.0,
        control: control.1,
        control_returned: control.0,
        difference,
        verdict,
    }
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for k successes in n trials.
pub fn wilson(k: i64, n: i64) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    (centre - half, centre + half)
}

/// Newcombe's hybrid score interval (method 10) for p1 − p2: returns
/// (difference, lower, upper).
pub fn newcombe(k1: i64, n1: i64, k2: i64, n2: i64) -> (f64, f64, f64) {
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let (l1, u1) = wilson(k1, n1);
    let (l2, u2) = wilson(k2, n2);
    let d = p1 - p2;
    (
        d,
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    )
}

/// Labels in the report's language.
struct Words(Lang);

impl Words {
    fn t(&self, en: &'static str, zh: &'static str) -> &'static str {
        match self.0 {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }

    fn pool(&self, pool: Pool) -> String {
        match self.0 {
            Lang::En => pool.to_string(),
            Lang::Zh => pool.zh().to_string(),
        }
    }

    fn verdict(&self, verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::TooFew => self.t(
                "too few customers to tell (need 20 in each group)",
                "样本太少，无法判断（每组至少需要 20 人）",
            ),
            Verdict::Helped => self.t("the messages helped", "触达有效"),
            Verdict::Hurt => self.t("the messages hurt", "触达起了反作用"),
            Verdict::Unclear => self.t("no clear effect yet", "暂无明确效果"),
        }
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{:.1}%", v * 100.0))
}

fn yuan_milli(milli: i64) -> String {
    format!("{:.2}", milli as f64 / 1000.0)
}

fn yuan_cents(cents: i64) -> String {
    format!("{:.2}", cents as f64 / 100.0)
}

fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(String::new, |v| format!("{v:.decimals$}"))
}

/// One number of the report, for CSV and JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub section: &'static str,
    pub group: String,
    pub metric: String,
    pub value: String,
}

impl Report {
    /// Every number, flat: (section, group, metric, value). Rates are
    /// fractions (0.25), money is yuan with two decimals; empty when a
    /// rate has nothing to divide by.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut push = |section: &'static str, group: &str, metric: &str, value: String| {
            rows.push(Row {
                section,
                group: group.to_string(),
                metric: metric.to_string(),
                value,
            })
        };
        let fraction = |v: Option<f64>| number(v, 4);
        for (pool, n) in &self.pools_start {
            push("pools", pool.as_str(), "start", n.to_string());
        }
        for (pool, n) in &self.pools_end {
            push("pools", pool.as_str(), "end", n.to_string());
        }
        for ((a, b), n) in &self.moves {
            push("moves", &format!("{a}>{b}"), "customers", n.to_string());
        }
        push(
            "customers",
            "",
            "new_customers",
            self.new_customers.to_string(),
        );
        push(
            "customers",
            "",
            "new_customers_previous_period",
            self.new_previous.to_string(),
        );
        push(
            "customers",
            "",
            "new_customer_growth",
            fraction(self.growth()),
        );
        push("customers", "", "churned", self.churned.to_string());
        push("customers", "", "churn_rate", fraction(self.churn_rate()));
        for (months, cohort, retained) in &self.retention {
            let group = format!("{months}m");
            push("retention", &group, "cohort", cohort.to_string());
            push("retention", &group, "retained", retained.to_string());
            push(
                "retention",
                &group,
                "rate",
                fraction(ratio(*retained, *cohort)),
            );
        }
        push(
            "customers",
            "",
            "repurchase_eligible",
            self.repurchase.0.to_string(),
        );
        push(
            "customers",
            "",
            "repurchased",
            self.repurchase.1.to_string(),
        );
        push(
            "customers",
            "",
            "repurchase_rate",
            fraction(self.repurchase_rate()),
        );
        push("customers", "", "active_30d", self.active.0.to_string());
        push("customers", "", "active_365d", self.active.1.to_string());
        push(
            "customers",
            "",
            "active_ratio",
            fraction(self.active_ratio()),
        );
        for recall in self.recall_rows() {
            let group = if recall.group.is_empty() {
                "total"
            } else {
                recall.group.as_str()
            };
            push("recall", group, "messages", recall.messages.to_string());
            push("recall", group, "contacts", recall.contacts.to_string());
            push(
                "recall",
                group,
                "contacted_customers",
                recall.contacted_customers.to_string(),
            );
            push(
                "recall",
                group,
                "recalled_customers",
                recall.recalled_customers.to_string(),
            );
            push(
                "recall",
                group,
                "recall_rate",
                fraction(recall.recall_rate()),
            );
            push("recall", group, "cost", yuan_milli(recall.cost_milli));
            push(
                "recall",
                group,
                "recalled_revenue",
                yuan_cents(recall.revenue_cents),
            );
            push(
                "recall",
                group,
                "cost_per_recalled",
                number(recall.cost_per_recalled(), 2),
            );
            push("recall", group, "roi", fraction(recall.roi()));
            push("funnel", group, "contacted", recall.contacts.to_string());
            push("funnel", group, "responded", recall.responded.to_string());
            push("funnel", group, "booked", recall.booked.to_string());
            push("funnel", group, "visited", recall.visited.to_string());
            push("funnel", group, "purchased", recall.purchased.to_string());
        }
        for u in &self.uplift {
            push("uplift", &u.rule, "treated", u.treated.to_string());
            push(
                "uplift",
                &u.rule,
                "treated_returned",
                u.treated_returned.to_string(),
            );
            push("uplift", &u.rule, "control", u.control.to_string());
            push(
                "uplift",
                &u.rule,
                "control_returned",
                u.control_returned.to_string(),
            );
            push(
                "uplift",
                &u.rule,
                "uplift",
                fraction(u.difference.map(|d| d.0)),
            );
            push(
                "uplift",
                &u.rule,
                "ci95_low",
                fraction(u.difference.map(|d| d.1)),
            );
            push(
                "uplift",
                &u.rule,
                "ci95_high",
                fraction(u.difference.map(|d| d.2)),
            );
            push(
                "uplift",
                &u.rule,
                "verdict",
                match u.verdict {
                    Verdict::TooFew => "too_few",
                    Verdict::Helped => "helped",
                    Verdict::Hurt => "hurt",
                    Verdict::Unclear => "unclear",
                }
                .to_string(),
            );
        }
        rows
    }

    /// The report as tables for people, in `lang`.
    pub fn render(&self, lang: Lang, tz: Tz) -> String {
        use crate::cli::{Format, Rows};
        let w = Words(lang);
        let mut out = String::new();
        let mut table = |title: &str, rows: Rows| {
            out.push_str(&format!("\n{title}\n"));
            let mut buffer = Vec::new();
            let _ = rows.write(Format::Table, &mut buffer, None);
            out.push_str(&String::from_utf8_lossy(&buffer));
        };
        let period = format!(
            "{} {} — {}",
            w.t("Recall report", "留存及流失召回回流统计表"),
            clock::format_local(self.from, tz),
            clock::format_local(self.to, tz)
        );

        let mut pools = Rows::new(&[
            w.t("pool", "池"),
            w.t("start", "期初"),
            w.t("end", "期末"),
            w.t("change", "变化"),
        ]);
        for pool in Pool::ALL {
            let (a, b) = (self.pools_start[pool], self.pools_end[pool]);
            pools.push(vec![
                w.pool(*pool),
                a.to_string(),
                b.to_string(),
                format!("{:+}", b - a),
            ]);
        }
        table(w.t("Pools", "各池人数"), pools);

        let mut header = vec![w.t("from \\ to", "从 \\ 到").to_string()];
        header.extend(Pool::ALL.iter().map(|p| w.pool(*p)));
        let mut matrix = Rows {
            headers: header,
            rows: Vec::new(),
        };
        for a in Pool::ALL {
            let mut row = vec![w.pool(*a)];
            row.extend(Pool::ALL.iter().map(|b| match self.moves.get(&(*a, *b)) {
                Some(n) => n.to_string(),
                None if a == b => "—".to_string(),
                None => "0".to_string(),
            }));
            matrix.rows.push(row);
        }
        table(w.t("Moves between pools", "池间流转"), matrix);

        let mut kpis = Rows::new(&[
            w.t("metric", "指标"),
            w.t("value", "数值"),
            w.t("of", "基数"),
        ]);
        kpis.push(vec![
            w.t("new customers", "新增顾客").into(),
            self.new_customers.to_string(),
            String::new(),
        ]);
        kpis.push(vec![
            w.t("new customer growth", "新客增长率").into(),
            percent(self.growth()),
            format!("{} {}", w.t("previous period", "上期"), self.new_previous),
        ]);
        kpis.push(vec![
            w.t("churn rate", "流失率").into(),
            percent(self.churn_rate()),
            format!("{}/{}", self.churned, self.churn_base),
        ]);
        for (months, cohort, retained) in &self.retention {
            let label = match (lang, months) {
                (Lang::En, m) => {
                    format!("retention at {m} month{}", if *m == 1 { "" } else { "s" })
                }
                (Lang::Zh, m) => format!("{m}个月留存率"),
            };
            kpis.push(vec![
                label,
                percent(ratio(*retained, *cohort)),
                format!("{retained}/{cohort}"),
            ]);
        }
        kpis.push(vec![
            w.t("repurchase rate (180 days)", "复购率（180天内）")
                .into(),
            percent(self.repurchase_rate()),
            format!("{}/{}", self.repurchase.1, self.repurchase.0),
        ]);
        kpis.push(vec![
            w.t("active ratio (30 / 365 days)", "活跃度（30天/365天）")
                .into(),
            percent(self.active_ratio()),
            format!("{}/{}", self.active.0, self.active.1),
        ]);
        table(w.t("Customers", "顾客"), kpis);

        let by = match (self.by, lang) {
            (By::Rule, Lang::En) => "rule",
            (By::Rule, Lang::Zh) => "规则",
            (By::Channel, Lang::En) => "channel",
            (By::Channel, Lang::Zh) => "渠道",
            (By::Pool, Lang::En) => "pool",
            (By::Pool, Lang::Zh) => "池",
            (By::Clinic, Lang::En) => "clinic",
            (By::Clinic, Lang::Zh) => "机构",
            (By::Month, Lang::En) => "month",
            (By::Month, Lang::Zh) => "月份",
        };
        let mut recall = Rows::new(&[
            by,
            w.t("messages", "消息数"),
            w.t("contacted", "触达人数"),
            w.t("recalled", "召回人数"),
            w.t("recall rate", "召回率"),
            w.t("cost", "成本(元)"),
            w.t("revenue", "召回营收(元)"),
            w.t("cost/recalled", "单客召回成本"),
            "ROI",
        ]);
        for r in self.recall_rows() {
            let group = total_or(&r.group, w.t("total", "合计"));
            recall.push(vec![
                group,
                r.messages.to_string(),
                r.contacted_customers.to_string(),
                r.recalled_customers.to_string(),
                percent(r.recall_rate()),
                yuan_milli(r.cost_milli),
                yuan_cents(r.revenue_cents),
                number(r.cost_per_recalled(), 2),
                percent(r.roi()),
            ]);
        }
        table(w.t("Recall", "召回"), recall);

        let mut funnel = Rows::new(&[
            by,
            w.t("contacted", "触达"),
            w.t("responded", "回应"),
            w.t("booked", "预约"),
            w.t("visited", "到院"),
            w.t("purchased", "消费"),
        ]);
        for r in self.recall_rows() {
            let group = total_or(&r.group, w.t("total", "合计"));
            funnel.push(vec![
                group,
                r.contacts.to_string(),
                r.responded.to_string(),
                r.booked.to_string(),
                r.visited.to_string(),
                r.purchased.to_string(),
            ]);
        }
        table(w.t("Funnel", "转化漏斗"), funnel);

        if self.uplift.is_empty() {
            out.push_str(&format!(
                "\n{}\n",
                w.t(
                    "Uplift: no rule had a control group in this period (set holdout = 0.1 on a rule to measure it).",
                    "增量效果：本期没有规则设置对照组（在规则中加 holdout = 0.1 即可衡量）。"
                )
            ));
        } else {
            let mut uplift = Rows::new(&[
                w.t("rule", "规则"),
                w.t("treated returned", "干预组回流"),
                w.t("control returned", "对照组回流"),
                w.t("uplift", "增量"),
                w.t("95% interval", "95%置信区间"),
                w.t("verdict", "结论"),
            ]);
            for u in &self.uplift {
                let rate = |k, n| format!("{}/{} ({})", k, n, percent(ratio(k, n)));
                uplift.push(vec![
                    u.rule.clone(),
                    rate(u.treated_returned, u.treated),
                    rate(u.control_returned, u.control),
                    u.difference
                        .map_or_else(String::new, |d| format!("{:+.1} pt", d.0 * 100.0)),
                    u.difference.map_or_else(String::new, |d| {
                        format!("{:+.1} … {:+.1} pt", d.1 * 100.0, d.2 * 100.0)
                    }),
                    w.verdict(u.verdict).to_string(),
                ]);
            }
            table(
                w.t("Uplift against the control group", "与对照组相比的增量效果"),
                uplift,
            );
        }
        format!("{period}\n{out}")
    }
}

/// A group's name, or `total` for the total row (its group is empty).
fn total_or(group: &str, total: &str) -> String {
    if group.is_empty() { total } else { group }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn newcombe_reproduces_the_published_examples() {
        // Newcombe (1998), Statistics in Medicine 17:873-890, Table II,
        // method 10 (hybrid score): expected limits to four decimals.
        let cases = [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((6, 7, 2, 7), (0.0582, 0.8062)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
            ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ];
        for ((k1, n1, k2, n2), (lo, hi)) in cases {
            let (_, l, h) = newcombe(k1, n1, k2, n2);
            assert!(
                close(l, lo) && close(h, hi),
                "{k1}/{n1} vs {k2}/{n2}: got ({l:.4}, {h:.4})"
            );
        }
    }

    #[test]
    fn small_groups_are_called_too_small_whatever_the_numbers() {
        assert_eq!(
            uplift("r".into(), (9, 10), (1, 10)).verdict,
            Verdict::TooFew
        );
        assert_eq!(
            uplift("r".into(), (30, 40), (5, 40)).verdict,
            Verdict::Helped
        );
        assert_eq!(uplift("r".into(), (5, 40), (30, 40)).verdict, Verdict::Hurt);
        assert_eq!(
            uplift("r".into(), (12, 40), (10, 40)).verdict,
            Verdict::Unclear
        );
        assert_eq!(uplift("r".into(), (0, 0), (3, 40)).difference, None);
    }
}
