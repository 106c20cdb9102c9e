//! What Tencent's answer codes mean for a message: sent, retry (after how
//! long), deferred, permanent or opted out, with a hint for staff.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::senders::kit::china;

/// What a Tencent `Code` means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Try again, after this long if known.
    Retry(Option<Duration>),
    /// Not now and not a failure: the provider's window opens at this time.
    Deferred(DateTime<Utc>),
    Permanent,
    OptedOut,
    /// The credentials or the account, not the message: the dispatcher
    /// pauses the sender.
    Refused,
}

/// Maps a Tencent SMS `Code` (per-number `SendStatusSet[i].Code` or the
/// request's `Error.Code`) to a verdict and a hint for staff. From
/// Tencent's SMS error codes (https://cloud.tencent.com/document/api/382/59177)
/// and the API 3.0 common codes (https://cloud.tencent.com/document/api/382/52075).
pub fn verdict(code: &str, now: DateTime<Utc>) -> (Verdict, &'static str) {
    use Verdict::*;
    match code {
        "Ok" => (Sent, ""),
        // 手机号在免打扰名单库中: unsubscribed or carrier do-not-disturb.
        "FailedOperation.PhoneNumberInBlacklist" => (
            OptedOut,
            "the number is on Tencent's do-not-disturb list: the customer unsubscribed (回复退订) or the carrier blocked it",
        ),
        "FailedOperation.MarketingSendTimeConstraint" => (
            Deferred(china::next_hour(now, 8) + chrono::Duration::minutes(1)),
            "marketing SMS may only go out between 08:00 and 22:00 China time",
        ),
        // Limits on the request itself, not on time: they will not lift.
        "LimitExceeded.PhoneNumberCountLimit" => (Permanent, "too many numbers in one request"),
        "LimitExceeded.AppCountryOrRegionInBlacklist" => (
            Permanent,
            "configuration: sending to this country or region is blocked for the application in the SMS console",
        ),
        "LimitExceeded.PhoneNumberThirtySecondLimit" => (
            Retry(Some(Duration::from_secs(30))),
            "the per-number 30-second limit is reached; it can be changed in the SMS console",
        ),
        "LimitExceeded.PhoneNumberOneHourLimit" => (
            Retry(Some(Duration::from_secs(3600))),
            "the per-number hourly limit is reached; it can be changed in the SMS console",
        ),
        c if c.starts_with("LimitExceeded.") && c.ends_with("DailyLimit") => (
            Retry(Some(china::until_midnight(now))),
            "a daily sending limit is reached; it lifts at midnight China time or can be changed in the SMS console",
        ),
        c if c.starts_with("LimitExceeded") => (
            Retry(None),
            "a sending frequency limit is reached; it can be changed in the SMS console",
        ),
        "FailedOperation.InsufficientBalanceInSmsPackage"
        | "UnauthorizedOperation.ServiceSuspendDueToArrears" => (
            Refused,
            "the Tencent account is out of SMS package or in arrears; top it up: the sender resumes when a probe goes through, or at a reload",
        ),
        c if c.starts_with("InternalError") || c.starts_with("RequestLimitExceeded") => {
            (Retry(None), "a passing error at Tencent")
        }
        // The number.
        "InvalidParameterValue.IncorrectPhoneNumber" | "FailedOperation.PhoneNumberParseFail" => (
            Permanent,
            "the customer's phone number is not a valid mobile number",
        ),
        // The template, the signature, the parameters, the content.
        "FailedOperation.TemplateIncorrectOrUnapproved"
        | "FailedOperation.TemplateUnapprovedOrNotExist"
        | "FailedOperation.TemplateIdNotExist" => (
            Permanent,
            "the template is not approved or does not match: check `id` in recall.toml against the SMS console",
        ),
        "FailedOperation.SignatureIncorrectOrUnapproved" => (
            Permanent,
            "the signature is not approved or malformed: check `sign_name` in recall.toml against the SMS console",
        ),
        "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
        | "InvalidParameterValue.TemplateParameterFormatError"
        | "InvalidParameterValue.TemplateParameterLengthLimit"
        | "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter" => (
            Permanent,
            "Tencent rejected the template parameters: check `params` in recall.toml and <template>.params.toml",
        ),
        "FailedOperation.ContainSensitiveWord" | "InvalidParameterValue.ContentLengthLimit" => (
            Permanent,
            "the message content was refused (sensitive word or too long); change the wording or the parameters",
        ),
        // The account and its credentials: configuration.
        // The one AuthFailure that is not about credentials: the signing
        // time is the dispatcher's clock (the system clock, or `recall
        // dispatch --at`). The message itself is fine: retry, do not fail it.
        "AuthFailure.SignatureExpire" => (
            Retry(None),
            "the signing time is more than five minutes off Tencent's: sync this machine's clock (and do not dispatch with --at to a real provider)",
        ),
        // Every message would fail alike: the sender is paused, no
        // message failed.
        c if c.starts_with("AuthFailure") => (
            Refused,
            "configuration: the SecretId/SecretKey in the environment are wrong, disabled or not allowed to send SMS",
        ),
        "InvalidParameterValue.SdkAppIdNotExist" => (
            Refused,
            "configuration: `sms_sdk_app_id` is not an SMS application of this account (or not in `region`)",
        ),
        c if c.starts_with("UnauthorizedOperation") => (
            Refused,
            "configuration: the account or application may not send this (check sms_sdk_app_id, IP allowlist and permissions in the SMS console)",
        ),
        c if c.starts_with("FailedOperation")
            || c.starts_with("InvalidParameter")
            || c.starts_with("UnsupportedOperation")
            || c.starts_with("MissingParameter")
            || c.starts_with("UnknownParameter")
            || c.starts_with("InvalidAction")
            || c.starts_with("NoSuchVersion")
            || c.starts_with("UnsupportedRegion") =>
        {
            (Permanent, "Tencent rejected the request")
        }
        _ => (Retry(None), "unrecognised Tencent answer, taken as passing"),
    }
}
