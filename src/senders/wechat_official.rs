//! The `wechat_official` sender: WeChat Official Account (公众号) template
//! messages to a customer's openid.
//!
//! An Official Account cannot send free text to a follower: it sends one of
//! its approved templates, filled with values. Each recall template that may
//! go this way is mapped in `recall.toml` to the account's `template_id`
//! (`[senders.<name>.templates.<recall template>]`), and its values come
//! from the recall template's `<name>.params.toml` (`message.params`), each
//! becoming `data.<key>.value`. `message.content` is not sent.
//!
//! The call is `POST /cgi-bin/message/template/send` with the outreach id as
//! `client_msg_id`, so WeChat drops a repeat of the same message within ten
//! minutes (a retry after a timeout). Tokens come from the stable-token
//! endpoint through [`super::wechat_token`].
//!
//! This module never logs the values sent, the secret or the token; openids
//! go through [`mask::address`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::wechat_token::{self, AccessToken, Answer, App, Credentials};
use super::{BuildError, Context};
use crate::dispatch::sender::{Outbound, SendOutcome, Sender};
use crate::mask;

/// `[senders.<name>]` with `kind = "wechat_official"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Official Account's AppID (`wx...`), from 设置与开发 → 基本配置.
    /// Not a secret.
    pub app_id: String,
    /// Environment variable holding the account's AppSecret.
    #[serde(default = "default_app_secret_env")]
    pub app_secret_env: String,
    /// Which of the account's templates each recall template is sent as:
    /// `[senders.<name>.templates.<recall template>]`. A message whose
    /// template is not listed fails with a message naming the missing table.
    pub templates: BTreeMap<String, TemplateConfig>,
    /// The WeChat API address; tests point it at a local server.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long one HTTP call to WeChat may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "wechat_token::duration"
    )]
    pub timeout: Duration,
}

/// `[senders.<name>.templates.<recall template>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The template's id in the account's template library (模板ID).
    pub template_id: String,
    /// The page the message opens when tapped (e.g. the booking page);
    /// without it the message does not open anything.
    #[serde(default)]
    pub url: Option<String>,
}

fn default_app_secret_env() -> String {
    "WECHAT_APP_SECRET".into()
}

fn default_endpoint() -> String {
    "https://api.weixin.qq.com".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `errcode`s meaning the access token is invalid or not the latest
/// (40001), invalid (40014) or expired (42001).
const TOKEN_ERRORS: &[i64] = &[40001, 40014, 42001];

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(OfficialSender::new(name, config, ctx)?))
}

pub struct OfficialSender {
    name: String,
    app: App,
    templates: BTreeMap<String, TemplateConfig>,
}

impl OfficialSender {
    /// Checks the settings and reads the secret; no network I/O.
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<Self, BuildError> {
        let fail = |message: String| BuildError::new(name, message);
        if config.app_id.trim().is_empty() {
            return Err(fail(
                "app_id is empty: copy the AppID from the Official Account's 设置与开发 → 基本配置"
                    .into(),
            ));
        }
        if config.templates.is_empty() {
            return Err(fail(format!(
                "no templates: map each recall template to the account's template, e.g. [senders.{name}.templates.welcome_back] template_id = \"...\""
            )));
        }
        for (recall, template) in &config.templates {
            if template.template_id.trim().is_empty() {
                return Err(fail(format!("templates.{recall}.template_id is empty")));
            }
            if let Some(url) = &template.url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(fail(format!(
                    "templates.{recall}.url `{url}` must start with https:// or http://"
                )));
            }
        }
        wechat_token::check_endpoint(&config.endpoint).map_err(fail)?;
        let client = wechat_token::client(config.timeout).map_err(fail)?;
        let secret = ctx.secret(name, &config.app_secret_env)?;
        Ok(OfficialSender {
            name: name.to_string(),
            app: App::new(
                client,
                &config.endpoint,
                Credentials::Official {
                    app_id: config.app_id.trim().to_string(),
                    secret,
                },
                TOKEN_ERRORS,
            ),
            templates: config.templates.clone(),
        })
    }
}

#[async_trait]
impl Sender for OfficialSender {
    fn kind(&self) -> &'static str {
        "wechat_official"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let Some(openid) = message
            .recipient
            .wechat_openid
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        else {
            return SendOutcome::Permanent {
                error: "the customer has no Official Account openid on record (wechat_openid); the wechat_official sender cannot use a WeCom external_userid".into(),
            };
        };
        let Some(template) = self.templates.get(message.template) else {
            return SendOutcome::Permanent {
                error: format!(
                    "recall template `{}` has no Official Account template: add [senders.{}.templates.{}] template_id = \"...\"",
                    message.template, self.name, message.template
                ),
            };
        };
        let data = match template_data(message.template, message.params) {
            Ok(data) => data,
            Err(error) => return SendOutcome::Permanent { error },
        };
        let mut body = json!({
            "touser": openid,
            "template_id": template.template_id,
            "data": data,
            "client_msg_id": format!("recall-{}", message.id),
        });
        if let Some(url) = &template.url {
            body["url"] = json!(url);
        }
        let url = self.app.url("/cgi-bin/message/template/send");
        let answer = self
            .app
            .call(message.now, |token: &AccessToken| {
                self.app
                    .client
                    .post(&url)
                    .query(&[("access_token", token.as_str())])
                    .json(&body)
            })
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) if e.is_retryable() => {
                return SendOutcome::Retryable {
                    error: format!("sending the template message: {e}"),
                    retry_after: e.retry_after(),
                };
            }
            Err(e) => {
                return SendOutcome::Permanent {
                    error: format!("sending the template message: {e}"),
                };
            }
        };
        if answer.errcode != 0 {
            return outcome(&answer, message.now);
        }
        let provider_id = match &answer.body["msgid"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => format!("recall-{}", message.id),
        };
        tracing::info!(
            id = message.id,
            to = %mask::address(openid),
            msgid = %provider_id,
            "template message sent"
        );
        SendOutcome::Sent { provider_id }
    }
}

