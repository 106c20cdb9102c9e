//! Checking one rule as written ([`RawRule`]) and compiling it into a
//! [`Rule`]: its id, pools, condition (compiled once into a CEL program,
//! then type-checked), options and actions, each checked by its own step.
//! Every problem goes into the report with its position.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use cel::common::ast::Expr;
use cel::{Env, IdedExpr};
use toml::Spanned;

use super::file::{self, RawRule};
use super::{
    Action, Assign, Condition, DEFAULT_ATTRIBUTION_DAYS, Origin, Rule, Stale, typecheck, values,
};
use crate::base::diag::{Diagnostic, Report};
use crate::base::i18n::{Text, list, t};
use crate::base::limits;
use crate::base::model::{Channel, Pool};
use crate::facts;
use crate::templates::TemplateSet;

pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) templates: Option<&'a TemplateSet>,
}

impl Checker<'_> {
    fn error<T>(&self, at: &Spanned<T>, message: Text) -> Diagnostic {
        Diagnostic::error(self.path, Some(at.span()), message)
    }

    /// Checks one rule as written and compiles it; `None` if it has errors
    /// (each is in `report`, in the order of the rule's keys).
    pub(super) fn compile(
        &self,
        raw: RawRule,
        line: usize,
        env: &Env,
        report: &mut Report,
    ) -> Option<Rule> {
        let errors_before = report.errors();
        let id = self.id(&raw, report);
        let from = self.from(&raw, report);
        let to = self.to(&raw, &from, report);
        let condition = self.condition(&raw.when, env, report);
        let cooldown_days = self.cooldown_days(&raw, report);
        let holdout = self.holdout(&raw, report);
        let attribution_days = self.attribution_days(&raw, report);
        let actions = self.actions(&raw, report);
        self.check_it_does_something(&raw, &id, report);

        if report.errors() > errors_before {
            return None;
        }
        Some(Rule {
            id,
            description: raw.description,
            from,
            to,
            priority: raw.priority,
            condition: condition?,
            cooldown_days,
            holdout,
            attribution_days,
            enabled: raw.enabled,
            actions,
            origin: Origin {
                file: self.path.to_path_buf(),
                line,
                id_span: raw.id.span(),
            },
        })
    }

    /// The rule's id: letters, digits, `_` or `-`.
    fn id(&self, raw: &RawRule, report: &mut Report) -> String {
        let id = raw.id.get_ref().trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            report.push(
                self.error(&raw.id, t!("rules.id.bad", id = &id))
                    .hint(t!("rules.id.bad_hint")),
            );
        }
        id
    }

    /// The pools the rule applies to: at least one, each known, none twice.
    fn from(&self, raw: &RawRule, report: &mut Report) -> Vec<Pool> {
        let mut from = Vec::new();
        let pools = raw.from.get_ref().items(raw.from.span());
        if pools.is_empty() {
            report.push(
                self.error(&raw.from, t!("rules.from.empty"))
                    .suggest("", Pool::names()),
            );
        }
        for pool in &pools {
            match pool.get_ref().parse::<Pool>() {
                Ok(p) if from.contains(&p) => {
                    report.push(self.error(pool, t!("rules.from.twice", pool = p)))
                }
                Ok(p) => from.push(p),
                Err(_) => report.push(
                    self.error(pool, t!("rules.unknown_pool", name = pool.get_ref()))
                        .suggest(pool.get_ref(), Pool::names()),
                ),
            }
        }
        from
    }

    /// The pool the rule moves customers to: known, and not one of `from`.
    fn to(&self, raw: &RawRule, from: &[Pool], report: &mut Report) -> Option<Pool> {
        raw.to
            .as_ref()
            .and_then(|to| match to.get_ref().parse::<Pool>() {
                Ok(p) if from.contains(&p) => {
                    report.push(
                        self.error(to, t!("rules.to.in_from", pool = p))
                            .hint(t!("rules.to.in_from_hint")),
                    );
                    None
                }
                Ok(p) => Some(p),
                Err(_) => {
                    report.push(
                        self.error(to, t!("rules.unknown_pool", name = to.get_ref()))
                            .suggest(to.get_ref(), Pool::names()),
                    );
                    None
                }
            })
    }

    /// `cooldown = "30d"` (whole days, at least one), or its older
    /// spelling `cooldown_days = 30`; not both.
    fn cooldown_days(&self, raw: &RawRule, report: &mut Report) -> Option<i64> {
        let days = raw.cooldown_days.as_ref().and_then(|c| {
            let days = *c.get_ref();
            if days < 1 {
                report.push(self.error(c, t!("rules.cooldown_days.too_small")));
                None
            } else {
                Some(days)
            }
        });
        let Some(cooldown) = &raw.cooldown else {
            return days;
        };
        if let Some(older) = &raw.cooldown_days {
            report.push(
                self.error(older, t!("rules.cooldown.twice"))
                    .hint(t!("rules.cooldown.twice_hint", days = older.get_ref())),
            );
            return None;
        }
        match humantime::parse_duration(cooldown.get_ref()) {
            Ok(d) if d.as_secs() >= 86_400 && d.as_secs() % 86_400 == 0 => {
                Some((d.as_secs() / 86_400) as i64)
            }
            Ok(_) => {
                report.push(
                    self.error(
                        cooldown,
                        t!("rules.cooldown.not_days", value = cooldown.get_ref()),
                    )
                    .hint(t!("rules.cooldown.hint")),
                );
                None
            }
            Err(e) => {
                report.push(
                    self.error(
                        cooldown,
                        t!("rules.cooldown.bad", value = cooldown.get_ref(), error = e),
                    )
                    .hint(t!("rules.cooldown.hint")),
                );
                None
            }
        }
    }

    /// `holdout`: a share from 0 to 0.5, and only of use on a rule that sends.
    fn holdout(&self, raw: &RawRule, report: &mut Report) -> f64 {
        match &raw.holdout {
            None => 0.0,
            Some(h) => {
                let share = *h.get_ref();
                if !(0.0..=0.5).contains(&share) {
                    report.push(
                        self.error(h, t!("rules.holdout.range", share))
                            .hint(t!("rules.holdout.range_hint")),
                    );
                } else if raw.action.is_empty() {
                    report.push(Diagnostic::warning(
                        self.path,
                        Some(h.span()),
                        t!("rules.holdout.no_effect"),
                    ));
                }
                share
            }
        }
    }

    /// `attribution_days`: at least 1, [`DEFAULT_ATTRIBUTION_DAYS`] if not given.
    fn attribution_days(&self, raw: &RawRule, report: &mut Report) -> i64 {
        match &raw.attribution_days {
            None => DEFAULT_ATTRIBUTION_DAYS,
            Some(days) if *days.get_ref() >= 1 => *days.get_ref(),
            Some(days) => {
                report.push(self.error(days, t!("rules.attribution_days.too_small")));
                DEFAULT_ATTRIBUTION_DAYS
            }
        }
    }

    /// The rule's `[[rule.action]]`s that check out.
    fn actions(&self, raw: &RawRule, report: &mut Report) -> Vec<Action> {
        let mut actions = Vec::new();
        for raw_action in &raw.action {
            if let Some(action) = self.action(raw_action.get_ref(), report) {
                actions.push(action);
            }
        }
        actions
    }

    /// A rule must move customers or send something.
    fn check_it_does_something(&self, raw: &RawRule, id: &str, report: &mut Report) {
        if raw.to.is_none() && raw.action.is_empty() {
            report.push(
                self.error(&raw.id, t!("rules.does_nothing", id))
                    .hint(t!("rules.does_nothing_hint")),
            );
        }
    }
    /// A condition nested deeper than [`limits::CONDITION_NESTING`] or
    /// longer than [`limits::CONDITION_BYTES`]: told before the CEL parser
    /// sees it (the parser recurses once per level and gives up, or
    /// overflows the stack, long before 10,000).
    fn beyond_limits(
        &self,
        source: &str,
        to_file: &dyn Fn(usize, usize) -> Range<usize>,
        when: &Spanned<String>,
    ) -> Option<Diagnostic> {
        if let (depth, Some(at)) = limits::nesting(source, limits::CONDITION_NESTING) {
            let at = source[..at].chars().count();
            return Some(
                Diagnostic::error(
                    self.path,
                    Some(to_file(at, at + 1)),
                    t!(
                        "rules.when.too_deep",
                        depth,
                        limit = limits::CONDITION_NESTING
                    ),
                )
                .hint(t!("rules.when.too_deep_hint")),
            );
        }
        (source.len() > limits::CONDITION_BYTES).then(|| {
            self.error(
                when,
                t!(
                    "rules.when.too_long",
                    size = limits::size(source.len() as u64),
                    limit = limits::size(limits::CONDITION_BYTES as u64)
                ),
            )
            .hint(t!("rules.when.too_long_hint"))
        })
    }

    fn action(&self, raw: &file::RawAction, report: &mut Report) -> Option<Action> {
        let channel = match raw.channel.get_ref().parse::<Channel>() {
            Ok(c) => c,
            Err(_) => {
                report.push(
                    self.error(
                        &raw.channel,
                        t!("config.channels.unknown", name = raw.channel.get_ref()),
                    )
                    .suggest(raw.channel.get_ref(), Channel::names()),
                );
                return None;
            }
        };
        let template = raw.template.get_ref().clone();
        if let Some(templates) = self.templates
            && !templates.has(channel, &template)
        {
            let known = templates.names(channel);
            report.push(
                self.error(
                    &raw.template,
                    t!("rules.action.no_template", template = &template, channel),
                )
                .suggest(&template, known),
            );
            return None;
        }
        let delay = match &raw.delay {
            None => Duration::ZERO,
            Some(delay) => match humantime::parse_duration(delay.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    report.push(
                        self.error(
                            delay,
                            t!("rules.action.bad_delay", value = delay.get_ref(), error = e),
                        )
                        .hint(t!("rules.action.bad_delay_hint")),
                    );
                    return None;
                }
            },
        };
        let expires_after = match &raw.expires_after {
            None => None,
            Some(expiry) => match humantime::parse_duration(expiry.get_ref()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    report.push(
                        self.error(expiry, t!("rules.action.zero_expires_after"))
                            .hint(t!("rules.action.bad_expires_after_hint")),
                    );
                    return None;
                }
                Err(e) => {
                    report.push(
                        self.error(
                            expiry,
                            t!(
                                "rules.action.bad_expires_after",
                                value = expiry.get_ref(),
                                error = e
                            ),
                        )
                        .hint(t!("rules.action.bad_expires_after_hint")),
                    );
                    return None;
                }
            },
        };
        let assign = match &raw.assign {
            None => Assign::RoundRobin,
            Some(assign) => match Assign::parse(assign.get_ref()) {
                Some(_) if channel != Channel::Phone => {
                    report.push(
                        self.error(assign, t!("rules.action.assign_not_phone", channel))
                            .hint(t!("rules.action.assign_not_phone_hint")),
                    );
                    return None;
                }
                Some(a) => a,
                None => {
                    report.push(
                        self.error(
                            assign,
                            t!("rules.action.assign_unknown", value = assign.get_ref()),
                        )
                        .suggest(assign.get_ref(), Assign::NAMES.iter().copied())
                        .hint(t!("rules.action.assign_hint")),
                    );
                    return None;
                }
            },
        };
        let stale = match &raw.stale {
            None => Stale::default_for(channel),
            Some(stale) => match Stale::parse(stale.get_ref()) {
                Some(s) => s,
                None => {
                    report.push(
                        self.error(
                            stale,
                            t!("rules.action.stale_unknown", value = stale.get_ref()),
                        )
                        .suggest(stale.get_ref(), Stale::NAMES.iter().copied())
                        .hint(t!("rules.action.stale_hint")),
                    );
                    return None;
                }
            },
        };
        Some(Action {
            channel,
            template,
            delay,
            expires_after,
            assign,
            stale,
            assign_span: raw.assign.as_ref().map(|a| a.span()),
            span: raw.channel.span(),
        })
    }

    /// Compiles `when` and checks that it only names facts.
    fn condition(
        &self,
        when: &Spanned<String>,
        env: &Env,
        report: &mut Report,
    ) -> Option<Condition> {
        let source = when.get_ref().clone();
        let places = value_places(self.text, when.span());
        // Characters `start..end` of the condition, as a byte range of the file.
        let to_file = |start: usize, end: usize| -> Range<usize> {
            let at = |i: usize| places[i.min(places.len() - 1)];
            at(start)..at(end.max(start + 1))
        };
        // CEL's offsets are bytes of the condition, `stop` included.
        let chars_before =
            |byte: usize| source.char_indices().take_while(|(i, _)| *i < byte).count();
        let expr_span = |(start, stop): (u32, u32)| {
            to_file(
                chars_before(start as usize),
                chars_before(stop as usize + 1),
            )
        };
        if source.trim().is_empty() {
            report.push(
                self.error(when, t!("rules.when.empty"))
                    .hint(t!("rules.when.empty_hint")),
            );
            return None;
        }
        if let Some(refused) = self.beyond_limits(&source, &to_file, when) {
            report.push(refused);
            return None;
        }
        let program = match env.compile(&source) {
            Ok(program) => program,
            Err(errors) => {
                if let Some((at, given)) = full_width(&source).first() {
                    let half = half_width(*given).unwrap_or(*given);
                    report.push(
                        Diagnostic::error(
                            self.path,
                            Some(to_file(*at, at + 1)),
                            t!(
                                "rules.when.full_width",
                                given = given.to_string(),
                                half = half.to_string()
                            ),
                        )
                        .hint(t!("rules.when.full_width_hint", pairs = pairs(&source))),
                    );
                    return None;
                }
                let plain = syntax_hints(&source);
                // The first error is the slip; the rest follow from it.
                for e in errors.errors.iter().take(1) {
                    let span = e
                        .source_info
                        .as_ref()
                        .and_then(|info| info.offset_for(e.expr_id))
                        .map(expr_span)
                        .or_else(|| {
                            // pos is (line, column), both from 1.
                            let at = char_at(&source, e.pos)?;
                            Some(to_file(at, at + 1))
                        });
                    let mut diagnostic = Diagnostic::error(
                        self.path,
                        span.or(Some(when.span())),
                        t!("rules.when.parse", why = plain_parse_error(&e.msg)),
                    );
                    for hint in &plain {
                        diagnostic = diagnostic.hint(hint.clone());
                    }
                    report.push(diagnostic.hint(t!("rules.when.parse_hint")));
                }
                return None;
            }
        };
        let info = program.source_info();
        let depth = expr_depth(program.expression());
        if depth > limits::CONDITION_NESTING {
            report.push(
                self.error(
                    when,
                    t!(
                        "rules.when.too_deep",
                        depth,
                        limit = limits::CONDITION_NESTING
                    ),
                )
                .hint(t!("rules.when.too_deep_hint")),
            );
            return None;
        }
        let mut ok = true;
        let mut used = Vec::new();
        walk_idents(program.expression(), &mut |id, name| {
            if let Some(def) = facts::lookup(name) {
                used.push(def.name);
            } else {
                ok = false;
                let span = info.offset_for(id).map(expr_span);
                let mut diagnostic = Diagnostic::error(
                    self.path,
                    span.or(Some(when.span())),
                    t!("rules.unknown_fact", name),
                )
                .suggest(name, facts::names());
                if Pool::names().contains(&name) {
                    diagnostic = diagnostic.hint(t!("rules.unknown_fact_pool_hint", name));
                } else if diagnostic.hints.is_empty() {
                    diagnostic = diagnostic.hint(t!("rules.unknown_fact_hint"));
                }
                report.push(diagnostic);
            }
        });
        if ok {
            for problem in typecheck::check(program.expression()) {
                let span = info.offset_for(problem.expr_id).map(expr_span);
                let mut diagnostic =
                    Diagnostic::error(self.path, span.or(Some(when.span())), problem.message);
                if let Some(hint) = problem.hint {
                    diagnostic = diagnostic.hint(hint);
                }
                report.push(diagnostic);
                ok = false;
            }
        }
        let mut rewritten = None;
        if ok {
            let found = values::check(program.expression());
            for bad in &found.bad {
                let span = info.offset_for(bad.expr_id).map(expr_span);
                let (fact, given) = (bad.fact, &bad.given);
                let words = values::words(fact);
                let mut diagnostic = Diagnostic::error(
                    self.path,
                    span.or(Some(when.span())),
                    t!("rules.when.never_equal", fact, given),
                )
                .suggest(given, bad.known.iter().copied())
                .hint(t!(
                    "rules.when.one_of",
                    fact,
                    known = list(bad.known.iter().copied(), t!("sep.list"))
                ));
                if !words.is_empty() {
                    diagnostic = diagnostic.hint(t!(
                        "rules.when.also_words",
                        words = list(words, t!("sep.list"))
                    ));
                }
                report.push(diagnostic);
                ok = false;
            }
            if ok && !found.words.is_empty() {
                // Words for ids (`"女"`): compiled as the ids they stand for.
                let mut text = source.clone();
                let mut words: Vec<((u32, u32), &str)> = found
                    .words
                    .iter()
                    .filter_map(|w| Some((info.offset_for(w.expr_id)?, w.id)))
                    .collect();
                words.sort_by_key(|w| std::cmp::Reverse(w.0));
                for ((start, stop), id) in words {
                    let range = start as usize..(stop as usize + 1).min(text.len());
                    if text.is_char_boundary(range.start) && text.is_char_boundary(range.end) {
                        text.replace_range(range, &format!("\"{id}\""));
                    }
                }
                rewritten = Some(text);
            }
        }
        let program = match rewritten {
            None => program,
            Some(rewritten) => match env.compile(&rewritten) {
                Ok(compiled) => compiled,
                Err(_) => {
                    report.push(self.error(when, t!("rules.when.parse", why = rewritten)));
                    return None;
                }
            },
        };
        used.sort_unstable();
        used.dedup();
        ok.then_some(Condition {
            source,
            program,
            facts: used,
        })
    }
}

