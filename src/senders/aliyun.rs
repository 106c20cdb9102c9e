//! The `aliyun` sender. Not written yet: building it fails with a clear error.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildError, Context};
use crate::dispatch::sender::Sender;

/// `[senders.<name>]` with `kind = "..."` for this provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn build(name: &str, _config: &Config, _ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Err(BuildError::new(
        name,
        "this sender kind is not available in this build",
    ))
}
