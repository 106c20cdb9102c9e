//! Message templates: `templates/<channel>/<name>.txt`, rendered with
//! minijinja when a rule fires.
//!
//! Email templates may add `<name>.subject.txt` and `<name>.html` (HTML is
//! auto-escaped). Every variable a template uses is checked when the set is
//! loaded, against the facts and the `customer`, `clinic` and `rule` objects,
//! so a typo is an error in `recall check`, not a broken message at 09:00.
//! Templates cannot read files or the environment: no loader is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use minijinja::value::{Object, Value};
use minijinja::{Environment, UndefinedBehavior};

use crate::base::content::Content;
use crate::base::diag::{Checked, Diagnostic, Report};
use crate::base::i18n::{list, t};
use crate::base::limits;
use crate::base::model::{Channel, Gender};
use crate::base::perm;
use crate::facts::{self, Facts};

/// Attributes of the objects templates may use besides the facts.
pub const OBJECTS: &[(&str, &[&str])] = &[
    (
        "customer",
        &["name", "salutation", "surname", "external_id"],
    ),
    ("clinic", &["name", "phone"]),
    ("rule", &["id", "description"]),
];

/// The parts of one template.
#[derive(Debug, Clone, Default)]
struct Parts {
    body: String,
    subject: Option<String>,
    html: Option<String>,
    /// Provider template parameters: (parameter name, template key).
    params: Vec<(String, String)>,
}

/// All templates, loaded and checked.
#[derive(Debug)]
pub struct TemplateSet {
    env: Environment<'static>,
    index: BTreeMap<(Channel, String), Parts>,
    /// Every template file's text by its key, to tell what a reload changed.
    sources: BTreeMap<String, String>,
}

/// Everything a template can see: the facts as top-level variables, and the
/// `customer`, `clinic` and `rule` objects. Values are looked up when the
/// template asks for them, so rendering builds no maps.
#[derive(Debug, Clone)]
pub struct MessageContext {
    pub facts: Arc<Facts>,
    pub customer: Arc<CustomerVars>,
    pub clinic: Arc<ClinicVars>,
    pub rule: Arc<RuleVars>,
}

impl Object for MessageContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "customer" => Some(Value::from_dyn_object(self.customer.clone())),
            "clinic" => Some(Value::from_dyn_object(self.clinic.clone())),
            "rule" => Some(Value::from_dyn_object(self.rule.clone())),
            name => self.facts.get(name).map(|v| v.to_template()),
        }
    }
}

/// `customer.*` in templates.
#[derive(Debug, Clone)]
pub struct CustomerVars {
    pub name: String,
    /// "王女士", "李先生", or the name itself when that cannot be formed.
    pub salutation: String,
    pub surname: String,
    pub external_id: String,
}

impl CustomerVars {
    pub fn new(name: &str, external_id: &str, gender: Option<Gender>) -> Self {
        let surname = surname(name);
        let salutation = match (gender, surname.is_empty(), is_chinese(name)) {
            (Some(Gender::Female), false, true) => format!("{surname}女士"),
            (Some(Gender::Male), false, true) => format!("{surname}先生"),
            _ => name.to_string(),
        };
        CustomerVars {
            name: name.to_string(),
            salutation,
            surname,
            external_id: external_id.to_string(),
        }
    }
}

impl Object for CustomerVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "name" => self.name.as_str(),
            "salutation" => self.salutation.as_str(),
            "surname" => self.surname.as_str(),
            "external_id" => self.external_id.as_str(),
            _ => return None,
        }))
    }
}

/// `clinic.*` in templates.
#[derive(Debug, Clone)]
pub struct ClinicVars {
    pub name: String,
    pub phone: String,
}

impl Object for ClinicVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "name" => self.name.as_str(),
            "phone" => self.phone.as_str(),
            _ => return None,
        }))
    }
}

/// `rule.*` in templates.
#[derive(Debug, Clone)]
pub struct RuleVars {
    pub id: String,
    pub description: String,
}

