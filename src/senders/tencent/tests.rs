//! Tests of the `tencent_sms` sender: its signature against the provider's
//! published example, its requests and answers against a real HTTP server
//! on 127.0.0.1.

use chrono::Utc;

use std::sync::LazyLock;

use super::*;
use crate::base::content::Content;
use crate::base::model::Channel;
use crate::senders::Secrets;
use crate::senders::kit::china;
use crate::store::outbox::Recipient;
use crate::testing::{Recorded, Reply, TestServer};

const SECRET_KEY: &str = "test-secret-key-do-not-leak";

/// The worked example of TencentCloud API 3.0 "Signature v3" (CVM
/// DescribeInstances in ap-guangzhou at 1551113065), the same page in
/// every product's API docs, e.g.
/// https://tencentcloud.com/document/api/1150/49447 (Chinese, 签名方法 v3:
/// https://cloud.tencent.com/document/api/362/4208). Its SecretKey is the
/// documented `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`; newer revisions mask
/// the SecretId, which the signature does not depend on.
#[test]
fn signs_the_published_example_exactly() {
    let payload =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    assert_eq!(
        sha256_hex(payload.as_bytes()),
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    );
    let signed = sign(
        &Tc3Request {
            host: "cvm.tencentcloudapi.com",
            service: "cvm",
            content_type: "application/json; charset=utf-8",
            action: None,
            payload: payload.as_bytes(),
            timestamp: 1551113065,
        },
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
    );
    assert_eq!(
        signed.canonical_request,
        "POST\n\
             /\n\
             \n\
             content-type:application/json; charset=utf-8\n\
             host:cvm.tencentcloudapi.com\n\
             \n\
             content-type;host\n\
             35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    );
    assert_eq!(
        signed.string_to_sign,
        "TC3-HMAC-SHA256\n\
             1551113065\n\
             2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    );
    assert_eq!(
        signed.signature,
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    );
    assert_eq!(
        signed.authorization,
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    );
}

#[test]
fn the_action_is_signed_in_lower_case_and_the_date_is_utc() {
    // 2019-02-26 00:44:25 in Beijing is still 2019-02-25 in UTC.
    let signed = sign(
        &Tc3Request {
            host: "sms.tencentcloudapi.com",
            service: "sms",
            content_type: CONTENT_TYPE,
            action: Some("SendSms"),
            payload: b"{}",
            timestamp: 1551113065,
        },
        "id",
        "key",
    );
    assert!(
        signed.canonical_request.contains(
            "host:sms.tencentcloudapi.com\nx-tc-action:sendsms\n\ncontent-type;host;x-tc-action\n"
        ),
        "{}",
        signed.canonical_request
    );
    assert!(
        signed
            .string_to_sign
            .contains("\n2019-02-25/sms/tc3_request\n")
    );
}

#[test]
fn numbers_are_sent_in_e164() {
    assert_eq!(phone_number("13812345678"), "+8613812345678");
    assert_eq!(phone_number("+86 138-1234-5678"), "+8613812345678");
    assert_eq!(phone_number("008613812345678"), "+8613812345678");
    assert_eq!(phone_number("8613812345678"), "+8613812345678");
    assert_eq!(phone_number("+85261234567"), "+85261234567");
    assert_eq!(phone_number("0085261234567"), "+85261234567");
}

// -----------------------------------------------------------------------
// Against a local server.

fn config(endpoint: &str) -> Config {
    toml::from_str(&format!(
        r#"
            sms_sdk_app_id = "1400006666"
            sign_name = "美丽诊所"
            endpoint = "{endpoint}"
            timeout = "300ms"
            [templates.warning_offer]
            id = "1234567"
            params = ["name", "phone"]
            "#
    ))
    .unwrap()
}

fn secrets() -> Context {
    Context {
        secrets: Secrets::Map(BTreeMap::from([
            (
                "TENCENTCLOUD_SECRET_ID".to_string(),
                "AKIDtestid".to_string(),
            ),
            (
                "TENCENTCLOUD_SECRET_KEY".to_string(),
                SECRET_KEY.to_string(),
            ),
        ])),
        ..Context::default()
    }
}

fn sender(server: &TestServer) -> Arc<dyn Sender> {
    build("tencent", &config(&server.url), &secrets())
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
        address: "13812345678",
        attempt: 1,
        previous_error: None,
        in_doubt: false,
        now: now(),
    }
}

fn status(code: &str, message: &str) -> Reply {
    Reply::json(
        200,
        json!({"Response": {
            "SendStatusSet": [{
                "SerialNo": if code == "Ok" { "5000:1045710669157053657849499619" } else { "" },
                "PhoneNumber": "+8613812345678",
                "Fee": 1,
                "SessionContext": "42",
                "Code": code,
                "Message": message,
                "IsoCode": "CN"
            }],
            "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"
        }}),
    )
}

fn request_error(code: &str, message: &str) -> Reply {
    Reply::json(
        200,
        json!({"Response": {
            "Error": {"Code": code, "Message": message},
            "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"
        }}),
    )
}

/// Recomputes the signature of a recorded request from its bytes alone,
/// following the documented steps, and checks it against the
/// `Authorization` header.
fn assert_signature_verifies(request: &Recorded) {
    let authorization = request.header("authorization").expect("authorization");
    let rest = authorization
        .strip_prefix("TC3-HMAC-SHA256 ")
        .expect("TC3-HMAC-SHA256");
    let fields: BTreeMap<&str, &str> = rest
        .split(", ")
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let timestamp: i64 = request.header("x-tc-timestamp").unwrap().parse().unwrap();
    let date = DateTime::from_timestamp(timestamp, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        fields["Credential"],
        format!("AKIDtestid/{date}/sms/tc3_request")
    );
    assert_eq!(fields["SignedHeaders"], "content-type;host;x-tc-action");
    let headers: String = fields["SignedHeaders"]
        .split(';')
        .map(|h| format!("{h}:{}\n", request.header(h).unwrap().trim().to_lowercase()))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n\n{}\n{}\n{}",
        request.method,
        request.path(),
        headers,
        fields["SignedHeaders"],
        sha256_hex(&request.body)
    );
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/sms/tc3_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = hmac_sha256(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes());
    let key = hmac_sha256(&key, b"sms");
    let key = hmac_sha256(&key, b"tc3_request");
    assert_eq!(
        fields["Signature"],
        hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
    );
}

