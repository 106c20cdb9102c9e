//! The `smtp` sender: email through the clinic's mail server or a relay.
//!
//! One SMTP session per message (lettre, STARTTLS or implicit TLS with
//! rustls; plain only for a relay on the clinic's network, and only when the
//! config says `security = "plain"`). The message is multipart/alternative
//! when the template has an HTML part, carries `List-Unsubscribe` (and the
//! one-click `List-Unsubscribe-Post` when an https URL is configured), and a
//! `Message-ID` derived from the outreach id, so every retry of a message
//! has the same id and mailboxes that deduplicate on it show it once.
//!
//! SMTP answers decide the outcome: 5xx is permanent (5.1.1 unknown user
//! included), 4xx and anything that breaks the session (refused connection,
//! timeout, TLS failure) is retried. SMTP has no opt-out answer: unsubscribes
//! arrive through the List-Unsubscribe address or URL, outside this sender.
//! The password is read from the environment and never logged; neither is
//! the content or an unmasked address.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::kit::http;
use super::{BuildError, Context, Invalid, Problems};
use crate::base::mask;
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};

/// `[senders.<name>]` with `kind = "smtp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The mail server or relay (`smtp.example.com`).
    pub host: String,
    /// The server's port; by default 587 for `starttls`, 465 for `tls` and 25
    /// for `plain`.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is protected: `starttls` (the default; submission
    /// on port 587), `tls` (implicit TLS, "SMTPS", port 465) or `plain` (no
    /// encryption at all: only for a relay on this machine or the clinic's
    /// own network, and never with a password).
    #[serde(default)]
    pub security: Security,
    /// The login name, if the server wants one. Without it no AUTH is sent.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password, read only when
    /// `username` is set.
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// The sender address (`recall@clinic.example`); its domain is also the
    /// domain of every Message-ID.
    pub from: String,
    /// The name shown with the sender address (`光彩医美`).
    #[serde(default)]
    pub from_name: Option<String>,
    /// Where replies go, if not to `from` (the front desk's mailbox).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// An address that unsubscribes whoever writes to it, for the
    /// `List-Unsubscribe` header: `unsubscribe@clinic.example`, optionally
    /// with `?subject=...`. `{id}` (the outreach id) and `{customer}` (the
    /// customer's external id) are replaced, percent-encoded.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
    /// An https URL that unsubscribes with one click (RFC 8058), e.g.
    /// `https://clinic.example/unsubscribe?c={customer}&m={id}`. When set, the
    /// message also carries `List-Unsubscribe-Post: List-Unsubscribe=One-Click`,
    /// so the page must unsubscribe on a POST without asking anything more.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// How long to wait for the server at each step (default `30s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// A PEM file with the certificate of a private CA to trust besides the
    /// public ones (a relay with an internal certificate), relative to
    /// `recall.toml`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate, even an expired or self-signed one for another
    /// name. For testing or a self-signed relay on the clinic's own network
    /// only: it lets anyone in the path read the mail and the password.
    /// Prefer `ca_file`. Default false.
    #[serde(default)]
    pub accept_invalid_certs: bool,
    /// The name this client gives in EHLO; by default the machine's host name.
    #[serde(default)]
    pub hello_name: Option<String>,
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Connect in plain text, then upgrade with STARTTLS; refuse to go on
    /// without it.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption.
    Plain,
}

fn default_password_env() -> String {
    "SMTP_PASSWORD".to_string()
}

fn default_timeout() -> String {
    "30s".to_string()
}

/// Characters kept as they are in a substituted id: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What [`validate`] checked of an SMTP config: the addresses and the
/// unsubscribe links, ready for [`build`].
pub struct Checked {
    host: String,
    from: Mailbox,
    /// The from address's domain, for Message-IDs.
    domain: String,
    reply_to: Option<Mailbox>,
    unsubscribe_mailto: Option<String>,
    unsubscribe_url: Option<String>,
    /// How long to wait for the server at each step.
    timeout: Duration,
}

