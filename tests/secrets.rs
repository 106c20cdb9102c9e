//! Secrets a provider echoes never reach the logs or the database. Every
//! HTTP sender is pointed at a provider on 127.0.0.1 that refuses the
//! message with an error text echoing the sender's secret in each form
//! README lists — as is, without its `Bearer` word, percent- and
//! form-encoded, JSON-escaped — and a URL with `token`, `key`,
//! `access_token`, `secret`, `password` and `signature` values. Then the
//! real binary dispatches, with every log line on (text and JSON), and the
//! test looks for each of them in its stderr and in the database's bytes.
//! The WeCom robot's key is also echoed to a staff notice about call tasks,
//! which no dispatch outcome carries: its log line went out unredacted.

mod common;

use common::Clinic;
use common::wechat::{
    self, APP_SECRET, Answer, CORP_SECRET, Emulator, OTHER_SECRETS, ROBOT, calls_with_robot_notice,
    contains, database_bytes, dispatch, greeting, messages, openid_customer, recall,
    wecom_customer,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

/// Credential values in the echoed URL's query: never resolved by recall,
/// only recognised by their parameter's name.
const QUERY: &[(&str, &str)] = &[
    ("token", "qv-token-5c1e0b"),
    ("key", "qv-key-77ad21"),
    ("access_token", "qv-access-token-3f9a"),
    ("secret", "qv-secret-e04b19"),
    ("password", "qv-password-8d2c"),
    ("signature", "qv-signature-a61f"),
];

/// What a URL component keeps unencoded: letters, digits and `-._~`.
const COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A secret in every form README says is redacted.
fn forms(secret: &str) -> Vec<String> {
    let bare = secret.strip_prefix("Bearer ").unwrap_or(secret).to_string();
    let percent = utf8_percent_encode(&bare, COMPONENT).to_string();
    let json = serde_json::to_string(&bare).unwrap();
    vec![
        secret.to_string(),
        bare.clone(),
        utf8_percent_encode(&bare, NON_ALPHANUMERIC).to_string(),
        percent.clone(),
        percent.replace("%20", "+"),
        json.trim_matches('"').to_string(),
    ]
}

/// The provider's error text: the secret in every form, and a URL.
fn echo(secret: &str) -> String {
    let shown: Vec<String> = forms(secret)
        .iter()
        .enumerate()
        .map(|(i, f)| format!("form{i}=<{f}>"))
        .collect();
    let query: Vec<String> = QUERY.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "request refused; {} url=https://api.example.com/send?{}",
        shown.join(" "),
        query.join("&")
    )
}

fn secret(var: &str) -> &'static str {
    OTHER_SECRETS.iter().find(|(k, _)| *k == var).unwrap().1
}

/// One sender: its recall.toml section (routed to `channel`), the secret
/// it resolves, and how its provider refuses on `path` with `text`.
struct Case {
    kind: &'static str,
    senders: String,
    channel: &'static str,
    secret: &'static str,
    path: String,
    refuse: fn(&str) -> Answer,
}

