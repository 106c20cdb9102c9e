//! Customer data made safe for where it is shown: neutralised for
//! spreadsheets (CSV and xlsx formula injection) and escaped for terminals
//! (control characters and escape sequences).
//!
//! Names, notes and message content come from the clinic's CRM/HIS exports
//! and from customers themselves. A cell that begins with `=` is a formula
//! to Excel (`=HYPERLINK(...)` leaks data when clicked, DDE payloads run
//! commands); a name carrying `ESC ] 0 ; … BEL` retitles the operator's
//! terminal, `ESC [ 31 m` recolours it. Nothing here changes what is
//! stored: only what is written out.

/// The first characters that make a spreadsheet read a cell as a formula
/// (OWASP's list: `=`, `+`, `-`, `@`, tab, carriage return), and NUL, which
/// ASVS 1.2.10 adds.
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '\0'];

/// A text cell for a spreadsheet: prefixed with a single quote when it
/// begins with a character a spreadsheet would read as the start of a
/// formula, as OWASP recommends for CSV injection; as it is otherwise.
/// Only text goes through here: the numbers recall computes are written
/// as numbers, negative ones included.
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// Text for a terminal: every control character (C0, DEL, C1, which
/// includes the 8-bit CSI) and every bidirectional override or isolate is
/// shown as an escape (`\x1b`, `\u{202e}`), so no byte of customer data
/// can move the cursor, recolour, retitle or reorder what the operator
/// reads. Printable text, Chinese included, is left as it is.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                escaped.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// Control characters (C0, DEL, C1) and the bidirectional formatting
/// characters that reorder a line on screen (U+202A–U+202E, U+2066–U+2069).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralise_prefixes_every_formula_start_and_nothing_else() {
        for hostile in [
            "=HYPERLINK(\"http://x\",\"点我\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(neutralise(hostile), format!("'{hostile}"));
        }
        for plain in ["王丽", "13812345678", "a=b", "", "'already"] {
            assert_eq!(neutralise(plain), plain);
        }
    }

    #[test]
    fn escape_shows_controls_and_keeps_chinese() {
        assert_eq!(escape("王\x1b]0;evil\x07丽"), "王\\x1b]0;evil\\x07丽");
        assert_eq!(escape("\x1b[31m红"), "\\x1b[31m红");
        assert_eq!(escape("a\u{9b}31m"), "a\\u{9b}31m");
        assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(escape("two\nlines\tand\r"), "two\\nlines\\tand\\r");
        assert_eq!(escape("孙磊 VIP"), "孙磊 VIP");
    }
}
