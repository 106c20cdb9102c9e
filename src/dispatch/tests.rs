//! Dispatch policy against a real SQLite file and a scripted sender.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;

use super::*;
use crate::base::content::Content;
use crate::base::model::OutreachStatus;
use crate::base::model::Pool;
use crate::config::{Cap, ChannelPolicy, DispatchSettings, QuietHours};
use crate::dispatch::sender::{AddressKind, PollOutcome, SendOutcome};
use crate::store::ingest::NewCustomer;
use crate::store::queries::LogFilter;
use crate::store::ticks::{NewMessage, TickBatch, TickStart};

/// Answers with the scripted outcomes in order, and remembers what it got.
struct Scripted {
    outcomes: Mutex<VecDeque<SendOutcome>>,
    polls: Mutex<VecDeque<PollOutcome>>,
    seen: Mutex<Vec<(i64, String)>>,
    /// `Outbound::in_doubt` of each send, in order.
    doubts: Mutex<Vec<bool>>,
    /// The address it takes, when not the channel's usual one.
    address: Option<AddressKind>,
}

impl Scripted {
    fn new(outcomes: Vec<SendOutcome>) -> Arc<Self> {
        Self::polling(outcomes, vec![])
    }

    fn polling(outcomes: Vec<SendOutcome>, polls: Vec<PollOutcome>) -> Arc<Self> {
        Arc::new(Scripted {
            outcomes: Mutex::new(outcomes.into()),
            polls: Mutex::new(polls.into()),
            seen: Mutex::new(Vec::new()),
            doubts: Mutex::new(Vec::new()),
            address: None,
        })
    }

    /// A sender that takes this kind of address (as WeCom takes only the
    /// external_userid), answering `Sent`.
    fn addressed(kind: AddressKind) -> Arc<Self> {
        let mut sender = Arc::into_inner(Self::new(vec![])).unwrap();
        sender.address = Some(kind);
        Arc::new(sender)
    }

    fn seen(&self) -> Vec<(i64, String)> {
        self.seen.lock().unwrap().clone()
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
        self.doubts.lock().unwrap().push(message.in_doubt);
        self.outcomes
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SendOutcome::Sent {
                provider_id: format!("p-{}", message.id),
            })
    }

    fn address_kind(&self, channel: Channel) -> AddressKind {
        self.address
            .unwrap_or_else(|| AddressKind::for_channel(channel))
    }

    async fn poll(&self, _provider_id: &str, _message: &Outbound<'_>) -> PollOutcome {
        self.polls
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(PollOutcome::Pending)
    }
}

const T0: i64 = crate::testing::T0;

use crate::testing::{Outbox as Fixture, outbox};

fn fixture(customers: Vec<NewCustomer>, channel: Channel) -> Fixture {
    outbox(customers, channel, None)
}

fn fixture_with(
    customers: Vec<NewCustomer>,
    channel: Channel,
    fallback: Option<Channel>,
) -> Fixture {
    outbox(customers, channel, fallback)
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
        give_up_after: Duration::from_secs(48 * 3600),
        retry_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(3600),
        cap: None,
        poll_every: Duration::from_secs(600),
        concurrency: 4,
        failing_after: 5,
        alert: None,
    }
}

fn dispatcher(sender: Arc<Scripted>, channel: Channel, max_attempts: u32) -> Dispatcher {
    with_policies(
        vec![(channel, sender, ChannelPolicy::plain("test"))],
        settings(max_attempts),
    )
}

