//! A local emulator of the WeChat APIs for the tests that drive the real
//! binary: WeCom (`qyapi.weixin.qq.com`: gettoken, the customer-contact
//! group-message calls, the group robot's webhook) and the Official Account
//! (`api.weixin.qq.com`: stable_token, template messages). An HTTP/1.1
//! server on 127.0.0.1 (std::net, a thread per connection, keep-alive) that
//! checks each request as the provider does — the credentials, the access
//! token it issued, the body's required fields — answers as the provider
//! documents, and records every request.
//!
//! A test may script a path: `always` answers every call with one answer,
//! `then` queues answers used once each before the documented behaviour
//! (or the `always` answer) resumes. Paths it does not know (another
//! provider's, for the redaction tests) answer only what is scripted.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Output;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Clinic;

/// The credentials the emulated provider accepts. The secrets hold
/// characters that read differently percent-, form- and JSON-encoded.
pub const CORP_ID: &str = "wwEMULATEDCORP";
pub const CORP_SECRET: &str = "corp/Secret+Q7mZ 2v9\"Kx";
pub const APP_ID: &str = "wxEMULATEDAPP";
pub const APP_SECRET: &str = "app/Secret+R4nT 8w1\"Ls";
pub const ROBOT_KEY: &str = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa";
/// The secrets of the other HTTP senders, for the redaction tests (set in
/// every run's environment; a sender reads only its own).
pub const OTHER_SECRETS: &[(&str, &str)] = &[
    ("ALIYUN_ACCESS_KEY_ID", "LTAI5tEmulatedKeyId01"),
    ("ALIYUN_ACCESS_KEY_SECRET", "aliyun/Secret+Ak3y 9zQ\"mW"),
    ("TENCENTCLOUD_SECRET_ID", "AKIDEmulatedSecretId01"),
    ("TENCENTCLOUD_SECRET_KEY", "tencent/Secret+Tk3y 4pR\"nX"),
    ("TWILIO_AUTH_TOKEN", "twilio/Token+Tw3 7hJ\"qZ"),
    ("GATEWAY_AUTHORIZATION", "Bearer gateway/Token+Gw3 5kL\"vB"),
];
/// The staff member WeCom hands every task to.
pub const STAFF: &str = "zhangsan";

/// One request as the emulator received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the emulator answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// HTTP 200 with this JSON body.
    Json(Value),
    /// This HTTP status with this JSON body.
    Status(u16, Value),
}

impl Answer {
    /// `{"errcode": code, "errmsg": errmsg}`, as WeChat reports an error.
    pub fn error(code: i64, errmsg: &str) -> Answer {
        Answer::Json(json!({"errcode": code, "errmsg": errmsg}))
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    once: HashMap<String, VecDeque<Answer>>,
    always: HashMap<String, Answer>,
    /// Access tokens issued, WeCom's and the Official Account's.
    tokens: Vec<String>,
    /// msgid → the customer of the task.
    tasks: HashMap<String, String>,
    next_id: u64,
}

#[derive(Clone)]
pub struct Emulator {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Emulator {
    pub fn start() -> Emulator {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let port = super::listen(move |stream| serve(stream, shared.clone()));
        Emulator { port, state }
    }

    /// `http://127.0.0.1:PORT`, the `endpoint` of a sender.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every call of `path` is answered with `answer` from now on.
    pub fn always(&self, path: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .always
            .insert(path.to_string(), answer);
    }

    /// The next calls of `path` are answered with these, one each.
    pub fn then(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        self.state
            .lock()
            .unwrap()
            .once
            .entry(path.to_string())
            .or_default()
            .extend(answers);
    }

    /// Back to the documented behaviour on `path`.
    pub fn reset(&self, path: &str) {
        let mut state = self.state.lock().unwrap();
        state.always.remove(path);
        state.once.remove(path);
    }

