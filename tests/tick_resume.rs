//! A tick interrupted anywhere and run again ends exactly where an
//! uninterrupted tick ends: no move or message lost, none doubled.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::{Clinic, at};
use recall::base::clock::Clock;
use recall::engine::{self, Engine, TickEnd, TickOptions};
use recall::store::Store;

const WHEN: &str = "2099-01-01 09:00";

fn tick(clinic: &Clinic, stop: Option<&AtomicBool>) -> engine::TickReport {
    tick_on(clinic, stop, Clock::Fixed(at(WHEN)))
}

/// A tick at [`WHEN`] whose start and finish are stamped by `clock`.
fn tick_on(clinic: &Clinic, stop: Option<&AtomicBool>, clock: Clock) -> engine::TickReport {
    let loaded = clinic.load();
    let mut store = Store::open(&clinic.database()).unwrap();
    let clinic_id = store
        .ensure_clinic("main", "测试诊所", "Asia/Shanghai", 0)
        .unwrap();
    let engine = Engine::new(
        &loaded.config.clinic,
        clinic_id,
        &loaded.rules,
        &loaded.templates,
    );
    let options = TickOptions {
        stop,
        batch_size: 25,
        clock,
        ..TickOptions::at(at(WHEN))
    };
    engine::tick(&mut store, &engine, options).unwrap()
}

#[test]
fn a_stopped_tick_resumes_after_its_cursor() {
    let base = Clinic::demo(200);
    let reference = base.copy();
    let done = tick(&reference, None);
    assert_eq!(done.end, TickEnd::Done);
    assert!(
        done.moves > 0 && done.messages > 0,
        "the test needs a tick that does something"
    );

    let interrupted = base.copy();
    let stop = AtomicBool::new(true);
    let first = tick(&interrupted, Some(&stop));
    assert_eq!(first.end, TickEnd::Stopped);
    assert!(
        first.evaluated > 0 && first.evaluated < 200,
        "stopped after one batch: {}",
        first.evaluated
    );

    let second = tick(&interrupted, None);
    assert_eq!(second.end, TickEnd::Done);
    assert!(second.resumed_after.is_some());
    assert_eq!(
        second.evaluated, 200,
        "each customer judged exactly once over both runs"
    );
    assert_eq!(interrupted.history(), reference.history());

    let again = tick(&interrupted, None);
    assert_eq!(again.end, TickEnd::AlreadyDone);
    assert_eq!(interrupted.history(), reference.history());
}

#[test]
fn a_resumed_tick_keeps_its_start_and_is_finished_by_the_resuming_clock() {
    let clinic = Clinic::demo(100);
    let (first_run, second_run) = (at("2026-05-01 09:00:07"), at("2026-05-02 10:30:00"));
    let stop = AtomicBool::new(true);
    let stopped = tick_on(&clinic, Some(&stop), Clock::Fixed(first_run));
    assert_eq!(stopped.end, TickEnd::Stopped);
    let store = Store::open(&clinic.database()).unwrap();
    let row = store.last_tick().unwrap().unwrap();
    assert_eq!(
        (row.at, row.started_at),
        (at(WHEN).timestamp(), first_run.timestamp())
    );
    assert_eq!(row.finished_at, None);

    let done = tick_on(&clinic, None, Clock::Fixed(second_run));
    assert_eq!(done.end, TickEnd::Done);
    let row = store.last_tick().unwrap().unwrap();
    assert_eq!(row.started_at, first_run.timestamp(), "the start is kept");
    assert_eq!(row.finished_at, Some(second_run.timestamp()));
}

#[test]
fn a_tick_killed_at_any_point_and_rerun_matches_an_uninterrupted_one() {
    let base = Clinic::demo(400);
    // The churn model is fitted first, so the kills land in the tick, not
    // in the refit that a tick after a refit slot starts with.
    base.recall()
        .args(["model", "fit", "--at", WHEN])
        .assert()
        .success();
    let reference = base.copy();
    reference
        .recall()
        .args(["tick", "--at", WHEN, "--batch-size", "10"])
        .assert()
        .success();
    let expected = reference.history();

    let mut interrupted_mid_tick = 0;
    // Fixed delays land anywhere (before the tick, in it, after it); the
    // last runs kill as soon as the tick has committed a batch, so at least
    // one kill lands mid-tick however fast or slow the machine is.
    let kills = [0u64, 15, 40, 80, 150, 300]
        .map(Kill::After)
        .into_iter()
        .chain([Kill::MidTick, Kill::MidTick]);
    for (i, kill) in kills.enumerate() {
        let clinic = base.copy();
        let mut child = clinic
            .process()
            .args(["tick", "--at", WHEN, "--batch-size", "10"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match kill {
            Kill::After(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Kill::MidTick => {
                let watch = rusqlite::Connection::open(clinic.database()).unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while std::time::Instant::now() < deadline {
                    let moved: i64 = watch
                        .query_row(
                            "SELECT count(*) FROM ticks WHERE status = 'running' AND cursor > 0",
                            [],
                            |r| r.get(0),
                        )
                        .unwrap_or(0);
                    if moved > 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        if clinic.count("SELECT count(*) FROM ticks WHERE status = 'running' AND cursor > 0") > 0 {
            interrupted_mid_tick += 1;
        }
        let rerun = clinic
            .recall()
            .args(["tick", "--at", WHEN, "--batch-size", "10"])
            .output()
            .unwrap();
        assert!(
            rerun.status.success(),
            "iteration {i}: {}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        assert_eq!(
            clinic.history(),
            expected,
            "iteration {i} (killed {kill:?})"
        );
        assert_eq!(
            clinic.count("SELECT count(*) FROM ticks WHERE status <> 'done'"),
            0
        );
    }
    assert!(
        interrupted_mid_tick > 0,
        "no kill landed in the middle of a tick; adjust the delays"
    );
}

/// When a test kills the tick.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This many milliseconds after it started.
    After(u64),
    /// As soon as it has committed a batch.
    MidTick,
}
