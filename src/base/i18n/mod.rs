//! The language people read `recall` in, the process's choice of it, and
//! every sentence `recall` says to a person.
//!
//! `--lang` sets the process's language once at start (`set_lang`);
//! otherwise `RECALL_LANG` or `LANG` decide, and Chinese is the default for
//! a report. The CLI and the service's log lines ask [`lang`]; anything
//! that answers one reader (a request with its `Accept-Language`) renders
//! in that reader's language instead ([`Lang::from_accept_language`]).
//!
//! Every user-facing sentence is an entry of one catalogue,
//! `messages.toml` (embedded in the binary, parsed once), looked up by a
//! key named after where it is used (`report.verdict.too_few`), in English
//! and Chinese, with named placeholders (`{count}`). Code names a sentence
//! with [`t!`], which makes a [`Text`]: the key and its arguments, rendered
//! later in whatever language the reader asks for
//! ([`Text::render`]). A `Diagnostic` carries `Text`s, so the same problem
//! reads in either language. A sentence stored in English (a reason in
//! the outreach log) reads back into its `Text` with [`read_back`], so it
//! too shows in the reader's language.
//!
//! `tests.rs` reads `src/` for every `t!` and fails on a key the catalogue
//! lacks, arguments that differ from the entry's placeholders, an entry
//! without both languages or whose languages name different placeholders,
//! and an entry nothing uses. Entries still shown in English in Chinese
//! too are marked `zh_todo = true`; the test counts them.

mod catalogue;
mod text;

use std::sync::OnceLock;

pub use catalogue::{Catalogue, Message, catalogue};
pub(crate) use text::t;
pub use text::{Arg, IntoArg, Text, list, read_back};

/// A language `recall` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// 中文
    #[default]
    Zh,
    /// English
    En,
}

impl Lang {
    /// The language an HTTP `Accept-Language` header prefers, of the two
    /// `recall` speaks: the highest-weighted `zh…` or `en…` range (`*`
    /// and anything else is skipped); `None` when it names neither.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for range in header.split(',') {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim().to_lowercase();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::Zh,
                Some("en") => Lang::En,
                _ => continue,
            };
            if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }
}

static LANG: OnceLock<Lang> = OnceLock::new();

/// The process's language: what [`set_lang`] chose, else `RECALL_LANG` or
/// `LANG` (Chinese when it starts with `zh`, English otherwise).
pub fn lang() -> Lang {
    *LANG.get_or_init(|| {
        let env = std::env::var("RECALL_LANG")
            .or_else(|_| std::env::var("LANG"))
            .unwrap_or_default()
            .to_lowercase();
        if env.starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    })
}

/// Chooses the process's language (`--lang`), before anything asked for it.
pub fn set_lang(lang: Lang) {
    let _ = LANG.set(lang);
}

#[cfg(test)]
mod tests;
