//! Reading `src/` as the source tests see it (tests/layers.rs,
//! tests/invariants.rs): the product's files, each as its code with
//! comments, string literals and test items blanked out (line breaks kept,
//! so line numbers hold).

use std::path::{Path, PathBuf};

/// One product file of `src/`.
pub struct SourceFile {
    /// Its path under `src/`, e.g. `store/outbox.rs`.
    pub relative: PathBuf,
    /// The file as written.
    pub text: String,
    /// The code alone: comments, strings and `#[cfg(test)]` items blanked.
    pub code: String,
}

/// Every product file under `src`, in path order: test code (`tests.rs`
/// files, `src/testing.rs`, `#[cfg(test)]` items) left out.
pub fn product_files(src: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    collect(src, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(src).unwrap().to_path_buf();
            if relative.ends_with("tests.rs") || relative == Path::new("testing.rs") {
                return None;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = strip_test_items(&strip_comments_and_strings(&text));
            Some(SourceFile {
                relative,
                text,
                code,
            })
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Blanks out comments, string and char literals (keeping line breaks), so
/// neither a doc link nor a message that mentions `crate::x` counts.
pub fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // r"…", r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let close: Vec<char> = close.chars().collect();
            while j < chars.len() && !chars[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(chars.len());
            for &skipped in &chars[i..j] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '{'), not a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks out every item marked `#[cfg(test)]` (a `mod tests { … }`, a
/// helper function), keeping line breaks.
pub fn strip_test_items(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..].starts_with(&marker) {
            // The item ends at the `;` or the brace that closes its body.
            let mut j = i + marker.len();
            let mut depth = 0;
            while j < out.len() {
                match out[j] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ';' if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let end = j.min(out.len() - 1);
            for c in &mut out[i..=end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}
