//! The command line: parses arguments (clap), sets up logging, and calls the
//! library. Each command is a function here or in a submodule; none of them
//! holds logic that a test could not reach through the library.

mod model;
mod ops;
mod output;
pub mod scaffold;
mod tasks;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::clock::{self, Clock};
use crate::config::Config;
use crate::daemon::{self, Loaded};
use crate::dispatch::{Dispatcher, SharedStore};
use crate::engine::{self, Engine, TickEnd, TickOptions};
use crate::facts::CATALOGUE;
use crate::model::{Channel, OutreachStatus};
use crate::store::queries::LogFilter;
use crate::store::{LockKind, Store};
pub use output::{Format, Rows};

/// Keeps medical-aesthetics clinics from losing their customers: moves each
/// customer between five pools by rules and reaches the ones at risk.
#[derive(Debug, Parser)]
#[command(name = "recall", version, propagate_version = true)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "RECALL_CONFIG",
        default_value = "recall.toml"
    )]
    pub config: PathBuf,
    /// Log as JSON lines instead of text (for log collectors).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Language of errors, warnings and the report: zh or en (default: from
    /// RECALL_LANG or LANG; the report defaults to zh).
    #[arg(long, global = true, value_enum)]
    pub lang: Option<crate::diag::Lang>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new recall folder: recall.toml, rules/, templates/ and the database.
    Init(InitArgs),
    /// Set up a demo clinic (if DIR is missing) and run the service on it in the foreground.
    Demo {
        /// The demo folder.
        #[arg(default_value = "recall-demo")]
        dir: PathBuf,
    },
    /// Check recall.toml, the rules and the templates; exit 1 on any error.
    Check,
    /// Run the rule tests (rules/tests/*.toml): each case's customers, ticks
    /// and expected moves and messages, against the clinic's rules.
    Test {
        /// A test file or folder; default `tests` in the rules folder.
        path: Option<PathBuf>,
    },
    /// Replay the rules over a past period on a copy of the history, sending
    /// nothing: moves per rule, messages per channel, estimated cost. With
    /// --against, compare a proposed rules folder with the current one.
    Simulate {
        /// Start of the period (clinic time).
        #[arg(long)]
        from: String,
        /// End of the period (exclusive).
        #[arg(long)]
        to: String,
        /// The current rules to replay; default the clinic's rules folder.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// A proposed rules folder to compare with the current one; every Δ
        /// is proposal minus current (+3: the proposal does 3 more).
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Evaluate the rules once: move customers between pools and queue their messages.
    Tick {
        /// The time to evaluate at (clinic time, e.g. "2026-03-01 09:00"); default now.
        #[arg(long)]
        at: Option<String>,
        /// Show what would happen without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// How many example decisions to print.
        #[arg(long, default_value_t = 10)]
        show: usize,
        /// Customers judged and committed per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch_size: usize,
    },
    /// Send the messages that are due, through each channel's sender, then exit.
    Dispatch {
        /// The time to dispatch at; default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Pool sizes, the outbox by channel and status, and the last tick.
    Status {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// The outreach log: every message, what it said and what became of it.
    Log(LogArgs),
    /// The facts rule conditions can use, with their exact definitions.
    Facts {
        #[arg(long, value_enum, default_value = "table")]
        format: FactsFormat,
    },
    /// Import customers, visits, orders or follow-ups from a CRM/HIS CSV export
    /// (UTF-8 or GBK). All or nothing; re-importing the same file changes nothing.
    Import {
        /// What the file holds.
        #[arg(value_enum, required_unless_present = "columns")]
        kind: Option<crate::import::Kind>,
        /// The CSV file.
        #[arg(required_unless_present = "columns")]
        file: Option<PathBuf>,
        /// How the file is encoded; `auto` tries UTF-8, then GBK.
        #[arg(long, value_enum, default_value = "auto")]
        encoding: crate::import::Encoding,
        /// Print the accepted columns of every kind (markdown) and exit.
        #[arg(long)]
        columns: bool,
    },
    /// The recall report: pools, moves, retention, what recall cost and won,
    /// and uplift against control groups (docs/report.md defines every number).
    Report {
        /// Start of the period (clinic time); default 30 days before `--to`.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (exclusive); default now.
        #[arg(long)]
        to: Option<String>,
        /// How the recall numbers are grouped.
        #[arg(long, value_enum, default_value = "rule")]
        by: crate::report::By,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Record what a message achieved when staff learn it another way (a
    /// WeChat reply, a booking at the front desk): it counts in the report's funnel.
    Outcome {
        /// The message id (the `id` column of `recall log`).
        message: i64,
        /// `responded` or `booked`.
        #[arg(long)]
        kind: String,
        /// When it happened (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
        /// Who records it, kept with the outcome.
        #[arg(long, default_value = "staff")]
        by: String,
    },
    /// Phone-call tasks for the clinic's staff: list, export, record outcomes.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// The churn model behind `churn_risk`: fit, show, evaluate.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Backups, retention, requeueing failed messages, and customers' data
    /// requests (backup, prune, requeue, export, forget).
    #[command(flatten)]
    Ops(ops::OpsCommand),
    /// Run the service: scheduled ticks and dispatch, until SIGINT or SIGTERM.
    Run,
    /// Ask the running service to load recall.toml, the rules and the
    /// templates again (as SIGHUP does). A broken edit changes nothing.
    Reload,
    /// Measure a tick over a large synthetic clinic (not a test; prints figures).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to create (it may exist but must not hold a recall.toml).
    pub dir: PathBuf,
    /// Add synthetic customers with months of history and outreach.
    #[arg(long)]
    pub demo: bool,
    /// Number of synthetic customers for --demo.
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    /// The clinic's name.
    #[arg(long, default_value = "示例医美诊所")]
    pub name: String,
    /// Seed for the synthetic data.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only this customer (the clinic's customer id).
    #[arg(long)]
    pub customer: Option<String>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this status (queued, sending, sent, failed, suppressed, opted_out).
    #[arg(long)]
    pub status: Option<String>,
    /// Only entries at or after this time (clinic time).
    #[arg(long)]
    pub since: Option<String>,
    /// The newest N entries; 0 for all.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Show pool moves instead of messages.
    #[arg(long)]
    pub moves: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Call tasks of a day (default: today's open tasks).
    List {
        /// `today`, `all`, or a date such as 2026-06-01.
        #[arg(long, default_value = "today")]
        date: String,
        /// Only this person's tasks.
        #[arg(long)]
        staff: Option<String>,
        /// `open`, `done` or `all`.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// CSV for call teams, with full phone numbers and scripts (personal data: handle with care).
    Export {
        /// `today`, `all`, or a date such as 2026-06-01.
        #[arg(long, default_value = "today")]
        date: String,
        /// Only this person's tasks.
        #[arg(long)]
        staff: Option<String>,
    },
    /// Record what a call achieved.
    Done {
        /// The task id (from `recall tasks list`).
        id: i64,
        /// reached_booked, reached_interested, reached_declined, no_answer, wrong_number or opt_out.
        #[arg(long)]
        outcome: String,
        /// What was said, for the next person who calls.
        #[arg(long)]
        note: Option<String>,
        /// When the call was made (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FactsFormat {
    Table,
    Markdown,
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = matches!(cli.command, Command::Run | Command::Demo { .. });
    init_tracing(cli.log_json, verbose);
    match run(cli) {
        Ok(code) => code,
        // `recall log | head`: the reader left; that is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(json: bool, verbose: bool) {
    // The scheduler crate narrates its own start-up at info; keep it quiet.
    let default = if verbose {
        "info,tokio_cron_scheduler=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECALL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The language for diagnostics: `--lang`, else RECALL_LANG or LANG.
pub(crate) fn lang() -> crate::diag::Lang {
    *LANG.get_or_init(|| {
        let env = std::env::var("RECALL_LANG")
            .or_else(|_| std::env::var("LANG"))
            .unwrap_or_default()
            .to_lowercase();
        if env.starts_with("zh") {
            crate::diag::Lang::Zh
        } else {
            crate::diag::Lang::En
        }
    })
}

static LANG: std::sync::OnceLock<crate::diag::Lang> = std::sync::OnceLock::new();

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(lang) = cli.lang {
        let _ = LANG.set(lang);
    }
    match cli.command {
        Command::Init(args) => init(&args).map(|_| ExitCode::SUCCESS),
        Command::Demo { dir } => demo(&dir),
        Command::Check => Ok(check(&cli.config)),
        Command::Test { path } => rule_tests(&cli.config, path.as_deref()),
        Command::Simulate {
            from,
            to,
            rules,
            against,
        } => simulate(
            &cli.config,
            &from,
            &to,
            rules.as_deref(),
            against.as_deref(),
        ),
        Command::Tick {
            at,
            dry_run,
            show,
            batch_size,
        } => tick(&cli.config, at.as_deref(), dry_run, show, batch_size),
        Command::Dispatch { at } => dispatch(&cli.config, at.as_deref()),
        Command::Status { format } => status(&cli.config, format),
        Command::Log(args) => log(&cli.config, &args),
        Command::Facts { format } => facts(format),
        Command::Import {
            kind,
            file,
            encoding,
            columns,
        } => match (columns, kind, file) {
            (false, Some(kind), Some(file)) => import(&cli.config, kind, &file, encoding),
            _ => {
                print!("{}", crate::import::columns_markdown());
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Report {
            from,
            to,
            by,
            format,
        } => report(
            &cli.config,
            from.as_deref(),
            to.as_deref(),
            by,
            format,
            cli.lang.unwrap_or(crate::diag::Lang::Zh),
        ),
        Command::Outcome {
            message,
            kind,
            at,
            by,
        } => outcome(&cli.config, message, &kind, at.as_deref(), &by),
        Command::Tasks(command) => tasks::run(&cli.config, command),
        Command::Model(command) => model::run(&cli.config, command),
        Command::Ops(command) => ops::run(&cli.config, command),
        Command::Run => serve(&cli.config),
        Command::Reload => reload(&cli.config),
        Command::Bench(args) => crate::bench::run(&args).map(|_| ExitCode::SUCCESS),
    }
}

/// Loads config, templates and rules; prints errors and fails if any.
fn load(config: &Path) -> Result<Loaded> {
    match Loaded::load(config) {
        Ok((loaded, warnings)) => {
            if !warnings.diagnostics.is_empty() {
                eprint!("{}", warnings.render_in(lang(), color()));
            }
            Ok(loaded)
        }
        Err(report) => {
            eprint!("{}", report.render_in(lang(), color()));
            bail!(
                "{} error(s) in the configuration, rules or templates; nothing was done",
                report.errors()
            )
        }
    }
}

/// Loads only the configuration, for commands that need no rules.
pub(crate) fn load_config(path: &Path) -> Result<Config> {
    crate::config::load(path).map_err(|report| {
        eprint!("{}", report.render_in(lang(), color()));
        anyhow::anyhow!("{} error(s) in {}", report.errors(), path.display())
    })
}

fn color() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none()
}

pub(crate) fn parse_at(text: Option<&str>, config: &Config) -> Result<DateTime<Utc>> {
    match text {
        None => Ok(Utc::now()),
        Some(text) => Ok(clock::parse_time(text, config.clinic.timezone)?),
    }
}

/// `recall init`.
pub fn init(args: &InitArgs) -> Result<()> {
    let config_path = args.dir.join("recall.toml");
    if config_path.exists() {
        bail!(
            "{} already exists: init does not overwrite a clinic's files",
            config_path.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (path, text) in scaffold::FILES {
        let target = args.dir.join(path);
        if target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    std::fs::write(&config_path, scaffold::config(&args.name))?;
    let loaded = load(&config_path)?;
    let config = &loaded.config;
    let store = Store::create(&config.database)?;
    let now = Utc::now();
    let clinic_id = store.ensure_clinic(
        &config.clinic.code,
        &config.clinic.name,
        config.clinic.timezone.name(),
        now.timestamp(),
    )?;
    println!("created {}", args.dir.display());
    if args.demo {
        populate_demo(store, &loaded, clinic_id, args, now)?;
    }
    println!(
        "next: cd {} && recall check && recall run",
        args.dir.display()
    );
    Ok(())
}

/// Fills a new database with synthetic customers and replays the shipped
/// rules over their last 120 days.
fn populate_demo(
    mut store: Store,
    loaded: &Loaded,
    clinic_id: i64,
    args: &InitArgs,
    now: DateTime<Utc>,
) -> Result<()> {
    const HISTORY_DAYS: i64 = 540;
    const REPLAY_DAYS: i64 = 120;
    let tz = loaded.config.clinic.timezone;
    let mut ingest = store.ingest()?;
    crate::demo::populate(
        &mut ingest,
        clinic_id,
        args.customers,
        HISTORY_DAYS,
        now,
        tz,
        args.seed,
    )?;
    ingest.commit()?;
    println!(
        "added {} synthetic customers with {HISTORY_DAYS} days of history",
        args.customers
    );
    println!("replaying the rules over the last {REPLAY_DAYS} days ...");
    let dispatcher = Dispatcher::build(&loaded.config)?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let engine = Engine::new(
        &loaded.config.clinic,
        clinic_id,
        &loaded.rules,
        &loaded.templates,
    )
    .with_fallbacks(loaded.config.fallbacks());
    let (mut moves, mut messages) = (0, 0);
    for day in crate::demo::replay_days(now, tz, REPLAY_DAYS) {
        let report = {
            let mut guard = store
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
            if let Err(e) = crate::churn::refit_if_due(
                &guard,
                clinic_id,
                &loaded.config.clinic,
                &loaded.config.model,
                day,
                day.timestamp(),
            ) {
                tracing::warn!(error = %e, "churn model refit failed; the last fit stays in use");
            }
            engine::tick(&mut guard, &engine, TickOptions::at(day))?
        };
        moves += report.moves;
        messages += report.messages;
        runtime.block_on(dispatcher.drain(&store, crate::demo::dispatch_clock(day), &|| false))?;
    }
    println!("replayed: {moves} pool moves, {messages} messages");
    Ok(())
}

/// `recall demo`.
fn demo(dir: &Path) -> Result<ExitCode> {
    let config_path = dir.join("recall.toml");
    if !config_path.exists() {
        init(&InitArgs {
            dir: dir.to_path_buf(),
            demo: true,
            customers: 3000,
            name: "示例医美诊所（演示）".into(),
            seed: 2026,
        })?;
    }
    println!("running the service on {} — Ctrl-C stops it", dir.display());
    println!(
        "from another terminal: recall --config {0} status   (or: cargo run --release -- --config {0} log)",
        config_path.display()
    );
    serve(&config_path)
}

/// `recall import`.
fn import(
    config_path: &Path,
    kind: crate::import::Kind,
    file: &Path,
    encoding: crate::import::Encoding,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let text = crate::import::read(file, encoding).map_err(anyhow::Error::msg)?;
    let name = file.display();
    let report_rows = |errors: &[crate::import::RowError]| {
        for e in errors.iter().take(50) {
            eprintln!("{name}:{}: {}", e.line, e.message);
        }
        if errors.len() > 50 {
            eprintln!("... and {} more", errors.len() - 50);
        }
        eprintln!(
            "{} problem(s): nothing was imported; fix the file and import it again",
            errors.len()
        );
    };
    let rows = match crate::import::parse(kind, &text, config.clinic.timezone) {
        Ok(rows) => rows,
        Err(errors) => {
            report_rows(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut store, clinic_id) = open_store(&config)?;
    match store.import(clinic_id, &rows, Utc::now().timestamp()) {
        Ok(counts) => {
            let credited = store.attribute()?;
            println!(
                "{name}: {} {} rows: {} new, {} updated, {} unchanged",
                rows.len(),
                kind.as_str(),
                counts.inserted,
                counts.updated,
                counts.unchanged
            );
            if credited > 0 {
                println!("{credited} return(s) credited to earlier contacts");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::store::import::ImportError::Rows(errors)) => {
            report_rows(&errors);
            Ok(ExitCode::FAILURE)
        }
        Err(crate::store::import::ImportError::Store(e)) => Err(e.into()),
    }
}

/// `recall outcome`.
fn outcome(
    config_path: &Path,
    message: i64,
    kind: &str,
    at: Option<&str>,
    by: &str,
) -> Result<ExitCode> {
    const KINDS: [&str; 2] = ["responded", "booked"];
    if !KINDS.contains(&kind) {
        let hint = crate::diag::nearest(kind, KINDS)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        bail!(
            "unknown outcome `{kind}`{hint} (staff record responded or booked; visits and purchases are credited from imports)"
        );
    }
    let config = load_config(config_path)?;
    let at = parse_at(at, &config)?;
    let (store, _) = open_store(&config)?;
    let Some(entry) = store.message(message)? else {
        bail!("there is no message {message}: see the id column of `recall log`");
    };
    if entry.sent_at.is_none() {
        bail!(
            "message {message} was never sent ({}): nothing to record against it",
            entry.status
        );
    }
    let recorded = store.record_outcome(
        message,
        kind,
        at.timestamp(),
        0,
        &format!("staff:{by}"),
        &format!("staff:{kind}"),
    )?;
    if recorded {
        println!(
            "message {message} ({} {}, customer {}): {kind} recorded",
            entry.rule_id, entry.channel, entry.customer
        );
    } else {
        println!("message {message} already has {kind} recorded; nothing changed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall report`.
fn report(
    config_path: &Path,
    from: Option<&str>,
    to: Option<&str>,
    by: crate::report::By,
    format: Format,
    lang: crate::diag::Lang,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let to = parse_at(to, &config)?;
    let from = match from {
        Some(text) => clock::parse_time(text, tz)?,
        None => to - chrono::Duration::days(30),
    };
    if from >= to {
        bail!("--from must be before --to");
    }
    let (mut store, _) = open_store(&config)?;
    // Credit returns that arrived since the last tick before counting them.
    store.attribute()?;
    let report = crate::report::build(&store, from, to, by, tz)?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => write!(out, "{}", report.render(lang, tz))?,
        _ => {
            let mut rows = Rows::new(&["section", "group", "metric", "value"]);
            for r in report.rows() {
                rows.push(vec![r.section.to_string(), r.group, r.metric, r.value]);
            }
            rows.write(format, &mut out, None)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall simulate`.
fn simulate(
    config_path: &Path,
    from: &str,
    to: &str,
    rules: Option<&Path>,
    against: Option<&Path>,
) -> Result<ExitCode> {
    use crate::diag::Lang;
    let loaded = load(config_path)?;
    let config = &loaded.config;
    let tz = config.clinic.timezone;
    let (from, to) = (clock::parse_time(from, tz)?, clock::parse_time(to, tz)?);
    if from >= to {
        bail!("--from must be before --to");
    }
    let load_rules = |dir: &Path| -> Result<crate::rules::RuleSet> {
        match crate::rules::load(dir, Some(&loaded.templates)) {
            Ok((rules, _)) => Ok(rules),
            Err(report) => {
                eprint!("{}", report.render_in(lang(), color()));
                bail!(
                    "the rules in {} have errors; nothing was simulated",
                    dir.display()
                )
            }
        }
    };
    let first_dir = rules.map_or_else(|| config.rules_dir.clone(), Path::to_path_buf);
    let first_rules = load_rules(&first_dir)?;
    let second = against
        .map(|dir| load_rules(dir).map(|r| (dir.to_path_buf(), r)))
        .transpose()?;
    let (store, clinic_id) = open_store(config)?;
    let workdir = tempfile::tempdir()?;
    let replay = crate::simulate::Replay {
        config,
        live: &store,
        clinic_id,
        templates: &loaded.templates,
        from,
        to,
        workdir: workdir.path(),
    };
    let a = replay.run(&first_rules, "a")?;
    let b = match &second {
        Some((_, rules)) => Some(replay.run(rules, "b")?),
        None => None,
    };
    let zh = lang() == Lang::Zh;
    let mut out = std::io::stdout().lock();
    let (fa, fb) = (
        clock::format_local(from.timestamp(), tz),
        clock::format_local(to.timestamp(), tz),
    );
    if zh {
        writeln!(
            out,
            "模拟 {fa} — {fb}：{} 次评估，没有发送任何消息",
            a.ticks
        )?;
    } else {
        writeln!(
            out,
            "simulation {fa} — {fb}: {} ticks, nothing was sent",
            a.ticks
        )?;
    }
    let name_a = first_dir.display().to_string();
    let name_b = second.as_ref().map(|(d, _)| d.display().to_string());
    let mut rule_ids: std::collections::BTreeSet<&String> = a.rules.keys().collect();
    if let Some(b) = &b {
        rule_ids.extend(b.rules.keys());
    }
    // `--rules` is the current rule set and `--against` the proposal;
    // every Δ is proposal minus current.
    let (current, proposal) = if zh {
        ("当前", "提案")
    } else {
        ("current", "proposal")
    };
    let col = |what_en: &str, what_zh: &str, tag: &str, dir: &str| {
        if zh {
            format!("{what_zh}（{tag}：{dir}）")
        } else {
            format!("{what_en} ({tag}: {dir})")
        }
    };
    let delta = |what_en: &str, what_zh: &str| {
        if zh {
            format!("Δ {what_zh}（提案 − 当前）")
        } else {
            format!("Δ {what_en} (proposal − current)")
        }
    };
    let tag_a = if name_b.is_some() { current } else { "" };
    let col_a = |what_en: &str, what_zh: &str| {
        if tag_a.is_empty() {
            if zh {
                format!("{what_zh}（{name_a}）")
            } else {
                format!("{what_en} ({name_a})")
            }
        } else {
            col(what_en, what_zh, tag_a, &name_a)
        }
    };
    let mut headers = vec![
        if zh { "规则" } else { "rule" }.to_string(),
        col_a("moves", "流转"),
        col_a("messages", "消息"),
    ];
    if let Some(nb) = &name_b {
        headers.extend([
            col("moves", "流转", proposal, nb),
            col("messages", "消息", proposal, nb),
            delta("moves", "流转"),
            delta("messages", "消息"),
        ]);
    }
    let mut table = Rows {
        headers,
        rows: Vec::new(),
    };
    for id in rule_ids {
        let (_, ma, sa) = a.rules.get(id).copied().unwrap_or_default();
        let mut row = vec![id.clone(), ma.to_string(), sa.to_string()];
        if let Some(b) = &b {
            let (_, mb, sb) = b.rules.get(id).copied().unwrap_or_default();
            row.extend([
                mb.to_string(),
                sb.to_string(),
                format!("{:+}", mb - ma),
                format!("{:+}", sb - sa),
            ]);
        }
        table.push(row);
    }
    table.write(Format::Table, &mut out, None)?;
    let mut headers = vec![
        if zh { "渠道" } else { "channel" }.to_string(),
        col_a("messages", "消息"),
        col_a("held out", "对照组留出"),
        col_a("est. cost", "预计成本"),
    ];
    if let Some(nb) = &name_b {
        headers.extend([
            col("messages", "消息", proposal, nb),
            col("est. cost", "预计成本", proposal, nb),
            delta("cost", "成本"),
        ]);
    }
    let mut table = Rows {
        headers,
        rows: Vec::new(),
    };
    let yuan = |milli: i64| format!("{:.2}", milli as f64 / 1000.0);
    for channel in Channel::ALL {
        let (na, ha) = a.channels.get(channel).copied().unwrap_or_default();
        let ca = a.cost_milli.get(channel).copied().unwrap_or_default();
        let mut row = vec![
            channel.to_string(),
            na.to_string(),
            ha.to_string(),
            yuan(ca),
        ];
        if let Some(b) = &b {
            let (nb, _) = b.channels.get(channel).copied().unwrap_or_default();
            let cb = b.cost_milli.get(channel).copied().unwrap_or_default();
            row.extend([
                nb.to_string(),
                yuan(cb),
                format!("{:+.2}", (cb - ca) as f64 / 1000.0),
            ]);
        }
        table.push(row);
    }
    table.write(Format::Table, &mut out, None)?;
    match &b {
        Some(b) => writeln!(
            out,
            "{}: {} → {} ({:+.2})",
            if zh {
                "预计总成本（元）"
            } else {
                "estimated total cost (yuan)"
            },
            yuan(a.total_cost_milli()),
            yuan(b.total_cost_milli()),
            (b.total_cost_milli() - a.total_cost_milli()) as f64 / 1000.0
        )?,
        None => writeln!(
            out,
            "{}: {}",
            if zh {
                "预计总成本（元）"
            } else {
                "estimated total cost (yuan)"
            },
            yuan(a.total_cost_milli())
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall test`.
fn rule_tests(config_path: &Path, path: Option<&Path>) -> Result<ExitCode> {
    use crate::diag::Lang;
    let loaded = load(config_path)?;
    let path = path.map_or_else(|| loaded.config.rules_dir.join("tests"), Path::to_path_buf);
    let files =
        crate::ruletest::files(&path).with_context(|| format!("reading {}", path.display()))?;
    if files.is_empty() {
        bail!("no test files in {}", path.display());
    }
    let zh = lang() == Lang::Zh;
    let (mut passed, mut failed) = (0, 0);
    let mut fired = std::collections::BTreeSet::new();
    let mut broken = Vec::new();
    for file in &files {
        println!("{}", file.display());
        let tests = match crate::ruletest::parse(file) {
            Ok(tests) => tests,
            Err(report) => {
                print!("{}", report.render_in(lang(), color()));
                broken.push(file.display().to_string());
                continue;
            }
        };
        for case in crate::ruletest::run_file(&loaded, file, &tests, lang()).cases {
            fired.extend(case.fired.iter().cloned());
            if case.failures.is_empty() {
                passed += 1;
                println!("  ok    {}", case.name);
            } else {
                failed += 1;
                println!("  FAIL  {}", case.name);
                for failure in &case.failures {
                    println!("        {failure}");
                }
            }
        }
    }
    let untested: Vec<&str> = loaded
        .rules
        .rules
        .iter()
        .filter(|r| r.enabled && !fired.contains(&r.id))
        .map(|r| r.id.as_str())
        .collect();
    if !untested.is_empty() {
        if zh {
            println!(
                "\n警告：没有任何测试用例让这些规则触发过：{}",
                untested.join("、")
            );
        } else {
            println!(
                "\nwarning: no test case makes these rules fire: {}",
                untested.join(", ")
            );
        }
    }
    if zh {
        println!("\n{passed} 个通过，{failed} 个失败");
    } else {
        println!("\n{passed} passed, {failed} failed");
    }
    if !broken.is_empty() {
        // Its cases did not run: "0 failed" alone would read as a pass.
        if zh {
            println!(
                "{} 个测试文件无法读取，其中的用例都没有运行：{}（见上面的错误）",
                broken.len(),
                broken.join("、")
            );
        } else {
            println!(
                "{} test file(s) could not be read, so none of their cases ran: {} (see the errors above)",
                broken.len(),
                broken.join(", ")
            );
        }
    }
    Ok(if failed > 0 || !broken.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `recall check`. Writes its report in one go; a reader that leaves early
/// (`recall check | head`) ends it quietly, with the same exit code.
pub fn check(config: &Path) -> ExitCode {
    let mut text = String::new();
    let code = check_into(config, &mut text);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: {e}");
    }
    code
}

fn check_into(config: &Path, out: &mut String) -> ExitCode {
    let zh = lang() == crate::diag::Lang::Zh;
    match Loaded::load(config) {
        Ok((loaded, mut warnings)) => {
            // Building the senders checks their settings and that their
            // secrets are in this environment (the service's may differ).
            if let Err(e) = Dispatcher::build(&loaded.config) {
                warnings.push(
                    crate::diag::Diagnostic::warning(&loaded.config.path, None, e.to_string())
                        .zh(format!("发送器无法创建：{e}"))
                        .hint2(
                            "the service cannot dispatch until this is fixed in its environment",
                            "在服务的运行环境中修正之前，服务无法发送消息",
                        ),
                );
            }
            out.push_str(&warnings.render_in(lang(), color()));
            let c = &loaded.config;
            let (rules, enabled, templates) = (
                loaded.rules.rules.len(),
                loaded.rules.rules.iter().filter(|r| r.enabled).count(),
                loaded.templates.len(),
            );
            let schedule = c.schedule.ticks.join(", ");
            let tz = c.clinic.timezone;
            out.push_str(&if zh {
                format!("检查通过：{rules} 条规则（{enabled} 条启用），{templates} 个模板，定时 {schedule}（{tz}）\n")
            } else {
                format!("ok: {rules} rules ({enabled} enabled), {templates} templates, schedule {schedule} in {tz}\n")
            });
            let count = warnings.warnings();
            if count > 0 {
                out.push_str(&if zh {
                    format!("{count} 个警告\n")
                } else {
                    format!("{count} warning(s)\n")
                });
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            out.push_str(&report.render_in(lang(), color()));
            let (errors, warnings) = (report.errors(), report.warnings());
            out.push_str(&if zh {
                format!("{errors} 个错误，{warnings} 个警告：请改正上面的错误；正在运行的服务会继续使用当前的规则，直到改正为止\n")
            } else {
                format!("{errors} error(s), {warnings} warning(s): fix the errors above; the running service keeps its current rules until then\n")
            });
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn open_store(config: &Config) -> Result<(Store, i64)> {
    let store = Store::open(&config.database)?;
    let clinic_id = store.ensure_clinic(
        &config.clinic.code,
        &config.clinic.name,
        config.clinic.timezone.name(),
        Utc::now().timestamp(),
    )?;
    Ok((store, clinic_id))
}

/// `recall tick`.
fn tick(
    config_path: &Path,
    at: Option<&str>,
    dry_run: bool,
    show: usize,
    batch_size: usize,
) -> Result<ExitCode> {
    let loaded = load(config_path)?;
    let config = &loaded.config;
    let tz = config.clinic.timezone;
    let at = parse_at(at, config)?;
    let (mut store, clinic_id) = open_store(config)?;
    let engine = Engine::new(&config.clinic, clinic_id, &loaded.rules, &loaded.templates)
        .with_fallbacks(config.fallbacks());
    let options = TickOptions {
        dry_run,
        samples: show,
        batch_size,
        ..TickOptions::at(at)
    };
    let mut out = std::io::stdout().lock();
    if !dry_run {
        // As the service does: a refit slot passed since the last fit means
        // a fit before the tick.
        let refit = crate::churn::refit_if_due(
            &store,
            clinic_id,
            &config.clinic,
            &config.model,
            at,
            Utc::now().timestamp(),
        )?;
        if let crate::churn::Refit::Fitted(fit) = &refit {
            writeln!(
                out,
                "refitted the churn model (#{}) on {} customers first",
                fit.id, fit.customers
            )?;
        }
    }
    let report = engine::tick(&mut store, &engine, options)?;
    if !dry_run {
        store.attribute()?;
    }
    for earlier in &report.finished_first {
        writeln!(
            out,
            "finished the interrupted tick at {} first",
            clock::format_local(earlier.at, tz)
        )?;
    }
    let when = clock::format_local(report.at, tz);
    match report.end {
        TickEnd::AlreadyDone => {
            writeln!(
                out,
                "a tick at {when} already ran ({} moves, {} messages); nothing to do",
                report.moves, report.messages
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        TickEnd::Stopped => {
            writeln!(out, "tick at {when} stopped; run it again to resume")?;
            return Ok(ExitCode::FAILURE);
        }
        TickEnd::DryRun => writeln!(out, "dry run at {when}: nothing was written")?,
        TickEnd::Done => {}
    }
    if let Some(after) = report.resumed_after {
        writeln!(out, "resumed an interrupted tick after customer #{after}")?;
    }
    let verb = if dry_run { "would queue" } else { "queued" };
    writeln!(
        out,
        "tick at {when} ({tz}): {} customers evaluated, {} moves, {} messages {verb}, {} errors",
        report.evaluated, report.moves, report.messages, report.errors
    )?;
    if !report.by_rule.is_empty() {
        let mut rows = Rows::new(&["rule", "fired", "moves", "messages", "errors"]);
        for (rule, count) in &report.by_rule {
            rows.push(vec![
                rule.clone(),
                count.fired.to_string(),
                count.moves.to_string(),
                count.messages.to_string(),
                count.errors.to_string(),
            ]);
        }
        rows.write(Format::Table, &mut out, None)?;
        for (rule, count) in report.by_rule.iter().filter(|(_, c)| c.errors > 0) {
            writeln!(
                out,
                "rule {rule}: condition failed for {} customers, e.g. {}",
                count.errors,
                count.first_error.as_deref().unwrap_or("")
            )?;
        }
    }
    if !report.samples.is_empty() {
        writeln!(out, "examples:")?;
        for s in &report.samples {
            let to =
                s.to.as_deref()
                    .map(|t| format!(" → {t}"))
                    .unwrap_or_default();
            let channels = if s.channels.is_empty() {
                String::new()
            } else {
                format!(" send {}", s.channels.join("+"))
            };
            writeln!(
                out,
                "  {} [{}{to}] {}{channels}: {}",
                s.customer, s.from, s.rule_id, s.reason
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall dispatch`.
fn dispatch(config_path: &Path, at: Option<&str>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let at = parse_at(at, &config)?;
    let (store, _) = open_store(&config)?;
    let Some(_lock) = store.try_lock(LockKind::Dispatch)? else {
        bail!(
            "the service is dispatching from this database right now; it sends due messages itself"
        );
    };
    // Holding the dispatch lock, this is the only dispatcher: messages a
    // dispatcher that died left in `sending` go back to the queue first.
    let requeued = store.requeue_interrupted(Utc::now().timestamp())?;
    if requeued > 0 {
        eprintln!("{requeued} message(s) interrupted while sending were put back in the queue");
    }
    let dispatcher = Dispatcher::build(&config)?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(dispatcher.drain(&store, Clock::Fixed(at), &|| false))?;
    println!(
        "dispatched at {}: {} sent, {} to retry, {} failed, {} suppressed, {} opted out",
        clock::format_local(at.timestamp(), config.clinic.timezone),
        report.sent,
        report.retried,
        report.failed,
        report.suppressed,
        report.opted_out
    );
    let unrouted: Vec<&str> = Channel::ALL
        .iter()
        .filter(|c| !config.channels.contains_key(c))
        .map(|c| c.as_str())
        .collect();
    if !unrouted.is_empty() {
        println!(
            "channels without a sender (their messages wait): {}",
            unrouted.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall status`.
fn status(config_path: &Path, format: Format) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let (store, _) = open_store(&config)?;
    let status = store.status(Utc::now().timestamp())?;
    let mut out = std::io::stdout().lock();
    let mut pools = Rows::new(&["pool", "池", "customers"]);
    for (pool, n) in &status.pools {
        pools.push(vec![pool.to_string(), pool.zh().to_string(), n.to_string()]);
    }
    let mut outbox = Rows::new(&["channel", "status", "messages"]);
    for (channel, state, n) in &status.outreach {
        outbox.push(vec![channel.to_string(), state.to_string(), n.to_string()]);
    }
    if format != Format::Table {
        let mut all = Rows::new(&["section", "name", "status", "count"]);
        for (pool, n) in &status.pools {
            all.push(vec![
                "pool".into(),
                pool.to_string(),
                String::new(),
                n.to_string(),
            ]);
        }
        for (channel, state, n) in &status.outreach {
            all.push(vec![
                "outreach".into(),
                channel.to_string(),
                state.to_string(),
                n.to_string(),
            ]);
        }
        all.push(vec![
            "due_now".into(),
            String::new(),
            String::new(),
            status.due_now.to_string(),
        ]);
        if let Some(t) = &status.last_tick {
            all.push(vec![
                "last_tick".into(),
                clock::format_rfc3339(t.at, tz),
                if t.done { "done" } else { "running" }.into(),
                t.evaluated.to_string(),
            ]);
        }
        all.write(format, &mut out, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} — {} customers",
        config.clinic.name, status.customers
    )?;
    pools.write(format, &mut out, None)?;
    if status.outreach.is_empty() {
        writeln!(out, "no messages yet")?;
    } else {
        outbox.write(format, &mut out, None)?;
    }
    writeln!(out, "due now: {} queued message(s)", status.due_now)?;
    match &status.last_tick {
        Some(t) => writeln!(
            out,
            "last tick: {} ({}), {} evaluated, {} moves, {} messages",
            clock::format_local(t.at, tz),
            if t.done {
                "done"
            } else {
                "interrupted; resumes at the next tick"
            },
            t.evaluated,
            t.moves,
            t.messages
        )?,
        None => writeln!(out, "no tick has run yet: `recall tick` or `recall run`")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall log`.
fn log(config_path: &Path, args: &LogArgs) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let channel = args
        .channel
        .as_deref()
        .map(|c| c.parse::<Channel>())
        .transpose()?;
    let status = args
        .status
        .as_deref()
        .map(|s| s.parse::<OutreachStatus>())
        .transpose()?;
    let filter = LogFilter {
        customer: args.customer.clone(),
        rule: args.rule.clone(),
        channel,
        status,
        since: args
            .since
            .as_deref()
            .map(|s| clock::parse_time(s, tz).map(|t| t.timestamp()))
            .transpose()?,
        limit: (args.limit > 0).then_some(args.limit),
    };
    let (store, _) = open_store(&config)?;
    let time = |t: i64| match args.format {
        Format::Table => clock::format_local(t, tz),
        _ => clock::format_rfc3339(t, tz),
    };
    let mut out = std::io::stdout().lock();
    let rows = if args.moves {
        let mut rows = Rows::new(&["time", "customer", "from", "to", "rule", "reason"]);
        for m in store.moves(&filter)? {
            rows.push(vec![
                time(m.at),
                m.customer,
                m.from.unwrap_or_default(),
                m.to,
                m.rule_id.unwrap_or_default(),
                m.reason,
            ]);
        }
        rows
    } else {
        let mut rows = Rows::new(&[
            "id",
            "created",
            "due",
            "sent",
            "customer",
            "rule",
            "pool",
            "channel",
            "template",
            "status",
            "attempts",
            "sender",
            "provider_id",
            "error",
            "subject",
            "content",
        ]);
        for e in store.log(&filter)? {
            rows.push(vec![
                e.id.to_string(),
                time(e.created_at),
                time(e.due_at),
                e.sent_at.map(time).unwrap_or_default(),
                e.customer,
                e.rule_id,
                e.pool,
                e.channel,
                e.template,
                e.status,
                e.attempts.to_string(),
                e.sender.unwrap_or_default(),
                e.provider_id.unwrap_or_default(),
                e.last_error.unwrap_or_default(),
                e.subject.unwrap_or_default(),
                e.content,
            ]);
        }
        if args.format == Format::Table {
            // Keep the table readable: the columns people scan.
            let keep = [1, 4, 5, 7, 9, 10, 13, 15];
            Rows {
                headers: keep.iter().map(|i| rows.headers[*i].clone()).collect(),
                rows: rows
                    .rows
                    .iter()
                    .map(|r| keep.iter().map(|i| r[*i].clone()).collect())
                    .collect(),
            }
        } else {
            rows
        }
    };
    if rows.rows.is_empty() && args.format == Format::Table {
        writeln!(out, "nothing in the log matches")?;
    } else {
        rows.write(args.format, &mut out, Some(40))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `recall facts`.
fn facts(format: FactsFormat) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match format {
        FactsFormat::Markdown => write!(out, "{}", facts_markdown())?,
        FactsFormat::Table | FactsFormat::Json => {
            let mut rows = Rows::new(&["fact", "type", "nullable", "definition", "定义"]);
            for f in CATALOGUE {
                rows.push(vec![
                    f.name.into(),
                    f.ty.as_str().into(),
                    if f.nullable { "yes" } else { "no" }.into(),
                    f.definition.into(),
                    f.definition_zh.into(),
                ]);
            }
            let format = if format == FactsFormat::Json {
                Format::Json
            } else {
                Format::Table
            };
            rows.write(format, &mut out, None)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The fact catalogue as the table in `docs/facts.md`.
pub fn facts_markdown() -> String {
    let mut text =
        String::from("| fact | type | null? | definition | 定义 |\n|---|---|---|---|---|\n");
    for f in CATALOGUE {
        text.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            f.name,
            f.ty.as_str(),
            if f.nullable { "yes" } else { "no" },
            f.definition.replace('|', "\\|"),
            f.definition_zh.replace('|', "\\|")
        ));
    }
    text
}

/// `recall reload`.
fn reload(config_path: &Path) -> Result<ExitCode> {
    // Check first, so the person who edited sees the errors right here.
    let ok = check(config_path) == ExitCode::SUCCESS;
    let config = load_config(config_path)?;
    let (store, _) = open_store(&config)?;
    if store.try_lock(LockKind::Dispatch)?.is_some() {
        bail!(
            "no recall service is running on {}",
            config.database.display()
        );
    }
    let Some(pid) = store.lock_holder(LockKind::Dispatch) else {
        bail!(
            "the running service did not record its process id; send it SIGHUP (systemctl reload recall)"
        );
    };
    signal_reload(pid)?;
    if ok {
        println!("asked the service (process {pid}) to reload; its log shows what changed");
    } else {
        println!(
            "asked the service (process {pid}) to reload; with the errors above it keeps its current rules"
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(unix)]
fn signal_reload(pid: u32) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| anyhow::anyhow!("bad process id {pid}"))?;
    // SAFETY: kill(2) with a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        bail!(
            "could not signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn signal_reload(_pid: u32) -> Result<()> {
    bail!("recall reload needs a Unix system; restart the service instead")
}

/// `recall run`.
fn serve(config_path: &Path) -> Result<ExitCode> {
    let loaded = load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(daemon::run(loaded))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_facts_md_holds_the_generated_table() {
        let docs = include_str!("../../docs/facts.md");
        assert!(
            docs.contains(&facts_markdown()),
            "docs/facts.md is out of date: regenerate its table with `recall facts --format markdown`"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
