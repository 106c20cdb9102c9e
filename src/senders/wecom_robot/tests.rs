//! Tests of the `wecom_robot` sender, against a WeCom robot webhook on
//! 127.0.0.1, and of its error table against docs/wechat.md.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::store::outbox::Recipient;
use crate::testing::{Reply, TestServer};

const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config(url: &str) -> Config {
    Config {
        webhook_key_env: default_webhook_key_env(),
        msgtype: MsgType::Text,
        mentioned_list: Vec::new(),
        mentioned_mobile_list: Vec::new(),
        endpoint: url.into(),
        timeout: "5s".into(),
    }
}

fn ctx(key: &str) -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "WECOM_ROBOT_KEY".to_string(),
            key.to_string(),
        )])),
        ..Context::default()
    }
}

fn robot(config: &Config) -> RobotSender {
    RobotSender::new("staff", config, &ctx(KEY)).unwrap()
}

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content::text("新的回访任务：3 位顾客"));

fn outbound<'a>(recipient: &'a Recipient, now: DateTime<Utc>) -> Outbound<'a> {
    Outbound {
        id: 7,
        channel: Channel::Phone,
        rule_id: "r",
        template: "t",
        content: &CONTENT,
        recipient,
        address: "",
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now,
    }
}

async fn ok_server() -> TestServer {
    TestServer::start(|_, _| Reply::json(200, json!({"errcode": 0, "errmsg": "ok"}))).await
}

#[tokio::test]
async fn a_message_is_posted_as_text_with_the_key_in_the_query() {
    let server = ok_server().await;
    let mut config = config(&server.url);
    config.mentioned_list = vec!["@all".into()];
    let recipient = Recipient::default();
    let outcome = robot(&config).send(&outbound(&recipient, now())).await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "robot-7".into()
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/cgi-bin/webhook/send");
    assert_eq!(requests[0].query(), [("key".to_string(), KEY.to_string())]);
    assert_eq!(
        requests[0].json(),
        json!({"msgtype": "text", "text": {"content": "新的回访任务：3 位顾客", "mentioned_list": ["@all"]}})
    );
}

#[tokio::test]
async fn markdown_robots_post_markdown() {
    let server = ok_server().await;
    let mut config = config(&server.url);
    config.msgtype = MsgType::Markdown;
    robot(&config)
        .notify("**3** new tasks", now())
        .await
        .unwrap();
    assert_eq!(
        server.requests()[0].json(),
        json!({"msgtype": "markdown", "markdown": {"content": "**3** new tasks"}})
    );
}

