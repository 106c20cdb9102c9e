//! Tests of the `webhook` sender, against a real HTTP server on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::store::outbox::Recipient;
use crate::testing::{Reply, TestServer};

const BODY: &str = r#"{"to": {{ address|tojson }}, "text": {{ content }}, "ref": {{ id }},
        "code": {{ params.code }}, "customer": {{ customer.external_id }}, "key": {{ secret.key }}}"#;

fn recipient() -> Recipient {
    Recipient {
        external_id: "C-0042".into(),
        name: "王丽".into(),
        ..Recipient::default()
    }
}

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content {
    params: Some(r#"{"code":"8831"}"#.into()),
    ..Content::text("王女士您好，\"回来看看\"\n回T退订")
});

fn message(recipient: &Recipient) -> Outbound<'_> {
    Outbound {
        id: 7,
        channel: Channel::Sms,
        rule_id: "warning-recall",
        template: "recall_offer",
        content: &CONTENT,
        recipient,
        address: "+8613812345678",
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now: "2025-03-01T08:00:00Z".parse().unwrap(),
    }
}

fn context() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([
            (
                "GATEWAY_AUTH".to_string(),
                "Bearer s3cret-token".to_string(),
            ),
            ("GATEWAY_KEY".to_string(), "k-123".to_string()),
        ])),
        ..Context::default()
    }
}

fn config(url: &str, extra: &str) -> Config {
    toml::from_str(&format!(
            "url = {url:?}\nbody = '''{BODY}'''\nsecret_headers = {{ Authorization = \"GATEWAY_AUTH\" }}\nsecret_vars = {{ key = \"GATEWAY_KEY\" }}\n{extra}"
        ))
        .unwrap()
}

async fn send_to(server: &TestServer, extra: &str) -> SendOutcome {
    let sender = build(
        "gateway",
        &config(&format!("{}/sms/send", server.url), extra),
        &context(),
    )
    .unwrap();
    let recipient = recipient();
    sender.send(&message(&recipient)).await
}

#[tokio::test]
async fn posts_the_rendered_json_with_headers_and_takes_the_id_from_the_answer() {
    let server =
        TestServer::start(|_, _| Reply::json(200, serde_json::json!({"data": {"msgid": "G-991"}})))
            .await;
    let outcome = send_to(
            &server,
            "headers = { \"X-Account\" = \"clinic-42\" }\nid_field = \"/data/msgid\"\nidempotency_header = \"Idempotency-Key\"\n",
        )
        .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "G-991".into()
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/sms/send");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(request.header("x-account"), Some("clinic-42"));
    assert_eq!(request.header("idempotency-key"), Some("recall-7"));
    assert_eq!(
        request.json(),
        serde_json::json!({
            "to": "+8613812345678",
            "text": "王女士您好，\"回来看看\"\n回T退订",
            "ref": 7,
            "code": "8831",
            "customer": "C-0042",
            "key": "k-123",
        })
    );
}

#[tokio::test]
async fn a_dotted_id_field_and_a_missing_one_both_count_as_sent() {
    let server = TestServer::start(|_, index| {
        if index == 0 {
            Reply::json(201, serde_json::json!({"data": {"msgid": 5501}}))
        } else {
            Reply::text(202, "queued")
        }
    })
    .await;
    assert_eq!(
        send_to(&server, "id_field = \"data.msgid\"\nmethod = \"put\"\n").await,
        SendOutcome::Sent {
            provider_id: "5501".into()
        }
    );
    assert_eq!(
        send_to(&server, "id_field = \"data.msgid\"\n").await,
        SendOutcome::Sent {
            provider_id: "webhook-7".into()
        }
    );
    assert_eq!(server.requests()[0].method, "PUT");
}

