//! Tests of the `twilio` sender, against a real HTTP server on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::store::outbox::Recipient;
use crate::testing::{Reply, TestServer};

const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn context() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "TWILIO_AUTH_TOKEN".to_string(),
            "tok-secret".to_string(),
        )])),
        ..Context::default()
    }
}

/// What the test message says.
static CONTENT: LazyLock<Content> =
    LazyLock::new(|| Content::text("Hi Lily, it has been a while. Reply STOP to opt out."));

fn message<'a>(recipient: &'a Recipient, address: &'a str) -> Outbound<'a> {
    Outbound {
        id: 12,
        channel: Channel::Sms,
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

fn sender(endpoint: &str, extra: &str) -> Arc<dyn Sender> {
    let config: Config = toml::from_str(&format!(
        "account_sid = \"{SID}\"\nendpoint = \"{endpoint}\"\n{extra}"
    ))
    .unwrap();
    build("twilio", &config, &context()).unwrap()
}

fn twilio_error(status: u16, code: i64, text: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"code": code, "message": text, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

async fn send_one(reply: Reply) -> (SendOutcome, Vec<crate::testing::Recorded>) {
    let server = TestServer::start(move |_, _| reply.clone()).await;
    let sender = sender(&server.url, "from = \"+14155550100\"\n");
    let recipient = Recipient::default();
    let outcome = sender.send(&message(&recipient, "+14155550123")).await;
    (outcome, server.requests())
}

#[tokio::test]
async fn posts_the_form_with_basic_auth_and_returns_the_message_sid() {
    let (outcome, requests) = send_one(Reply::json(
        201,
        serde_json::json!({"sid": "SM1234", "status": "queued"}),
    ))
    .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "SM1234".into()
        }
    );
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.target,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:tok-secret"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = request.form();
    assert_eq!(
        form,
        [
            ("To".to_string(), "+14155550123".to_string()),
            ("From".to_string(), "+14155550100".to_string()),
            (
                "Body".to_string(),
                "Hi Lily, it has been a while. Reply STOP to opt out.".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn a_messaging_service_and_a_default_country_code_shape_the_request() {
    let server =
        TestServer::start(|_, _| Reply::json(201, serde_json::json!({"sid": "SM9"}))).await;
    let sender = sender(
        &server.url,
        "messaging_service_sid = \"MG0123456789abcdef0123456789abcdef\"\ndefault_country_code = \"+44\"\n",
    );
    let recipient = Recipient::default();
    sender.send(&message(&recipient, "07700 900123")).await;
    let form = server.requests()[0].form();
    assert_eq!(form[0], ("To".to_string(), "+447700900123".to_string()));
    assert_eq!(
        form[1],
        (
            "MessagingServiceSid".to_string(),
            "MG0123456789abcdef0123456789abcdef".to_string()
        )
    );
}

#[tokio::test]
async fn a_number_without_country_code_fails_before_anything_is_sent() {
    let server =
        TestServer::start(|_, _| Reply::json(201, serde_json::json!({"sid": "SM9"}))).await;
    let sender = sender(&server.url, "from = \"+14155550100\"\n");
    let recipient = Recipient::default();
    let SendOutcome::Permanent { error } = sender.send(&message(&recipient, "4155550123")).await
    else {
        panic!("a national number must be refused");
    };
    assert!(
        error.contains("no country code") && error.contains("default_country_code"),
        "{error}"
    );
    assert!(!error.contains("4155550123"), "{error}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn stop_replies_are_opt_outs() {
    let (outcome, _) = send_one(twilio_error(
        400,
        21610,
        "Attempt to send to unsubscribed recipient",
    ))
    .await;
    assert!(matches!(outcome, SendOutcome::OptedOut { reason } if reason.contains("21610")));
}

#[tokio::test]
async fn invalid_numbers_are_permanent_and_masked() {
    let (outcome, _) = send_one(twilio_error(
        400,
        21211,
        "The 'To' number +14155550123 is not a valid phone number.",
    ))
    .await;
    let SendOutcome::Permanent { error } = outcome else {
        panic!("21211 must be permanent");
    };
    assert!(
        error.starts_with("Twilio 21211 (400 Bad Request): The 'To' number +141****0123"),
        "{error}"
    );
    assert!(!error.contains("4155550123"), "{error}");
    let (outcome, _) = send_one(twilio_error(
        400,
        21614,
        "'To' number is not a valid mobile number",
    ))
    .await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
}

#[tokio::test]
async fn bad_credentials_and_inactive_accounts_refuse_the_sender_and_point_at_the_config() {
    let (outcome, _) = send_one(twilio_error(401, 20003, "Authenticate")).await;
    let SendOutcome::Refused { code, error } = outcome else {
        panic!("20003 must refuse the sender");
    };
    assert_eq!(code, "20003");
    for answer in [
        twilio_error(401, 20005, "Account not active"),
        twilio_error(403, 10001, "Account is not active"),
    ] {
        let (outcome, _) = send_one(answer).await;
        assert!(
            matches!(&outcome, SendOutcome::Refused { error, .. } if error.contains("not active")),
            "{outcome:?}"
        );
    }
    assert!(
        error.contains("configuration problem") && error.contains("TWILIO_AUTH_TOKEN"),
        "{error}"
    );
    assert!(!error.contains("tok-secret"), "{error}");
}

#[tokio::test]
async fn throttling_honours_retry_after_and_outages_are_retried() {
    let (outcome, _) =
        send_one(twilio_error(429, 20429, "Too Many Requests").header("Retry-After", "7")).await;
    assert_eq!(
        outcome,
        SendOutcome::Retryable {
            error: "Twilio 20429 (429 Too Many Requests): Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    // A 5xx may come after Twilio created the message: in doubt.
    let (outcome, _) = send_one(Reply::text(503, "upstream unavailable")).await;
    assert!(
        matches!(
            &outcome,
            SendOutcome::Retryable {
                retry_after: None,
                error,
            } if crate::store::outbox::is_in_doubt(Some(error)) && error.contains(OUTCOME_UNKNOWN)
        ),
        "{outcome:?}"
    );
    let (outcome, _) = send_one(twilio_error(429, 20429, "Too Many Requests")).await;
    assert!(
        matches!(&outcome, SendOutcome::Retryable { error, .. } if !crate::store::outbox::is_in_doubt(Some(error))),
        "a refusal to take the message is not in doubt: {outcome:?}"
    );
    let (outcome, _) = send_one(twilio_error(
        400,
        21408,
        "Permission to send an SMS has not been enabled for the region",
    ))
    .await;
    assert!(matches!(outcome, SendOutcome::Permanent { error } if error.contains("21408")));
}

#[tokio::test]
async fn a_lost_answer_is_retried_and_the_retry_asks_twilio_first() {
    // Every POST answers too late; a second POST would be a duplicate.
    let server = TestServer::start(|request, _| match request.method.as_str() {
        "GET" => Reply::json(
            200,
            serde_json::json!({"messages": [
                {"sid": "SMold", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                 "status": "delivered", "date_created": "Mon, 20 Jan 2025 08:00:00 +0000"},
                {"sid": "SMlate", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                 "status": "delivered", "date_created": "Sat, 01 Mar 2025 07:59:58 +0000"},
            ]}),
        ),
        _ => Reply::json(201, serde_json::json!({"sid": "SMlate"})).delayed(Duration::from_secs(3)),
    })
    .await;
    let sender = sender(
        &server.url,
        "from = \"+14155550100\"\ntimeout = \"300ms\"\n",
    );
    let recipient = Recipient::default();
    let first = sender.send(&message(&recipient, "+14155550123")).await;
    let SendOutcome::Retryable {
        error,
        retry_after: None,
    } = first
    else {
        panic!("a timeout must be retryable, got {first:?}");
    };
    assert!(
        error.contains("no answer within 300ms") && error.contains(OUTCOME_UNKNOWN),
        "{error}"
    );
    assert!(crate::store::outbox::is_in_doubt(Some(&error)), "{error}");
    let retry = Outbound {
        attempt: 2,
        previous_error: Some(&error),
        in_doubt: true,
        ..message(&recipient, "+14155550123")
    };
    assert_eq!(
        sender.send(&retry).await,
        SendOutcome::Sent {
            provider_id: "SMlate".into()
        }
    );
    let requests = server.requests();
    let posts = requests.iter().filter(|r| r.method == "POST").count();
    assert!(posts <= 1, "a second POST: {requests:?}");
    let gets: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 1, "{requests:?}");
    assert_eq!(
        gets[0].path(),
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        gets[0].query(),
        [
            ("To".to_string(), "+14155550123".to_string()),
            ("PageSize".to_string(), "50".to_string()),
            ("From".to_string(), "+14155550100".to_string()),
        ]
    );
}

/// The dispatcher dies while message 1 is being sent; at the next start
/// it is requeued and dispatched again through a real store and
/// dispatcher. Returns Twilio's requests (method) and the message's
/// (status, provider id).
async fn dispatch_after_a_crash(server: &TestServer) -> (Vec<String>, (String, Option<String>)) {
    use crate::base::clock::Clock;
    use crate::config::{ChannelPolicy, DispatchSettings};
    use crate::dispatch::{Dispatcher, Route};
    use crate::store::ingest::NewCustomer;
    use crate::store::queries::LogFilter;
    use crate::testing::{T0, outbox};

    let f = outbox(
        vec![NewCustomer {
            phone: Some("+14155550123".into()),
            ..NewCustomer::named("C1", "Lily")
        }],
        Channel::Sms,
        None,
    );
    {
        let mut store = f.store.lock().unwrap();
        assert_eq!(store.claim_due(T0, &[Channel::Sms], 10).unwrap().len(), 1);
        // The process dies here, the POST maybe out, its answer unwritten.
        assert_eq!(store.requeue_interrupted(T0 + 60).unwrap(), 1);
    }
    let sender = sender(&server.url, "from = \"+14155550100\"\n");
    let dispatcher = Dispatcher::with_routes(
        BTreeMap::from([(
            Channel::Sms,
            Route::new("twilio", sender, ChannelPolicy::plain("twilio")),
        )]),
        DispatchSettings::default(),
        chrono_tz::UTC,
    );
    let now = DateTime::from_timestamp(T0 + 60, 0).unwrap();
    let report = dispatcher
        .drain(&f.store, Clock::Fixed(now), &|| false)
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let methods = server.requests().into_iter().map(|r| r.method).collect();
    let entry = f
        .store
        .lock()
        .unwrap()
        .log(&LogFilter::default())
        .unwrap()
        .remove(0);
    (methods, (entry.status, entry.provider_id))
}

#[tokio::test]
async fn a_message_requeued_after_a_crash_that_twilio_has_is_not_sent_again() {
    // The fixture's message says "您好"; T0 is Thu, 28 May 2026 20:26:40 UTC.
    let server = TestServer::start(|request, _| {
        if request.method == "GET" {
            Reply::json(
                200,
                serde_json::json!({"messages": [
                    {"sid": "SMcrash", "body": "您好", "status": "sent",
                     "date_created": "Thu, 28 May 2026 20:26:41 +0000"}]}),
            )
        } else {
            Reply::json(201, serde_json::json!({"sid": "SMtwice"}))
        }
    })
    .await;
    let (methods, entry) = dispatch_after_a_crash(&server).await;
    assert_eq!(methods, ["GET"]);
    assert_eq!(entry, ("sent".to_string(), Some("SMcrash".to_string())));
}

#[tokio::test]
async fn a_message_requeued_after_a_crash_is_looked_up_before_it_is_sent() {
    let server = TestServer::start(|request, _| {
        if request.method == "GET" {
            Reply::json(200, serde_json::json!({"messages": []}))
        } else {
            Reply::json(201, serde_json::json!({"sid": "SMnew"}))
        }
    })
    .await;
    let (methods, entry) = dispatch_after_a_crash(&server).await;
    assert_eq!(methods, ["GET", "POST"]);
    assert_eq!(entry, ("sent".to_string(), Some("SMnew".to_string())));
}

#[tokio::test]
async fn a_retry_that_finds_nothing_sends_again() {
    let server = TestServer::start(|request, _| {
            if request.method == "GET" {
                Reply::json(200, serde_json::json!({"messages": [
                    {"sid": "SMfailed", "body": "Hi Lily, it has been a while. Reply STOP to opt out.",
                     "status": "failed", "date_created": "Sat, 01 Mar 2025 07:59:58 +0000"}]}))
            } else {
                Reply::json(201, serde_json::json!({"sid": "SMnew"}))
            }
        })
        .await;
    let sender = sender(&server.url, "from = \"+14155550100\"\n");
    let recipient = Recipient::default();
    let retry = Outbound {
        attempt: 2,
        previous_error: Some("[in doubt] Twilio: no answer within 10s (outcome unknown: ...)"),
        in_doubt: true,
        ..message(&recipient, "+14155550123")
    };
    assert_eq!(
        sender.send(&retry).await,
        SendOutcome::Sent {
            provider_id: "SMnew".into()
        }
    );
    let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "POST"]);
}

#[tokio::test]
async fn a_closed_port_is_retried_without_doubt() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sender = sender(
        &format!("http://127.0.0.1:{port}"),
        "from = \"+14155550100\"\n",
    );
    let recipient = Recipient::default();
    let SendOutcome::Retryable { error, .. } =
        sender.send(&message(&recipient, "+14155550123")).await
    else {
        panic!("a refused connection must be retryable");
    };
    assert!(
        error.contains("cannot connect") && !error.contains(OUTCOME_UNKNOWN),
        "{error}"
    );
}

#[test]
fn numbers_become_e164() {
    assert_eq!(e164("+1 (415) 555-0123", None).unwrap(), "+14155550123");
    assert_eq!(e164("0086 138 1234 5678", None).unwrap(), "+8613812345678");
    assert_eq!(e164("13812345678", Some("86")).unwrap(), "+8613812345678");
    assert_eq!(e164("07700900123", Some("44")).unwrap(), "+447700900123");
    assert!(e164("13812345678", None).is_err());
    assert!(e164("+12", None).is_err());
    assert!(e164("+1415555abcd", None).is_err());
}

#[test]
fn config_is_checked_and_secrets_come_from_the_environment() {
    let err = toml::from_str::<Config>(&format!(
        "account_sid = \"{SID}\"\nfrom = \"+1\"\nauth_token = \"x\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `auth_token`"), "{err}");
    let build_with = |text: &str| {
        let config: Config = toml::from_str(text).unwrap();
        build("twilio", &config, &context())
            .err()
            .map(|e| e.to_string())
    };
    let missing = build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\nauth_token_env = \"CLINIC_TWILIO_TOKEN\"\n"
        ))
        .unwrap();
    assert!(missing.contains("CLINIC_TWILIO_TOKEN"), "{missing}");
    assert!(
        build_with("account_sid = \"SK123\"\nfrom = \"+14155550100\"\n")
            .unwrap()
            .contains("account_sid")
    );
    assert!(
        build_with(&format!("account_sid = \"{SID}\"\n"))
            .unwrap()
            .contains("from")
    );
    assert!(
        build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\nmessaging_service_sid = \"MG1\"\n"
        ))
        .unwrap()
        .contains("not both")
    );
    assert!(
        build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\ndefault_country_code = \"UK\"\n"
        ))
        .is_some()
    );
    assert!(
        build_with(&format!(
            "account_sid = \"{SID}\"\nfrom = \"+14155550100\"\n"
        ))
        .is_none()
    );
}