#[tokio::test]
async fn the_21st_message_in_a_minute_is_deferred_to_the_windows_end() {
    let server = ok_server().await;
    let robot = robot(&config(&server.url));
    let recipient = Recipient::default();
    for second in 0..20 {
        let at = now() + chrono::Duration::seconds(second);
        let outcome = robot.send(&outbound(&recipient, at)).await;
        assert!(
            matches!(outcome, SendOutcome::Sent { .. }),
            "{second}: {outcome:?}"
        );
    }
    let at = now() + chrono::Duration::seconds(30);
    let outcome = robot.send(&outbound(&recipient, at)).await;
    let SendOutcome::Deferred { retry_at, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(retry_at, now() + chrono::Duration::seconds(60));
    assert_eq!(server.requests().len(), 20);
    // Notices share the window.
    let refused = robot.notify("x", at).await.unwrap_err();
    assert_eq!(refused, NotifyError::RateLimited { retry_at });
    // When the first post leaves the window, one more fits.
    let outcome = robot.send(&outbound(&recipient, retry_at)).await;
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let outcome = robot.send(&outbound(&recipient, retry_at)).await;
    assert!(
        matches!(outcome, SendOutcome::Deferred { .. }),
        "{outcome:?}"
    );
    assert_eq!(server.requests().len(), 21);
}

#[tokio::test]
async fn the_provider_limit_is_reported_and_its_throttling_retried() {
    let server = TestServer::start(|_, _| {
        Reply::json(
            200,
            json!({"errcode": 45009, "errmsg": "api freq out of limit"}),
        )
    })
    .await;
    let robot = robot(&config(&server.url));
    assert_eq!(robot.default_rate_limit(), Some(ROBOT_LIMIT));
    let recipient = Recipient::default();
    let outcome = robot.send(&outbound(&recipient, now())).await;
    assert_eq!(
        outcome,
        SendOutcome::Retryable {
            error: "the WeCom robot is throttled: errcode 45009 (api freq out of limit)".into(),
            retry_after: Some(Duration::from_secs(60)),
        }
    );
    let err = robot.notify("x", now()).await.unwrap_err();
    assert!(matches!(
        err,
        NotifyError::Refused {
            errcode: 45009,
            retryable: true,
            ..
        }
    ));
}

#[tokio::test]
async fn every_row_of_the_robot_table_in_docs_wechat_md_holds() {
    let doc = include_str!("../../../docs/wechat.md");
    for row in crate::testing::doc_table(doc, "WeCom group robot") {
        for code in crate::testing::doc_codes(&row[0]) {
            let server = TestServer::start(move |_, _| {
                Reply::json(200, json!({"errcode": code, "errmsg": "test"}))
            })
            .await;
            let recipient = Recipient::default();
            let outcome = robot(&config(&server.url))
                .send(&outbound(&recipient, now()))
                .await;
            crate::testing::assert_documented(&row[2], code, &outcome);
        }
    }
}

#[tokio::test]
async fn a_removed_robot_is_permanent_and_errors_never_show_the_key() {
    let server = TestServer::start(|_, _| {
        Reply::json(
            200,
            json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
        )
    })
    .await;
    let recipient = Recipient::default();
    let outcome = robot(&config(&server.url))
        .send(&outbound(&recipient, now()))
        .await;
    assert!(
        matches!(outcome, SendOutcome::Permanent { .. }),
        "{outcome:?}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let robot = robot(&config(&url));
    let outcome = robot.send(&outbound(&recipient, now())).await;
    let SendOutcome::Retryable { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!error.contains(KEY), "{error}");
    let err = robot.notify("x", now()).await.unwrap_err().to_string();
    assert!(!err.contains(KEY), "{err}");
}

#[tokio::test]
async fn long_notices_are_cut_but_long_messages_refused() {
    let server = ok_server().await;
    let robot = robot(&config(&server.url));
    let long = "回".repeat(1000);
    robot.notify(&long, now()).await.unwrap();
    let sent = server.requests()[0].json()["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sent.len() <= 2048 && sent.ends_with('…'), "{}", sent.len());
    let recipient = Recipient::default();
    let message = Outbound {
        content: &Content::text(long.clone()),
        ..outbound(&recipient, now())
    };
    assert!(matches!(
        robot.send(&message).await,
        SendOutcome::Permanent { .. }
    ));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_missing_key_fails_the_build_naming_the_variable() {
    let ctx = Context {
        secrets: Secrets::Map(BTreeMap::new()),
        ..Context::default()
    };
    let err = RobotSender::new("staff", &config("https://qyapi.weixin.qq.com"), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("WECOM_ROBOT_KEY"), "{err}");
}

#[test]
fn the_key_may_be_given_as_the_whole_webhook_address() {
    assert_eq!(
        webhook_key(&format!(
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
        )),
        KEY
    );
    assert_eq!(webhook_key(KEY), KEY);
}

#[test]
fn config_keys_are_checked() {
    let parsed: Config = toml::from_str("msgtype = \"markdown\"\n").unwrap();
    assert_eq!(parsed.msgtype, MsgType::Markdown);
    assert_eq!(parsed.webhook_key_env, "WECOM_ROBOT_KEY");
    assert!(toml::from_str::<Config>("msgtype = \"news\"\n").is_err());
    assert!(toml::from_str::<Config>("key = \"abc\"\n").is_err());
    let mut mentions_in_markdown = config("https://qyapi.weixin.qq.com");
    mentions_in_markdown.msgtype = MsgType::Markdown;
    mentions_in_markdown.mentioned_list = vec!["zhangsan".into()];
    assert!(RobotSender::new("staff", &mentions_in_markdown, &ctx(KEY)).is_err());
}
