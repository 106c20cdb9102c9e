//! The clinic's setup, loaded and checked together: `recall.toml`, the
//! templates and the rules (checked against the templates and the configured
//! channels). Every command that evaluates rules, the service and its
//! reloads, and the rule tests start from a [`Loaded`]. `scaffold` holds the
//! shipped files `recall init` writes.

pub mod scaffold;
pub mod writable;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::diag::Diagnostic;
use crate::base::i18n::t;
use crate::config::{self, Config};
use crate::rules::{Action, Assign, Rule, RuleSet};
use crate::senders::SenderConfig;
use crate::templates::TemplateSet;

/// Everything loaded and checked before the service starts: the
/// configuration (the senders' settings included), templates and rules.
pub struct Loaded {
    pub config: Config,
    pub rules: Arc<RuleSet>,
    pub templates: Arc<TemplateSet>,
}

/// Folders that replace the clinic's own for one command: a proposal's
/// rules and templates, checked, tested or simulated before they go live.
#[derive(Debug, Clone, Default)]
pub struct Folders {
    pub rules: Option<PathBuf>,
    pub templates: Option<PathBuf>,
}

impl Loaded {
    /// Reads `recall.toml` and checks the senders' settings, then the
    /// templates, then the rules (which are
    /// checked against the templates and the configured channels). Returns
    /// everything with its warnings, or every error found.
    pub fn load(config_path: &Path) -> crate::base::diag::Checked<Loaded> {
        Loaded::load_with(config_path, &Folders::default())
    }

    /// [`Loaded::load`] with the rules and templates read from `folders`
    /// where it names them, instead of the folders `recall.toml` names.
    pub fn load_with(config_path: &Path, folders: &Folders) -> crate::base::diag::Checked<Loaded> {
        let mut config = config::load(config_path)?;
        if let Some(rules) = &folders.rules {
            config.rules_dir = rules.clone();
        }
        if let Some(templates) = &folders.templates {
            config.templates_dir = templates.clone();
        }
        let mut report = crate::base::diag::Report::default();
        let senders = match crate::senders::configs(&config) {
            Ok(senders) => senders,
            Err(errors) => {
                report.extend(errors);
                Default::default()
            }
        };
        let templates = match crate::templates::load(&config.templates_dir) {
            Ok((templates, warnings)) => {
                report.extend(warnings);
                Some(templates)
            }
            Err(errors) => {
                report.extend(errors);
                None
            }
        };
        let rules = match crate::rules::load(&config.rules_dir, templates.as_ref()) {
            Ok((rules, warnings)) => {
                report.extend(warnings);
                Some(rules)
            }
            Err(errors) => {
                report.extend(errors);
                None
            }
        };
        match (templates, rules) {
            (Some(templates), Some(rules)) if !report.has_errors() => {
                for rule in rules.rules.iter().filter(|r| r.enabled) {
                    for action in &rule.actions {
                        if !config.channels.contains_key(&action.channel) {
                            report.push(
                                crate::base::diag::Diagnostic::warning(
                                    &rule.origin.file,
                                    Some(action.span.clone()),
                                    t!("setup.no_sender", id = &rule.id, channel = action.channel),
                                )
                                .hint(t!(
                                    "setup.no_sender_hint",
                                    channel = action.channel,
                                    config = config.path.display()
                                )),
                            );
                        }
                        if action.assign == Assign::Advisor
                            && let Some(warning) = no_advisors(&config, &senders, rule, action)
                        {
                            report.push(warning);
                        }
                        let fallback = config
                            .channels
                            .get(&action.channel)
                            .and_then(|p| p.fallback);
                        let sent_on = std::iter::once(action.channel)
                            .chain(fallback.filter(|f| templates.has(*f, &action.template)));
                        for channel in sent_on {
                            if let Some(error) =
                                no_template_code(&config, &senders, rule, action, channel)
                            {
                                report.push(error);
                            }
                        }
                        if let Some(fallback) = fallback
                            && !templates.has(fallback, &action.template)
                        {
                            let template = &action.template;
                            report.push(
                                crate::base::diag::Diagnostic::warning(
                                    &rule.origin.file,
                                    Some(action.span.clone()),
                                    t!(
                                        "setup.no_fallback_template",
                                        id = &rule.id,
                                        template,
                                        channel = action.channel,
                                        fallback
                                    ),
                                )
                                .hint(t!(
                                    "setup.no_fallback_template_hint",
                                    fallback,
                                    template
                                )),
                            );
                        }
                    }
                }
                if report.has_errors() {
                    return Err(report);
                }
                Ok((
                    Loaded {
                        config,
                        rules: Arc::new(rules),
                        templates: Arc::new(templates),
                    },
                    report,
                ))
            }
            _ => Err(report),
        }
    }
}

/// An error when `action` sends its template on `channel` through a sender
/// that sends a provider's approved templates (Aliyun or Tencent SMS, a
/// WeChat Official Account) and maps none to it: the provider would refuse
/// every such message.
fn no_template_code(
    config: &Config,
    senders: &std::collections::BTreeMap<String, SenderConfig>,
    rule: &Rule,
    action: &Action,
    channel: crate::base::model::Channel,
) -> Option<Diagnostic> {
    let sender = &config.channels.get(&channel)?.sender;
    let keys = senders.get(sender)?.lacks_template(&action.template)?;
    let template = &action.template;
    Some(
        Diagnostic::error(
            &rule.origin.file,
            Some(action.span.clone()),
            t!(
                "setup.no_template_code",
                id = &rule.id,
                template,
                channel,
                sender
            ),
        )
        .hint(t!(
            "setup.no_template_code_hint",
            sender,
            template,
            keys,
            config = config.path.display()
        )),
    )
}

/// A warning when a phone action gives calls to the customer's advisor but
/// the phone channel's sender names no advisor: every such call would go
/// to the round robin. `None` when it does, or when the channel has no
/// sender (warned about on its own).
fn no_advisors(
    config: &Config,
    senders: &std::collections::BTreeMap<String, SenderConfig>,
    rule: &Rule,
    action: &Action,
) -> Option<Diagnostic> {
    let sender = &config.channels.get(&action.channel)?.sender;
    let message = match senders.get(sender)? {
        SenderConfig::PhoneTasks(calls) if calls.staff.iter().any(|s| s.advisor) => return None,
        SenderConfig::PhoneTasks(_) => t!("setup.assign_no_advisors", id = &rule.id, sender),
        other => t!(
            "setup.assign_not_phone_tasks",
            id = &rule.id,
            sender,
            kind = other.kind()
        ),
    };
    Some(
        Diagnostic::warning(
            &rule.origin.file,
            Some(action.assign_span.clone().unwrap_or(action.span.clone())),
            message,
        )
        .hint(t!(
            "setup.assign_no_advisors_hint",
            config = config.path.display()
        )),
    )
}
