//! Importing a clinic's CRM/HIS exports: customers, visits, orders and
//! follow-ups from CSV files.
//!
//! Two stages, as everywhere: a [`Reader`] turns a file into typed rows,
//! one at a time, each with its line or with the problems of its line
//! (pure: no database); the store's `import` upserts the rows by the
//! clinic's own ids in one transaction as they come, and reports rows that
//! point at unknown customers or repeat an id. One bad row rejects the whole
//! file and leaves the database as it was. Re-importing the same file
//! changes nothing.
//!
//! A file is read a block at a time and never held whole: memory does not
//! grow with the file (a row is limited to [`records::MAX_RECORD`] bytes).
//! Files may be UTF-8 (with or without a BOM) or GBK, as Excel in China
//! saves them. Headers may be the English ids of [`columns`] or their
//! Chinese names. Every problem names the line a person sees in an editor,
//! whatever the line breaks, and quotes at most [`QUOTE_CHARS`] characters
//! of a cell.

mod cell;
mod columns;
mod decode;
mod records;
pub mod sheet;

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::base::clock::Timestamp;
use crate::base::i18n::{Lang, Text, t};
use crate::base::model::{FollowupResult, Gender};
use crate::base::phone::CountryCode;
use cell::{Cell, followup_result, parse_date, parse_gender};
use columns::map_headers;
use records::{ReadError, Record, Records};

pub use cell::{parse_amount, parse_time};
pub use columns::{
    CUSTOMER_COLUMNS, Column, FOLLOWUP_COLUMNS, Kind, ORDER_COLUMNS, VISIT_COLUMNS,
    columns_markdown,
};
pub use decode::{Encoding, Input, Progress, from_bytes, open};

/// One problem with one row (or the header, line 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: usize,
    /// What is wrong, in either language (`--lang`).
    pub message: Text,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message.render(Lang::En))
    }
}

/// The most characters of a cell an error message quotes.
pub const QUOTE_CHARS: usize = 40;

/// A cell's text as an error message quotes it: at most [`QUOTE_CHARS`]
/// characters (then `…`), control characters escaped, so a file of random
/// bytes gets short, harmless lines.
pub fn quote(text: &str) -> String {
    let mut quoted = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == QUOTE_CHARS {
            quoted.push('…');
            break;
        }
        if c.is_control() {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    quoted
}

/// The problems of a file: the first [`Problems::SHOWN`] with their text,
/// and how many there were in all (memory stays small whatever the file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problems {
    pub shown: Vec<RowError>,
    pub total: usize,
}

impl Problems {
    /// How many problems are kept with their text.
    pub const SHOWN: usize = 50;

    pub fn push(&mut self, error: RowError) {
        if self.shown.len() < Self::SHOWN {
            self.shown.push(error);
        }
        self.total += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Extend<RowError> for Problems {
    fn extend<T: IntoIterator<Item = RowError>>(&mut self, errors: T) {
        for error in errors {
            self.push(error);
        }
    }
}

/// A customer row: only the columns the file has are set (`Some`); the
/// others are left as they are in the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerIn {
    pub line: usize,
    pub external_id: String,
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub wechat_openid: Option<Option<String>>,
    pub wecom_external_userid: Option<Option<String>>,
    pub gender: Option<Option<Gender>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub city: Option<Option<String>>,
    pub source_channel: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// The customer's own advisor (专属顾问): a staff member's name.
    pub advisor: Option<Option<String>>,
    /// sms, phone, wechat, email: `None` when the file says nothing (no
    /// column, or an empty cell).
    pub consent: [Option<bool>; 4],
    pub do_not_contact: Option<bool>,
    pub first_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub department: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub amount_cents: i64,
    pub project: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowupIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub result: FollowupResult,
    pub staff: Option<String>,
    pub note: Option<String>,
}

/// One row of a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Customer(CustomerIn),
    Visit(VisitIn),
    Order(OrderIn),
    Followup(FollowupIn),
}

impl Row {
    /// The line the row starts on.
    pub fn line(&self) -> usize {
        match self {
            Row::Customer(r) => r.line,
            Row::Visit(r) => r.line,
            Row::Order(r) => r.line,
            Row::Followup(r) => r.line,
        }
    }

