//! CSV for Excel and for scripts: a byte-order mark first (Excel on Chinese
//! Windows reads a file without one as GBK and shows 乱码), headers in the
//! reader's language (under English the keys JSON uses, so scripts have
//! stable names), text cells neutralised against formula injection,
//! numbers as plain numbers, rates as percentages Excel reads as numbers.

use std::io::Write;

use super::{Cell, Section, escape, neutralise};
use crate::base::clock;
use crate::base::i18n::Lang;

/// The UTF-8 byte-order mark.
pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One section as a CSV file: the header row, then the rows. `terminal`:
/// the text goes to a terminal, so control characters are escaped too.
pub(super) fn section(
    section: &Section,
    out: &mut dyn Write,
    bom: bool,
    lang: Lang,
    terminal: bool,
) -> std::io::Result<()> {
    if bom {
        out.write_all(BOM)?;
    }
    let for_scripts = lang == Lang::En;
    let mut writer = ::csv::Writer::from_writer(out);
    let shown = |text: &str| -> String {
        let safe = neutralise(text);
        if terminal {
            escape(&safe).into_owned()
        } else {
            safe.into_owned()
        }
    };
    let rows = &section.rows;
    writer.write_record(rows.columns.iter().map(|c| {
        if for_scripts {
            shown(&c.key)
        } else {
            shown(&c.header)
        }
    }))?;
    for row in &rows.rows {
        writer.write_record(row.iter().map(|cell| match cell {
            Cell::Empty => String::new(),
            Cell::Text(text) => shown(text),
            Cell::Term { key, .. } if for_scripts => shown(key),
            Cell::Term { text, .. } => shown(text),
            Cell::Int(n) | Cell::Delta(n) => n.to_string(),
            Cell::Decimal { value, places } => format!("{value:.*}", usize::from(*places)),
            // Excel reads `25.00%` as the number 0.25 shown as a percentage.
            Cell::Percent(f) | Cell::Points(f) => format!("{:.2}%", f * 100.0),
            Cell::Time { at, tz } => clock::format_rfc3339(*at, *tz),
        }))?;
    }
    writer.flush()
}
