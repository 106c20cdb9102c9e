//! Why a message was not sent (yet) and why a customer moved, as the
//! database keeps them: in English, as every version has written them
//! (`outreach.last_error`, `transitions.reason`). Whoever writes one
//! renders its catalogue sentence with [`stored`]; whoever shows one reads
//! it back with [`read_back`], so the outreach log speaks the reader's
//! language for rows written before and after.
//!
//! Never store a reason in Chinese or change a reason's English in
//! `messages.toml`: rows already written would no longer read back.
//! Provider errors and rule conditions are not sentences of ours: they
//! read back as they are.

use crate::base::i18n::{Lang, Text, read_back as read_through};
use crate::base::output::Cell;

/// The sentences a stored reason can be made of: the reasons, and the
/// words they name (a channel, a status). Tried in order: the fallback
/// comes first, as it closes a whole reason, whatever that reason ends in
/// (a time in quiet hours).
const KEYS: &[&str] = &[
    "reason.falling_back",
    // Before `reason.channel_error` ("{channel}: {error}"), which any
    // "word: sentence" would make.
    "reason.stale.moved",
    "reason.stale.visited",
    "reason.do_not_contact",
    "reason.no_consent.sms",
    "reason.no_consent.phone",
    "reason.no_consent.wechat",
    "reason.no_consent.email",
    "reason.no_address.phone",
    "reason.no_address.email",
    "reason.no_address.wechat",
    "reason.no_address.wecom",
    "reason.no_address.official",
    "reason.quiet_hours",
    "reason.cap",
    "reason.all_channels",
    "reason.opted_out_this_round",
    "reason.gave_up",
    "reason.in_doubt",
    "reason.interrupted",
    "reason.requeued_by_hand",
    "reason.channel_error",
    "reason.invalid_address",
    "move.first_record",
    "move.imported",
    "channel.sms",
    "channel.phone",
    "channel.wechat",
    "channel.email",
    "outreach.queued",
    "outreach.sending",
    "outreach.awaiting",
    "outreach.sent",
    "outreach.failed",
    "outreach.suppressed",
    "outreach.opted_out",
    "outreach.held_out",
    "outreach.stale",
    "pool.new",
    "pool.customer",
    "pool.warning",
    "pool.maintenance",
    "pool.churned",
];

/// A reason as the database keeps it: in English.
pub fn stored(reason: Text) -> String {
    reason.render(Lang::En)
}

/// The sentence a stored reason is, if it is one of ours.
pub fn read_back(stored: &str) -> Option<Text> {
    read_through(KEYS, stored)
}

/// A stored reason as a cell: the stored English for scripts, the
/// sentence in `lang` for people; a provider's own words as they are.
pub fn cell(stored: Option<String>, lang: Lang) -> Cell {
    match stored {
        None => Cell::Empty,
        Some(stored) => match read_back(&stored) {
            Some(text) => Cell::term(stored, &text, lang),
            None => Cell::Text(stored),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::i18n::{catalogue, t};

    #[test]
    fn every_reason_of_the_catalogue_reads_back() {
        let listed: Vec<&str> = catalogue()
            .entries()
            .map(|(key, _)| key)
            .filter(|key| ["reason.", "move."].iter().any(|p| key.starts_with(p)))
            .collect();
        for key in listed {
            assert!(KEYS.contains(&key), "{key} is missing from reason::KEYS");
        }
        for key in KEYS {
            assert!(
                catalogue().get(key).is_some(),
                "{key} is not in messages.toml"
            );
        }
    }

    #[test]
    fn a_stored_reason_reads_back_in_chinese_with_its_parts() {
        let zh = |s: &str| read_back(s).map(|t| t.render(Lang::Zh));
        assert_eq!(
            zh("no consent for sms").as_deref(),
            Some("顾客未同意接收短信")
        );
        let quiet = stored(t!(
            "reason.quiet_hours",
            channel = "wechat",
            until = "2026-03-01 09:00"
        ));
        assert_eq!(
            quiet,
            "quiet hours for wechat; waits until 2026-03-01 09:00"
        );
        assert_eq!(
            zh(&format!("[in doubt] {quiet}; falling back to sms")).as_deref(),
            Some("[不确定是否已发出] 微信免打扰时段；等到 2026-03-01 09:00 再发送；改用短信发送")
        );
        assert_eq!(
            zh("requeued by hand after: sms: HTTP 500 from provider").as_deref(),
            Some("已手动重新排队，此前：短信：HTTP 500 from provider")
        );
        assert_eq!(zh("HTTP 500 from provider"), None);
        assert_eq!(zh("days_in_pool >= 7 [days_in_pool=7]"), None);
    }

    #[test]
    fn a_cell_keeps_the_stored_english_for_scripts() {
        let cell = cell(Some("no wechat id on record".into()), Lang::Zh);
        assert_eq!(
            cell,
            Cell::Term {
                key: "no wechat id on record".into(),
                text: "没有登记微信".into()
            }
        );
    }
}
