//! `recall facts`: the facts rule conditions can use, with their definitions.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{Book, Format, Rows};
use crate::base::output::{Output, Section};
use crate::facts::CATALOGUE;

#[derive(Debug, Args)]
pub struct FactsArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: FactsFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FactsFormat {
    Table,
    Markdown,
    Json,
}

/// `recall facts`.
pub(super) fn run(args: &FactsArgs) -> Result<ExitCode> {
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match format {
        FactsFormat::Markdown => write!(out, "{}", facts_markdown())?,
        FactsFormat::Table | FactsFormat::Json => {
            let mut rows = Rows::new(&["fact", "type", "nullable", "definition", "定义"]);
            for f in CATALOGUE {
                rows.push::<String>(vec![
                    f.name.into(),
                    f.ty.as_str().into(),
                    if f.nullable { "yes" } else { "no" }.into(),
                    f.definition.into(),
                    f.definition_zh.into(),
                ]);
            }
            if format == FactsFormat::Json {
                let output = Output {
                    format: Format::Json,
                    path: None,
                    bom: false,
                    lang: super::lang(),
                };
                super::write(
                    &output,
                    &Book::one(Section::new("facts", String::new(), rows)),
                )?;
            } else {
                rows.write_table(&mut out, None)?;
            }
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
}
