//! The command line: parses arguments (clap), sets up logging, and routes each
//! command to its file (`init.rs`, `tick.rs`, …), which calls the library. This
//! module holds only the command definitions, the router and what every
//! command shares: loading the configuration, opening the store, reading
//! `--at`, colour, and the one "now" of a command line. No command holds logic
//! that a test could not reach through the library.

mod backup;
mod cancel;
mod check;
mod customer;
mod demo;
mod dispatch;
mod export;
mod facts;
mod forget;
mod import;
mod init;
mod log;
mod model;
mod onboard;
mod outcome;
mod prune;
mod reload;
mod report;
mod requeue;
mod run;
mod simulate;
mod status;
mod tasks;
mod test;
mod tick;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::base::clock::{self, Clock};
use crate::base::i18n::{Lang, t};
pub use crate::base::output::{Book, Format, Rows};
use crate::base::output::{Output, Written};
use crate::config::Config;
use crate::setup::Loaded;
use crate::store::Store;

pub use init::{InitArgs, init};

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
    pub lang: Option<crate::base::diag::Lang>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new recall folder: recall.toml, rules/, templates/ and the database.
    Init(InitArgs),
    /// Set up a demo clinic (if DIR is missing) and run the service on it in the foreground.
    Demo(demo::DemoArgs),
    /// Check recall.toml, the rules and the templates; exit 1 on any error.
    Check(check::CheckArgs),
    /// Run the rule tests (rules/tests/*.toml): each case's customers, ticks
    /// and expected moves and messages, against the clinic's rules.
    Test(test::TestArgs),
    /// Replay the rules over a past period on a copy of the history, sending
    /// nothing: moves per rule, messages per channel, estimated cost. With
    /// --against, compare a proposed rules folder with the current one.
    Simulate(simulate::SimulateArgs),
    /// Evaluate the rules once: move customers between pools and queue their messages.
    Tick(tick::TickArgs),
    /// Place the customers an import brought in the pools their history
    /// implies, by replaying the rules silently over it: moves recorded,
    /// nothing sent. Until then ticks leave them alone.
    Onboard(onboard::OnboardArgs),
    /// Take queued messages out of the queue (status `cancelled`, who and
    /// why in the log); nothing a provider already has is touched.
    Cancel(cancel::CancelArgs),
    /// Send the messages that are due, through each channel's sender, ask
    /// about messages awaiting staff (WeCom tasks, call tasks), then exit.
    Dispatch(dispatch::DispatchArgs),
    /// Pool sizes, the outbox by channel and status, and the last tick.
    Status(status::StatusArgs),
    /// The outreach log: every message, what it said and what became of it.
    Log(log::LogArgs),
    /// Find a customer by clinic id, name or phone and tell their story:
    /// pool, facts now (churn facts with their model), and one timeline of
    /// visits, orders, follow-ups, moves with reasons, messages, call tasks.
    Customer(customer::CustomerArgs),
    /// The facts rule conditions can use, with their exact definitions.
    Facts(facts::FactsArgs),
    /// Import customers, visits, orders or follow-ups from a CRM/HIS CSV export
    /// (UTF-8 or GBK). All or nothing; re-importing the same file changes nothing.
    Import(import::ImportArgs),
    /// The recall report: pools, moves, retention, what recall cost and won,
    /// and uplift against control groups (docs/report.md defines every number).
    Report(report::ReportArgs),
    /// Record what a message achieved when staff learn it another way (a
    /// WeChat reply, a booking at the front desk): it counts in the report's funnel.
    Outcome(outcome::OutcomeArgs),
    /// Phone-call tasks for the clinic's staff: list, export, record outcomes.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// The churn model behind `churn_risk`: fit, show, evaluate.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Copy the database to FILE with SQLite's online backup (safe while the
    /// service runs); the copy is readable by its owner only.
    Backup(backup::BackupArgs),
    /// Delete finished messages older than `[retention] messages` (the
    /// service does this daily); pool moves are kept.
    Prune(prune::PruneArgs),
    /// Put `failed` messages back in the queue, due now, with a fresh retry
    /// budget: after a provider outage that outlasted `[dispatch]
    /// give_up_after`. The running service sends them at its next round.
    Requeue(requeue::RequeueArgs),
    /// Print everything recall holds about one customer as JSON (a data
    /// subject's access request). Personal data: handle with care.
    Export(export::ExportArgs),
    /// Erase one customer's personal data (a deletion request), keeping only
    /// anonymised rows so the report's counts do not change. Cannot be undone.
    Forget(forget::ForgetArgs),
    /// Run the service: scheduled ticks and dispatch, until SIGINT or SIGTERM.
    Run,
    /// Ask the running service to load recall.toml, the rules and the
    /// templates again (as SIGHUP does). A broken edit changes nothing.
    Reload,
    /// Measure a tick over a large synthetic clinic (not a test; prints figures).
    Bench(crate::bench::BenchArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = matches!(cli.command, Command::Run | Command::Demo(_));
    init_tracing(cli.log_json, verbose);
    match run(cli) {
        Ok(code) => code,
        // `recall log | head`: the reader left; that is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let error = crate::base::redact::redact(&format!("{e:#}"));
            eprintln!("{}", t!("cli.error", error).render(lang()));
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
        // Every line is redacted on its way out: nothing logged can carry
        // a secret a provider echoed, whoever logs it.
        .with_writer(crate::base::redact::Redacting(std::io::stderr));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub(crate) use crate::base::i18n::lang;

/// The command line's clock: the one place the CLI takes the wall clock
/// from. [`run`] reads "now" from it once and hands that to the commands
/// that need the time; a command's `--at` replaces it ([`parse_at`]). The
/// work that runs for a while and records when it ran (a tick's start and
/// finish, the service) gets the clock itself.
fn wall_clock() -> Clock {
    Clock::System
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(lang) = cli.lang {
        crate::base::i18n::set_lang(lang);
    }
    let now = wall_clock().now();
    let config = cli.config.as_path();
    match cli.command {
        Command::Init(args) => init::run(&args, now).map(|_| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(&args, now, wall_clock()),
        Command::Check(args) => Ok(check::run(config, &args.folders)),
        Command::Test(args) => test::run(config, &args, now),
        Command::Simulate(args) => simulate::run(config, &args, now),
        Command::Tick(args) => tick::run(config, &args, now, wall_clock()),
        Command::Onboard(args) => onboard::run(config, &args, now),
        Command::Cancel(args) => cancel::run(config, &args, now),
        Command::Dispatch(args) => dispatch::run(config, &args, now),
        Command::Status(args) => status::run(config, &args, now),
        Command::Log(args) => log::run(config, &args, now),
        Command::Customer(args) => customer::run(config, &args, now),
        Command::Facts(args) => facts::run(&args),
        Command::Import(args) => import::run(config, &args, now),
        Command::Report(args) => report::run(
            config,
            &args,
            cli.lang.unwrap_or(crate::base::diag::Lang::Zh),
            now,
        ),
        Command::Outcome(args) => outcome::run(config, &args, now),
        Command::Tasks(command) => tasks::run(config, command, now),
        Command::Model(command) => model::run(config, command, now),
        Command::Backup(args) => backup::run(config, &args, now),
        Command::Prune(args) => prune::run(config, &args, now),
        Command::Requeue(args) => requeue::run(config, &args, now),
        Command::Export(args) => export::run(config, &args, now),
        Command::Forget(args) => forget::run(config, &args, now),
        Command::Run => run::run(config, wall_clock()),
        Command::Reload => reload::run(config, now),
        Command::Bench(args) => crate::bench::run(&args).map(|_| ExitCode::SUCCESS),
    }
}

/// How and where a command writes what it shows: every command that prints
/// rows flattens this, so each gets CSV with a byte-order mark, xlsx, and
/// files written the same way (`base::output`).
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// table, csv, json or xlsx (default: from the extension of --output,
    /// else the command's own).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write to FILE instead of standard output (a workbook needs one; a
    /// CSV of several sections needs a folder: one file per section).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// CSV without the UTF-8 byte-order mark, for scripts (Excel needs the
    /// mark to read Chinese; under --lang en, CSV headers are the keys JSON uses).
    #[arg(long)]
    pub no_bom: bool,
}

impl OutputArgs {
    /// The format asked for: `--format`, else the extension of
    /// `--output`, else `default`.
    pub fn format(&self, default: Format) -> Format {
        self.format
            .or_else(|| self.output.as_deref().and_then(Format::from_path))
            .unwrap_or(default)
    }

    /// The output settings, in the reader's language `lang`.
    pub fn output(&self, default: Format, lang: Lang) -> Output {
        Output {
            format: self.format(default),
            path: self.output.clone(),
            bom: !self.no_bom,
            lang,
        }
    }
}

/// Writes `book` as `output` says; says on stderr which files it wrote.
pub(crate) fn write(output: &Output, book: &Book) -> Result<()> {
    let lang = output.lang;
    match output.write(book) {
        Ok(Written::Stdout) => {}
        Ok(Written::File(path)) => {
            eprintln!(
                "{}",
                t!("output.wrote_file", path = path.display()).render(lang)
            );
        }
        Ok(Written::Files(dir, count)) => {
            let wrote = t!("output.wrote_files", count, dir = dir.display());
            eprintln!("{}", wrote.render(lang));
        }
        // `recall log | head`: `main` takes a broken pipe for the reader leaving.
        Err(crate::base::output::OutputError::Stdout(error)) => return Err(error.into()),
        Err(error) => bail!(error.text().render(lang)),
    }
    Ok(())
}

/// Only the section `key` of `book`, when `--section` asks for one;
/// `unknown` is the error for a key the book does not have, given the key
/// and the list of the known ones.
pub(crate) fn only_section(
    book: Book,
    key: Option<&str>,
    unknown: impl FnOnce(&str, crate::base::i18n::Arg) -> crate::base::i18n::Text,
) -> Result<Book> {
    let Some(key) = key else {
        return Ok(book);
    };
    let keys: Vec<String> = book.sections.iter().map(|s| s.key.clone()).collect();
    match book.only(key) {
        Some(book) => Ok(book),
        None => {
            let known = crate::base::i18n::list(keys, t!("sep.list"));
            bail!(unknown(key, known).render(lang()))
        }
    }
}

/// Loads config, templates and rules; prints errors and fails if any.
fn load(config: &Path) -> Result<Loaded> {
    load_with(config, &FolderArgs::default())
}

/// `--rules DIR` and `--templates DIR`: a proposal's folders in place of
/// the ones recall.toml names, for `check`, `test` and `simulate`.
#[derive(Debug, Clone, Default, Args)]
pub struct FolderArgs {
    /// Rules folder to use instead of the one recall.toml names (a proposal).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Templates folder to use instead of the one recall.toml names.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

impl FolderArgs {
    fn folders(&self) -> crate::setup::Folders {
        crate::setup::Folders {
            rules: self.rules.clone(),
            templates: self.templates.clone(),
        }
    }
}

/// The line that says which rules and templates a command used.
fn folders_used(config: &Config) -> String {
    let rules = config.rules_dir.display();
    let templates = config.templates_dir.display();
    t!("cli.folders_used", rules, templates).render(lang())
}

/// Loads config, rules and templates (from `folders` where it names them),
/// printing warnings; on any error prints them all and fails.
fn load_with(config: &Path, folders: &FolderArgs) -> Result<Loaded> {
    match Loaded::load_with(config, &folders.folders()) {
        Ok((loaded, warnings)) => {
            if !warnings.diagnostics.is_empty() {
                eprint!("{}", warnings.render_in(lang(), color()));
            }
            Ok(loaded)
        }
        Err(report) => {
            eprint!("{}", report.render_in(lang(), color()));
            let errors = report.errors();
            bail!(t!("cli.load_failed", errors).render(lang()))
        }
    }
}

/// Loads only the configuration, for commands that need no rules.
pub(crate) fn load_config(path: &Path) -> Result<Config> {
    let fail = |report: crate::base::diag::Report| {
        eprint!("{}", report.render_in(lang(), color()));
        let errors = report.errors();
        anyhow::anyhow!(t!("cli.config_failed", errors, path = path.display()).render(lang()))
    };
    let config = crate::config::load(path).map_err(fail)?;
    crate::senders::configs(&config).map_err(fail)?;
    Ok(config)
}

fn color() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none()
}

/// The time a command acts at: its `--at` (clinic time) if given, else `now`.
pub(crate) fn parse_at(
    text: Option<&str>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    match text {
        None => Ok(now),
        Some(text) => Ok(clock::parse_time(text, config.clinic.timezone, now)?),
    }
}

/// Opens the database, creating the clinic's row at `now` if it is missing.
pub(crate) fn open_store(config: &Config, now: DateTime<Utc>) -> Result<(Store, i64)> {
    let store = Store::open(&config.database)?;
    let clinic_id = ensure_clinic(&store, config, now)?;
    Ok((store, clinic_id))
}

/// The id of the configured clinic's row, created at `now` if it is missing.
fn ensure_clinic(store: &Store, config: &Config, now: DateTime<Utc>) -> Result<i64> {
    Ok(store.ensure_clinic(
        &config.clinic.code,
        &config.clinic.name,
        config.clinic.timezone.name(),
        now.timestamp(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
