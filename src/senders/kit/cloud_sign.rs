//! What the Aliyun and Tencent SMS senders share: the settings both configs
//! have, the hashing and encoding their request signatures are built from,
//! and the provider template parameters. (China time, which their daily
//! limits follow, is `kit::china`.)
//!
//! Everything here is a pure function of its arguments: no clock, no
//! randomness, no network, so the signers built on it can be checked against
//! the providers' published examples byte for byte. Nothing here may log or
//! format a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use sha2::{Digest, Sha256};

use super::{env_names, http};
use crate::dispatch::sender::{Outbound, SendOutcome};
use crate::senders::{Invalid, Problems};

/// The checked settings both cloud SMS configs have, which say where and
/// how long to call (no secrets, no client yet).
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Url,
    /// The `Host` header the signature covers (with a non-default port).
    pub host: String,
    pub timeout: Duration,
}

/// Checks `endpoint` (an http(s) URL like `example`), `timeout` and the
/// settings that name the key pair's environment variables, the part of a
/// config the two cloud SMS senders share, adding what is wrong to
/// `problems`.
pub fn settings(
    problems: &mut Problems,
    endpoint: &str,
    example: &str,
    timeout: &str,
    key_vars: &[(&str, &str)],
) -> Option<Settings> {
    let connection = http::connection(problems, endpoint, example, timeout);
    for invalid in env_names(key_vars) {
        problems.push(invalid);
    }
    let http::Connection { endpoint, timeout } = connection?;
    Some(Settings {
        host: http::host_header(&endpoint).unwrap_or_default(),
        endpoint,
        timeout,
    })
}

/// `sign_name` must name the approved signature in `console` (`console_zh`
/// in Chinese).
pub fn sign_name_setting(value: &str, console: &str, console_zh: &str) -> Option<Invalid> {
    value.trim().is_empty().then(|| {
        Invalid::new(
            "sign_name",
            format!(
                "sign_name is empty: set it to the approved signature (签名) from the {console}"
            ),
            format!("sign_name 为空：请填写{console_zh}中审核通过的短信签名"),
        )
    })
}

/// A template mapping's `params` with an empty name.
pub fn empty_param_names(sender: &str, template: &str) -> Invalid {
    Invalid::new(
        format!("templates.{template}.params"),
        format!("[senders.{sender}.templates.{template}] params: names must not be empty"),
        format!("[senders.{sender}.templates.{template}] params：参数名不能为空"),
    )
}

/// Lower-case hex SHA-256, the `HexEncode(Hash(...))` of both signatures.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 unreserved characters stay; everything else is `%XX` (upper
/// case), spaces included (`%20`, never `+`).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes UTF-8 text the way both providers canonicalise it.
pub fn rfc3986(text: &str) -> String {
    utf8_percent_encode(text, RFC3986).to_string()
}

/// The provider template parameters of a message, in their written order.
/// They arrive as a JSON object of strings; anything else is a bug upstream
/// and reported as such. Numbers and booleans are taken as their text.
pub fn template_params(params: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(text) = params else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("the message's provider parameters are not JSON ({e})"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("the message's provider parameters are not a JSON object".to_string());
    };
    map.into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => Ok((key, s)),
            serde_json::Value::Number(n) => Ok((key, n.to_string())),
            serde_json::Value::Bool(b) => Ok((key, b.to_string())),
            other => Err(format!("provider parameter `{key}` is {other}, not text")),
        })
        .collect()
}

/// A message whose recall template sender `sender` maps to no `provider`
/// template: it fails, saying what to add to recall.toml:
/// `[senders.<sender>.templates.<template>]` with `keys`.
pub fn unmapped(sender: &str, provider: &str, template: &str, keys: &str) -> SendOutcome {
    SendOutcome::Permanent {
        error: format!(
            "sender `{sender}` has no {provider} template for recall template `{template}`: add [senders.{sender}.templates.{template}] with {keys} to recall.toml"
        ),
    }
}

/// The mapping sender `sender` has (in `templates`) for `message`'s recall
/// template, and what `params` makes of it; or why the message cannot go:
/// no mapping ([`unmapped`], saying what to add: a `provider` template,
/// `keys`), or parameters that do not fit.
pub fn mapped<'a, T, P>(
    templates: &'a BTreeMap<String, T>,
    sender: &str,
    message: &Outbound<'_>,
    (provider, keys): (&str, &str),
    params: impl FnOnce(&'a T) -> Result<P, String>,
) -> Result<(&'a T, P), SendOutcome> {
    let Some(mapping) = templates.get(message.template) else {
        return Err(unmapped(sender, provider, message.template, keys));
    };
    let params = params(mapping).map_err(|error| SendOutcome::Permanent { error })?;
    Ok((mapping, params))
}

/// The provider template parameters of `message`, or what is wrong with them
/// and which file to fix.
pub fn message_params(message: &Outbound<'_>) -> Result<Vec<(String, String)>, String> {
    template_params(message.content.params.as_deref()).map_err(|e| {
        format!(
            "{e} (recall template `{}`); check templates/{}/{}.params.toml",
            message.template,
            message.channel.as_str(),
            message.template
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_hmac_match_the_rfc_4231_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc3986_keeps_unreserved_and_encodes_the_rest() {
        assert_eq!(rfc3986("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(rfc3986("a b*c+d/e"), "a%20b%2Ac%2Bd%2Fe");
        assert_eq!(rfc3986("王"), "%E7%8E%8B");
        assert_eq!(rfc3986(r#"{"a":"1"}"#), "%7B%22a%22%3A%221%22%7D");
    }

    #[test]
    fn template_params_keep_their_order_and_must_be_an_object() {
        let params =
            template_params(Some(r#"{"name":"王女士","clinic":"美丽诊所","n":3}"#)).unwrap();
        assert_eq!(
            params,
            [
                ("name".to_string(), "王女士".to_string()),
                ("clinic".to_string(), "美丽诊所".to_string()),
                ("n".to_string(), "3".to_string()),
            ]
        );
        assert!(template_params(None).unwrap().is_empty());
        assert!(template_params(Some("[1]")).is_err());
        assert!(template_params(Some("{")).is_err());
    }
}
