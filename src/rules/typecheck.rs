//! Type-checking rule conditions before anything runs.
//!
//! The `cel` crate checks syntax; this walks the compiled expression with the
//! fact types of [`crate::facts::CATALOGUE`] and reports what would fail or
//! be meaningless at run time: text compared with a number, `&&` on a
//! number, a condition that is not true/false, an unknown function. Unknown
//! types (`dyn`) never cause an error: the checker only speaks when it is
//! sure. Facts that can be null are checked by their type; comparing a null
//! is simply false at run time.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue, operators};

use crate::base::i18n::{Text, list, t};
use crate::facts::{self, FactType};

/// A type as the checker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Int,
    Double,
    Bool,
    String,
    Null,
    List(Box<Ty>),
    /// Not known: anything goes.
    Dyn,
}

impl Ty {
    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }

    fn known(&self) -> bool {
        !matches!(self, Ty::Dyn)
    }

    /// As staff read it.
    pub fn describe(&self) -> Text {
        match self {
            Ty::Int | Ty::Double => t!("rules.type.number"),
            Ty::Bool => t!("rules.type.bool"),
            Ty::String => t!("rules.type.text"),
            Ty::Null => t!("rules.type.null"),
            Ty::List(_) => t!("rules.type.list"),
            Ty::Dyn => t!("rules.type.value"),
        }
    }

    /// What a list of this type holds, as staff read it: "numbers".
    fn plural(&self) -> Text {
        match self {
            Ty::String => t!("rules.type.plural_text"),
            Ty::Int | Ty::Double => t!("rules.type.plural_number"),
            Ty::Bool => t!("rules.type.plural_bool"),
            _ => t!("rules.type.plural_value"),
        }
    }

    fn from_fact(ty: FactType) -> Ty {
        match ty {
            FactType::Int => Ty::Int,
            FactType::Double => Ty::Double,
            FactType::Bool => Ty::Bool,
            FactType::String => Ty::String,
            FactType::StringList => Ty::List(Box::new(Ty::String)),
        }
    }
}

/// One problem, at an expression (by id, for its position).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub expr_id: u64,
    pub message: Text,
    pub hint: Option<Text>,
}

/// Functions conditions may call, for suggestions.
pub const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "double",
    "string",
    "exists",
    "all",
    "exists_one",
    "map",
    "filter",
    "has",
];

/// Checks a whole condition: it must be true/false, and its parts must fit.
pub fn check(expr: &IdedExpr) -> Vec<Problem> {
    let mut checker = Checker {
        problems: Vec::new(),
        scopes: Vec::new(),
    };
    let ty = checker.infer(expr);
    if ty.known() && ty != Ty::Bool {
        let hint = match ty {
            Ty::Int | Ty::Double => Some(t!("rules.typecheck.compare_number_hint")),
            Ty::String => Some(t!("rules.typecheck.compare_text_hint")),
            _ => None,
        };
        checker.problems.push(Problem {
            expr_id: expr.id,
            message: t!("rules.typecheck.not_bool", ty = ty.describe()),
            hint,
        });
    }
    checker.problems
}

struct Checker {
    problems: Vec<Problem>,
    /// Names bound by comprehensions (`tags.exists(t, ...)`), innermost last.
    scopes: Vec<(String, Ty)>,
}

impl Checker {
    fn problem(&mut self, id: u64, message: Text) {
        self.problems.push(Problem {
            expr_id: id,
            message,
            hint: None,
        });
    }