#[tokio::test]
async fn throttling_and_outages_are_retried_when_the_gateway_says() {
    let server = TestServer::start(|_, index| match index {
        0 => Reply::text(429, "slow down").header("Retry-After", "120"),
        1 => Reply::text(503, "maintenance").header("Retry-After", "Sat, 01 Mar 2025 08:00:30 GMT"),
        _ => Reply::text(500, "boom"),
    })
    .await;
    let throttled = send_to(&server, "").await;
    assert_eq!(
        throttled,
        SendOutcome::Retryable {
            error: "the gateway answered 429 Too Many Requests: slow down".into(),
            retry_after: Some(Duration::from_secs(120)),
        }
    );
    let SendOutcome::Retryable { retry_after, .. } = send_to(&server, "").await else {
        panic!("503 must be retryable");
    };
    assert_eq!(retry_after, Some(Duration::from_secs(30)));
    let SendOutcome::Retryable { error, retry_after } = send_to(&server, "").await else {
        panic!("500 must be retryable");
    };
    assert_eq!(retry_after, None);
    assert!(error.contains("500"), "{error}");
}

#[tokio::test]
async fn other_client_errors_are_permanent_and_never_echo_the_address_or_content() {
    let server = TestServer::start(|request, _| {
        let echoed = request.json();
        Reply::text(
            400,
            &format!(
                "bad number {} for text {}",
                echoed["to"].as_str().unwrap(),
                echoed["text"].as_str().unwrap()
            ),
        )
    })
    .await;
    let SendOutcome::Permanent { error } = send_to(&server, "").await else {
        panic!("400 must be permanent");
    };
    assert!(
        error.starts_with("the gateway answered 400 Bad Request: bad number"),
        "{error}"
    );
    assert!(!error.contains("13812345678"), "{error}");
    assert!(error.contains("+86138****5678"), "{error}");
    assert!(!error.contains("回来看看"), "{error}");
    assert!(error.ends_with("for text <content>"), "{error}");
    let server = TestServer::start(|request, _| Reply::json(422, request.json())).await;
    let SendOutcome::Permanent { error } = send_to(&server, "").await else {
        panic!("422 must be permanent");
    };
    assert!(
        !error.contains("回来看看") && error.contains("<content>"),
        "{error}"
    );
}

#[tokio::test]
async fn the_gateways_opt_out_answer_withdraws_consent() {
    let server = TestServer::start(|_, index| match index {
        0 => Reply::json(409, serde_json::json!({"error": "UNSUBSCRIBED"})),
        1 => Reply::json(409, serde_json::json!({"error": "DUPLICATE"})),
        _ => Reply::json(200, serde_json::json!({"result": "BLACKLISTED"})),
    })
    .await;
    let both = "opted_out_status = 409\nopted_out_match = \"UNSUBSCRIBED\"\n";
    let SendOutcome::OptedOut { reason } = send_to(&server, both).await else {
        panic!("409 UNSUBSCRIBED must be an opt-out");
    };
    assert!(reason.contains("UNSUBSCRIBED"), "{reason}");
    assert!(matches!(
        send_to(&server, both).await,
        SendOutcome::Permanent { .. }
    ));
    assert!(matches!(
        send_to(&server, "opted_out_match = \"BLACKLISTED\"\n").await,
        SendOutcome::OptedOut { .. }
    ));
}

/// Gateways (many Chinese SMS gateways among them) that answer HTTP 200
/// with an error code in the body.
fn coded(code: serde_json::Value, msg: &str) -> Reply {
    Reply::json(
        200,
        serde_json::json!({"code": code, "msg": msg, "data": {"msgid": "G-1"}}),
    )
}

const CODES: &str = "code_field = \"/code\"\nsuccess_codes = [\"0\"]\nmessage_field = \"msg\"\nid_field = \"data.msgid\"\n";

