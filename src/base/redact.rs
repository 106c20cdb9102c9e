//! Secret redaction: the one place secrets and credential-like values are
//! taken out of text on its way to a log line or the database.
//!
//! Providers echo requests back in their errors (headers, URLs, bodies), so
//! any text a sender hands on may carry a secret. Two doors close on it,
//! and nothing reaches either sink around them:
//! - every log line goes through [`Redacting`], the writer the tracing
//!   subscriber is installed with (`cli::init_tracing`);
//! - every error, reason or note the store writes on a message
//!   (`outreach.last_error`) goes through [`redact`] inside `store::outbox`.
//!
//! What is redacted: every secret [`remember`]ed in this process (senders
//! resolve theirs through `senders::Context::secret`, which remembers it),
//! in the forms a provider may echo it, and the values of credential query
//! parameters (`?key=...`, `&access_token=...`) wherever a URL shows up.
//!
//! This module must never log, and imports nothing of recall's: the store
//! and the senders both sit above it.

use std::io::Write;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Every secret remembered in this process, in the forms a provider may
/// echo it: as is, without an auth scheme word ("Bearer x" → "x"),
/// percent- and form-encoded, JSON-escaped (once, and twice: a JSON log
/// line quoting a provider's JSON). Longest first, so a longer form is
/// replaced before a part of it.
static SECRET_FORMS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Auth scheme words that prefix a secret in a header value; the rest of
/// the value is a secret on its own.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "apikey", "key"];

/// What a URL component keeps unencoded: letters, digits and `-._~`.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Shorter secrets are not looked for: they would be found inside ordinary
/// words ("id" in "invalid") and mangle every message, and hide little.
pub const MIN_SECRET_LEN: usize = 6;

/// Query parameters whose values are credentials wherever a URL shows up
/// (`?access_token=...`, `&key=...`).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "apikey",
    "api_key",
];

/// Remembers a secret so that [`redact`] takes it out of text from now on.
/// A secret that is a URL (a webhook address) also has the values of its
/// credential query parameters remembered: a provider may echo the key
/// alone.
pub fn remember(secret: &str) {
    let value = secret.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut parts = vec![value.to_string()];
    // "Bearer abc" may be echoed as just "abc"; the words of a secret are
    // secrets too, unless they are a scheme word or too short to matter.
    for word in value.split_whitespace() {
        if word.len() >= MIN_SECRET_LEN
            && !AUTH_SCHEMES.contains(&word.to_ascii_lowercase().as_str())
        {
            parts.push(word.to_string());
        }
    }
    parts.extend(
        query_values(value)
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN),
    );
    let mut forms = SECRET_FORMS.write().unwrap_or_else(|p| p.into_inner());
    for part in parts {
        let all = percent_encoding::utf8_percent_encode(&part, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let percent = percent_encoding::utf8_percent_encode(&part, URL_COMPONENT).to_string();
        let form = percent.replace("%20", "+");
        let json = json_escaped(&part);
        let json_twice = json_escaped(&json);
        let lower = percent.to_ascii_lowercase();
        for f in [all, lower, percent, form, json_twice, json, part] {
            if !f.is_empty() && !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// `text` as it reads inside a JSON string.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// `text` with every remembered secret, in every form, and the values of
/// credential query parameters replaced with [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut text = text.to_string();
    {
        let forms = SECRET_FORMS.read().unwrap_or_else(|p| p.into_inner());
        for form in forms.iter() {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
    }
    redact_query_tokens(&text)
}

/// Where the value of a query parameter that starts at `text[0]` ends: at
/// the next `&`, `#`, quote, backslash (an escaped quote in JSON) or space.
fn value_end(text: &str) -> usize {
    text.find(|c: char| matches!(c, '&' | '#' | '"' | '\'' | '\\') || c.is_whitespace())
        .unwrap_or(text.len())
}

/// `...?key=abc&x=1` → `...?key=[redacted]&x=1`, for the names in
/// [`SECRET_PARAMS`].
fn redact_query_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let Some(eq) = rest.find('=') else { continue };
        let name = &rest[..eq];
        if !SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
            continue;
        }
        let end = eq + 1 + value_end(&rest[eq + 1..]);
        out.push_str(&rest[..=eq]);
        if end > eq + 1 {
            out.push_str(REDACTED);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The values of credential query parameters in `text`.
fn query_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        rest = &rest[i + 1..];
        let Some(eq) = rest.find('=') else { break };
        if SECRET_PARAMS
            .iter()
            .any(|p| rest[..eq].eq_ignore_ascii_case(p))
        {
            let value = &rest[eq + 1..];
            values.push(value[..value_end(value)].to_string());
        }
    }
    values
}

/// A `tracing_subscriber` writer that redacts each log line before the
/// inner writer sees it. The formatter writes one event per writer it
/// makes; the line is held until the writer is dropped, then redacted and
/// written whole, so a secret split across two `write` calls is still found.
pub struct Redacting<M>(pub M);

impl<'a, M> tracing_subscriber::fmt::MakeWriter<'a> for Redacting<M>
where
    M: tracing_subscriber::fmt::MakeWriter<'a>,
{
    type Writer = RedactedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            line: Vec::new(),
            inner: self.0.make_writer(),
        }
    }
}

