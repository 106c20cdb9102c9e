//! Everything recall writes for people and scripts: tables on a terminal,
//! CSV, JSON and xlsx workbooks, from one row model, so every format
//! carries the same numbers and the same protections.
//!
//! A command builds [`Rows`]: columns, each with a stable English key (what
//! JSON and scripts read) and a header in the reader's language, and rows
//! of typed [`Cell`]s (text, a word of a closed vocabulary, a count, money,
//! a rate, a time). One or more named [`Section`]s make a [`Book`], and
//! [`Output`] writes it in the format asked for:
//!
//! - **table** (`table.rs`): for a terminal; every cell escaped
//!   ([`escape`]: no control character or escape sequence of customer data
//!   reaches the terminal), long cells cut.
//! - **CSV** (`csv.rs`): a UTF-8 byte-order mark first (so Excel on Chinese
//!   Windows reads UTF-8, not 乱码) unless turned off; headers in the
//!   reader's language, or under English the keys JSON uses (the form for
//!   scripts); text cells neutralised ([`neutralise`]: OWASP's defence
//!   against formula injection); one file per section.
//! - **JSON** (`json.rs`): the keys, numbers as numbers, rates as fractions.
//! - **xlsx** (`xlsx.rs`): one sheet per section, headers bold and frozen,
//!   column widths set, numbers as numbers, rates as percentage-formatted
//!   numbers, times as dates; text cells neutralised as in CSV.
//!
//! Files are written whole or not at all (a temporary file renamed into
//! place), readable by their owner only: exports hold personal data.
//! This module never decides what a number is; it only writes the cells it
//! is given.

mod csv;
mod json;
mod safe;
mod table;
mod xlsx;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use clap::ValueEnum;

use crate::base::clock::{self, Timestamp};
use crate::base::i18n::{Lang, Text};

pub use safe::{escape, neutralise};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table for people (CJK-aware).
    Table,
    /// Comma-separated values with a header row (UTF-8 with a BOM).
    Csv,
    /// JSON: objects keyed by stable English names.
    Json,
    /// An Excel workbook (needs --output FILE).
    Xlsx,
}

impl Format {
    /// The format a file's name asks for: `.csv`, `.json`, `.xlsx`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "xlsx" => Some(Format::Xlsx),
            _ => None,
        }
    }
}

/// One value of a row, typed so each format can show it as it should: a
/// rate is `25.0%` in a table, `0.25` in JSON and a percentage-formatted
/// number in a workbook.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing to show (a rate with nothing to divide by).
    Empty,
    /// Free text: names, notes, message content. Neutralised in
    /// spreadsheets, escaped on terminals.
    Text(String),
    /// A word of a closed vocabulary: `key` for scripts (JSON, and CSV
    /// under English), `text` for people (`新客池`, `已预约`).
    Term { key: String, text: String },
    /// A count.
    Int(i64),
    /// A signed change (`+3` in a table).
    Delta(i64),
    /// A decimal number shown with `places` decimals (money in yuan).
    Decimal { value: f64, places: u8 },
    /// A rate as a fraction (0.25 is 25%).
    Percent(f64),
    /// A difference of two rates, as a fraction (0.012 is +1.2 points).
    Points(f64),
    /// An instant, shown in the clinic's time zone.
    Time { at: Timestamp, tz: Tz },
}

impl Cell {
    /// A word of a closed vocabulary: its key and its name in `lang`.
    pub fn term(key: impl Into<String>, name: &Text, lang: Lang) -> Cell {
        Cell::Term {
            key: key.into(),
            text: name.render(lang),
        }
    }

    /// A word of a closed vocabulary as stored (`sent`, `sms`, `new`): a
    /// [`Cell::Term`] with `name` of it when this version knows the word,
    /// the word as it is otherwise.
    pub fn named<T: std::str::FromStr>(stored: &str, name: impl Fn(T) -> Text, lang: Lang) -> Cell {
        match stored.parse::<T>() {
            Ok(word) => Cell::term(stored, &name(word), lang),
            Err(_) => Cell::Text(stored.to_string()),
        }
    }

    /// Money in yuan from thousandths of a yuan (costs), two decimals.
    pub fn yuan_milli(milli: i64) -> Cell {
        Cell::Decimal {
            value: milli as f64 / 1000.0,
            places: 2,
        }
    }

    /// Money in yuan from cents (revenue), two decimals.
    pub fn yuan_cents(cents: i64) -> Cell {
        Cell::Decimal {
            value: cents as f64 / 100.0,
            places: 2,
        }
    }

    /// A rate, or nothing when there is nothing to divide by.
    pub fn percent(value: Option<f64>) -> Cell {
        value.map_or(Cell::Empty, Cell::Percent)
    }

    /// A difference of rates, or nothing.
    pub fn points(value: Option<f64>) -> Cell {
        value.map_or(Cell::Empty, Cell::Points)
    }

