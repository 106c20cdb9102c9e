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

use codespan_reporting::diagnostic::{Diagnostic as Rendered, Label, Severity as RenderedSeverity};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// Byte range in the file, when the problem has a place.
    pub span: Option<Range<usize>>,
    pub message: String,
    /// What to do about it: "did you mean ...", the allowed values, an example.
    pub hints: Vec<String>,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<PathBuf>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            span,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    pub fn warning(
        file: impl Into<PathBuf>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
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
            Some(best) => self.hint(format!("did you mean `{best}`?")),
            None => {
                let all: Vec<&str> = known.into_iter().collect();
                if all.len() <= 12 {
                    self.hint(format!("known: {}", all.join(", ")))
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
        self.diagnostics
            .iter()
            .map(|d| {
                let place = match d
                    .span
                    .as_ref()
                    .and_then(|s| self.line_col(&d.file, s.start))
                {
                    Some((line, col)) => format!("{}:{line}:{col}", d.file.display()),
                    None => d.file.display().to_string(),
                };
                let severity = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let mut line = format!("{place}: {severity}: {}", d.message);
                if !d.hints.is_empty() {
                    line.push_str(&format!(" ({})", d.hints.join("; ")));
                }
                line
            })
            .collect()
    }

    /// Renders every diagnostic with its source line and caret.
    pub fn render(&self, color: bool) -> String {
        let mut files = SimpleFiles::new();
        let ids: Vec<usize> = self
            .sources
            .iter()
            .map(|(path, text)| files.add(path.display().to_string(), text.clone()))
            .collect();
        let mut buffer = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let config = term::Config::default();
        for d in &self.diagnostics {
            let severity = match d.severity {
                Severity::Error => RenderedSeverity::Error,
                Severity::Warning => RenderedSeverity::Warning,
            };
            let file_id = self.sources.iter().position(|(p, _)| p == &d.file);
            let mut rendered = Rendered::new(severity).with_message(&d.message);
            match (file_id, &d.span) {
                (Some(index), Some(span)) => {
                    rendered = rendered.with_labels(vec![Label::primary(ids[index], span.clone())]);
                }
                _ => {
                    rendered = rendered.with_notes(vec![format!("in {}", d.file.display())]);
                }
            }
            let notes: Vec<String> = d.hints.iter().map(|h| format!("hint: {h}")).collect();
            rendered.notes.extend(notes);
            // Rendering into a memory buffer cannot fail on I/O; a bad span
            // falls back to the one-line form.
            if term::emit(&mut buffer, &config, &files, &rendered).is_err() {
                let line = Report {
                    diagnostics: vec![d.clone()],
                    sources: self.sources.clone(),
                }
                .to_lines()
                .join("\n");
                let _ = std::io::Write::write_all(&mut buffer, format!("{line}\n").as_bytes());
            }
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }
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
            Diagnostic::error(path, Some(26..30), "unknown fact `vist`")
                .hint("did you mean `visit_count`?"),
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
    let mut diagnostic = Diagnostic::error(file, error.span(), message.clone());
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some((given, expected)) = quoted.split_first()
        && (message.starts_with("unknown field") || message.starts_with("unknown variant"))
        && !expected.is_empty()
    {
        diagnostic = diagnostic.suggest(given, expected.iter().copied());
    }
    diagnostic
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
        assert!(
            d.message.contains("unknown field `priorty`"),
            "{}",
            d.message
        );
        assert_eq!(d.hints, ["did you mean `priority`?"]);
        assert_eq!(d.span, Some(0..7));
    }
}
