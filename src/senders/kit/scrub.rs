//! One scrubber for whatever a provider says back, before it goes into an
//! error (stored in the outreach log) or a log line.
//!
//! Providers echo requests: the recipient's number (with or without its
//! country code), the customer's name, the message text, sometimes the
//! credentials. [`scrub`] takes all of these out: the number is masked in
//! every form it may come back in, the name masked, the content replaced by
//! `<content>`; and the text is made one line of at most 300 characters.
//! Secrets are redacted where the text is written (the log writer and the
//! store, `base::redact`), not here; [`scrub`] only redacts them before it
//! cuts the text, which would leave a cut secret unrecognisable there.

use crate::base::mask;
use crate::base::phone::{self, CountryCode};
use crate::dispatch::sender::Outbound;

/// Provider text fit for an error message and a log line. `region` is the
/// country whose numbers the sender reads without a country code (China
/// for the cloud SMS senders, Twilio's `default_country_code`), so that the
/// number is masked whether it comes back as typed, in E.164, without its
/// `+` or as its national digits.
pub fn scrub(text: &str, message: &Outbound<'_>, region: Option<CountryCode>) -> String {
    // Redacted here as well as at the log and the store, because the text
    // is cut below: a secret cut in two would no longer be recognised.
    let mut text = crate::base::redact::redact(text);
    let content = message.content.body.as_str();
    if !content.trim().is_empty() {
        text = text.replace(content, "<content>");
        // Echoed inside a JSON answer, the content is escaped.
        let escaped = serde_json::to_string(content).unwrap_or_default();
        text = text.replace(escaped.trim_matches('"'), "<content>");
    }
    let mut text = text.replace(['\r', '\n'], " ");
    let name = message.recipient.name.trim();
    if name.chars().count() >= 2 {
        text = text.replace(name, &mask::name(name));
    }
    // Longest form first, so a shorter one never cuts into a longer one.
    if let Ok(phone) = phone::parse(message.address, region) {
        for form in [phone.e164(), phone.digits(), phone.national().to_string()] {
            if form.len() >= 5 {
                text = text.replace(&form, &mask::phone(&form));
            }
        }
    }
    let address = message.address.trim();
    if !address.is_empty() {
        text = text.replace(address, &mask::address(address));
    }
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// A whole answer body, scrubbed; `(empty body)` when nothing is left, so
/// an error never ends in a bare colon.
pub fn scrub_body(body: &str, message: &Outbound<'_>, region: Option<CountryCode>) -> String {
    let text = scrub(body, message, region);
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::base::content::Content;
    use crate::base::model::Channel;
    use crate::store::outbox::Recipient;

    const CN: Option<CountryCode> = Some(CountryCode::CHINA);

    /// What the test message says.
    static CONTENT: LazyLock<Content> =
        LazyLock::new(|| Content::text("王女士您好，\"美丽诊所\"想念您"));

    fn message<'a>(recipient: &'a Recipient, address: &'a str) -> Outbound<'a> {
        Outbound {
            id: 7,
            channel: Channel::Sms,
            rule_id: "r",
            template: "t",
            content: &CONTENT,
            recipient,
            address,
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: "2026-03-02T01:02:03Z".parse().unwrap(),
        }
    }

    #[test]
    fn scrub_masks_the_number_in_provider_text() {
        let nobody = Recipient::default();
        let to = |address| message(&nobody, address);
        assert_eq!(
            scrub("bad number 13812345678", &to("13812345678"), CN),
            "bad number 138****5678"
        );
        assert_eq!(
            scrub("bad number 13812345678", &to("+8613812345678"), CN),
            "bad number 138****5678"
        );
        assert_eq!(
            scrub("bad number +8613812345678", &to("+8613812345678"), CN),
            "bad number +86138****5678"
        );
        // Typed nationally, echoed in E.164 or without its +.
        assert_eq!(
            scrub(
                "to +8613812345678 / 8613812345678",
                &to("138 1234 5678"),
                CN
            ),
            "to +86138****5678 / 86138****5678"
        );
        assert_eq!(
            scrub(
                "The 'To' number +447700900123",
                &to("07700 900123"),
                CountryCode::parse("44")
            ),
            "The 'To' number +4477****0123"
        );
    }

    #[test]
    fn content_and_name_come_out_and_the_text_is_one_short_line() {
        let lily = Recipient {
            name: "王丽丽".into(),
            ..Recipient::default()
        };
        let message = message(&lily, "+8613812345678");
        let echoed = format!(
            "{{\"text\": {}}}\r\nfor 王丽丽",
            serde_json::to_string(&message.content.body).unwrap()
        );
        assert_eq!(
            scrub(&echoed, &message, None),
            "{\"text\": \"<content>\"}  for 王**"
        );
        assert_eq!(
            scrub(
                &format!("refused: {}", message.content.body),
                &message,
                None
            ),
            "refused: <content>"
        );
        let long = scrub(&"x".repeat(400), &message, None);
        assert_eq!(long.chars().count(), 303);
        assert!(long.ends_with("..."));
        assert_eq!(scrub(" \n", &message, None), "");
        assert_eq!(scrub_body(" \n", &message, None), "(empty body)");
        assert_eq!(scrub_body("nope", &message, None), "nope");
    }
}
