//! Warnings about rule sets that load but do not do what their authors
//! likely meant: rules that can never fire, pools no rule ever leaves, and
//! pairs of rules that move customers back and forth, messaging each time.
//! Only what can be shown for certain is reported.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue, operators};

use super::{Rule, RuleSet};
use crate::base::diag::Diagnostic;
use crate::base::i18n::{Text, list, t};
use crate::base::model::Pool;

pub fn lint(set: &RuleSet) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for pool in Pool::ALL {
        let order = set.for_pool(*pool);
        for (position, &index) in order.iter().enumerate() {
            let rule = &set.rules[index];
            if constant(rule) == Some(false) {
                warnings.push(at(rule, t!("rules.lint.never_fires", id = &rule.id)));
                continue;
            }
            // A higher-priority rule that moves customers out of this pool
            // whenever this rule's condition holds leaves it nothing.
            let shadow = order[..position]
                .iter()
                .map(|i| &set.rules[*i])
                .find(|higher| {
                    higher.moves()
                        && (constant(higher) == Some(true)
                            || same_condition(higher, rule)
                            || implies(rule, higher, *pool))
                });
            if let Some(higher) = shadow {
                warnings.push(
                    at(
                        rule,
                        t!(
                            "rules.lint.shadowed",
                            id = &rule.id,
                            pool = pool.name(),
                            higher = &higher.id,
                            priority = higher.priority
                        ),
                    )
                    .hint(t!("rules.lint.shadowed_hint")),
                );
            }
        }
    }
    for pool in Pool::ALL {
        let leaves = set
            .rules
            .iter()
            .any(|r| r.enabled && r.moves() && r.from.contains(pool));
        let entered =
            *pool == Pool::New || set.rules.iter().any(|r| r.enabled && r.to == Some(*pool));
        // Point at a rule that brings customers in (for `new`, where
        // customers arrive on import, at a rule that watches it).
        let culprit = set
            .rules
            .iter()
            .find(|r| r.enabled && r.to == Some(*pool))
            .or_else(|| {
                set.rules
                    .iter()
                    .find(|r| r.enabled && r.from.contains(pool))
            })
            .or_else(|| set.rules.first());
        if entered
            && !leaves
            && let Some(first) = culprit
        {
            warnings.push(
                Diagnostic::warning(
                    &first.origin.file,
                    Some(first.origin.id_span.clone()),
                    t!("rules.lint.no_way_out", pool = pool.name()),
                )
                .hint(t!("rules.lint.no_way_out_hint", pool)),
            );
        }
    }
    warnings.extend(back_and_forth(set));
    warnings
}

/// Pairs of enabled rules where one moves customers from X to Y and the
/// other from Y to X, both with actions, not both with a cooldown: a
/// customer whose facts hover at the edge is moved at each tick and messaged
/// at each move. One warning per pair, at the first rule of the two.
fn back_and_forth(set: &RuleSet) -> Vec<Diagnostic> {
    let sends = |r: &Rule| r.enabled && r.moves() && !r.actions.is_empty();
    let mut warnings = Vec::new();
    for (i, a) in set.rules.iter().enumerate().filter(|(_, r)| sends(r)) {
        for b in set.rules[i + 1..].iter().filter(|r| sends(r)) {
            let (Some(a_to), Some(b_to)) = (a.to, b.to) else {
                continue;
            };
            let Some(from) = a.from.iter().find(|p| **p == b_to) else {
                continue;
            };
            if !b.from.contains(&a_to) || (a.cooldown_days.is_some() && b.cooldown_days.is_some()) {
                continue;
            }
            let missing: Vec<&str> = [a, b]
                .into_iter()
                .filter(|r| r.cooldown_days.is_none())
                .map(|r| r.id.as_str())
                .collect();
            warnings.push(
                at(
                    a,
                    t!(
                        "rules.lint.back_and_forth",
                        a = &a.id,
                        b = &b.id,
                        x = from.name(),
                        y = a_to.name()
                    ),
                )
                .hint(t!(
                    "rules.lint.back_and_forth_hint",
                    rules = list(missing, t!("sep.list"))
                )),
            );
        }
    }
    warnings
}

fn at(rule: &Rule, message: Text) -> Diagnostic {
    Diagnostic::warning(
        &rule.origin.file,
        Some(rule.origin.id_span.clone()),
        message,
    )
}

