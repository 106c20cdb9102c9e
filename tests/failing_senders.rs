//! Senders that fail, through the real binary against providers on
//! 127.0.0.1: a Twilio 5xx is looked up before any resend; a Tencent key
//! the provider refuses pauses the sender (nothing failed, no attempt
//! used) until a probe goes through, with one alert to staff per incident;
//! `recall status` and `/healthz` show a sender that keeps failing, and
//! `/healthz` is ok again once it sends.

mod common;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use common::wechat::{
    self, Answer, Emulator, ROBOT, dispatch, greeting, messages, ok, wecom_customer,
};
use serde_json::json;

const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{SID}/Messages.json")
}

fn twilio(emu: &Emulator) -> String {
    format!(
        "[senders.p]\nkind = \"twilio\"\naccount_sid = \"{SID}\"\nfrom = \"+14155550100\"\ndefault_country_code = \"86\"\nendpoint = \"{}\"\n\n[channels.sms]\nsender = \"p\"\n",
        emu.url()
    )
}

/// A form field of a request body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[test]
fn a_twilio_500_is_looked_up_and_not_resent_when_twilio_has_the_message() {
    let emu = Emulator::start();
    let path = twilio_path();
    let clinic = greeting(&twilio(&emu), &["sms"], &[wecom_customer("C1", "wmC1")]);
    emu.then(
        &path,
        [Answer::Status(
            500,
            json!({"code": 20500, "message": "Internal Server Error", "status": 500}),
        )],
    );
    dispatch(&clinic, "2030-01-07 11:00");
    let stored = messages(&clinic);
    assert_eq!(stored[0].2, "queued", "{stored:?}");
    assert!(
        stored[0].4.starts_with("[in doubt]") && stored[0].4.contains("20500"),
        "a 5xx is in doubt: {stored:?}"
    );

    // Twilio had created it: its list of messages to the number has it.
    let body = form_field(&emu.requests(&path)[0].body, "Body").unwrap();
    emu.then(
        &path,
        [Answer::Json(json!({"messages": [{
            "sid": "SMcreated", "body": body, "status": "delivered",
            "date_created": "Mon, 07 Jan 2030 03:00:01 +0000"
        }]}))],
    );
    dispatch(&clinic, "2030-01-07 11:10");
    let requests = emu.requests(&path);
    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET"], "looked up, not resent");
    assert_eq!(
        requests[1].param("To"),
        Some("+8613800138000"),
        "{requests:?}"
    );
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let (status, provider_id): (String, String) = conn
        .query_row("SELECT status, provider_id FROM outreach", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (status.as_str(), provider_id.as_str()),
        ("sent", "SMcreated")
    );
}

#[test]
fn a_twilio_500_whose_lookup_finds_nothing_is_sent_again() {
    let emu = Emulator::start();
    let path = twilio_path();
    let clinic = greeting(&twilio(&emu), &["sms"], &[wecom_customer("C1", "wmC1")]);
    emu.then(
        &path,
        [
            Answer::Status(
                500,
                json!({"code": 20500, "message": "Internal Server Error"}),
            ),
            Answer::Json(json!({"messages": []})),
            Answer::Status(201, json!({"sid": "SMsecond"})),
        ],
    );
    dispatch(&clinic, "2030-01-07 11:00");
    dispatch(&clinic, "2030-01-07 11:10");
    let methods: Vec<String> = emu.requests(&path).into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["POST", "GET", "POST"]);
    assert_eq!(messages(&clinic)[0].2, "sent");
}

/// Tencent's answer to a SendSms signed with a key it does not know.
fn signature_failure() -> Answer {
    Answer::Json(json!({"Response": {"Error": {
        "Code": "AuthFailure.SignatureFailure",
        "Message": "The provided credentials could not be validated."
    }, "RequestId": "R-bad"}}))
}

fn tencent_ok() -> Answer {
    Answer::Json(json!({"Response": {"SendStatusSet": [{
        "SerialNo": "2019:1", "PhoneNumber": "+8613800138000", "Fee": 1,
        "SessionContext": "", "Code": "Ok", "Message": "send success", "IsoCode": "CN"
    }], "RequestId": "R-ok"}}))
}

