//! Dispatch policy against a real SQLite file and a scripted sender.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;

use super::*;
use crate::config::DispatchSettings;
use crate::model::{OutreachStatus, Pool};
use crate::store::ingest::NewCustomer;
use crate::store::queries::LogFilter;
use crate::store::ticks::{NewMessage, TickBatch, TickStart};

/// Answers with the scripted outcomes in order, and remembers what it got.
struct Scripted {
    outcomes: Mutex<VecDeque<SendOutcome>>,
    seen: Mutex<Vec<(i64, String)>>,
}

impl Scripted {
    fn new(outcomes: Vec<SendOutcome>) -> Arc<Self> {
        Arc::new(Scripted {
            outcomes: Mutex::new(outcomes.into()),
            seen: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Sender for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        self.seen
            .lock()
            .unwrap()
            .push((message.id, message.address.to_string()));
        self.outcomes
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SendOutcome::Sent {
                provider_id: format!("p-{}", message.id),
            })
    }
}

const T0: i64 = 1_780_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: SharedStore,
}

/// A store with one customer per entry of `customers`, and one SMS queued for each.
fn fixture(customers: Vec<NewCustomer>, channel: Channel) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("r.db")).unwrap();
    let clinic = store
        .ensure_clinic("main", "c", "Asia/Shanghai", 0)
        .unwrap();
    let mut ids = Vec::new();
    let mut ingest = store.ingest().unwrap();
    for c in &customers {
        ids.push(ingest.add_customer(clinic, c, T0 - 1000).unwrap());
    }
    ingest.commit().unwrap();
    let TickStart::New(tick) = store.begin_tick(T0, T0, |t| t.to_string()).unwrap() else {
        panic!("expected a new tick")
    };
    let batch = TickBatch {
        cursor: *ids.last().unwrap(),
        evaluated: ids.len() as i64,
        messages: ids
            .iter()
            .map(|id| NewMessage {
                customer_id: *id,
                rule_id: "r".into(),
                action_index: 0,
                pool: Pool::Warning,
                channel,
                template: "t".into(),
                subject: None,
                content: "您好".into(),
                html: None,
                params: None,
                due_at: T0,
                failure: None,
            })
            .collect(),
        ..TickBatch::default()
    };
    store.commit_batch(&tick, &batch).unwrap();
    store.finish_tick(tick.id, T0).unwrap();
    Fixture {
        _dir: dir,
        store: Arc::new(Mutex::new(store)),
    }
}

fn phone_customer(id: &str) -> NewCustomer {
    NewCustomer {
        phone: Some("13812345678".into()),
        ..NewCustomer::named(id, "王丽")
    }
}

fn settings(max_attempts: u32) -> DispatchSettings {
    DispatchSettings {
        batch_size: 10,
        max_attempts,
        retry_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(3600),
        cap: None,
    }
}

fn dispatcher(sender: Arc<Scripted>, channel: Channel, max_attempts: u32) -> Dispatcher {
    let mut routes: BTreeMap<Channel, (String, Arc<dyn Sender>)> = BTreeMap::new();
    routes.insert(channel, ("test".into(), sender));
    Dispatcher::with_routes(routes, settings(max_attempts))
}

fn at(t: i64) -> Clock {
    Clock::Fixed(DateTime::from_timestamp(t, 0).unwrap())
}

fn log(store: &SharedStore) -> Vec<crate::store::queries::LogEntry> {
    store.lock().unwrap().log(&LogFilter::default()).unwrap()
}

#[tokio::test]
async fn sent_messages_record_sender_and_provider_id() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender.clone(), Channel::Sms, 3)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "sent");
    assert_eq!(
        entry.provider_id.as_deref(),
        Some(format!("p-{}", entry.id).as_str())
    );
    assert_eq!(entry.sender.as_deref(), Some("test"));
    assert_eq!(entry.sent_at, Some(T0));
    assert_eq!(sender.seen.lock().unwrap()[0].1, "13812345678");
}

#[tokio::test]
async fn messages_wait_until_they_are_due() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender, Channel::Sms, 3)
        .drain(&f.store, at(T0 - 1), &|| false)
        .await
        .unwrap();
    assert_eq!(report.claimed, 0);
    assert_eq!(log(&f.store)[0].status, "queued");
}

#[tokio::test]
async fn do_not_contact_missing_consent_and_missing_address_are_suppressed_with_reasons() {
    let dnc = NewCustomer {
        do_not_contact: true,
        ..phone_customer("C1")
    };
    let mut no_consent = phone_customer("C2");
    no_consent.consent.sms = false;
    let no_phone = NewCustomer::named("C3", "李雷");
    let f = fixture(vec![dnc, no_consent, no_phone], Channel::Sms);
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender.clone(), Channel::Sms, 3)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.suppressed, 3);
    assert!(
        sender.seen.lock().unwrap().is_empty(),
        "nothing may reach the sender"
    );
    let reasons: Vec<String> = log(&f.store)
        .into_iter()
        .map(|e| e.last_error.unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "customer is marked do-not-contact",
            "no consent for sms",
            "no phone number on record"
        ]
    );
}