/// The CEL parser's message without its grammar: "Syntax error: mismatched
/// input 'and' expecting {<EOF>, '==', ...}" becomes "unexpected `and`".
fn plain_parse_error(message: &str) -> Text {
    let message = message.trim_start_matches("Syntax error:").trim();
    let token = [
        "mismatched input '",
        "extraneous input '",
        "token recognition error at: '",
    ]
    .iter()
    .find_map(|prefix| message.strip_prefix(prefix))
    .and_then(|rest| {
        rest.rfind('\'')
            .map(|end| rest[..end].split("' expecting").next().unwrap_or(""))
    })
    .map(str::trim)
    .filter(|token| !token.is_empty());
    match token {
        Some("<EOF>") => t!("rules.when.ends_early"),
        Some(token) => t!("rules.when.unexpected", token),
        None => {
            let cel = message.split(" expecting {").next().unwrap_or(message);
            t!("rules.when.cel_says", message = cel)
        }
    }
}

/// Plain hints for the usual slips in a condition the CEL parser rejects:
/// words for `&&`/`||`/`!`, a single `=`.
fn syntax_hints(source: &str) -> Vec<Text> {
    let mut hints = Vec::new();
    // Outside quoted text only.
    let mut outside = String::new();
    let mut quote: Option<char> = None;
    for c in source.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => outside.push(' '),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => outside.push(c),
        }
    }
    let words: Vec<String> = outside
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(str::to_lowercase)
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    if has("and") {
        hints.push(t!("rules.when.and_hint"));
    }
    if has("or") {
        hints.push(t!("rules.when.or_hint"));
    }
    if has("not") {
        hints.push(t!("rules.when.not_hint"));
    }
    let bytes = outside.as_bytes();
    let single_equals = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'='
            && !matches!(bytes.get(i + 1), Some(b'='))
            && !matches!(
                i.checked_sub(1).map(|j| bytes[j]),
                Some(b'=' | b'!' | b'<' | b'>')
            )
    });
    if single_equals {
        hints.push(t!("rules.when.equals_hint"));
    }
    if outside.contains("<>") {
        hints.push(t!("rules.when.not_equal_hint"));
    }
    hints
}