    fn infer(&mut self, expr: &IdedExpr) -> Ty {
        match &expr.expr {
            Expr::Literal(literal) => match literal {
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Null => Ty::Null,
                LiteralValue::Bytes(_) => Ty::Dyn,
            },
            Expr::Ident(name) => {
                if let Some((_, ty)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
                    return ty.clone();
                }
                // Unknown names are reported by the loader with suggestions.
                facts::lookup(name).map_or(Ty::Dyn, |f| Ty::from_fact(f.ty))
            }
            Expr::List(list) => {
                let types: Vec<Ty> = list.elements.iter().map(|e| self.infer(e)).collect();
                let element = match types.split_first() {
                    Some((first, rest)) if rest.iter().all(|t| t == first) => first.clone(),
                    Some((first, rest)) if first.numeric() && rest.iter().all(Ty::numeric) => {
                        Ty::Double
                    }
                    _ => Ty::Dyn,
                };
                Ty::List(Box::new(element))
            }
            Expr::Select(select) => {
                self.infer(&select.operand);
                Ty::Dyn
            }
            Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => Ty::Dyn,
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range);
                let element = match range {
                    Ty::List(element) => *element,
                    _ => Ty::Dyn,
                };
                self.infer(&c.accu_init);
                let depth = self.scopes.len();
                self.scopes.push((c.iter_var.clone(), element));
                self.scopes.push((c.accu_var.clone(), Ty::Dyn));
                if let Some(second) = &c.iter_var2 {
                    self.scopes.push((second.clone(), Ty::Dyn));
                }
                self.infer(&c.loop_cond);
                self.infer(&c.loop_step);
                let result = self.infer(&c.result);
                self.scopes.truncate(depth);
                result
            }
            Expr::Call(call) => {
                self.call(expr.id, &call.func_name, call.target.as_deref(), &call.args)
            }
        }
    }

    /// A call's type from its arguments' types; the arguments are checked
    /// by the step named for the operator or function.
    fn call(
        &mut self,
        id: u64,
        function: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Ty {
        let target_ty = target.map(|t| self.infer(t));
        let arg_tys: Vec<Ty> = args.iter().map(|a| self.infer(a)).collect();
        match function {
            operators::LOGICAL_AND | operators::LOGICAL_OR => {
                let word = if function == operators::LOGICAL_AND {
                    "&&"
                } else {
                    "||"
                };
                for (arg, ty) in args.iter().zip(&arg_tys) {
                    self.expect_bool(arg.id, ty, word);
                }
                Ty::Bool
            }
            operators::LOGICAL_NOT => {
                if let (Some(arg), Some(ty)) = (args.first(), arg_tys.first()) {
                    self.expect_bool(arg.id, ty, "!");
                }
                Ty::Bool
            }
            operators::NOT_STRICTLY_FALSE => Ty::Bool,
            operators::EQUALS | operators::NOT_EQUALS => self.equality(id, &arg_tys),
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => self.ordering(id, &arg_tys),
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO => self.arithmetic(id, function, &arg_tys),
            operators::NEGATE => match arg_tys.first() {
                Some(t) if t.numeric() => t.clone(),
                _ => Ty::Dyn,
            },
            operators::IN => self.membership(id, &arg_tys),
            operators::CONDITIONAL => {
                if let Some(ty) = arg_tys.first() {
                    self.expect_bool(args[0].id, ty, "? :");
                }
                match arg_tys.as_slice() {
                    [_, a, b] if a == b => a.clone(),
                    _ => Ty::Dyn,
                }
            }
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                match arg_tys.first() {
                    Some(Ty::List(inner)) => *inner.clone(),
                    _ => Ty::Dyn,
                }
            }
            "size" => self.size(id, target_ty.as_ref().or(arg_tys.first())),
            "contains" | "startsWith" | "endsWith" | "matches" => {
                self.text_method(id, function, target_ty.as_ref())
            }
            "int" => Ty::Int,
            "double" => Ty::Double,
            "string" => Ty::String,
            "exists" | "all" | "exists_one" | "has" => Ty::Bool,
            "map" | "filter" => Ty::List(Box::new(Ty::Dyn)),
            other => self.unknown_function(id, other),
        }
    }

    /// `==` and `!=`: both sides must be able to match.
    fn equality(&mut self, id: u64, arg_tys: &[Ty]) -> Ty {
        if let [a, b] = arg_tys {
            let fits = !a.known()
                || !b.known()
                || *a == Ty::Null
                || *b == Ty::Null
                || (a.numeric() && b.numeric())
                || std::mem::discriminant(a) == std::mem::discriminant(b);
            if !fits {
                self.mismatch(id, a, b, "==");
            }
        }
        Ty::Bool
    }

    /// `<`, `<=`, `>`, `>=`: numbers with numbers, text with text, never null.
    fn ordering(&mut self, id: u64, arg_tys: &[Ty]) -> Ty {
        if let [a, b] = arg_tys {
            let fits = !a.known()
                || !b.known()
                || (a.numeric() && b.numeric())
                || (*a == Ty::String && *b == Ty::String);
            if *a == Ty::Null || *b == Ty::Null {
                self.problem(id, t!("rules.typecheck.null_ordering"));
            } else if !fits {
                self.mismatch(id, a, b, "<");
            }
        }
        Ty::Bool
    }

    /// `+`, `-`, `*`, `/`, `%` on numbers (and `+` on text).
    fn arithmetic(&mut self, id: u64, function: &str, arg_tys: &[Ty]) -> Ty {
        match arg_tys {
            [a, b] if a.numeric() && b.numeric() => {
                if *a == Ty::Double || *b == Ty::Double {
                    Ty::Double
                } else {
                    Ty::Int
                }
            }
            [Ty::String, Ty::String] if function == operators::ADD => Ty::String,
            [a, b] if a.known() && b.known() => {
                self.problem(
                    id,
                    t!(
                        "rules.typecheck.arithmetic",
                        a = a.describe(),
                        b = b.describe()
                    ),
                );
                Ty::Dyn
            }
            _ => Ty::Dyn,
        }
    }

    /// `x in list`: a list on the right, of what `x` is.
    fn membership(&mut self, id: u64, arg_tys: &[Ty]) -> Ty {
        if let [element, list] = arg_tys {
            match list {
                Ty::List(inner) => {
                    let fits = !element.known()
                        || !inner.known()
                        || (element.numeric() && inner.numeric())
                        || std::mem::discriminant(element)
                            == std::mem::discriminant(inner.as_ref());
                    if !fits {
                        self.problem(
                            id,
                            t!(
                                "rules.typecheck.in_mismatch",
                                element = element.describe(),
                                items = inner.plural()
                            ),
                        );
                    }
                }
                Ty::Dyn => {}
                other => self.problem(id, t!("rules.typecheck.in_not_list", ty = other.describe())),
            }
        }
        Ty::Bool
    }

    /// `size()` of text or a list.
    fn size(&mut self, id: u64, subject: Option<&Ty>) -> Ty {
        if let Some(t) = subject
            && t.known()
            && !matches!(t, Ty::String | Ty::List(_))
        {
            self.problem(id, t!("rules.typecheck.size", ty = t.describe()));
        }
        Ty::Int
    }

    /// `contains`, `startsWith`, `endsWith`, `matches`: methods of text.
    fn text_method(&mut self, id: u64, function: &str, target_ty: Option<&Ty>) -> Ty {
        if let Some(t) = target_ty
            && t.known()
            && *t != Ty::String
        {
            self.problem(
                id,
                t!("rules.typecheck.text_method", function, ty = t.describe()),
            );
        }
        Ty::Bool
    }

    /// A function conditions cannot call, with the nearest that they can.
    fn unknown_function(&mut self, id: u64, other: &str) -> Ty {
        let hint = crate::base::diag::nearest(other, FUNCTIONS.iter().copied());
        self.problems.push(Problem {
            expr_id: id,
            message: t!("rules.typecheck.unknown_function", name = other),
            hint: Some(match hint {
                Some(best) => t!("diag.did_you_mean", best),
                None => t!(
                    "rules.typecheck.functions",
                    functions = list(FUNCTIONS.iter().copied(), t!("sep.list"))
                ),
            }),
        });
        Ty::Dyn
    }

    fn expect_bool(&mut self, id: u64, ty: &Ty, word: &str) {
        if ty.known() && *ty != Ty::Bool {
            self.problem(
                id,
                t!("rules.typecheck.logic_not_bool", word, ty = ty.describe()),
            );
        }
    }

    fn mismatch(&mut self, id: u64, a: &Ty, b: &Ty, op: &str) {
        let _ = op;
        self.problems.push(Problem {
            expr_id: id,
            message: t!(
                "rules.typecheck.mismatch",
                a = a.describe(),
                b = b.describe()
            ),
            hint: Some(t!("rules.typecheck.mismatch_hint")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        let env = cel::Env::stdlib();
        let program = env.compile(source).unwrap();
        check(program.expression())
            .into_iter()
            .map(|p| p.message.render(crate::base::i18n::Lang::En))
            .collect()
    }

    #[test]
    fn well_typed_conditions_pass() {
        for ok in [
            "days_since_last_visit >= 90",
            "purchase_count >= 1 && (visit_count >= 2 || days_in_pool >= 30)",
            "total_spend >= 10000",
            "total_spend > 1.5 * 100",
            "city == \"上海\" || city in [\"杭州\", \"苏州\"]",
            "\"vip\" in tags",
            "tags.exists(t, t.startsWith(\"vip\"))",
            "days_since_last_contact == null || days_since_last_contact >= 30",
            "!visited_in_pool",
            "size(tags) > 0",
            "last_followup_result == \"refused\"",
        ] {
            assert_eq!(problems(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn text_compared_with_a_number_is_an_error() {
        assert_eq!(
            problems("city > 3"),
            ["text is compared with a number: they can never match"]
        );
        assert_eq!(
            problems("visit_count == \"3\""),
            ["a number is compared with text: they can never match"]
        );
    }

    #[test]
    fn logic_needs_true_or_false() {
        assert_eq!(
            problems("visit_count && purchased_in_pool"),
            ["`&&` needs true/false on each side; this is a number"]
        );
        assert_eq!(
            problems("visit_count"),
            ["the condition is a number, not true/false"]
        );
    }

    #[test]
    fn lists_and_functions_are_checked() {
        assert_eq!(
            problems("3 in tags"),
            ["`in` looks for a number in a list of text"]
        );
        assert_eq!(
            problems("visit_count.startsWith(\"a\")"),
            ["startsWith() works on text, not a number"]
        );
        assert_eq!(problems("sizee(tags) > 0")[0], "unknown function `sizee`");
        assert_eq!(
            problems("days_since_last_visit > null"),
            ["comparing with null is always false; to test for a missing value write `== null`"]
        );
    }
}
