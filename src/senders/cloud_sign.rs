//! What the Aliyun and Tencent SMS senders share: the hashing and encoding
//! their request signatures are built from, the `Host` a request is signed
//! for, `Retry-After`, China-time arithmetic for daily limits, the provider
//! template parameters, and the settings both configs have (endpoint,
//! timeout).
//!
//! Everything here is a pure function of its arguments: no clock, no
//! randomness, no network, so the signers built on it can be checked against
//! the providers' published examples byte for byte. Nothing here may log or
//! format a secret.

use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use sha2::{Digest, Sha256};

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

/// The `Host` header for a URL: host, plus the port when it is not the
/// scheme's default (test servers on 127.0.0.1). Requests set it
/// explicitly so the header sent is the header signed.
pub fn host_header(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// Checks an `endpoint` setting: an http(s) URL with a host and no query.
pub fn parse_endpoint(field: &str, value: &str, example: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| {
        format!("{field} `{value}` is not a URL ({e}); write it like \"{example}\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{field} `{value}` must be an http(s) URL like \"{example}\""
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{field} `{value}` must not carry a query or fragment; write it like \"{example}\""
        ));
    }
    Ok(url)
}

/// Checks a `timeout` setting ("10s", "1500ms").
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value.trim()) {
        Ok(d) if d.is_zero() => Err(format!("timeout `{value}` must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "timeout `{value}` is not a duration ({e}); write it like \"10s\""
        )),
    }
}

/// `Retry-After` as sent by the provider: delay-seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// China Standard Time (UTC+8, no daylight saving): the providers' daily
/// limits and send dates follow it.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The next time it is `hour`:00 in China, strictly after `now`.
pub fn next_china_hour(now: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let local = now.with_timezone(&china());
    let time = NaiveTime::from_hms_opt(hour, 0, 0).expect("hour below 24");
    let mut day = local.date_naive();
    if local.time() >= time {
        day = day + Days::new(1);
    }
    china()
        .from_local_datetime(&day.and_time(time))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// How long until a daily limit resets: China midnight, plus a minute so the
/// retry does not race the reset.
pub fn until_china_midnight(now: DateTime<Utc>) -> Duration {
    let reset = next_china_hour(now, 0) + chrono::Duration::minutes(1);
    (reset - now).to_std().unwrap_or(Duration::from_secs(60))
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

/// Replaces every occurrence of the recipient's number in provider text
/// with its masked form, so a provider message that echoes the number does
/// not carry it into logs. The number may come back with or without its
/// country code, so both forms are masked.
pub fn scrub(text: &str, phone: &str) -> String {
    let phone = phone.trim();
    let bare = phone.trim_start_matches('+');
    let mut forms = vec![phone, bare];
    // A mainland number also appears as its 11 national digits.
    if let Some(national) = bare.strip_prefix("86").filter(|n| n.len() == 11) {
        forms.push(national);
    }
    let mut text = super::redact_secrets(text);
    for form in forms {
        if form.len() >= 5 {
            text = text.replace(form, &crate::mask::phone(form));
        }
    }
    text
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
    fn host_keeps_only_a_non_default_port() {
        let url = Url::parse("https://dysmsapi.aliyuncs.com").unwrap();
        assert_eq!(host_header(&url).unwrap(), "dysmsapi.aliyuncs.com");
        let url = Url::parse("http://127.0.0.1:8123/").unwrap();
        assert_eq!(host_header(&url).unwrap(), "127.0.0.1:8123");
    }

    #[test]
    fn endpoints_and_timeouts_are_checked() {
        assert!(parse_endpoint("endpoint", "https://x.example", "https://x").is_ok());
        assert!(parse_endpoint("endpoint", "x.example", "https://x").is_err());
        assert!(parse_endpoint("endpoint", "ftp://x.example", "https://x").is_err());
        assert!(parse_endpoint("endpoint", "https://x.example/?a=1", "https://x").is_err());
        assert_eq!(
            parse_timeout("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(60)));
    }

    #[test]
    fn china_days_start_at_utc_four_pm() {
        // 15:30 UTC is 23:30 in Beijing: midnight is 31 minutes away (with
        // the minute of margin).
        let now = DateTime::parse_from_rfc3339("2026-03-01T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_china_midnight(now), Duration::from_secs(31 * 60));
        // 23:30 UTC is 07:30 in Beijing: 08:00 is the same China day.
        let now = DateTime::parse_from_rfc3339("2026-03-01T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            next_china_hour(now, 8).to_rfc3339(),
            "2026-03-02T00:00:00+00:00"
        );
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

    #[test]
    fn scrub_masks_the_number_in_provider_text() {
        assert_eq!(
            scrub("bad number 13812345678", "13812345678"),
            "bad number 138****5678"
        );
        assert_eq!(
            scrub("bad number 13812345678", "+8613812345678"),
            "bad number 138****5678"
        );
        assert_eq!(
            scrub("bad number +8613812345678", "+8613812345678"),
            "bad number +86138****5678"
        );
    }
}