    /// The clinic's id of the row.
    pub fn external_id(&self) -> &str {
        match self {
            Row::Customer(r) => &r.external_id,
            Row::Visit(r) => &r.external_id,
            Row::Order(r) => &r.external_id,
            Row::Followup(r) => &r.external_id,
        }
    }
}

/// Why a file could not be read at all.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenError {
    /// Missing, unreadable, or neither UTF-8 nor GBK.
    File(String),
    /// The header names unknown columns or lacks required ones.
    Header(Vec<RowError>),
}

/// The rows of a file of one kind, read as they are asked for. Yields each
/// row, or the problems of a row that is wrong (blank lines are skipped);
/// ends after a problem that stops the reading (an unreadable file, a row
/// past [`records::MAX_RECORD`]).
pub struct Reader {
    records: Records<Box<dyn BufRead>>,
    record: Record,
    kind: Kind,
    /// Column id → position in the row.
    index: BTreeMap<&'static str, usize>,
    /// Cells in the header.
    width: usize,
    tz: Tz,
    /// What a cell that says `now` means: the time of the import.
    now: DateTime<Utc>,
    /// The country of numbers typed without a country code.
    region: CountryCode,
    progress: Progress,
    done: bool,
}

impl Reader {
    /// Opens a file of `kind`, imported at `now`, and reads its header.
    pub fn open(
        path: &Path,
        encoding: Encoding,
        kind: Kind,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Reader, OpenError> {
        let input = open(path, encoding).map_err(OpenError::File)?;
        Reader::new(input, kind, tz, now)
    }

    /// Reads the header of `input`, a file of `kind` imported at `now`.
    pub fn new(input: Input, kind: Kind, tz: Tz, now: DateTime<Utc>) -> Result<Reader, OpenError> {
        let mut records = Records::new(input.text);
        let mut header = Record::default();
        let fail = |message: Text| OpenError::Header(vec![RowError { line: 1, message }]);
        match records.read(&mut header) {
            Ok(_) => {}
            Err(ReadError::Io(e)) => {
                return Err(fail(t!("import.err.header_unreadable", error = e)));
            }
            Err(ReadError::TooLong(_)) => {
                let kb = records::MAX_RECORD / 1024;
                return Err(fail(t!("import.err.header_too_long", kb)));
            }
        }
        let (index, errors) = map_headers(header.iter(), kind.columns());
        if !errors.is_empty() {
            return Err(OpenError::Header(errors));
        }
        Ok(Reader {
            records,
            record: Record::default(),
            kind,
            index,
            width: header.len(),
            tz,
            now,
            region: CountryCode::CHINA,
            progress: input.progress,
            done: false,
        })
    }

    /// Numbers typed without a country code belong to `region` (the
    /// clinic's `country_code`; mainland China unless told).
    pub fn in_region(mut self, region: CountryCode) -> Reader {
        self.region = region;
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How far the reading has got, for a progress bar.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// The current record as a row, or its problems.
    fn row(&self) -> Result<Row, Vec<RowError>> {
        let record = &self.record;
        let line = record.line;
        let mut errors = Vec::new();
        if record.len() != self.width {
            errors.push(RowError {
                line,
                message: t!(
                    "import.err.cell_count",
                    cells = record.len(),
                    header = self.width
                ),
            });
            return Err(errors);
        }
        let cell = Cell {
            record,
            index: &self.index,
            line,
            now: self.now,
            region: self.region,
        };
        let id = cell.required("external_id", &mut errors);
        let tz = self.tz;
        let row = match self.kind {
            Kind::Customers => Some(Row::Customer(customer(
                &cell,
                id.unwrap_or_default(),
                tz,
                &mut errors,
            ))),
            Kind::Visits => visit(&cell, id, tz, &mut errors).map(Row::Visit),
            Kind::Orders => order(&cell, id, tz, &mut errors).map(Row::Order),
            Kind::Followups => followup(&cell, id, tz, &mut errors).map(Row::Followup),
        };
        match row {
            Some(row) if errors.is_empty() => Ok(row),
            _ => Err(errors),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Row, Vec<RowError>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let stop = |line: usize, message: Text| Some(Err(vec![RowError { line, message }]));
            match self.records.read(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(ReadError::Io(e)) => {
                    self.done = true;
                    return stop(
                        self.record.line,
                        t!("import.err.file_unreadable", error = e),
                    );
                }
                Err(ReadError::TooLong(line)) => {
                    self.done = true;
                    return stop(
                        line,
                        t!("import.err.row_too_long", kb = records::MAX_RECORD / 1024),
                    );
                }
            }
            if self.record.iter().all(str::is_empty) {
                continue;
            }
            return Some(self.row());
        }
    }
}

fn customer(
    cell: &Cell<'_>,
    external_id: String,
    tz: Tz,
    errors: &mut Vec<RowError>,
) -> CustomerIn {
    let line = cell.line;
    let gender = cell.optional("gender").map(|g| {
        g.and_then(|g| {
            let parsed = parse_gender(&g);
            if parsed.is_none() {
                errors.push(RowError {
                    line,
                    message: t!("import.err.gender", value = quote(&g)),
                });
            }
            parsed
        })
    });
    let birth_date = cell.optional("birth_date").map(|b| {
        b.and_then(|b| {
            let parsed = parse_date(&b);
            if parsed.is_none() {
                errors.push(RowError {
                    line,
                    message: t!("import.err.birth_date", value = quote(&b)),
                });
            }
            parsed
        })
    });
    let first_seen = cell.text("first_seen").and_then(|t| {
        let parsed = parse_time(&t, tz, cell.now);
        if parsed.is_none() {
            errors.push(RowError {
                line,
                message: t!("import.err.first_seen", value = quote(&t)),
            });
        }
        parsed
    });
    CustomerIn {
        line,
        external_id,
        name: cell.raw("name").map(str::to_string),
        phone: cell.phone("phone", errors),
        email: cell.optional("email"),
        wechat_openid: cell.optional("wechat_openid"),
        wecom_external_userid: cell.optional("wecom_external_userid"),
        gender,
        birth_date,
        city: cell.optional("city"),
        source_channel: cell.optional("source_channel"),
        advisor: cell.optional("advisor"),
        tags: cell.raw("tags").map(|t| {
            t.split([',', ';', '，', '；', '、', '|'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        }),
        consent: [
            cell.flag("consent_sms", errors),
            cell.flag("consent_phone", errors),
            cell.flag("consent_wechat", errors),
            cell.flag("consent_email", errors),
        ],
        do_not_contact: cell.flag("do_not_contact", errors),
        first_seen,
    }
}

/// A visit row; `None` when a cell it needs is missing or wrong.
fn visit(
    cell: &Cell<'_>,
    external_id: Option<String>,
    tz: Tz,
    errors: &mut Vec<RowError>,
) -> Option<VisitIn> {
    let customer = cell.required("customer_id", errors);
    let at = cell.time("at", tz, errors);
    Some(VisitIn {
        line: cell.line,
        external_id: external_id?,
        customer: customer?,
        at: at?,
        department: cell.text("department"),
        note: cell.text("note"),
    })
}

/// An order row; `None` when a cell it needs is missing or wrong.
fn order(
    cell: &Cell<'_>,
    external_id: Option<String>,
    tz: Tz,
    errors: &mut Vec<RowError>,
) -> Option<OrderIn> {
    let customer = cell.required("customer_id", errors);
    let at = cell.time("at", tz, errors);
    let amount = cell.amount("amount", errors);
    Some(OrderIn {
        line: cell.line,
        external_id: external_id?,
        customer: customer?,
        at: at?,
        amount_cents: amount?,
        project: cell.text("project"),
        department: cell.text("department"),
    })
}

/// A follow-up row; `None` when a cell it needs is missing or wrong.
fn followup(
    cell: &Cell<'_>,
    external_id: Option<String>,
    tz: Tz,
    errors: &mut Vec<RowError>,
) -> Option<FollowupIn> {
    let line = cell.line;
    let customer = cell.required("customer_id", errors);
    let at = cell.time("at", tz, errors);
    let result = cell
        .required("result", errors)
        .and_then(|r| match followup_result(&r) {
            Some(result) => Some(result),
            None => {
                errors.push(RowError {
                    line,
                    message: t!("import.err.followup_result", value = quote(&r)),
                });
                None
            }
        });
    Some(FollowupIn {
        line,
        external_id: external_id?,
        customer: customer?,
        at: at?,
        result: result?,
        staff: cell.text("staff"),
        note: cell.text("note"),
    })
}

#[cfg(test)]
mod tests;
