//! Fault tests: the real binary killed with SIGKILL mid-tick and
//! mid-dispatch, a provider that fails and recovers, a database another
//! process holds locked, and SIGTERM during a dispatch burst. Everything
//! goes to a local provider (`common::provider`) that records each request.
//!
//! The bound these tests hold recall to is the one README documents: a
//! crash sends at most `[dispatch] concurrency` messages twice; nothing is
//! lost; no move or message is ever doubled in the database.
//!
//! Seeded: set RECALL_FAULT_SEED to replay a run; every failure prints it.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::provider::{Mode, Provider};
use common::{Clinic, stdout};

/// Sends in flight at once in these tests: also the documented bound on
/// messages a crash may send twice.
const CONCURRENCY: usize = 4;

/// The time every tick and dispatch runs at: forty days after the demo's
/// history, so the tick moves many customers and queues a burst.
static WHEN: LazyLock<String> = LazyLock::new(|| {
    let at = chrono::Utc::now() + chrono::Duration::days(40);
    at.format("%Y-%m-%dT%H:%M:00Z").to_string()
});

/// A demo clinic, made once per test binary and copied by each test.
static BASE: LazyLock<Clinic> = LazyLock::new(|| Clinic::demo(300));

/// Ids of the messages the demo had already sent before any test ran.
static SENT_BEFORE: LazyLock<Vec<i64>> = LazyLock::new(|| {
    statuses(&BASE)
        .into_iter()
        .filter(|(_, s)| s == "sent")
        .map(|(id, _)| id)
        .collect()
});

/// Messages sent by the test (not by the demo's history).
fn sent_now(statuses: &BTreeMap<i64, String>) -> Vec<i64> {
    statuses
        .iter()
        .filter(|(id, s)| *s == "sent" && !SENT_BEFORE.contains(id))
        .map(|(id, _)| *id)
        .collect()
}