    /// A decimal number, or nothing.
    pub fn decimal(value: Option<f64>, places: u8) -> Cell {
        value.map_or(Cell::Empty, |value| Cell::Decimal { value, places })
    }

    /// Free text, or nothing.
    pub fn text(value: Option<impl Into<String>>) -> Cell {
        value.map_or(Cell::Empty, |v| Cell::Text(v.into()))
    }

    /// Whether a spreadsheet should get this as a number.
    fn is_number(&self) -> bool {
        matches!(
            self,
            Cell::Int(_)
                | Cell::Delta(_)
                | Cell::Decimal { .. }
                | Cell::Percent(_)
                | Cell::Points(_)
        )
    }

    /// The cell as a person reads it in a table (not yet escaped).
    fn for_people(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) => text.clone(),
            Cell::Term { text, .. } => text.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Delta(n) => format!("{n:+}"),
            Cell::Decimal { value, places } => format!("{value:.*}", usize::from(*places)),
            Cell::Percent(f) => format!("{:.1}%", f * 100.0),
            Cell::Points(f) => format!("{:+.1} pt", f * 100.0),
            Cell::Time { at, tz } => clock::format_local(*at, *tz),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::Text(text.to_string())
    }
}

/// A column: the key scripts read (JSON, CSV under English) and the
/// header people read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub key: String,
    pub header: String,
}