#[tokio::test]
async fn a_200_with_an_error_code_is_not_sent_when_a_success_check_is_configured() {
    let server = TestServer::start(|_, index| match index {
        0 | 1 => coded(serde_json::json!("1001"), "invalid mobile number"),
        2 => coded(serde_json::json!(0), "ok"),
        _ => Reply::text(200, "OK"),
    })
    .await;
    // Without a success check, today's behaviour: any 2xx is sent.
    assert_eq!(
        send_to(&server, "id_field = \"data.msgid\"\n").await,
        SendOutcome::Sent {
            provider_id: "G-1".into()
        }
    );
    assert_eq!(
        send_to(&server, CODES).await,
        SendOutcome::Permanent {
            error: "the gateway answered 200 OK with code 1001: invalid mobile number; \
                        the success codes are 0"
                .into()
        }
    );
    // A numeric success code matches its text.
    assert_eq!(
        send_to(&server, CODES).await,
        SendOutcome::Sent {
            provider_id: "G-1".into()
        }
    );
    let SendOutcome::Permanent { error } = send_to(&server, CODES).await else {
        panic!("a 200 without a code must not be sent");
    };
    assert_eq!(
        error,
        "the gateway answered 200 OK without a code at /code: OK; the success codes are 0"
    );
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn body_codes_map_to_retryable_permanent_and_opted_out() {
    let server = TestServer::start(|_, index| match index {
        0 => coded(serde_json::json!("1005"), "too frequent").header("Retry-After", "60"),
        1 => coded(serde_json::json!(1010), "user in blacklist"),
        2 => Reply::json(
            500,
            serde_json::json!({"code": "1002", "msg": "template not approved"}),
        ),
        _ => coded(serde_json::json!("9999"), "system busy"),
    })
    .await;
    let lists = format!(
        "{CODES}retryable_codes = [\"1005\"]\nopted_out_codes = [\"1010\"]\npermanent_codes = [\"1002\"]\n"
    );
    assert_eq!(
        send_to(&server, &lists).await,
        SendOutcome::Retryable {
            error: "the gateway answered 200 OK with code 1005: too frequent".into(),
            retry_after: Some(Duration::from_secs(60)),
        }
    );
    let SendOutcome::OptedOut { reason } = send_to(&server, &lists).await else {
        panic!("an opt-out code must be an opt-out");
    };
    assert!(reason.contains("code 1010: user in blacklist"), "{reason}");
    // A listed code wins over the HTTP status (500 alone would be retried).
    assert_eq!(
            send_to(&server, &lists).await,
            SendOutcome::Permanent {
                error: "the gateway answered 500 Internal Server Error with code 1002: template not approved"
                    .into()
            }
        );
    let SendOutcome::Retryable { error, .. } =
        send_to(&server, &format!("{lists}other_codes = \"retryable\"\n")).await
    else {
        panic!("other_codes = retryable must retry an unlisted code");
    };
    assert!(error.contains("code 9999: system busy"), "{error}");
}

#[test]
fn code_settings_are_checked_when_built() {
    let build_with = |extra: &str| {
        let config: Config = toml::from_str(&format!(
            "url = \"https://sms.example.com/\"\nbody = '{{}}'\n{extra}"
        ))
        .unwrap();
        build("gateway", &config, &context())
            .err()
            .map(|e| e.to_string())
    };
    assert!(build_with(CODES).is_none());
    let err = build_with("retryable_codes = [\"1005\"]\n").unwrap();
    assert!(err.contains("retryable_codes needs code_field"), "{err}");
    let err = build_with("code_field = \"/code\"\n").unwrap();
    assert!(err.contains("needs success_codes"), "{err}");
    let err = build_with(&format!("{CODES}permanent_codes = [\"0\"]\n")).unwrap();
    assert!(
        err.contains("\"0\" is in both success_codes and permanent_codes"),
        "{err}"
    );
    assert!(
        toml::from_str::<Config>(
            "url = \"https://x.example/\"\nbody = '{}'\nother_codes = \"ignore\"\n"
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_gateway_slower_than_the_timeout_is_retried() {
    let server = TestServer::start(|_, _| {
        Reply::json(200, serde_json::json!({})).delayed(Duration::from_secs(3))
    })
    .await;
    let outcome = send_to(&server, "timeout = \"200ms\"\n").await;
    assert_eq!(
        outcome,
        SendOutcome::Retryable {
            error: "gateway: no answer within 200ms".into(),
            retry_after: None,
        }
    );
}

#[tokio::test]
async fn a_closed_port_is_retried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sender = build(
        "gateway",
        &config(&format!("http://127.0.0.1:{port}/"), ""),
        &context(),
    )
    .unwrap();
    let recipient = recipient();
    let SendOutcome::Retryable { error, .. } = sender.send(&message(&recipient)).await else {
        panic!("a refused connection must be retryable");
    };
    assert!(error.starts_with("gateway: cannot connect"), "{error}");
}

#[tokio::test]
async fn a_body_that_renders_to_broken_json_is_permanent_and_nothing_is_sent() {
    let server = TestServer::start(|_, _| Reply::json(200, serde_json::json!({}))).await;
    let config: Config = toml::from_str(&format!(
        "url = \"{}/\"\nbody = '{{\"text\": \"{{{{ content }}}}\"}}'\n",
        server.url
    ))
    .unwrap();
    let sender = build("gateway", &config, &context()).unwrap();
    let recipient = recipient();
    let SendOutcome::Permanent { error } = sender.send(&message(&recipient)).await else {
        panic!("broken JSON must be permanent");
    };
    assert!(error.contains("did not render JSON"), "{error}");
    assert!(!error.contains("回来看看"), "{error}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_template_that_needs_a_missing_param_fails_that_message_only() {
    let server = TestServer::start(|_, _| Reply::json(200, serde_json::json!({}))).await;
    let sender = build(
        "gateway",
        &config(&format!("{}/", server.url), ""),
        &context(),
    )
    .unwrap();
    let recipient = recipient();
    let SendOutcome::Permanent { error } = sender
        .send(&Outbound {
            content: &Content {
                params: None,
                ..CONTENT.clone()
            },
            ..message(&recipient)
        })
        .await
    else {
        panic!("a missing param must be permanent");
    };
    assert!(error.contains("body template failed"), "{error}");
    assert!(server.requests().is_empty());
}

#[test]
fn template_mistakes_stop_the_build() {
    let build_with = |body: &str| {
        let config: Config = toml::from_str(&format!(
            "url = \"https://sms.example.com/\"\nbody = '''{body}'''\n"
        ))
        .unwrap();
        build("gateway", &config, &context())
            .err()
            .unwrap()
            .to_string()
    };
    let err = build_with(r#"{"text": {{ content }"#);
    assert!(err.contains("does not compile"), "{err}");
    let err = build_with(r#"{"text": {{ contnet }}}"#);
    assert!(
        err.contains("unknown variable `contnet`") && err.contains("`content`"),
        "{err}"
    );
}

#[test]
fn config_rejects_unknown_keys_and_names_missing_secrets() {
    let err = toml::from_str::<Config>("url = \"https://x.example/\"\nbody = '{}'\nheader = {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `header`"), "{err}");
    let config: Config = toml::from_str(
            "url = \"https://x.example/\"\nbody = '{}'\nsecret_headers = { Authorization = \"NOT_SET\" }\n",
        )
        .unwrap();
    let err = build("gateway", &config, &context())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("NOT_SET"), "{err}");
    let config: Config = toml::from_str(
        "url = \"https://x.example/\"\nbody = '{}'\nheaders = { Authorization = \"Bearer abc\" }\n",
    )
    .unwrap();
    let err = build("gateway", &config, &context())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("secret_headers") && !err.contains("abc"),
        "{err}"
    );
    let config: Config = toml::from_str("url = \"ftp://x.example/\"\nbody = '{}'\n").unwrap();
    assert!(build("gateway", &config, &context()).is_err());
    let config: Config =
        toml::from_str("url = \"https://x.example/\"\nbody = '{}'\nmethod = \"GET\"\n").unwrap();
    assert!(build("gateway", &config, &context()).is_err());
    let config: Config =
        toml::from_str("url = \"https://x.example/\"\nbody = '{}'\ntimeout = \"soon\"\n").unwrap();
    let problems = validate(&config).err().unwrap();
    assert_eq!(problems[0].key, "timeout", "{problems:?}");
    assert!(build("gateway", &config, &context()).is_err());
}