#[tokio::test]
async fn sends_the_exact_request_tencent_expects() {
    let server = TestServer::start(|_, _| status("Ok", "send success")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&outbound(&recipient, "warning_offer"))
        .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: "5000:1045710669157053657849499619".into()
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/");
    assert_eq!(request.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(
        request.header("host"),
        Some(server.url.trim_start_matches("http://"))
    );
    assert_eq!(request.header("x-tc-action"), Some("SendSms"));
    assert_eq!(request.header("x-tc-version"), Some("2021-01-11"));
    assert_eq!(request.header("x-tc-region"), Some("ap-guangzhou"));
    assert_eq!(request.header("x-tc-timestamp"), Some("1772413323"));
    assert_eq!(
        request.json(),
        json!({
            "PhoneNumberSet": ["+8613812345678"],
            "SmsSdkAppId": "1400006666",
            "SignName": "美丽诊所",
            "TemplateId": "1234567",
            "TemplateParamSet": ["王女士", "400-000-0000"],
            "SessionContext": "42"
        })
    );
    assert_signature_verifies(request);
    assert!(!format!("{request:?}").contains(SECRET_KEY));
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
        SendOutcome::OptedOut { reason } | SendOutcome::Deferred { reason, .. } => reason,
        _ => "",
    }
}

