//! Rules: which customers move between pools and what is sent to them.
//!
//! Two stages. [`file`] is a rule file as written; [`load`] validates every
//! file in the rules folder and compiles each condition once into a CEL
//! program, producing a [`RuleSet`] or a report naming every problem with its
//! file, line and column. [`eval`] decides, purely, which rule fires for a
//! customer: no SQLite, no clock, no network.

mod compile;
pub mod eval;
pub mod file;
mod lint;
pub mod typecheck;
pub mod values;
mod window;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cel::{Env, Program};

use crate::base::diag::{self, Checked, Diagnostic, Report};
use crate::base::i18n::t;
use crate::base::limits;
use crate::base::model::{Channel, Pool};
use crate::base::perm;
use crate::templates::TemplateSet;
use compile::Checker;
use file::RuleFile;

/// A validated rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub from: Vec<Pool>,
    pub to: Option<Pool>,
    pub priority: i64,
    pub condition: Condition,
    /// `cooldown` in days: the rule's actions send to a customer at most
    /// once per this many days, whatever the moves; a rule that only sends
    /// fires again after it in the same pool stay. `None`: a rule that only
    /// sends fires once per stay, a moving rule sends each time it moves.
    pub cooldown_days: Option<i64>,
    /// Share of customers kept as a control group: moved, never sent to.
    pub holdout: f64,
    /// Days after a contact in which a return counts as this rule's recall.
    pub attribution_days: i64,
    pub enabled: bool,
    pub actions: Vec<Action>,
    /// Where the rule is written, for messages.
    pub origin: Origin,
}

impl Rule {
    /// Whether firing this rule moves the customer to another pool.
    pub fn moves(&self) -> bool {
        self.to.is_some()
    }

    /// Whether this customer is in the rule's control group: a stable
    /// function of the customer and the rule, so a customer stays in (or
    /// out of) a rule's control group for good.
    pub fn holds_out(&self, customer: &str) -> bool {
        self.holdout > 0.0 && holdout_draw(customer, &self.id) < self.holdout
    }
}

/// A number in [0, 1) from FNV-1a over "customer:rule": stable across runs,
/// machines and versions (it is written down here, not taken from a library
/// whose hashing may change).
pub fn holdout_draw(customer: &str, rule: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in customer.bytes().chain([b':']).chain(rule.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Days after a contact in which a visit or purchase counts as a recall,
/// unless a rule says otherwise.
pub const DEFAULT_ATTRIBUTION_DAYS: i64 = 30;

/// A compiled `when` condition.
#[derive(Debug)]
pub struct Condition {
    pub source: String,
    pub program: Program,
    /// The facts the condition reads, sorted, for explaining decisions.
    pub facts: Vec<&'static str>,
}

/// One thing to send when a rule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub channel: Channel,
    pub template: String,
    /// How long after the tick the message is due.
    pub delay: Duration,
    /// How long after it is due an unsent message expires (`expires_after`).
    pub expires_after: Option<Duration>,
    /// Who is given a phone call: the round robin, or the customer's advisor.
    pub assign: Assign,
    /// What becomes of the message if the customer is no longer where it
    /// was queued when it is due.
    pub stale: Stale,
    /// The byte range of the action's `assign` value, if it has one.
    pub assign_span: Option<Range<usize>>,
    /// The byte range of the action's `channel` value, for pointing at it.
    pub span: Range<usize>,
}

/// Who makes the call of a phone action (`assign = ...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Assign {
    /// The phone sender's round robin over its staff.
    #[default]
    RoundRobin,
    /// The customer's own advisor (专属顾问), if they have one the sender
    /// can give the call to; otherwise the round robin.
    Advisor,
}

impl Assign {
    /// The values `assign` takes.
    pub const NAMES: &'static [&'static str] = &["advisor", "round_robin"];

    pub fn parse(text: &str) -> Option<Assign> {
        match text {
            "advisor" => Some(Assign::Advisor),
            "round_robin" => Some(Assign::RoundRobin),
            _ => None,
        }
    }
}

/// What becomes of a message whose customer, by the time it is due, has
/// moved to another pool or visited since it was queued (`stale = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Not sent: status `stale`, with why.
    Cancel,
    /// Sent all the same.
    Send,
}

impl Stale {
    /// The values `stale` takes.
    pub const NAMES: &'static [&'static str] = &["cancel", "send"];

    pub fn parse(text: &str) -> Option<Stale> {
        match text {
            "cancel" => Some(Stale::Cancel),
            "send" => Some(Stale::Send),
            _ => None,
        }
    }

    /// Without `stale = ...`: marketing (sms, wechat, email) is cancelled,
    /// a phone call (a task for staff, who read the customer's news first)
    /// is service and goes ahead.
    pub fn default_for(channel: Channel) -> Stale {
        match channel {
            Channel::Phone => Stale::Send,
            Channel::Sms | Channel::Wechat | Channel::Email => Stale::Cancel,
        }
    }
}

