//! Tests of the `smtp` sender: the messages it composes, and its sessions
//! with a real SMTP server (aiosmtpd) on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
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

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content {
    subject: Some("王女士，好久不见：春季护理礼遇".into()),
    html: Some("<p>王女士您好：</p><p>春季护理礼遇已为您<b>预留</b>。</p>".into()),
    ..Content::text("王女士您好：\n\n春季护理礼遇已为您预留。")
});

fn message<'a>(recipient: &'a Recipient, address: &'a str) -> Outbound<'a> {
    Outbound {
        id: 31,
        channel: Channel::Email,
        rule_id: "warning-recall",
        template: "recall_offer",
        content: &CONTENT,
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
        provider_id.starts_with("<recall.31.") && provider_id.ends_with("@glow-clinic.example>"),
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
            content: &Content {
                html: None,
                ..CONTENT.clone()
            },
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
            content: &Content {
                subject: None,
                ..CONTENT.clone()
            },
            ..message(&recipient, "lily.wang@example.com")
        })
        .await;
    assert!(matches!(outcome, SendOutcome::Permanent { error } if error.contains("no subject")));
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