impl Object for RuleVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "id" => self.id.as_str(),
            "description" => self.description.as_str(),
            _ => return None,
        }))
    }
}

/// Chinese compound surnames (复姓) common enough to matter.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容", "尉迟", "长孙", "宇文", "司徒",
    "夏侯", "公孙", "独孤", "南宫", "西门", "轩辕",
];

fn is_chinese(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// The family name: a compound surname, the first character of a Chinese
/// name, or the last word of a Western one.
fn surname(name: &str) -> String {
    let name = name.trim();
    if is_chinese(name) {
        if let Some(compound) = COMPOUND_SURNAMES.iter().find(|s| name.starts_with(**s)) {
            return compound.to_string();
        }
        return name.chars().next().map(String::from).unwrap_or_default();
    }
    name.split_whitespace().last().unwrap_or("").to_string()
}

/// A template failed to render (a value was missing or of the wrong kind).
#[derive(Debug, thiserror::Error)]
#[error("template `{template}` failed to render: {source}")]
pub struct RenderError {
    pub template: String,
    #[source]
    pub source: minijinja::Error,
}

impl TemplateSet {
    /// Whether `templates/<channel>/<name>.txt` exists.
    pub fn has(&self, channel: Channel, name: &str) -> bool {
        self.index.contains_key(&(channel, name.to_string()))
    }

    /// Template names for a channel, for suggestions.
    pub fn names(&self, channel: Channel) -> Vec<&str> {
        self.index
            .keys()
            .filter(|(c, _)| *c == channel)
            .map(|(_, n)| n.as_str())
            .collect()
    }

    /// Every template file's text by its key (`sms/warning_offer.txt`).
    pub fn sources(&self) -> &BTreeMap<String, String> {
        &self.sources
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Renders a template into a message's content. Missing templates and
    /// values are errors, never silently empty text.
    pub fn render(
        &self,
        channel: Channel,
        name: &str,
        context: &MessageContext,
    ) -> Result<Content, RenderError> {
        let context = Value::from_object(context.clone());
        let parts = self
            .index
            .get(&(channel, name.to_string()))
            .ok_or_else(|| RenderError {
                template: format!("{channel}/{name}"),
                source: minijinja::Error::new(
                    minijinja::ErrorKind::TemplateNotFound,
                    "no such template",
                ),
            })?;
        let render = |template: &str| -> Result<String, RenderError> {
            self.env
                .get_template(template)
                .and_then(|t| t.render(&context))
                .map(|text| text.trim().to_string())
                .map_err(|source| RenderError {
                    template: template.to_string(),
                    source,
                })
        };
        let params = if parts.params.is_empty() {
            None
        } else {
            let mut values = serde_json::Map::new();
            for (name, key) in &parts.params {
                values.insert(name.clone(), serde_json::Value::String(render(key)?));
            }
            Some(serde_json::Value::Object(values).to_string())
        };
        Ok(Content {
            body: render(&parts.body)?,
            subject: parts.subject.as_deref().map(render).transpose()?,
            html: parts.html.as_deref().map(render).transpose()?,
            params,
        })
    }
}

/// Loads every template under `dir` and checks its syntax and variables.
pub fn load(dir: &Path) -> Checked<TemplateSet> {
    let mut report = Report::default();
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let mut index: BTreeMap<(Channel, String), Parts> = BTreeMap::new();
    let mut sources = BTreeMap::new();

    let channel_dirs = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report.push(
                Diagnostic::error(dir, None, t!("templates.read_folder", error = e))
                    .hint(t!("templates.read_folder_hint")),
            );
            return Err(report);
        }
    };
    report.extend(refuse_writable(dir));
    for channel_dir in channel_dirs.into_iter().filter(|p| p.is_dir()) {
        let dir_name = channel_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let channel = match dir_name.parse::<Channel>() {
            Ok(channel) => channel,
            Err(_) => {
                report.push(
                    Diagnostic::error(
                        &channel_dir,
                        None,
                        t!("templates.not_a_channel", name = &dir_name),
                    )
                    .suggest(&dir_name, Channel::names())
                    .hint(t!("templates.not_a_channel_hint")),
                );
                continue;
            }
        };
        let files = match sorted_entries(&channel_dir) {
            Ok(files) => files,
            Err(e) => {
                report.push(Diagnostic::error(
                    &channel_dir,
                    None,
                    t!("diag.cannot_read", error = e),
                ));
                continue;
            }
        };
        report.extend(refuse_writable(&channel_dir));
        for file in files.into_iter().filter(|p| p.is_file()) {
            if let Some(refused) = perm::others_can_write(&file) {
                report.push(refused);
                continue;
            }
            let file_name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let (name, part) = if let Some(name) = file_name.strip_suffix(".params.toml") {
                (name, Part::Params)
            } else if let Some(name) = file_name.strip_suffix(".subject.txt") {
                (name, Part::Subject)
            } else if let Some(name) = file_name.strip_suffix(".txt") {
                (name, Part::Body)
            } else if let Some(name) = file_name.strip_suffix(".html") {
                (name, Part::Html)
            } else {
                report.push(Diagnostic::warning(
                    &file,
                    None,
                    t!("templates.ignored_name"),
                ));
                continue;
            };
            if matches!(part, Part::Subject | Part::Html) && channel != Channel::Email {
                report.push(Diagnostic::warning(
                    &file,
                    None,
                    t!("templates.ignored_part", channel),
                ));
                continue;
            }
            let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
            if bytes > limits::TEMPLATE_BYTES {
                report.push(
                    Diagnostic::error(
                        &file,
                        None,
                        t!(
                            "templates.too_big",
                            size = limits::size(bytes),
                            limit = limits::size(limits::TEMPLATE_BYTES)
                        ),
                    )
                    .hint(t!("templates.too_big_hint")),
                );
                continue;
            }
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => {
                    report.push(Diagnostic::error(
                        &file,
                        None,
                        t!("diag.cannot_read", error = e),
                    ));
                    continue;
                }
            };
            report.add_source(&file, &text);
            let key = format!("{channel}/{file_name}");
            sources.insert(key.clone(), text.clone());
            if part == Part::Params {
                let params = load_params(&mut env, &key, &file, &text, &mut report);
                index.entry((channel, name.to_string())).or_default().params = params;
                continue;
            }
            if let Err(e) = env.add_template_owned(key.clone(), text.clone()) {
                report.push(syntax_error(&file, &e, 0));
                continue;
            }
            check_variables(&env, &key, &file, &text, &mut report);
            check_filters(&env, &file, &text, 0, &mut report);
            let parts = index.entry((channel, name.to_string())).or_default();
            match part {
                Part::Body => parts.body = key,
                Part::Subject => parts.subject = Some(key),
                Part::Html => parts.html = Some(key),
                Part::Params => {}
            }
        }
    }
    index.retain(|(channel, name), parts| {
        if parts.body.is_empty() {
            report.push(Diagnostic::error(
                dir.join(channel.as_str()),
                None,
                t!("templates.no_body", name),
            ));
            false
        } else {
            true
        }
    });
    if report.has_errors() {
        Err(report)
    } else {
        Ok((
            TemplateSet {
                env,
                index,
                sources,
            },
            report,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Body,
    Subject,
    Html,
    Params,
}

/// `<name>.params.toml`: one template per provider parameter, e.g.
/// `name = "{{ customer.salutation }}"`. Returns (parameter, template key).
fn load_params(
    env: &mut Environment<'static>,
    key: &str,
    file: &Path,
    text: &str,
    report: &mut Report,
) -> Vec<(String, String)> {
    let table: BTreeMap<String, toml::Spanned<String>> = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            report.push(
                crate::base::diag::from_toml_error(file, &e).hint(t!("templates.params_hint")),
            );
            return Vec::new();
        }
    };
    let mut params = Vec::new();
    for (param, value) in table {
        let param_key = format!("{key}#{param}");
        // Positions inside the value: after its opening quote.
        let offset = value.span().start + 1;
        if let Err(e) = env.add_template_owned(param_key.clone(), value.get_ref().clone()) {
            report.push(syntax_error(file, &e, offset));
            continue;
        }
        check_variables(env, &param_key, file, text, report);
        check_filters(env, file, value.get_ref(), offset, report);
        params.push((param, param_key));
    }
    params
}