/// `Some(b)` when the condition is the literal `true` or `false`.
fn constant(rule: &Rule) -> Option<bool> {
    match &rule.condition.program.expression().expr {
        Expr::Literal(LiteralValue::Boolean(b)) => Some(**b),
        _ => None,
    }
}

/// Two conditions written the same way (spaces aside).
fn same_condition(a: &Rule, b: &Rule) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    squash(&a.condition.source) == squash(&b.condition.source)
}

/// A constant a fact is compared with.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
}

/// One conjunct of a condition: `fact op constant`, `fact in [constants]`,
/// or a bare true/false fact (`visited_in_pool`, `!visited_in_pool`).
#[derive(Debug, Clone, PartialEq)]
enum Atom {
    /// The fact lies in an interval: lower and upper bounds, each with
    /// whether it is included.
    Range {
        fact: String,
        low: Option<(f64, bool)>,
        high: Option<(f64, bool)>,
    },
    /// The fact is one of these values.
    OneOf { fact: String, values: Vec<Value> },
    /// The fact is not this value.
    Not { fact: String, value: Value },
}

impl Atom {
    fn fact(&self) -> &str {
        match self {
            Atom::Range { fact, .. } | Atom::OneOf { fact, .. } | Atom::Not { fact, .. } => fact,
        }
    }
}

/// Whether `lower`'s condition implies `higher`'s: every conjunct of
/// `higher` follows from some conjunct of `lower` (or from the customer
/// being in `pool`). Only conjunctions of
/// comparisons of a fact with a constant are understood; anything else
/// in `higher` makes the answer "no" (warnings are only given when sure).
fn implies(lower: &Rule, higher: &Rule, pool: Pool) -> bool {
    let (Some(have), Some(need)) = (
        conjuncts(lower.condition.program.expression()),
        conjuncts(higher.condition.program.expression()),
    ) else {
        return false;
    };
    let mut have: Vec<Atom> = have.iter().filter_map(|e| atom(e)).collect();
    // In this pool's evaluation, `pool == "<pool>"` holds too.
    have.push(Atom::OneOf {
        fact: "pool".to_string(),
        values: vec![Value::Text(pool.as_str().to_string())],
    });
    need.iter()
        .all(|e| atom(e).is_some_and(|n| have.iter().any(|h| atom_implies(h, &n))))
}

/// The conjuncts of `a && b && ...`, in any nesting. `None` for a literal
/// `false` (it implies everything but is reported on its own).
fn conjuncts(expr: &IdedExpr) -> Option<Vec<&IdedExpr>> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match &e.expr {
            Expr::Call(call)
                if call.func_name == operators::LOGICAL_AND && call.target.is_none() =>
            {
                stack.extend(call.args.iter());
            }
            Expr::Literal(LiteralValue::Boolean(b)) if **b => {}
            Expr::Literal(LiteralValue::Boolean(_)) => return None,
            _ => out.push(e),
        }
    }
    Some(out)
}