/// Calls `f(id, name)` for every free identifier in an expression (names bound
/// by comprehensions such as `tags.exists(t, ...)` are not free).
/// How deep the expression tree is: an operator, call, list or macro
/// inside another's operand is one level deeper.
fn expr_depth(expr: &IdedExpr) -> usize {
    let children: Vec<&IdedExpr> = match &expr.expr {
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Expr::Select(select) => vec![&*select.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .filter_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(e) => Some([&e.key, &e.value]),
                _ => None,
            })
            .flatten()
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter()
            .filter_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::StructField(field) => Some(&field.value),
                _ => None,
            })
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        _ => Vec::new(),
    };
    match children.into_iter().map(expr_depth).max() {
        Some(deepest) => deepest + 1,
        None => 0,
    }
}

fn walk_idents(expr: &IdedExpr, f: &mut dyn FnMut(u64, &str)) {
    fn walk(expr: &IdedExpr, bound: &mut Vec<String>, f: &mut dyn FnMut(u64, &str)) {
        match &expr.expr {
            Expr::Ident(name) => {
                if !bound.iter().any(|b| b == name) {
                    f(expr.id, name);
                }
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    walk(target, bound, f);
                }
                for arg in &call.args {
                    walk(arg, bound, f);
                }
            }
            Expr::Select(select) => walk(&select.operand, bound, f),
            Expr::List(list) => list.elements.iter().for_each(|e| walk(e, bound, f)),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                        walk(&e.key, bound, f);
                        walk(&e.value, bound, f);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(field) = &entry.expr {
                        walk(&field.value, bound, f);
                    }
                }
            }
            Expr::Comprehension(c) => {
                walk(&c.iter_range, bound, f);
                walk(&c.accu_init, bound, f);
                let pushed = [c.iter_var.clone(), c.accu_var.clone()];
                let depth = bound.len();
                bound.extend(pushed);
                if let Some(iter_var2) = &c.iter_var2 {
                    bound.push(iter_var2.clone());
                }
                walk(&c.loop_cond, bound, f);
                walk(&c.loop_step, bound, f);
                walk(&c.result, bound, f);
                bound.truncate(depth);
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    walk(expr, &mut Vec::new(), f)
}