fn with_policies(
    routes: Vec<(Channel, Arc<Scripted>, ChannelPolicy)>,
    settings: DispatchSettings,
) -> Dispatcher {
    let routes = routes
        .into_iter()
        .map(|(channel, sender, policy)| {
            let name = policy.sender.clone();
            (channel, Route::new(&name, sender, policy))
        })
        .collect();
    Dispatcher::with_routes(routes, settings, chrono_tz::Asia::Shanghai)
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
async fn the_address_a_sender_takes_decides_who_is_suppressed_on_its_channel() {
    let openid_only = NewCustomer {
        wechat_openid: Some("oOPENID".into()),
        ..phone_customer("C1")
    };
    let wecom_only = NewCustomer {
        wecom_external_userid: Some("wmWECOM".into()),
        ..phone_customer("C2")
    };
    let neither = phone_customer("C3");
    let customers = || vec![openid_only.clone(), wecom_only.clone(), neither.clone()];
    let outcomes = |kind: AddressKind| async move {
        let f = fixture(customers(), Channel::Wechat);
        let sender = Scripted::addressed(kind);
        dispatcher(sender.clone(), Channel::Wechat, 3)
            .drain(&f.store, at(T0), &|| false)
            .await
            .unwrap();
        let statuses: Vec<(String, Option<String>)> = log(&f.store)
            .into_iter()
            .map(|e| (e.status, e.last_error))
            .collect();
        let addresses: Vec<String> = sender.seen().into_iter().map(|(_, a)| a).collect();
        (statuses, addresses)
    };
    let wecom = AddressKind::WecomExternalUserid.missing().to_string();
    let (statuses, addresses) = outcomes(AddressKind::WecomExternalUserid).await;
    assert_eq!(
        statuses,
        [
            ("suppressed".to_string(), Some(wecom.clone())),
            ("sent".to_string(), None),
            ("suppressed".to_string(), Some(wecom)),
        ]
    );
    assert_eq!(addresses, ["wmWECOM"]);
    let (statuses, addresses) = outcomes(AddressKind::WechatOpenid).await;
    let sent: Vec<&str> = statuses.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(sent, ["sent", "suppressed", "suppressed"]);
    assert_eq!(addresses, ["oOPENID"]);
    // A staff robot needs no customer address at all.
    let (statuses, addresses) = outcomes(AddressKind::Unaddressed).await;
    assert!(statuses.iter().all(|(s, _)| s == "sent"), "{statuses:?}");
    assert_eq!(addresses, ["", "", ""]);
}

#[tokio::test]
async fn retryable_failures_back_off_until_the_retry_budget_is_spent() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let busy = || SendOutcome::Retryable {
        error: "throttled".into(),
        retry_after: None,
    };
    // Far more failures than max_attempts: an outage is waited out.
    let sender = Scripted::new((0..12).map(|_| busy()).collect());
    let d = with_policies(
        vec![(Channel::Sms, sender, ChannelPolicy::plain("test"))],
        DispatchSettings {
            give_up_after: Duration::from_secs(24 * 3600),
            ..settings(2)
        },
    );
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
    // Ten more failures over the next hours: still retried.
    let mut now = T0;
    for _ in 0..10 {
        now = log(&f.store)[0].due_at;
        let round = d.drain(&f.store, at(now), &|| false).await.unwrap();
        assert_eq!((round.retried, round.failed), (1, 0));
    }
    let entry = &log(&f.store)[0];
    assert_eq!((entry.status.as_str(), entry.attempts), ("queued", 11));
    // Backoff capped at max_backoff (1 h ±20%), the last try at the
    // budget's end.
    assert!(entry.due_at - now <= 72 * 60, "due {}", entry.due_at - now);
    assert!(entry.due_at <= T0 + 24 * 3600);
    // Once the budget since the first failure is spent, it fails.
    let last = d
        .drain(&f.store, at(T0 + 24 * 3600), &|| false)
        .await
        .unwrap();
    assert_eq!(last.failed, 1);
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "failed");
    assert_eq!(entry.attempts, 12);
    assert_eq!(
        entry.last_error.as_deref(),
        Some("gave up after 1day of retries (12 attempts): throttled")
    );
}

