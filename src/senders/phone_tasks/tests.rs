//! Call tasks through the real dispatcher and a real database.

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::base::clock::{Clock, parse_time};
use crate::base::model::Channel;
use crate::config::{ChannelPolicy, DispatchSettings};
use crate::dispatch::{Dispatcher, Route};
use crate::store::ingest::NewCustomer;
use crate::store::queries::LogFilter;
use crate::testing::{Outbox, outbox, queue_assigned};

const TZ: Tz = chrono_tz::Asia::Shanghai;

fn shanghai(text: &str) -> DateTime<Utc> {
    parse_time(text, TZ, chrono::DateTime::UNIX_EPOCH).unwrap()
}

fn config(staff: &[(&str, u32)]) -> Config {
    Config {
        staff: staff
            .iter()
            .map(|(name, capacity)| Staff {
                name: name.to_string(),
                daily_capacity: *capacity,
                advisor: false,
                off: false,
            })
            .collect(),
        working_hours: default_hours(),
        working_days: default_days(),
        history: 3,
        notify: None,
    }
}

fn customers(n: usize) -> Vec<NewCustomer> {
    (1..=n)
        .map(|i| NewCustomer {
            phone: Some(format!("1381234{i:04}")),
            ..NewCustomer::named(&format!("C{i}"), "王丽")
        })
        .collect()
}

fn phone_tasks(f: &Outbox, config: &Config) -> Arc<PhoneTasks> {
    let ctx = Context {
        database: f.database(),
        timezone: TZ,
        ..Context::default()
    };
    Arc::new(PhoneTasks::new("calls", config, &ctx).unwrap())
}

fn dispatcher(sender: Arc<dyn Sender>) -> Dispatcher {
    let mut routes = BTreeMap::new();
    routes.insert(
        Channel::Phone,
        Route::new("calls", sender, ChannelPolicy::plain("calls")),
    );
    Dispatcher::with_routes(routes, DispatchSettings::default(), TZ)
}

fn tasks(f: &Outbox) -> Vec<TaskRow> {
    f.store.lock().unwrap().tasks(&Default::default()).unwrap()
}

fn statuses(f: &Outbox) -> Vec<String> {
    f.store
        .lock()
        .unwrap()
        .log(&LogFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect()
}

// 2026-06-01 is a Monday.
const MONDAY_11: &str = "2026-06-01 11:00";

#[tokio::test]
async fn tasks_go_round_robin_within_daily_capacity_and_the_rest_waits_for_tomorrow() {
    let f = outbox(customers(5), Channel::Phone, None);
    let sender = phone_tasks(&f, &config(&[("小林", 2), ("小周", 1)]));
    let d = dispatcher(sender);
    let report = d
        .drain(&f.store, Clock::Fixed(shanghai(MONDAY_11)), &|| false)
        .await
        .unwrap();
    assert_eq!((report.awaiting, report.deferred), (3, 2));
    let assigned: Vec<(String, String)> = tasks(&f)
        .into_iter()
        .map(|t| (t.staff, t.due_date))
        .collect();
    assert_eq!(
        assigned,
        [
            ("小周".to_string(), "2026-06-01".to_string()),
            ("小林".to_string(), "2026-06-01".to_string()),
            ("小林".to_string(), "2026-06-01".to_string()),
        ]
    );
    let waiting: Vec<_> = f
        .store
        .lock()
        .unwrap()
        .log(&LogFilter::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.status == "queued")
        .collect();
    assert_eq!(waiting.len(), 2);
    assert!(
        waiting
            .iter()
            .all(|e| e.due_at == shanghai("2026-06-02 10:00").timestamp())
    );
    assert!(
        waiting.iter().all(|e| e.attempts == 0),
        "waiting for capacity uses no attempt"
    );
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("fully booked")
    );
}

#[tokio::test]
async fn tasks_are_planned_only_in_working_hours_on_working_days() {
    let f = outbox(customers(1), Channel::Phone, None);
    let sender = phone_tasks(&f, &config(&[("小林", 10)]));
    let d = dispatcher(sender);
    // Saturday evening: after hours; Sunday is not a working day.
    let report = d
        .drain(
            &f.store,
            Clock::Fixed(shanghai("2026-06-06 20:00")),
            &|| false,
        )
        .await
        .unwrap();
    assert_eq!(report.deferred, 1);
    let entry = &f.store.lock().unwrap().log(&LogFilter::default()).unwrap()[0];
    assert_eq!(entry.due_at, shanghai("2026-06-08 10:00").timestamp());
    // Early Monday: waits for 10:00 the same day.
    let schedule = Schedule::new(&config(&[("小林", 10)]), TZ).unwrap();
    assert_eq!(
        schedule.next_start(shanghai("2026-06-08 08:00"), false),
        shanghai("2026-06-08 10:00")
    );
}

