//! `recall run` and `recall demo` as a service manager runs them: a catch-up
//! tick at start, dispatch right after, a clean exit on SIGTERM or SIGINT,
//! and no second catch-up when no scheduled slot was missed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Clinic;

/// A running service whose log lines arrive on a channel.
struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Service {
    fn start(cmd: &mut std::process::Command) -> Service {
        let mut child = cmd
            .env("RECALL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Service {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`; panics with everything seen on timeout.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let found = line.contains(text);
                self.seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!(
            "no line with {text:?} within 90 s; saw:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit and returns whether it succeeded, draining the output.
    fn finish(mut self) -> (bool, Vec<String>) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.success(), self.seen)
    }
}

/// Dispatch every second, so the test sees it soon. The schedule stays
/// daily: the demo's last tick is two days old, so a catch-up is due.
fn quick_dispatch(clinic: &Clinic) {
    let config = clinic.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("dispatch_every = \"30s\"", "dispatch_every = \"1s\"");
    std::fs::write(config, text).unwrap();
}

#[test]
fn run_catches_up_dispatches_and_stops_cleanly_on_sigterm() {
    let clinic = Clinic::demo(100);
    quick_dispatch(&clinic);
    // The service works at the wall clock: the catch-up tick's messages go
    // out at any hour the test runs, and no scheduled tick (09:00 in the
    // shipped config) comes between the ticks this test counts.
    clinic.without_quiet_hours();
    clinic.tick_daily_half_a_day_away();
    let ticks_before = clinic.count("SELECT count(*) FROM ticks");

    let mut service = Service::start(clinic.process().arg("run"));
    service.wait_for("recall is running");
    // A second service on the same database refuses to start.
    let second = clinic.process().arg("run").output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    service.wait_for("catch-up tick");
    service.wait_for("tick done");
    service.wait_for("dispatched");
    service.signal("TERM");
    let (ok, seen) = service.finish();
    assert!(ok, "exit status; output:\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("stopped cleanly")),
        "{}",
        seen.join("\n")
    );

    assert_eq!(clinic.count("SELECT count(*) FROM ticks"), ticks_before + 1);
    assert_eq!(
        clinic.count("SELECT count(*) FROM ticks WHERE status <> 'done'"),
        0
    );
    let last_tick: i64 = clinic.count("SELECT max(at) FROM ticks");
    let sent_now = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE created_at = {last_tick} AND status IN ('sent', 'suppressed')"
    ));
    assert!(
        sent_now > 0,
        "messages of the catch-up tick that were due went out"
    );
    // Nothing is left half-sent.
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'sending'"),
        0
    );

    // A restart with no missed slot does not tick again.
    let mut again = Service::start(clinic.process().arg("run"));
    again.wait_for("next scheduled tick");
    again.signal("INT");
    let (ok, seen) = again.finish();
    assert!(ok, "{}", seen.join("\n"));
    assert!(
        !seen.iter().any(|l| l.contains("catch-up tick")),
        "{}",
        seen.join("\n")
    );
    assert_eq!(clinic.count("SELECT count(*) FROM ticks"), ticks_before + 1);
}

#[test]
fn run_refuses_to_start_on_broken_rules() {
    let clinic = Clinic::new();
    let rules = clinic.path().join("rules/01-new.toml");
    let text = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("from = \"new\"", "from = \"neww\"");
    std::fs::write(&rules, text).unwrap();
    let out = clinic.process().arg("run").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown pool `neww`") && stderr.contains("did you mean `new`?"),
        "{stderr}"
    );
}

#[test]
fn demo_runs_the_service_and_stops_on_ctrl_c() {
    let clinic = Clinic::demo(60);
    quick_dispatch(&clinic);
    let mut cmd = clinic.process();
    cmd.args(["demo", "."]);
    let mut service = Service::start(&mut cmd);
    service.wait_for("running the service on");
    service.wait_for("tick done");
    service.wait_for("rule fired");
    service.signal("INT");
    let (ok, seen) = service.finish();
    assert!(ok, "{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("stopped cleanly")),
        "{}",
        seen.join("\n")
    );
}

