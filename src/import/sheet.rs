//! A sheet a person filled in and hands back (the front desk's call
//! sheet): a CSV file (UTF-8 with or without a byte-order mark, or GBK as
//! Excel on Chinese Windows saves "CSV") or the first sheet of an xlsx
//! workbook, as rows of text, each with the line a person sees: the
//! editor's line for CSV (whatever the line breaks), the row number for a
//! workbook. Which it is comes from the file's first bytes, not its name.
//!
//! Pure: reads the file and nothing else. What the rows mean is the
//! caller's business.

use std::io::Read;
use std::path::Path;

use calamine::{Reader as _, Xlsx};

use super::decode::{Encoding, open};
use super::records::{ReadError, Record, Records};
use crate::base::i18n::{Text, t};

/// The rows of a sheet under its header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sheet {
    /// The header's cells, trimmed.
    pub header: Vec<String>,
    /// The line the header is on.
    pub header_line: usize,
    /// The rows after the header; rows with every cell empty are left out.
    pub rows: Vec<SheetRow>,
}

/// One row and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetRow {
    /// The line a text editor shows (a CSV cell may span several lines).
    pub line: usize,
    /// The row a spreadsheet shows (the header is row 1).
    pub row: usize,
    /// The row's cells, trimmed; as many as it has (missing cells at the
    /// end are simply absent).
    pub cells: Vec<String>,
}

impl SheetRow {
    /// Cell `i`, empty when the row is shorter.
    pub fn cell(&self, i: usize) -> &str {
        self.cells.get(i).map_or("", String::as_str)
    }
}

/// The start of every xlsx file (a zip archive).
const ZIP: &[u8] = b"PK\x03\x04";

/// Reads `path`, a CSV file or an xlsx workbook.
pub fn read(path: &Path) -> Result<Sheet, Text> {
    let fail = |error: String| t!("sheet.cannot_read", path = path.display(), error);
    let mut start = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut start))
        .map_err(|e| fail(e.to_string()))?;
    let mut rows = if start[..n] == *ZIP {
        workbook(path).map_err(fail)?
    } else {
        csv(path)?
    };
    if rows.is_empty() {
        return Err(t!("sheet.empty", path = path.display()));
    }
    let first = rows.remove(0);
    Ok(Sheet {
        header: first.cells,
        header_line: first.line,
        rows,
    })
}

/// A CSV file's non-empty rows.
fn csv(path: &Path) -> Result<Vec<SheetRow>, Text> {
    let fail = |error: String| t!("sheet.cannot_read", path = path.display(), error);
    let input = open(path, Encoding::Auto).map_err(fail)?;
    let mut records = Records::new(input.text);
    let mut record = Record::default();
    let mut rows = Vec::new();
    loop {
        match records.read(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(rows),
            Err(ReadError::Io(e)) => return Err(fail(e.to_string())),
            Err(ReadError::TooLong(line)) => {
                return Err(t!("sheet.row_too_long", path = path.display(), line));
            }
        }
        if record.iter().any(|c| !c.is_empty()) {
            rows.push(SheetRow {
                line: record.line,
                row: rows.len() + 1,
                cells: record.iter().map(str::to_string).collect(),
            });
        }
    }
}

/// The first sheet of a workbook's non-empty rows, numbered as Excel
/// numbers them.
fn workbook(path: &Path) -> Result<Vec<SheetRow>, String> {
    let mut workbook: Xlsx<_> =
        calamine::open_workbook(path).map_err(|e: calamine::XlsxError| e.to_string())?;
    let range = match workbook.worksheet_range_at(0) {
        Some(range) => range.map_err(|e| e.to_string())?,
        None => return Ok(Vec::new()),
    };
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let mut rows = Vec::new();
    for (i, row) in range.rows().enumerate() {
        let mut cells: Vec<String> = vec![String::new(); first_col as usize];
        cells.extend(row.iter().map(|c| c.to_string().trim().to_string()));
        if cells.iter().any(|c| !c.is_empty()) {
            let row = first_row as usize + i + 1;
            rows.push(SheetRow {
                line: row,
                row,
                cells,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_the_lines_an_editor_shows_and_skip_blank_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.csv");
        std::fs::write(&path, "\u{feff}编号,结果\r\n1,已预约\r\n\r\n2, 未接通 \r\n").unwrap();
        let sheet = read(&path).unwrap();
        assert_eq!(sheet.header, ["编号", "结果"]);
        assert_eq!(
            sheet.rows,
            [
                SheetRow {
                    line: 2,
                    row: 2,
                    cells: vec!["1".into(), "已预约".into()]
                },
                SheetRow {
                    line: 4,
                    row: 3,
                    cells: vec!["2".into(), "未接通".into()]
                },
            ]
        );
    }

    #[test]
    fn gbk_csv_as_excel_saves_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.csv");
        let (bytes, _, _) = encoding_rs::GBK.encode("编号,结果\n7,空号\n");
        std::fs::write(&path, &bytes).unwrap();
        let sheet = read(&path).unwrap();
        assert_eq!(sheet.rows[0].cells, ["7", "空号"]);
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.csv");
        std::fs::write(&path, "\n\n").unwrap();
        assert_eq!(read(&path).unwrap_err().key(), "sheet.empty");
    }
}
