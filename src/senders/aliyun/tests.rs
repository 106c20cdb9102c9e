//! Tests of the `aliyun_sms` sender: its signature against the provider's
//! published example, its requests and answers against a real HTTP server
//! on 127.0.0.1.

use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::senders::kit::china;
use crate::store::outbox::Recipient;
use crate::testing::{Recorded, Reply, TestServer};
use serde_json::json;

const SECRET: &str = "test-secret-do-not-leak";

/// The published example of Alibaba Cloud's "V3 request body &
/// signature mechanism" ("Fixed parameter values" / 签名示例):
/// https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
/// (Chinese, V3版本请求体&签名机制: https://help.aliyun.com/document_detail/2593177.html).
#[test]
fn signs_the_published_example_exactly() {
    let query = [
        (
            "ImageId".to_string(),
            "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_string(),
        ),
        ("RegionId".to_string(), "cn-shanghai".to_string()),
    ];
    let signed = sign(
        &Acs3Request {
            method: "POST",
            host: "ecs.cn-shanghai.aliyuncs.com",
            path: "/",
            query: &query,
            action: "RunInstances",
            version: "2014-05-26",
            body: b"",
            date: DateTime::parse_from_rfc3339("2023-10-26T10:22:32Z")
                .unwrap()
                .with_timezone(&Utc),
            nonce: "3156853299f313e23d1673dc12e1703d",
        },
        "YourAccessKeyId",
        "YourAccessKeySecret",
    );
    assert_eq!(
        signed.canonical_request,
        "POST\n\
             /\n\
             ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\n\
             x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\
             \n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        signed.string_to_sign,
        "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    );
    assert_eq!(
        signed.signature,
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
    assert_eq!(
        signed.authorization,
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
}

#[test]
fn the_canonical_query_is_sorted_and_rfc3986_encoded() {
    let query = [
        ("b".to_string(), "a b*~".to_string()),
        ("A".to_string(), r#"{"n":"王"}"#.to_string()),
    ];
    let signed = sign(
        &Acs3Request {
            method: "POST",
            host: "h",
            path: "/",
            query: &query,
            action: "X",
            version: "v",
            body: b"",
            date: Utc::now(),
            nonce: "n",
        },
        "id",
        "secret",
    );
    assert_eq!(
        signed.canonical_query,
        "A=%7B%22n%22%3A%22%E7%8E%8B%22%7D&b=a%20b%2A~"
    );
}

#[test]
fn mainland_numbers_lose_their_country_code() {
    assert_eq!(phone_number("13812345678"), "13812345678");
    assert_eq!(phone_number("+86 138-1234-5678"), "13812345678");
    assert_eq!(phone_number("008613812345678"), "13812345678");
    assert_eq!(phone_number("8613812345678"), "13812345678");
    assert_eq!(phone_number("+85261234567"), "85261234567");
}

// -----------------------------------------------------------------------
// Against a local server.

fn config(endpoint: &str) -> Config {
    toml::from_str(&format!(
        r#"
            sign_name = "美丽诊所"
            endpoint = "{endpoint}"
            timeout = "300ms"
            [templates.warning_offer]
            code = "SMS_154950909"
            [templates.churned_recall]
            code = "SMS_000000002"
            params = {{ customer = "name", tel = "phone" }}
            "#
    ))
    .unwrap()
}

fn secrets() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([
            ("ALIYUN_ACCESS_KEY_ID".to_string(), "LTAItestid".to_string()),
            ("ALIYUN_ACCESS_KEY_SECRET".to_string(), SECRET.to_string()),
        ])),
        ..Context::default()
    }
}

fn sender(server: &TestServer) -> Arc<dyn Sender> {
    build("aliyun", &config(&server.url), &secrets())
        .map_err(|e| e.to_string())
        .unwrap()
}

fn now() -> DateTime<Utc> {
    // 09:02:03 in Beijing on 2026-03-02.
    DateTime::parse_from_rfc3339("2026-03-02T01:02:03Z")
        .unwrap()
        .with_timezone(&Utc)
}

const PARAMS: &str = r#"{"name":"王女士","clinic":"美丽诊所","phone":"400-000-0000"}"#;

/// What the test message says.
static CONTENT: LazyLock<Content> = LazyLock::new(|| Content {
    params: Some(PARAMS.into()),
    ..Content::text("王女士您好，美丽诊所想念您")
});

fn outbound<'a>(recipient: &'a Recipient, template: &'a str) -> Outbound<'a> {
    Outbound {
        id: 42,
        channel: Channel::Sms,
        rule_id: "warning",
        template,
        content: &CONTENT,
        recipient,
        address: "+8613812345678",
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now: now(),
    }
}

fn ok(biz_id: &str) -> Reply {
    Reply::json(
        200,
        json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "R1"}),
    )
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"Code": code, "Message": message, "RequestId": "R2"}),
    )
}