fn seed() -> u64 {
    std::env::var("RECALL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        })
}

/// Points every channel at the provider, with no quiet hours or caps (the
/// tests are about crashes, not policy), and tags requests with `run`.
fn configure(clinic: &Clinic, provider: &Provider, run: &str, extra: &str) {
    let config = format!(
        r#"[clinic]
name = "测试诊所"

[schedule]
ticks = ["0 9 * * *"]
dispatch_every = "1s"

[dispatch]
batch_size = 20
concurrency = {CONCURRENCY}
max_attempts = 5
retry_backoff = "1m"
max_backoff = "1h"
{extra}
[senders.gateway]
kind = "webhook"
url = "{url}"
timeout = "500ms"
idempotency_header = "Idempotency-Key"
body = '''{{"to": {{{{ address }}}}, "text": {{{{ content }}}}, "ref": {{{{ id }}}}, "run": "{run}"}}'''

[channels.sms]
sender = "gateway"
[channels.phone]
sender = "gateway"
[channels.wechat]
sender = "gateway"
[channels.email]
sender = "gateway"
"#,
        url = provider.url()
    );
    std::fs::write(clinic.config(), config).unwrap();
}

fn spawn(clinic: &Clinic, args: &[&str]) -> Child {
    clinic
        .process()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs a command to completion; panics with its output if it fails.
fn run(clinic: &Clinic, args: &[&str], context: &str) -> String {
    let out = clinic.process().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{context}: recall {args:?} failed:\n{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn tick(clinic: &Clinic, context: &str) {
    run(
        clinic,
        &["tick", "--at", &WHEN, "--batch-size", "5"],
        context,
    );
}

fn dispatch(clinic: &Clinic, at: &str, context: &str) {
    run(clinic, &["dispatch", "--at", at], context);
}

/// Outreach id → status.
fn statuses(clinic: &Clinic) -> BTreeMap<i64, String> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, status FROM outreach ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn due_now(clinic: &Clinic, at: &str) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp();
    clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE status = 'queued' AND due_at <= {at}"
    ))
}

/// The uninterrupted run every interrupted one must end like.
struct Reference {
    history: (Vec<String>, Vec<String>),
    statuses: BTreeMap<i64, String>,
    tick_time: Duration,
    dispatch_time: Duration,
}

fn reference(provider: &Provider) -> Reference {
    let clinic = BASE.copy();
    configure(&clinic, provider, "reference", "");
    let started = Instant::now();
    tick(&clinic, "reference");
    let tick_time = started.elapsed();
    let started = Instant::now();
    dispatch(&clinic, &WHEN, "reference");
    let dispatch_time = started.elapsed();
    let statuses = statuses(&clinic);
    let sent = sent_now(&statuses).len();
    assert!(
        sent >= 2 * CONCURRENCY,
        "the test needs a dispatch burst; the reference sent {sent}"
    );
    let accepted = provider.accepted("reference");
    assert_eq!(accepted.len(), sent);
    assert!(accepted.values().all(|n| *n == 1));
    Reference {
        history: clinic.history(),
        statuses,
        tick_time,
        dispatch_time,
    }
}

#[test]
fn killed_at_random_points_nothing_is_lost_or_doubled_beyond_the_window() {
    let seed = seed();
    eprintln!("fault test seed {seed} (RECALL_FAULT_SEED={seed} replays it)");
    let provider = Provider::start();
    // Each answer takes a moment, so a dispatch burst lasts long enough to
    // be killed in the middle.
    provider.set_delay(Duration::from_millis(3));
    let expected = reference(&provider);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut killed_ticks, mut killed_dispatches, mut duplicates, mut worst) = (0, 0, 0, 0);
    const ITERATIONS: usize = 50;
    for i in 0..ITERATIONS {
        let run_tag = format!("kill-{i}");
        let context = format!("seed {seed}, iteration {i}");
        let clinic = BASE.copy();
        configure(&clinic, &provider, &run_tag, "");
        // Which step dies, and when: 0 the tick, 1 the dispatch, 2 both.
        let target = rng.u8(0..3);
        if target != 1 {
            let limit = expected.tick_time.as_millis() as u64 + 20;
            let delay = rng.u64(0..limit);
            let mut child = spawn(&clinic, &["tick", "--at", &WHEN, "--batch-size", "5"]);
            std::thread::sleep(Duration::from_millis(delay));
            let _ = child.kill(); // SIGKILL
            let status = child.wait().unwrap();
            killed_ticks += usize::from(!status.success());
        }
        tick(&clinic, &context);
        if target != 0 {
            let limit = expected.dispatch_time.as_millis() as u64 + 20;
            let delay = rng.u64(0..limit);
            let mut child = spawn(&clinic, &["dispatch", "--at", &WHEN]);
            std::thread::sleep(Duration::from_millis(delay));
            let _ = child.kill();
            let status = child.wait().unwrap();
            killed_dispatches += usize::from(!status.success());
        }
        // Restart and run to quiescence.
        dispatch(&clinic, &WHEN, &context);
        assert_eq!(due_now(&clinic, &WHEN), 0, "{context}: not quiescent");

        // No move or message lost or doubled in the database.
        assert_eq!(clinic.history(), expected.history, "{context}");
        assert_eq!(
            clinic.count("SELECT count(*) FROM ticks WHERE status <> 'done'"),
            0,
            "{context}"
        );
        // Every message ended as in the uninterrupted run.
        let differences: Vec<String> = statuses(&clinic)
            .iter()
            .filter(|(id, s)| expected.statuses.get(id) != Some(s))
            .map(|(id, s)| format!("#{id} is {s}, expected {:?}", expected.statuses.get(id)))
            .collect();
        assert!(differences.is_empty(), "{context}: {differences:?}");
        // Every sent message reached the provider; at most CONCURRENCY twice.
        let accepted = provider.accepted(&run_tag);
        let sent = sent_now(&expected.statuses);
        for id in &sent {
            assert!(
                accepted.get(id).copied().unwrap_or(0) >= 1,
                "{context}: message {id} is sent in the database but never reached the provider"
            );
        }
        assert!(
            accepted.keys().all(|id| sent.contains(id)),
            "{context}: the provider got a message the database does not show as sent"
        );
        let twice: usize = accepted.values().map(|n| n - 1).sum();
        assert!(
            twice <= CONCURRENCY,
            "{context}: {twice} messages were sent twice; the documented window is {CONCURRENCY}"
        );
        // The idempotency key lets the provider deliver each exactly once.
        let delivered = provider.delivered(&run_tag);
        assert!(delivered.values().all(|n| *n == 1), "{context}");
        assert_eq!(delivered.len(), sent.len(), "{context}");
        duplicates += twice;
        worst = worst.max(twice);
    }
    eprintln!(
        "{ITERATIONS} iterations (seed {seed}): {killed_ticks} ticks and {killed_dispatches} dispatches killed mid-run; \
         {duplicates} messages sent twice in all (at most {worst} after one crash; bound {CONCURRENCY}); none lost"
    );
    assert!(
        killed_ticks > 0 && killed_dispatches > 0,
        "seed {seed}: no kill landed mid-run; adjust the delays"
    );
}

