//! Rules: which customers move between pools and what is sent to them.
//!
//! Two stages. [`file`] is a rule file as written; [`load`] validates every
//! file in the rules folder and compiles each condition once into a CEL
//! program, producing a [`RuleSet`] or a report naming every problem with its
//! file, line and column. [`eval`] decides, purely, which rule fires for a
//! customer: no SQLite, no clock, no network.

pub mod eval;
pub mod file;
mod lint;
pub mod typecheck;
pub mod values;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cel::common::ast::Expr;
use cel::{Env, IdedExpr, Program};
use toml::Spanned;

use crate::diag::{self, Checked, Diagnostic, Report};
use crate::facts;
use crate::model::{Channel, Pool};
use crate::templates::TemplateSet;
use file::{RawRule, RuleFile};

/// A validated rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub from: Vec<Pool>,
    pub to: Option<Pool>,
    pub priority: i64,
    pub condition: Condition,
    /// For rules that only send: may fire again after this many days in the
    /// same pool stay. `None`: once per stay.
    pub cooldown_days: Option<i64>,
    /// Share of customers kept as a control group: moved, never sent to.
    pub holdout: f64,
    /// Days after a contact in which a return counts as this rule's recall.
    pub attribution_days: i64,
    pub enabled: bool,
    pub actions: Vec<Action>,
    /// Where the rule is written, for messages.
    pub origin: Origin,
}

impl Rule {
    /// Whether firing this rule moves the customer to another pool.
    pub fn moves(&self) -> bool {
        self.to.is_some()
    }

    /// Whether this customer is in the rule's control group: a stable
    /// function of the customer and the rule, so a customer stays in (or
    /// out of) a rule's control group for good.
    pub fn holds_out(&self, customer: &str) -> bool {
        self.holdout > 0.0 && holdout_draw(customer, &self.id) < self.holdout
    }
}

/// A number in [0, 1) from FNV-1a over "customer:rule": stable across runs,
/// machines and versions (it is written down here, not taken from a library
/// whose hashing may change).
pub fn holdout_draw(customer: &str, rule: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in customer.bytes().chain([b':']).chain(rule.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Days after a contact in which a visit or purchase counts as a recall,
/// unless a rule says otherwise.
pub const DEFAULT_ATTRIBUTION_DAYS: i64 = 30;

/// A compiled `when` condition.
#[derive(Debug)]
pub struct Condition {
    pub source: String,
    pub program: Program,
    /// The facts the condition reads, sorted, for explaining decisions.
    pub facts: Vec<&'static str>,
}

/// One thing to send when a rule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub channel: Channel,
    pub template: String,
    /// How long after the tick the message is due.
    pub delay: Duration,
    /// The byte range of the action's `channel` value, for pointing at it.
    pub span: Range<usize>,
}

/// File and line of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    /// The byte range of the rule's `id` value, for pointing at the rule.
    pub id_span: Range<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Every rule, with the order in which rules are tried for each pool.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// For each pool (indexed as in `Pool::ALL`), the enabled rules watching
    /// it, highest priority first, ties by id.
    order: [Vec<usize>; 5],
    env: Arc<Env>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Builds the evaluation order.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut order: [Vec<usize>; 5] = Default::default();
        for (index, rule) in rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            for pool in &rule.from {
                order[pool_index(*pool)].push(index);
            }
        }
        for list in &mut order {
            list.sort_by(|a, b| {
                let (a, b) = (&rules[*a], &rules[*b]);
                b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
            });
        }
        RuleSet {
            rules,
            order,
            env: cel_env(),
        }
    }

    /// The enabled rules watching `pool`, in the order they are tried.
    pub fn for_pool(&self, pool: Pool) -> &[usize] {
        &self.order[pool_index(pool)]
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The CEL environment conditions were compiled in.
    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }
}

fn pool_index(pool: Pool) -> usize {
    Pool::ALL.iter().position(|p| *p == pool).unwrap_or(0)
}

/// The CEL standard environment all conditions use.
fn cel_env() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

