//! `recall check`: recall.toml, the rules and the templates checked together.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::{FolderArgs, color, folders_used, lang};
use crate::base::diag::{Diagnostic, Report};
use crate::base::i18n::t;
use crate::config::Config;
use crate::setup::Loaded;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub folders: FolderArgs,
}

/// `recall check`. Writes its report in one go; a reader that leaves early
/// (`recall check | head`) ends it quietly, with the same exit code.
pub(super) fn run(config: &Path, folders: &FolderArgs) -> ExitCode {
    let mut text = String::new();
    let code = check_into(config, folders, &mut text);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("{}", t!("cli.error", error = e).render(lang()));
    }
    code
}

fn check_into(config: &Path, folders: &FolderArgs, out: &mut String) -> ExitCode {
    let lang = lang();
    let (loaded, mut report) = match Loaded::load_with(config, &folders.folders()) {
        Ok((loaded, warnings)) => (Some(loaded), warnings),
        Err(errors) => (None, errors),
    };
    // What this environment decides is reported even when the rules are
    // broken, as long as recall.toml itself loads: all in one run.
    let reloaded;
    let settings = match &loaded {
        Some(loaded) => Some(&loaded.config),
        None => {
            reloaded = crate::config::load(config).ok();
            reloaded.as_ref()
        }
    };
    if let Some(settings) = settings {
        report.extend(environment(settings));
    }
    out.push_str(&report.render_in(lang, color()));
    let (errors, warnings) = (report.errors(), report.warnings());
    let Some(loaded) = loaded.filter(|_| errors == 0) else {
        let failed = t!("check.errors_summary", errors, warnings);
        out.push_str(&format!("{}\n", failed.render(lang)));
        return ExitCode::FAILURE;
    };
    out.push_str(&format!("{}\n", folders_used(&loaded.config)));
    let c = &loaded.config;
    let (rules, enabled, templates) = (
        loaded.rules.rules.len(),
        loaded.rules.rules.iter().filter(|r| r.enabled).count(),
        loaded.templates.len(),
    );
    let schedule = c.schedule.ticks.join(", ");
    let tz = c.clinic.timezone;
    let ok = t!("check.ok_summary", rules, enabled, templates, schedule, tz);
    out.push_str(&format!("{}\n", ok.render(lang)));
    if warnings > 0 {
        let count = warnings;
        out.push_str(&format!("{}\n", t!("check.warnings", count).render(lang)));
    }
    ExitCode::SUCCESS
}

/// What this environment (the user running `check`, its variables) decides:
/// every sender that cannot be built here (a missing secret, an unreadable
/// file) as a warning at its section, since the service's environment may
/// differ; a database this user cannot write as an error (see
/// `setup::writable`).
fn environment(config: &Config) -> Report {
    let text = std::fs::read_to_string(&config.path).unwrap_or_default();
    let mut report = Report::default();
    for error in crate::senders::build_problems(config) {
        let span = config.senders.get(&error.name).and_then(|s| s.span.clone());
        let mut warning =
            Diagnostic::warning(&config.path, span, t!("check.senders", error = &error));
        if !error.missing.is_empty() {
            let vars = error.missing.join(", ");
            warning = warning.hint(t!("check.secrets_hint", vars));
        }
        report.push(warning.hint(t!("check.senders_hint")));
    }
    for problem in crate::setup::writable::database(&config.path, &text, &config.database) {
        report.push(problem);
    }
    report.add_source(&config.path, &text);
    report
}