#[test]
fn a_provider_outage_is_retried_until_everything_is_delivered() {
    let provider = Provider::start();
    let clinic = BASE.copy();
    configure(&clinic, &provider, "outage", "");
    tick(&clinic, "outage");
    let queued = due_now(&clinic, &WHEN);
    assert!(queued > 0);
    let due_at_start = due_ids(&clinic, &WHEN);
    let at = |minutes: i64| {
        let t = chrono::DateTime::parse_from_rfc3339(&WHEN).unwrap()
            + chrono::Duration::minutes(minutes);
        t.to_rfc3339()
    };
    // 500s, then throttling with Retry-After, then answers too slow to wait
    // for: every message is retried, none given up.
    provider.set_mode(Mode::Status(500));
    dispatch(&clinic, &at(0), "500");
    provider.set_mode(Mode::TooMany(90));
    dispatch(&clinic, &at(5), "429");
    assert!(
        clinic.count(
            "SELECT count(*) FROM outreach WHERE status = 'queued' AND last_error LIKE '%429%'"
        ) > 0
    );
    // Retry-After: 90 s is respected: a minute later nothing is due yet.
    assert_eq!(due_now(&clinic, &at(6)), 0);
    provider.set_mode(Mode::Hang(Duration::from_millis(900)));
    dispatch(&clinic, &at(15), "timeouts");
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'failed'"),
        0,
        "nothing that could still succeed is marked failed"
    );
    // The provider recovers.
    provider.set_mode(Mode::Ok);
    for minutes in [60, 120, 240] {
        dispatch(&clinic, &at(minutes), "recovered");
    }
    assert_eq!(due_now(&clinic, &at(240)), 0);
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status IN ('failed', 'sending')"),
        0
    );
    let sent = sent_now(&statuses(&clinic));
    assert!(sent.len() as i64 >= queued);
    let delivered = provider.delivered("outage");
    for id in &sent {
        assert_eq!(
            delivered.get(id).copied(),
            Some(1),
            "message {id} delivered exactly once"
        );
        let tries = provider
            .requests("outage")
            .iter()
            .filter(|r| r.id == *id)
            .count();
        if due_at_start.contains(id) {
            assert!(
                tries >= 4,
                "message {id}: 3 failed attempts and a good one, got {tries}"
            );
        }
    }
}

#[test]
fn an_outage_longer_than_the_old_attempt_budget_ends_with_everything_delivered_once() {
    let provider = Provider::start();
    let clinic = BASE.copy();
    // max_attempts = 5 and a 1 m backoff (the shipped defaults) once gave
    // up after about 15 minutes of failures.
    configure(&clinic, &provider, "long-outage", "");
    tick(&clinic, "long-outage");
    let due = due_ids(&clinic, &WHEN);
    assert!(!due.is_empty());
    let at = |minutes: i64| {
        let t = chrono::DateTime::parse_from_rfc3339(&WHEN).unwrap()
            + chrono::Duration::minutes(minutes);
        t.to_rfc3339()
    };
    // Six hours of 503s, the service's rounds every 10 minutes (as
    // `dispatch --at`), then the provider recovers.
    provider.set_mode(Mode::Status(503));
    for minutes in (0..=360).step_by(10) {
        dispatch(&clinic, &at(minutes), "outage");
    }
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'failed'"),
        0,
        "an outage of six hours is waited out"
    );
    let most = clinic.count("SELECT max(attempts) FROM outreach");
    assert!(
        most > 5,
        "only {most} attempts: the outage was not long enough"
    );
    provider.set_mode(Mode::Ok);
    for minutes in (370..=720).step_by(10) {
        dispatch(&clinic, &at(minutes), "recovered");
    }
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status IN ('failed', 'sending')"),
        0
    );
    assert_eq!(due_now(&clinic, &at(720)), 0);
    let statuses = statuses(&clinic);
    let delivered = provider.delivered("long-outage");
    let accepted = provider.accepted("long-outage");
    for id in &due {
        let status = &statuses[id];
        assert!(
            status == "sent" || status == "suppressed",
            "message {id} is {status}"
        );
        if status == "sent" {
            assert_eq!(delivered.get(id), Some(&1), "message {id} delivered once");
            assert_eq!(accepted.get(id), Some(&1), "message {id} accepted once");
        }
    }
}