#[tokio::test]
async fn retry_after_uses_no_attempt() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let throttled = || SendOutcome::Retryable {
        error: "429".into(),
        retry_after: Some(Duration::from_secs(30)),
    };
    let sender = Scripted::new((0..4).map(|_| throttled()).collect());
    let d = dispatcher(sender, Channel::Sms, 2);
    for round in 0..4 {
        let report = d
            .drain(&f.store, at(T0 + round * 30), &|| false)
            .await
            .unwrap();
        assert_eq!((report.retried, report.failed), (1, 0));
    }
    let entry = &log(&f.store)[0];
    assert_eq!((entry.status.as_str(), entry.attempts), ("queued", 0));
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
async fn every_error_a_sender_or_a_poll_gives_is_stored_redacted() {
    crate::base::redact::remember("stored-secret-31337");
    let customers = (1..=2)
        .map(|i| NewCustomer {
            wecom_external_userid: Some(format!("wm{i}")),
            ..phone_customer(&format!("C{i}"))
        })
        .collect();
    let f = fixture(customers, Channel::Wechat);
    let sender = Scripted::polling(
        vec![
            SendOutcome::Permanent {
                error: "refused /send?access_token=tok-123456 with stored-secret-31337".into(),
            },
            SendOutcome::Awaiting {
                provider_id: "msg2".into(),
            },
        ],
        vec![PollOutcome::Unknown {
            error: "busy, url=/x?key=robot-key-42".into(),
        }],
    );
    let d = dispatcher(sender, Channel::Wechat, 3);
    d.drain(&f.store, at(T0), &|| false).await.unwrap();
    d.poll_awaiting(&f.store, at(T0 + 601), Duration::from_secs(600), &|| false)
        .await
        .unwrap();
    let errors: Vec<String> = log(&f.store)
        .into_iter()
        .map(|e| e.last_error.unwrap_or_default())
        .collect();
    assert_eq!(
        errors,
        [
            "refused /send?access_token=[redacted] with [redacted]",
            "could not ask the provider: busy, url=/x?key=[redacted]"
        ]
    );
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
                content: Content::text("x"),
                fallback: None,
                due_at: T0 + 10,
                failure: None,
                held_out: false,
                attribution_days: 30,
                expires_at: None,
                assign_to: None,
                cancel_if_stale: false,
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

#[tokio::test]
async fn a_failed_rounds_messages_go_back_in_doubt() {
    // A round whose outcomes cannot be written gives back what it claimed;
    // those may have reached the provider, so they are in doubt, and only
    // the ones still in `sending`.
    let f = fixture(
        vec![phone_customer("C1"), phone_customer("C2")],
        Channel::Sms,
    );
    {
        let mut store = f.store.lock().unwrap();
        let claimed = store.claim_due(T0, &[Channel::Sms], 10).unwrap();
        let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        assert_eq!(store.requeue_in_doubt(&ids, T0 + 5).unwrap(), 2);
        assert_eq!(
            store.requeue_in_doubt(&ids, T0 + 6).unwrap(),
            0,
            "only what is sending"
        );
        let again = store.claim_due(T0 + 7, &[Channel::Sms], 10).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|m| m.in_doubt), "{again:?}");
    }
}

#[tokio::test]
async fn a_message_requeued_after_a_crash_stays_in_doubt_through_a_deferral() {
    let f = fixture(
        vec![phone_customer("C1"), phone_customer("C2")],
        Channel::Sms,
    );
    let late = shanghai("2026-06-01 22:30");
    {
        let mut store = f.store.lock().unwrap();
        // Only C1's message was being sent when the process died.
        assert_eq!(store.claim_due(T0, &[Channel::Sms], 1).unwrap().len(), 1);
        assert_eq!(store.requeue_interrupted(late).unwrap(), 1);
    }
    let sender = Scripted::new(vec![]);
    let policy = ChannelPolicy {
        quiet_hours: Some(QuietHours::parse("21:00-09:00").unwrap()),
        ..ChannelPolicy::plain("test")
    };
    let d = with_policies(vec![(Channel::Sms, sender.clone(), policy)], settings(3));
    let night = d.drain(&f.store, at(late), &|| false).await.unwrap();
    assert_eq!(night.deferred, 2);
    let first = &log(&f.store)[0];
    let waiting = first.last_error.as_deref().unwrap();
    assert!(
        waiting.starts_with(crate::store::outbox::IN_DOUBT) && waiting.contains("quiet hours"),
        "{waiting}"
    );
    let morning = d
        .drain(&f.store, at(shanghai("2026-06-02 09:00")), &|| false)
        .await
        .unwrap();
    assert_eq!(morning.sent, 2);
    let mut seen: Vec<(i64, bool)> = sender
        .seen()
        .iter()
        .map(|(id, _)| *id)
        .zip(sender.doubts.lock().unwrap().iter().copied())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(1, true), (2, false)],
        "only the interrupted one is in doubt"
    );
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

