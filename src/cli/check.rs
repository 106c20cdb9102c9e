//! `recall check`: recall.toml, the rules and the templates checked together.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::{FolderArgs, color, folders_used, lang};
use crate::base::i18n::t;
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
    match Loaded::load_with(config, &folders.folders()) {
        Ok((loaded, mut warnings)) => {
            // Building the senders checks their settings and that their
            // secrets are in this environment (the service's may differ).
            if let Err(e) = crate::senders::dispatcher(&loaded.config) {
                warnings.push(
                    crate::base::diag::Diagnostic::warning(
                        &loaded.config.path,
                        None,
                        t!("check.senders", error = e),
                    )
                    .hint(t!("check.senders_hint")),
                );
            }
            out.push_str(&warnings.render_in(lang, color()));
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
            let count = warnings.warnings();
            if count > 0 {
                out.push_str(&format!("{}\n", t!("check.warnings", count).render(lang)));
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            out.push_str(&report.render_in(lang, color()));
            let (errors, warnings) = (report.errors(), report.warnings());
            let failed = t!("check.errors_summary", errors, warnings);
            out.push_str(&format!("{}\n", failed.render(lang)));
            ExitCode::FAILURE
        }
    }
}
