//! Tables for a terminal: aligned (CJK-aware), numbers to the right, every
//! cell escaped so customer data cannot drive the terminal.

use std::io::Write;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use super::{Book, Cell, Rows, escape};

/// The rows as an aligned table.
pub(super) fn render(rows: &Rows, width: Option<usize>) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(rows.columns.iter().map(|c| escape(&c.header).into_owned()));
    for row in &rows.rows {
        table.add_row(row.iter().map(|cell| cut(&cell.for_people(), width)));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        let numeric = rows
            .rows
            .iter()
            .filter_map(|r| r.get(i))
            .filter(|c| **c != Cell::Empty)
            .all(Cell::is_number);
        if numeric && !rows.rows.is_empty() {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

/// A book as tables: its title, then each section (under its title when
/// there are several), or what it says when it is empty.
pub(super) fn book(book: &Book, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(title) = &book.title {
        writeln!(out, "{}", escape(title))?;
    }
    let titled = book.sections.len() > 1;
    for section in &book.sections {
        if titled {
            writeln!(out, "\n{}", escape(&section.title))?;
        }
        match &section.empty {
            Some(empty) if section.rows.is_empty() => writeln!(out, "{}", escape(empty))?,
            _ => section.rows.write_table(out, section.table_width)?,
        }
    }
    for note in &book.notes {
        writeln!(out, "{}", escape(note))?;
    }
    Ok(())
}

/// One line of a cell (line breaks shown as ⏎), escaped, at most `width`
/// characters.
fn cut(text: &str, width: Option<usize>) -> String {
    let one_line = text.replace("\r\n", "\n").replace('\n', " ⏎ ");
    let one_line = escape(&one_line);
    match width {
        Some(w) if one_line.chars().count() > w => {
            let mut short: String = one_line.chars().take(w.saturating_sub(1)).collect();
            short.push('…');
            short
        }
        _ => one_line.into_owned(),
    }
}
