//! Tests of the `wechat_official` sender, against a WeChat API on
//! 127.0.0.1, and of its error table against docs/wechat.md.

use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::store::outbox::Recipient;
use crate::testing::{Recorded, Reply, TestServer};

const SECRET: &str = "app-s3cret";
const OPENID: &str = "oOPENID0001";

fn now() -> DateTime<Utc> {
    // 2026-11-28 12:00 in China.
    DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config(url: &str) -> Config {
    Config {
        app_id: "wxAPPID".into(),
        app_secret_env: default_app_secret_env(),
        templates: BTreeMap::from([(
            "welcome_back".to_string(),
            TemplateConfig {
                template_id: "TPL-welcome".into(),
                url: Some("https://clinic.example/book".into()),
            },
        )]),
        endpoint: url.into(),
        timeout: "5s".into(),
    }
}

fn ctx() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "WECHAT_APP_SECRET".to_string(),
            SECRET.to_string(),
        )])),
        ..Context::default()
    }
}

fn sender(url: &str) -> OfficialSender {
    OfficialSender::new("oa", &config(url), &ctx()).unwrap()
}

fn recipient() -> Recipient {
    Recipient {
        external_id: "C1".into(),
        wechat_openid: Some(OPENID.into()),
        ..Recipient::default()
    }
}

const PARAMS: &str = r#"{"name":"王女士","clinic":"悦美诊所"}"#;

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content {
    params: Some(PARAMS.into()),
    ..Content::text("王女士您好")
});

fn outbound<'a>(recipient: &'a Recipient) -> Outbound<'a> {
    Outbound {
        id: 42,
        channel: Channel::Wechat,
        rule_id: "r",
        template: "welcome_back",
        content: &CONTENT,
        recipient,
        address: OPENID,
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now: now(),
    }
}

fn error(code: i64) -> Reply {
    Reply::json(200, json!({"errcode": code, "errmsg": "test"}))
}

fn sent() -> Reply {
    Reply::json(
        200,
        json!({"errcode": 0, "errmsg": "ok", "msgid": 200228332}),
    )
}

/// A server that hands out TOKEN1, TOKEN2... from the stable-token
/// endpoint and answers everything else with `respond`.
async fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> TestServer {
    let issued = std::sync::atomic::AtomicUsize::new(0);
    TestServer::start(move |request, _| {
        if request.path() == "/cgi-bin/stable_token" {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Reply::json(
                200,
                json!({"access_token": format!("TOKEN{n}"), "expires_in": 7200}),
            )
        } else {
            respond(request)
        }
    })
    .await
}

fn token_of(request: &Recorded) -> String {
    request
        .query()
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn count(server: &TestServer, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path() == path)
        .count()
}

#[tokio::test]
async fn a_template_message_goes_to_the_openid_with_the_params_as_data() {
    let server = start(|_| sent()).await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient)).await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "200228332".into()
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/cgi-bin/stable_token");
    assert_eq!(
        requests[0].json(),
        json!({"grant_type": "client_credential", "appid": "wxAPPID", "secret": SECRET, "force_refresh": false})
    );
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[1].path(), "/cgi-bin/message/template/send");
    assert_eq!(
        requests[1].query(),
        [("access_token".to_string(), "TOKEN1".to_string())]
    );
    assert_eq!(
        requests[1].json(),
        json!({
            "touser": OPENID,
            "template_id": "TPL-welcome",
            "data": {"name": {"value": "王女士"}, "clinic": {"value": "悦美诊所"}},
            "client_msg_id": "recall-42",
            "url": "https://clinic.example/book",
        })
    );
}

#[tokio::test]
async fn one_token_serves_many_sends() {
    let server = start(|_| sent()).await;
    let sender = sender(&server.url);
    let recipient = recipient();
    for _ in 0..4 {
        sender.send(&outbound(&recipient)).await;
    }
    assert_eq!(count(&server, "/cgi-bin/stable_token"), 1);
    assert_eq!(count(&server, "/cgi-bin/message/template/send"), 4);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_send_repeated_once() {
    for code in TOKEN_ERRORS {
        let server = start(move |request| {
            if token_of(request) == "TOKEN1" {
                error(*code)
            } else {
                sent()
            }
        })
        .await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient)).await;
        assert!(
            matches!(outcome, SendOutcome::Sent { .. }),
            "{code}: {outcome:?}"
        );
        let sequence: Vec<(String, String)> = server
            .requests()
            .iter()
            .map(|r| (r.path().to_string(), token_of(r)))
            .collect();
        let send = "/cgi-bin/message/template/send".to_string();
        let token = "/cgi-bin/stable_token".to_string();
        assert_eq!(
            sequence,
            [
                (token.clone(), String::new()),
                (send.clone(), "TOKEN1".into()),
                (token, String::new()),
                (send, "TOKEN2".into()),
            ],
            "{code}"
        );
    }
}

