//! The WeChat senders (WeCom, the Official Account, the WeCom group robot)
//! through the real binary, against a local emulator of the WeChat APIs
//! (`common::wechat`) that checks each request as WeChat does. Each test is
//! one finding of the outside testing: WeCom's 40003 retried for ever,
//! polling only in the service, an openid-only customer failing on WeCom,
//! one token request per message while the token endpoint was down, and a
//! staff notice never tried again. (The robot key in the logs is in
//! `tests/secrets.rs`, with the other senders' secrets.)

mod common;

use common::wechat::{
    self, ADD, Answer, Customer, Emulator, ROBOT, calls_with_robot_notice, dispatch, greeting,
    messages, openid_customer, wecom_customer,
};
use serde_json::json;

fn wecom_sender(emu: &Emulator) -> String {
    format!(
        "[senders.wecom]\nkind = \"wecom\"\ncorp_id = \"{}\"\nendpoint = \"{}\"\n\n[channels.wechat]\nsender = \"wecom\"\n",
        wechat::CORP_ID,
        emu.url()
    )
}

fn official_sender(emu: &Emulator) -> String {
    format!(
        "[senders.oa]\nkind = \"wechat_official\"\napp_id = \"{}\"\nendpoint = \"{}\"\n[senders.oa.templates.hello]\ntemplate_id = \"TPL-hello\"\n\n[channels.wechat]\nsender = \"oa\"\n",
        wechat::APP_ID,
        emu.url()
    )
}

#[test]
fn wecom_40003_fails_at_once_and_names_the_staff_member_wecom_chose() {
    let emu = Emulator::start();
    emu.always(ADD, Answer::error(40003, "invalid userid"));
    let clinic = greeting(
        &wecom_sender(&emu),
        &["wechat"],
        &[wecom_customer("C1", "wmC1")],
    );
    dispatch(&clinic, "2030-01-07 11:00");
    let stored = messages(&clinic);
    let (_, _, status, attempts, error) = &stored[0];
    assert_eq!((status.as_str(), *attempts), ("failed", 1), "{stored:?}");
    assert!(error.contains("40003"), "{error}");
    assert!(
        !error.contains("sender_userid ``"),
        "it blames an empty sender_userid: {error}"
    );
    assert!(
        error.contains("No sender_userid is set"),
        "it names the real cause: {error}"
    );
    for at in ["2030-01-07 13:00", "2030-01-08 11:00"] {
        dispatch(&clinic, at);
    }
    assert_eq!(emu.requests(ADD).len(), 1, "never sent again");
}

#[test]
fn recall_dispatch_asks_wecom_what_became_of_awaiting_messages() {
    let emu = Emulator::start();
    let clinic = greeting(
        &wecom_sender(&emu),
        &["wechat"],
        &[wecom_customer("C1", "wmC1")],
    );
    let out = dispatch(&clinic, "2030-01-07 11:00");
    assert_eq!(messages(&clinic)[0].2, "awaiting", "{out}");
    // Cron runs `recall dispatch` again later: it asks, and WeCom says sent.
    dispatch(&clinic, "2030-01-07 11:30");
    let task = emu.requests("/cgi-bin/externalcontact/get_groupmsg_task");
    assert_eq!(task.len(), 1, "asked once");
    let provider_id: String = rusqlite::Connection::open(clinic.database())
        .unwrap()
        .query_row("SELECT provider_id FROM outreach", [], |r| r.get(0))
        .unwrap();
    let msgid = task[0].json()["msgid"].as_str().unwrap().to_string();
    assert!(
        provider_id.starts_with(&format!("{msgid}:")),
        "{provider_id}"
    );
    assert_eq!(messages(&clinic)[0].2, "sent");
}