fn robot_notices(emu: &Emulator) -> Vec<String> {
    emu.requests(ROBOT)
        .iter()
        .map(|r| {
            r.json()["text"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn a_refused_tencent_key_pauses_the_sender_until_a_probe_goes_through() {
    let emu = Emulator::start();
    let senders = format!(
        "[senders.p]\nkind = \"tencent_sms\"\nsms_sdk_app_id = \"1400006666\"\nsign_name = \"测试诊所\"\nendpoint = \"{url}\"\n[senders.p.templates.hello]\nid = \"1234567\"\nparams = [\"name\"]\n\n[senders.staff_robot]\nkind = \"wecom_robot\"\nendpoint = \"{url}\"\n\n[channels.sms]\nsender = \"p\"\n",
        url = emu.url()
    );
    let customers: Vec<_> = (1..=3)
        .map(|i| wecom_customer(&format!("C{i}"), &format!("wm{i}")))
        .collect();
    let clinic = greeting(&senders, &["sms"], &customers);
    clinic.edit_config(
        "retry_backoff = \"1m\"",
        "retry_backoff = \"1m\"\nconcurrency = 1\nalert = \"staff_robot\"",
    );
    emu.always("/", signature_failure());

    dispatch(&clinic, "2030-01-07 11:00");
    assert_eq!(emu.requests("/").len(), 1, "one refusal pauses the sender");
    for m in messages(&clinic) {
        assert_eq!((m.2.as_str(), m.3), ("queued", 0), "nothing failed: {m:?}");
    }
    let status = ok(&clinic, &["status"]);
    assert!(
        status.contains("paused") && status.contains("AuthFailure.SignatureFailure"),
        "{status}"
    );
    let notices = robot_notices(&emu);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("AuthFailure.SignatureFailure"),
        "{notices:?}"
    );

    // Before the probe is due nothing is sent; the first probe is refused
    // too, and the next one waits twice as long.
    dispatch(&clinic, "2030-01-07 11:00:30");
    assert_eq!(emu.requests("/").len(), 1);
    dispatch(&clinic, "2030-01-07 11:01:01");
    assert_eq!(emu.requests("/").len(), 2, "one probe");
    dispatch(&clinic, "2030-01-07 11:02:30");
    assert_eq!(emu.requests("/").len(), 2, "the next probe waits 2m");

    // The key is fixed: the probe goes through, the sender resumes and
    // every message goes out once.
    emu.always("/", tencent_ok());
    dispatch(&clinic, "2030-01-07 11:03:02");
    assert_eq!(emu.requests("/").len(), 5);
    for m in messages(&clinic) {
        assert_eq!((m.2.as_str(), m.3), ("sent", 1), "{m:?}");
    }
    let notices = robot_notices(&emu);
    assert_eq!(notices.len(), 2, "one notice per incident: {notices:?}");
    assert!(notices[1].contains("sending again"), "{notices:?}");
    let status = ok(&clinic, &["status"]);
    assert!(!status.contains("paused"), "{status}");
}

#[test]
fn check_points_at_an_alert_that_is_not_a_robot() {
    let emu = Emulator::start();
    let clinic = greeting(&twilio(&emu), &["sms"], &[wecom_customer("C1", "wmC1")]);
    clinic.edit_config(
        "retry_backoff = \"1m\"",
        "retry_backoff = \"1m\"\nalert = \"p\"",
    );
    let out = wechat::recall(&clinic, &["check"]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("recall.toml:9") && text.contains("wecom_robot"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// An outage under the running service.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Answers every request on `port` with 200 from now on.
fn gateway_on(port: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                while common::read_request(&mut reader).is_some() {
                    let body = "{\"msgid\":\"m1\"}";
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// `GET /healthz`'s JSON (null while the service is not listening yet).
fn healthz(port: u16) -> serde_json::Value {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return serde_json::Value::Null;
    };
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_default()
}

/// Polls `/healthz` until `pred` holds (the service works at the wall clock).
fn wait_health(port: u16, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = healthz(port);
        if pred(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "last /healthz: {health}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn healthz_is_degraded_during_an_outage_and_ok_once_the_sender_sends() {
    let metrics = free_port();
    let outage = free_port();
    let senders = format!(
        "[senders.gw]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{outage}/send\"\nbody = '''{{\"to\": {{{{ address }}}}, \"text\": {{{{ content }}}}}}'''\n\n[channels.sms]\nsender = \"gw\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    );
    let customers: Vec<_> = (1..=3)
        .map(|i| wecom_customer(&format!("C{i}"), &format!("wm{i}")))
        .collect();
    let clinic = greeting(&senders, &["sms"], &customers);
    clinic.edit_config(
        "retry_backoff = \"1m\"",
        "retry_backoff = \"1s\"\nmax_backoff = \"2s\"\nfailing_after = 2",
    );
    clinic.edit_config("[schedule]", "[schedule]\ndispatch_every = \"1s\"");
    // The greeting was ticked in 2030; the service sends at the wall clock.
    rusqlite::Connection::open(clinic.database())
        .unwrap()
        .execute("UPDATE outreach SET due_at = 0", [])
        .unwrap();
    let mut child = clinic
        .process()
        .arg("run")
        .env("RECALL_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let health = wait_health(metrics, |h| h["status"] == "degraded");
    let problem = health["problems"][0].as_str().unwrap_or("");
    assert!(
        problem.contains("gw") && problem.contains("cannot connect"),
        "the reason: {health}"
    );
    assert_eq!(health["senders"][0]["state"], "failing", "{health}");
    let status = ok(&clinic, &["status"]);
    assert!(
        status.contains("retrying") && status.contains("failing"),
        "{status}"
    );

    gateway_on(outage);
    let health = wait_health(metrics, |h| h["status"] == "ok");
    assert_eq!(health["problems"], json!([]), "{health}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        messages(&clinic).iter().all(|m| m.2 == "sent"),
        "{:?}",
        messages(&clinic)
    );
}
