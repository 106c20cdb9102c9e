//! CSV records with the line each starts on, read a block at a time.
//!
//! Line numbers are counted here, not by the CSV parser: every line break a
//! person's editor shows counts once, whether it is `\n` (Unix), `\r\n`
//! (Windows, as Excel and HIS software export) or a lone `\r` (old Mac),
//! inside a quoted cell or between rows, and blank lines count too. A
//! record's line is the line of its first character. (The `csv` crate's
//! positions count `\n` only and point before skipped blank lines, which
//! made CRLF files one line too low and CR-only files all line 1.)

use std::io::{self, BufRead};

/// The longest record read; a longer one is almost always an unclosed
/// quote swallowing the rest of the file, and would hold it all in memory.
pub(super) const MAX_RECORD: usize = 1 << 20;

/// One record: its cells (trimmed when read) and its first line.
#[derive(Debug, Default)]
pub(super) struct Record {
    pub(super) line: usize,
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Record {
    /// The number of cells.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Cell `i` without the spaces around it.
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // The text was checked (or decoded) as UTF-8 before it got here, and
        // CSV separators are ASCII, so a cell is whole characters.
        std::str::from_utf8(&self.text[start..end])
            .ok()
            .map(str::trim)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

/// Why a record could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(io::Error),
    /// A record longer than [`MAX_RECORD`], starting on this line.
    TooLong(usize),
}

/// The records of a text, in order.
pub(super) struct Records<R> {
    input: R,
    parser: csv_core::Reader,
    /// The line the next byte is on.
    line: usize,
    /// The last byte read was `\r`: a `\n` right after it ends no new line.
    after_cr: bool,
}

impl<R: BufRead> Records<R> {
    pub(super) fn new(input: R) -> Self {
        Records {
            input,
            parser: csv_core::Reader::new(),
            line: 1,
            after_cr: false,
        }
    }

    /// Reads the next record into `record`; `false` at the end.
    pub(super) fn read(&mut self, record: &mut Record) -> Result<bool, ReadError> {
        record.text.clear();
        record.ends.clear();
        let (mut text_len, mut ends_len) = (0, 0);
        // Until the record's first character: blank lines the parser skips.
        let mut started = false;
        record.line = self.line;
        loop {
            if record.text.len() < text_len + 1024 {
                record.text.resize(text_len + 4096, 0);
            }
            if record.ends.len() < ends_len + 16 {
                record.ends.resize(ends_len + 64, 0);
            }
            let input = self.input.fill_buf().map_err(ReadError::Io)?;
            let (result, read, written, ended) = self.parser.read_record(
                input,
                &mut record.text[text_len..],
                &mut record.ends[ends_len..],
            );
            for &byte in &input[..read] {
                if !started && byte != b'\r' && byte != b'\n' {
                    started = true;
                    record.line = self.line;
                }
                match byte {
                    b'\r' => self.line += 1,
                    b'\n' if !self.after_cr => self.line += 1,
                    _ => {}
                }
                self.after_cr = byte == b'\r';
            }
            self.input.consume(read);
            text_len += written;
            ends_len += ended;
            if text_len > MAX_RECORD {
                return Err(ReadError::TooLong(record.line));
            }
            match result {
                csv_core::ReadRecordResult::InputEmpty
                | csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => continue,
                csv_core::ReadRecordResult::Record => {
                    record.text.truncate(text_len);
                    record.ends.truncate(ends_len);
                    return Ok(true);
                }
                csv_core::ReadRecordResult::End => {
                    record.text.clear();
                    record.ends.clear();
                    return Ok(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, Vec<String>)> {
        let mut records = Records::new(text.as_bytes());
        let mut record = Record::default();
        let mut out = Vec::new();
        while records.read(&mut record).unwrap() {
            out.push((record.line, record.iter().map(str::to_string).collect()));
        }
        out
    }

    #[test]
    fn every_kind_of_line_break_counts_once() {
        for end in ["\n", "\r\n", "\r"] {
            let text = ["h", "a", "", "b,\"x", "y\"", "c"].join(end);
            let got = lines(&text);
            let at: Vec<usize> = got.iter().map(|(line, _)| *line).collect();
            assert_eq!(at, [1, 2, 4, 6], "line break {end:?}");
            assert_eq!(got[2].1, ["b", &format!("x{end}y")]);
        }
    }

    #[test]
    fn a_record_cut_in_blocks_keeps_its_lines() {
        let text = "h\r\na\r\nb\r\n";
        let mut records = Records::new(io::BufReader::with_capacity(1, text.as_bytes()));
        let mut record = Record::default();
        let mut at = Vec::new();
        while records.read(&mut record).unwrap() {
            at.push(record.line);
        }
        assert_eq!(at, [1, 2, 3]);
    }

    #[test]
    fn an_unclosed_quote_stops_at_the_limit() {
        let text = format!("h\n\"{}", "x,".repeat(MAX_RECORD));
        let mut records = Records::new(text.as_bytes());
        let mut record = Record::default();
        assert!(records.read(&mut record).unwrap());
        assert!(matches!(
            records.read(&mut record),
            Err(ReadError::TooLong(2))
        ));
    }
}