#[test]
fn a_customer_without_the_senders_address_is_suppressed_or_falls_back_on_every_wechat_sender() {
    let emu = Emulator::start();
    let customers = [
        openid_customer("OPENID_ONLY", "oOPENID1"),
        wecom_customer("WECOM_ONLY", "wmWECOM1"),
    ];
    // WeCom: the openid-only customer cannot be reached there.
    let clinic_wecom = greeting(&wecom_sender(&emu), &["wechat"], &customers);
    dispatch(&clinic_wecom, "2030-01-07 11:00");
    let stored = messages(&clinic_wecom);
    assert_eq!(stored[0].0, "OPENID_ONLY");
    assert_eq!(stored[0].2, "suppressed", "{stored:?}");
    assert!(stored[0].4.contains("external_userid"), "{stored:?}");
    assert_eq!(stored[1].2, "awaiting", "{stored:?}");
    let asked: Vec<serde_json::Value> = emu
        .requests(ADD)
        .iter()
        .map(|r| r.json()["external_userid"].clone())
        .collect();
    assert_eq!(asked, [json!(["wmWECOM1"])]);

    // The Official Account: the WeCom-only customer cannot be reached there.
    let emu = Emulator::start();
    let clinic_oa = greeting(&official_sender(&emu), &["wechat"], &customers);
    dispatch(&clinic_oa, "2030-01-07 11:00");
    let stored = messages(&clinic_oa);
    assert_eq!(stored[0].2, "sent", "{stored:?}");
    assert_eq!(stored[1].2, "suppressed", "{stored:?}");
    assert!(stored[1].4.contains("openid"), "{stored:?}");
    assert_eq!(emu.requests("/cgi-bin/message/template/send").len(), 1);

    // With a fallback channel, the customer gets it there instead.
    let emu = Emulator::start();
    let with_fallback = format!(
        "{}fallback = \"sms\"\n\n[senders.log]\nkind = \"log\"\n\n[channels.sms]\nsender = \"log\"\n",
        wecom_sender(&emu)
    );
    let clinic_fb = greeting(&with_fallback, &["wechat"], &customers);
    dispatch(&clinic_fb, "2030-01-07 11:00");
    dispatch(&clinic_fb, "2030-01-07 11:01");
    let stored = messages(&clinic_fb);
    assert_eq!(
        (stored[0].1.as_str(), stored[0].2.as_str()),
        ("sms", "sent"),
        "{stored:?}"
    );
    assert_eq!(emu.requests(ADD).len(), 1);
}

#[test]
fn an_official_account_token_outage_costs_one_token_request_per_dispatch() {
    let emu = Emulator::start();
    emu.always(
        "/cgi-bin/stable_token",
        Answer::Status(503, json!({"errcode": -1, "errmsg": "system error"})),
    );
    let customers: Vec<Customer> = (0..20)
        .map(|i| openid_customer(&format!("C{i:02}"), &format!("oOPENID{i:02}")))
        .collect();
    let clinic = greeting(&official_sender(&emu), &["wechat"], &customers);
    dispatch(&clinic, "2030-01-07 11:00");
    assert_eq!(
        emu.requests("/cgi-bin/stable_token").len(),
        1,
        "one token request for 20 messages"
    );
    let stored = messages(&clinic);
    assert!(
        stored
            .iter()
            .all(|m| m.2 == "queued" && m.4.contains("token")),
        "{stored:?}"
    );
    // The endpoint is back: the next dispatch after the backoff sends them.
    emu.reset("/cgi-bin/stable_token");
    dispatch(&clinic, "2030-01-07 12:00");
    assert_eq!(emu.requests("/cgi-bin/stable_token").len(), 2);
    assert!(messages(&clinic).iter().all(|m| m.2 == "sent"));
}

#[test]
fn a_failed_staff_notice_goes_out_with_a_later_dispatch_or_is_given_up_with_a_reason() {
    let emu = Emulator::start();
    // Throttled once, then WeCom takes notices again.
    emu.then(ROBOT, [Answer::error(45009, "api freq out of limit")]);
    let clinic = greeting(
        &calls_with_robot_notice(&emu),
        &["phone"],
        &[wecom_customer("C1", "wmC1"), wecom_customer("C2", "wmC2")],
    );
    let first = dispatch(&clinic, "2030-01-07 11:00");
    assert_eq!(clinic.count("SELECT count(*) FROM call_tasks"), 2);
    assert_eq!(emu.requests(ROBOT).len(), 1, "{first}");
    assert!(first.contains("45009"), "{first}");
    // Nothing is due in the later runs; the notice still goes out, once.
    for at in ["2030-01-07 11:05", "2030-01-07 11:10", "2030-01-07 11:15"] {
        dispatch(&clinic, at);
    }
    let posts = emu.requests(ROBOT);
    assert_eq!(posts.len(), 2, "tried again once, and it went through");
    let notice = posts[1].json()["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        notice.contains("2 个") && notice.contains("小林"),
        "{notice}"
    );

    // A robot that can never take it (a wrong key): given up, with why.
    let emu = Emulator::start();
    emu.always(ROBOT, Answer::error(93000, "invalid webhook url"));
    let refused = greeting(
        &calls_with_robot_notice(&emu),
        &["phone"],
        &[wecom_customer("C1", "wmC1")],
    );
    let out = dispatch(&refused, "2030-01-07 11:00");
    assert!(
        out.contains("gave up the staff notice") && out.contains("93000"),
        "{out}"
    );
    dispatch(&refused, "2030-01-07 11:05");
    assert_eq!(emu.requests(ROBOT).len(), 1, "not tried again");
}
