//! Text compared with a fact that only takes a few values.
//!
//! `churn_band == "hihg"` type-checks (text with text) but can never be true:
//! `churn_band` is `low`, `medium` or `high`. Every text literal compared
//! with such a fact (`==`, `!=`, `in [...]`, either side) must be one of its
//! values, or the rule is an error pointing at the literal.
//!
//! The words an import accepts for those values mean the same in a
//! condition (`gender == "女"` is `gender == "female"`, `pool == "预警池"`
//! is `pool == "warning"`): [`check`] lists where a word stands for an id,
//! and the loader compiles the condition with the ids in their place.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue, operators};

use crate::base::model::{FollowupResult, Gender, Pool, Words};
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

/// The id a word means for a fixed-value fact: the id itself, or the value
/// of one of the words an import accepts for it.
pub fn canonical(fact: &str, text: &str) -> Option<&'static str> {
    let known = fixed_values(fact)?;
    if let Some(id) = known.iter().find(|k| **k == text) {
        return Some(id);
    }
    match fact {
        "gender" => Gender::from_word(text).map(Gender::as_str),
        "last_followup_result" => FollowupResult::from_word(text).map(FollowupResult::as_str),
        "pool" => Pool::from_word(text).map(Pool::as_str),
        _ => None,
    }
}

/// The words other than the ids that a fact's values may be written as.
pub fn words(fact: &str) -> Vec<&'static str> {
    let all = match fact {
        "gender" => Gender::all_words(),
        "last_followup_result" => FollowupResult::all_words(),
        "pool" => Pool::all_words(),
        _ => Vec::new(),
    };
    let ids = fixed_values(fact).unwrap_or_default();
    all.into_iter().filter(|w| !ids.contains(w)).collect()
}

/// What [`check`] finds in a condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Text that is none of the fact's values: an error.
    pub bad: Vec<BadValue>,
    /// Words that stand for an id: compiled as the id.
    pub words: Vec<Word>,
}

/// A word standing for a fact's value (`"女"` for `female`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The literal's expression id, for its position.
    pub expr_id: u64,
    pub id: &'static str,
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

/// Every text literal compared with a fixed-value fact: those that are
/// none of its values, and those that are a word for one. Names bound by
/// comprehensions are not facts.
pub fn check(expr: &IdedExpr) -> Found {
    let mut found = Found::default();
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

fn test_literal(literal: &IdedExpr, fact: &'static str, known: &[&'static str], found: &mut Found) {
    let Some(text) = text_of(literal) else { return };
    match canonical(fact, text) {
        Some(id) if id == text => {}
        Some(id) => found.words.push(Word {
            expr_id: literal.id,
            id,
        }),
        None => found.bad.push(BadValue {
            expr_id: literal.id,
            fact,
            given: text.to_string(),
            known: known.to_vec(),
        }),
    }
}

fn walk(expr: &IdedExpr, bound: &mut Vec<String>, found: &mut Found) {
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