/// `message.params` (a JSON object of strings) as template `data`:
/// `{"name": "王女士"}` → `{"name": {"value": "王女士"}}`.
fn template_data(template: &str, params: Option<&str>) -> Result<Value, String> {
    let Some(params) = params else {
        return Err(format!(
            "recall template `{template}` has no parameters: add templates/wechat/{template}.params.toml with one line per field of the Official Account template"
        ));
    };
    let parsed: Map<String, Value> = serde_json::from_str(params)
        .map_err(|e| format!("the parameters of `{template}` are not a JSON object: {e}"))?;
    if parsed.is_empty() {
        return Err(format!("recall template `{template}` has no parameters"));
    }
    let data: Map<String, Value> = parsed
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (key, json!({ "value": text }))
        })
        .collect();
    Ok(Value::Object(data))
}

/// A `template/send` error as an outcome.
fn outcome(answer: &Answer, now: DateTime<Utc>) -> SendOutcome {
    let what = answer.describe();
    let retry = |error: String, retry_after: Option<Duration>| SendOutcome::Retryable {
        error,
        retry_after,
    };
    let permanent = |error: String| SendOutcome::Permanent { error };
    match answer.errcode {
        43004 => SendOutcome::OptedOut {
            reason: format!("the customer no longer follows the Official Account: {what}"),
        },
        43101 => SendOutcome::OptedOut {
            reason: format!("the customer refuses the Official Account's messages: {what}"),
        },
        -1 => retry(format!("WeChat is busy: {what}"), None),
        // The account's daily quota of template messages: it starts again
        // at midnight China time.
        45009 => retry(
            format!("the Official Account's daily limit is reached: {what}"),
            Some(until_next_midnight_in_china(now)),
        ),
        45011 | 45047 => retry(
            format!("WeChat's rate limit is reached: {what}"),
            Some(Duration::from_secs(60)),
        ),
        code if TOKEN_ERRORS.contains(&code) => retry(
            format!("WeChat rejected a freshly issued access token: {what}"),
            None,
        ),
        // Settings to fix (IP allow-list, permissions), not the message's
        // fault: keep it while someone fixes them.
        40164 | 48001 | 61004 | 89503 => retry(
            format!(
                "WeChat refuses this server or app: {what}; check the account's IP allow-list and its template-message permission"
            ),
            None,
        ),
        40003 => permanent(format!(
            "WeChat does not know the customer's openid for this account: {what}"
        )),
        40036 | 40037 => permanent(format!(
            "the template_id is not one of the account's templates: {what}"
        )),
        47001 | 47003 => permanent(format!(
            "the template's data does not fit the template (check the .params.toml keys and lengths): {what}"
        )),
        43019 => permanent(format!(
            "the Official Account has blacklisted the customer: {what}"
        )),
        _ => permanent(format!("WeChat refused the template message: {what}")),
    }
}

/// From `now` to the next 00:00 in China (UTC+8), at least a minute.
fn until_next_midnight_in_china(now: DateTime<Utc>) -> Duration {
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let tomorrow = now.with_timezone(&china).date_naive().succ_opt();
    let midnight = tomorrow
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .and_then(|t| china.from_local_datetime(&t).single())
        .map(|t| t.with_timezone(&Utc));
    midnight
        .and_then(|m| (m - now).to_std().ok())
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Channel;
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
            timeout: Duration::from_secs(5),
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

    fn outbound<'a>(recipient: &'a Recipient) -> Outbound<'a> {
        Outbound {
            id: 42,
            channel: Channel::Wechat,
            rule_id: "r",
            template: "welcome_back",
            subject: None,
            content: "王女士您好",
            html: None,
            params: Some(PARAMS),
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
    async fn provider_errors_map_to_retry_or_permanent() {
        for (code, retryable) in [
            (-1, true),
            (45009, true),
            (45047, true),
            (40003, false),
            (40037, false),
            (47003, false),
            (99999, false),
        ] {
            let server = start(move |_| error(code)).await;
            let recipient = recipient();
            let outcome = sender(&server.url).send(&outbound(&recipient)).await;
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
            (outbound(&no_openid), "wechat_openid"),
            (
                Outbound {
                    template: "unmapped",
                    ..outbound(&recipient)
                },
                "[senders.oa.templates.unmapped]",
            ),
            (
                Outbound {
                    params: None,
                    ..outbound(&recipient)
                },
                "welcome_back.params.toml",
            ),
            (
                Outbound {
                    params: Some("not json"),
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
            toml::from_str::<Config>("app_id = \"wx1\"\n[templates.a]\ntemplate = \"T1\"\n")
                .is_err()
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
}
