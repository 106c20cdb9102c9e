//! Tables, CSV and JSON for everything the CLI prints, from one row model so
//! the three formats always carry the same numbers.

use std::io::Write;

use clap::ValueEnum;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table for people (CJK-aware).
    Table,
    /// Comma-separated values with a header row (UTF-8).
    Csv,
    /// A JSON array of objects keyed by the column names.
    Json,
}

/// A result set: column names and rows of text.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    pub fn new(headers: &[&str]) -> Self {
        Rows {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Writes the rows in `format`. Table cells longer than `table_width`
    /// characters are cut (CSV and JSON always carry the full text).
    pub fn write(
        &self,
        format: Format,
        out: &mut dyn Write,
        table_width: Option<usize>,
    ) -> std::io::Result<()> {
        match format {
            Format::Table => {
                let mut table = Table::new();
                table
                    .load_preset(UTF8_FULL_CONDENSED)
                    .set_content_arrangement(ContentArrangement::Disabled)
                    .set_header(&self.headers);
                for row in &self.rows {
                    table.add_row(row.iter().map(|cell| cut(cell, table_width)));
                }
                writeln!(out, "{table}")
            }
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(&self.headers)?;
                for row in &self.rows {
                    writer.write_record(row)?;
                }
                writer.flush()
            }
            Format::Json => {
                let objects: Vec<serde_json::Map<String, serde_json::Value>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        self.headers
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.clone(), json_value(v)))
                            .collect()
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &objects)?;
                writeln!(out)
            }
        }
    }
}

/// Numbers stay numbers in JSON; empty cells are null.
fn json_value(text: &str) -> serde_json::Value {
    if text.is_empty() {
        serde_json::Value::Null
    } else if let Ok(n) = text.parse::<i64>() {
        n.into()
    } else {
        serde_json::Value::String(text.to_string())
    }
}

fn cut(text: &str, width: Option<usize>) -> String {
    let one_line = text.replace('\n', " ⏎ ");
    match width {
        Some(w) if one_line.chars().count() > w => {
            let mut short: String = one_line.chars().take(w.saturating_sub(1)).collect();
            short.push('…');
            short
        }
        _ => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        let mut rows = Rows::new(&["pool", "customers", "note"]);
        rows.push(vec!["new".into(), "12".into(), "新客, \"首诊\"".into()]);
        rows.push(vec!["churned".into(), "3".into(), String::new()]);
        rows
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        sample().write(format, &mut out, Some(20)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(
            render(Format::Csv),
            "pool,customers,note\nnew,12,\"新客, \"\"首诊\"\"\"\nchurned,3,\n"
        );
    }

    #[test]
    fn json_keeps_numbers_as_numbers() {
        let value: serde_json::Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(value[0]["customers"], 12);
        assert_eq!(value[0]["note"], "新客, \"首诊\"");
        assert_eq!(value[1]["note"], serde_json::Value::Null);
    }

    #[test]
    fn tables_show_every_row() {
        let table = render(Format::Table);
        assert!(
            table.contains("churned") && table.contains("新客"),
            "{table}"
        );
    }
}
