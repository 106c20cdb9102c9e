//! How big and how deep the files operations staff write may be: a rule
//! file, one condition, one template. The loaders check these before any
//! parser sees the text, so a pasted 12 MB condition or 10,000 parentheses
//! are refused in milliseconds with a sentence a person can act on, never
//! a parser's stack overflow or "Recursion limit" dump. README "Limits"
//! lists them; change both together.

/// Largest rule file, in bytes (`rules/*.toml`).
pub const RULE_FILE_BYTES: u64 = 1024 * 1024;

/// Largest `when` condition, in bytes.
pub const CONDITION_BYTES: usize = 4 * 1024;

/// Deepest nesting of a condition: brackets `( [ {` and `? :` inside each
/// other, and (after parsing) operators inside operators' operands. The
/// CEL parser gives up at 96 and overflows the stack of a debug build
/// sooner; the shipped rules nest 3 deep.
pub const CONDITION_NESTING: usize = 32;

/// Largest template file, in bytes (each part: body, subject, HTML, params).
pub const TEMPLATE_BYTES: u64 = 64 * 1024;

/// A size as people read it: `900 B`, `4 KB`, `12.0 MB`.
pub fn size(bytes: u64) -> String {
    const KB: u64 = 1024;
    match bytes {
        b if b < KB => format!("{b} B"),
        b if b < KB * KB => format!("{} KB", b.div_ceil(KB)),
        b => format!("{:.1} MB", b as f64 / (KB * KB) as f64),
    }
}

/// How deeply brackets and conditional operators nest in a condition, and
/// the byte offset where the nesting first goes deeper than `limit` (where
/// to point). Text in quotes is skipped. One pass, no parser: safe on any
/// input.
pub fn nesting(source: &str, limit: usize) -> (usize, Option<usize>) {
    // Each open bracket, with the `?` seen at its level so far (a `? :`
    // nests its `else` in the parser as a bracket does).
    let mut levels: Vec<usize> = vec![0];
    let mut depth = 0;
    let (mut deepest, mut beyond) = (0, None);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in source.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                levels.push(0);
                depth += 1;
            }
            ')' | ']' | '}' if levels.len() > 1 => {
                depth -= 1 + levels.pop().unwrap_or(0);
            }
            '?' => {
                if let Some(level) = levels.last_mut() {
                    *level += 1;
                }
                depth += 1;
            }
            _ => {}
        }
        deepest = deepest.max(depth);
        if depth > limit && beyond.is_none() {
            beyond = Some(at);
        }
    }
    (deepest, beyond)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_and_conditionals_but_not_quoted_text() {
        assert_eq!(nesting("visit_count > 1", 32), (0, None));
        assert_eq!(nesting("a && (b || (c))", 32), (2, None));
        assert_eq!(nesting("a && (b || (c))", 1), (2, Some(11)));
        assert_eq!(nesting("x in [1, 2] && (y)", 32).0, 1);
        assert_eq!(nesting("a ? b : c ? d : e", 32).0, 2);
        assert_eq!(nesting("(a ? b : c) && (d)", 32).0, 2);
        assert_eq!(nesting(r#"project == "((((\")))" && (a)"#, 32).0, 1);
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(nesting(&deep, 32), (10_000, Some(32)));
        // Unbalanced closers do not go below zero.
        assert_eq!(nesting(")))(a)", 32).0, 1);
    }

    #[test]
    fn sizes_read_as_bytes_kilobytes_or_megabytes() {
        assert_eq!(size(900), "900 B");
        assert_eq!(size(4 * 1024), "4 KB");
        assert_eq!(size(4 * 1024 + 1), "5 KB");
        assert_eq!(size(12 * 1024 * 1024), "12.0 MB");
    }
}
