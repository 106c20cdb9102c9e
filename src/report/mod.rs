//! The recall report (留存及流失召回回流统计表): KPIs over a period, computed
//! from the store's aggregates, in Chinese or English.
//!
//! Every formula is written down in `docs/report.md`; this module follows
//! it. [`build`] reads; [`Report::book`] lays the numbers out as the
//! 统计表's sections, the one set of rows every format is written from.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::base::clock::{self, Timestamp};
use crate::base::i18n::{Text, t};
use crate::base::model::Pool;
use crate::base::output::{Book, Cell, Rows, Section};
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

pub use crate::base::diag::Lang;

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
    /// What the rule earned beyond what its control group says would have
    /// come anyway; `None` with fewer than two customers in a group.
    pub incremental: Option<Incremental>,
}

/// A rule's incremental revenue and ROI, from its control group (intention
/// to treat): what the treated customers bought within the window, per
/// customer, minus what the control group's customers bought, times the
/// treated customers; over what the rule's messages cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    /// Incremental revenue in yuan: (estimate, 95% low, 95% high).
    pub revenue: (f64, f64, f64),
    /// What the treated customers' messages cost, in yuan.
    pub cost: f64,
    /// (incremental revenue − cost) / cost, with the revenue's interval
    /// carried through; `None` when the messages cost nothing.
    pub roi: Option<(f64, f64, f64)>,
}

/// ROI beyond this (10× the cost, 1000%) is shown as "> 1000%": a ratio
/// that large says the cost is tiny beside the revenue, not how large the
/// return was, and its digits would read as a result.
pub const ROI_SHOWN_UP_TO: f64 = 10.0;