#[test]
fn failed_messages_are_requeued_by_hand_after_the_retry_budget() {
    let provider = Provider::start();
    let clinic = BASE.copy();
    configure(&clinic, &provider, "requeue", "give_up_after = \"30m\"\n");
    tick(&clinic, "requeue");
    let at = |minutes: i64| {
        let t = chrono::DateTime::parse_from_rfc3339(&WHEN).unwrap()
            + chrono::Duration::minutes(minutes);
        t.to_rfc3339()
    };
    provider.set_mode(Mode::Status(500));
    for minutes in (0..=60).step_by(5) {
        dispatch(&clinic, &at(minutes), "outage");
    }
    let failed = clinic.count("SELECT count(*) FROM outreach WHERE status = 'failed'");
    assert!(failed > 0, "the 30 m budget is spent");
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM outreach WHERE status = 'failed' \
             AND last_error NOT LIKE 'gave up after 30m of retries%'"
        ),
        0
    );
    // A filter that matches nothing requeues nothing.
    let none = run(
        &clinic,
        &["requeue", "--since", &at(24 * 60)],
        "requeue nothing",
    );
    assert!(none.contains("requeued 0 failed messages"), "{none}");
    provider.set_mode(Mode::Ok);
    let out = run(
        &clinic,
        &["requeue", "--channel", "sms", "--since", &WHEN],
        "requeue",
    );
    let sms_failed = failed
        - clinic
            .count("SELECT count(*) FROM outreach WHERE status = 'failed' AND channel != 'sms'");
    assert!(sms_failed > 0);
    assert!(
        out.contains(&format!("requeued {sms_failed} failed messages")),
        "{out}"
    );
    // Due now (wall clock): the next round sends them.
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    dispatch(&clinic, &now.to_rfc3339(), "after requeue");
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'failed' AND channel = 'sms'"),
        0
    );
    let delivered = provider.delivered("requeue");
    assert!(!delivered.is_empty());
    assert!(delivered.values().all(|n| *n == 1));
}

/// Queued messages due at `at`.
fn due_ids(clinic: &Clinic, at: &str) -> Vec<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp();
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM outreach WHERE status = 'queued' AND due_at <= ?1")
        .unwrap();
    stmt.query_map([at], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_database_locked_by_another_process_makes_recall_wait_not_fail() {
    let provider = Provider::start();
    let expected = {
        let clinic = BASE.copy();
        configure(&clinic, &provider, "unlocked", "");
        tick(&clinic, "unlocked");
        dispatch(&clinic, &WHEN, "unlocked");
        (clinic.history(), statuses(&clinic))
    };
    let clinic = BASE.copy();
    configure(&clinic, &provider, "locked", "");
    for step in ["tick", "dispatch"] {
        // Another process (this test) holds the write lock for 3 seconds.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let database = clinic.database();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(database).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        let started = Instant::now();
        match step {
            "tick" => tick(&clinic, "locked tick"),
            _ => dispatch(&clinic, &WHEN, "locked dispatch"),
        }
        holder.join().unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{step} finished in {:?}, before the lock was released",
            started.elapsed()
        );
    }
    assert_eq!((clinic.history(), statuses(&clinic)), expected);
    assert!(provider.delivered("locked").values().all(|n| *n == 1));
}