fn cases(emu: &Emulator) -> Vec<Case> {
    let url = emu.url();
    vec![
        Case {
            kind: "aliyun_sms",
            senders: format!(
                "[senders.p]\nkind = \"aliyun_sms\"\nsign_name = \"测试诊所\"\nendpoint = \"{url}\"\n[senders.p.templates.hello]\ncode = \"SMS_154950909\"\n"
            ),
            channel: "sms",
            secret: secret("ALIYUN_ACCESS_KEY_SECRET"),
            path: "/".into(),
            refuse: |text| {
                Answer::Json(
                    json!({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": text, "RequestId": "R1"}),
                )
            },
        },
        Case {
            kind: "tencent_sms",
            senders: format!(
                "[senders.p]\nkind = \"tencent_sms\"\nsms_sdk_app_id = \"1400006666\"\nsign_name = \"测试诊所\"\nendpoint = \"{url}\"\n[senders.p.templates.hello]\nid = \"1234567\"\nparams = [\"name\"]\n"
            ),
            channel: "sms",
            secret: secret("TENCENTCLOUD_SECRET_KEY"),
            path: "/".into(),
            refuse: |text| {
                Answer::Json(
                    json!({"Response": {"Error": {"Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": text}, "RequestId": "R1"}}),
                )
            },
        },
        Case {
            kind: "twilio",
            senders: format!(
                "[senders.p]\nkind = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nfrom = \"+14155550100\"\ndefault_country_code = \"86\"\nendpoint = \"{url}\"\n"
            ),
            channel: "sms",
            secret: secret("TWILIO_AUTH_TOKEN"),
            path: "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json".into(),
            refuse: |text| {
                Answer::Status(400, json!({"code": 21211, "message": text, "status": 400}))
            },
        },
        Case {
            kind: "webhook",
            senders: format!(
                "[senders.p]\nkind = \"webhook\"\nurl = \"{url}/send\"\nsecret_headers = {{ Authorization = \"GATEWAY_AUTHORIZATION\" }}\nbody = '''{{\"to\": {{{{ address }}}}, \"text\": {{{{ content }}}}}}'''\n"
            ),
            channel: "sms",
            secret: secret("GATEWAY_AUTHORIZATION"),
            path: "/send".into(),
            refuse: |text| Answer::Status(400, json!({"error": text})),
        },
        Case {
            kind: "wecom",
            senders: format!(
                "[senders.p]\nkind = \"wecom\"\ncorp_id = \"{}\"\nendpoint = \"{url}\"\n",
                wechat::CORP_ID
            ),
            channel: "wechat",
            secret: CORP_SECRET,
            path: "/cgi-bin/externalcontact/add_msg_template".into(),
            refuse: |text| Answer::error(40058, text),
        },
        Case {
            kind: "wechat_official",
            senders: format!(
                "[senders.p]\nkind = \"wechat_official\"\napp_id = \"{}\"\nendpoint = \"{url}\"\n[senders.p.templates.hello]\ntemplate_id = \"TPL-hello\"\n",
                wechat::APP_ID
            ),
            channel: "wechat",
            secret: APP_SECRET,
            path: "/cgi-bin/message/template/send".into(),
            refuse: |text| Answer::error(40036, text),
        },
        Case {
            kind: "wecom_robot",
            senders: format!("[senders.p]\nkind = \"wecom_robot\"\nendpoint = \"{url}\"\n"),
            channel: "wechat",
            secret: wechat::ROBOT_KEY,
            path: "/cgi-bin/webhook/send".into(),
            refuse: |text| Answer::error(45009, text),
        },
    ]
}

#[test]
fn every_http_senders_secret_echoed_by_its_provider_is_redacted_from_logs_and_database() {
    let emu = Emulator::start();
    for case in cases(&emu) {
        emu.always(&case.path, (case.refuse)(&echo(case.secret)));
        let senders = format!(
            "{}\n[channels.{}]\nsender = \"p\"\n",
            case.senders, case.channel
        );
        let before = emu.requests(&case.path).len();
        let mut logs = String::new();
        let mut databases = Vec::new();
        let mut stored = Vec::new();
        // Once with text logs, once with JSON logs: each a clinic of its own.
        for log_json in [false, true] {
            let mut customer = wecom_customer("C1", "wmC1");
            customer.openid = openid_customer("C1", "oOPENID1").openid;
            let clinic = greeting(&senders, &[case.channel], &[customer]);
            let mut args = vec!["dispatch", "--at", "2030-01-07 11:00"];
            if log_json {
                args.insert(0, "--log-json");
            }
            let out = recall(&clinic, &args);
            logs.push_str(&String::from_utf8_lossy(&out.stdout));
            logs.push_str(&String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{}: {logs}", case.kind);
            databases.push(database_bytes(&clinic));
            stored.extend(messages(&clinic));
        }
        assert!(
            emu.requests(&case.path).len() > before,
            "{}: the provider was not called:\n{logs}",
            case.kind
        );
        assert!(
            stored.iter().all(|m| m.4.contains("[redacted]")),
            "{}: the provider's echo is not in the stored error: {stored:?}",
            case.kind
        );
        assert!(
            logs.contains("[redacted]"),
            "{}: the provider's echo is not in the logs:\n{logs}",
            case.kind
        );
        let values = forms(case.secret)
            .into_iter()
            .chain(QUERY.iter().map(|(_, v)| v.to_string()));
        for value in values {
            assert!(
                !logs.contains(&value),
                "{}: {value:?} is in the logs:\n{logs}",
                case.kind
            );
            assert!(
                !databases.iter().any(|db| contains(db, &value)),
                "{}: {value:?} is in the database: {stored:?}",
                case.kind
            );
        }
    }
}

#[test]
fn the_robot_key_echoed_by_wecom_never_reaches_the_logs_or_the_database() {
    let emu = Emulator::start();
    let echo = format!(
        "api freq out of limit, url=/cgi-bin/webhook/send?key={}",
        wechat::ROBOT_KEY
    );
    // A staff notice about new call tasks, throttled with the URL echoed.
    emu.always(ROBOT, Answer::error(45009, &echo));
    let clinic = greeting(
        &calls_with_robot_notice(&emu),
        &["phone"],
        &[wecom_customer("C1", "wmC1")],
    );
    let mut logs = dispatch(&clinic, "2030-01-07 11:00");
    // A robot carrying a channel itself, with a wrong key (93000) echoed.
    let robot_on_wechat = format!(
        "{}\n[channels.wechat]\nsender = \"staff_robot\"\n",
        calls_with_robot_notice(&emu)
    );
    let clinic2 = clinic_with_robot_channel(&robot_on_wechat);
    emu.always(
        ROBOT,
        Answer::error(
            93000,
            &format!(
                "invalid webhook url, key={}; url=/cgi-bin/webhook/send?key={}",
                wechat::ROBOT_KEY,
                wechat::ROBOT_KEY
            ),
        ),
    );
    logs.push_str(&dispatch(&clinic2, "2030-01-07 11:00"));

    assert!(!emu.requests(ROBOT).is_empty(), "the robot was called");
    assert!(
        !logs.contains(wechat::ROBOT_KEY),
        "the robot key is in the logs:\n{logs}"
    );
    assert!(
        logs.contains("[redacted]"),
        "the provider's echo was logged, redacted:\n{logs}"
    );
    for db in [&clinic, &clinic2] {
        assert!(!contains(&database_bytes(db), wechat::ROBOT_KEY));
    }
    let stored = messages(&clinic2);
    assert!(
        stored
            .iter()
            .any(|m| m.4.contains("93000") && m.4.contains("[redacted]")),
        "{stored:?}"
    );
}

/// A clinic whose wechat channel is a WeCom robot (staff notices as a
/// channel of their own).
fn clinic_with_robot_channel(senders: &str) -> Clinic {
    greeting(senders, &["wechat"], &[wecom_customer("C9", "wmC9")])
}
