//! Deciding which rule fires for a customer.
//!
//! Pure: a function of the rules, the customer's facts, which rules already
//! fired (in the current pool stay, and at all), and the tick's day. Never SQLite, the
//! clock or the network, so the same inputs always give the same decision.

use cel::{Context, ExecutionError, Value};
use chrono_tz::Tz;

use super::{Rule, RuleSet};
use crate::base::clock::{self, Timestamp};
use crate::facts::Facts;

/// Evaluates rules; one per thread (CEL contexts are not shared).
pub struct Evaluator<'r> {
    rules: &'r RuleSet,
    root: Context<'static, 'static>,
}

/// The result of evaluating one customer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Index (into `RuleSet::rules`) of the rule that fires, if any.
    pub fired: Option<usize>,
    /// Conditions that could not be evaluated, with why. A condition that
    /// compares a missing (null) fact is not an error: it is simply false.
    pub errors: Vec<(usize, String)>,
}

impl<'r> Evaluator<'r> {
    pub fn new(rules: &'r RuleSet) -> Self {
        Evaluator {
            rules,
            root: Context::with_env(rules.env().clone()),
        }
    }

    /// The highest-priority rule whose `from` holds the customer's pool, whose
    /// condition is true, and which may fire again in this pool stay.
    ///
    /// `fired_in_pool` lists (rule id, when it last fired) for the current
    /// stay, `last_fired` the same for every stay; `now` is the tick's time.
    pub fn evaluate(
        &self,
        facts: &Facts,
        fired_in_pool: &[(String, Timestamp)],
        last_fired: &[(String, Timestamp)],
        now: Timestamp,
        tz: Tz,
    ) -> Evaluation {
        let mut evaluation = Evaluation::default();
        for &index in self.rules.for_pool(facts.pool) {
            let rule = &self.rules.rules[index];
            if !may_fire(rule, fired_in_pool, last_fired, now, tz) {
                continue;
            }
            match self.holds(rule, facts) {
                Ok(true) => {
                    evaluation.fired = Some(index);
                    break;
                }
                Ok(false) => {}
                Err(why) => evaluation.errors.push((index, why)),
            }
        }
        evaluation
    }

    /// Evaluates one rule's condition for one customer.
    pub fn holds(&self, rule: &Rule, facts: &Facts) -> Result<bool, String> {
        let mut scope = self.root.new_inner_scope();
        scope.set_variable_resolver(facts);
        match rule.condition.program.execute(&scope) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {other:?}, not true or false")),
            Err(ExecutionError::NoSuchOverload(overload))
                if overload
                    .argument_types()
                    .iter()
                    .any(|t| t.starts_with("null")) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A moving rule can always fire (the customer leaves the pool). A rule that
/// only sends fires once per pool stay, or, with a cooldown, whenever its
/// cooldown is over (in this stay or since another).
fn may_fire(
    rule: &Rule,
    fired_in_pool: &[(String, Timestamp)],
    last_fired: &[(String, Timestamp)],
    now: Timestamp,
    tz: Tz,
) -> bool {
    if rule.moves() {
        return true;
    }
    match rule.cooldown_days {
        Some(_) => !cooling_down(rule, last_fired, now, tz),
        None => last(rule, fired_in_pool).is_none(),
    }
}

/// Whether a rule's actions are still in their cooldown for a customer: the
/// rule fired for them (in any pool) fewer than `cooldown` clinic days
/// before `now`. A moving rule in its cooldown still moves, sending nothing.
pub fn cooling_down(
    rule: &Rule,
    last_fired: &[(String, Timestamp)],
    now: Timestamp,
    tz: Tz,
) -> bool {
    match (rule.cooldown_days, last(rule, last_fired)) {
        (Some(days), Some(at)) => clock::local_day(now, tz) - clock::local_day(at, tz) < days,
        _ => false,
    }
}

/// When the rule last fired, of the (rule id, time) pairs given.
fn last(rule: &Rule, fired: &[(String, Timestamp)]) -> Option<Timestamp> {
    fired
        .iter()
        .filter(|(id, _)| *id == rule.id)
        .map(|(_, at)| *at)
        .max()
}