/// The byte offset in the file of each character of a TOML string value
/// whose span (quotes included) is `span`, then of its closing quote.
/// Escapes (`\"`, `\u4E0A`) are one character of the value and several of
/// the file, so a caret under a condition's character lands under it in
/// the file too.
fn value_places(text: &str, span: Range<usize>) -> Vec<usize> {
    let raw = text.get(span.clone()).unwrap_or("");
    let (open, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        (0, false)
    };
    let mut body = &raw[open.min(raw.len())..raw.len().saturating_sub(open)];
    let mut start = span.start + open;
    if open == 3 {
        // A newline right after the opening quotes is not part of the value.
        for newline in ["\r\n", "\n"] {
            if let Some(rest) = body.strip_prefix(newline) {
                body = rest;
                start += newline.len();
                break;
            }
        }
    }
    let mut places = Vec::with_capacity(body.len() + 1);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if basic && c == '\\' {
            match chars.next() {
                Some((_, 'u')) => {
                    chars.nth(3);
                }
                Some((_, 'U')) => {
                    chars.nth(7);
                }
                // A backslash at a line's end joins the lines: no character.
                Some((_, w)) if w.is_whitespace() => {
                    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                    continue;
                }
                _ => {}
            }
        }
        places.push(start + i);
    }
    places.push(start + body.len());
    places
}