/// Without jitter every retry of a batch that failed together (a provider
/// outage) would come back at the same second. 500 draws per attempt must
/// land in every fifth of the ±20% range (about 100 in each; fewer than 50
/// in one is a chance beyond 1e-9) and average near the base.
#[test]
fn backoff_jitter_spreads_retries_across_the_range() {
    let s = settings(10);
    for (attempt, base) in [(1, 60.0), (3, 240.0)] {
        let samples: Vec<f64> = (0..500)
            .map(|_| backoff(&s, attempt).as_secs_f64())
            .collect();
        let (low, high) = (base * 0.8, base * 1.2);
        assert!(
            samples.iter().all(|x| (low..=high).contains(x)),
            "attempt {attempt}: outside {low}..={high}"
        );
        let mut buckets = [0usize; 5];
        for x in &samples {
            let i = (((x - low) / (high - low)) * 5.0) as usize;
            buckets[i.min(4)] += 1;
        }
        assert!(
            buckets.iter().all(|&n| n >= 50),
            "attempt {attempt}: not spread over {low}..{high}: {buckets:?}"
        );
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!(
            (mean - base).abs() < base * 0.03,
            "attempt {attempt}: mean {mean}"
        );
        let mut distinct = samples.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(
            distinct.len() > 450,
            "attempt {attempt}: {} distinct",
            distinct.len()
        );
    }
}

fn shanghai(text: &str) -> i64 {
    crate::base::clock::parse_time(
        text,
        chrono_tz::Asia::Shanghai,
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap()
    .timestamp()
}

#[tokio::test]
async fn quiet_hours_hold_messages_until_the_window_ends_without_using_an_attempt() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sender = Scripted::new(vec![]);
    let policy = ChannelPolicy {
        quiet_hours: Some(QuietHours::parse("21:00-09:00").unwrap()),
        ..ChannelPolicy::plain("test")
    };
    let d = with_policies(vec![(Channel::Sms, sender.clone(), policy)], settings(3));
    let late = shanghai("2026-06-01 22:30");
    let report = d.drain(&f.store, at(late), &|| false).await.unwrap();
    assert_eq!((report.deferred, report.sent), (1, 0));
    assert!(sender.seen().is_empty(), "nothing is sent in quiet hours");
    let entry = &log(&f.store)[0];
    assert_eq!(entry.status, "queued");
    assert_eq!(entry.attempts, 0);
    assert_eq!(entry.due_at, shanghai("2026-06-02 09:00"));
    assert!(entry.last_error.as_deref().unwrap().contains("quiet hours"));
    let morning = d
        .drain(&f.store, at(shanghai("2026-06-02 09:00")), &|| false)
        .await
        .unwrap();
    assert_eq!(morning.sent, 1);
}

#[tokio::test]
async fn a_channel_cap_waits_until_the_oldest_contact_leaves_the_window() {
    let customers = vec![phone_customer("C1")];
    let f = fixture(customers, Channel::Sms);
    let sender = Scripted::new(vec![]);
    let policy = ChannelPolicy {
        cap: Some(Cap::parse("1/7d").unwrap()),
        ..ChannelPolicy::plain("test")
    };
    let d = with_policies(vec![(Channel::Sms, sender.clone(), policy)], settings(3));
    assert_eq!(d.drain(&f.store, at(T0), &|| false).await.unwrap().sent, 1);
    // A second message for the same customer a day later hits the cap.
    queue_more(&f, Channel::Sms, T0 + 86_400);
    let report = d.drain(&f.store, at(T0 + 86_400), &|| false).await.unwrap();
    assert_eq!((report.deferred, report.sent), (1, 0));
    let second = log(&f.store)
        .into_iter()
        .find(|e| e.status == "queued")
        .unwrap();
    assert_eq!(second.due_at, T0 + 7 * 86_400 + 1);
    assert!(
        second
            .last_error
            .unwrap()
            .contains("frequency cap of 1 per 7days on sms")
    );
    assert_eq!(sender.seen().len(), 1);
}

