//! The `log` sender: records each message and marks it sent, without
//! reaching the customer.
//!
//! Used for the demo, for trying rules on real data before a provider is
//! configured, and as a channel of its own for clinics that work the outbox
//! by hand. Every message it takes is in the outreach log (`recall log`)
//! with status `sent` and sender `log`; if `file` is set, it is also
//! appended to that file as one JSON line, flushed before the send returns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuildError, Context};
use crate::base::mask;
use crate::base::perm;
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};

/// `[senders.<name>]` with `kind = "log"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional JSON-lines file every message is appended to (relative to
    /// `recall.toml`). Addresses in it are masked.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let file = config.file.as_ref().map(|f| ctx.base_dir.join(f));
    LogSender::new(file.as_deref())
        .map(|s| Arc::new(s) as Arc<dyn Sender>)
        .map_err(|e| BuildError::new(name, e.to_string()))
}

pub struct LogSender {
    file: Option<Mutex<File>>,
}

impl LogSender {
    /// Opens (creating, appending) the file if one is given.
    pub fn new(file: Option<&Path>) -> std::io::Result<Self> {
        let file = match file {
            None => None,
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    perm::create_dir(dir, perm::PRIVATE_FOLDER).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot create {}: {e}", dir.display()),
                        )
                    })?;
                }
                let mut options = OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, perm::PRIVATE_FILE);
                Some(Mutex::new(options.open(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?))
            }
        };
        Ok(LogSender { file })
    }
}

#[async_trait]
impl Sender for LogSender {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let provider_id = format!("log-{}", message.id);
        if let Some(file) = &self.file {
            let line = serde_json::json!({
                "id": message.id,
                "provider_id": provider_id,
                "channel": message.channel.as_str(),
                "customer": message.recipient.external_id,
                "to": mask::address(message.address),
                "rule": message.rule_id,
                "template": message.template,
                "subject": message.content.subject,
                "content": message.content.body,
            });
            let written = file
                .lock()
                .map_err(|_| std::io::Error::other("log file lock poisoned"))
                .and_then(|mut f| {
                    writeln!(f, "{line}")?;
                    f.flush()
                });
            if let Err(e) = written {
                return SendOutcome::Retryable {
                    error: format!("cannot write the outbox file: {e}"),
                    retry_after: None,
                };
            }
        }
        tracing::info!(
            id = message.id,
            channel = message.channel.as_str(),
            to = %mask::address(message.address),
            customer = %message.recipient.external_id,
            rule = message.rule_id,
            template = message.template,
            "logged message"
        );
        SendOutcome::Sent { provider_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::content::Content;
    use crate::base::model::Channel;
    use crate::store::outbox::Recipient;

    #[tokio::test]
    async fn appends_one_json_line_per_message_and_masks_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/outbox.log");
        let sender = LogSender::new(Some(&path)).unwrap();
        let recipient = Recipient {
            external_id: "C1".into(),
            ..Recipient::default()
        };
        let content = Content::text("王女士您好");
        let message = Outbound {
            id: 7,
            channel: Channel::Sms,
            rule_id: "r",
            template: "t",
            content: &content,
            recipient: &recipient,
            address: "13812345678",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: chrono::Utc::now(),
        };
        assert_eq!(
            sender.send(&message).await,
            SendOutcome::Sent {
                provider_id: "log-7".into()
            }
        );
        sender.send(&Outbound { id: 8, ..message }).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["to"], "138****5678");
        assert_eq!(lines[0]["content"], "王女士您好");
        assert_eq!(lines[1]["provider_id"], "log-8");
        assert!(!text.contains("13812345678"));
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_fails_the_build() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "").unwrap();
        let err = LogSender::new(Some(&dir.path().join("blocker/outbox.log")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("blocker"), "{err}");
    }
}
