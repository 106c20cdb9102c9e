//! Diagnostics for the files operations staff edit: `recall.toml`,
//! `rules/*.toml` and `templates/`.
//!
//! Every problem names its file, line and column, shows the line with a caret
//! and, where it can, suggests the nearest known name. Loaders collect every
//! problem they find rather than stopping at the first, so one `recall check`
//! shows everything there is to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use unicode_width::UnicodeWidthStr;

pub use crate::base::i18n::Lang;
use crate::base::i18n::{Text, list, t};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// "error" or "warning", as a diagnostic starts.
    fn word(self) -> Text {
        match self {
            Severity::Error => t!("diag.label.error"),
            Severity::Warning => t!("diag.label.warning"),
        }
    }
}

/// One problem in one file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// Byte range in the file, when the problem has a place.
    pub span: Option<Range<usize>>,
    /// What is wrong, in whichever language it is read.
    pub message: Text,
    /// What to do about it: "did you mean ...", the allowed values, an example.
    pub hints: Vec<Text>,
}

impl Diagnostic {
    pub fn error(file: impl Into<PathBuf>, span: Option<Range<usize>>, message: Text) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            span,
            message,
            hints: Vec::new(),
        }
    }

    pub fn warning(file: impl Into<PathBuf>, span: Option<Range<usize>>, message: Text) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    pub fn hint(mut self, hint: Text) -> Self {
        self.hints.push(hint);
        self
    }

    /// Adds "did you mean `x`?" when a known name is close to the given one,
    /// and otherwise the list of known names when it is short.
    pub fn suggest<'a>(
        self,
        given: &str,
        known: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Self {
        match nearest(given, known.clone()) {
            Some(best) => self.hint(t!("diag.did_you_mean", best)),
            None => {
                let all: Vec<&str> = known.into_iter().collect();
                if all.len() <= 12 {
                    self.hint(t!("diag.known", known = list(all, t!("sep.list"))))
                } else {
                    self
                }
            }
        }
    }
}

/// The closest known name to `given`, if any is close enough to be a typo:
/// a few edits away (swapped letters count as one), or sharing a long prefix.
pub fn nearest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    let allowed_edits = (given.chars().count() / 3).max(1);
    known
        .into_iter()
        .filter_map(|candidate| {
            let candidate_lower = candidate.to_lowercase();
            let edits = strsim::damerau_levenshtein(&given_lower, &candidate_lower);
            let similarity = strsim::jaro_winkler(&given_lower, &candidate_lower);
            (edits <= allowed_edits || similarity >= 0.85).then_some((
                edits,
                -similarity,
                candidate,
            ))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, _, candidate)| candidate)
}

/// A loaded, checked thing with its warnings, or every problem that stopped it.
pub type Checked<T> = Result<(T, Report), Report>;

/// Diagnostics together with the text of the files they point into.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    sources: Vec<(PathBuf, String)>,
}