#[tokio::test]
async fn the_script_carries_the_template_text_and_the_customer_history() {
    let f = outbox(customers(1), Channel::Phone, None);
    {
        let mut store = f.store.lock().unwrap();
        let mut ingest = store.ingest().unwrap();
        ingest
            .add_visit(1, shanghai("2026-05-20 15:00").timestamp(), Some("皮肤科"))
            .unwrap();
        ingest
            .add_order(
                1,
                shanghai("2026-05-20 16:00").timestamp(),
                298_000,
                Some("水光针"),
                None,
            )
            .unwrap();
        ingest.commit().unwrap();
    }
    let sender = phone_tasks(&f, &config(&[("小林", 10)]));
    dispatcher(sender)
        .drain(&f.store, Clock::Fixed(shanghai(MONDAY_11)), &|| false)
        .await
        .unwrap();
    let script = &tasks(&f)[0].script;
    assert!(script.starts_with("您好"), "{script}");
    assert!(script.contains("到院 visit 2026-05-20 皮肤科"), "{script}");
    assert!(
        script.contains("消费 order 2026-05-20 2980.00 元 水光针"),
        "{script}"
    );
}

#[tokio::test]
async fn call_outcomes_settle_the_message_and_are_recorded_as_follow_ups() {
    let f = outbox(customers(4), Channel::Phone, None);
    let cfg = config(&[("小林", 10)]);
    let sender = phone_tasks(&f, &cfg);
    let d = dispatcher(sender);
    let monday = shanghai(MONDAY_11);
    d.drain(&f.store, Clock::Fixed(monday), &|| false)
        .await
        .unwrap();
    let schedule = Schedule::new(&cfg, TZ).unwrap();
    let ids: Vec<i64> = tasks(&f).into_iter().map(|t| t.id).collect();
    let outcomes = [
        CallOutcome::ReachedBooked,
        CallOutcome::NoAnswer,
        CallOutcome::WrongNumber,
        CallOutcome::OptOut,
    ];
    let later = monday + chrono::Duration::hours(2);
    for (id, outcome) in ids.iter().zip(outcomes) {
        let mut store = f.store.lock().unwrap();
        let done = complete(&mut store, &schedule, 5, *id, outcome, Some("备注"), later)
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.status.as_str(), done.outcome.as_deref()),
            ("done", Some(outcome.as_str()))
        );
    }
    assert_eq!(statuses(&f), ["sent", "queued", "failed", "opted_out"]);
    {
        let store = f.store.lock().unwrap();
        // Completing twice does nothing.
        drop(store);
        let mut store = f.store.lock().unwrap();
        assert!(
            complete(
                &mut store,
                &schedule,
                5,
                ids[0],
                CallOutcome::NoAnswer,
                None,
                later
            )
            .unwrap()
            .is_none()
        );
    }
    // The unanswered call is tried again on the next working day, as a new task.
    let tuesday = shanghai("2026-06-02 10:00");
    let report = d
        .drain(&f.store, Clock::Fixed(tuesday), &|| false)
        .await
        .unwrap();
    assert_eq!(report.awaiting, 1);
    let retry = tasks(&f).into_iter().last().unwrap();
    assert_eq!((retry.attempt, retry.due_date.as_str()), (2, "2026-06-02"));
}

#[tokio::test]
async fn no_answer_on_the_last_attempt_fails_the_message() {
    let f = outbox(customers(1), Channel::Phone, None);
    let cfg = config(&[("小林", 10)]);
    let d = dispatcher(phone_tasks(&f, &cfg));
    d.drain(&f.store, Clock::Fixed(shanghai(MONDAY_11)), &|| false)
        .await
        .unwrap();
    let schedule = Schedule::new(&cfg, TZ).unwrap();
    let id = tasks(&f)[0].id;
    let mut store = f.store.lock().unwrap();
    complete(
        &mut store,
        &schedule,
        1,
        id,
        CallOutcome::NoAnswer,
        None,
        shanghai(MONDAY_11),
    )
    .unwrap();
    drop(store);
    assert_eq!(statuses(&f), ["failed"]);
}