/// Loads every `*.toml` file in `dir` (not recursively: `rules/tests/` is for
/// rule tests), checking each rule against the facts, pools, channels and
/// `templates`. Returns the rules, or every problem found.
pub fn load(dir: &Path, templates: Option<&TemplateSet>) -> Checked<RuleSet> {
    let mut report = Report::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            report.push(
                Diagnostic::error(dir, None, format!("cannot read the rules folder: {e}"))
                    .zh(format!("无法读取规则文件夹：{e}"))
                    .hint2(
                        "`paths.rules` in recall.toml names it",
                        "它由 recall.toml 中的 `paths.rules` 指定",
                    ),
            );
            return Err(report);
        }
    };
    paths.sort();
    let env = cel_env();
    let mut rules = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => rules.extend(load_text(path, &text, &env, templates, &mut report)),
            Err(e) => report.push(
                Diagnostic::error(path, None, format!("cannot read: {e}"))
                    .zh(format!("无法读取：{e}")),
            ),
        }
    }
    check_unique_ids(&rules, &mut report);
    if rules.is_empty() && !report.has_errors() {
        report.push(
            Diagnostic::warning(
                dir,
                None,
                "no rules: no customer will ever move or be contacted",
            )
            .zh("没有任何规则：不会有顾客流转，也不会发出任何消息")
            .hint2(
                "`recall init` writes a starting set of rules",
                "`recall init` 会写入一套初始规则",
            ),
        );
    }
    if report.has_errors() {
        Err(report)
    } else {
        let mut set = RuleSet::new(rules);
        set.env = env;
        for warning in lint::lint(&set) {
            report.push(warning);
        }
        Ok((set, report))
    }
}

/// Parses and validates one rule file's text.
pub fn load_text(
    path: &Path,
    text: &str,
    env: &Env,
    templates: Option<&TemplateSet>,
    report: &mut Report,
) -> Vec<Rule> {
    report.add_source(path, text);
    let file: RuleFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let mut diagnostic = diag::from_toml_error(path, &e);
            // `when = "pool == "new""`: the inner quotes end the TOML text.
            let line = e.span().and_then(|span| {
                let start = text[..span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                text[start..].lines().next()
            });
            if let Some(line) = line
                && line.trim_start().starts_with("when")
                && line.matches('"').count() > 2
            {
                diagnostic = diagnostic.hint2(
                    "inside when = \"...\" write text in single quotes: pool == 'new'",
                    "在 when = \"...\" 里面，文本请用单引号：pool == 'new'",
                );
            }
            report.push(diagnostic.hint2(
                "a rule is a [[rule]] table with id, from, when and optionally to, priority and [[rule.action]]",
                "一条规则是一个 [[rule]] 表，含 id、from、when，以及可选的 to、priority 和 [[rule.action]]",
            ));
            return Vec::new();
        }
    };
    if file.rule.is_empty() {
        report.push(
            Diagnostic::warning(path, None, "this file has no [[rule]] tables")
                .zh("这个文件里没有任何 [[rule]] 表")
                .hint2(
                    "a rule starts with a line [[rule]]",
                    "每条规则以一行 [[rule]] 开始",
                ),
        );
    }
    let mut rules = Vec::new();
    for raw in file.rule {
        let line = line_of(text, raw.span().start);
        let checker = Checker {
            path,
            text,
            templates,
        };
        if let Some(rule) = checker.compile(raw.into_inner(), line, env, report) {
            rules.push(rule);
        }
    }
    rules
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    templates: Option<&'a TemplateSet>,
}