impl Report {
    /// Registers a file's text so diagnostics pointing into it can show lines.
    pub fn add_source(&mut self, path: &Path, text: &str) {
        if !self.sources.iter().any(|(p, _)| p == path) {
            self.sources.push((path.to_path_buf(), text.to_string()));
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub fn extend(&mut self, other: Report) {
        for (path, text) in other.sources {
            self.add_source(&path, &text);
        }
        self.diagnostics.extend(other.diagnostics);
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    fn source(&self, path: &Path) -> Option<&str> {
        self.sources
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, text)| text.as_str())
    }

    /// 1-based line and column (in characters) of a byte offset in a file.
    pub fn line_col(&self, path: &Path, offset: usize) -> Option<(usize, usize)> {
        let text = self.source(path)?;
        let offset = offset.min(text.len());
        let before = text.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = text[line_start..offset].chars().count() + 1;
        Some((line, col))
    }

    /// `path:line:col: severity: message (hint; hint)` lines, for logs.
    pub fn to_lines(&self) -> Vec<String> {
        self.to_lines_in(Lang::En)
    }

    /// One line per diagnostic, in `lang`.
    pub fn to_lines_in(&self, lang: Lang) -> Vec<String> {
        self.diagnostics
            .iter()
            .map(|d| {
                let severity = d.severity.word().render(lang);
                let message = d.message.render(lang);
                let mut line = format!("{}: {severity}: {message}", self.place(d));
                let hints: Vec<String> = d.hints.iter().map(|h| h.render(lang)).collect();
                if !hints.is_empty() {
                    line.push_str(&format!(" ({})", hints.join("; ")));
                }
                line
            })
            .collect()
    }

    /// `path:line:col`, or the path when the problem has no place.
    fn place(&self, d: &Diagnostic) -> String {
        match d
            .span
            .as_ref()
            .and_then(|s| self.line_col(&d.file, s.start))
        {
            Some((line, col)) => format!("{}:{line}:{col}", d.file.display()),
            None => d.file.display().to_string(),
        }
    }

    /// Renders every diagnostic with its place, the source line and a caret
    /// under the span, and its hints, in `lang`.
    pub fn render_in(&self, lang: Lang, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let mut out = String::new();
        for d in &self.diagnostics {
            let code = match d.severity {
                Severity::Error => "1;31",
                Severity::Warning => "1;33",
            };
            out.push_str(&format!(
                "{}: {}\n",
                paint(code, &d.severity.word().render(lang)),
                paint("1", &d.message.render(lang))
            ));
            out.push_str(&format!("  --> {}\n", self.place(d)));
            if let (Some(span), Some(text)) = (&d.span, self.source(&d.file))
                && let Some((line_no, _)) = self.line_col(&d.file, span.start)
            {
                let start = span.start.min(text.len());
                let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                // A line of thousands of characters (a pasted condition) is
                // shown as a window around the caret.
                let (from, to) = window(text, line_start, start, line_end);
                let line = format!(
                    "{}{}{}",
                    if from > line_start { "…" } else { "" },
                    &text[from..to],
                    if to < line_end { "…" } else { "" }
                );
                let end = span.end.clamp(start, to);
                let gutter = line_no.to_string();
                let pad = " ".repeat(gutter.len());
                let before = text[from..start].width() + usize::from(from > line_start);
                let under = text[start..end].width().max(1);
                out.push_str(&format!(
                    "{pad} |\n{gutter} | {line}\n{pad} | {}{}\n",
                    " ".repeat(before),
                    paint(code, &"^".repeat(under))
                ));
            }
            let label = t!("diag.label.hint").render(lang);
            for hint in &d.hints {
                let hint = hint.render(lang);
                out.push_str(&format!("   = {}: {hint}\n", paint("1;36", &label)));
            }
            out.push('\n');
        }
        out
    }

    /// [`Report::render_in`] in English.
    pub fn render(&self, color: bool) -> String {
        self.render_in(Lang::En, color)
    }
}

/// The part of the line `line_start..line_end` shown around `at`: all of
/// it up to 160 characters, else 40 before `at` and 120 from it.
fn window(text: &str, line_start: usize, at: usize, line_end: usize) -> (usize, usize) {
    const WIDE: usize = 160;
    const BEFORE: usize = 40;
    if text[line_start..line_end].chars().count() <= WIDE {
        return (line_start, line_end);
    }
    let from = text[line_start..at]
        .char_indices()
        .rev()
        .nth(BEFORE - 1)
        .map_or(line_start, |(i, _)| line_start + i);
    let to = text[from..line_end]
        .char_indices()
        .nth(WIDE)
        .map_or(line_end, |(i, _)| from + i);
    (from, to)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_lines().join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_but_not_strangers() {
        let known = ["days_since_last_visit", "visit_count", "total_spend"];
        assert_eq!(
            nearest("days_since_last_vist", known),
            Some("days_since_last_visit")
        );
        assert_eq!(nearest("Visit_Count", known), Some("visit_count"));
        assert_eq!(nearest("zodiac", known), None);
    }

    #[test]
    fn lines_name_file_line_and_column() {
        let mut report = Report::default();
        let path = Path::new("rules/a.toml");
        report.add_source(path, "[[rule]]\nid = \"x\"\nwhen = \"vist > 1\"\n");
        report.push(
            Diagnostic::error(path, Some(26..30), t!("rules.unknown_fact", name = "vist"))
                .hint(t!("diag.did_you_mean", best = "visit_count")),
        );
        assert_eq!(
            report.to_lines(),
            ["rules/a.toml:3:9: error: unknown fact `vist` (did you mean `visit_count`?)"]
        );
        let rendered = report.render(false);
        assert!(rendered.contains("when = \"vist > 1\""), "{rendered}");
        assert!(rendered.contains("^^^^"), "{rendered}");
        assert!(
            rendered.contains("hint: did you mean `visit_count`?"),
            "{rendered}"
        );
    }

    #[test]
    fn long_lines_show_a_window_around_the_caret() {
        let mut report = Report::default();
        let path = Path::new("r.toml");
        let text = format!("when = \"{}x{}\"", "(".repeat(5000), ")".repeat(5000));
        report.add_source(path, &text);
        let at = text.find('x').unwrap();
        report.push(Diagnostic::error(
            path,
            Some(at..at + 1),
            t!("rules.when.empty"),
        ));
        let rendered = report.render(false);
        let lines: Vec<&str> = rendered.lines().collect();
        assert!(
            lines[3].starts_with("1 | …(((") && lines[3].ends_with(")))…"),
            "{rendered}"
        );
        assert_eq!(lines[3].chars().count(), 4 + 1 + 160 + 1);
        let caret = lines[4].find('^').unwrap();
        assert_eq!(lines[3].chars().nth(caret), Some('x'), "{rendered}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let mut report = Report::default();
        let path = Path::new("t.toml");
        report.add_source(path, "description = \"预警\" x");
        let offset = "description = \"预警\" ".len();
        assert_eq!(report.line_col(path, offset), Some((1, 20)));
    }
}

/// Turns a TOML parse or shape error into a diagnostic. Errors about an
/// unknown field or value get a "did you mean" from the names TOML expected.
pub fn from_toml_error(file: &Path, error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim().to_string();
    let name = message.split('`').nth(1).unwrap_or("").to_string();
    let text = if message.starts_with("unknown field") {
        t!("diag.toml.unknown_field", message = &message, name)
    } else if message.starts_with("missing field") {
        t!("diag.toml.missing_field", message = &message, name)
    } else if message.starts_with("unknown variant") {
        t!("diag.toml.unknown_variant", message = &message, name)
    } else if message.starts_with("invalid type") {
        type_text(&message)
    } else if message.contains("duplicate key") {
        t!("diag.toml.duplicate_key", message = &message)
    } else {
        t!("diag.toml.other", message = &message)
    };
    let mut diagnostic = Diagnostic::error(file, error.span(), text);
    if message.starts_with("invalid type") {
        diagnostic = type_hint(diagnostic, &message);
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some((given, expected)) = quoted.split_first()
        && (message.starts_with("unknown field") || message.starts_with("unknown variant"))
        && !expected.is_empty()
    {
        diagnostic = diagnostic.suggest(given, expected.iter().copied());
    }
    diagnostic
}

/// serde's "invalid type: string \"90\", expected i64", in English as
/// serde says it and in plain Chinese: "类型不对：这里应写整数，却写成了文本 \"90\"".
fn type_text(message: &str) -> Text {
    let rest = message.trim_start_matches("invalid type:").trim();
    let (given, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
    let kind = |text: &str| -> Option<Text> {
        // The first word that names a type: "string", "i64", "a sequence".
        let first = text
            .split_whitespace()
            .map(|w| w.trim_matches('`'))
            .find(|w| !["a", "an"].contains(w))?;
        match first {
            "string" | "str" | "char" => Some(t!("diag.type.text")),
            "i64" | "u64" | "u32" | "i32" | "usize" | "integer" => Some(t!("diag.type.integer")),
            "f64" | "f32" | "float" => Some(t!("diag.type.number")),
            "bool" | "boolean" => Some(t!("diag.type.bool")),
            "sequence" | "array" | "list" => Some(t!("diag.type.list")),
            "map" | "table" | "struct" => Some(t!("diag.type.table")),
            _ => None,
        }
    };
    match (kind(given), kind(expected)) {
        (Some(given_kind), Some(expected_kind)) => {
            let value = given
                .trim()
                .split_once(' ')
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            t!(
                "diag.toml.invalid_type",
                message,
                expected = expected_kind,
                given = given_kind,
                value
            )
        }
        _ => t!("diag.toml.invalid_type_other", message),
    }
}

/// A plain hint for serde's "invalid type: X, expected Y".
fn type_hint(diagnostic: Diagnostic, message: &str) -> Diagnostic {
    let expected = message.split("expected").nth(1).unwrap_or("").trim();
    let given_text = message.contains("invalid type: string");
    let number = [
        "i64", "u32", "u64", "usize", "f64", "integer", "float", "number",
    ]
    .iter()
    .any(|word| expected.contains(word));
    if given_text && number {
        let value = message.split('"').nth(1).unwrap_or("90");
        diagnostic.hint(t!("diag.hint.unquote_number", value))
    } else if expected.contains("string") || expected.contains("str") {
        diagnostic.hint(t!("diag.hint.quote_text"))
    } else if expected.contains("bool") {
        diagnostic.hint(t!("diag.hint.true_false"))
    } else if number {
        diagnostic.hint(t!("diag.hint.number"))
    } else {
        diagnostic
    }
}

#[cfg(test)]
mod toml_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        priority: i64,
        description: String,
    }

    #[test]
    fn unknown_toml_fields_get_a_suggestion() {
        let err = toml::from_str::<Shape>("priorty = 3\ndescription = \"x\"\n").unwrap_err();
        let d = from_toml_error(Path::new("a.toml"), &err);
        let message = d.message.render(Lang::En);
        assert!(message.contains("unknown field `priorty`"), "{message}");
        assert_eq!(en(&d.hints), ["did you mean `priority`?"]);
        assert_eq!(d.span, Some(0..7));
    }

    #[test]
    fn a_quoted_number_gets_a_plain_hint() {
        let err = toml::from_str::<Shape>("priority = \"90\"\ndescription = \"x\"\n").unwrap_err();
        let d = from_toml_error(Path::new("a.toml"), &err);
        assert_eq!(
            en(&d.hints),
            ["numbers are written without quotes: 90, not \"90\""]
        );
        let hints_zh: Vec<String> = d.hints.iter().map(|h| h.render(Lang::Zh)).collect();
        assert_eq!(hints_zh, ["数字不要加引号：写 90，而不是 \"90\""]);
        assert_eq!(
            d.message.render(Lang::Zh),
            "类型不对：这里应写整数，却写成了文本 \"90\""
        );
        let err = toml::from_str::<Shape>("priority = 1\ndescription = 5\n").unwrap_err();
        let d = from_toml_error(Path::new("a.toml"), &err);
        assert_eq!(
            en(&d.hints),
            ["text must be in double quotes, e.g. \"warning\""]
        );
    }

    fn en(texts: &[Text]) -> Vec<String> {
        texts.iter().map(|t| t.render(Lang::En)).collect()
    }
}