/// Checks a config without touching the environment, a file or the
/// network, and reports every problem at once.
pub fn validate(config: &Config) -> Result<Checked, Vec<Invalid>> {
    let mut problems = Problems::default();
    let host = config.host.trim();
    if host.is_empty() {
        problems.push(Invalid::new(
            "host",
            "host must name the mail server",
            "host 应写邮件服务器的地址",
        ));
    }
    let from_address = problems.take(config.from.trim().parse::<Address>().map_err(|e| {
        Invalid::new(
            "from",
            format!("from `{}` is not an email address: {e}", config.from),
            format!("from `{}` 不是邮箱地址", config.from),
        )
    }));
    let reply_to = problems.take(
        config
            .reply_to
            .as_deref()
            .map(|r| {
                r.trim().parse::<Mailbox>().map_err(|e| {
                    Invalid::new(
                        "reply_to",
                        format!("reply_to `{r}` is not an email address: {e}"),
                        format!("reply_to `{r}` 不是邮箱地址"),
                    )
                })
            })
            .transpose(),
    );
    let unsubscribe_mailto = problems.take(
        config
            .unsubscribe_mailto
            .as_deref()
            .map(unsubscribe_mailto)
            .transpose(),
    );
    let unsubscribe_url = problems.take(
        config
            .unsubscribe_url
            .as_deref()
            .map(unsubscribe_url)
            .transpose(),
    );
    if config.security == Security::Plain {
        if config.username.is_some() {
            problems.push(
                Invalid::new(
                    "security",
                    "security = \"plain\" would send the password unencrypted: use starttls or tls",
                    "security = \"plain\" 会以明文发送密码：请改用 starttls 或 tls",
                )
                .hint(
                    "write security = \"starttls\" (port 587) or \"tls\" (port 465); keep \"plain\" only for a relay that takes mail without a login, and then remove username",
                    "请写 security = \"starttls\"（端口 587）或 \"tls\"（端口 465）；\"plain\" 只用于无需登录的本地中继，这时请删除 username",
                ),
            );
        }
        if config.accept_invalid_certs || config.ca_file.is_some() {
            problems.push(Invalid::new(
                if config.ca_file.is_some() {
                    "ca_file"
                } else {
                    "accept_invalid_certs"
                },
                "accept_invalid_certs and ca_file need security = \"starttls\" or \"tls\"",
                "accept_invalid_certs 和 ca_file 需要 security = \"starttls\" 或 \"tls\"",
            ));
        }
    }
    let timeout = problems.take(http::timeout_setting(&config.timeout));
    let checked = from_address
        .zip(reply_to)
        .zip(unsubscribe_mailto.zip(unsubscribe_url))
        .zip(timeout);
    let checked = checked.map(
        |(((from_address, reply_to), (unsubscribe_mailto, unsubscribe_url)), timeout)| Checked {
            host: host.to_string(),
            from: Mailbox::new(
                config.from_name.clone().filter(|n| !n.trim().is_empty()),
                from_address.clone(),
            ),
            domain: from_address.domain().to_string(),
            reply_to,
            unsubscribe_mailto,
            unsubscribe_url,
            timeout,
        },
    );
    problems.finish(checked)
}

/// `unsubscribe_mailto` as the header takes it (`mailto:...`), checked.
fn unsubscribe_mailto(text: &str) -> Result<String, Invalid> {
    let text = text.trim();
    let text = text.strip_prefix("mailto:").unwrap_or(text);
    let wrong = |en: String| {
        Invalid::new(
            "unsubscribe_mailto",
            en,
            format!(
                "unsubscribe_mailto `{text}` 应是邮箱地址，可带 ?subject=...，占位符只能用 {{id}} 和 {{customer}}"
            ),
        )
    };
    check_placeholders(text).map_err(|e| wrong(format!("unsubscribe_mailto: {e}")))?;
    let address = text.split('?').next().unwrap_or_default();
    address.parse::<Address>().map_err(|e| {
        wrong(format!(
            "unsubscribe_mailto `{address}` is not an email address: {e}"
        ))
    })?;
    Ok(format!("mailto:{text}"))
}