impl Checker<'_> {
    fn error<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.path, Some(at.span()), message)
    }

    fn compile(&self, raw: RawRule, line: usize, env: &Env, report: &mut Report) -> Option<Rule> {
        let errors_before = report.errors();
        let id = raw.id.get_ref().trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            report.push(
                self.error(
                    &raw.id,
                    format!("rule id `{id}` must be letters, digits, `_` or `-`"),
                )
                .zh(format!("规则 id `{id}` 只能包含字母、数字、`_` 或 `-`"))
                .hint2(
                    "for example id = \"warning_no_visit_90d\"",
                    "例如 id = \"warning_no_visit_90d\"",
                ),
            );
        }

        let mut from = Vec::new();
        let pools = raw.from.get_ref().items(raw.from.span());
        if pools.is_empty() {
            report.push(
                self.error(&raw.from, "`from` names no pool")
                    .zh("`from` 没有写任何池")
                    .suggest("", Pool::names()),
            );
        }
        for pool in &pools {
            match pool.get_ref().parse::<Pool>() {
                Ok(p) if from.contains(&p) => report.push(
                    self.error(pool, format!("pool `{p}` is listed twice"))
                        .zh(format!("池 `{p}` 写了两次")),
                ),
                Ok(p) => from.push(p),
                Err(_) => report.push(
                    self.error(pool, format!("unknown pool `{}`", pool.get_ref()))
                        .zh(format!("未知的池 `{}`", pool.get_ref()))
                        .suggest(pool.get_ref(), Pool::names()),
                ),
            }
        }

        let to = raw.to.as_ref().and_then(|to| match to.get_ref().parse::<Pool>() {
            Ok(p) if from.contains(&p) => {
                report.push(
                    self.error(to, format!("`to = \"{p}\"` is also in `from`: a rule cannot move customers to the pool they are in"))
                        .zh(format!("`to = \"{p}\"` 也在 `from` 中：规则不能把顾客移到他们已在的池"))
                        .hint2("remove `to` for a rule that only sends messages", "只发消息的规则请去掉 `to`"),
                );
                None
            }
            Ok(p) => Some(p),
            Err(_) => {
                report.push(
                    self.error(to, format!("unknown pool `{}`", to.get_ref()))
                        .zh(format!("未知的池 `{}`", to.get_ref()))
                        .suggest(to.get_ref(), Pool::names()),
                );
                None
            }
        });

        let condition = self.condition(&raw.when, env, report);

        let cooldown_days = raw.cooldown_days.as_ref().and_then(|c| {
            let days = *c.get_ref();
            if days < 1 {
                report.push(
                    self.error(c, "`cooldown_days` must be at least 1")
                        .zh("`cooldown_days` 至少为 1"),
                );
                None
            } else {
                if raw.to.is_some() {
                    report.push(
                        Diagnostic::warning(
                            self.path,
                            Some(c.span()),
                            "`cooldown_days` has no effect on a rule that moves customers",
                        )
                        .zh("`cooldown_days` 对会移动顾客的规则无效")
                        .hint2(
                            "a moving rule fires once: the customer leaves the pool",
                            "移动顾客的规则只触发一次：顾客离开了该池",
                        ),
                    );
                }
                Some(days)
            }
        });

        let holdout = match &raw.holdout {
            None => 0.0,
            Some(h) => {
                let share = *h.get_ref();
                if !(0.0..=0.5).contains(&share) {
                    report.push(
                        self.error(h, format!("holdout {share} is out of range"))
                            .zh(format!("holdout {share} 超出范围"))
                            .hint2(
                                "a share between 0 and 0.5, e.g. holdout = 0.1 keeps one customer in ten as a control group",
                                "取 0 到 0.5 之间的比例，例如 holdout = 0.1 表示每十位顾客留一位作对照组",
                            ),
                    );
                } else if raw.action.is_empty() {
                    report.push(
                        Diagnostic::warning(
                            self.path,
                            Some(h.span()),
                            "`holdout` has no effect on a rule that sends nothing",
                        )
                        .zh("`holdout` 对不发送任何消息的规则无效"),
                    );
                }
                share
            }
        };
        let attribution_days = match &raw.attribution_days {
            None => DEFAULT_ATTRIBUTION_DAYS,
            Some(days) if *days.get_ref() >= 1 => *days.get_ref(),
            Some(days) => {
                report.push(
                    self.error(days, "`attribution_days` must be at least 1")
                        .zh("`attribution_days` 至少为 1"),
                );
                DEFAULT_ATTRIBUTION_DAYS
            }
        };

        let mut actions = Vec::new();
        for raw_action in &raw.action {
            if let Some(action) = self.action(raw_action.get_ref(), report) {
                actions.push(action);
            }
        }
        if raw.to.is_none() && raw.action.is_empty() {
            report.push(
                self.error(&raw.id, format!("rule `{id}` neither moves customers (`to`) nor sends anything (`[[rule.action]]`)"))
                    .zh(format!("规则 `{id}` 既不移动顾客（`to`），也不发送任何消息（`[[rule.action]]`）"))
                    .hint2(
                        "add `to = \"<pool>\"`, or a [[rule.action]] with channel and template",
                        "请加上 `to = \"<池>\"`，或一个含 channel 和 template 的 [[rule.action]]",
                    ),
            );
        }

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

    fn action(&self, raw: &file::RawAction, report: &mut Report) -> Option<Action> {
        let channel = match raw.channel.get_ref().parse::<Channel>() {
            Ok(c) => c,
            Err(_) => {
                report.push(
                    self.error(
                        &raw.channel,
                        format!("unknown channel `{}`", raw.channel.get_ref()),
                    )
                    .zh(format!("未知的渠道 `{}`", raw.channel.get_ref()))
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
                self.error(&raw.template, format!("no template `{template}` for {channel}: expected templates/{channel}/{template}.txt"))
                    .zh(format!("{channel} 渠道没有模板 `{template}`：应有文件 templates/{channel}/{template}.txt"))
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
                        self.error(delay, format!("bad delay `{}`: {e}", delay.get_ref()))
                            .zh(format!("延迟 `{}` 写得不对", delay.get_ref()))
                            .hint2(
                                "write a duration such as \"2h\" or \"3d\"",
                                "请写成时长，例如 \"2h\"（2小时）或 \"3d\"（3天）",
                            ),
                    );
                    return None;
                }
            },
        };
        Some(Action {
            channel,
            template,
            delay,
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
        let offset = value_offset(self.text, when.span());
        let to_file = |range: Range<usize>| -> Range<usize> {
            let start = offset + char_to_byte(&source, range.start);
            let end = offset + char_to_byte(&source, range.end.max(range.start + 1));
            start..end
        };
        if source.trim().is_empty() {
            report.push(
                self.error(when, "`when` is empty")
                    .zh("`when` 是空的")
                    .hint2(
                        "write a condition such as `days_since_last_visit >= 90`; `true` fires for everyone in `from`",
                        "请写条件，例如 `days_since_last_visit >= 90`；写 `true` 表示对 `from` 池中所有顾客触发",
                    ),
            );
            return None;
        }
        let program = match env.compile(&source) {
            Ok(program) => program,
            Err(errors) => {
                let plain = syntax_hints(&source);
                // The first error is the slip; the rest follow from it.
                for e in errors.errors.iter().take(1) {
                    let span = e
                        .source_info
                        .as_ref()
                        .and_then(|info| info.offset_for(e.expr_id))
                        .map(|(s, t)| to_file(s as usize..t as usize))
                        .or_else(|| {
                            // pos is (line, column) within the expression, 1-based line.
                            let (line, col) = e.pos;
                            (line == 1 && col >= 0).then(|| to_file(col as usize..col as usize + 1))
                        });
                    let (en, zh) = plain_parse_error(&e.msg);
                    let mut diagnostic = Diagnostic::error(
                        self.path,
                        span.or(Some(when.span())),
                        format!("condition does not parse: {en}"),
                    )
                    .zh(format!("条件写法有误：{zh}"));
                    for (en, zh) in &plain {
                        diagnostic = diagnostic.hint2(*en, *zh);
                    }
                    report.push(
                        diagnostic
                            .hint2(
                                "conditions are CEL: `visit_count >= 2 && days_since_last_visit > 60`; text in quotes: `city == \"上海\"`",
                                "条件的写法如 `visit_count >= 2 && days_since_last_visit > 60`；文本要加引号：`city == \"上海\"`",
                            ),
                    );
                }
                return None;
            }
        };
        let mut ok = true;
        let mut used = Vec::new();
        let info = program.source_info();
        walk_idents(program.expression(), &mut |id, name| {
            if let Some(def) = facts::lookup(name) {
                used.push(def.name);
            } else {
                ok = false;
                let span = info
                    .offset_for(id)
                    .map(|(s, e)| to_file(s as usize..e as usize));
                let mut diagnostic = Diagnostic::error(
                    self.path,
                    span.or(Some(when.span())),
                    format!("unknown fact `{name}`"),
                )
                .zh(format!("未知的事实 `{name}`"))
                .suggest(name, facts::names());
                if Pool::names().contains(&name) {
                    diagnostic = diagnostic.hint2(
                        format!("to test the pool, write pool == \"{name}\""),
                        format!("要判断所在的池，请写 pool == \"{name}\""),
                    );
                } else if diagnostic.hints.is_empty() {
                    diagnostic = diagnostic.hint2(
                        "`recall facts` lists every fact; text must be in quotes",
                        "`recall facts` 列出所有事实；文本要加引号",
                    );
                }
                report.push(diagnostic);
            }
        });
        if ok {
            for problem in typecheck::check(program.expression()) {
                let span = info
                    .offset_for(problem.expr_id)
                    .map(|(s, e)| to_file(s as usize..e as usize));
                let mut diagnostic =
                    Diagnostic::error(self.path, span.or(Some(when.span())), problem.en)
                        .zh(problem.zh);
                if let Some((en, zh)) = problem.hint {
                    diagnostic = diagnostic.hint2(en, zh);
                }
                report.push(diagnostic);
                ok = false;
            }
        }
        if ok {
            for bad in values::check(program.expression()) {
                let span = info
                    .offset_for(bad.expr_id)
                    .map(|(s, e)| to_file(s as usize..e as usize));
                let (fact, given) = (bad.fact, &bad.given);
                report.push(
                    Diagnostic::error(
                        self.path,
                        span.or(Some(when.span())),
                        format!("`{fact}` is never \"{given}\": this comparison can never hold"),
                    )
                    .zh(format!("`{fact}` 不会等于 \"{given}\"：这个比较永远不成立"))
                    .suggest(given, bad.known.iter().copied())
                    .hint2(
                        format!("`{fact}` is one of: {}", bad.known.join(", ")),
                        format!("`{fact}` 只会是：{}", bad.known.join("、")),
                    ),
                );
                ok = false;
            }
        }
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
fn plain_parse_error(message: &str) -> (String, String) {
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
        Some("<EOF>") => ("it ends too early".to_string(), "条件没写完".to_string()),
        Some(token) => (
            format!("`{token}` is not expected here"),
            format!("这里不应出现 `{token}`"),
        ),
        None => {
            let short = message
                .split(" expecting {")
                .next()
                .unwrap_or(message)
                .to_string();
            (short.clone(), short)
        }
    }
}

/// Plain hints for the usual slips in a condition the CEL parser rejects:
/// words for `&&`/`||`/`!`, a single `=`.
fn syntax_hints(source: &str) -> Vec<(&'static str, &'static str)> {
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
        hints.push(("use && not and", "“并且”请写 &&，不要写 and"));
    }
    if has("or") {
        hints.push(("use || not or", "“或者”请写 ||，不要写 or"));
    }
    if has("not") {
        hints.push((
            "use ! not not, e.g. !visited_in_pool",
            "“不”请写 !，不要写 not，例如 !visited_in_pool",
        ));
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
        hints.push(("to compare, write == not =", "判断相等请写 ==，不要写 ="));
    }
    if outside.contains("<>") {
        hints.push(("“not equal” is != not <>", "“不等于”请写 !=，不要写 <>"));
    }
    hints
}

