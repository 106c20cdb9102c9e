//! The sender kit: what the senders are built from, as Vector keeps
//! `sinks/util/`, so that no sender writes its own plumbing.
//!
//! - [`http`]: one HTTP client builder and one timeout convention
//!   (`timeout = "10s"`, read by `validate`), the `endpoint` and `timeout`
//!   settings as `validate` reports them, `Retry-After`, reading an answer,
//!   transport errors as text without their URL.
//! - [`scrub`]: one scrubber for provider text: the recipient's number in
//!   every form, name and message content out of it.
//! - [`cloud_sign`]: what the Aliyun and Tencent signers and configs share.
//! - [`china`]: China time, which providers' daily and monthly limits follow.
//! - [`secrets`]: several secrets of one sender, every missing one named;
//!   [`env_names`]: the settings that name their variables.
//!
//! Phone numbers are read by `base::phone`, the one reader for every sender
//! (and for import and search).
//!
//! Nothing here logs. Nothing here may put a secret, a URL (its query may
//! carry a number or a key), message content or an unmasked number into the
//! text it returns.

pub mod china;
pub mod cloud_sign;
pub mod http;
pub mod scrub;

pub use http::{client, default_timeout_text, describe, retry_after};
pub use scrub::{scrub, scrub_body};

use super::{BuildError, Context, Invalid};

/// The secrets in the environment variables `vars`, in order, for sender
/// `name`; or one error naming every variable that is missing.
pub fn secrets<const N: usize>(
    ctx: &Context,
    name: &str,
    vars: [&str; N],
) -> Result<[String; N], BuildError> {
    let mut failed = Vec::new();
    let found = vars.map(|var| {
        ctx.secret(name, var)
            .map_err(|e| failed.push(e))
            .unwrap_or_default()
    });
    if failed.is_empty() {
        Ok(found)
    } else {
        Err(BuildError::all(name, failed))
    }
}

/// What is wrong with settings that name environment variables
/// (`access_key_id_env`, ...): each must name one.
pub fn env_names(settings: &[(&str, &str)]) -> Vec<Invalid> {
    settings
        .iter()
        .filter(|(_, var)| var.trim().is_empty())
        .map(|(field, _)| {
            Invalid::new(
                *field,
                format!("{field} is empty: name the environment variable that holds the secret"),
                format!("{field} 为空：请写出保存该密钥的环境变量名"),
            )
        })
        .collect()
}
