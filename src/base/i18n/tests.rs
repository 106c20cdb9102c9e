//! The catalogue against the code: every key `src/` names is in
//! `messages.toml` with the arguments the code gives, every entry speaks
//! both languages with the same placeholders, and every entry is used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::catalogue::MESSAGES;
use super::*;

/// One `t!(...)` in the source.
#[derive(Debug)]
struct Use {
    place: String,
    key: String,
    args: Vec<String>,
}

#[test]
fn every_key_in_src_is_in_the_catalogue_with_the_arguments_it_names() {
    let catalogue = Catalogue::parse(MESSAGES).unwrap();
    let uses = uses_in_src();
    assert!(uses.len() > 100, "only {} uses of t! found", uses.len());
    let mut problems = Vec::new();
    for u in &uses {
        let Some(message) = catalogue.get(&u.key) else {
            problems.push(format!("{}: `{}` is not in messages.toml", u.place, u.key));
            continue;
        };
        let (en, zh) = message.placeholders();
        let wanted: BTreeSet<&str> = en.iter().chain(zh.iter().flatten()).copied().collect();
        let given: BTreeSet<&str> = u.args.iter().map(String::as_str).collect();
        if given.len() != u.args.len() {
            problems.push(format!(
                "{}: `{}` is given an argument twice",
                u.place, u.key
            ));
        }
        if given != wanted {
            problems.push(format!(
                "{}: `{}` is given {:?}, its entry names {:?}",
                u.place, u.key, given, wanted
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_entry_has_both_languages_with_the_same_placeholders() {
    let catalogue = Catalogue::parse(MESSAGES).unwrap_or_else(|e| panic!("messages.toml: {e}"));
    let mut problems = Vec::new();
    let mut todo = 0;
    for (key, message) in catalogue.entries() {
        let (en, zh) = message.placeholders();
        let Some(zh) = zh else {
            todo += 1;
            continue;
        };
        let differ: BTreeSet<&str> = en.symmetric_difference(&zh).copied().collect();
        let omitted: BTreeSet<&str> = message.omits().iter().map(String::as_str).collect();
        if !differ.is_subset(&omitted) {
            problems.push(format!(
                "`{key}`: en names {en:?}, zh names {zh:?} (list in `omits` what one leaves out on purpose)"
            ));
        }
        if let Some(stale) = omitted.difference(&differ).next() {
            problems.push(format!(
                "`{key}`: omits `{stale}`, which both languages name (or neither)"
            ));
        }
    }
    let total = catalogue.entries().count();
    println!("messages.toml: {total} entries, {todo} shown in English in Chinese too (zh_todo)");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_entry_is_used() {
    let catalogue = Catalogue::parse(MESSAGES).unwrap();
    let used: BTreeSet<String> = uses_in_src().into_iter().map(|u| u.key).collect();
    let unused: Vec<&str> = catalogue
        .entries()
        .map(|(key, _)| key)
        .filter(|key| !used.contains(*key))
        .collect();
    assert!(
        unused.is_empty(),
        "{} entries of messages.toml are used nowhere in src/: {}",
        unused.len(),
        unused.join(", ")
    );
}

#[test]
fn a_text_renders_its_arguments_in_the_language_asked_for() {
    let text = t!("check.warnings", count = 3);
    assert_eq!(text.render(Lang::En), "3 warning(s)");
    assert_eq!(text.render(Lang::Zh), "3 个警告");
    let known = t!("diag.known", known = list(["a", "b"], t!("sep.list")));
    assert_eq!(known.render(Lang::En), "known: a, b");
    assert_eq!(known.render(Lang::Zh), "可选：a、b");
}

#[test]
fn templates_take_named_placeholders_and_doubled_braces() {
    let catalogue = Catalogue::parse(
        "[a.b]\nen = \"{n} of {{x}}\"\nzh = \"{n} 个 {{x}}\"\n[c]\nen = \"only\"\nzh_todo = true\n",
    )
    .unwrap();
    let b = catalogue.get("a.b").unwrap();
    assert_eq!(b.render(Lang::Zh, |_| Some("2".into())), "2 个 {x}");
    let c = catalogue.get("c").unwrap();
    assert_eq!(c.render(Lang::Zh, |_| None), "only");
    assert!(c.zh_todo());
    for broken in [
        "[a]\nen = \"x\"\n",
        "[a]\nen = \"x\"\nzh = \"y\"\nzh_todo = true\n",
        "[a]\nen = \"{Bad name}\"\nzh = \"y\"\n",
        "[a]\nen = \"x }\"\nzh = \"y\"\n",
        "[a]\nen = \"x\"\nzh = \"y\"\nnote = \"z\"\n",
    ] {
        assert!(Catalogue::parse(broken).is_err(), "{broken}");
    }
}

#[test]
fn accept_language_picks_the_preferred_of_zh_and_en() {
    assert_eq!(
        Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
        Some(Lang::Zh)
    );
    assert_eq!(
        Lang::from_accept_language("fr-FR, en-GB;q=0.7, zh;q=0.5"),
        Some(Lang::En)
    );
    assert_eq!(
        Lang::from_accept_language("en;q=0.2, zh-TW;q=0.4"),
        Some(Lang::Zh)
    );
    assert_eq!(Lang::from_accept_language("de, *;q=0.1"), None);
    assert_eq!(Lang::from_accept_language(""), None);
}

/// Every `t!("key", args...)` in `src/`, outside comments.
fn uses_in_src() -> Vec<Use> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut uses = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = without_comments(&text);
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        let chars: Vec<char> = code.chars().collect();
        let mut i = 0;
        while let Some(at) = find_macro(&chars, i) {
            i = at + 3;
            let line = chars[..at].iter().filter(|&&c| c == '\n').count() + 1;
            if let Some((key, args)) = call(&chars[i..]) {
                uses.push(Use {
                    place: format!("src/{relative}:{line}"),
                    key,
                    args,
                });
            }
        }
    }
    uses
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The next `t!(` at or after `from` that is not the end of a longer name.
fn find_macro(chars: &[char], from: usize) -> Option<usize> {
    let mut state = Lexer::default();
    (from..chars.len().saturating_sub(2)).find(|&i| {
        let code = state.step(chars, i);
        code && chars[i] == 't'
            && chars[i + 1] == '!'
            && chars[i + 2] == '('
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
    })
}

/// The key and argument names of a call, from just after `t!(`: `None`
/// when it does not start with a string (the macro's own `@value` arms).
fn call(chars: &[char]) -> Option<(String, Vec<String>)> {
    let start = chars.iter().position(|c| !c.is_whitespace())?;
    if chars[start] != '"' {
        return None;
    }
    let end = start + 1 + chars[start + 1..].iter().position(|&c| c == '"')?;
    let key: String = chars[start + 1..end].iter().collect();
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut lexer = Lexer::default();
    for i in end + 1..chars.len() {
        let code = lexer.step(chars, i);
        let c = chars[i];
        if code {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth > 0 => depth -= 1,
                ')' => {
                    args.push(std::mem::take(&mut current));
                    break;
                }
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
        }
        current.push(c);
    }
    let names = args
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            let name: String = a
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let rest = a[name.len()..].trim_start();
            let named = rest.is_empty() || (rest.starts_with('=') && !rest.starts_with("=="));
            if name.is_empty() || !named {
                format!("<not `name` or `name = value`: {a}>")
            } else {
                name
            }
        })
        .collect();
    Some((key, names))
}

/// Where code is, as opposed to string and char literals.
#[derive(Default)]
struct Lexer {
    /// Inside a string until this index (exclusive).
    until: usize,
}

impl Lexer {
    /// Whether `chars[i]` is code (not inside a literal); steps over
    /// literals as they start.
    fn step(&mut self, chars: &[char], i: usize) -> bool {
        if i < self.until {
            return false;
        }
        let c = chars[i];
        if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            self.until = j + 1;
            return false;
        }
        if c == 'r'
            && matches!(chars.get(i + 1), Some('"' | '#'))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let mut j = i + 2 + hashes;
                while j < chars.len() && !chars[j..].starts_with(&close) {
                    j += 1;
                }
                self.until = j + close.len();
                return false;
            }
        }
        if c == '\'' {
            // A char literal ('a', '\n', '"'), not a lifetime ('a).
            let end = if chars.get(i + 1) == Some(&'\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                self.until = end + 1;
                return false;
            }
        }
        true
    }
}

/// The text with `//` and `/* */` comments blanked (strings kept).
fn without_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut lexer = Lexer::default();
    let mut i = 0;
    while i < chars.len() {
        let code = lexer.step(&chars, i);
        if code && chars[i] == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if code && chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(if chars[i] == '\n' { '\n' } else { ' ' });
                i += 1;
            }
            out.push_str("  ");
            i += 2;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[test]
fn the_scanner_reads_keys_and_argument_names() {
    let code: Vec<char> =
        r#"let a = format!("x"); t!("a.b", n, m = f(1, (2, 3)), s = "),"); t!(@value x)"#
            .chars()
            .collect();
    let at = find_macro(&code, 0).unwrap();
    assert_eq!(
        call(&code[at + 3..]),
        Some(("a.b".to_string(), vec!["n".into(), "m".into(), "s".into()]))
    );
    let next = find_macro(&code, at + 3).unwrap();
    assert_eq!(call(&code[next + 3..]), None);
}
