//! A fact's value as rule conditions (CEL), templates (minijinja) and a
//! decision's reason see it.

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelNull, CelString};
use cel::common::value::{CowVal, Val};

use super::Facts;

impl Facts {
    /// The value of one fact as a CEL value; `None` for names that are not facts.
    pub fn cel_value(&self, name: &str) -> Option<CowVal<'_, '_>> {
        self.get(name).map(FactValue::to_cel)
    }
}

/// One fact's value, borrowed from [`Facts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FactValue<'a> {
    Int(Option<i64>),
    Double(Option<f64>),
    Bool(bool),
    Text(Option<&'a str>),
    List(&'a [String]),
}

impl<'a> FactValue<'a> {
    /// As CEL sees it: missing values are `null`.
    pub fn to_cel(self) -> CowVal<'a, 'a> {
        match self {
            FactValue::Int(Some(v)) => CowVal::owned(CelInt::from(v)),
            FactValue::Double(Some(v)) => CowVal::owned(CelDouble::from(v)),
            FactValue::Bool(v) => CowVal::owned(CelBool::from(v)),
            FactValue::Text(Some(v)) => CowVal::owned(CelString::from(v)),
            FactValue::Int(None) | FactValue::Double(None) | FactValue::Text(None) => {
                CowVal::owned(CelNull)
            }
            FactValue::List(items) => {
                let items: Vec<Box<dyn Val + 'a>> = items
                    .iter()
                    .map(|t| Box::new(CelString::from(t.as_str())) as Box<dyn Val>)
                    .collect();
                CowVal::owned(CelList::from(items))
            }
        }
    }

    /// As templates see it: missing values are `none`.
    pub fn to_template(self) -> minijinja::Value {
        match self {
            FactValue::Int(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::Double(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::Bool(v) => minijinja::Value::from(v),
            FactValue::Text(v) => v.map_or(minijinja::Value::from(()), minijinja::Value::from),
            FactValue::List(items) => minijinja::Value::from(items.to_vec()),
        }
    }
}

/// As a decision's reason shows it: `null`, `90`, `12800.5`, `true`, `"上海"`, `["vip"]`.
impl std::fmt::Display for FactValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FactValue::Int(Some(v)) => write!(f, "{v}"),
            FactValue::Double(Some(v)) => write!(f, "{v}"),
            FactValue::Bool(v) => write!(f, "{v}"),
            FactValue::Text(Some(v)) => write!(f, "{v:?}"),
            FactValue::Int(None) | FactValue::Double(None) | FactValue::Text(None) => {
                f.write_str("null")
            }
            FactValue::List(items) => write!(f, "{items:?}"),
        }
    }
}

impl cel::context::VariableResolver for Facts {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.cel_value(variable)
    }
}
