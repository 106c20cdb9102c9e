//! What a message says: the one type of a message's content, from the
//! template that renders it to the sender that sends it.
//!
//! `templates` renders a `Content`; the tick writes it to the outbox
//! (`store::ticks::NewMessage`), with the content rendered for the channel's
//! fallback (`store::outbox::Fallback`); the dispatcher claims it back
//! (`store::outbox::Claimed`) and lends it to the sender
//! (`dispatch::sender::Outbound::content`). Nothing copies it field by field.
//! It never holds who the message goes to: addresses live with the recipient.

use serde::{Deserialize, Serialize};

/// A message's content, as rendered for one channel.
///
/// Serialized (in the outbox's stored fallback) with the body under the name
/// `content`, as every version of `recall` has written it:
/// `{"subject":null,"content":"…","html":null,"params":null}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The subject line: email only.
    pub subject: Option<String>,
    /// The text: the SMS, the WeChat message, the call script, an email's
    /// plain-text part.
    #[serde(rename = "content")]
    pub body: String,
    /// The HTML part: email only.
    pub html: Option<String>,
    /// Provider template parameters as a JSON object of strings, rendered
    /// from `<template>.params.toml`, for providers that send approved
    /// templates rather than free text (Chinese SMS providers, WeChat
    /// template messages).
    pub params: Option<String>,
}

impl Content {
    /// Text alone: no subject, HTML or provider parameters.
    pub fn text(body: impl Into<String>) -> Content {
        Content {
            body: body.into(),
            ..Content::default()
        }
    }
}