#[test]
fn a_broken_edit_keeps_the_running_rules_and_a_good_one_applies() {
    let clinic = Clinic::demo(60);
    // Tick every 2 seconds so the test sees ticks before and after each edit.
    let config = clinic.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ticks = [\"0 9 * * *\"]", "ticks = [\"*/2 * * * * *\"]");
    std::fs::write(&config, text).unwrap();

    let mut service = Service::start(clinic.process().arg("run"));
    service.wait_for("recall is running");
    service.wait_for("tick done");

    // A typo in a rule: the service says what is wrong and keeps going.
    let rules = clinic.path().join("rules/02-customer.toml");
    let good = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(
        &rules,
        good.replace("days_since_last_visit >= 90", "days_since_last_vist >= 90"),
    )
    .unwrap();
    service.wait_for("unknown fact `days_since_last_vist`");
    service.wait_for("the rules that were running keep running");
    let ticks = clinic.count("SELECT count(*) FROM ticks");
    service.wait_for("tick done");
    assert!(
        clinic.count("SELECT count(*) FROM ticks") > ticks,
        "ticks go on with the old rules"
    );

    // A good edit: applies, with a summary.
    let edited = good.replace(
        "description = \"60天未到院：微信问候并提醒保养周期（每60天最多一次）\"",
        "description = \"60天未到院：微信问候\"",
    ) + "\n[[rule]]\nid = \"vip_care\"\nfrom = \"customer\"\npriority = 5\nwhen = '\"vip\" in tags && days_since_last_visit >= 30'\ncooldown_days = 30\n[[rule.action]]\nchannel = \"wechat\"\ntemplate = \"customer_checkin\"\n";
    std::fs::write(&rules, edited).unwrap();
    service.wait_for("reloaded: the new rules apply from the next tick");
    assert!(
        service
            .seen
            .iter()
            .any(|l| l.contains("rule `vip_care` added")),
        "{}",
        service.seen.join("\n")
    );
    service.wait_for("tick done");

    // `recall reload` asks the running service (SIGHUP).
    clinic
        .recall()
        .arg("reload")
        .assert()
        .success()
        .stdout(predicates::str::contains("asked the service"));
    service.wait_for("reloaded: nothing changed");

    service.signal("TERM");
    let (ok, seen) = service.finish();
    assert!(ok, "{}", seen.join("\n"));
}

#[test]
fn reload_without_a_service_says_so() {
    let clinic = Clinic::new();
    clinic
        .recall()
        .arg("reload")
        .assert()
        .failure()
        .stderr(predicates::str::contains("no recall service is running"));
}

/// Every channel's quiet hours: `Some(window)` or none at all.
fn set_quiet_hours(clinic: &Clinic, window: Option<&str>) {
    let text = std::fs::read_to_string(clinic.config()).unwrap();
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let bare = line.trim_start().trim_start_matches('#');
            if !bare.starts_with("quiet_hours") {
                return line.to_string();
            }
            found += 1;
            match window {
                Some(w) => format!("quiet_hours = \"{w}\""),
                None => "#quiet_hours = \"off\"".to_string(),
            }
        })
        .collect();
    assert!(found >= 3, "no quiet_hours in recall.toml:\n{text}");
    std::fs::write(clinic.config(), lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_reload_of_quiet_hours_applies_to_the_next_round_both_ways() {
    use chrono::{Duration as Days, Utc};
    let clinic = Clinic::demo(100);
    // Rounds 8 s apart, so a reload lands while the dispatcher waits; no
    // catch-up tick (the yearly slot is older than the demo's last tick).
    clinic.edit_config("dispatch_every = \"30s\"", "dispatch_every = \"8s\"");
    clinic.edit_config("ticks = [\"0 9 * * *\"]", "ticks = [\"0 0 1 1 *\"]");
    set_quiet_hours(&clinic, None);
    let mut service = Service::start(clinic.process().arg("run"));
    service.wait_for("recall is running");

    // Quiet hours from now on, reloaded while the dispatcher waits: the
    // messages a tick queues next are held by them in the next round.
    let local = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let window = format!(
        "{}-{}",
        (local - Days::hours(1)).format("%H:%M"),
        (local + Days::hours(3)).format("%H:%M")
    );
    set_quiet_hours(&clinic, Some(&window));
    clinic.recall().arg("reload").assert().success();
    service.wait_for("reloaded:");
    clinic.recall().arg("tick").assert().success();
    let tick: i64 = clinic.count("SELECT max(at) FROM ticks");
    let of_tick = |status: &str| {
        clinic.count(&format!(
            "SELECT count(*) FROM outreach WHERE created_at = {tick} AND status IN ({status})"
        ))
    };
    assert!(of_tick("'queued'") > 0, "the tick queued messages");
    service.wait_for("dispatched");
    assert_eq!(
        of_tick("'sent', 'awaiting'"),
        0,
        "quiet hours reloaded before the round hold everything: {}",
        service.seen.join("\n")
    );
    let held = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE created_at = {tick} AND held = 1 AND status = 'queued'"
    ));
    assert!(held > 0, "held until the window ends");

    // Quiet hours taken off again: what they held goes out in the next
    // round, not at the old window's end hours from now.
    set_quiet_hours(&clinic, None);
    clinic.recall().arg("reload").assert().success();
    service.wait_for("reloaded:");
    service.wait_for("judged again");
    service.wait_for("dispatched");
    assert_eq!(
        clinic.count(&format!(
            "SELECT count(*) FROM outreach WHERE created_at = {tick} AND held = 1 AND status = 'queued'"
        )),
        0,
        "{}",
        service.seen.join("\n")
    );
    assert!(
        of_tick("'sent', 'awaiting'") > 0,
        "{}",
        service.seen.join("\n")
    );
    service.signal("TERM");
    let (ok, seen) = service.finish();
    assert!(ok, "{}", seen.join("\n"));
}
