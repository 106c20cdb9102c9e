//! `recall demo`: a demo clinic, made if missing, and the service running on it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::InitArgs;
use crate::base::clock::Clock;
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo folder.
    #[arg(default_value = "recall-demo")]
    pub dir: PathBuf,
}

/// `recall demo`: made at `now`, the service on `clock`.
pub(super) fn run(args: &DemoArgs, now: DateTime<Utc>, clock: Clock) -> Result<ExitCode> {
    let dir = &args.dir;
    let config_path = dir.join("recall.toml");
    if !config_path.exists() {
        super::init::run(
            &InitArgs {
                dir: dir.to_path_buf(),
                demo: true,
                customers: 3000,
                name: "示例医美诊所（演示）".into(),
                seed: 2026,
            },
            now,
        )?;
    }
    let lang = super::lang();
    println!("{}", t!("demo.running", dir = dir.display()).render(lang));
    let config = config_path.display();
    println!("{}", t!("demo.other_terminal", config).render(lang));
    super::run::run(&config_path, clock)
}