#[test]
fn sigterm_during_a_dispatch_burst_finishes_in_flight_sends_and_keeps_the_rest_queued() {
    let provider = Provider::start();
    provider.set_delay(Duration::from_millis(300));
    let clinic = BASE.copy();
    configure(&clinic, &provider, "sigterm", "");
    // A burst due now: the tick's messages, moved to now (the service
    // dispatches at the wall clock). The tick at WHEN is also the last one,
    // so the service starts without a catch-up tick.
    tick(&clinic, "tick");
    let now = chrono::Utc::now().timestamp() - 60;
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.execute(
        "UPDATE outreach SET due_at = ?1 WHERE status = 'queued' AND due_at <= ?2",
        [
            now,
            chrono::DateTime::parse_from_rfc3339(&WHEN)
                .unwrap()
                .timestamp(),
        ],
    )
    .unwrap();
    drop(conn);
    let now = chrono::Utc::now().to_rfc3339();
    let due = due_ids(&clinic, &now);
    assert!(
        due.len() > 2 * CONCURRENCY,
        "only {} messages are due",
        due.len()
    );

    let mut service = clinic
        .process()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while provider.in_flight() < CONCURRENCY {
        assert!(Instant::now() < deadline, "the service never sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = service.wait().unwrap();
    assert!(exit.success(), "the service did not stop cleanly: {exit}");

    let requests = provider.requests("sigterm");
    assert!(
        requests.iter().all(|r| r.answered),
        "a request in flight was cut off"
    );
    let sent: Vec<i64> = requests.iter().map(|r| r.id).collect();
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let (mut finished, mut queued) = (0, 0);
    for id in &due {
        let (status, attempts): (String, i64) = conn
            .query_row(
                "SELECT status, attempts FROM outreach WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        match status.as_str() {
            // In flight at SIGTERM: finished and recorded.
            "sent" => {
                assert!(sent.contains(id), "message {id} sent without a request");
                finished += 1;
            }
            // Handled without the provider (no consent, no address).
            "suppressed" => assert!(!sent.contains(id)),
            // The rest: back in the queue, the attempt undone.
            "queued" => {
                assert!(
                    !sent.contains(id),
                    "message {id} reached the provider but is queued"
                );
                assert_eq!(attempts, 0, "message {id}");
                queued += 1;
            }
            other => panic!("message {id} is {other} after SIGTERM"),
        }
    }
    assert_eq!(
        finished,
        sent.len(),
        "every request in flight was recorded as sent"
    );
    assert!(
        queued > 0,
        "SIGTERM stopped the burst: the rest stays queued"
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'sending'"),
        0
    );
}

/// Starts `recall run` with a 1 s busy timeout, so "held past the busy
/// timeout" takes seconds, not minutes; returns it and its log lines.
fn service_with_short_busy_timeout(clinic: &Clinic) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = clinic
        .process()
        .arg("run")
        .env("RECALL_BUSY_TIMEOUT", "1s")
        .env("RECALL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for a log line containing `text`, failing if the service exits.
fn wait_for_line(
    service: &mut Child,
    lines: &std::sync::mpsc::Receiver<String>,
    text: &str,
    within: Duration,
    seen: &mut Vec<String>,
) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return;
            }
        }
        if let Some(exit) = service.try_wait().unwrap() {
            panic!(
                "the service exited ({exit}) before logging {text:?}:\n{}",
                seen.join("\n")
            );
        }
    }
    panic!("no log line with {text:?}:\n{}", seen.join("\n"));
}

/// Holds the database's write lock from another connection for `hold`.
fn hold_write_lock(database: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(database).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    holder
}

fn terminate(mut service: Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = service.wait().unwrap();
    assert!(exit.success(), "the service did not stop cleanly: {exit}");
}

