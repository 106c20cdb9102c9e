//! Text compared with a fact that only takes a few values.
//!
//! `churn_band == "hihg"` type-checks (text with text) but can never be true:
//! `churn_band` is `low`, `medium` or `high`. Every text literal compared
//! with such a fact (`==`, `!=`, `in [...]`, either side) must be one of its
//! values, or the rule is an error pointing at the literal.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue, operators};

use crate::base::model::{FollowupResult, Gender, Pool};
use crate::predict::score::RiskBand;

/// The values a fact can take, when they are a fixed set.
pub fn fixed_values(fact: &str) -> Option<Vec<&'static str>> {
    match fact {
        "pool" => Some(Pool::names()),
        "last_followup_result" => Some(FollowupResult::names()),
        "gender" => Some(Gender::names()),
        "churn_band" => Some(RiskBand::ALL.iter().map(|b| b.as_str()).collect()),
        _ => None,
    }
}

/// A text literal that is not a value of the fact it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    /// The literal's expression id, for its position.
    pub expr_id: u64,
    pub fact: &'static str,
    pub given: String,
    pub known: Vec<&'static str>,
}

/// Every text literal compared with a fixed-value fact that is not one of
/// its values. Names bound by comprehensions are not facts.
pub fn check(expr: &IdedExpr) -> Vec<BadValue> {
    let mut found = Vec::new();
    walk(expr, &mut Vec::new(), &mut found);
    found
}

fn fact_of(expr: &IdedExpr, bound: &[String]) -> Option<(&'static str, Vec<&'static str>)> {
    match &expr.expr {
        Expr::Ident(name) if !bound.iter().any(|b| b == name) => {
            let def = crate::facts::lookup(name)?;
            fixed_values(def.name).map(|values| (def.name, values))
        }
        _ => None,
    }
}

fn text_of(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

fn test_literal(
    literal: &IdedExpr,
    fact: &'static str,
    known: &[&'static str],
    found: &mut Vec<BadValue>,
) {
    if let Some(text) = text_of(literal)
        && !known.contains(&text)
    {
        found.push(BadValue {
            expr_id: literal.id,
            fact,
            given: text.to_string(),
            known: known.to_vec(),
        });
    }
}

fn walk(expr: &IdedExpr, bound: &mut Vec<String>, found: &mut Vec<BadValue>) {
    match &expr.expr {
        Expr::Call(call) => {
            let name = call.func_name.as_str();
            if let [a, b] = call.args.as_slice() {
                if name == operators::EQUALS || name == operators::NOT_EQUALS {
                    if let Some((fact, known)) = fact_of(a, bound) {
                        test_literal(b, fact, &known, found);
                    } else if let Some((fact, known)) = fact_of(b, bound) {
                        test_literal(a, fact, &known, found);
                    }
                } else if name == operators::IN
                    && let Some((fact, known)) = fact_of(a, bound)
                    && let Expr::List(list) = &b.expr
                {
                    for element in &list.elements {
                        test_literal(element, fact, &known, found);
                    }
                }
            }
            if let Some(target) = &call.target {
                walk(target, bound, found);
            }
            for arg in &call.args {
                walk(arg, bound, found);
            }
        }
        Expr::Select(select) => walk(&select.operand, bound, found),
        Expr::List(list) => list.elements.iter().for_each(|e| walk(e, bound, found)),
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, found);
            walk(&c.accu_init, bound, found);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            if let Some(second) = &c.iter_var2 {
                bound.push(second.clone());
            }
            walk(&c.loop_cond, bound, found);
            walk(&c.loop_step, bound, found);
            walk(&c.result, bound, found);
            bound.truncate(depth);
        }
        Expr::Map(_) | Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}