#[tokio::test]
async fn concurrent_sends_meeting_an_expired_token_share_one_refresh() {
    let server = start(|request| {
        if token_of(request) == "TOKEN1" {
            error(42001)
        } else {
            sent()
        }
    })
    .await;
    let sender = sender(&server.url);
    let recipient = recipient();
    let message = outbound(&recipient);
    let (a, b, c, d) = tokio::join!(
        sender.send(&message),
        sender.send(&message),
        sender.send(&message),
        sender.send(&message),
    );
    for outcome in [a, b, c, d] {
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    }
    assert_eq!(count(&server, "/cgi-bin/stable_token"), 2);
}

#[tokio::test]
async fn an_unfollowed_customer_opted_out() {
    let server = start(|_| error(43004)).await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient)).await;
    let SendOutcome::OptedOut { reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("43004"), "{reason}");
}

#[tokio::test]
async fn every_row_of_the_template_message_table_in_docs_wechat_md_holds() {
    let doc = include_str!("../../../docs/wechat.md");
    for row in crate::testing::doc_table(doc, "Official Account: template messages") {
        for code in crate::testing::doc_codes(&row[0]) {
            let server = start(move |_| if code == 0 { sent() } else { error(code) }).await;
            let recipient = recipient();
            let outcome = sender(&server.url).send(&outbound(&recipient)).await;
            crate::testing::assert_documented(&row[2], code, &outcome);
        }
    }
}

#[tokio::test]
async fn the_daily_limit_is_retried_after_midnight_china_time() {
    let server = start(|_| error(45009)).await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient)).await;
    let SendOutcome::Retryable { retry_after, .. } = outcome else {
        panic!("{outcome:?}")
    };
    // 12:00 → 00:00 in China.
    assert_eq!(retry_after, Some(Duration::from_secs(12 * 3600)));
}

#[tokio::test]
async fn missing_openid_template_or_params_are_permanent_without_a_call() {
    let server = start(|_| sent()).await;
    let sender = sender(&server.url);
    let no_openid = Recipient {
        wechat_openid: None,
        wecom_external_userid: Some("wmX".into()),
        ..recipient()
    };
    let recipient = recipient();
    let cases = [
        (outbound(&no_openid), "openid"),
        (
            Outbound {
                template: "unmapped",
                ..outbound(&recipient)
            },
            "[senders.oa.templates.unmapped]",
        ),
        (
            Outbound {
                content: &Content {
                    params: None,
                    ..CONTENT.clone()
                },
                ..outbound(&recipient)
            },
            "welcome_back.params.toml",
        ),
        (
            Outbound {
                content: &Content {
                    params: Some("not json".into()),
                    ..CONTENT.clone()
                },
                ..outbound(&recipient)
            },
            "JSON",
        ),
    ];
    for (message, expected) in cases {
        let outcome = sender.send(&message).await;
        let SendOutcome::Permanent { error } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(error.contains(expected), "{error}");
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_refused_secret_is_retryable_and_never_shown() {
    let server = TestServer::start(|_, _| {
        Reply::json(
            200,
            json!({"errcode": 40125, "errmsg": "invalid appsecret"}),
        )
    })
    .await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient)).await;
    let SendOutcome::Retryable { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("40125") && !error.contains(SECRET),
        "{error}"
    );
    assert_eq!(count(&server, "/cgi-bin/message/template/send"), 0);
}

#[test]
fn a_missing_secret_fails_the_build_naming_the_variable() {
    let ctx = Context {
        secrets: Secrets::Map(BTreeMap::new()),
        ..Context::default()
    };
    let err = OfficialSender::new("oa", &config("https://api.weixin.qq.com"), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("WECHAT_APP_SECRET"), "{err}");
}

#[test]
fn config_reads_the_template_tables_and_checks_them() {
    let parsed: Config = toml::from_str(
        "app_id = \"wx1\"\n[templates.welcome_back]\ntemplate_id = \"T1\"\nurl = \"https://x\"\n",
    )
    .unwrap();
    assert_eq!(parsed.templates["welcome_back"].template_id, "T1");
    assert_eq!(parsed.endpoint, "https://api.weixin.qq.com");
    assert!(
        toml::from_str::<Config>("app_id = \"wx1\"\n[templates.a]\ntemplate = \"T1\"\n").is_err()
    );
    let mut no_templates = config("https://api.weixin.qq.com");
    no_templates.templates.clear();
    let err = OfficialSender::new("oa", &no_templates, &ctx())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[senders.oa.templates."), "{err}");
    let mut bad_url = config("https://api.weixin.qq.com");
    bad_url.templates.get_mut("welcome_back").unwrap().url = Some("clinic/book".into());
    assert!(OfficialSender::new("oa", &bad_url, &ctx()).is_err());
}
