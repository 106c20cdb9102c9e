//! What Aliyun's answer codes mean for a message: sent, retry (after how
//! long), permanent or opted out, with a hint for staff.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::senders::kit::china;

/// What an Aliyun `Code` means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Try again, after this long if known.
    Retry(Option<Duration>),
    Permanent,
    OptedOut,
    /// The credentials or the account, not the message: the dispatcher
    /// pauses the sender.
    Refused,
}

/// Maps an Aliyun `Code` (SendSms business codes and API gateway codes) to
/// a verdict and a hint for staff. From Aliyun's "国内消息API错误码" list
/// (https://help.aliyun.com/zh/sms/developer-reference/api-error-codes) and
/// the OpenAPI gateway's common codes.
pub fn verdict(code: &str, message: &str, now: DateTime<Utc>) -> (Verdict, &'static str) {
    use Verdict::*;
    match code {
        "OK" => (Sent, ""),
        // 用户已退订推广短信: the customer unsubscribed (Aliyun's answer:
        // https://developer.aliyun.com/ask/631150).
        "isv.CUSTOMER_REFUSED" => (
            OptedOut,
            "the customer unsubscribed (回复退订) from this signature's messages",
        ),
        // Per-number flow control: 1/min, 5/hour, 10/day by default.
        "isv.BUSINESS_LIMIT_CONTROL" => (
            Retry(Some(flow_control_wait(message, now))),
            "Aliyun's per-number flow control (业务限流); it can be raised in the SMS console",
        ),
        "isv.DAY_LIMIT_CONTROL" => (
            Retry(Some(china::until_midnight(now))),
            "the account's daily sending limit is reached; raise it in the SMS console or wait for tomorrow",
        ),
        "isv.MONTH_LIMIT_CONTROL" => (
            Retry(None),
            "the account's monthly sending limit is reached; raise it in the SMS console",
        ),
        "isv.AMOUNT_NOT_ENOUGH" | "isv.OUT_OF_SERVICE" => (
            Refused,
            "the Aliyun account is out of balance (业务停机/余额不足); top it up: the sender resumes when a probe goes through, or at a reload",
        ),
        "isp.SYSTEM_ERROR" | "isp.GATEWAY_ERROR" | "isv.SYSTEM_ERROR" | "ServiceUnavailable"
        | "InternalError" | "SignatureNonceUsed" => (Retry(None), "a passing error at Aliyun"),
        c if c.starts_with("Throttling") => (Retry(None), "Aliyun throttled the API calls"),
        // The number.
        "isv.MOBILE_NUMBER_ILLEGAL" => (
            Permanent,
            "the customer's phone number is not a valid mobile number",
        ),
        "isv.MOBILE_COUNT_OVER_LIMIT" => (Permanent, "too many numbers in one request"),
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED" => (
            Permanent,
            "an international template cannot go to a mainland number; map a domestic template",
        ),
        // The template, the signature, the parameters, the content.
        "isv.SMS_TEMPLATE_ILLEGAL" => (
            Permanent,
            "the template code is not an approved template of this account: check `code` in recall.toml against the SMS console",
        ),
        "isv.SMS_SIGNATURE_ILLEGAL" | "isv.SMS_SIGN_ILLEGAL" | "isv.SIGN_STATE_ILLEGAL" => (
            Permanent,
            "the signature is not approved or not usable: check `sign_name` in recall.toml against the SMS console",
        ),
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL" => (
            Permanent,
            "the signature's type does not fit the template's (a verification-code signature cannot send notices)",
        ),
        "isv.TEMPLATE_MISSING_PARAMETERS" => (
            Permanent,
            "the template needs a variable the message did not fill: check <template>.params.toml and `params` in recall.toml",
        ),
        "isv.INVALID_JSON_PARAM"
        | "isv.TEMPLATE_PARAMS_ILLEGAL"
        | "isv.PARAM_LENGTH_LIMIT"
        | "isv.PARAM_NOT_SUPPORT_URL"
        | "isv.INVALID_PARAMETERS" => (
            Permanent,
            "Aliyun rejected the template parameters: check <template>.params.toml",
        ),
        // Keyword blacklist: the content (a variable) hit a forbidden word.
        "isv.BLACK_KEY_CONTROL_LIMIT" | "isv.SMS_CONTENT_ILLEGAL" => (
            Permanent,
            "the message content hit Aliyun's forbidden-keyword list; change the wording or the parameters",
        ),
        "isv.EXTEND_CODE_ERROR" => (Permanent, "extension code misuse"),
        // The account and its credentials: configuration. Every message
        // would fail alike, so the sender is paused, no message failed.
        "isp.RAM_PERMISSION_DENY" => (
            Refused,
            "configuration: the AccessKey's RAM user lacks SMS permission (grant AliyunDysmsFullAccess or dysms:SendSms and dysms:QuerySendDetails)",
        ),
        "isv.PRODUCT_UN_SUBSCRIPT"
        | "isv.PRODUCT_UNSUBSCRIBE"
        | "isv.ACCOUNT_NOT_EXISTS"
        | "isv.ACCOUNT_ABNORMAL"
        | "isv.DENY_IP_RANGE" => (
            Refused,
            "configuration: the Aliyun account cannot send SMS from here; see the SMS console",
        ),
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "InvalidAccessKeyId" => (
            Refused,
            "configuration: the AccessKey ID or secret in the environment is wrong or disabled",
        ),
        // The signing time is the dispatcher's clock: the system clock, or
        // `recall dispatch --at`. Off by more than 15 minutes, nothing can be
        // sent, but the message itself is fine: retry, do not fail it.
        "InvalidTimeStamp.Expired" => (
            Retry(None),
            "the signing time is more than 15 minutes off Aliyun's: sync this machine's clock (and do not dispatch with --at to a real provider)",
        ),
        c if c.starts_with("Forbidden") => (
            Refused,
            "configuration: the AccessKey may not call this API",
        ),
        // Unknown codes: the `isv.` family is about the request (it will not
        // change by itself); anything else is taken as passing.
        c if c.starts_with("isv.") || c.starts_with("Invalid") || c.starts_with("Missing") => {
            (Permanent, "Aliyun rejected the request")
        }
        _ => (Retry(None), "unrecognised Aliyun answer, taken as passing"),
    }
}

/// How long a per-number flow control lasts, from its message (触发分钟级流控
/// / 小时级 / 天级).
fn flow_control_wait(message: &str, now: DateTime<Utc>) -> Duration {
    let lower = message.to_lowercase();
    if message.contains("天") || message.contains("日") || lower.contains("day") {
        china::until_midnight(now)
    } else if message.contains("小时") || lower.contains("hour") {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(60)
    }
}
