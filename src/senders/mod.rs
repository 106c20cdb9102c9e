//! Sender implementations, one module per provider, and [`build`], which
//! turns a `[senders.<name>]` section into a running sender.

pub mod log;

use std::sync::Arc;

use crate::config::SenderConfig;
use crate::dispatch::sender::Sender;

/// A sender could not be built (a file could not be opened, a secret is missing).
#[derive(Debug, thiserror::Error)]
#[error("sender `{name}`: {message}")]
pub struct BuildError {
    pub name: String,
    pub message: String,
}

/// Builds the sender a config section describes.
pub fn build(name: &str, config: &SenderConfig) -> Result<Arc<dyn Sender>, BuildError> {
    match config {
        SenderConfig::Log { file } => log::LogSender::new(file.as_deref())
            .map(|s| Arc::new(s) as Arc<dyn Sender>)
            .map_err(|e| BuildError {
                name: name.to_string(),
                message: e.to_string(),
            }),
    }
}