/// One log line on its way through [`Redacting`].
pub struct RedactedLine<W: Write> {
    line: Vec<u8>,
    inner: W,
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let clean = redact(&String::from_utf8_lossy(&self.line));
        // A log line that cannot be written has nowhere to be reported.
        let _ = self
            .inner
            .write_all(clean.as_bytes())
            .and_then(|()| self.inner.flush());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn remembered_secrets_and_their_derived_forms_are_redacted() {
        remember("Bearer TOPSECRET-abc");
        remember("k3y/with+odd chars");
        let echoed = "got Authorization: Bearer TOPSECRET-abc; token TOPSECRET-abc; \
                      url /send?u=1&apikey=k3y%2Fwith%2Bodd%20chars; form k3y%2Fwith%2Bodd+chars; \
                      json \"k3y/with+odd chars\"; https://x.example/hook?key=other-key-value&a=1";
        let clean = redact(echoed);
        assert!(!clean.contains("TOPSECRET"), "{clean}");
        assert!(!clean.contains("k3y"), "{clean}");
        assert!(!clean.contains("other-key-value"), "{clean}");
        assert!(clean.contains("got Authorization: [redacted];"), "{clean}");
        assert!(clean.contains("hook?key=[redacted]&a=1"), "{clean}");
        assert_eq!(redact("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn json_escaped_once_and_twice_is_redacted_and_the_json_stays_valid() {
        remember("quo\"ted-secret");
        let once = serde_json::to_string("error: quo\"ted-secret").unwrap();
        let twice = serde_json::to_string(&once).unwrap();
        for text in [once, twice] {
            let clean = redact(&text);
            assert!(!clean.contains("ted-secret"), "{clean}");
            serde_json::from_str::<String>(&clean).unwrap();
        }
        // A query value ends before an escaped quote, keeping JSON whole.
        let line = serde_json::json!({"error": "see \"/x?token=abc123\" now"}).to_string();
        let clean = redact(&line);
        assert!(!clean.contains("abc123"), "{clean}");
        serde_json::from_str::<serde_json::Value>(&clean).unwrap();
    }

    #[test]
    fn a_secret_that_is_a_url_has_its_key_remembered_alone() {
        remember("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key-4711");
        assert_eq!(
            redact("the key robot-key-4711 is wrong"),
            "the key [redacted] is wrong"
        );
    }

    #[test]
    fn short_secrets_are_not_searched_for() {
        remember("abc");
        assert_eq!(redact("abc is fine"), "abc is fine");
    }

    /// A writer into a shared buffer, standing in for stderr.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_log_line_is_redacted_before_it_is_written() {
        remember("log-line-secret-99");
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Redacting(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(error = "refused: log-line-secret-99", "could not notify");
            tracing::warn!(outcome = ?"url=/send?key=abcdef123", "failed");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("could not notify") && text.contains("failed"),
            "{text}"
        );
        assert!(!text.contains("log-line-secret-99"), "{text}");
        assert!(!text.contains("abcdef123"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 2, "{text}");
    }
}
