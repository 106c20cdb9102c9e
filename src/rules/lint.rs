//! Warnings about rule sets that load but do not do what their authors
//! likely meant: rules that can never fire, and pools no rule ever leaves.
//! Only what can be shown for certain is reported.

use cel::common::ast::{Expr, LiteralValue};

use super::{Rule, RuleSet};
use crate::diag::Diagnostic;
use crate::model::Pool;

pub fn lint(set: &RuleSet) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for pool in Pool::ALL {
        let order = set.for_pool(*pool);
        for (position, &index) in order.iter().enumerate() {
            let rule = &set.rules[index];
            if constant(rule) == Some(false) {
                warnings.push(
                    at(
                        rule,
                        format!(
                            "rule `{}` can never fire: its condition is always false",
                            rule.id
                        ),
                    )
                    .zh(format!("规则 `{}` 永远不会触发：它的条件恒为假", rule.id)),
                );
                continue;
            }
            // A higher-priority rule that moves customers out of this pool
            // whenever this rule's condition holds leaves it nothing.
            let shadow = order[..position]
                .iter()
                .map(|i| &set.rules[*i])
                .find(|higher| {
                    higher.moves()
                        && (constant(higher) == Some(true) || same_condition(higher, rule))
                });
            if let Some(higher) = shadow {
                warnings.push(
                    at(
                        rule,
                        format!(
                            "rule `{}` never fires in pool `{pool}`: `{}` (priority {}) always fires first and moves the customer",
                            rule.id, higher.id, higher.priority
                        ),
                    )
                    .zh(format!(
                        "规则 `{}` 在 `{}` 中永远不会触发：优先级更高的 `{}`（{}）总会先触发并移走顾客",
                        rule.id,
                        pool.zh(),
                        higher.id,
                        higher.priority
                    ))
                    .hint2(
                        "raise this rule's priority above it, or narrow that rule's condition",
                        "把本规则的优先级调高，或收窄那条规则的条件",
                    ),
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
        if entered
            && !leaves
            && let Some(first) = set.rules.first()
        {
            warnings.push(
                Diagnostic::warning(
                    &first.origin.file,
                    None,
                    format!(
                        "no rule moves customers out of `{pool}`: once there, they stay for good"
                    ),
                )
                .zh(format!(
                    "没有任何规则把顾客移出{}：顾客一旦进入就会一直留在那里",
                    pool.zh()
                ))
                .hint2(
                    format!("add a rule with from = \"{pool}\" and a `to`"),
                    format!("请添加一条 from = \"{pool}\" 且带有 `to` 的规则"),
                ),
            );
        }
    }
    warnings
}

fn at(rule: &Rule, message: String) -> Diagnostic {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{RuleSet, cel_env, load_text};
    use crate::diag::Report;

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
            "{LEAVES_ALL}[[rule]]\nid = \"a\"\nfrom = \"new\"\nto = \"warning\"\npriority = 5\nwhen = \"visit_count>1\"\n[[rule]]\nid = \"b\"\nfrom = \"new\"\npriority = 1\nwhen = \"visit_count > 1\"\n[[rule.action]]\nchannel = \"sms\"\ntemplate = \"x\"\n[[rule]]\nid = \"w\"\nfrom = \"warning\"\nto = \"new\"\nwhen = \"true\"\n"
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