#[test]
fn a_database_locked_past_the_busy_timeout_at_start_is_waited_out() {
    let clinic = Clinic::new();
    // The clinic's name changed in recall.toml: starting must write it.
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.execute("UPDATE clinics SET name = 'old name'", [])
        .unwrap();
    drop(conn);
    let holder = hold_write_lock(clinic.database(), Duration::from_secs(5));
    let (mut service, lines) = service_with_short_busy_timeout(&clinic);
    let mut seen = Vec::new();
    wait_for_line(
        &mut service,
        &lines,
        "another process holds the database",
        Duration::from_secs(20),
        &mut seen,
    );
    holder.join().unwrap();
    wait_for_line(
        &mut service,
        &lines,
        "recall is running",
        Duration::from_secs(30),
        &mut seen,
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM clinics WHERE name = '测试诊所'"),
        1,
        "the service went on and wrote the clinic's name"
    );
    terminate(service);
}

#[test]
fn a_tick_that_fails_on_a_locked_database_is_retried_not_left_for_the_next_slot() {
    // No tick yet: the service ticks at start. Its next slot is half a day
    // away, so the one tick this test counts is that one.
    let clinic = Clinic::new();
    clinic.tick_daily_half_a_day_away();
    // Settles the clinic's row, so starting needs no write.
    run(&clinic, &["status"], "status");
    let holder = hold_write_lock(clinic.database(), Duration::from_secs(6));
    let (mut service, lines) = service_with_short_busy_timeout(&clinic);
    let mut seen = Vec::new();
    wait_for_line(
        &mut service,
        &lines,
        "tick failed; trying again",
        Duration::from_secs(20),
        &mut seen,
    );
    holder.join().unwrap();
    wait_for_line(
        &mut service,
        &lines,
        "tick done",
        Duration::from_secs(40),
        &mut seen,
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM ticks WHERE finished_at IS NOT NULL"),
        1
    );
    terminate(service);
}

#[test]
fn a_dispatch_round_whose_outcomes_cannot_be_committed_gives_its_messages_back() {
    let provider = Provider::start();
    provider.set_delay(Duration::from_millis(300));
    let clinic = BASE.copy();
    configure(&clinic, &provider, "commit-fails", "");
    tick(&clinic, "tick");
    // Due now: the service dispatches at the wall clock.
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    conn.execute(
        "UPDATE outreach SET due_at = ?1 WHERE status = 'queued' AND due_at <= ?2",
        [
            chrono::Utc::now().timestamp() - 60,
            chrono::DateTime::parse_from_rfc3339(&WHEN)
                .unwrap()
                .timestamp(),
        ],
    )
    .unwrap();
    drop(conn);
    let due = due_ids(&clinic, &chrono::Utc::now().to_rfc3339());
    assert!(due.len() > 2 * CONCURRENCY);

    let (mut service, lines) = service_with_short_busy_timeout(&clinic);
    let deadline = Instant::now() + Duration::from_secs(30);
    while provider.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the service never sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Sends are in flight: their outcomes cannot be committed for 10 s,
    // longer than the round's tries to commit them.
    let holder = hold_write_lock(clinic.database(), Duration::from_secs(10));
    let mut seen = Vec::new();
    wait_for_line(
        &mut service,
        &lines,
        "dispatch round failed",
        Duration::from_secs(30),
        &mut seen,
    );
    holder.join().unwrap();
    // The service goes on and sends the rest, the round's messages too.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let open = clinic.count(&format!(
            "SELECT count(*) FROM outreach WHERE status IN ('queued', 'sending') AND id IN ({})",
            due.iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} messages still queued or sending: {:?}",
            clinic.count("SELECT count(*) FROM outreach WHERE status = 'sending'")
        );
        assert!(service.try_wait().unwrap().is_none(), "the service exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(service);
    let statuses = statuses(&clinic);
    let delivered = provider.delivered("commit-fails");
    let accepted = provider.accepted("commit-fails");
    for id in &due {
        let status = &statuses[id];
        assert!(
            status == "sent" || status == "suppressed",
            "message {id} is {status}"
        );
        if status == "sent" {
            assert_eq!(delivered.get(id), Some(&1), "message {id}");
        }
    }
    let twice = accepted.values().filter(|n| **n > 1).count();
    assert!(
        twice <= CONCURRENCY,
        "{twice} messages were sent twice; the bound is {CONCURRENCY}"
    );
}
