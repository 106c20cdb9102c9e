//! Excel workbooks (rust_xlsxwriter): one sheet per section, named by its
//! title; the header row bold and frozen, with a filter; column widths
//! from the widest cell; numbers as numbers (money with two decimals, rates
//! as percentage-formatted fractions, changes signed), times as dates in
//! the clinic's zone; text cells neutralised against formula injection.

use chrono::{Datelike, Timelike};
use rust_xlsxwriter::{
    ColNum, DocProperties, ExcelDateTime, Format, RowNum, Workbook, Worksheet, XlsxError,
};
use unicode_width::UnicodeWidthStr;

use super::{Book, Cell, Section, neutralise};

/// The longest sheet name Excel accepts.
const SHEET_NAME_CHARS: usize = 31;
/// Column widths, in characters of the default font.
const MIN_WIDTH: f64 = 6.0;
const MAX_WIDTH: f64 = 60.0;

/// The number formats of typed cells.
struct Formats {
    header: Format,
    int: Format,
    delta: Format,
    decimals: [Format; 5],
    percent: Format,
    points: Format,
    time: Format,
}

impl Formats {
    fn new() -> Formats {
        let decimals = std::array::from_fn(|places| {
            let format = if places == 0 {
                "0".to_string()
            } else {
                format!("0.{}", "0".repeat(places))
            };
            Format::new().set_num_format(format)
        });
        Formats {
            header: Format::new().set_bold().set_text_wrap(),
            int: Format::new().set_num_format("0"),
            delta: Format::new().set_num_format("+0;-0;0"),
            decimals,
            percent: Format::new().set_num_format("0.0%"),
            points: Format::new().set_num_format("+0.0%;-0.0%;0.0%"),
            time: Format::new().set_num_format("yyyy-mm-dd hh:mm"),
        }
    }
}

/// The workbook's bytes: one sheet per section of `book`.
pub(super) fn workbook(book: &Book) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    if let Some(title) = &book.title {
        workbook.set_properties(&DocProperties::new().set_title(title));
    }
    let formats = Formats::new();
    let mut names: Vec<String> = Vec::new();
    for section in &book.sections {
        let name = sheet_name(&section.title, &names);
        let sheet = workbook.add_worksheet();
        sheet.set_name(&name)?;
        names.push(name);
        write_section(sheet, section, &formats)?;
    }
    if book.sections.is_empty() {
        workbook.add_worksheet();
    }
    workbook.save_to_buffer()
}

fn write_section(
    sheet: &mut Worksheet,
    section: &Section,
    formats: &Formats,
) -> Result<(), XlsxError> {
    let rows = &section.rows;
    let mut widths: Vec<usize> = Vec::with_capacity(rows.columns.len());
    for (c, column) in rows.columns.iter().enumerate() {
        let header = neutralise(&column.header);
        sheet.write_string_with_format(0, c as ColNum, header.as_ref(), &formats.header)?;
        widths.push(header.width());
    }
    for (r, row) in rows.rows.iter().enumerate() {
        let at = (r + 1) as RowNum;
        for (c, cell) in row.iter().enumerate() {
            let shown = write_cell(sheet, at, c as ColNum, cell, formats)?;
            if let Some(width) = widths.get_mut(c) {
                *width = (*width).max(shown);
            }
        }
    }
    if rows.rows.is_empty()
        && let Some(empty) = &section.empty
    {
        sheet.write_string(1, 0, neutralise(empty).as_ref())?;
    }
    for (c, width) in widths.iter().enumerate() {
        let width = (*width as f64 + 2.0).clamp(MIN_WIDTH, MAX_WIDTH);
        sheet.set_column_width(c as ColNum, width)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    if !rows.columns.is_empty() && !rows.rows.is_empty() {
        let last_row = rows.rows.len() as RowNum;
        let last_col = (rows.columns.len() - 1) as ColNum;
        sheet.autofilter(0, 0, last_row, last_col)?;
    }
    Ok(())
}

/// Writes one cell; returns how wide it shows, in characters.
fn write_cell(
    sheet: &mut Worksheet,
    row: RowNum,
    col: ColNum,
    cell: &Cell,
    formats: &Formats,
) -> Result<usize, XlsxError> {
    let shown = cell.for_people().width();
    match cell {
        Cell::Empty => {}
        Cell::Text(text) | Cell::Term { text, .. } => {
            let safe = neutralise(text);
            sheet.write_string(row, col, safe.as_ref())?;
            return Ok(first_line_width(&safe));
        }
        Cell::Int(n) => {
            sheet.write_number_with_format(row, col, *n as f64, &formats.int)?;
        }
        Cell::Delta(n) => {
            sheet.write_number_with_format(row, col, *n as f64, &formats.delta)?;
        }
        Cell::Decimal { value, places } => {
            let format = &formats.decimals[usize::from(*places).min(4)];
            sheet.write_number_with_format(row, col, *value, format)?;
        }
        Cell::Percent(f) => {
            sheet.write_number_with_format(row, col, *f, &formats.percent)?;
        }
        Cell::Points(f) => {
            sheet.write_number_with_format(row, col, *f, &formats.points)?;
        }
        Cell::Time { at, tz } => match local(*at, *tz) {
            Some(time) => {
                sheet.write_datetime_with_format(row, col, time?, &formats.time)?;
                return Ok(16);
            }
            None => return Ok(0),
        },
    }
    Ok(shown)
}

/// The widest line of a text, for its column's width.
fn first_line_width(text: &str) -> usize {
    text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
}

/// An instant as the clinic's wall-clock time, as Excel keeps dates.
fn local(at: i64, tz: chrono_tz::Tz) -> Option<Result<ExcelDateTime, XlsxError>> {
    let time = chrono::DateTime::from_timestamp(at, 0)?.with_timezone(&tz);
    let year = u16::try_from(time.year()).ok()?;
    Some(
        ExcelDateTime::from_ymd(year, time.month() as u8, time.day() as u8).and_then(|d| {
            d.and_hms(
                time.hour() as u16,
                time.minute() as u8,
                f64::from(time.second()),
            )
        }),
    )
}

/// A sheet name Excel accepts: without `[]:*?/\`, at most 31 characters,
/// not empty, and not the name of a sheet already there.
fn sheet_name(title: &str, taken: &[String]) -> String {
    let clean: String = title
        .chars()
        .map(|c| match c {
            '[' | ']' | ':' | '*' | '?' | '/' | '\\' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let clean = clean.trim().trim_matches('\'').trim();
    let base = if clean.is_empty() { "Sheet" } else { clean };
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!(" ({n})")
        };
        let keep = SHEET_NAME_CHARS - suffix.chars().count();
        let name: String = base
            .chars()
            .take(keep)
            .collect::<String>()
            .trim_end()
            .to_string()
            + &suffix;
        if !taken
            .iter()
            .any(|t| t.to_lowercase() == name.to_lowercase())
        {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_ones_excel_accepts() {
        let long = "Uplift against the control group";
        let first = sheet_name(long, &[]);
        assert_eq!(first.chars().count(), 31);
        assert_eq!(
            sheet_name(long, std::slice::from_ref(&first)),
            "Uplift against the control (2)"
        );
        assert_eq!(sheet_name("a/b:c", &[]), "a b c");
        assert_eq!(sheet_name("", &[]), "Sheet");
        assert_eq!(sheet_name("各池人数", &[]), "各池人数");
    }
}
