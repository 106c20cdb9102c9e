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

use super::webhook::{duration, scrub};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};
use crate::mask;

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
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
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

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Characters kept as they are in a substituted id: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    let error = |message: String| BuildError::new(name, message);

    let host = config.host.trim();
    if host.is_empty() {
        return Err(error("host must name the mail server".to_string()));
    }
    let from_address: Address = config.from.trim().parse().map_err(|e| {
        error(format!(
            "from `{}` is not an email address: {e}",
            config.from
        ))
    })?;
    let from = Mailbox::new(
        config.from_name.clone().filter(|n| !n.trim().is_empty()),
        from_address.clone(),
    );
    let reply_to = config
        .reply_to
        .as_deref()
        .map(|r| {
            r.trim()
                .parse::<Mailbox>()
                .map_err(|e| error(format!("reply_to `{r}` is not an email address: {e}")))
        })
        .transpose()?;

    let unsubscribe_mailto = config
        .unsubscribe_mailto
        .as_deref()
        .map(|text| {
            let text = text.trim();
            let text = text.strip_prefix("mailto:").unwrap_or(text);
            check_placeholders(text).map_err(|e| error(format!("unsubscribe_mailto: {e}")))?;
            let address = text.split('?').next().unwrap_or_default();
            address.parse::<Address>().map_err(|e| {
                error(format!(
                    "unsubscribe_mailto `{address}` is not an email address: {e}"
                ))
            })?;
            Ok::<_, BuildError>(format!("mailto:{text}"))
        })
        .transpose()?;
    let unsubscribe_url = config
        .unsubscribe_url
        .as_deref()
        .map(|text| {
            let text = text.trim();
            check_placeholders(text).map_err(|e| error(format!("unsubscribe_url: {e}")))?;
            let sample = expand(text, 1, "C1");
            let url = reqwest::Url::parse(&sample)
                .map_err(|e| error(format!("unsubscribe_url `{text}`: {e}")))?;
            if url.scheme() != "https" {
                return Err(error(format!(
                    "unsubscribe_url `{text}` must be https:// (one-click unsubscribe requires it)"
                )));
            }
            Ok(text.to_string())
        })
        .transpose()?;

    let port = config.port.unwrap_or(match config.security {
        Security::Starttls => 587,
        Security::Tls => 465,
        Security::Plain => 25,
    });
    let tls = match config.security {
        Security::Plain => {
            if config.username.is_some() {
                return Err(error(
                    "security = \"plain\" would send the password unencrypted: use starttls or tls"
                        .to_string(),
                ));
            }
            if config.accept_invalid_certs || config.ca_file.is_some() {
                return Err(error(
                    "accept_invalid_certs and ca_file need security = \"starttls\" or \"tls\""
                        .to_string(),
                ));
            }
            Tls::None
        }
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
        .timeout(Some(config.timeout));
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
        from,
        domain: from_address.domain().to_string(),
        reply_to,
        unsubscribe_mailto,
        unsubscribe_url,
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
            .subject
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
        let built = match message.html.filter(|h| !h.trim().is_empty()) {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.content.to_string(),
                html.to_string(),
            )),
            None => builder.singlepart(SinglePart::plain(message.content.to_string())),
        };
        built.map_err(|e| format!("cannot compose the email: {e}"))
    }

    /// What a failed SMTP session means.
    fn classify(
        &self,
        error: &lettre::transport::smtp::Error,
        message: &Outbound<'_>,
    ) -> SendOutcome {
        let text = scrub(
            &error
                .to_string()
                .replace("Connection error: Connection error:", "Connection error:"),
            message,
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
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::model::Channel;
    use crate::senders::Secrets;
    use crate::store::outbox::Recipient;

    /// The aiosmtpd handler: refuses `nobody@` (550 5.1.1) and `busy@` (451),
    /// checks AUTH PLAIN against the login it was started with, and saves each
    /// message as NNN.eml plus NNN.json, a summary parsed by Python's own
    /// email package (decoded headers, every MIME part).
    const HANDLER: &str = r#"
import base64, email, email.policy, json, os
from aiosmtpd.smtp import AuthResult, LoginPassword

class Handler:
    def __init__(self, inbox, user="", password=""):
        self.inbox, self.user, self.password, self.count = inbox, user, password, 0

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)

    async def auth_PLAIN(self, server, args):
        if len(args) != 2:
            return AuthResult(success=False, handled=False)
        _, login, password = base64.b64decode(args[1]).split(b"\0")
        ok = bool(self.user) and login.decode() == self.user and password.decode() == self.password
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(login, password))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.user and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "nobody":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local == "busy":
            return "451 4.3.0 <%s>: Temporary lookup failure" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.inbox, "%03d" % self.count)
        raw = envelope.original_content
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        parts = [{"type": p.get_content_type(), "text": p.get_content()}
                 for p in parsed.walk() if not p.is_multipart()]
        summary = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.login_data.decode() if session.login_data else None,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "content_type": parsed.get_content_type(),
            "headers": {k: str(v) for k, v in parsed.items()},
            "parts": parts,
        }
        with open(base + ".tmp", "w") as f:
            json.dump(summary, f)
        os.rename(base + ".tmp", base + ".json")
        return "250 2.0.0 OK queued as %03d" % self.count