/// The error for a templates folder others can write, as a report.
fn refuse_writable(dir: &Path) -> Report {
    let mut report = Report::default();
    if let Some(refused) = perm::others_can_write(dir) {
        report.push(refused);
    }
    report
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn syntax_error(file: &Path, error: &minijinja::Error, offset: usize) -> Diagnostic {
    let message = error.detail().unwrap_or("syntax error").to_string();
    let span = error.range().map(|r| r.start + offset..r.end + offset);
    Diagnostic::error(file, span, t!("templates.syntax", message)).hint(t!("templates.syntax_hint"))
}

/// Every variable the template uses must be a fact or a known object attribute.
fn check_variables(
    env: &Environment<'_>,
    key: &str,
    file: &Path,
    file_text: &str,
    report: &mut Report,
) {
    let Ok(template) = env.get_template(key) else {
        return;
    };
    let source = file_text;
    let used: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
    let tops: Vec<&str> = facts::names()
        .chain(OBJECTS.iter().map(|(o, _)| *o))
        .collect();
    for variable in &used {
        let mut segments = variable.split('.');
        let top = segments.next().unwrap_or_default();
        let span = find_word(source, top);
        match OBJECTS.iter().find(|(o, _)| *o == top) {
            Some((object, attributes)) => {
                if let Some(attribute) = segments.next()
                    && !attributes.contains(&attribute)
                {
                    report.push(
                        Diagnostic::error(
                            file,
                            find_word(source, attribute),
                            t!("templates.no_attribute", object, attribute),
                        )
                        .suggest(attribute, attributes.iter().copied()),
                    );
                }
            }
            None if facts::lookup(top).is_some() => {}
            None => report.push(
                Diagnostic::error(file, span, t!("templates.unknown_variable", name = top))
                    .suggest(top, tops.iter().copied())
                    .hint(t!("templates.unknown_variable_hint")),
            ),
        }
    }
}

/// Filters minijinja has built in, for suggestions.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "default",
    "dictsort",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
];