#[tokio::test]
async fn the_cross_channel_cap_counts_every_channel() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let sms = Scripted::new(vec![]);
    let phone = Scripted::new(vec![]);
    let capped = DispatchSettings {
        cap: Some(Cap::parse("1/day").unwrap()),
        ..settings(3)
    };
    let d = with_policies(
        vec![
            (Channel::Sms, sms.clone(), ChannelPolicy::plain("sms")),
            (Channel::Phone, phone.clone(), ChannelPolicy::plain("calls")),
        ],
        capped,
    );
    assert_eq!(d.drain(&f.store, at(T0), &|| false).await.unwrap().sent, 1);
    queue_more(&f, Channel::Phone, T0 + 60);
    let report = d.drain(&f.store, at(T0 + 60), &|| false).await.unwrap();
    assert_eq!(report.deferred, 1);
    assert!(phone.seen().is_empty());
}

#[tokio::test]
async fn a_rate_limited_sender_defers_what_it_cannot_take_soon() {
    let customers = (1..=3).map(|i| phone_customer(&format!("C{i}"))).collect();
    let f = fixture(customers, Channel::Sms);
    let sender = Scripted::new(vec![]);
    let mut routes = BTreeMap::new();
    let mut route = Route::new("slow", sender.clone(), ChannelPolicy::plain("slow"));
    route.pacer = Some(Arc::new(Pacer::new(crate::config::RateLimit {
        count: 1,
        per: Duration::from_secs(3600),
    })));
    routes.insert(Channel::Sms, route);
    let d = Dispatcher::with_routes(routes, settings(3), chrono_tz::Asia::Shanghai);
    let report = d.round(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!((report.sent, report.deferred), (1, 2));
    assert_eq!(sender.seen().len(), 1);
}

#[tokio::test]
async fn a_missing_wechat_id_falls_back_to_sms_as_the_same_message() {
    let f = fixture_with(
        vec![phone_customer("C1")],
        Channel::Wechat,
        Some(Channel::Sms),
    );
    let wechat = Scripted::new(vec![]);
    let sms = Scripted::new(vec![]);
    let d = with_policies(
        vec![
            (
                Channel::Wechat,
                wechat.clone(),
                ChannelPolicy {
                    fallback: Some(Channel::Sms),
                    ..ChannelPolicy::plain("wecom")
                },
            ),
            (Channel::Sms, sms.clone(), ChannelPolicy::plain("aliyun")),
        ],
        settings(3),
    );
    let report = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!((report.fell_back, report.sent), (1, 1));
    assert!(wechat.seen().is_empty());
    assert_eq!(sms.seen()[0].1, "13812345678");
    let entries = log(&f.store);
    assert_eq!(entries.len(), 1, "the same message, not a second one");
    assert_eq!(
        (entries[0].channel.as_str(), entries[0].status.as_str()),
        ("sms", "sent")
    );
    assert_eq!(entries[0].content, "sms 版本");
}

#[tokio::test]
async fn a_permanent_failure_falls_back_when_a_fallback_exists() {
    let customer = NewCustomer {
        wechat_openid: Some("o123".into()),
        ..phone_customer("C1")
    };
    let f = fixture_with(vec![customer], Channel::Wechat, Some(Channel::Sms));
    let wechat = Scripted::new(vec![SendOutcome::Permanent {
        error: "40003 invalid openid".into(),
    }]);
    let sms = Scripted::new(vec![]);
    let d = with_policies(
        vec![
            (
                Channel::Wechat,
                wechat.clone(),
                ChannelPolicy {
                    fallback: Some(Channel::Sms),
                    ..ChannelPolicy::plain("wecom")
                },
            ),
            (Channel::Sms, sms.clone(), ChannelPolicy::plain("aliyun")),
        ],
        settings(3),
    );
    let report = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!((report.fell_back, report.sent, report.failed), (1, 1, 0));
    let entry = &log(&f.store)[0];
    assert_eq!(entry.channel, "sms");
    assert_eq!(wechat.seen().len(), 1);
}

#[tokio::test]
async fn do_not_contact_never_falls_back() {
    let customer = NewCustomer {
        do_not_contact: true,
        ..phone_customer("C1")
    };
    let f = fixture_with(vec![customer], Channel::Wechat, Some(Channel::Sms));
    let sms = Scripted::new(vec![]);
    let d = with_policies(
        vec![
            (
                Channel::Wechat,
                Scripted::new(vec![]),
                ChannelPolicy {
                    fallback: Some(Channel::Sms),
                    ..ChannelPolicy::plain("wecom")
                },
            ),
            (Channel::Sms, sms.clone(), ChannelPolicy::plain("aliyun")),
        ],
        settings(3),
    );
    let report = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!((report.suppressed, report.fell_back), (1, 0));
    assert!(sms.seen().is_empty());
}

#[tokio::test]
async fn the_channel_cost_is_recorded_on_every_sent_message() {
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    let policy = ChannelPolicy {
        cost_milli: 45,
        ..ChannelPolicy::plain("test")
    };
    let d = with_policies(
        vec![(Channel::Sms, Scripted::new(vec![]), policy)],
        settings(3),
    );
    d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!(log(&f.store)[0].cost_milli, 45);
}

#[tokio::test]
async fn awaiting_messages_are_polled_until_they_settle() {
    let customers = (1..=3)
        .map(|i| NewCustomer {
            wecom_external_userid: Some(format!("wm{i}")),
            ..phone_customer(&format!("C{i}"))
        })
        .collect();
    let f = fixture(customers, Channel::Wechat);
    let awaiting = |n: i64| SendOutcome::Awaiting {
        provider_id: format!("msg{n}"),
    };
    let sender = Scripted::polling(
        vec![awaiting(1), awaiting(2), awaiting(3)],
        vec![
            PollOutcome::Sent,
            PollOutcome::OptedOut {
                reason: "not a contact any more".into(),
            },
            PollOutcome::Pending,
        ],
    );
    let d = dispatcher(sender, Channel::Wechat, 3);
    let report = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!(report.awaiting, 3);
    assert!(log(&f.store).iter().all(|e| e.status == "awaiting"));
    // Not asked again before `every` has passed.
    let early = d
        .poll_awaiting(&f.store, at(T0 + 60), Duration::from_secs(600), &|| false)
        .await
        .unwrap();
    assert_eq!(early.polled, 0);
    let report = d
        .poll_awaiting(&f.store, at(T0 + 601), Duration::from_secs(600), &|| false)
        .await
        .unwrap();
    assert_eq!((report.sent, report.opted_out, report.pending), (1, 1, 1));
    let statuses: Vec<String> = log(&f.store).into_iter().map(|e| e.status).collect();
    assert_eq!(statuses, ["sent", "opted_out", "awaiting"]);
}

/// Queues one more message on `channel` for the first customer, due at `due`.
fn queue_more(f: &Fixture, channel: Channel, due: i64) {
    crate::testing::queue_more(&f.store, 1, channel, due);
}

/// Counts how many sends are in flight at once; each takes a little while.
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Sender for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.now.fetch_sub(1, SeqCst);
        SendOutcome::Sent {
            provider_id: format!("p-{}", message.id),
        }
    }
}