#[tokio::test]
async fn the_status_of_our_number_inside_http_200_decides() {
    // Limits lift: 30 s, an hour, China midnight (from 09:02:03, +1 min).
    let thirty = outcome_of(status(
        "LimitExceeded.PhoneNumberThirtySecondLimit",
        "单个手机号30秒内下发短信条数超过设定的上限",
    ))
    .await;
    assert_eq!(retryable(&thirty), Some(Some(Duration::from_secs(30))));
    let hour = outcome_of(status("LimitExceeded.PhoneNumberOneHourLimit", "")).await;
    assert_eq!(retryable(&hour), Some(Some(Duration::from_secs(3600))));
    let daily = outcome_of(status("LimitExceeded.PhoneNumberDailyLimit", "")).await;
    assert_eq!(
        retryable(&daily),
        Some(Some(Duration::from_secs(14 * 3600 + 57 * 60 + 57 + 60)))
    );
    let internal = outcome_of(status("InternalError.Timeout", "请求下发短信超时")).await;
    assert_eq!(retryable(&internal), Some(None));

    let blacklisted = outcome_of(status(
        "FailedOperation.PhoneNumberInBlacklist",
        "手机号在免打扰名单库中",
    ))
    .await;
    assert!(
        matches!(blacklisted, SendOutcome::OptedOut { .. }),
        "{blacklisted:?}"
    );

    for (code, says) in [
        (
            "InvalidParameterValue.IncorrectPhoneNumber",
            "not a valid mobile number",
        ),
        (
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "`id` in recall.toml",
        ),
        (
            "FailedOperation.SignatureIncorrectOrUnapproved",
            "`sign_name` in recall.toml",
        ),
        (
            "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
            "`params`",
        ),
    ] {
        let outcome = outcome_of(status(code, "refused 13812345678")).await;
        match &outcome {
            SendOutcome::Permanent { error } => assert!(
                error.contains(code)
                    && error.contains(says)
                    && error.contains("138****5678")
                    && !error.contains("13812345678"),
                "{error}"
            ),
            other => panic!("{code}: {other:?}"),
        }
    }

    // Outside 08:00-22:00 China time: not now, at 08:01 tomorrow.
    let late = outcome_of(status("FailedOperation.MarketingSendTimeConstraint", "")).await;
    assert_eq!(
            late,
            SendOutcome::Deferred {
                retry_at: DateTime::parse_from_rfc3339("2026-03-03T00:01:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                reason: "Tencent FailedOperation.MarketingSendTimeConstraint: marketing SMS may only go out between 08:00 and 22:00 China time".into(),
            }
        );
}

#[tokio::test]
async fn our_number_is_found_among_several() {
    let reply = Reply::json(
        200,
        json!({"Response": {"SendStatusSet": [
                {"SerialNo": "", "PhoneNumber": "+8613900000000", "Code": "FailedOperation.PhoneNumberInBlacklist", "Message": ""},
                {"SerialNo": "S-ours", "PhoneNumber": "+8613812345678", "Code": "Ok", "Message": "send success"}
            ], "RequestId": "r"}}),
    );
    assert_eq!(
        outcome_of(reply).await,
        SendOutcome::Sent {
            provider_id: "S-ours".into()
        }
    );
}

#[tokio::test]
async fn request_level_errors_are_read_from_response_error() {
    let auth = outcome_of(request_error(
        "AuthFailure.SignatureFailure",
        "The provided credentials could not be validated. Please check your signature is correct.",
    ))
    .await;
    assert!(
        matches!(&auth, SendOutcome::Refused { code, .. } if code == "AuthFailure.SignatureFailure"),
        "{auth:?}"
    );
    assert!(
        error_text(&auth).contains("configuration") && !error_text(&auth).contains(SECRET_KEY),
        "{auth:?}"
    );
    let app = outcome_of(request_error(
        "InvalidParameterValue.SdkAppIdNotExist",
        "SdkAppId not exist",
    ))
    .await;
    assert!(error_text(&app).contains("sms_sdk_app_id"), "{app:?}");
    let busy = outcome_of(request_error(
        "RequestLimitExceeded",
        "请求的次数超过了频率限制",
    ))
    .await;
    assert_eq!(retryable(&busy), Some(None));
    let internal = outcome_of(request_error("InternalError", "内部错误")).await;
    assert_eq!(retryable(&internal), Some(None));
}

#[tokio::test]
async fn outages_are_retried_and_retry_after_is_respected() {
    let outage = outcome_of(Reply::text(502, "Bad Gateway").header("Retry-After", "45")).await;
    assert_eq!(retryable(&outage), Some(Some(Duration::from_secs(45))));
    let limited = outcome_of(
        status("LimitExceeded.PhoneNumberThirtySecondLimit", "").header("Retry-After", "5"),
    )
    .await;
    assert_eq!(retryable(&limited), Some(Some(Duration::from_secs(5))));
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let outcome = outcome_of(status("Ok", "send success").delayed(Duration::from_secs(3))).await;
    assert_eq!(retryable(&outcome), Some(None));
    assert!(error_text(&outcome).contains("timed out"), "{outcome:?}");
}

// -----------------------------------------------------------------------
// Configuration.

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<crate::senders::SenderConfig>(
            "kind = \"tencent_sms\"\nsms_sdk_app_id = \"1400006666\"\nsign_name = \"x\"\nappid = \"1\"\n",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `appid`"), "{err}");
    let err = toml::from_str::<Config>(
        "sms_sdk_app_id = \"1\"\nsign_name = \"x\"\n[templates.a]\nid = \"1\"\ncode = \"2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `code`"), "{err}");
}

