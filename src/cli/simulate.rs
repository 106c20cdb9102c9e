//! `recall simulate`: the rules replayed over a past period on a copy of the
//! history, sending nothing; with `--against`, a proposal beside the current rules.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;

use super::{FolderArgs, Rows, color, folders_used, lang, load_with, open_store};
use crate::base::clock;
use crate::base::i18n::{Lang, Text, t};
use crate::base::model::Channel;
use crate::engine::simulate::{Outcome, Replay};
use crate::rules::RuleSet;
use crate::templates::TemplateSet;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Start of the period (clinic time).
    #[arg(long)]
    pub from: String,
    /// End of the period (exclusive).
    #[arg(long)]
    pub to: String,
    /// The current rules (`--rules`) and templates (`--templates`) to
    /// replay; default the clinic's folders.
    #[command(flatten)]
    pub folders: FolderArgs,
    /// A proposed rules folder to compare with the current one; every Δ
    /// is proposal minus current (+3: the proposal does 3 more).
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
    /// The proposal's own templates; default the current templates.
    #[arg(long, value_name = "DIR", requires = "against")]
    pub against_templates: Option<PathBuf>,
}

/// `recall simulate`: replays the current rules, and the proposal with
/// `--against`, then prints what each did side by side.
pub(super) fn run(config_path: &Path, args: &SimulateArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let loaded = load_with(config_path, &args.folders)?;
    let config = &loaded.config;
    let tz = config.clinic.timezone;
    let (from, to) = (
        clock::parse_time(&args.from, tz, now)?,
        clock::parse_time(&args.to, tz, now)?,
    );
    if from >= to {
        bail!(t!("cli.from_before_to").render(lang()));
    }
    let current_dir = config.rules_dir.clone();
    let current = load_rules(&loaded.templates, &current_dir)?;
    let proposal_templates = match &args.against_templates {
        Some(dir) => Some(load_templates(dir)?),
        None => None,
    };
    let templates_b = proposal_templates.as_ref().unwrap_or(&loaded.templates);
    let proposal = args
        .against
        .as_deref()
        .map(|dir| load_rules(templates_b, dir).map(|rules| (dir, rules)))
        .transpose()?;
    let (store, clinic_id) = open_store(config, now)?;
    let workdir = tempfile::tempdir()?;
    let replay = Replay {
        config,
        live: &store,
        clinic_id,
        templates: &loaded.templates,
        from,
        to,
        workdir: workdir.path(),
    };
    let a = replay.run(&current, "a")?;
    let b = match &proposal {
        Some((_, rules)) => Some(
            Replay {
                templates: templates_b,
                ..replay
            }
            .run(rules, "b")?,
        ),
        None => None,
    };
    let headings = Headings {
        lang: lang(),
        current_dir: current_dir.display().to_string(),
        proposal_dir: proposal.as_ref().map(|(dir, _)| dir.display().to_string()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", folders_used(config))?;
    if let (Some((dir, _)), Some(templates)) = (&proposal, &args.against_templates) {
        let (rules, templates) = (dir.display(), templates.display());
        writeln!(
            out,
            "{}",
            t!("simulate.proposal_folders", rules, templates).render(lang())
        )?;
    }
    write_period(&mut out, &headings, (from, to), tz, a.ticks)?;
    rule_table(&headings, &a, b.as_ref()).write_table(&mut out, None)?;
    channel_table(&headings, &a, b.as_ref()).write_table(&mut out, None)?;
    write_total_cost(&mut out, &headings, &a, b.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

/// The rules in `dir`, checked against `templates`; prints their errors and
/// fails if they have any.
fn load_rules(templates: &TemplateSet, dir: &Path) -> Result<RuleSet> {
    match crate::rules::load(dir, Some(templates)) {
        Ok((rules, _)) => Ok(rules),
        Err(report) => {
            eprint!("{}", report.render_in(lang(), color()));
            bail!(t!("simulate.rules_have_errors", dir = dir.display()).render(lang()))
        }
    }
}

/// A proposal's own templates; prints their errors and fails if they have any.
fn load_templates(dir: &Path) -> Result<TemplateSet> {
    match crate::templates::load(dir) {
        Ok((templates, _)) => Ok(templates),
        Err(report) => {
            eprint!("{}", report.render_in(lang(), color()));
            bail!(t!("simulate.templates_have_errors", dir = dir.display()).render(lang()))
        }
    }
}

/// The tables' column headings in the process language, each naming the
/// rules folder its figures come from. `--rules` is the current rule set and
/// `--against` the proposal; every Δ is proposal minus current.
struct Headings {
    lang: Lang,
    /// The current rules' folder.
    current_dir: String,
    /// The proposal's folder, with `--against`.
    proposal_dir: Option<String>,
}

impl Headings {
    fn pick(&self, text: Text) -> String {
        text.render(self.lang)
    }

    /// A column of the current rules, tagged "current" only beside a proposal.
    fn current(&self, what: Text) -> String {
        let dir = &self.current_dir;
        let heading = match &self.proposal_dir {
            Some(_) => t!("simulate.tagged", what, tag = t!("simulate.current"), dir),
            None => t!("simulate.column", what, dir),
        };
        self.pick(heading)
    }

    /// A column of the proposal in `dir`.
    fn proposal(&self, what: Text, dir: &str) -> String {
        self.pick(t!(
            "simulate.tagged",
            what,
            tag = t!("simulate.proposal"),
            dir
        ))
    }

    /// A Δ column: proposal minus current.
    fn delta(&self, what: Text) -> String {
        self.pick(t!("simulate.delta", what))
    }
}

/// The first line: the period, and how many ticks replayed it.
fn write_period(
    out: &mut impl Write,
    headings: &Headings,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    tz: Tz,
    ticks: usize,
) -> Result<()> {
    let period = t!(
        "simulate.period",
        from = clock::format_local(from.timestamp(), tz),
        to = clock::format_local(to.timestamp(), tz),
        ticks
    );
    writeln!(out, "{}", headings.pick(period))?;
    Ok(())
}

/// Moves and messages per rule; with a proposal, its figures and the Δ.
fn rule_table(headings: &Headings, a: &Outcome, b: Option<&Outcome>) -> Rows {
    let mut rule_ids: BTreeSet<&String> = a.rules.keys().collect();
    if let Some(b) = b {
        rule_ids.extend(b.rules.keys());
    }
    let mut headers = vec![
        headings.pick(t!("simulate.rule")),
        headings.current(t!("simulate.moves")),
        headings.current(t!("simulate.messages")),
    ];
    if let Some(nb) = &headings.proposal_dir {
        headers.extend([
            headings.proposal(t!("simulate.moves"), nb),
            headings.proposal(t!("simulate.messages"), nb),
            headings.delta(t!("simulate.moves")),
            headings.delta(t!("simulate.messages")),
        ]);
    }
    let mut table = Rows::from_headers(headers);
    for id in rule_ids {
        let (_, ma, sa) = a.rules.get(id).copied().unwrap_or_default();
        let mut row = vec![id.clone(), ma.to_string(), sa.to_string()];
        if let Some(b) = b {
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
    table
}

/// Messages, held-out customers and estimated cost per channel; with a
/// proposal, its figures and the Δ of cost.
fn channel_table(headings: &Headings, a: &Outcome, b: Option<&Outcome>) -> Rows {
    let mut headers = vec![
        headings.pick(t!("simulate.channel")),
        headings.current(t!("simulate.messages")),
        headings.current(t!("simulate.held_out")),
        headings.current(t!("simulate.est_cost")),
    ];
    if let Some(nb) = &headings.proposal_dir {
        headers.extend([
            headings.proposal(t!("simulate.messages"), nb),
            headings.proposal(t!("simulate.est_cost"), nb),
            headings.delta(t!("simulate.cost")),
        ]);
    }
    let mut table = Rows::from_headers(headers);
    for channel in Channel::ALL {
        let (na, ha) = a.channels.get(channel).copied().unwrap_or_default();
        let ca = a.cost_milli.get(channel).copied().unwrap_or_default();
        let mut row = vec![
            channel.to_string(),
            na.to_string(),
            ha.to_string(),
            yuan(ca),
        ];
        if let Some(b) = b {
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
    table
}

/// The last line: the estimated total cost; with a proposal, both and the Δ.
fn write_total_cost(
    out: &mut impl Write,
    headings: &Headings,
    a: &Outcome,
    b: Option<&Outcome>,
) -> Result<()> {
    let current = yuan(a.total_cost_milli());
    let total = match b {
        Some(b) => t!(
            "simulate.total_cost_compared",
            current,
            proposal = yuan(b.total_cost_milli()),
            delta = format!(
                "{:+.2}",
                (b.total_cost_milli() - a.total_cost_milli()) as f64 / 1000.0
            )
        ),
        None => t!("simulate.total_cost", current),
    };
    writeln!(out, "{}", headings.pick(total))?;
    Ok(())
}

/// Thousandths of a yuan as yuan with two decimals.
fn yuan(milli: i64) -> String {
    format!("{:.2}", milli as f64 / 1000.0)
}