#[tokio::test]
async fn sends_run_side_by_side_up_to_the_concurrency_and_are_committed_in_groups() {
    let customers = (1..=10).map(|i| phone_customer(&format!("C{i}"))).collect();
    let f = fixture(customers, Channel::Sms);
    let slow = Arc::new(Slow {
        now: Default::default(),
        most: Default::default(),
    });
    let mut routes = BTreeMap::new();
    routes.insert(
        Channel::Sms,
        Route::new("slow", slow.clone(), ChannelPolicy::plain("slow")),
    );
    let d = Dispatcher::with_routes(routes, settings(3), chrono_tz::Asia::Shanghai);
    let report = d.drain(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!(report.sent, 10);
    let most = slow.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most > 1, "sends ran one at a time");
    assert!(most <= 4, "more than `concurrency` sends in flight: {most}");
    assert!(log(&f.store).iter().all(|e| e.status == "sent"));
}

#[tokio::test]
async fn a_stop_lets_sends_in_flight_finish_and_hands_back_the_rest() {
    let customers = (1..=10).map(|i| phone_customer(&format!("C{i}"))).collect();
    let f = fixture(customers, Channel::Sms);
    let slow = Arc::new(Slow {
        now: Default::default(),
        most: Default::default(),
    });
    let mut routes = BTreeMap::new();
    routes.insert(
        Channel::Sms,
        Route::new("slow", slow.clone(), ChannelPolicy::plain("slow")),
    );
    let d = Dispatcher::with_routes(routes, settings(3), chrono_tz::Asia::Shanghai);
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let stop = || {
        // Stop once the first four are in flight.
        if slow.most.load(std::sync::atomic::Ordering::SeqCst) >= 4 {
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        stopping.load(std::sync::atomic::Ordering::SeqCst)
    };
    let report = d.round(&f.store, at(T0), &stop).await.unwrap();
    assert_eq!(report.sent + report.released, 10);
    assert!(report.sent >= 4 && report.released > 0, "{report:?}");
    let entries = log(&f.store);
    assert_eq!(
        entries.iter().filter(|e| e.status == "sent").count(),
        report.sent
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.status != "sent")
            .all(|e| e.status == "queued" && e.attempts == 0)
    );
}