/// Calls `f(id, name)` for every free identifier in an expression (names bound
/// by comprehensions such as `tags.exists(t, ...)` are not free).
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

/// Byte offset in the file of the first character of a string value whose
/// span (including quotes) is `span`.
fn value_offset(text: &str, span: Range<usize>) -> usize {
    let raw = text.get(span.clone()).unwrap_or("");
    let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        let after = &raw[3..];
        3 + if after.starts_with("\r\n") {
            2
        } else if after.starts_with('\n') {
            1
        } else {
            0
        }
    } else if raw.starts_with('"') || raw.starts_with('\'') {
        1
    } else {
        0
    };
    span.start + quote
}

/// Byte offset of the `chars`-th character of `text` (clamped to its end).
fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn check_unique_ids(rules: &[Rule], report: &mut Report) {
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    for rule in rules {
        if let Some(first) = seen.get(rule.id.as_str()) {
            report.push(
                Diagnostic::error(
                    &rule.origin.file,
                    Some(rule.origin.id_span.clone()),
                    format!(
                        "rule id `{}` (line {}) is already used at {first}",
                        rule.id, rule.origin.line
                    ),
                )
                .zh(format!(
                    "规则 id `{}`（第 {} 行）已在 {first} 用过",
                    rule.id, rule.origin.line
                ))
                .hint2(
                    "every rule needs its own id: the outreach log and reports name rules by id",
                    "每条规则都需要自己的 id：触达日志和报表都按 id 区分规则",
                ),
            );
        } else {
            seen.insert(&rule.id, &rule.origin);
        }
    }
}

#[cfg(test)]
mod tests;
