//! How far back a rule set looks: the longest span of days any rule
//! counts (a `days_*` fact compared with a constant, a `cooldown_days`).
//! Onboarding replays at least this much history, so every rule has seen a
//! full window of it before the first real tick.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue, operators};

use super::RuleSet;

impl RuleSet {
    /// The most days any enabled rule counts: the largest constant a
    /// `days_*` fact is compared with, or the largest `cooldown_days`. 0
    /// when no rule counts days.
    pub fn longest_window_days(&self) -> i64 {
        let mut longest = 0;
        for rule in self.rules.iter().filter(|r| r.enabled) {
            longest = longest.max(rule.cooldown_days.unwrap_or(0));
            walk(rule.condition.program.expression(), &mut |days| {
                longest = longest.max(days);
            });
        }
        longest
    }
}

/// Calls `found` with the day count of every `days_* <op> N` (either way round).
fn walk(expr: &IdedExpr, found: &mut dyn FnMut(i64)) {
    let Expr::Call(call) = &expr.expr else {
        return;
    };
    let comparison = [
        operators::LESS,
        operators::LESS_EQUALS,
        operators::GREATER,
        operators::GREATER_EQUALS,
        operators::EQUALS,
        operators::NOT_EQUALS,
    ]
    .contains(&call.func_name.as_str());
    if comparison && let [a, b] = call.args.as_slice() {
        for (fact, value) in [(a, b), (b, a)] {
            if let (Expr::Ident(name), Some(days)) = (&fact.expr, days(value))
                && name.starts_with("days_")
            {
                found(days.abs());
            }
        }
    }
    if let Some(target) = &call.target {
        walk(target, found);
    }
    for arg in &call.args {
        walk(arg, found);
    }
}

/// A whole number of days written as a literal (`90`, `-3`, `14.0`).
fn days(expr: &IdedExpr) -> Option<i64> {
    match &expr.expr {
        Expr::Literal(LiteralValue::Int(i)) => Some(**i),
        Expr::Literal(LiteralValue::UInt(u)) => i64::try_from(**u).ok(),
        Expr::Literal(LiteralValue::Double(d)) => Some(d.ceil() as i64),
        Expr::Call(call) if call.func_name == operators::NEGATE => {
            call.args.first().and_then(days).map(|d| -d)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::base::diag::Report;
    use crate::rules::{RuleSet, cel_env, load_text};

    fn window(text: &str) -> i64 {
        let mut report = Report::default();
        let path = std::path::Path::new("rules/r.toml");
        let rules = load_text(path, text, &cel_env(), None, &mut report);
        assert!(!report.has_errors(), "{report:?}");
        RuleSet::new(rules).longest_window_days()
    }

    #[test]
    fn longest_window_is_the_largest_day_constant_or_cooldown() {
        let text = r#"
[[rule]]
id = "a"
from = "maintenance"
to = "churned"
when = "!visited_in_pool && ((days_in_pool >= 60 && contacts_in_pool >= 2) || 120 <= days_in_pool)"

[[rule]]
id = "b"
from = "churned"
when = "days_in_pool >= 30 && contacts_in_pool < 40"
cooldown_days = 90
[[rule.action]]
channel = "sms"
template = "x"
"#;
        // 40 is a count of contacts, not days.
        assert_eq!(window(text), 120);
    }
}
