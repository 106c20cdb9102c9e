//! JSON for scripts: objects keyed by the columns' stable English keys,
//! counts and money as numbers, rates as fractions, words of a closed
//! vocabulary by their keys, times as RFC 3339. One section is an array of
//! objects; several are an object of arrays, keyed by section.

use std::io::Write;

use serde_json::{Map, Value};

use super::{Book, Cell, Rows, escape};
use crate::base::clock;

/// `book` as JSON. `terminal`: the text goes to a terminal, so characters
/// JSON leaves as they are (C1 controls, bidirectional overrides) are
/// escaped too.
pub(super) fn book(book: &Book, out: &mut dyn Write, terminal: bool) -> std::io::Result<()> {
    let value = match book.sections.as_slice() {
        [one] => rows(&one.rows, terminal),
        sections => Value::Object(
            sections
                .iter()
                .map(|s| (s.key.clone(), rows(&s.rows, terminal)))
                .collect(),
        ),
    };
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}

fn rows(rows: &Rows, terminal: bool) -> Value {
    Value::Array(
        rows.rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> = rows
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(column, cell)| (column.key.clone(), value(cell, terminal)))
                    .collect();
                Value::Object(object)
            })
            .collect(),
    )
}

fn value(cell: &Cell, terminal: bool) -> Value {
    let text = |t: &str| {
        Value::String(if terminal {
            escape(t).into_owned()
        } else {
            t.to_string()
        })
    };
    match cell {
        Cell::Empty => Value::Null,
        Cell::Text(t) => text(t),
        Cell::Term { key, .. } => text(key),
        Cell::Int(n) | Cell::Delta(n) => (*n).into(),
        Cell::Decimal { value, places } => rounded(*value, i32::from(*places)),
        Cell::Percent(f) | Cell::Points(f) => rounded(*f, 4),
        Cell::Time { at, tz } => Value::String(clock::format_rfc3339(*at, *tz)),
    }
}

/// `x` rounded to `places` decimals, as a JSON number (null if not finite).
fn rounded(x: f64, places: i32) -> Value {
    let scale = 10f64.powi(places);
    serde_json::Number::from_f64((x * scale).round() / scale).map_or(Value::Null, Value::Number)
}