#[tokio::test]
async fn an_opt_out_suppresses_the_customers_later_messages_on_that_channel_in_the_same_round() {
    // Messages 1 (C1), 2 (C2) and 3 (C1 again), all on SMS, claimed together.
    let f = fixture(
        vec![phone_customer("C1"), phone_customer("C2")],
        Channel::Sms,
    );
    queue_more(&f, Channel::Sms, T0);
    let sender = Scripted::new(vec![SendOutcome::OptedOut {
        reason: "replied TD".into(),
    }]);
    let report = dispatcher(sender.clone(), Channel::Sms, 3)
        .round(&f.store, at(T0), &|| false)
        .await
        .unwrap();
    assert_eq!(report.claimed, 3);
    assert_eq!(
        (report.opted_out, report.sent, report.suppressed),
        (1, 1, 1)
    );
    let ids: Vec<i64> = sender.seen().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2], "message 3 must not reach the sender");
    let third = log(&f.store).into_iter().find(|e| e.id == 3).unwrap();
    assert_eq!(third.status, "suppressed");
    assert_eq!(
        third.last_error.as_deref(),
        Some("opted out of sms (the provider's answer to message 1 in this dispatch round)")
    );
}

/// Answers message 1 "opted out" after a while; sends the others.
struct OptsOutSlowly {
    seen: Mutex<Vec<i64>>,
}

#[async_trait]
impl Sender for OptsOutSlowly {
    fn kind(&self) -> &'static str {
        "opts-out-slowly"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        self.seen.lock().unwrap().push(message.id);
        if message.id == 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            SendOutcome::OptedOut {
                reason: "blacklisted".into(),
            }
        } else {
            SendOutcome::Sent {
                provider_id: format!("p-{}", message.id),
            }
        }
    }
}

#[tokio::test]
async fn an_opt_out_answered_while_a_later_message_waits_for_the_rate_limit_stops_it() {
    // Message 2 (same customer, same channel) starts while message 1 is at
    // the provider, passes the consent check, and waits for the pacer; the
    // opt-out arrives during that wait.
    let f = fixture(vec![phone_customer("C1")], Channel::Sms);
    queue_more(&f, Channel::Sms, T0);
    let sender = Arc::new(OptsOutSlowly {
        seen: Mutex::new(Vec::new()),
    });
    let mut route = Route::new("paced", sender.clone(), ChannelPolicy::plain("paced"));
    route.pacer = Some(Arc::new(Pacer::new(crate::config::RateLimit {
        count: 1,
        per: Duration::from_millis(1500),
    })));
    let d = Dispatcher::with_routes(
        BTreeMap::from([(Channel::Sms, route)]),
        settings(3),
        chrono_tz::Asia::Shanghai,
    );
    let report = d.round(&f.store, at(T0), &|| false).await.unwrap();
    assert_eq!(
        (report.opted_out, report.suppressed, report.sent),
        (1, 1, 0)
    );
    assert_eq!(*sender.seen.lock().unwrap(), [1]);
    let second = log(&f.store).into_iter().find(|e| e.id == 2).unwrap();
    assert_eq!(second.status, "suppressed");
}
