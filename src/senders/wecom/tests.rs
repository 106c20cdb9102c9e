//! Tests of the `wecom` sender, against a WeCom API on 127.0.0.1, and of
//! its error table against docs/wechat.md.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::testing::{Recorded, Reply, TestServer};
use serde_json::Value;

const SECRET: &str = "corp-s3cret";
const CUSTOMER: &str = "wmCUSTOMER01";

fn now() -> DateTime<Utc> {
    // 2026-11-28 12:00 in China.
    DateTime::parse_from_rfc3339("2026-11-28T04:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config(url: &str) -> Config {
    Config {
        corp_id: "wwCORP".into(),
        secret_env: default_secret_env(),
        sender_userid: Some("zhangsan".into()),
        confirm_within: default_confirm_within(),
        endpoint: url.into(),
        timeout: "5s".into(),
    }
}

fn ctx() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "WECOM_SECRET".to_string(),
            SECRET.to_string(),
        )])),
        ..Context::default()
    }
}

fn sender(url: &str) -> WecomSender {
    WecomSender::new("wecom", &config(url), &ctx()).unwrap()
}

fn recipient() -> Recipient {
    Recipient {
        external_id: "C1".into(),
        wecom_external_userid: Some(CUSTOMER.into()),
        wechat_openid: Some("oOPENID".into()),
        ..Recipient::default()
    }
}

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content::text("王女士您好，好久不见"));

fn outbound<'a>(recipient: &'a Recipient, now: DateTime<Utc>) -> Outbound<'a> {
    Outbound {
        id: 42,
        channel: Channel::Wechat,
        rule_id: "r",
        template: "welcome_back",
        content: &CONTENT,
        recipient,
        address: CUSTOMER,
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now,
    }
}

fn ok(body: Value) -> Reply {
    let mut body = body;
    body["errcode"] = json!(0);
    body["errmsg"] = json!("ok");
    Reply::json(200, body)
}

fn error(code: i64) -> Reply {
    Reply::json(200, json!({"errcode": code, "errmsg": "test"}))
}

/// Token number `n` (1-based) of the gettoken calls so far.
fn token_reply(requests_before: &[Recorded]) -> Reply {
    let n = requests_before
        .iter()
        .filter(|r| r.path() == "/cgi-bin/gettoken")
        .count()
        + 1;
    ok(json!({"access_token": format!("TOKEN{n}"), "expires_in": 7200}))
}