fn action(request: &Recorded) -> &str {
    request.header("x-acs-action").unwrap_or("")
}

fn query(request: &Recorded, name: &str) -> Option<String> {
    request
        .query()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Recomputes the signature of a recorded request from its bytes alone,
/// following the documented steps, and checks it against the
/// `Authorization` header.
fn assert_signature_verifies(request: &Recorded) {
    let authorization = request.header("authorization").expect("authorization");
    let rest = authorization
        .strip_prefix("ACS3-HMAC-SHA256 ")
        .expect("ACS3-HMAC-SHA256");
    let fields: BTreeMap<&str, &str> = rest
        .split(',')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    assert_eq!(fields["Credential"], "LTAItestid");
    assert_eq!(
        fields["SignedHeaders"],
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    );
    // The query as sent must already be canonical.
    let raw_query = request.target.split_once('?').map_or("", |(_, q)| q);
    let mut pairs = request.query();
    pairs.sort();
    let canonical: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", rfc3986(k), rfc3986(v)))
        .collect();
    assert_eq!(raw_query, canonical.join("&"));
    let payload = sha256_hex(&request.body);
    assert_eq!(
        request.header("x-acs-content-sha256"),
        Some(payload.as_str())
    );
    let headers: String = fields["SignedHeaders"]
        .split(';')
        .map(|h| format!("{h}:{}\n", request.header(h).unwrap().trim()))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path(),
        raw_query,
        headers,
        fields["SignedHeaders"],
        payload
    );
    let string_to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    assert_eq!(
        fields["Signature"],
        hex::encode(hmac_sha256(SECRET.as_bytes(), string_to_sign.as_bytes()))
    );
}

#[tokio::test]
async fn sends_the_exact_request_aliyun_expects() {
    let server = TestServer::start(|_, _| ok("900619746936498440^0")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&outbound(&recipient, "warning_offer"))
        .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "900619746936498440^0".into()
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), "/");
    assert!(request.body.is_empty());
    assert_eq!(
        request.query(),
        [
            ("OutId".to_string(), "42".to_string()),
            ("PhoneNumbers".to_string(), "13812345678".to_string()),
            ("SignName".to_string(), "美丽诊所".to_string()),
            ("TemplateCode".to_string(), "SMS_154950909".to_string()),
            ("TemplateParam".to_string(), PARAMS.to_string()),
        ]
    );
    assert_eq!(action(request), "SendSms");
    assert_eq!(request.header("x-acs-version"), Some("2017-05-25"));
    assert_eq!(request.header("x-acs-date"), Some("2026-03-02T01:02:03Z"));
    let host = server.url.trim_start_matches("http://");
    assert_eq!(request.header("host"), Some(host));
    let nonce = request.header("x-acs-signature-nonce").unwrap();
    assert!(nonce.len() == 32 && nonce.chars().all(|c| c.is_ascii_hexdigit()));
    assert_signature_verifies(request);
    let everything = format!("{request:?}");
    assert!(!everything.contains(SECRET));
}