/// Tests minijinja has built in, for suggestions.
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Names from other template languages, and what minijinja calls them.
const ALIASES: &[(&str, &str)] = &[
    ("upcase", "upper"),
    ("uppercase", "upper"),
    ("downcase", "lower"),
    ("lowercase", "lower"),
    ("strip", "trim"),
    ("size", "length"),
    ("len", "length"),
    ("json", "tojson"),
    ("truncatewords", "truncate"),
];

/// Every `{{ x | filter }}`, `{% filter name %}` and `x is test` must name a
/// filter or test the environment has: an unknown one would fail every
/// message at tick time. `offset` is where `text` starts in the file.
fn check_filters(
    env: &Environment<'_>,
    file: &Path,
    text: &str,
    offset: usize,
    report: &mut Report,
) {
    for (kind, name, span) in filter_and_test_names(text) {
        let probe = match kind {
            NameKind::Filter => format!("{{{{ 1 | {name} }}}}"),
            NameKind::Test => format!("{{{{ 1 is {name} }}}}"),
        };
        let unknown = match env.render_str(&probe, ()) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                minijinja::ErrorKind::UnknownFilter | minijinja::ErrorKind::UnknownTest
            ),
        };
        if !unknown {
            continue;
        }
        let (word, known) = match kind {
            NameKind::Filter => (t!("templates.filter"), FILTERS),
            NameKind::Test => (t!("templates.test"), TESTS),
        };
        let span = Some(span.start + offset..span.end + offset);
        let mut diagnostic = Diagnostic::error(
            file,
            span,
            t!("templates.unknown_filter", kind = word, name = &name),
        );
        let alias = ALIASES
            .iter()
            .find(|(from, _)| *from == name)
            .map(|(_, to)| *to)
            .filter(|to| known.contains(to));
        diagnostic = match alias {
            Some(best) => diagnostic.hint(t!("diag.did_you_mean", best)),
            None => diagnostic.suggest(&name, known.iter().copied()),
        };
        if diagnostic.hints.is_empty() {
            let known = list(known.iter().copied(), t!("sep.list"));
            diagnostic = diagnostic.hint(match kind {
                NameKind::Filter => t!("templates.known_filters", known),
                NameKind::Test => t!("templates.known_tests", known),
            });
        }
        report.push(diagnostic);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Filter,
    Test,
}