/// A server that answers gettoken with TOKEN1, TOKEN2... and every other
/// path with `respond(request)`.
async fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> TestServer {
    let seen = std::sync::Mutex::new(Vec::<Recorded>::new());
    TestServer::start(move |request, _| {
        let mut seen = seen.lock().unwrap();
        let reply = if request.path() == "/cgi-bin/gettoken" {
            token_reply(&seen)
        } else {
            respond(request)
        };
        seen.push(request.clone());
        reply
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

fn task_created() -> Reply {
    ok(json!({"fail_list": [], "msgid": "msgTASK1"}))
}

#[tokio::test]
async fn a_send_creates_a_task_for_the_customer_and_awaits_staff() {
    let server = start(|_| task_created()).await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    assert_eq!(
        outcome,
        SendOutcome::Awaiting {
            provider_id: format!("msgTASK1:{}", now().timestamp())
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path(), "/cgi-bin/gettoken");
    assert_eq!(
        requests[0].query(),
        [
            ("corpid".to_string(), "wwCORP".to_string()),
            ("corpsecret".to_string(), SECRET.to_string())
        ]
    );
    assert_eq!(requests[1].method, "POST");
    assert_eq!(
        requests[1].path(),
        "/cgi-bin/externalcontact/add_msg_template"
    );
    assert_eq!(
        requests[1].query(),
        [("access_token".to_string(), "TOKEN1".to_string())]
    );
    assert_eq!(
        requests[1].json(),
        json!({
            "chat_type": "single",
            "external_userid": [CUSTOMER],
            "text": {"content": "王女士您好，好久不见"},
            "sender": "zhangsan",
        })
    );
}

#[tokio::test]
async fn without_a_sender_userid_wecom_picks_the_customers_staff() {
    let server = start(|_| task_created()).await;
    let mut config = config(&server.url);
    config.sender_userid = None;
    let sender = WecomSender::new("wecom", &config, &ctx()).unwrap();
    let recipient = recipient();
    sender.send(&outbound(&recipient, now())).await;
    let body = server.requests()[1].json();
    assert!(body.get("sender").is_none(), "{body}");
}

#[tokio::test]
async fn one_token_serves_many_sends_until_it_nears_expiry() {
    let server = start(|_| task_created()).await;
    let sender = sender(&server.url);
    let recipient = recipient();
    for minutes in [0, 1, 60, 114] {
        let at = now() + chrono::Duration::minutes(minutes);
        assert!(matches!(
            sender.send(&outbound(&recipient, at)).await,
            SendOutcome::Awaiting { .. }
        ));
    }
    assert_eq!(count(&server, "/cgi-bin/gettoken"), 1);
    // 7200 s minus the 5-minute margin: the next send fetches anew.
    let at = now() + chrono::Duration::minutes(115);
    sender.send(&outbound(&recipient, at)).await;
    assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_repeated_once() {
    let server = start(|request| {
        if token_of(request) == "TOKEN1" {
            error(42001)
        } else {
            task_created()
        }
    })
    .await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    assert!(
        matches!(outcome, SendOutcome::Awaiting { .. }),
        "{outcome:?}"
    );
    let paths: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| (r.path().to_string(), token_of(r)))
        .collect();
    let add = "/cgi-bin/externalcontact/add_msg_template".to_string();
    let get = "/cgi-bin/gettoken".to_string();
    assert_eq!(
        paths,
        [
            (get.clone(), String::new()),
            (add.clone(), "TOKEN1".into()),
            (get, String::new()),
            (add, "TOKEN2".into()),
        ]
    );
}

#[tokio::test]
async fn a_token_rejected_twice_is_retryable_without_a_third_try() {
    let server = start(|_| error(40014)).await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    let SendOutcome::Retryable { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("40014"), "{error}");
    assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
    assert_eq!(
        count(&server, "/cgi-bin/externalcontact/add_msg_template"),
        2
    );
}

#[tokio::test]
async fn concurrent_sends_meeting_an_expired_token_share_one_refresh() {
    let server = start(|request| {
        if token_of(request) == "TOKEN1" {
            error(42001)
        } else {
            task_created()
        }
    })
    .await;
    let sender = sender(&server.url);
    let recipient = recipient();
    let message = outbound(&recipient, now());
    let outcomes = tokio::join!(
        sender.send(&message),
        sender.send(&message),
        sender.send(&message),
        sender.send(&message),
        sender.send(&message),
    );
    for outcome in [outcomes.0, outcomes.1, outcomes.2, outcomes.3, outcomes.4] {
        assert!(
            matches!(outcome, SendOutcome::Awaiting { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(count(&server, "/cgi-bin/gettoken"), 2);
    let with_new_token = server
        .requests()
        .iter()
        .filter(|r| token_of(r) == "TOKEN2")
        .count();
    assert_eq!(with_new_token, 5);
}

#[tokio::test]
async fn a_customer_without_a_wecom_id_is_permanent_and_nothing_is_called() {
    let server = start(|_| task_created()).await;
    let recipient = Recipient {
        wecom_external_userid: None,
        ..recipient()
    };
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    let SendOutcome::Permanent { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("external_userid"), "{error}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_missing_secret_fails_the_build_naming_the_variable() {
    let ctx = Context {
        secrets: Secrets::Map(BTreeMap::new()),
        ..Context::default()
    };
    let err = WecomSender::new("wecom", &config("https://qyapi.weixin.qq.com"), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("WECOM_SECRET"), "{err}");
}

#[test]
fn config_keys_are_checked() {
    let parsed: Config = toml::from_str("corp_id = \"ww1\"\nconfirm_within = \"2d\"\n").unwrap();
    let checked = validate(&parsed).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(checked.confirm_within, Duration::from_secs(2 * 86_400));
    assert_eq!(parsed.endpoint, "https://qyapi.weixin.qq.com");
    assert_eq!(checked.connection.timeout, Duration::from_secs(10));
    assert!(toml::from_str::<Config>("corp_id = \"ww1\"\nsecret = \"x\"\n").is_err());
    let soon: Config =
        toml::from_str("corp_id = \"ww1\"\ntimeout = \"soon\"\nconfirm_within = \"0s\"\n").unwrap();
    let problems = validate(&soon).err().unwrap();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["confirm_within", "timeout"], "{problems:?}");
    let empty = Config {
        corp_id: " ".into(),
        ..config("https://qyapi.weixin.qq.com")
    };
    assert!(WecomSender::new("wecom", &empty, &ctx()).is_err());
}

/// A customer WeCom would not take (41048), whose contact check answers
/// `contact`.
async fn not_sendable_with(contact: Reply) -> (SendOutcome, TestServer) {
    let server = start(move |request| match request.path() {
        "/cgi-bin/externalcontact/add_msg_template" => error(41048),
        "/cgi-bin/externalcontact/get" => contact.clone(),
        _ => error(404),
    })
    .await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    (outcome, server)
}

#[tokio::test]
async fn a_customer_still_in_contact_but_refused_is_deferred_to_next_month() {
    let (outcome, server) =
        not_sendable_with(ok(json!({"follow_user": [{"userid": "zhangsan"}]}))).await;
    let SendOutcome::Deferred { retry_at, reason } = outcome else {
        panic!("{outcome:?}")
    };
    // 2026-12-01 00:00 in China.
    assert_eq!(retry_at.to_rfc3339(), "2026-11-30T16:00:00+00:00");
    assert!(reason.contains("monthly limit"), "{reason}");
    let check = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/cgi-bin/externalcontact/get")
        .unwrap();
    assert_eq!(check.method, "GET");
    assert_eq!(
        check.query(),
        [
            ("access_token".to_string(), "TOKEN1".to_string()),
            ("external_userid".to_string(), CUSTOMER.to_string())
        ]
    );
}

#[tokio::test]
async fn a_customer_who_is_no_longer_a_contact_opted_out() {
    let (outcome, _server) = not_sendable_with(error(84061)).await;
    assert!(
        matches!(outcome, SendOutcome::OptedOut { .. }),
        "{outcome:?}"
    );
    let (outcome, _server) = not_sendable_with(ok(json!({"follow_user": []}))).await;
    assert!(
        matches!(outcome, SendOutcome::OptedOut { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_customer_of_another_staff_member_is_permanent_naming_the_sender() {
    let (outcome, _server) =
        not_sendable_with(ok(json!({"follow_user": [{"userid": "lisi"}]}))).await;
    let SendOutcome::Permanent { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("lisi") && error.contains("zhangsan"),
        "{error}"
    );
}

#[tokio::test]
async fn a_customer_in_fail_list_is_checked_like_41048() {
    let server = start(|request| match request.path() {
        "/cgi-bin/externalcontact/add_msg_template" => {
            ok(json!({"fail_list": [CUSTOMER], "msgid": "msgTASK1"}))
        }
        _ => error(84061),
    })
    .await;
    let recipient = recipient();
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    assert!(
        matches!(outcome, SendOutcome::OptedOut { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn provider_errors_map_to_retry_or_permanent() {
    for (code, retryable) in [
        (-1, true),
        (45009, true),
        (60020, true),
        (40096, false),
        (45002, false),
    ] {
        let server = start(move |_| error(code)).await;
        let recipient = recipient();
        let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
        match outcome {
            SendOutcome::Retryable { ref error, .. } if retryable => {
                assert!(error.contains(&code.to_string()), "{error}")
            }
            SendOutcome::Permanent { ref error } if !retryable => {
                assert!(error.contains(&code.to_string()), "{error}")
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

const DOC: &str = include_str!("../../../docs/wechat.md");
const ADD: &str = "/cgi-bin/externalcontact/add_msg_template";

#[tokio::test]
async fn every_row_of_the_task_table_in_docs_wechat_md_holds() {
    let rows = crate::testing::doc_table(DOC, "WeCom: creating the task");
    for row in rows {
        // 41048 and 84061 ask why: the next table, tested below.
        if row[2] == "see the next table" {
            continue;
        }
        for code in crate::testing::doc_codes(&row[0]) {
            let server = start(move |_| {
                if code == 0 {
                    task_created()
                } else {
                    error(code)
                }
            })
            .await;
            let recipient = recipient();
            let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
            crate::testing::assert_documented(&row[2], code, &outcome);
        }
    }
}

#[tokio::test]
async fn every_row_of_the_contact_table_in_docs_wechat_md_holds() {
    for row in crate::testing::doc_table(DOC, "WeCom: why a customer") {
        for code in crate::testing::doc_codes(&row[0]) {
            for refusal in [41048, 84061] {
                let contact = if code == 0 {
                    ok(json!({"follow_user": [{"userid": "zhangsan"}]}))
                } else {
                    error(code)
                };
                let server = start(move |request| match request.path() {
                    ADD => error(refusal),
                    "/cgi-bin/externalcontact/get" => contact.clone(),
                    _ => error(404),
                })
                .await;
                let recipient = recipient();
                let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
                // The outcome quotes WeCom's first refusal.
                crate::testing::assert_documented(&row[2], refusal, &outcome);
            }
        }
    }
}

#[tokio::test]
async fn a_staff_member_wecom_will_not_use_fails_at_once_naming_who() {
    for code in [40003, 41009, 46004, 60111, 50002, 60011, 60021] {
        for sender_userid in [Some("zhangsan"), None] {
            let server = start(move |_| error(code)).await;
            let mut config = config(&server.url);
            config.sender_userid = sender_userid.map(str::to_string);
            let sender = WecomSender::new("wecom", &config, &ctx()).unwrap();
            let recipient = recipient();
            let outcome = sender.send(&outbound(&recipient, now())).await;
            let SendOutcome::Permanent { error } = outcome else {
                panic!("{code}: {outcome:?}")
            };
            match sender_userid {
                Some(_) => assert!(error.contains("sender_userid `zhangsan`"), "{error}"),
                None => assert!(
                    error.contains("No sender_userid is set") && !error.contains("sender_userid `"),
                    "{error}"
                ),
            }
            assert_eq!(count(&server, ADD), 1, "{code}: one call, no retry");
        }
    }
}

#[tokio::test]
async fn a_task_still_being_handed_out_is_pending() {
    let server = start(|request| match request.path() {
        "/cgi-bin/externalcontact/get_groupmsg_task" => error(41063),
        _ => error(404),
    })
    .await;
    let recipient = recipient();
    let outcome = sender(&server.url)
        .poll("msgTASK1", &outbound(&recipient, now()))
        .await;
    assert_eq!(outcome, PollOutcome::Pending);
}

#[tokio::test]
async fn transport_failures_are_retryable_and_never_show_the_secret() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let recipient = recipient();
    let outcome = sender(&url).send(&outbound(&recipient, now())).await;
    let SendOutcome::Retryable { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!error.contains(SECRET), "{error}");

    let server = start(|_| Reply::text(502, "bad gateway")).await;
    let outcome = sender(&server.url).send(&outbound(&recipient, now())).await;
    assert!(
        matches!(outcome, SendOutcome::Retryable { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn overlong_text_is_permanent_before_any_call() {
    let server = start(|_| task_created()).await;
    let recipient = recipient();
    let text = "好".repeat(1400);
    let message = Outbound {
        content: &Content::text(text.clone()),
        ..outbound(&recipient, now())
    };
    let outcome = sender(&server.url).send(&message).await;
    assert!(
        matches!(outcome, SendOutcome::Permanent { .. }),
        "{outcome:?}"
    );
    assert!(server.requests().is_empty());
}

/// Polls a task created at `now()` at time `at`, against a server whose
/// task list and send results are given.
async fn poll_with(
    task_list: Value,
    send_list: Value,
    at: DateTime<Utc>,
) -> (PollOutcome, TestServer) {
    let server = start(move |request| match request.path() {
        "/cgi-bin/externalcontact/get_groupmsg_task" => ok(json!({"task_list": task_list})),
        "/cgi-bin/externalcontact/get_groupmsg_send_result" => ok(json!({"send_list": send_list})),
        "/cgi-bin/externalcontact/cancel_groupmsg_send" => ok(json!({})),
        _ => error(404),
    })
    .await;
    let recipient = recipient();
    let provider_id = format!("msgTASK1:{}", now().timestamp());
    let outcome = sender(&server.url)
        .poll(&provider_id, &outbound(&recipient, at))
        .await;
    (outcome, server)
}

fn result(status: i64) -> Value {
    json!([
        {"external_userid": "wmSOMEONEELSE", "userid": "zhangsan", "status": 1},
        {"external_userid": CUSTOMER, "userid": "zhangsan", "status": status},
    ])
}

#[tokio::test]
async fn poll_maps_every_customer_status() {
    let later = now() + chrono::Duration::hours(1);
    let confirmed = json!([{"userid": "zhangsan", "status": 2}]);
    let (outcome, server) = poll_with(confirmed.clone(), result(1), later).await;
    assert_eq!(outcome, PollOutcome::Sent);
    let requests = server.requests();
    let task = &requests[1];
    assert_eq!(task.path(), "/cgi-bin/externalcontact/get_groupmsg_task");
    assert_eq!(token_of(task), "TOKEN1");
    assert_eq!(task.json(), json!({"msgid": "msgTASK1", "limit": 1000}));
    let results = &requests[2];
    assert_eq!(
        results.path(),
        "/cgi-bin/externalcontact/get_groupmsg_send_result"
    );
    assert_eq!(
        results.json(),
        json!({"msgid": "msgTASK1", "userid": "zhangsan", "limit": 1000})
    );

    let (outcome, _) = poll_with(confirmed.clone(), result(0), later).await;
    assert_eq!(outcome, PollOutcome::Pending);
    let (outcome, _) = poll_with(confirmed.clone(), result(2), later).await;
    assert!(
        matches!(outcome, PollOutcome::OptedOut { .. }),
        "{outcome:?}"
    );
    let (outcome, _) = poll_with(confirmed, result(3), later).await;
    let PollOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("month"), "{error}");
}

#[tokio::test]
async fn a_task_staff_have_not_confirmed_is_pending_without_asking_for_results() {
    let later = now() + chrono::Duration::hours(1);
    let (outcome, server) = poll_with(
        json!([{"userid": "zhangsan", "status": 0}]),
        result(1),
        later,
    )
    .await;
    assert_eq!(outcome, PollOutcome::Pending);
    assert_eq!(
        count(&server, "/cgi-bin/externalcontact/get_groupmsg_send_result"),
        0
    );
}

#[tokio::test]
async fn an_unconfirmed_task_past_its_deadline_is_cancelled_and_failed() {
    let late = now() + chrono::Duration::days(3);
    let (outcome, server) = poll_with(
        json!([{"userid": "zhangsan", "status": 0}]),
        json!([]),
        late,
    )
    .await;
    let PollOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("3days") && error.contains("cancelled"),
        "{error}"
    );
    let cancel = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/cgi-bin/externalcontact/cancel_groupmsg_send")
        .unwrap();
    assert_eq!(cancel.json(), json!({"msgid": "msgTASK1"}));
}

#[tokio::test]
async fn a_sent_task_past_its_deadline_still_counts_as_sent() {
    let late = now() + chrono::Duration::days(5);
    let (outcome, server) = poll_with(
        json!([{"userid": "zhangsan", "status": 2}]),
        result(1),
        late,
    )
    .await;
    assert_eq!(outcome, PollOutcome::Sent);
    assert_eq!(
        count(&server, "/cgi-bin/externalcontact/cancel_groupmsg_send"),
        0
    );
}

#[tokio::test]
async fn poll_failures_are_unknown_and_a_forgotten_task_failed() {
    let server = start(|_| error(-1)).await;
    let recipient = recipient();
    let outcome = sender(&server.url)
        .poll("msgTASK1:1", &outbound(&recipient, now()))
        .await;
    assert!(
        matches!(outcome, PollOutcome::Unknown { .. }),
        "{outcome:?}"
    );
    let server = start(|_| error(41047)).await;
    let outcome = sender(&server.url)
        .poll("msgTASK1", &outbound(&recipient, now()))
        .await;
    assert!(matches!(outcome, PollOutcome::Failed { .. }), "{outcome:?}");
}

#[test]
fn provider_ids_carry_the_creation_time() {
    let task = TaskId::parse("msgABC:1800000000");
    assert_eq!(task.msgid, "msgABC");
    assert_eq!(task.created.unwrap().timestamp(), 1_800_000_000);
    assert_eq!(task.to_string(), "msgABC:1800000000");
    assert_eq!(TaskId::parse("msgABC").created, None);
}

#[test]
fn next_month_starts_at_midnight_china_time() {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    assert_eq!(
        start_of_next_month_in_china(at("2026-12-31T15:59:59Z")),
        at("2026-12-31T16:00:00Z")
    );
    // Already January 1st in China.
    assert_eq!(
        start_of_next_month_in_china(at("2026-12-31T16:00:00Z")),
        at("2027-01-31T16:00:00Z")
    );
}