    /// Requests to `path`, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------
// A clinic that greets its customers through the senders under test.

/// Monday 2030-01-07, 10:00 clinic time: the tick; dispatches follow it.
pub const TICK: &str = "2030-01-07 10:00";

/// One customer of a test: id, WeChat Official Account openid, WeCom
/// external_userid, phone.
pub struct Customer {
    pub id: String,
    pub openid: Option<String>,
    pub wecom: Option<String>,
    pub phone: Option<String>,
}

pub fn wecom_customer(id: &str, wecom: &str) -> Customer {
    Customer {
        id: id.into(),
        openid: None,
        wecom: Some(wecom.into()),
        phone: Some("13800138000".into()),
    }
}

pub fn openid_customer(id: &str, openid: &str) -> Customer {
    Customer {
        id: id.into(),
        openid: Some(openid.into()),
        wecom: None,
        phone: Some("13800138001".into()),
    }
}

/// A clinic whose one rule sends template `hello` on `channels` to every
/// new customer, with `senders` (and their `[channels]`) as recall.toml's
/// tail, and these customers imported.
pub fn greeting(senders: &str, channels: &[&str], customers: &[Customer]) -> Clinic {
    let clinic = Clinic::new();
    let config = format!(
        "[clinic]\nname = \"测试诊所\"\n\n[schedule]\nticks = [\"0 10 * * *\"]\n\n[dispatch]\nretry_backoff = \"1m\"\n\n{senders}"
    );
    std::fs::write(clinic.config(), config).unwrap();
    let rules = clinic.path().join("rules");
    std::fs::remove_dir_all(&rules).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    let actions: String = channels
        .iter()
        .map(|c| format!("[[rule.action]]\nchannel = \"{c}\"\ntemplate = \"hello\"\n"))
        .collect();
    std::fs::write(
        rules.join("01-hello.toml"),
        format!(
            "[[rule]]\nid = \"hello\"\ndescription = \"greet every new customer\"\nfrom = \"new\"\nto = \"customer\"\npriority = 10\nwhen = \"true\"\n{actions}"
        ),
    )
    .unwrap();
    for channel in ["wechat", "sms", "phone", "email"] {
        let dir = clinic.path().join("templates").join(channel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hello.txt"),
            "{{ customer.salutation }}您好，好久不见，欢迎回来看看。",
        )
        .unwrap();
        std::fs::write(
            dir.join("hello.params.toml"),
            "name = \"{{ customer.salutation }}\"\n",
        )
        .unwrap();
    }
    let mut csv =
        String::from("external_id,name,phone,wechat_openid,wecom_external_userid,first_seen\n");
    for c in customers {
        csv.push_str(&format!(
            "{},顾客{},{},{},{},2030-01-01\n",
            c.id,
            c.id,
            c.phone.as_deref().unwrap_or(""),
            c.openid.as_deref().unwrap_or(""),
            c.wecom.as_deref().unwrap_or("")
        ));
    }
    let file = clinic.path().join("customers.csv");
    std::fs::write(&file, csv).unwrap();
    ok(&clinic, &["import", "customers", "customers.csv"]);
    ok(&clinic, &["tick", "--at", TICK]);
    clinic
}

/// Phone calls as tasks, with a notice to staff through the WeCom robot.
pub fn calls_with_robot_notice(emu: &Emulator) -> String {
    format!(
        "[senders.staff_robot]\nkind = \"wecom_robot\"\nendpoint = \"{}\"\n\n[senders.calls]\nkind = \"phone_tasks\"\nstaff = [{{ name = \"小林\", daily_capacity = 40 }}]\nnotify = \"staff_robot\"\n\n[channels.phone]\nsender = \"calls\"\n",
        emu.url()
    )
}

/// WeCom's group-message task, and the group robot's webhook.
pub const ADD: &str = "/cgi-bin/externalcontact/add_msg_template";
pub const ROBOT: &str = "/cgi-bin/webhook/send";

/// Runs recall with every sender's secret in its environment and every log
/// line on stderr.
pub fn recall(clinic: &Clinic, args: &[&str]) -> Output {
    clinic
        .process()
        .args(args)
        .env("WECOM_SECRET", CORP_SECRET)
        .env("WECHAT_APP_SECRET", APP_SECRET)
        .env("WECOM_ROBOT_KEY", ROBOT_KEY)
        .envs(OTHER_SECRETS.iter().copied())
        .env("RECALL_LOG", "debug")
        .output()
        .unwrap()
}

/// Runs recall, which must succeed; returns stdout and stderr.
pub fn ok(clinic: &Clinic, args: &[&str]) -> String {
    let out = recall(clinic, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "recall {args:?} failed:\n{text}");
    text
}

pub fn dispatch(clinic: &Clinic, at: &str) -> String {
    ok(clinic, &["dispatch", "--at", at])
}

/// (customer, channel, status, attempts, last_error) of every message, by
/// customer id.
pub fn messages(clinic: &Clinic) -> Vec<(String, String, String, i64, String)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.prepare(
        "SELECT c.external_id, o.channel, o.status, o.attempts, coalesce(o.last_error, '')
         FROM outreach o JOIN customers c ON c.id = o.customer_id ORDER BY c.external_id, o.id",
    )
    .unwrap()
    .query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The database and its write-ahead log, as bytes.
pub fn database_bytes(clinic: &Clinic) -> Vec<u8> {
    let mut bytes = std::fs::read(clinic.database()).unwrap();
    let wal = clinic.database().with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------
// The emulated provider.

/// The documented answer to a request, or the error WeChat gives for it.
fn documented(request: &Request, state: &mut State) -> Answer {
    let path = request.path.as_str();
    let body = request.json();
    let mut issue = |prefix: &str| {
        state.next_id += 1;
        let token = format!("{prefix}-token-{}", state.next_id);
        state.tokens.push(token.clone());
        Answer::Json(
            json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}),
        )
    };
    match path {
        "/cgi-bin/gettoken" => {
            if request.param("corpid") != Some(CORP_ID) {
                return Answer::error(40013, "invalid corpid");
            }
            if request.param("corpsecret") != Some(CORP_SECRET) {
                return Answer::error(40001, "invalid credential");
            }
            return issue("wecom");
        }
        "/cgi-bin/stable_token" => {
            if request.method != "POST" || body["grant_type"] != "client_credential" {
                return Answer::error(40002, "invalid grant_type");
            }
            if body["appid"] != APP_ID {
                return Answer::error(40013, "invalid appid");
            }
            if body["secret"] != APP_SECRET {
                return Answer::error(40125, "invalid appsecret");
            }
            // The stable token answer has no errcode.
            state.next_id += 1;
            let token = format!("oa-token-{}", state.next_id);
            state.tokens.push(token.clone());
            return Answer::Json(json!({"access_token": token, "expires_in": 7200}));
        }
        "/cgi-bin/webhook/send" => {
            if request.param("key") != Some(ROBOT_KEY) {
                return Answer::error(93000, "invalid webhook url");
            }
            let kind = body["msgtype"].as_str().unwrap_or("");
            if !matches!(kind, "text" | "markdown") || body[kind]["content"].as_str().is_none() {
                return Answer::error(40008, "invalid message type");
            }
            return Answer::error(0, "ok");
        }
        _ => {}
    }
    let token = request.param("access_token").unwrap_or("");
    if token.is_empty() {
        return Answer::error(41001, "access_token missing");
    }
    if !state.tokens.iter().any(|t| t == token) {
        return Answer::error(40014, "invalid access_token");
    }
    match path {
        "/cgi-bin/externalcontact/add_msg_template" => {
            let customers = body["external_userid"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let content = body["text"]["content"].as_str().unwrap_or("");
            if body["chat_type"] != "single" || customers.len() != 1 || content.is_empty() {
                return Answer::error(40058, "invalid parameter");
            }
            state.next_id += 1;
            let msgid = format!("msg{}", state.next_id);
            let customer = customers[0].as_str().unwrap_or("").to_string();
            state.tasks.insert(msgid.clone(), customer);
            Answer::Json(json!({"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": msgid}))
        }
        "/cgi-bin/externalcontact/get_groupmsg_task" => {
            if !state
                .tasks
                .contains_key(body["msgid"].as_str().unwrap_or(""))
            {
                return Answer::error(41047, "invalid msgid");
            }
            // The staff member confirmed the task.
            Answer::Json(json!({"errcode": 0, "errmsg": "ok",
                "task_list": [{"userid": STAFF, "status": 2, "send_time": 1_800_000_000}]}))
        }
        "/cgi-bin/externalcontact/get_groupmsg_send_result" => {
            let Some(customer) = state.tasks.get(body["msgid"].as_str().unwrap_or("")) else {
                return Answer::error(41047, "invalid msgid");
            };
            Answer::Json(json!({"errcode": 0, "errmsg": "ok", "send_list": [
                {"external_userid": customer, "userid": STAFF, "status": 1, "send_time": 1_800_000_000}
            ]}))
        }
        "/cgi-bin/externalcontact/cancel_groupmsg_send" => Answer::error(0, "ok"),
        "/cgi-bin/externalcontact/get" => Answer::Json(json!({"errcode": 0, "errmsg": "ok",
            "external_contact": {"external_userid": request.param("external_userid")},
            "follow_user": [{"userid": STAFF}]})),
        "/cgi-bin/message/template/send" => {
            if body["touser"].as_str().unwrap_or("").is_empty()
                || body["template_id"].as_str().unwrap_or("").is_empty()
                || !body["data"].is_object()
            {
                return Answer::error(47001, "data format error");
            }
            state.next_id += 1;
            Answer::Json(json!({"errcode": 0, "errmsg": "ok", "msgid": state.next_id}))
        }
        _ => Answer::Status(404, json!({"errcode": 404, "errmsg": "no such api"})),
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(raw) = super::read_request(&mut reader) {
        let url = reqwest::Url::parse(&format!("http://127.0.0.1{}", raw.target)).unwrap();
        let request = Request {
            method: raw.method,
            path: url.path().to_string(),
            query: url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            body: raw.body,
        };
        let answer = {
            let mut s = state.lock().unwrap();
            s.requests.push(request.clone());
            let scripted = s
                .once
                .get_mut(&request.path)
                .and_then(VecDeque::pop_front)
                .or_else(|| s.always.get(&request.path).cloned());
            scripted.unwrap_or_else(|| documented(&request, &mut s))
        };
        let (status, body) = match answer {
            Answer::Json(body) => (200, body),
            Answer::Status(status, body) => (status, body),
        };
        let body = body.to_string();
        let reply = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            if status == 200 { "OK" } else { "Error" },
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
    }
}
