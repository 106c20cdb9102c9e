//! The message catalogue: `messages.toml`, parsed once into entries with
//! their templates split at the placeholders.
//!
//! An entry is a table whose dotted name is its key:
//!
//! ```toml
//! [check.warnings]
//! en = "{count} warning(s)"
//! zh = "{count} 个警告"
//! ```
//!
//! `{name}` is a placeholder, `{{` and `}}` are braces. An entry shown in
//! English in Chinese too, until someone translates it, has `zh_todo =
//! true` instead of `zh`. An entry one of whose languages leaves out a
//! placeholder on purpose names it in `omits` (serde's own English message
//! beside its Chinese rendering, which names only the field).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use super::Lang;

/// The catalogue embedded in the binary.
pub(super) const MESSAGES: &str = include_str!("messages.toml");

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // `tests.rs` parses the same text: a broken catalogue never ships.
    Catalogue::parse(MESSAGES).unwrap_or_else(|e| panic!("messages.toml: {e}"))
});

/// The catalogue, parsed on first use.
pub fn catalogue() -> &'static Catalogue {
    &CATALOGUE
}

/// Every entry, by key.
#[derive(Debug)]
pub struct Catalogue {
    messages: BTreeMap<String, Message>,
}

/// One entry: the sentence in English and Chinese.
#[derive(Debug)]
pub struct Message {
    en: Template,
    /// `None`: `zh_todo`, shown in English until translated.
    zh: Option<Template>,
    /// Placeholders one language leaves out on purpose.
    omits: Vec<String>,
}

/// A sentence split at its placeholders.
#[derive(Debug)]
struct Template(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Literal(String),
    Placeholder(String),
}

impl Catalogue {
    /// Reads the catalogue's TOML; the error names the first bad entry.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let mut messages = BTreeMap::new();
        collect(&table, "", &mut messages)?;
        Ok(Catalogue { messages })
    }

    /// The entry of `key`, if the catalogue has one.
    pub fn get(&self, key: &str) -> Option<&Message> {
        self.messages.get(key)
    }

    /// Every entry with its key, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Message)> {
        self.messages.iter().map(|(k, m)| (k.as_str(), m))
    }
}

/// Walks nested tables: a table with `en` is an entry named by its path.
fn collect(
    table: &toml::Table,
    prefix: &str,
    messages: &mut BTreeMap<String, Message>,
) -> Result<(), String> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let toml::Value::Table(inner) = value else {
            return Err(format!("`{key}` is not a table of en/zh"));
        };
        if inner.contains_key("en") {
            messages.insert(key.clone(), entry(&key, inner)?);
        } else {
            collect(inner, &key, messages)?;
        }
    }
    Ok(())
}

fn entry(key: &str, table: &toml::Table) -> Result<Message, String> {
    let text = |field: &str| -> Result<Option<&str>, String> {
        match table.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{key}.{field}` is not text")),
        }
    };
    for field in table.keys() {
        if !["en", "zh", "zh_todo", "omits"].contains(&field.as_str()) {
            return Err(format!(
                "`{key}` has `{field}`: an entry holds en, zh, zh_todo and omits"
            ));
        }
    }
    let template = |field: &str| -> Result<Option<Template>, String> {
        text(field)?
            .map(|t| Template::parse(t).map_err(|e| format!("`{key}.{field}`: {e}")))
            .transpose()
    };
    let en = template("en")?.ok_or_else(|| format!("`{key}` has no en"))?;
    let zh = template("zh")?;
    let zh_todo = match table.get("zh_todo") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(format!("`{key}.zh_todo` is not true/false")),
    };
    match (&zh, zh_todo) {
        (None, false) => return Err(format!("`{key}` has no zh (nor zh_todo = true)")),
        (Some(_), true) => return Err(format!("`{key}` has zh: remove its zh_todo")),
        _ => {}
    }
    let omits = match table.get("omits") {
        None => Vec::new(),
        Some(toml::Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("`{key}.omits` is not a list of names"))?,
        Some(_) => return Err(format!("`{key}.omits` is not a list of names")),
    };
    Ok(Message { en, zh, omits })
}

impl Message {
    /// The sentence in `lang` with `arg(name)` for each placeholder; a
    /// placeholder without an argument stays as written, `{name}`.
    pub fn render(&self, lang: Lang, arg: impl Fn(&str) -> Option<String>) -> String {
        let template = match (lang, &self.zh) {
            (Lang::Zh, Some(zh)) => zh,
            _ => &self.en,
        };
        let mut out = String::new();
        for piece in &template.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Placeholder(name) => match arg(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&format!("{{{name}}}")),
                },
            }
        }
        out
    }

    /// The placeholders of the English, and of the Chinese (`None` while
    /// it is `zh_todo`).
    pub fn placeholders(&self) -> (BTreeSet<&str>, Option<BTreeSet<&str>>) {
        (
            self.en.placeholders(),
            self.zh.as_ref().map(Template::placeholders),
        )
    }

    /// Shown in English in Chinese too, until translated.
    pub fn zh_todo(&self) -> bool {
        self.zh.is_none()
    }

    /// Placeholders one language leaves out on purpose.
    pub fn omits(&self) -> &[String] {
        &self.omits
    }

    /// The arguments that make the English `text`, placeholder by
    /// placeholder (none empty, each as short as the rest allows), if the
    /// English sentence makes it at all.
    pub fn read_en<'t>(&self, text: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let mut args = Vec::new();
        read(&self.en.0, text, &mut args).then_some(args)
    }
}

/// Whether `pieces` make `text`, with the placeholders' values in `args`.
fn read<'p, 't>(pieces: &'p [Piece], text: &'t str, args: &mut Vec<(&'p str, &'t str)>) -> bool {
    match pieces {
        [] => text.is_empty(),
        [Piece::Literal(literal), rest @ ..] => text
            .strip_prefix(literal.as_str())
            .is_some_and(|text| read(rest, text, args)),
        [Piece::Placeholder(name), rest @ ..] => {
            let ends: Vec<usize> = match rest.first() {
                None => vec![text.len()],
                Some(Piece::Literal(next)) => text
                    .match_indices(next.as_str())
                    .map(|(at, _)| at)
                    .collect(),
                Some(Piece::Placeholder(_)) => text.char_indices().map(|(at, _)| at).collect(),
            };
            for end in ends.into_iter().filter(|&end| end > 0) {
                args.push((name, &text[..end]));
                if read(rest, &text[end..], args) {
                    return true;
                }
                args.pop();
            }
            false
        }
    }
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !valid {
                        return Err(format!(
                            "`{{{name}` is not a placeholder: write {{name}}, or {{{{ for a brace"
                        ));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(name));
                }
                '}' => return Err("a lone `}`: write }} for a brace".to_string()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template(pieces))
    }

    fn placeholders(&self) -> BTreeSet<&str> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Piece::Placeholder(name) => Some(name.as_str()),
                Piece::Literal(_) => None,
            })
            .collect()
    }
}