/// Remembers notices instead of posting them, answering from a script
/// (then `Sent`).
struct Notices(StdMutex<Vec<String>>, StdMutex<Vec<SendOutcome>>);

impl Notices {
    fn answering(outcomes: Vec<SendOutcome>) -> Arc<Notices> {
        Arc::new(Notices(StdMutex::new(Vec::new()), StdMutex::new(outcomes)))
    }

    /// Notices that fail once as a throttled robot does, then go through.
    fn throttled_once() -> Arc<Notices> {
        Notices::answering(vec![SendOutcome::Retryable {
            error: "errcode 45009 (api freq out of limit)".into(),
            retry_after: None,
        }])
    }

    fn posted(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One drain at `at` (clinic time).
async fn drain_at(d: &Dispatcher, f: &Outbox, at: &str) -> crate::dispatch::DispatchReport {
    d.drain(&f.store, Clock::Fixed(shanghai(at)), &|| false)
        .await
        .unwrap()
}

#[async_trait]
impl Sender for Notices {
    fn kind(&self) -> &'static str {
        "notices"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        self.0.lock().unwrap().push(message.content.body.clone());
        let mut script = self.1.lock().unwrap();
        if script.is_empty() {
            SendOutcome::Sent {
                provider_id: "n".into(),
            }
        } else {
            script.remove(0)
        }
    }
}

/// A call-task sender whose notices go to `notices`.
fn notifying(f: &Outbox, notices: &Arc<Notices>) -> Arc<PhoneTasks> {
    let mut sender = PhoneTasks::new(
        "calls",
        &config(&[("小林", 10), ("小周", 10)]),
        &Context {
            database: f.database(),
            timezone: TZ,
            ..Context::default()
        },
    )
    .unwrap();
    sender.notify = Some(notices.clone());
    Arc::new(sender)
}

#[tokio::test]
async fn a_notice_that_failed_is_sent_by_a_later_pass_with_nothing_due() {
    let f = outbox(customers(2), Channel::Phone, None);
    let notices = Notices::throttled_once();
    let d = dispatcher(notifying(&f, &notices));
    drain_at(&d, &f, MONDAY_11).await;
    assert_eq!(notices.posted().len(), 1);
    // Nothing is due now, and the notice is still owed: it goes out, once.
    for at in ["2026-06-01 11:05", "2026-06-01 11:10"] {
        assert_eq!(drain_at(&d, &f, at).await.claimed, 0);
    }
    let posted = notices.posted();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(posted[1].contains("新的回访电话任务 2 个"), "{}", posted[1]);
}

#[tokio::test]
async fn a_notice_the_robot_never_takes_is_given_up() {
    let f = outbox(customers(1), Channel::Phone, None);
    let notices = Notices::answering(vec![SendOutcome::Permanent {
        error: "errcode 93000 (invalid webhook url)".into(),
    }]);
    let d = dispatcher(notifying(&f, &notices));
    for at in [MONDAY_11, "2026-06-01 11:05"] {
        drain_at(&d, &f, at).await;
    }
    assert_eq!(notices.posted().len(), 1, "not tried again");
}

#[tokio::test]
async fn tasks_done_or_past_their_day_are_not_announced_late() {
    let f = outbox(customers(2), Channel::Phone, None);
    let notices = Notices::throttled_once();
    let d = dispatcher(notifying(&f, &notices));
    drain_at(&d, &f, MONDAY_11).await;
    // One call is made the same day; the notice is for the other only.
    let first = tasks(&f)[0].id;
    let schedule = Schedule::new(&config(&[("小林", 10)]), TZ).unwrap();
    complete(
        &mut f.store.lock().unwrap(),
        &schedule,
        5,
        first,
        CallOutcome::ReachedBooked,
        None,
        shanghai("2026-06-01 11:30"),
    )
    .unwrap();
    drain_at(&d, &f, "2026-06-01 12:00").await;
    let posted = notices.posted();
    assert!(posted[1].contains("新的回访电话任务 1 个"), "{}", posted[1]);
    // A notice still owed the next day is dropped, not posted late.
    let f = outbox(customers(1), Channel::Phone, None);
    let notices = Notices::throttled_once();
    let d = dispatcher(notifying(&f, &notices));
    drain_at(&d, &f, MONDAY_11).await;
    drain_at(&d, &f, "2026-06-02 11:00").await;
    assert_eq!(notices.posted().len(), 1);
}

#[tokio::test]
async fn staff_get_one_notice_per_round_about_new_tasks() {
    let f = outbox(customers(3), Channel::Phone, None);
    let notices = Notices::answering(vec![]);
    dispatcher(notifying(&f, &notices))
        .drain(&f.store, Clock::Fixed(shanghai(MONDAY_11)), &|| false)
        .await
        .unwrap();
    let posted = notices.posted();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(
        posted[0].contains("新的回访电话任务 3 个")
            && posted[0].contains("小林 2 个")
            && posted[0].contains("小周 1 个"),
        "{}",
        posted[0]
    );
}

#[test]
fn bad_settings_are_named() {
    let f = outbox(customers(1), Channel::Phone, None);
    let ctx = Context {
        database: f.database(),
        timezone: TZ,
        ..Context::default()
    };
    let mut cfg = config(&[]);
    assert!(
        PhoneTasks::new("calls", &cfg, &ctx)
            .err()
            .unwrap()
            .to_string()
            .contains("staff is empty")
    );
    cfg = config(&[("小林", 10)]);
    cfg.working_days = vec!["funday".into()];
    assert!(
        PhoneTasks::new("calls", &cfg, &ctx)
            .err()
            .unwrap()
            .to_string()
            .contains("`funday` is not a day")
    );
    cfg = config(&[("小林", 10)]);
    cfg.working_hours = "19:00-10:00".into();
    assert!(
        PhoneTasks::new("calls", &cfg, &ctx)
            .err()
            .unwrap()
            .to_string()
            .contains("must start before it ends")
    );
    cfg = config(&[("小林", 10)]);
    cfg.notify = Some("robot".into());
    assert!(
        PhoneTasks::new("calls", &cfg, &ctx)
            .err()
            .unwrap()
            .to_string()
            .contains("not defined under [senders]")
    );
}

#[tokio::test]
async fn advisor_calls_go_to_the_advisor_and_otherwise_to_the_round_robin() {
    // Customers 1 and 2 belong to 王芳 (one call left today), 3 to 李娜
    // (off), 4 has no advisor. Their SMS messages are not routed here.
    let f = outbox(customers(4), Channel::Sms, None);
    let due = shanghai("2026-06-01 09:00").timestamp();
    for (customer, advisor) in [
        (1, Some("王芳")),
        (2, Some("王芳")),
        (3, Some("李娜")),
        (4, None),
    ] {
        queue_assigned(&f.store, customer, due, advisor);
    }
    let mut config = config(&[("小周", 10), ("王芳", 1), ("小林", 10), ("李娜", 10)]);
    config.staff[1].advisor = true;
    config.staff[3].advisor = true;
    config.staff[3].off = true;
    let sender = phone_tasks(&f, &config);
    let mut routes = BTreeMap::new();
    routes.insert(
        Channel::Phone,
        Route::new("calls", sender, ChannelPolicy::plain("calls")),
    );
    // One at a time, in queue order, so the round robin's turns are known.
    let settings = DispatchSettings {
        concurrency: 1,
        ..DispatchSettings::default()
    };
    let d = Dispatcher::with_routes(routes, settings, TZ);
    let report = d
        .drain(&f.store, Clock::Fixed(shanghai(MONDAY_11)), &|| false)
        .await
        .unwrap();
    assert_eq!(report.awaiting, 4);
    let mut assigned: Vec<(String, String)> = tasks(&f)
        .into_iter()
        .map(|t| (t.customer, t.staff))
        .collect();
    assigned.sort();
    let expected = [
        ("C1", "王芳"), // her own customer
        ("C2", "小周"), // 王芳 is fully booked: the round robin starts, as her call was not its turn
        ("C3", "小林"), // 李娜 is off; 王芳 is full
        ("C4", "小周"), // no advisor; 李娜 (off) is skipped
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect();
    assert_eq!(assigned, expected);
}

#[test]
fn validate_refuses_a_staff_where_everyone_is_off() {
    let mut config = config(&[("小林", 10)]);
    config.staff[0].off = true;
    let problems = validate(&config, &BTreeMap::new()).unwrap_err();
    assert!(
        problems[0].message.contains("every staff member is off"),
        "{problems:?}"
    );
}