/// `unsubscribe_url`, checked: https, only the known placeholders.
fn unsubscribe_url(text: &str) -> Result<String, Invalid> {
    let text = text.trim();
    let wrong = |en: String| {
        Invalid::new(
            "unsubscribe_url",
            en,
            format!(
                "unsubscribe_url `{text}` 应是 https:// 地址，占位符只能用 {{id}} 和 {{customer}}"
            ),
        )
    };
    check_placeholders(text).map_err(|e| wrong(format!("unsubscribe_url: {e}")))?;
    let sample = expand(text, 1, "C1");
    let url = reqwest::Url::parse(&sample)
        .map_err(|e| wrong(format!("unsubscribe_url `{text}`: {e}")))?;
    if url.scheme() != "https" {
        return Err(wrong(format!(
            "unsubscribe_url `{text}` must be https:// (one-click unsubscribe requires it)"
        )));
    }
    Ok(text.to_string())
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let error = |message: String| BuildError::new(name, message);
    let checked = validate(config).map_err(|p| BuildError::invalid(name, &p))?;
    let host = checked.host.as_str();
    let port = config.port.unwrap_or(match config.security {
        Security::Starttls => 587,
        Security::Tls => 465,
        Security::Plain => 25,
    });
    let tls = match config.security {
        Security::Plain => Tls::None,
        security => {
            let mut parameters = TlsParameters::builder(host.to_string())
                .dangerous_accept_invalid_certs(config.accept_invalid_certs);
            if let Some(file) = &config.ca_file {
                let path = ctx.base_dir.join(file);
                let pem = std::fs::read(&path)
                    .map_err(|e| error(format!("ca_file: cannot read {}: {e}", path.display())))?;
                let certificate = Certificate::from_pem(&pem).map_err(|e| {
                    error(format!(
                        "ca_file: {} is not a PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters
                .build_rustls()
                .map_err(|e| error(format!("TLS setup: {e}")))?;
            if security == Security::Tls {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        }
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(checked.timeout));
    if let Some(username) = &config.username {
        let password = ctx.secret(name, &config.password_env)?;
        transport = transport.credentials(Credentials::new(username.clone(), password));
    }
    if let Some(hello) = &config.hello_name {
        transport = transport.hello_name(ClientId::Domain(hello.trim().to_string()));
    }

    Ok(Arc::new(SmtpSender {
        name: name.to_string(),
        transport: transport.build(),
        from: checked.from,
        domain: checked.domain,
        reply_to: checked.reply_to,
        unsubscribe_mailto: checked.unsubscribe_mailto,
        unsubscribe_url: checked.unsubscribe_url,
        password_env: config
            .username
            .as_ref()
            .map(|_| config.password_env.clone()),
    }))
}

/// Only `{id}` and `{customer}` may appear in braces.
fn check_placeholders(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` has a `{{` without its `}}`"))?;
        let placeholder = &after[..end];
        if !matches!(placeholder, "id" | "customer") {
            return Err(format!(
                "unknown placeholder `{{{placeholder}}}` in `{text}`: use {{id}} (the outreach id) or {{customer}} (the customer's external id)"
            ));
        }
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{text}` has a `}}` without its `{{`"));
    }
    Ok(())
}

/// Replaces `{id}` and `{customer}`, percent-encoded.
fn expand(text: &str, id: i64, customer: &str) -> String {
    text.replace("{id}", &id.to_string()).replace(
        "{customer}",
        &utf8_percent_encode(customer, COMPONENT).to_string(),
    )
}

pub struct SmtpSender {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The from address's domain, for Message-IDs.
    domain: String,
    reply_to: Option<Mailbox>,
    unsubscribe_mailto: Option<String>,
    unsubscribe_url: Option<String>,
    /// Named in authentication errors, when there is a login.
    password_env: Option<String>,
}

impl SmtpSender {
    /// `<recall.{id}.{hash}@{domain}>`: the same on every retry of a message.
    /// The short hash of the customer, rule and template keeps ids apart if a
    /// database is ever started afresh and outreach ids repeat.
    fn message_id(&self, message: &Outbound<'_>) -> String {
        let mut hash = Sha256::new();
        hash.update(
            format!(
                "{}\n{}\n{}\n{}",
                message.id, message.recipient.external_id, message.rule_id, message.template
            )
            .as_bytes(),
        );
        let digest = hex::encode(hash.finalize());
        format!("<recall.{}.{}@{}>", message.id, &digest[..12], self.domain)
    }

    /// The email, or why this message cannot be one.
    fn compose(&self, message: &Outbound<'_>, message_id: &str) -> Result<Message, String> {
        let address: Address =
            message.address.trim().parse().map_err(|_| {
                format!("{} is not an email address", mask::address(message.address))
            })?;
        let subject = message
            .content
            .subject
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or("the email has no subject: give its template a subject")?;
        let name = message.recipient.name.trim();
        let to = Mailbox::new((!name.is_empty()).then(|| name.to_string()), address);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .date(SystemTime::from(message.now))
            .message_id(Some(message_id.to_string()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Recall-Outreach-Id"),
                message.id.to_string(),
            ));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let unsubscribe: Vec<String> = [&self.unsubscribe_mailto, &self.unsubscribe_url]
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "<{}>",
                    expand(t, message.id, &message.recipient.external_id)
                )
            })
            .collect();
        if !unsubscribe.is_empty() {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                unsubscribe.join(", "),
            ));
        }
        if self.unsubscribe_url.is_some() {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_string(),
            ));
        }
        let content = message.content;
        let built = match content.html.as_deref().filter(|h| !h.trim().is_empty()) {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                content.body.clone(),
                html.to_string(),
            )),
            None => builder.singlepart(SinglePart::plain(content.body.clone())),
        };
        built.map_err(|e| format!("cannot compose the email: {e}"))
    }

    /// What a failed SMTP session means.
    fn classify(
        &self,
        error: &lettre::transport::smtp::Error,
        message: &Outbound<'_>,
    ) -> SendOutcome {
        let text = super::kit::scrub_body(
            &error
                .to_string()
                .replace("Connection error: Connection error:", "Connection error:"),
            message,
            None,
        );
        let code = error.status().map(|c| c.to_string());
        if error.is_permanent() {
            let hint = match code.as_deref() {
                Some("530" | "535" | "534" | "538") => match &self.password_env {
                    Some(var) => format!(
                        " (authentication failed: a configuration problem; check username and {var})"
                    ),
                    None => {
                        " (the server wants a login: set username and password_env)".to_string()
                    }
                },
                _ if text.contains("5.1.1") => " (the mailbox does not exist)".to_string(),
                _ => String::new(),
            };
            return SendOutcome::Permanent {
                error: format!("the mail server refused the message: {text}{hint}"),
            };
        }
        let hint = if error.is_tls() || text.contains("certificate") {
            " (is the server's certificate trusted? a private CA goes in ca_file)"
        } else {
            ""
        };
        SendOutcome::Retryable {
            error: format!("SMTP: {text}{hint}"),
            retry_after: None,
        }
    }
}

#[async_trait]
impl Sender for SmtpSender {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let message_id = self.message_id(message);
        let email = match self.compose(message, &message_id) {
            Ok(email) => email,
            Err(error) => return SendOutcome::Permanent { error },
        };
        match self.transport.send(email).await {
            Ok(response) => {
                tracing::debug!(sender = %self.name, id = message.id, to = %mask::email(message.address),
                    code = %response.code(), %message_id, "mail server accepted the message");
                SendOutcome::Sent {
                    provider_id: message_id,
                }
            }
            Err(error) => self.classify(&error, message),
        }
    }
}

#[cfg(test)]
mod tests;