fn literal(expr: &IdedExpr) -> Option<Value> {
    match &expr.expr {
        Expr::Literal(LiteralValue::Int(i)) => Some(Value::Number(**i as f64)),
        Expr::Literal(LiteralValue::UInt(u)) => Some(Value::Number(**u as f64)),
        Expr::Literal(LiteralValue::Double(d)) => Some(Value::Number(**d)),
        Expr::Literal(LiteralValue::String(s)) => Some(Value::Text(s.inner().to_string())),
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Value::Bool(**b)),
        Expr::Call(call) if call.func_name == operators::NEGATE && call.target.is_none() => {
            match call.args.as_slice() {
                [arg] => match literal(arg)? {
                    Value::Number(n) => Some(Value::Number(-n)),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

fn fact(expr: &IdedExpr) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) => crate::facts::lookup(name).map(|def| def.name.to_string()),
        _ => None,
    }
}

fn is_int_fact(name: &str) -> bool {
    crate::facts::lookup(name).is_some_and(|def| def.ty == crate::facts::FactType::Int)
}

/// Reads one conjunct as an [`Atom`].
fn atom(expr: &IdedExpr) -> Option<Atom> {
    let Expr::Call(call) = &expr.expr else {
        return fact(expr).map(|fact| Atom::OneOf {
            fact,
            values: vec![Value::Bool(true)],
        });
    };
    if call.target.is_some() {
        return None;
    }
    let name = call.func_name.as_str();
    if name == operators::LOGICAL_NOT {
        return match call.args.as_slice() {
            [arg] => fact(arg).map(|fact| Atom::OneOf {
                fact,
                values: vec![Value::Bool(false)],
            }),
            _ => None,
        };
    }
    let [a, b] = call.args.as_slice() else {
        return None;
    };
    if name == operators::IN {
        let fact = fact(a)?;
        let Expr::List(list) = &b.expr else {
            return None;
        };
        let values = list
            .elements
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()?;
        return Some(Atom::OneOf { fact, values });
    }
    // `fact op constant`, or `constant op fact` with the operator flipped.
    let (fact_name, op, value) = match (fact(a), literal(b), fact(b), literal(a)) {
        (Some(f), Some(v), _, _) => (f, name, v),
        (_, _, Some(f), Some(v)) => {
            let flipped = match name {
                operators::LESS => operators::GREATER,
                operators::LESS_EQUALS => operators::GREATER_EQUALS,
                operators::GREATER => operators::LESS,
                operators::GREATER_EQUALS => operators::LESS_EQUALS,
                other => other,
            };
            (f, flipped, v)
        }
        _ => return None,
    };
    let number = match value {
        Value::Number(n) => Some(n),
        _ => None,
    };
    // On whole-number facts, `> 13` is `>= 14` and `< 15` is `<= 14`.
    let whole = is_int_fact(&fact_name) && number.is_some_and(|n| n.fract() == 0.0);
    let range = |low: Option<(f64, bool)>, high: Option<(f64, bool)>| Atom::Range {
        fact: fact_name.clone(),
        low,
        high,
    };
    Some(match (op, number) {
        (operators::EQUALS, _) => Atom::OneOf {
            fact: fact_name,
            values: vec![value],
        },
        (operators::NOT_EQUALS, _) => Atom::Not {
            fact: fact_name,
            value,
        },
        (operators::GREATER, Some(n)) if whole => range(Some((n + 1.0, true)), None),
        (operators::GREATER, Some(n)) => range(Some((n, false)), None),
        (operators::GREATER_EQUALS, Some(n)) => range(Some((n, true)), None),
        (operators::LESS, Some(n)) if whole => range(None, Some((n - 1.0, true))),
        (operators::LESS, Some(n)) => range(None, Some((n, false))),
        (operators::LESS_EQUALS, Some(n)) => range(None, Some((n, true))),
        _ => return None,
    })
}

/// Whether a value satisfies an atom.
fn satisfies(value: &Value, atom: &Atom) -> bool {
    match atom {
        Atom::OneOf { values, .. } => values.contains(value),
        Atom::Not { value: not, .. } => value != not,
        Atom::Range { low, high, .. } => match value {
            Value::Number(n) => {
                low.is_none_or(|(l, incl)| if incl { *n >= l } else { *n > l })
                    && high.is_none_or(|(h, incl)| if incl { *n <= h } else { *n < h })
            }
            _ => false,
        },
    }
}

/// Whether `have` (known to hold) makes `need` hold.
fn atom_implies(have: &Atom, need: &Atom) -> bool {
    if have.fact() != need.fact() {
        return false;
    }
    if have == need {
        return true;
    }
    match (have, need) {
        (Atom::OneOf { values, .. }, _) => values.iter().all(|v| satisfies(v, need)),
        (
            Atom::Range { low, high, .. },
            Atom::Range {
                low: nl, high: nh, ..
            },
        ) => {
            // [low, high] inside [nl, nh].
            let low_ok = match (nl, low) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((n, n_incl)), Some((h, h_incl))) => h > n || (h == n && (*n_incl || !h_incl)),
            };
            let high_ok = match (nh, high) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((n, n_incl)), Some((h, h_incl))) => h < n || (h == n && (*n_incl || !h_incl)),
            };
            low_ok && high_ok
        }
        (
            Atom::Range { .. },
            Atom::Not {
                value: Value::Number(n),
                ..
            },
        ) => !satisfies(&Value::Number(*n), have),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{RuleSet, cel_env, load_text};
    use crate::base::diag::Report;

    fn warnings(text: &str) -> Vec<String> {
        let mut report = Report::default();
        let rules = load_text(
            Path::new("rules/t.toml"),
            text,
            &cel_env(),
            None,
            &mut report,
        );
        assert!(!report.has_errors(), "{report}");
        let set = RuleSet::new(rules);
        let mut report = Report::default();
        report.add_source(Path::new("rules/t.toml"), text);
        for w in super::lint(&set) {
            report.push(w);
        }
        report.to_lines()
    }

    const LEAVES_ALL: &str = "[[rule]]\nid = \"n\"\nfrom = \"new\"\nto = \"churned\"\nwhen = \"visit_count > 5\"\n[[rule]]\nid = \"c\"\nfrom = \"churned\"\nto = \"new\"\nwhen = \"visited_in_pool\"\n";

    /// `away` from customer to warning and `back` from warning to
    /// customer, both sending; `extra` goes into `back`.
    fn flapping(extra: &str) -> String {
        format!(
            "[[rule]]\nid = \"away\"\nfrom = \"customer\"\nto = \"warning\"\nwhen = \"days_since_last_visit >= 7\"\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n[[rule]]\nid = \"back\"\nfrom = [\"warning\", \"churned\"]\nto = \"customer\"\nwhen = \"days_since_last_visit < 7\"\n{extra}\n[[rule.action]]\nchannel = \"wechat\"\ntemplate = \"y\"\n"
        )
    }

    #[test]
    fn rules_that_move_customers_back_and_forth_sending_both_ways_are_reported() {
        let lines = warnings(&flapping(""));
        let pair: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("back and forth"))
            .collect();
        assert_eq!(pair.len(), 1, "{lines:#?}");
        assert!(
            pair[0].contains("rules `away` and `back` move customers back and forth between `customer` and `warning`"),
            "{pair:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("add a cooldown to away, back")),
            "{lines:#?}"
        );
        // One cooldown of two: the other rule still sends at every move.
        let lines = warnings(&flapping("cooldown = \"30d\""));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("(add a cooldown to away, e.g. cooldown = \"30d\"")),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_back_and_forth_pair_with_cooldowns_or_one_silent_side_is_not_reported() {
        let both = flapping("cooldown = \"30d\"").replace(
            "when = \"days_since_last_visit >= 7\"\n",
            "when = \"days_since_last_visit >= 7\"\ncooldown_days = 30\n",
        );
        let lines = warnings(&both);
        assert!(
            !lines.iter().any(|l| l.contains("back and forth")),
            "{lines:#?}"
        );
        let silent =
            flapping("").replace("[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n", "");
        let lines = warnings(&silent);
        assert!(
            !lines.iter().any(|l| l.contains("back and forth")),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_rule_behind_an_always_true_move_is_reported() {
        let text = format!(
            "{LEAVES_ALL}[[rule]]\nid = \"all\"\nfrom = \"new\"\nto = \"customer\"\npriority = 10\nwhen = \"true\"\n[[rule]]\nid = \"low\"\nfrom = \"new\"\nto = \"warning\"\nwhen = \"visit_count > 1\"\n[[rule]]\nid = \"out\"\nfrom = [\"customer\", \"warning\"]\nto = \"churned\"\nwhen = \"true\"\n"
        );
        let lines = warnings(&text);
        assert!(
            lines.iter().any(|l| l.contains(
                "rule `low` never fires in pool `new`: `all` (priority 10) always fires first"
            )),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("rule `n` never fires")),
            "{lines:#?}"
        );
    }

    #[test]
    fn the_same_condition_at_lower_priority_is_reported_but_other_rules_are_not() {
        let text = format!(
            "{LEAVES_ALL}[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"warning\"\npriority = 5\nwhen = \"days_in_pool>1\"\n[[rule]]\nid = \"b\"\nfrom = \"new\"\npriority = 1\nwhen = \"days_in_pool > 1\"\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n[[rule]]\nid = \"w\"\nfrom = \"warning\"\nto = \"new\"\nwhen = \"true\"\n"
        );
        let lines = warnings(&text);
        assert!(
            lines.iter().any(|l| l.contains("rule `b` never fires")),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("rule `n` never fires")),
            "{lines:#?}"
        );
        assert_eq!(lines.len(), 1, "{lines:#?}");
    }

    #[test]
    fn pools_nobody_leaves_are_reported() {
        let text =
            "[[rule]]\nid = \"n\"\nfrom = \"new\"\nto = \"churned\"\nwhen = \"visit_count > 5\"\n";
        let lines = warnings(text);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("no rule moves customers out of `churned`"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_broader_higher_priority_move_shadows_a_narrower_rule() {
        // `days_in_pool >= 3` holds whenever `days_in_pool >= 14` does, in
        // any order of conjuncts, and `quick` moves the customer first.
        let text = format!(
            "{LEAVES_ALL}[[rule]]\nid = \"quick\"\nfrom = [\"new\", \"customer\"]\nto = \"warning\"\npriority = 10\nwhen = \"visit_count > 1 && days_in_pool >= 3\"\n[[rule]]\nid = \"slow\"\nfrom = \"new\"\npriority = 1\nwhen = \"days_in_pool >= 14 && gender == 'female' && visit_count >= 2\"\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n[[rule]]\nid = \"w\"\nfrom = \"warning\"\nto = \"new\"\nwhen = \"true\"\n[[rule]]\nid = \"c\"\nfrom = \"customer\"\nto = \"churned\"\nwhen = \"true\"\n"
        );
        let lines = warnings(&text);
        assert!(
            lines.iter().any(|l| l.contains(
                "rule `slow` never fires in pool `new`: `quick` (priority 10) always fires first"
            )),
            "{lines:#?}"
        );
        // Narrower higher rules, or other facts, shadow nothing.
        for (high, low) in [
            ("days_in_pool >= 14", "days_in_pool >= 3"),
            ("days_in_pool >= 3 && visit_count > 1", "days_in_pool >= 14"),
            ("days_in_pool > 3", "days_since_last_visit > 30"),
            ("days_in_pool >= 3 || visit_count > 9", "days_in_pool >= 14"),
            (
                "pool == 'new' && gender != 'male'",
                "gender in ['male', 'other']",
            ),
            ("pool == 'customer'", "visit_count > 1"),
        ] {
            let text = format!(
                "{LEAVES_ALL}[[rule]]\nid = \"hi\"\nfrom = \"new\"\nto = \"warning\"\npriority = 10\nwhen = \"{high}\"\n[[rule]]\nid = \"lo\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"{low}\"\n[[rule]]\nid = \"w\"\nfrom = [\"warning\", \"customer\"]\nto = \"new\"\nwhen = \"true\"\n"
            );
            let lines = warnings(&text);
            assert!(
                !lines.iter().any(|l| l.contains("`lo` never fires")),
                "{high} / {low}: {lines:#?}"
            );
        }
        for (high, low) in [
            ("days_in_pool > 13", "days_in_pool >= 14"),
            (
                "3 <= days_in_pool",
                "days_in_pool > 20 && days_in_pool < 30",
            ),
            ("churn_band in ['medium', 'high']", "churn_band == 'high'"),
            ("gender != 'male'", "gender == 'female'"),
            ("visited_in_pool", "visit_count > 1 && visited_in_pool"),
            ("churn_risk >= 0.5", "churn_risk > 0.8"),
            ("pool == 'new' && visit_count >= 1", "visit_count >= 2"),
        ] {
            let text = format!(
                "{LEAVES_ALL}[[rule]]\nid = \"hi\"\nfrom = \"new\"\nto = \"warning\"\npriority = 10\nwhen = \"{high}\"\n[[rule]]\nid = \"lo\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"{low}\"\n[[rule]]\nid = \"w\"\nfrom = [\"warning\", \"customer\"]\nto = \"new\"\nwhen = \"true\"\n"
            );
            let lines = warnings(&text);
            assert!(
                lines.iter().any(|l| l.contains("`lo` never fires")),
                "{high} / {low}: {lines:#?}"
            );
        }
    }

    #[test]
    fn always_false_rules_never_fire() {
        let text = format!(
            "{LEAVES_ALL}[[rule]]\nid = \"off\"\nfrom = \"new\"\nto = \"customer\"\nwhen = \"false\"\n"
        );
        assert!(
            warnings(&text)
                .iter()
                .any(|l| l.contains("rule `off` can never fire"))
        );
    }
}