/// The character index in `source` of CEL's (line, column), both from 1.
fn char_at(source: &str, (line, column): (isize, isize)) -> Option<usize> {
    let (line, column) = (usize::try_from(line).ok()?, usize::try_from(column).ok()?);
    let line_start: usize = source
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.chars().count())
        .sum();
    Some(line_start + column.checked_sub(1)?)
}

/// The half-width character a full-width one from a Chinese keyboard
/// stands for: `（` → `(`, `＞` → `>`, `“` → `"`, `，` → `,`.
pub(super) fn half_width(c: char) -> Option<char> {
    match c {
        // The full-width forms of ASCII: `！` to `～`.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '“' | '”' | '「' | '」' => Some('"'),
        '‘' | '’' => Some('\''),
        '【' | '〔' => Some('['),
        '】' | '〕' => Some(']'),
        '。' => Some('.'),
        '、' => Some(','),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

/// Full-width punctuation outside quoted text, as (character index,
/// character), in order.
pub(super) fn full_width(line: &str) -> Vec<(usize, char)> {
    let mut found = Vec::new();
    let mut quote: Option<char> = None;
    for (i, c) in line.chars().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if half_width(c).is_some() => found.push((i, c)),
            None => {}
        }
    }
    found
}

/// "`（` → `(`, `＞` → `>`": each full-width character of `line` outside
/// quotes with its half-width one, once.
pub(super) fn pairs(line: &str) -> String {
    let mut seen: Vec<char> = Vec::new();
    for (_, c) in full_width(line) {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    seen.iter()
        .map(|c| format!("`{c}` → `{}`", half_width(*c).unwrap_or(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}