#[tokio::test]
async fn each_request_gets_a_fresh_nonce() {
    let server = TestServer::start(|_, _| ok("1")).await;
    let sender = sender(&server);
    let recipient = Recipient::default();
    sender.send(&outbound(&recipient, "warning_offer")).await;
    sender.send(&outbound(&recipient, "warning_offer")).await;
    let requests = server.requests();
    assert_ne!(
        requests[0].header("x-acs-signature-nonce"),
        requests[1].header("x-acs-signature-nonce")
    );
}

#[tokio::test]
async fn renamed_params_fill_the_providers_variables() {
    let server = TestServer::start(|_, _| ok("1")).await;
    let recipient = Recipient::default();
    sender(&server)
        .send(&outbound(&recipient, "churned_recall"))
        .await;
    let request = &server.requests()[0];
    let param: Value = serde_json::from_str(&query(request, "TemplateParam").unwrap()).unwrap();
    assert_eq!(param, json!({"customer": "王女士", "tel": "400-000-0000"}));
}

async fn outcome_of(reply: Reply) -> SendOutcome {
    let server = TestServer::start(move |_, _| reply.clone()).await;
    let recipient = Recipient::default();
    sender(&server)
        .send(&outbound(&recipient, "warning_offer"))
        .await
}

fn retryable(outcome: &SendOutcome) -> Option<Option<Duration>> {
    match outcome {
        SendOutcome::Retryable { retry_after, .. } => Some(*retry_after),
        _ => None,
    }
}

fn error_text(outcome: &SendOutcome) -> &str {
    match outcome {
        SendOutcome::Retryable { error, .. }
        | SendOutcome::Permanent { error }
        | SendOutcome::Refused { error, .. } => error,
        SendOutcome::OptedOut { reason } => reason,
        _ => "",
    }
}

#[tokio::test]
async fn flow_control_is_retried_when_it_lifts() {
    let minute = outcome_of(error(
        200,
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发分钟级流控Permits:1",
    ))
    .await;
    assert_eq!(retryable(&minute), Some(Some(Duration::from_secs(60))));
    let hour = outcome_of(error(
        200,
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发小时级流控Permits:5",
    ))
    .await;
    assert_eq!(retryable(&hour), Some(Some(Duration::from_secs(3600))));
    // 09:02:03 in Beijing: the day's limit lifts at midnight (+1 min).
    let day = outcome_of(error(
        200,
        "isv.BUSINESS_LIMIT_CONTROL",
        "触发天级流控Permits:10",
    ))
    .await;
    assert_eq!(
        retryable(&day),
        Some(Some(Duration::from_secs(14 * 3600 + 57 * 60 + 57 + 60)))
    );
    let throttled = outcome_of(error(
        400,
        "Throttling.User",
        "Request was denied due to user flow control.",
    ))
    .await;
    assert_eq!(retryable(&throttled), Some(None));
}