/// Incremental revenue and ROI of a rule from what each treated and each
/// control customer bought (fen) and what the messages cost (厘). Welch's
/// interval for the difference of the two means, scaled by the treated.
pub fn incremental(treated: &[i64], control: &[i64], cost_milli: i64) -> Option<Incremental> {
    if treated.len() < 2 || control.len() < 2 {
        return None;
    }
    let moments = |cents: &[i64]| {
        let n = cents.len() as f64;
        let mean = cents.iter().map(|c| *c as f64 / 100.0).sum::<f64>() / n;
        let var = cents
            .iter()
            .map(|c| (*c as f64 / 100.0 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (n, mean, var)
    };
    let ((nt, mt, vt), (nc, mc, vc)) = (moments(treated), moments(control));
    let se = (vt / nt + vc / nc).sqrt();
    let d = mt - mc;
    let revenue = (nt * d, nt * (d - Z95 * se), nt * (d + Z95 * se));
    let cost = cost_milli as f64 / 1000.0;
    let roi = (cost_milli > 0).then(|| {
        let r = |v: f64| (v - cost) / cost;
        (r(revenue.0), r(revenue.1), r(revenue.2))
    });
    Some(Incremental { revenue, cost, roi })
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
            let revenue = |treated: bool| -> Vec<i64> {
                members
                    .iter()
                    .filter(|m| m.treated == treated)
                    .map(|m| m.revenue_cents)
                    .collect()
            };
            let cost = members.iter().map(|m| m.cost_milli).sum();
            Uplift {
                incremental: incremental(&revenue(true), &revenue(false), cost),
                ..uplift(
                    rule,
                    (returned(true), count(true)),
                    (returned(false), count(false)),
                )
            }
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
        incremental: None,
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

/// What the uplift numbers allow one to say, in words.
fn verdict_text(verdict: Verdict) -> Text {
    match verdict {
        Verdict::TooFew => t!("report.verdict.too_few"),
        Verdict::Helped => t!("report.verdict.helped"),
        Verdict::Hurt => t!("report.verdict.hurt"),
        Verdict::Unclear => t!("report.verdict.unclear"),
    }
}

impl Report {
    /// The report in `lang`: its period, then one section per table of the
    /// 统计表 in the wide layout a clinic's manager reads (a row per pool,
    /// group or indicator, a column per number). The one set of rows the
    /// terminal's tables, CSV, JSON and the workbook are all written from:
    /// rates are rates (`Cell::Percent`), money is yuan, counts are counts.
    pub fn book(&self, lang: Lang, tz: Tz) -> Book {
        let period = t!(
            "report.title",
            from = clock::format_local(self.from, tz),
            to = clock::format_local(self.to, tz)
        );
        let section =
            |key: &str, title: Text, rows: Rows| Section::new(key, title.render(lang), rows);
        Book {
            title: Some(period.render(lang)),
            sections: vec![
                section("pools", t!("report.pools.title"), self.pools_rows(lang)),
                section("moves", t!("report.moves.title"), self.moves_rows(lang)),
                section(
                    "customers",
                    t!("report.customers.title"),
                    self.customer_rows(lang),
                ),
                section("recall", t!("report.recall.title"), self.recall_table(lang)),
                section("funnel", t!("report.funnel.title"), self.funnel_table(lang)),
                section("uplift", t!("report.uplift.title"), self.uplift_table(lang))
                    .when_empty(t!("report.uplift.none").render(lang)),
            ],
            notes: vec![
                t!("report.note.last_touch").render(lang),
                t!("report.note.controlled").render(lang),
            ],
        }
    }

    /// Each pool at the start and the end of the period.
    fn pools_rows(&self, lang: Lang) -> Rows {
        let mut pools = Rows::keyed(
            lang,
            &[
                ("pool", t!("report.pools.pool")),
                ("start", t!("report.pools.start")),
                ("end", t!("report.pools.end")),
                ("change", t!("report.pools.change")),
            ],
        );
        for pool in Pool::ALL {
            let (a, b) = (self.pools_start[pool], self.pools_end[pool]);
            pools.push(vec![
                pool_cell(*pool, lang),
                Cell::Int(a),
                Cell::Int(b),
                Cell::Delta(b - a),
            ]);
        }
        pools
    }

    /// Moves from each pool (rows) to each pool (columns).
    fn moves_rows(&self, lang: Lang) -> Rows {
        let mut columns = vec![("from", t!("report.moves.from_to"))];
        columns.extend(Pool::ALL.iter().map(|p| (p.as_str(), p.name())));
        let mut matrix = Rows::keyed(lang, &columns);
        for a in Pool::ALL {
            let mut row = vec![pool_cell(*a, lang)];
            row.extend(Pool::ALL.iter().map(|b| match self.moves.get(&(*a, *b)) {
                Some(n) => Cell::Int(*n),
                None if a == b => Cell::Empty,
                None => Cell::Int(0),
            }));
            matrix.push(row);
        }
        matrix
    }

    /// New customers, churn, retention, repurchase and activity: one
    /// indicator a row, with the customers a rate counts and the base it
    /// is out of.
    fn customer_rows(&self, lang: Lang) -> Rows {
        let mut kpis = Rows::keyed(
            lang,
            &[
                ("metric", t!("report.customers.metric")),
                ("value", t!("report.customers.value")),
                ("count", t!("report.customers.count")),
                ("base", t!("report.customers.of")),
            ],
        );
        let mut kpi = |key: &str, label: Text, value: Cell, count: Cell, base: Cell| {
            kpis.push(vec![Cell::term(key, &label, lang), value, count, base]);
        };
        let rate = |part: i64, whole: i64| {
            (
                Cell::percent(ratio(part, whole)),
                Cell::Int(part),
                Cell::Int(whole),
            )
        };
        kpi(
            "new_customers",
            t!("report.customers.new"),
            Cell::Int(self.new_customers),
            Cell::Empty,
            Cell::Empty,
        );
        kpi(
            "new_customers_previous_period",
            t!("report.customers.previous"),
            Cell::Int(self.new_previous),
            Cell::Empty,
            Cell::Empty,
        );
        kpi(
            "new_customer_growth",
            t!("report.customers.growth"),
            Cell::percent(self.growth()),
            Cell::Empty,
            Cell::Empty,
        );
        let (value, count, base) = rate(self.churned, self.churn_base);
        kpi(
            "churn_rate",
            t!("report.customers.churn_rate"),
            value,
            count,
            base,
        );
        for (months, cohort, retained) in &self.retention {
            let label = if *months == 1 {
                t!("report.customers.retention_month", months)
            } else {
                t!("report.customers.retention_months", months)
            };
            let (value, count, base) = rate(*retained, *cohort);
            kpi(&format!("retention_{months}m"), label, value, count, base);
        }
        let (value, count, base) = rate(self.repurchase.1, self.repurchase.0);
        let label = t!("report.customers.repurchase_rate");
        kpi("repurchase_rate", label, value, count, base);
        let (value, count, base) = rate(self.active.0, self.active.1);
        let label = t!("report.customers.active_ratio");
        kpi("active_ratio", label, value, count, base);
        kpis
    }

    /// The heading of the group column: what the recall rows are grouped by.
    fn by(&self) -> (&'static str, Text) {
        match self.by {
            By::Rule => ("rule", t!("report.by.rule")),
            By::Channel => ("channel", t!("report.by.channel")),
            By::Pool => ("pool", t!("report.by.pool")),
            By::Clinic => ("clinic", t!("report.by.clinic")),
            By::Month => ("month", t!("report.by.month")),
        }
    }

    /// Per group and in total: messages, who was reached and recalled, cost.
    fn recall_table(&self, lang: Lang) -> Rows {
        let mut recall = Rows::keyed(
            lang,
            &[
                self.by(),
                ("messages", t!("report.recall.messages")),
                ("contacted_customers", t!("report.recall.contacted")),
                ("recalled_customers", t!("report.recall.recalled")),
                ("recall_rate", t!("report.recall.rate")),
                ("cost", t!("report.recall.cost")),
                ("recalled_revenue", t!("report.recall.revenue")),
                ("cost_per_recalled", t!("report.recall.cost_per_recalled")),
                ("roi", t!("report.recall.roi")),
            ],
        );
        for r in self.recall_rows() {
            recall.push(vec![
                group_cell(&r.group, lang),
                Cell::Int(r.messages),
                Cell::Int(r.contacted_customers),
                Cell::Int(r.recalled_customers),
                Cell::percent(r.recall_rate()),
                Cell::yuan_milli(r.cost_milli),
                Cell::yuan_cents(r.revenue_cents),
                Cell::decimal(r.cost_per_recalled(), 2),
                roi_cell(r.roi(), lang),
            ]);
        }
        recall
    }

    /// Per group and in total: contacted, responded, booked, visited, bought.
    fn funnel_table(&self, lang: Lang) -> Rows {
        let mut funnel = Rows::keyed(
            lang,
            &[
                self.by(),
                ("contacted", t!("report.funnel.contacted")),
                ("responded", t!("report.funnel.responded")),
                ("booked", t!("report.funnel.booked")),
                ("visited", t!("report.funnel.visited")),
                ("purchased", t!("report.funnel.purchased")),
            ],
        );
        for r in self.recall_rows() {
            funnel.push(vec![
                group_cell(&r.group, lang),
                Cell::Int(r.contacts),
                Cell::Int(r.responded),
                Cell::Int(r.booked),
                Cell::Int(r.visited),
                Cell::Int(r.purchased),
            ]);
        }
        funnel
    }

    /// Per rule with a control group: both groups, their return rates, the
    /// uplift with its 95% interval, and what that allows one to say.
    fn uplift_table(&self, lang: Lang) -> Rows {
        let mut uplift = Rows::keyed(
            lang,
            &[
                ("rule", t!("report.uplift.rule")),
                ("treated", t!("report.uplift.treated")),
                ("treated_returned", t!("report.uplift.treated_returned")),
                ("treated_rate", t!("report.uplift.treated_rate")),
                ("control", t!("report.uplift.control")),
                ("control_returned", t!("report.uplift.control_returned")),
                ("control_rate", t!("report.uplift.control_rate")),
                ("uplift", t!("report.uplift.uplift")),
                ("ci95_low", t!("report.uplift.ci95_low")),
                ("ci95_high", t!("report.uplift.ci95_high")),
                ("verdict", t!("report.uplift.verdict")),
                (
                    "incremental_revenue",
                    t!("report.uplift.incremental_revenue"),
                ),
                ("incremental_revenue_low", t!("report.uplift.revenue_low")),
                ("incremental_revenue_high", t!("report.uplift.revenue_high")),
                ("cost", t!("report.uplift.cost")),
                ("roi", t!("report.uplift.roi")),
                ("roi_low", t!("report.uplift.roi_low")),
                ("roi_high", t!("report.uplift.roi_high")),
            ],
        );
        for u in &self.uplift {
            let money = u.incremental.as_ref();
            let revenue = |pick: fn(&(f64, f64, f64)) -> f64| {
                Cell::decimal(money.map(|m| pick(&m.revenue)), 2)
            };
            let roi = |pick: fn(&(f64, f64, f64)) -> f64| {
                roi_cell(money.and_then(|m| m.roi.as_ref()).map(pick), lang)
            };
            uplift.push(vec![
                Cell::Text(u.rule.clone()),
                Cell::Int(u.treated),
                Cell::Int(u.treated_returned),
                Cell::percent(ratio(u.treated_returned, u.treated)),
                Cell::Int(u.control),
                Cell::Int(u.control_returned),
                Cell::percent(ratio(u.control_returned, u.control)),
                Cell::points(u.difference.map(|d| d.0)),
                Cell::points(u.difference.map(|d| d.1)),
                Cell::points(u.difference.map(|d| d.2)),
                verdict_cell(u.verdict, lang),
                revenue(|r| r.0),
                revenue(|r| r.1),
                revenue(|r| r.2),
                Cell::decimal(money.map(|m| m.cost), 2),
                roi(|r| r.0),
                roi(|r| r.1),
                roi(|r| r.2),
            ]);
        }
        uplift
    }
}

/// An ROI: a percentage up to ±[`ROI_SHOWN_UP_TO`], beyond it "> 1000%"
/// (or "< −1000%"), whose digits would read as a result.
fn roi_cell(roi: Option<f64>, lang: Lang) -> Cell {
    match roi {
        Some(r) if r > ROI_SHOWN_UP_TO => {
            Cell::term("over_1000_percent", &t!("report.roi.over"), lang)
        }
        Some(r) if r < -ROI_SHOWN_UP_TO => {
            Cell::term("under_minus_1000_percent", &t!("report.roi.under"), lang)
        }
        roi => Cell::percent(roi),
    }
}

/// A pool: its id for scripts, its name for people.
fn pool_cell(pool: Pool, lang: Lang) -> Cell {
    Cell::term(pool.as_str(), &pool.name(), lang)
}

/// A verdict: its id for scripts, its words for people.
fn verdict_cell(verdict: Verdict, lang: Lang) -> Cell {
    let key = match verdict {
        Verdict::TooFew => "too_few",
        Verdict::Helped => "helped",
        Verdict::Hurt => "hurt",
        Verdict::Unclear => "unclear",
    };
    Cell::term(key, &verdict_text(verdict), lang)
}

/// A group's name, or the total row (its group is empty): `total`, 合计.
fn group_cell(group: &str, lang: Lang) -> Cell {
    if group.is_empty() {
        Cell::term("total", &t!("report.total"), lang)
    } else {
        Cell::Text(group.to_string())
    }
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

    #[test]
    fn incremental_revenue_is_the_difference_of_means_times_the_treated() {
        // Treated bought 100, 0, 200, 0 yuan: mean 75, variance 27500/3.
        // Control bought 0, 0, 100, 0 yuan: mean 25, variance 2500.
        // Welch: se = sqrt(27500/3/4 + 2500/4) = 54.0062; 4 treated, so the
        // half-width is 4 × 1.95996 × 54.0062 = 423.40.
        let m = incremental(&[10_000, 0, 20_000, 0], &[0, 0, 10_000, 0], 100_000).unwrap();
        let (est, lo, hi) = m.revenue;
        assert!((est - 200.0).abs() < 1e-9, "{est}");
        let half = 4.0 * Z95 * (27_500.0f64 / 3.0 / 4.0 + 2_500.0 / 4.0).sqrt();
        assert!((lo - (200.0 - half)).abs() < 1e-9 && (hi - (200.0 + half)).abs() < 1e-9);
        assert!((half - 423.40).abs() < 0.005, "{half}");
        assert_eq!(m.cost, 100.0);
        let (roi, roi_lo, roi_hi) = m.roi.unwrap();
        assert!((roi - 1.0).abs() < 1e-9);
        assert!((roi_lo - (lo - 100.0) / 100.0).abs() < 1e-9);
        assert!((roi_hi - (hi - 100.0) / 100.0).abs() < 1e-9);
        // Free messages: revenue, no ROI. One customer a group: nothing.
        assert_eq!(incremental(&[1, 2], &[3, 4], 0).unwrap().roi, None);
        assert_eq!(incremental(&[1], &[3, 4], 10), None);
    }

    #[test]
    fn an_roi_beyond_1000_percent_is_not_printed_as_a_number() {
        let lang = Lang::En;
        assert_eq!(roi_cell(Some(2.5), lang), Cell::Percent(2.5));
        let Cell::Term { key, text } = roi_cell(Some(1234.5), lang) else {
            panic!()
        };
        assert_eq!(
            (key.as_str(), text.as_str()),
            ("over_1000_percent", "> 1000%")
        );
        assert!(matches!(roi_cell(Some(-40.0), lang), Cell::Term { .. }));
        assert_eq!(roi_cell(None, lang), Cell::Empty);
    }
}
