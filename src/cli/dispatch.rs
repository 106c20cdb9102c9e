//! `recall dispatch`: one round of sending what is due, then exit.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{lang, load_config, open_store, parse_at};
use crate::base::clock::{self, Clock};
use crate::base::i18n::{list, t};
use crate::base::model::Channel;
use crate::store::LockKind;
use crate::store::shared::SharedStore;

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// The time to dispatch at; default now.
    #[arg(long)]
    pub at: Option<String>,
}

/// `recall dispatch`.
pub(super) fn run(config_path: &Path, args: &DispatchArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let at = parse_at(args.at.as_deref(), &config, now)?;
    let lang = lang();
    let (store, _) = open_store(&config, now)?;
    let Some(_lock) = store.try_lock(LockKind::Dispatch)? else {
        bail!(t!("dispatch.busy").render(lang));
    };
    // Holding the dispatch lock, this is the only dispatcher: messages a
    // dispatcher that died left in `sending` go back to the queue first.
    let requeued = store.requeue_interrupted(at.timestamp())?;
    if requeued > 0 {
        eprintln!("{}", t!("dispatch.requeued", count = requeued).render(lang));
    }
    let dispatcher = crate::senders::dispatcher(&config)?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Sending, then asking about messages awaiting a person, as the
    // service does every round: a clinic that dispatches from cron needs
    // both.
    let pass = runtime.block_on(dispatcher.pass(&store, Clock::Fixed(at), &|| false));
    let report = pass.sent?;
    let polled = pass.polled?;
    let dispatched = t!(
        "dispatch.summary",
        at = clock::format_local(at.timestamp(), config.clinic.timezone),
        sent = report.sent,
        awaiting = report.awaiting,
        retried = report.retried,
        failed = report.failed,
        suppressed = report.suppressed,
        opted_out = report.opted_out
    );
    println!("{}", dispatched.render(lang));
    if polled.polled > 0 {
        let asked = t!(
            "dispatch.polled",
            polled = polled.polled,
            sent = polled.sent,
            failed = polled.failed,
            opted_out = polled.opted_out,
            pending = polled.pending
        );
        println!("{}", asked.render(lang));
    }
    let unrouted: Vec<&str> = Channel::ALL
        .iter()
        .filter(|c| !config.channels.contains_key(c))
        .map(|c| c.as_str())
        .collect();
    if !unrouted.is_empty() {
        let channels = list(unrouted, t!("sep.list"));
        println!("{}", t!("dispatch.unrouted", channels).render(lang));
    }
    Ok(ExitCode::SUCCESS)
}