#[tokio::test]
async fn a_retry_after_header_wins() {
    let outcome = outcome_of(
        error(200, "isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
            .header("Retry-After", "7"),
    )
    .await;
    assert_eq!(retryable(&outcome), Some(Some(Duration::from_secs(7))));
}

#[tokio::test]
async fn system_errors_and_5xx_are_retried() {
    let system = outcome_of(error(200, "isp.SYSTEM_ERROR", "系统错误")).await;
    assert_eq!(retryable(&system), Some(None));
    let outage =
        outcome_of(Reply::text(503, "Service Unavailable").header("Retry-After", "30")).await;
    assert_eq!(retryable(&outage), Some(Some(Duration::from_secs(30))));
    assert!(error_text(&outage).contains(RESULT_UNKNOWN));
}

#[tokio::test]
async fn bad_numbers_templates_and_signatures_are_permanent() {
    for (code, message, says) in [
        (
            "isv.MOBILE_NUMBER_ILLEGAL",
            "非法手机号",
            "not a valid mobile number",
        ),
        (
            "isv.SMS_TEMPLATE_ILLEGAL",
            "模板不合法",
            "`code` in recall.toml",
        ),
        (
            "isv.SMS_SIGNATURE_ILLEGAL",
            "签名不合法",
            "`sign_name` in recall.toml",
        ),
        (
            "isv.TEMPLATE_MISSING_PARAMETERS",
            "模板缺少变量",
            "params.toml",
        ),
        (
            "isv.BLACK_KEY_CONTROL_LIMIT",
            "黑名单管控",
            "forbidden-keyword",
        ),
    ] {
        let outcome = outcome_of(error(200, code, message)).await;
        match &outcome {
            SendOutcome::Permanent { error } => {
                assert!(error.contains(code) && error.contains(says), "{error}")
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn credential_errors_refuse_the_sender_and_blame_the_configuration() {
    let outcome = outcome_of(error(
        400,
        "SignatureDoesNotMatch",
        "Specified signature does not match our calculation.",
    ))
    .await;
    let error = error_text(&outcome);
    assert!(
        matches!(&outcome, SendOutcome::Refused { code, .. } if code == "SignatureDoesNotMatch"),
        "{outcome:?}"
    );
    assert!(
        error.contains("configuration") && !error.contains(SECRET),
        "{error}"
    );
}

#[tokio::test]
async fn an_unsubscribed_customer_has_opted_out() {
    let outcome = outcome_of(error(200, "isv.CUSTOMER_REFUSED", "用户已退订推广短信")).await;
    assert!(
        matches!(&outcome, SendOutcome::OptedOut { reason } if reason.contains("unsubscribed")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn provider_text_never_carries_the_number_unmasked() {
    let outcome = outcome_of(error(
        200,
        "isv.MOBILE_NUMBER_ILLEGAL",
        "bad number 13812345678",
    ))
    .await;
    let error = error_text(&outcome);
    assert!(
        error.contains("138****5678") && !error.contains("13812345678"),
        "{error}"
    );
}

#[tokio::test]
async fn a_timeout_is_retryable_with_its_result_unknown() {
    let outcome = outcome_of(ok("late").delayed(Duration::from_secs(3))).await;
    assert_eq!(retryable(&outcome), Some(None));
    assert!(error_text(&outcome).contains(RESULT_UNKNOWN), "{outcome:?}");
    assert!(error_text(&outcome).contains("timed out"), "{outcome:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable_and_not_in_doubt() {
    // A port nothing listens on: bind one, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sender = build("aliyun", &config(&url), &secrets())
        .map_err(|e| e.to_string())
        .unwrap();
    let recipient = Recipient::default();
    let outcome = sender.send(&outbound(&recipient, "warning_offer")).await;
    assert_eq!(retryable(&outcome), Some(None));
    let error = error_text(&outcome);
    assert!(
        !error.contains(RESULT_UNKNOWN) && !error.contains("13812345678"),
        "{error}"
    );
}

/// The second attempt after a timeout, as the dispatcher hands it over.
async fn retry_after_timeout(server: &TestServer) -> SendOutcome {
    let sender = sender(server);
    let recipient = Recipient::default();
    let first = sender.send(&outbound(&recipient, "warning_offer")).await;
    let previous = error_text(&first).to_string();
    assert!(previous.contains(RESULT_UNKNOWN), "{first:?}");
    assert!(
        crate::store::outbox::is_in_doubt(Some(&previous)),
        "{first:?}"
    );
    sender
        .send(&Outbound {
            attempt: 2,
            previous_error: Some(&previous),
            in_doubt: true,
            ..outbound(&recipient, "warning_offer")
        })
        .await
}

fn details(records: Value) -> Reply {
    let n = records.as_array().map_or(0, Vec::len);
    Reply::json(
        200,
        json!({
            "Code": "OK", "Message": "OK", "RequestId": "Q",
            "TotalCount": n,
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": records}
        }),
    )
}

#[tokio::test]
async fn after_a_timeout_a_send_that_went_through_is_not_sent_again() {
    let server = TestServer::start(|request, index| match (index, action(request)) {
        (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
        (_, "QuerySendDetails") => details(json!([
            {"PhoneNum": "13812345678", "SendStatus": 3, "ErrCode": "DELIVERED",
             "TemplateCode": "SMS_000000009", "OutId": "42", "SendDate": "2026-03-02 09:00:01"},
            {"PhoneNum": "13812345678", "SendStatus": 3, "ErrCode": "DELIVERED",
             "TemplateCode": "SMS_154950909", "OutId": "42", "SendDate": "2026-03-02 09:01:01"}
        ])),
        _ => error(500, "Unexpected", "unexpected request"),
    })
    .await;
    let outcome = retry_after_timeout(&server).await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "OutId:42".into()
        }
    );
    let requests = server.requests();
    let actions: Vec<&str> = requests.iter().map(action).collect();
    assert_eq!(actions, ["SendSms", "QuerySendDetails"]);
    let query_request = &requests[1];
    assert_eq!(
        query_request.query(),
        [
            ("CurrentPage".to_string(), "1".to_string()),
            ("PageSize".to_string(), "50".to_string()),
            ("PhoneNumber".to_string(), "13812345678".to_string()),
            ("SendDate".to_string(), "20260302".to_string()),
        ]
    );
    assert_signature_verifies(query_request);
}

#[tokio::test]
async fn after_a_timeout_a_send_that_did_not_go_through_is_sent_again() {
    let server = TestServer::start(|request, index| match (index, action(request)) {
            (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
            (_, "SendSms") => ok("second"),
            // Another message to the number, and ours, undelivered.
            (_, "QuerySendDetails") => details(json!([
                {"PhoneNum": "13812345678", "SendStatus": 3, "TemplateCode": "SMS_154950909", "OutId": "41"},
                {"PhoneNum": "13812345678", "SendStatus": 2, "ErrCode": "MK:0001",
                 "TemplateCode": "SMS_154950909", "OutId": "42"}
            ])),
            _ => error(500, "Unexpected", "unexpected request"),
        })
        .await;
    let outcome = retry_after_timeout(&server).await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "second".into()
        }
    );
    let requests = server.requests();
    let sequence: Vec<(&str, Option<String>)> = requests
        .iter()
        .map(|r| (action(r), query(r, "SendDate")))
        .collect();
    assert_eq!(
        sequence,
        [
            ("SendSms", None),
            ("QuerySendDetails", Some("20260302".to_string())),
            ("QuerySendDetails", Some("20260301".to_string())),
            ("SendSms", None),
        ]
    );
    assert_eq!(query(&requests[3], "OutId").as_deref(), Some("42"));
}

#[tokio::test]
async fn when_aliyun_cannot_be_asked_nothing_is_sent_and_the_doubt_remains() {
    let server = TestServer::start(|request, index| match (index, action(request)) {
        (0, "SendSms") => ok("lost").delayed(Duration::from_secs(3)),
        (_, "QuerySendDetails") => error(503, "ServiceUnavailable", "try later"),
        _ => ok("must not happen"),
    })
    .await;
    let outcome = retry_after_timeout(&server).await;
    assert_eq!(retryable(&outcome), Some(None));
    assert!(error_text(&outcome).contains(RESULT_UNKNOWN), "{outcome:?}");
    let actions: Vec<String> = server
        .requests()
        .iter()
        .map(|r| action(r).to_string())
        .collect();
    assert_eq!(actions, ["SendSms", "QuerySendDetails"]);
}

/// The dispatcher dies while message 1 is being sent; at the next start
/// it is requeued and dispatched again through a real store and
/// dispatcher. Returns the report, Aliyun's requests (action, SendDate)
/// and the message's (status, provider id, last error).
async fn dispatch_after_a_crash(
    server: &TestServer,
) -> (
    crate::dispatch::DispatchReport,
    Vec<(String, Option<String>)>,
    (String, Option<String>, Option<String>),
) {
    use crate::base::clock::Clock;
    use crate::config::{ChannelPolicy, DispatchSettings};
    use crate::dispatch::{Dispatcher, Route};
    use crate::store::ingest::NewCustomer;
    use crate::store::queries::LogFilter;
    use crate::testing::{T0, outbox};

    let f = outbox(
        vec![NewCustomer {
            phone: Some("13812345678".into()),
            ..NewCustomer::named("C1", "王丽")
        }],
        Channel::Sms,
        None,
    );
    {
        let mut store = f.store.lock().unwrap();
        let claimed = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, 1);
        // The process dies here, SendSms maybe out, its answer unwritten.
        assert_eq!(store.requeue_interrupted(T0 + 60).unwrap(), 1);
    }
    let config: Config = toml::from_str(&format!(
        "sign_name = \"美丽诊所\"\nendpoint = \"{}\"\n[templates.t]\ncode = \"SMS_154950909\"\n",
        server.url
    ))
    .unwrap();
    let sender = build("aliyun", &config, &secrets())
        .map_err(|e| e.to_string())
        .unwrap();
    let dispatcher = Dispatcher::with_routes(
        BTreeMap::from([(
            Channel::Sms,
            Route::new("aliyun", sender, ChannelPolicy::plain("aliyun")),
        )]),
        DispatchSettings::default(),
        chrono_tz::Asia::Shanghai,
    );
    let now = DateTime::from_timestamp(T0 + 60, 0).unwrap();
    let report = dispatcher
        .drain(&f.store, Clock::Fixed(now), &|| false)
        .await
        .unwrap();
    let requests = server
        .requests()
        .iter()
        .map(|r| (action(r).to_string(), query(r, "SendDate")))
        .collect();
    let entry = f
        .store
        .lock()
        .unwrap()
        .log(&LogFilter::default())
        .unwrap()
        .remove(0);
    (
        report,
        requests,
        (entry.status, entry.provider_id, entry.last_error),
    )
}

#[tokio::test]
async fn a_message_requeued_after_a_crash_that_aliyun_has_is_not_sent_again() {
    // T0 is 2026-05-29 04:27 in Beijing.
    let server = TestServer::start(|request, _| match action(request) {
        "QuerySendDetails" => details(json!([
            {"PhoneNum": "13812345678", "SendStatus": 1, "TemplateCode": "SMS_154950909",
             "OutId": "1", "SendDate": "2026-05-29 04:26:41"}
        ])),
        _ => ok("second-send"),
    })
    .await;
    let (report, requests, entry) = dispatch_after_a_crash(&server).await;
    assert_eq!(report.sent, 1);
    assert_eq!(
        requests,
        [("QuerySendDetails".to_string(), Some("20260529".to_string()))]
    );
    assert_eq!(
        entry,
        ("sent".to_string(), Some("OutId:1".to_string()), None)
    );
}

#[tokio::test]
async fn a_message_requeued_after_a_crash_is_looked_up_before_it_is_sent() {
    let server = TestServer::start(|request, _| match action(request) {
        "QuerySendDetails" => details(json!([])),
        _ => ok("after-lookup"),
    })
    .await;
    let (report, requests, entry) = dispatch_after_a_crash(&server).await;
    assert_eq!(report.sent, 1);
    assert_eq!(
        requests,
        [
            ("QuerySendDetails".to_string(), Some("20260529".to_string())),
            ("QuerySendDetails".to_string(), Some("20260528".to_string())),
            ("SendSms".to_string(), None),
        ]
    );
    assert_eq!(
        entry,
        ("sent".to_string(), Some("after-lookup".to_string()), None)
    );
}

#[tokio::test]
async fn a_retry_after_a_known_failure_does_not_ask_first() {
    let server = TestServer::start(|_, _| ok("2")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&Outbound {
            attempt: 2,
            previous_error: Some("Aliyun isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控Permits:1"),
            ..outbound(&recipient, "warning_offer")
        })
        .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "2".into()
        }
    );
    let actions: Vec<String> = server
        .requests()
        .iter()
        .map(|r| action(r).to_string())
        .collect();
    assert_eq!(actions, ["SendSms"]);
}

// -----------------------------------------------------------------------
// Configuration.

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<crate::senders::SenderConfig>(
        "kind = \"aliyun_sms\"\nsign_name = \"x\"\nsignname = \"y\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `signname`"), "{err}");
    let err = toml::from_str::<Config>(
        "sign_name = \"x\"\n[templates.a]\ncode = \"SMS_1\"\nid = \"2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `id`"), "{err}");
}

#[test]
fn a_missing_secret_names_its_variable() {
    let ctx = Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "ALIYUN_ACCESS_KEY_ID".to_string(),
            "id".to_string(),
        )])),
        ..Context::default()
    };
    let err = build("aliyun", &config("https://dysmsapi.aliyuncs.com"), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ALIYUN_ACCESS_KEY_SECRET") && !err.contains("ALIYUN_ACCESS_KEY_ID"),
        "{err}"
    );
    let mut renamed = config("https://dysmsapi.aliyuncs.com");
    renamed.access_key_id_env = "CLINIC_AK".into();
    let err = build("aliyun", &renamed, &Context::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("CLINIC_AK"), "{err}");
}

