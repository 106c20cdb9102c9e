//! One row's cells read as typed values (times, dates, amounts, yes/no,
//! gender, follow-up results), each problem reported with its line.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::records::Record;
use super::{RowError, quote};
use crate::base::clock::{self, Timestamp};
use crate::base::i18n::t;
use crate::base::model::{FollowupResult, Gender, Words};
use crate::base::phone::{self, CountryCode};

/// One row's cells by column id.
pub(super) struct Cell<'a> {
    pub(super) record: &'a Record,
    pub(super) index: &'a BTreeMap<&'static str, usize>,
    pub(super) line: usize,
    /// What a cell that says `now` means: the time of the import.
    pub(super) now: DateTime<Utc>,
    /// The country of numbers typed without a country code.
    pub(super) region: CountryCode,
}

impl Cell<'_> {
    /// The cell, if the file has the column (empty text is `Some("")`).
    pub(super) fn raw(&self, column: &str) -> Option<&str> {
        self.index.get(column).and_then(|i| self.record.get(*i))
    }

    /// Non-empty text, or `None`.
    pub(super) fn text(&self, column: &str) -> Option<String> {
        self.raw(column)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// For columns that update a field: `None` if the file lacks the
    /// column, `Some(None)` if the cell is empty (clears the field).
    pub(super) fn optional(&self, column: &str) -> Option<Option<String>> {
        self.raw(column)
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
    }

    /// A phone number in its one stored form: the national digits of a
    /// number of the clinic's country, else `+` and the E.164 digits. A
    /// number that cannot be read, or that no number of its region looks
    /// like, is an error of the row (`None`): one number a cell.
    pub(super) fn phone(&self, column: &str, errors: &mut Vec<RowError>) -> Option<Option<String>> {
        let text = self.optional(column)?;
        let Some(text) = text else {
            return Some(None);
        };
        let checked = phone::parse(&text, Some(self.region)).and_then(|p| p.check().map(|()| p));
        match checked {
            Ok(p) if p.country() == self.region => Some(Some(p.national().to_string())),
            Ok(p) => Some(Some(p.e164())),
            Err(why) => {
                let value = quote(&text);
                let message = if text.contains(['E', 'e']) && text.contains('+') {
                    t!("import.err.phone_scientific", column, value, why)
                } else if text.contains(['/', ',', '，', ';', '；', '、']) {
                    t!("import.err.phone_two", column, value, why)
                } else {
                    t!("import.err.phone", column, value, why)
                };
                errors.push(RowError {
                    line: self.line,
                    message,
                });
                None
            }
        }
    }

    pub(super) fn required(&self, column: &str, errors: &mut Vec<RowError>) -> Option<String> {
        let value = self.text(column);
        if value.is_none() {
            errors.push(RowError {
                line: self.line,
                message: t!("import.err.required", column),
            });
        }
        value
    }

    pub(super) fn time(
        &self,
        column: &str,
        tz: Tz,
        errors: &mut Vec<RowError>,
    ) -> Option<Timestamp> {
        let text = self.required(column, errors)?;
        match parse_time(&text, tz, self.now) {
            Some(at) => Some(at),
            None => {
                let text = quote(&text);
                errors.push(RowError {
                    line: self.line,
                    message: t!("import.err.time", column, value = text),
                });
                None
            }
        }
    }

    pub(super) fn amount(&self, column: &str, errors: &mut Vec<RowError>) -> Option<i64> {
        let text = self.required(column, errors)?;
        let parsed = parse_amount(&text);
        if let Some(cents) = parsed.filter(|c| *c >= 0) {
            return Some(cents);
        }
        let text = quote(&text);
        match parsed {
            Some(_) => {
                errors.push(RowError {
                    line: self.line,
                    message: t!("import.err.negative", column, value = text),
                });
                None
            }
            None => {
                errors.push(RowError {
                    line: self.line,
                    message: t!("import.err.amount", column, value = text),
                });
                None
            }
        }
    }

    pub(super) fn flag(&self, column: &str, errors: &mut Vec<RowError>) -> Option<bool> {
        let text = self.text(column)?;
        let value = parse_flag(&text);
        if value.is_none() {
            let text = quote(&text);
            errors.push(RowError {
                line: self.line,
                message: t!("import.err.flag", column, value = text),
            });
        }
        value
    }
}

/// Dates and times as CRMs export them, in clinic time (`now` for the
/// word `now`).
pub fn parse_time(text: &str, tz: Tz, now: DateTime<Utc>) -> Option<Timestamp> {
    let text = text.trim().replace('/', "-");
    if let Ok(at) = clock::parse_time(&text, tz, now) {
        return Some(at.timestamp());
    }
    // 2026-3-1 and 2026-3-1 9:05: pad the parts.
    let (date, time) = text
        .split_once(' ')
        .map_or((text.as_str(), None), |(d, t)| (d, Some(t)));
    let date = parse_date(date)?;
    let time = match time {
        None => chrono::NaiveTime::MIN,
        Some(t) => chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M:%S")
            .or_else(|_| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M"))
            .ok()?,
    };
    clock::local_to_utc(date.and_time(time), tz).map(|t| t.timestamp())
}

pub(super) fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim().replace('/', "-");
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Yuan to cents: "12800", "12,800.50", "¥12800", "12800元".
pub fn parse_amount(text: &str) -> Option<i64> {
    let cleaned: String = text
        .trim()
        .trim_start_matches(['¥', '￥'])
        .trim_end_matches('元')
        .chars()
        .filter(|c| *c != ',' && *c != '，')
        .collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 2 {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let cents = whole.parse::<i64>().ok()?.checked_mul(100)?
        + format!("{fraction:0<2}").parse::<i64>().ok()?;
    Some(if negative { -cents } else { cents })
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "是" | "同意" | "有" => Some(true),
        "0" | "no" | "n" | "false" | "否" | "不同意" | "无" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_gender(text: &str) -> Option<Gender> {
    Gender::from_word(text)
}

pub(super) fn followup_result(text: &str) -> Option<FollowupResult> {
    FollowupResult::from_word(text)
}