#[tokio::test]
async fn retryable_failures_back_off_then_fail_after_max_attempts() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let busy = || SendOutcome::Retryable {
        error: "throttled".into(),
        retry_after: None,
    };
    let sender = Scripted::new(vec![busy(), busy()]);
    let d = dispatcher(sender, Channel::Sms, 2);
    let first = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!(first.retried, 1);
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "queued");
    // 60 s base with ±20% jitter.
    assert!(
        (T0 + 48..=T0 + 72).contains(&entry.due_at),
        "due {}",
        entry.due_at - T0
    );
    let early = d.drain(&f.store, at(T0 + 10), &|| false).await.unwrap();
    assert_eq!(early.claimed, 0, "not due again yet");
    let second = d.drain(&f.store, at(T0 + 3600), &|| false).await.unwrap();
    assert_eq!(second.failed, 1);
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "failed");
    assert_eq!(entry.attempts, 2);
    assert_eq!(
        entry.last_error.as_deref(),
        Some("gave up after 2 attempts: throttled")
    );
}

#[tokio::test]
async fn retry_after_from_the_provider_is_respected() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![SendOutcome::Retryable {
        error: "429".into(),
        retry_after: Some(Duration::from_secs(900)),
    }]);
    dispatcher(sender, Channel::Sms, 5)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(log(&f.store)[0].due_at, T0 + 900);
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![SendOutcome::Permanent {
        error: "invalid number".into(),
    }]);
    let report = dispatcher(sender, Channel::Sms, 5)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.failed, 1);
    let entry = &log(&f.store)[0];
    assert_eq!((entry.status.as_str(), entry.attempts), ("failed", 1));
}

#[tokio::test]
async fn opt_out_withdraws_consent_for_that_channel() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![SendOutcome::OptedOut {
        reason: "blacklisted".into(),
    }]);
    let report = dispatcher(sender, Channel::Sms, 5)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.opted_out, 1);
    assert_eq!(log(&f.store)[0].status, OutreachStatus::OptedOut.as_str());
    let mut store = f.store.lock().unwrap();
    let claimed = {
        // A new message to the same customer on the same channel is now suppressed.
        let TickStart::New(tick) = store.begin_tick(T0 + 10, T0, |t| t.to_string()).unwrap() else {
            panic!()
        };
        let batch = TickBatch {
            cursor: 1,
            messages: vec![NewMessage {
                customer_id: 1,
                rule_id: "r2".into(),
                action_index: 0,
                pool: Pool::Warning,
                channel: Channel::Sms,
                template: "t".into(),
                subject: None,
                content: "x".into(),
                html: None,
                params: None,
                due_at: T0 + 10,
                failure: None,
            }],
            ..TickBatch::default()
        };
        store.commit_batch(&tick, &batch).unwrap();
        store.claim_due(T0 + 10, &[Channel::Sms], 10).unwrap()
    };
    assert_eq!(claimed.len(), 1);
    assert!(!claimed[0].consent);
}

#[tokio::test]
async fn channels_without_a_sender_stay_queued() {
    let f = fixture(vec![phone_customer("C1")], Channel::Email);
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender, Channel::Sms, 5)
        .drain(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.claimed, 0);
    assert_eq!(log(&f.store)[0].status, "queued");
}

#[tokio::test]
async fn stopping_hands_the_rest_of_the_batch_back_untouched() {
    let customers = (1..=4).map(|i| phone_customer(&format!("C{i}"))).collect();
    let f = fixture(customers, Channel::Sms);
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender.clone(), Channel::Sms, 5)
        .round(&f.store, at(T0), &|| true)
        .await
        .unwrap();
    assert_eq!((report.sent, report.released), (1, 3));
    let statuses: Vec<(String, i64)> = log(&f.store)
        .into_iter()
        .map(|e| (e.status, e.attempts))
        .collect();
    assert_eq!(statuses[0], ("sent".to_string(), 1));
    assert!(
        statuses[1..]
            .iter()
            .all(|s| s == &("queued".to_string(), 0)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn messages_interrupted_while_sending_are_requeued_on_start() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    {
        let mut store = f.store.lock().unwrap();
        assert_eq!(store.claim_due(T0, &[Channel::Sms], 10).unwrap().len(), 1);
        assert_eq!(store.requeue_interrupted(T0 + 5).unwrap(), 1);
    }
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "queued");
    let sender = Scripted::new(vec![]);
    let report = dispatcher(sender, Channel::Sms, 5)
        .drain(&f.store, at(T0 + 6), &|| false)
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
}

#[test]
fn backoff_doubles_and_is_capped() {
    let s = settings(10);
    for _ in 0..20 {
        let first = backoff(&s, 1).as_secs_f64();
        let third = backoff(&s, 3).as_secs_f64();
        let huge = backoff(&s, 25).as_secs_f64();
        assert!((48.0..=72.0).contains(&first), "{first}");
        assert!((192.0..=288.0).contains(&third), "{third}");
        assert!(huge <= 3600.0 * 1.2, "{huge}");
    }
}