/// The filter and test names a template uses, with their byte spans:
/// after `|` and after `is` / `is not` inside `{{ }}` and `{% %}`, and the
/// name of a `{% filter %}` block. Quoted text and comments are skipped.
fn filter_and_test_names(text: &str) -> Vec<(NameKind, String, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let close = match (bytes[i], bytes[i + 1]) {
            (b'{', b'{') => "}}",
            (b'{', b'%') => "%}",
            (b'{', b'#') => {
                i = text[i..].find("#}").map_or(bytes.len(), |end| i + end + 2);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let start = i + 2;
        // Words and their spans, quoted text left out.
        let mut tokens: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        let mut j = start;
        while j < bytes.len() && !text[j..].starts_with(close) {
            let c = bytes[j];
            if c == b'"' || c == b'\'' {
                j += 1;
                while j < bytes.len() && bytes[j] != c {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                j += 1;
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let word_start = j;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                tokens.push((text[word_start..j].to_string(), word_start..j));
            } else {
                if c == b'|' {
                    tokens.push(("|".to_string(), j..j + 1));
                } else if !c.is_ascii_whitespace() {
                    tokens.push((String::from_utf8_lossy(&[c]).to_string(), j..j + 1));
                }
                j += 1;
            }
        }
        for (k, (token, _)) in tokens.iter().enumerate() {
            let next = |n: usize| tokens.get(k + n);
            let word = |t: &&(String, std::ops::Range<usize>)| {
                t.0.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            };
            if token == "|" || (k == 0 && close == "%}" && token == "filter") {
                if let Some(name) = next(1).filter(word) {
                    found.push((NameKind::Filter, name.0.clone(), name.1.clone()));
                }
            } else if token == "is" {
                let name = match next(1) {
                    Some(t) if t.0 == "not" => next(2),
                    other => other,
                };
                if let Some(name) = name.filter(word) {
                    found.push((NameKind::Test, name.0.clone(), name.1.clone()));
                }
            }
        }
        i = j + 2;
    }
    found
}

/// Byte span of the first whole-word occurrence of `word` in `text`.
pub fn find_word(text: &str, word: &str) -> Option<std::ops::Range<usize>> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(pos) = text[from..].find(word) {
        let start = from + pos;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
            return Some(start..end);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::store::record::CustomerRecord;

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn context(facts: Facts, customer: CustomerVars) -> MessageContext {
        MessageContext {
            facts: Arc::new(facts),
            customer: Arc::new(customer),
            clinic: Arc::new(ClinicVars {
                name: "美丽诊所".into(),
                phone: "400-100-2000".into(),
            }),
            rule: Arc::new(RuleVars {
                id: "r1".into(),
                description: "d".into(),
            }),
        }
    }

    #[test]
    fn every_listed_object_attribute_resolves() {
        let ctx = Value::from_object(context(
            Facts::derive(&CustomerRecord::default(), 0, chrono_tz::UTC),
            CustomerVars::new("王丽", "C1", None),
        ));
        for (object, attributes) in OBJECTS {
            let object = ctx.get_attr(object).unwrap();
            for attribute in *attributes {
                assert!(
                    !object.get_attr(attribute).unwrap().is_undefined(),
                    "{attribute}"
                );
            }
        }
    }

    #[test]
    fn salutations_follow_gender_and_compound_surnames() {
        let v = CustomerVars::new("王丽", "C1", Some(Gender::Female));
        assert_eq!(v.salutation, "王女士");
        let v = CustomerVars::new("欧阳锋", "C2", Some(Gender::Male));
        assert_eq!(v.salutation, "欧阳先生");
        let v = CustomerVars::new("李雷", "C3", None);
        assert_eq!(v.salutation, "李雷");
        let v = CustomerVars::new("Anna Smith", "C4", Some(Gender::Female));
        assert_eq!(
            (v.salutation.as_str(), v.surname.as_str()),
            ("Anna Smith", "Smith")
        );
    }

    #[test]
    fn renders_facts_customer_and_clinic() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sms/care.txt",
            "{{ customer.salutation }}您好，距上次到院{{ days_since_last_visit }}天。{{ clinic.name }} {{ clinic.phone }}\n",
        );
        let (set, _) = load(dir.path()).unwrap();
        let mut record = CustomerRecord::default();
        record.visits.count = 1;
        record.visits.last_at = Some(0);
        let facts = Facts::derive(&record, 86_400 * 3, chrono_tz::UTC);
        let customer = CustomerVars::new("王丽", "C1", Some(Gender::Female));
        let rendered = set
            .render(Channel::Sms, "care", &context(facts, customer))
            .unwrap();
        assert_eq!(
            rendered.body,
            "王女士您好，距上次到院3天。美丽诊所 400-100-2000"
        );
        assert_eq!(rendered.subject, None);
    }

    #[test]
    fn unknown_variables_are_errors_with_a_suggestion_and_a_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "wechat/a.txt",
            "hello\n{{ days_since_last_vist }} {{ customer.nmae }}\n",
        );
        let report = load(dir.path()).unwrap_err();
        let lines = report.to_lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines.iter().any(|l| l
                .contains("a.txt:2:4: error: unknown template variable `days_since_last_vist`")
                && l.contains("did you mean `days_since_last_visit`?")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("`customer` has no `nmae`")
                    && l.contains("did you mean `name`?")),
            "{lines:#?}"
        );
    }

    #[test]
    fn unknown_filters_and_tests_are_errors_at_load() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sms/a.txt",
            "您好\n请致电 {{ clinic.phone | upcase }}，{{ 'a|b' | length }}{# x | nope #}\n{% if visit_count is evn %}x{% endif %}{% filter trim %} y {% endfilter %}{{ clinic.name | default('x') | upper }}\n",
        );
        let report = load(dir.path()).unwrap_err();
        let lines = report.to_lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].contains("a.txt:2:23: error: unknown template filter `upcase`")
                && lines[0].contains("did you mean `upper`?"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("a.txt:3:22: error: unknown template test `evn`")
                && lines[1].contains("did you mean `even`?"),
            "{lines:#?}"
        );
        let zh = report.render_in(crate::base::diag::Lang::Zh, false);
        assert!(zh.contains("未知的模板过滤器 `upcase`"), "{zh}");

        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sms/a.txt",
            "{{ clinic.phone | upper }}{% if pool is not none %}{{ pool | title }}{% endif %}",
        );
        write(
            dir.path(),
            "sms/a.params.toml",
            "phone = \"{{ clinic.phone | shout }}\"\n",
        );
        let report = load(dir.path()).unwrap_err();
        let lines = report.to_lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("a.params.toml:1:28: error: unknown template filter `shout`"),
            "{lines:#?}"
        );
    }

    #[test]
    fn load_warnings_and_errors_speak_chinese() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sms/a.txt", "hi");
        write(dir.path(), "sms/notes.md", "x");
        write(dir.path(), "sms/b.subject.txt", "x");
        write(dir.path(), "email/c.subject.txt", "x");
        let report = load(dir.path()).unwrap_err();
        let zh = report.render_in(crate::base::diag::Lang::Zh, false);
        assert!(zh.contains("已忽略：模板文件名以 .txt"), "{zh}");
        assert!(
            zh.contains("已忽略：只有邮件模板才有标题或 HTML 部分"),
            "{zh}"
        );
        assert!(
            zh.contains("模板 `c` 有标题、HTML 或参数部分，但没有正文 `c.txt`"),
            "{zh}"
        );
        assert!(!zh.contains("ignored:"), "{zh}");
    }

    #[test]
    fn syntax_errors_point_at_the_template() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sms/a.txt", "{% if visit_count > 1 %}hi\n");
        let lines = load(dir.path()).unwrap_err().to_lines();
        assert!(
            lines[0].contains("sms/a.txt") && lines[0].contains("template syntax"),
            "{lines:#?}"
        );
    }

    #[test]
    fn email_parts_and_html_escaping() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "email/back.txt", "{{ customer.name }}");
        write(
            dir.path(),
            "email/back.subject.txt",
            "想念您，{{ customer.salutation }}",
        );
        write(dir.path(), "email/back.html", "<p>{{ customer.name }}</p>");
        let (set, _) = load(dir.path()).unwrap();
        let facts = Facts::derive(&CustomerRecord::default(), 0, chrono_tz::UTC);
        let customer = CustomerVars::new("<b>王丽</b>", "C1", None);
        let rendered = set
            .render(Channel::Email, "back", &context(facts, customer))
            .unwrap();
        assert_eq!(
            rendered.html.as_deref(),
            Some("<p>&lt;b&gt;王丽&lt;&#x2f;b&gt;</p>")
        );
        assert_eq!(rendered.body, "<b>王丽</b>");
        assert!(rendered.subject.is_some());
    }

    #[test]
    fn provider_parameters_render_to_a_json_object() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sms/back.txt", "{{ customer.salutation }}您好");
        write(
            dir.path(),
            "sms/back.params.toml",
            "name = \"{{ customer.salutation }}\"\ndays = \"{{ days_since_last_visit }}\"\n",
        );
        let (set, _) = load(dir.path()).unwrap();
        let mut record = CustomerRecord::default();
        record.visits.last_at = Some(0);
        let facts = Facts::derive(&record, 86_400 * 2, chrono_tz::UTC);
        let customer = CustomerVars::new("王丽", "C1", Some(Gender::Female));
        let rendered = set
            .render(Channel::Sms, "back", &context(facts, customer))
            .unwrap();
        let params: serde_json::Value =
            serde_json::from_str(rendered.params.as_deref().unwrap()).unwrap();
        assert_eq!(params, serde_json::json!({"days": "2", "name": "王女士"}));
    }

    #[test]
    fn unknown_variables_in_parameters_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sms/back.txt", "x");
        write(
            dir.path(),
            "sms/back.params.toml",
            "name = \"{{ customer.nam }}\"\n",
        );
        let lines = load(dir.path()).unwrap_err().to_lines();
        assert!(
            lines[0].contains("back.params.toml") && lines[0].contains("did you mean `name`?"),
            "{lines:#?}"
        );
    }

    #[test]
    fn unknown_channel_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "weixin/a.txt", "x");
        let lines = load(dir.path()).unwrap_err().to_lines();
        assert!(lines[0].contains("`weixin` is not a channel"), "{lines:#?}");
    }

    #[test]
    fn templates_cannot_include_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sms/a.txt", "{% include '/etc/passwd' %}");
        let (set, _) = load(dir.path()).unwrap();
        let facts = Facts::derive(&CustomerRecord::default(), 0, chrono_tz::UTC);
        let customer = CustomerVars::new("王丽", "C1", None);
        assert!(
            set.render(Channel::Sms, "a", &context(facts, customer))
                .is_err()
        );
    }
}
