//! [`Text`]: a catalogue key and its arguments, rendered when someone
//! reads it, in their language; and [`t!`], the one way code names a key.

use super::{Lang, catalogue};

/// A sentence of the catalogue with its arguments, not yet in a language.
///
/// Made by [`t!`]; [`Text::render`] says it in a language. It has no
/// `Display`: whoever shows it says in which language.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    key: &'static str,
    args: Vec<(&'static str, Arg)>,
}

/// The value of a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Shown as it is, in every language (a name, a number, a path).
    Plain(String),
    /// Another sentence, rendered in the same language.
    Text(Text),
    /// Items joined with a separator sentence (`, ` or `、`).
    List(Vec<Arg>, Text),
}

/// What a placeholder can be given: anything shown as it is, a [`Text`],
/// or an [`Arg`] (a [`list`]).
pub trait IntoArg {
    fn into_arg(self) -> Arg;
}

impl<T: std::fmt::Display> IntoArg for T {
    fn into_arg(self) -> Arg {
        Arg::Plain(self.to_string())
    }
}

impl IntoArg for Text {
    fn into_arg(self) -> Arg {
        Arg::Text(self)
    }
}

impl IntoArg for Arg {
    fn into_arg(self) -> Arg {
        self
    }
}

/// Items joined by `separator` (a key such as `t!("sep.list")`) in the
/// reader's language.
pub fn list<A: IntoArg>(items: impl IntoIterator<Item = A>, separator: Text) -> Arg {
    Arg::List(
        items.into_iter().map(IntoArg::into_arg).collect(),
        separator,
    )
}

impl Text {
    #[doc(hidden)]
    pub fn __new(key: &'static str) -> Text {
        Text {
            key,
            args: Vec::new(),
        }
    }

    #[doc(hidden)]
    pub fn __arg(mut self, name: &'static str, value: impl IntoArg) -> Text {
        self.args.push((name, value.into_arg()));
        self
    }

    /// The catalogue key (an HTTP error body's `code`, say).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The sentence in `lang` (in English while its entry is `zh_todo`).
    /// A key the catalogue lacks (the catalogue test fails on it first)
    /// shows as the key.
    pub fn render(&self, lang: Lang) -> String {
        let Some(message) = catalogue().get(self.key) else {
            return self.key.to_string();
        };
        // A sentence not yet translated is English through and through,
        // its arguments (a list's commas, a nested sentence) included.
        let lang = if message.zh_todo() { Lang::En } else { lang };
        message.render(lang, |name| {
            self.args
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| value.render(lang))
        })
    }
}

/// The sentence of one of `keys` that a stored English text is (a reason
/// written in the database as every version wrote it), with its arguments:
/// each one is itself read back through `keys` when it is one of them (a
/// channel, a nested reason), else shown as it is. `None` when no key's
/// English makes the text.
pub fn read_back(keys: &[&'static str], stored: &str) -> Option<Text> {
    keys.iter().find_map(|&key| {
        let args = catalogue().get(key)?.read_en(stored)?;
        let mut text = Text::__new(key);
        for (name, value) in args {
            // A value as long as the whole has no literal around it: reading
            // it back again would never end.
            let arg = match (value.len() < stored.len())
                .then(|| read_back(keys, value))
                .flatten()
            {
                Some(inner) => Arg::Text(inner),
                None => Arg::Plain(value.to_string()),
            };
            text.args.push((name, arg));
        }
        Some(text)
    })
}

impl Arg {
    fn render(&self, lang: Lang) -> String {
        match self {
            Arg::Plain(text) => text.clone(),
            Arg::Text(text) => text.render(lang),
            Arg::List(items, separator) => {
                let items: Vec<String> = items.iter().map(|item| item.render(lang)).collect();
                items.join(&separator.render(lang))
            }
        }
    }
}

/// A [`Text`]: `t!("check.warnings", count)` or `t!("check.warnings",
/// count = report.warnings())`. The key is a literal, so the catalogue
/// test finds every key used, with the names of its arguments.
macro_rules! t {
    (@value $name:ident) => { $name };
    (@value $name:ident $value:expr) => { $value };
    ($key:literal $(, $name:ident $(= $value:expr)?)* $(,)?) => {
        $crate::base::i18n::Text::__new($key)
            $(.__arg(stringify!($name), $crate::base::i18n::t!(@value $name $($value)?)))*
    };
}
pub(crate) use t;