#[test]
fn a_missing_secret_names_its_variable() {
    let err = build(
        "tencent",
        &config("https://sms.tencentcloudapi.com"),
        &Context::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("TENCENTCLOUD_SECRET_ID") && err.contains("TENCENTCLOUD_SECRET_KEY"),
        "{err}"
    );
    let ctx = Context {
        secrets: Secrets::Map(BTreeMap::from([(
            "TENCENTCLOUD_SECRET_ID".to_string(),
            "id".to_string(),
        )])),
        ..Context::default()
    };
    let err = build("tencent", &config("https://sms.tencentcloudapi.com"), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("TENCENTCLOUD_SECRET_KEY") && !err.contains("TENCENTCLOUD_SECRET_ID"),
        "{err}"
    );
}

#[test]
fn every_config_problem_is_reported_at_once() {
    let config: Config = toml::from_str(
            "sms_sdk_app_id = \"app\"\nsign_name = \"\"\nregion = \"\"\ntimeout = \"0s\"\nsecret_key_env = \" \"\n[templates.a]\nid = \"x\"\n",
        )
        .unwrap();
    let err = build("tencent", &config, &secrets())
        .err()
        .unwrap()
        .to_string();
    for part in [
        "sms_sdk_app_id",
        "sign_name",
        "region",
        "timeout `0s` must be longer than zero",
        "secret_key_env",
        "[senders.tencent.templates.a] id",
    ] {
        assert!(err.contains(part), "{part} in {err}");
    }
}

#[tokio::test]
async fn a_template_without_a_mapping_says_what_to_add() {
    let server = TestServer::start(|_, _| status("Ok", "")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&outbound(&recipient, "welcome_back"))
        .await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    let error = error_text(&outcome);
    assert!(
        error.contains("[senders.tencent.templates.welcome_back]")
            && error.contains("id = ")
            && error.contains("params = "),
        "{error}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_missing_parameter_says_what_to_add() {
    let server = TestServer::start(|_, _| status("Ok", "")).await;
    let recipient = Recipient::default();
    let outcome = sender(&server)
        .send(&Outbound {
            content: &Content {
                params: Some(r#"{"name":"王女士"}"#.into()),
                ..CONTENT.clone()
            },
            ..outbound(&recipient, "warning_offer")
        })
        .await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    let error = error_text(&outcome);
    assert!(
        error.contains("`phone`")
            && error.contains("{2}")
            && error.contains("templates/sms/warning_offer.params.toml")
            && error.contains("[senders.tencent.templates.warning_offer]"),
        "{error}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn the_code_table_sorts_codes_into_outcomes() {
    let now = now();
    for (code, expected) in [
        ("Ok", Verdict::Sent),
        ("LimitExceeded.DeliveryFrequencyLimit", Verdict::Retry(None)),
        (
            "LimitExceeded.AppDailyLimit",
            Verdict::Retry(Some(china::until_midnight(now))),
        ),
        ("LimitExceeded.PhoneNumberCountLimit", Verdict::Permanent),
        (
            "FailedOperation.InsufficientBalanceInSmsPackage",
            Verdict::Refused,
        ),
        ("AuthFailure.SecretIdNotFound", Verdict::Refused),
        ("AuthFailure.SignatureFailure", Verdict::Refused),
        ("AuthFailure.SignatureExpire", Verdict::Retry(None)),
        (
            "UnauthorizedOperation.RequestIpNotInWhitelist",
            Verdict::Refused,
        ),
        ("FailedOperation.SomethingNew", Verdict::Permanent),
        ("SomethingElse", Verdict::Retry(None)),
    ] {
        assert_eq!(verdict(code, now).0, expected, "{code}");
    }
}