#[test]
fn every_config_problem_is_reported_at_once() {
    let config: Config = toml::from_str(
        "sign_name = \" \"\nendpoint = \"dysmsapi\"\ntimeout = \"soon\"\naccess_key_id_env = \"\"\n",
    )
    .unwrap();
    let err = build("aliyun", &config, &secrets())
        .err()
        .unwrap()
        .to_string();
    for part in [
        "sign_name",
        "[senders.aliyun.templates.",
        "endpoint",
        "timeout `soon` is not a duration",
        "access_key_id_env",
    ] {
        assert!(err.contains(part), "{part} in {err}");
    }
}

#[tokio::test]
async fn a_template_without_a_mapping_says_what_to_add() {
    let server = TestServer::start(|_, _| ok("1")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&outbound(&recipient, "welcome_back"))
        .await;
    let error = error_text(&outcome);
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    assert!(
        error.contains("[senders.aliyun.templates.welcome_back]") && error.contains("code = "),
        "{error}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_missing_parameter_says_what_to_add() {
    let server = TestServer::start(|_, _| ok("1")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&Outbound {
            content: &Content {
                params: Some(r#"{"name":"王女士"}"#.into()),
                ..CONTENT.clone()
            },
            ..outbound(&recipient, "churned_recall")
        })
        .await;
    let error = error_text(&outcome);
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    assert!(
        error.contains("`phone`")
            && error.contains("templates/sms/churned_recall.params.toml")
            && error.contains("[senders.aliyun.templates.churned_recall]"),
        "{error}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn the_code_table_sorts_codes_into_outcomes() {
    let now = now();
    for (code, expected) in [
        ("OK", Verdict::Sent),
        ("isv.CUSTOMER_REFUSED", Verdict::OptedOut),
        (
            "isv.DAY_LIMIT_CONTROL",
            Verdict::Retry(Some(china::until_midnight(now))),
        ),
        ("isv.AMOUNT_NOT_ENOUGH", Verdict::Refused),
        ("isp.SYSTEM_ERROR", Verdict::Retry(None)),
        ("Throttling.Api", Verdict::Retry(None)),
        ("isp.RAM_PERMISSION_DENY", Verdict::Refused),
        ("InvalidAccessKeyId.NotFound", Verdict::Refused),
        ("InvalidTimeStamp.Expired", Verdict::Retry(None)),
        ("isv.SOMETHING_NEW", Verdict::Permanent),
        ("SomethingElse", Verdict::Retry(None)),
    ] {
        assert_eq!(verdict(code, "", now).0, expected, "{code}");
    }
}