"#;

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Plain,
        Starttls,
        Tls,
    }

    /// A real aiosmtpd server on a free 127.0.0.1 port; killed when dropped.
    struct SmtpServer {
        child: Child,
        port: u16,
        dir: tempfile::TempDir,
    }

    impl Drop for SmtpServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    const PYTHON: &str = "/usr/bin/python3";

    fn run(command: &mut Command, what: &str) {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            output.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A CA and a certificate it signed for 127.0.0.1 and localhost, made
    /// with `openssl`: `ca.pem`, `server.pem`, `server.key` in `dir`.
    fn certificates(dir: &Path) {
        let has_openssl = Command::new("openssl").arg("version").output().is_ok();
        assert!(
            has_openssl,
            "the SMTP tests make their certificates with openssl: apt-get install openssl"
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(
            Command::new("openssl")
                .current_dir(dir)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-days", "2", "-subj", "/CN=recall test CA"])
                .args(["-keyout", "ca.key", "-out", "ca.pem"]),
            "openssl req (CA)",
        );
        run(
            Command::new("openssl")
                .current_dir(dir)
                .arg("req")
                .args(ec)
                .args([
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ]),
            "openssl req (server)",
        );
        run(
            Command::new("openssl").current_dir(dir).args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ]),
            "openssl x509 (sign)",
        );
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    impl SmtpServer {
        /// Starts `python3 -m aiosmtpd` with [`HANDLER`]; `login` makes it
        /// demand AUTH with that user and password.
        fn start(mode: Mode, login: Option<(&str, &str)>) -> SmtpServer {
            let has_aiosmtpd = Command::new(PYTHON)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                has_aiosmtpd,
                "the SMTP tests run a real server with Debian's aiosmtpd, which is missing: \
                 apt-get install python3-aiosmtpd (.ci/run installs it)"
            );
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("recall_test_smtp.py"), HANDLER).unwrap();
            let inbox = dir.path().join("inbox");
            std::fs::create_dir(&inbox).unwrap();
            let port = free_port();
            let mut command = Command::new(PYTHON);
            command
                .current_dir(dir.path())
                .env("PYTHONPATH", dir.path())
                .args(["-m", "aiosmtpd", "-n", "-c", "recall_test_smtp.Handler"])
                .args(["-l", &format!("127.0.0.1:{port}")]);
            if mode != Mode::Plain {
                certificates(dir.path());
                let flags = if mode == Mode::Starttls {
                    ["--tlscert", "--tlskey"]
                } else {
                    ["--smtpscert", "--smtpskey"]
                };
                command.args([flags[0], "server.pem", flags[1], "server.key"]);
            }
            command.arg(&inbox);
            if let Some((user, password)) = login {
                command.args([user, password]);
            }
            let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {PYTHON} -m aiosmtpd: {e}"));
            let mut server = SmtpServer { child, port, dir };
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = server.child.try_wait().unwrap();
                if exited.is_some() || std::time::Instant::now() > deadline {
                    panic!(
                        "aiosmtpd did not start ({exited:?}): {}",
                        std::fs::read_to_string(server.dir.path().join("stderr.log"))
                            .unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            server
        }

        /// The summaries of the messages received so far, in order.
        fn received(&self) -> Vec<serde_json::Value> {
            let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("inbox"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            names.sort();
            names
                .iter()
                .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
                .collect()
        }

        fn raw(&self, n: usize) -> String {
            std::fs::read_to_string(self.dir.path().join(format!("inbox/{n:03}.eml"))).unwrap()
        }

        fn ca(&self) -> PathBuf {
            self.dir.path().join("ca.pem")
        }
    }

    fn context() -> Context {
        Context {
            secrets: Secrets::Map(BTreeMap::from([(
                "SMTP_PASSWORD".to_string(),
                "pa55-word".to_string(),
            )])),
            ..Context::default()
        }
    }

    fn recipient() -> Recipient {
        Recipient {
            external_id: "C 0042".into(),
            name: "王丽".into(),
            ..Recipient::default()
        }
    }

    fn message<'a>(recipient: &'a Recipient, address: &'a str) -> Outbound<'a> {
        Outbound {
            id: 31,
            channel: Channel::Email,
            rule_id: "warning-recall",
            template: "recall_offer",
            subject: Some("王女士，好久不见：春季护理礼遇"),
            content: "王女士您好：\n\n春季护理礼遇已为您预留。",
            html: Some("<p>王女士您好：</p><p>春季护理礼遇已为您<b>预留</b>。</p>"),
            params: None,
            recipient,
            address,
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now: "2025-03-01T08:00:00Z".parse().unwrap(),
        }
    }

    fn sender(port: u16, extra: &str) -> Arc<dyn Sender> {
        let config: Config = toml::from_str(&format!(
            "host = \"127.0.0.1\"\nport = {port}\nfrom = \"recall@glow-clinic.example\"\n\
             timeout = \"5s\"\nhello_name = \"recall.test\"\n{extra}"
        ))
        .unwrap();
        build("mail", &config, &context()).unwrap()
    }

    #[tokio::test]
    async fn starttls_with_login_delivers_both_parts_and_the_unsubscribe_headers() {
        let server = SmtpServer::start(Mode::Starttls, Some(("recall", "pa55-word")));
        let sender = sender(
            server.port,
            &format!(
                "security = \"starttls\"\nca_file = {:?}\nusername = \"recall\"\n\
                 from_name = \"光彩医美\"\nreply_to = \"front-desk@glow-clinic.example\"\n\
                 unsubscribe_mailto = \"unsubscribe@glow-clinic.example?subject=unsubscribe%20{{customer}}\"\n\
                 unsubscribe_url = \"https://glow-clinic.example/u?c={{customer}}&m={{id}}\"\n",
                server.ca()
            ),
        );
        let recipient = recipient();
        let outcome = sender
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        let SendOutcome::Sent { provider_id } = outcome else {
            panic!("expected sent, got {outcome:?}");
        };
        assert!(
            provider_id.starts_with("<recall.31.")
                && provider_id.ends_with("@glow-clinic.example>"),
            "{provider_id}"
        );

        let received = server.received();
        assert_eq!(received.len(), 1);
        let mail = &received[0];
        assert_eq!(mail["tls"], true);
        assert_eq!(mail["login"], "recall");
        assert_eq!(mail["mail_from"], "recall@glow-clinic.example");
        assert_eq!(
            mail["rcpt_tos"],
            serde_json::json!(["lily.wang@example.com"])
        );
        let headers = &mail["headers"];
        assert_eq!(headers["From"], "光彩医美 <recall@glow-clinic.example>");
        assert_eq!(headers["To"], "王丽 <lily.wang@example.com>");
        assert_eq!(headers["Reply-To"], "front-desk@glow-clinic.example");
        assert_eq!(headers["Subject"], "王女士，好久不见：春季护理礼遇");
        assert_eq!(headers["Message-ID"], provider_id.as_str());
        assert_eq!(headers["X-Recall-Outreach-Id"], "31");
        assert_eq!(headers["Date"], "Sat, 01 Mar 2025 08:00:00 +0000");
        assert_eq!(
            headers["List-Unsubscribe"],
            "<mailto:unsubscribe@glow-clinic.example?subject=unsubscribe%20C%200042>, \
             <https://glow-clinic.example/u?c=C%200042&m=31>"
        );
        assert_eq!(
            headers["List-Unsubscribe-Post"],
            "List-Unsubscribe=One-Click"
        );
        assert_eq!(mail["content_type"], "multipart/alternative");
        let parts = mail["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["type"], "text/plain");
        assert_eq!(
            parts[0]["text"]
                .as_str()
                .unwrap()
                .replace("\r\n", "\n")
                .trim_end(),
            "王女士您好：\n\n春季护理礼遇已为您预留。"
        );
        assert_eq!(parts[1]["type"], "text/html");
        assert_eq!(
            parts[1]["text"].as_str().unwrap().trim_end(),
            "<p>王女士您好：</p><p>春季护理礼遇已为您<b>预留</b>。</p>"
        );

        // On the wire the headers are 7-bit: the Chinese subject is an
        // RFC 2047 encoded word, not raw UTF-8.
        let raw = server.raw(1);
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("Subject: =?utf-8?"), "{head}");
    }

    #[tokio::test]
    async fn the_message_id_is_the_same_on_every_retry() {
        let server = SmtpServer::start(Mode::Plain, None);
        let sender = sender(server.port, "security = \"plain\"\n");
        let recipient = recipient();
        let first = sender
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        let retry = Outbound {
            attempt: 2,
            ..message(&recipient, "lily.wang@example.com")
        };
        assert_eq!(sender.send(&retry).await, first);
        let other = Outbound {
            id: 32,
            ..message(&recipient, "lily.wang@example.com")
        };
        assert_ne!(sender.send(&other).await, first);
        let received = server.received();
        assert_eq!(received.len(), 3);
        assert_eq!(received[0]["tls"], false);
        assert_eq!(
            received[0]["headers"]["Message-ID"],
            received[1]["headers"]["Message-ID"]
        );
        assert_eq!(received[0]["headers"].get("List-Unsubscribe"), None);
    }

    #[tokio::test]
    async fn implicit_tls_sends_plain_text_alone_when_there_is_no_html() {
        let server = SmtpServer::start(Mode::Tls, None);
        let sender = sender(
            server.port,
            &format!(
                "security = \"tls\"\nca_file = {:?}\nunsubscribe_mailto = \"mailto:unsubscribe@glow-clinic.example\"\n",
                server.ca()
            ),
        );
        let recipient = recipient();
        let outcome = sender
            .send(&Outbound {
                html: None,
                ..message(&recipient, "lily.wang@example.com")
            })
            .await;
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
        let mail = &server.received()[0];
        assert_eq!(mail["tls"], true);
        assert_eq!(mail["content_type"], "text/plain");
        assert_eq!(mail["parts"].as_array().unwrap().len(), 1);
        assert_eq!(
            mail["headers"]["List-Unsubscribe"],
            "<mailto:unsubscribe@glow-clinic.example>"
        );
        assert_eq!(mail["headers"].get("List-Unsubscribe-Post"), None);
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_retried_unless_explicitly_accepted() {
        let server = SmtpServer::start(Mode::Tls, None);
        let recipient = recipient();
        let strict = sender(server.port, "security = \"tls\"\n");
        let outcome = strict
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        let SendOutcome::Retryable { error, .. } = outcome else {
            panic!("an untrusted certificate must be retryable, got {outcome:?}");
        };
        assert_eq!(
            error,
            "SMTP: Connection error: invalid peer certificate: UnknownIssuer \
             (is the server's certificate trusted? a private CA goes in ca_file)"
        );
        assert!(server.received().is_empty());
        let lax = sender(
            server.port,
            "security = \"tls\"\naccept_invalid_certs = true\n",
        );
        let outcome = lax
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_unknown_mailbox_is_permanent_and_a_busy_one_is_retried() {
        let server = SmtpServer::start(Mode::Plain, None);
        let sender = sender(server.port, "security = \"plain\"\n");
        let recipient = recipient();
        let outcome = sender
            .send(&message(&recipient, "nobody@example.com"))
            .await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("550 5.1.1 must be permanent, got {outcome:?}");
        };
        assert!(error.contains("550") && error.contains("5.1.1"), "{error}");
        assert!(error.contains("mailbox does not exist"), "{error}");
        assert!(!error.contains("nobody@"), "{error}");
        assert!(error.contains("n***@example.com"), "{error}");
        let outcome = sender.send(&message(&recipient, "busy@example.com")).await;
        let SendOutcome::Retryable {
            error,
            retry_after: None,
        } = outcome
        else {
            panic!("451 must be retryable, got {outcome:?}");
        };
        assert!(error.contains("451"), "{error}");
        assert!(server.received().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_permanent_configuration_problem() {
        let server = SmtpServer::start(Mode::Starttls, Some(("recall", "another-password")));
        let sender = sender(
            server.port,
            &format!("ca_file = {:?}\nusername = \"recall\"\n", server.ca()),
        );
        let recipient = recipient();
        let outcome = sender
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("535 must be permanent, got {outcome:?}");
        };
        assert!(
            error.contains("535") && error.contains("SMTP_PASSWORD"),
            "{error}"
        );
        assert!(!error.contains("pa55-word"), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_retried() {
        let sender = sender(free_port(), "security = \"plain\"\n");
        let recipient = recipient();
        let outcome = sender
            .send(&message(&recipient, "lily.wang@example.com"))
            .await;
        assert!(
            matches!(outcome, SendOutcome::Retryable { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_an_email_fails_without_a_connection() {
        let sender = sender(free_port(), "security = \"plain\"\n");
        let recipient = recipient();
        let outcome = sender.send(&message(&recipient, "13812345678")).await;
        assert_eq!(
            outcome,
            SendOutcome::Permanent {
                error: "138****5678 is not an email address".into()
            }
        );
        let outcome = sender
            .send(&Outbound {
                subject: None,
                ..message(&recipient, "lily.wang@example.com")
            })
            .await;
        assert!(
            matches!(outcome, SendOutcome::Permanent { error } if error.contains("no subject"))
        );
    }

    #[test]
    fn config_is_checked_before_anything_connects() {
        let parse = |text: &str| {
            toml::from_str::<Config>(&format!(
                "host = \"smtp.example.com\"\nfrom = \"a@clinic.example\"\n{text}"
            ))
        };
        let err = parse("pasword_env = \"X\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `pasword_env`"), "{err}");
        assert!(parse("security = \"ssl\"\n").is_err());
        let build_with = |text: &str| {
            build("mail", &parse(text).unwrap(), &context())
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(build_with(""), None);
        let missing =
            build_with("username = \"u\"\npassword_env = \"CLINIC_SMTP_PASSWORD\"\n").unwrap();
        assert!(missing.contains("CLINIC_SMTP_PASSWORD"), "{missing}");
        assert!(
            build_with("security = \"plain\"\nusername = \"u\"\n")
                .unwrap()
                .contains("unencrypted")
        );
        assert!(
            build_with("unsubscribe_url = \"http://clinic.example/u?c={customer}\"\n")
                .unwrap()
                .contains("https")
        );
        assert!(
            build_with("unsubscribe_url = \"https://clinic.example/u?c={email}\"\n")
                .unwrap()
                .contains("{email}")
        );
        assert!(build_with("unsubscribe_mailto = \"not an address\"\n").is_some());
        assert!(
            build_with("ca_file = \"/nonexistent/ca.pem\"\n")
                .unwrap()
                .contains("ca_file")
        );
        let err = build(
            "mail",
            &toml::from_str("host = \"h\"\nfrom = \"nope\"\n").unwrap(),
            &context(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("from"), "{err}");
    }
}