/// File and line of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    /// The byte range of the rule's `id` value, for pointing at the rule.
    pub id_span: Range<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Every rule, with the order in which rules are tried for each pool.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// For each pool (indexed as in `Pool::ALL`), the enabled rules watching
    /// it, highest priority first, ties by id.
    order: [Vec<usize>; 5],
    env: Arc<Env>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Builds the evaluation order.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut order: [Vec<usize>; 5] = Default::default();
        for (index, rule) in rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            for pool in &rule.from {
                order[pool_index(*pool)].push(index);
            }
        }
        for list in &mut order {
            list.sort_by(|a, b| {
                let (a, b) = (&rules[*a], &rules[*b]);
                b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
            });
        }
        RuleSet {
            rules,
            order,
            env: cel_env(),
        }
    }

    /// The enabled rules watching `pool`, in the order they are tried.
    pub fn for_pool(&self, pool: Pool) -> &[usize] {
        &self.order[pool_index(pool)]
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The CEL environment conditions were compiled in.
    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }
}

fn pool_index(pool: Pool) -> usize {
    Pool::ALL.iter().position(|p| *p == pool).unwrap_or(0)
}

/// The CEL standard environment all conditions use.
fn cel_env() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

/// Loads every `*.toml` file in `dir` (not recursively: `rules/tests/` is for
/// rule tests), checking each rule against the facts, pools, channels and
/// `templates`. Returns the rules, or every problem found.
pub fn load(dir: &Path, templates: Option<&TemplateSet>) -> Checked<RuleSet> {
    let mut report = Report::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            report.push(
                Diagnostic::error(dir, None, t!("rules.read_folder", error = e))
                    .hint(t!("rules.read_folder_hint")),
            );
            return Err(report);
        }
    };
    paths.sort();
    let refused = std::iter::once(dir).chain(paths.iter().map(PathBuf::as_path));
    for refused in refused.filter_map(perm::others_can_write) {
        report.push(refused);
    }
    let env = cel_env();
    let mut rules = Vec::new();
    for path in &paths {
        if let Some(too_big) = too_big(path) {
            report.push(too_big);
            continue;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => rules.extend(load_text(path, &text, &env, templates, &mut report)),
            Err(e) => report.push(Diagnostic::error(
                path,
                None,
                t!("diag.cannot_read", error = e),
            )),
        }
    }
    check_unique_ids(&rules, &mut report);
    if rules.is_empty() && !report.has_errors() {
        report.push(Diagnostic::warning(dir, None, t!("rules.none")).hint(t!("rules.none_hint")));
    }
    if report.has_errors() {
        Err(report)
    } else {
        let mut set = RuleSet::new(rules);
        set.env = env;
        for warning in lint::lint(&set) {
            report.push(warning);
        }
        Ok((set, report))
    }
}

/// A rule file over [`limits::RULE_FILE_BYTES`], refused before it is read.
fn too_big(path: &Path) -> Option<Diagnostic> {
    let bytes = std::fs::metadata(path).ok()?.len();
    (bytes > limits::RULE_FILE_BYTES).then(|| {
        Diagnostic::error(
            path,
            None,
            t!(
                "rules.file.too_big",
                size = limits::size(bytes),
                limit = limits::size(limits::RULE_FILE_BYTES)
            ),
        )
        .hint(t!("rules.file.too_big_hint"))
    })
}

/// Parses and validates one rule file's text.
pub fn load_text(
    path: &Path,
    text: &str,
    env: &Env,
    templates: Option<&TemplateSet>,
    report: &mut Report,
) -> Vec<Rule> {
    report.add_source(path, text);
    let file: RuleFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let mut diagnostic = diag::from_toml_error(path, &e);
            // `when = "pool == "new""`: the inner quotes end the TOML text.
            let line = e.span().and_then(|span| {
                let start = text[..span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                text[start..].lines().next()
            });
            if let Some(line) = line
                && line.trim_start().starts_with("when")
                && line.matches('"').count() > 2
            {
                diagnostic = diagnostic.hint(t!("rules.file.single_quotes_hint"));
            }
            // `id ＝ "x"`, `from = “new”`: typed with Chinese punctuation.
            if let Some(line) = line
                && !compile::full_width(line).is_empty()
            {
                diagnostic = diagnostic.hint(t!(
                    "rules.file.full_width_hint",
                    pairs = compile::pairs(line)
                ));
            }
            report.push(diagnostic.hint(t!("rules.file.shape_hint")));
            return Vec::new();
        }
    };
    if file.rule.is_empty() {
        report.push(
            Diagnostic::warning(path, None, t!("rules.file.empty"))
                .hint(t!("rules.file.empty_hint")),
        );
    }
    let mut rules = Vec::new();
    for raw in file.rule {
        let line = line_of(text, raw.span().start);
        let checker = Checker {
            path,
            text,
            templates,
        };
        if let Some(rule) = checker.compile(raw.into_inner(), line, env, report) {
            rules.push(rule);
        }
    }
    rules
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn check_unique_ids(rules: &[Rule], report: &mut Report) {
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    for rule in rules {
        if let Some(first) = seen.get(rule.id.as_str()) {
            report.push(
                Diagnostic::error(
                    &rule.origin.file,
                    Some(rule.origin.id_span.clone()),
                    t!(
                        "rules.duplicate_id",
                        id = &rule.id,
                        line = rule.origin.line,
                        first
                    ),
                )
                .hint(t!("rules.duplicate_id_hint")),
            );
        } else {
            seen.insert(&rule.id, &rule.origin);
        }
    }
}

#[cfg(test)]
mod tests;