/// A result set: columns and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Rows {
    /// Columns whose headers are their keys.
    pub fn new(keys: &[&str]) -> Self {
        Rows::from_headers(keys.iter().map(|k| k.to_string()).collect())
    }

    /// Columns with these headers, each its own key (tables only).
    pub fn from_headers(headers: Vec<String>) -> Self {
        Rows {
            columns: headers
                .into_iter()
                .map(|h| Column {
                    key: h.clone(),
                    header: h,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Columns headed in `lang`, keyed by the last part of each header's
    /// catalogue key (`tick.fired` is `fired`).
    pub fn headed(lang: Lang, headers: &[Text]) -> Self {
        Rows {
            columns: headers
                .iter()
                .map(|h| Column {
                    key: h.key().rsplit('.').next().unwrap_or_default().to_string(),
                    header: h.render(lang),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Columns with a key for scripts and a header in `lang` for people.
    pub fn keyed(lang: Lang, columns: &[(&str, Text)]) -> Self {
        Rows {
            columns: columns
                .iter()
                .map(|(key, header)| Column {
                    key: key.to_string(),
                    header: header.render(lang),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn push<C: Into<Cell>>(&mut self, row: Vec<C>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Only the columns with these keys, in this order (a table shows the
    /// columns people scan; files carry them all).
    pub fn select(&self, keys: &[&str]) -> Rows {
        let picked: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| c.key == *k))
            .collect();
        Rows {
            columns: picked.iter().map(|i| self.columns[*i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| picked.iter().map(|i| r[*i].clone()).collect())
                .collect(),
        }
    }

    /// The rows as a table for a terminal, every cell escaped; cells
    /// longer than `width` characters are cut.
    pub fn write_table(&self, out: &mut dyn Write, width: Option<usize>) -> std::io::Result<()> {
        writeln!(out, "{}", table::render(self, width))
    }

    /// The same, as text.
    pub fn table(&self, width: Option<usize>) -> String {
        format!("{}\n", table::render(self, width))
    }
}

/// A named part of what a command writes: a sheet of a workbook, a file of
/// CSV, a key of JSON, a titled table.
#[derive(Debug, Clone)]
pub struct Section {
    /// Stable: the JSON key and the CSV file's name (`pools` → `pools.csv`).
    pub key: String,
    /// For people: the sheet's name and the table's heading.
    pub title: String,
    pub rows: Rows,
    /// Shown instead of an empty table (and under the header of an empty sheet).
    pub empty: Option<String>,
    /// Table cells longer than this are cut (files carry the full text).
    pub table_width: Option<usize>,
}

impl Section {
    pub fn new(key: &str, title: String, rows: Rows) -> Section {
        Section {
            key: key.to_string(),
            title,
            rows,
            empty: None,
            table_width: None,
        }
    }

    /// What a table says when there are no rows.
    pub fn when_empty(mut self, text: String) -> Section {
        self.empty = Some(text);
        self
    }

    pub fn cut_at(mut self, width: usize) -> Section {
        self.table_width = Some(width);
        self
    }
}

/// Everything a command writes: an optional title (the report's period),
/// then its sections.
#[derive(Debug, Clone, Default)]
pub struct Book {
    pub title: Option<String>,
    pub sections: Vec<Section>,
    /// Lines a table shows after the sections (files carry the same
    /// numbers in their rows).
    pub notes: Vec<String>,
}

impl Book {
    pub fn one(section: Section) -> Book {
        Book {
            title: None,
            sections: vec![section],
            notes: Vec::new(),
        }
    }

    /// Only the sections with this key (`--section`); `None` if there is none.
    pub fn only(mut self, key: &str) -> Option<Book> {
        self.sections.retain(|s| s.key == key);
        (!self.sections.is_empty()).then_some(self)
    }
}

/// How and where to write: the format, the file or folder (standard
/// output when `None`), the byte-order mark, the reader's language.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub path: Option<PathBuf>,
    /// Start CSV with a UTF-8 byte-order mark (Excel needs it; `--no-bom`
    /// for scripts).
    pub bom: bool,
    pub lang: Lang,
}

/// What was written where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Stdout,
    File(PathBuf),
    /// One CSV file per section in a folder.
    Files(PathBuf, usize),
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Stdout(std::io::Error),
    #[error("{0}: {1}")]
    Xlsx(PathBuf, String),
    /// A workbook cannot go to a terminal or a pipe.
    #[error("a workbook needs a file")]
    NeedsFile,
    /// Several sections as CSV need a folder (one file each) or a choice.
    #[error("several sections")]
    SeveralSections(Vec<String>),
}

impl OutputError {
    /// What went wrong, for the person who asked.
    pub fn text(&self) -> Text {
        use crate::base::i18n::{list, t};
        match self {
            OutputError::Io(path, error) => {
                t!("output.cannot_write", path = path.display(), error)
            }
            OutputError::Stdout(error) => t!("output.cannot_write_stdout", error),
            OutputError::Xlsx(path, error) => {
                t!("output.cannot_write", path = path.display(), error)
            }
            OutputError::NeedsFile => t!("output.xlsx_needs_file"),
            OutputError::SeveralSections(keys) => {
                let sections = list(keys.iter(), t!("sep.list"));
                t!("output.csv_sections", sections)
            }
        }
    }
}

impl Output {
    /// Writes `book` as this output asks.
    pub fn write(&self, book: &Book) -> Result<Written, OutputError> {
        match (&self.path, self.format) {
            (None, Format::Xlsx) => Err(OutputError::NeedsFile),
            (Some(path), Format::Xlsx) => {
                let bytes = xlsx::workbook(book)
                    .map_err(|e| OutputError::Xlsx(path.clone(), e.to_string()))?;
                save(path, &bytes)?;
                Ok(Written::File(path.clone()))
            }
            (None, Format::Csv) if book.sections.len() > 1 => Err(OutputError::SeveralSections(
                book.sections.iter().map(|s| s.key.clone()).collect(),
            )),
            (Some(dir), Format::Csv) if book.sections.len() > 1 => {
                std::fs::create_dir_all(dir).map_err(|e| OutputError::Io(dir.clone(), e))?;
                for section in &book.sections {
                    let mut bytes = Vec::new();
                    self.csv(section, &mut bytes, false)
                        .map_err(|e| OutputError::Io(dir.clone(), e))?;
                    save(&dir.join(format!("{}.csv", section.key)), &bytes)?;
                }
                Ok(Written::Files(dir.clone(), book.sections.len()))
            }
            (None, format) => {
                let terminal = std::io::stdout().is_terminal();
                let mut out = std::io::stdout().lock();
                self.text(book, format, &mut out, terminal)
                    .map_err(OutputError::Stdout)?;
                out.flush().map_err(OutputError::Stdout)?;
                Ok(Written::Stdout)
            }
            (Some(path), format) => {
                let mut bytes = Vec::new();
                self.text(book, format, &mut bytes, false)
                    .map_err(|e| OutputError::Io(path.clone(), e))?;
                save(path, &bytes)?;
                Ok(Written::File(path.clone()))
            }
        }
    }

    /// A table, one CSV section or JSON, into `out`; `terminal` escapes
    /// control characters in CSV and JSON too (tables always are).
    fn text(
        &self,
        book: &Book,
        format: Format,
        out: &mut dyn Write,
        terminal: bool,
    ) -> std::io::Result<()> {
        match format {
            Format::Table => table::book(book, out),
            Format::Csv => match book.sections.first() {
                Some(section) => self.csv(section, out, terminal),
                None => Ok(()),
            },
            Format::Json => json::book(book, out, terminal),
            Format::Xlsx => unreachable!("a workbook is written by `write`"),
        }
    }

    fn csv(&self, section: &Section, out: &mut dyn Write, terminal: bool) -> std::io::Result<()> {
        csv::section(section, out, self.bom, self.lang, terminal)
    }
}

/// Writes `bytes` to `path` whole or not at all, readable by its owner only
/// (an export may hold names and phone numbers): a temporary file beside it
/// (created 0600), renamed into place.
fn save(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let fail = |e: std::io::Error| OutputError::Io(path.to_path_buf(), e);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
