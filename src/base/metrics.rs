//! Process metrics for `GET /metrics`: counters the tick worker and the
//! dispatcher bump as they go, and the Prometheus text rendering.
//!
//! One registry per process ([`global`]); counters start at zero when the
//! service starts, as Prometheus expects. Numbers that live in the database
//! (messages by channel and status, the queue) are read at scrape time by
//! the HTTP endpoint and passed to [`Metrics::render`]. Nothing here holds a
//! customer's data: labels are rule ids, channels, sender names, statuses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the provider latency histogram's buckets.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram of one sender.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Count per bucket (not cumulative); the last is +Inf.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        let index = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    ticks: AtomicU64,
    tick_failures: AtomicU64,
    /// The clinic time the last finished tick judged at (Unix seconds).
    last_tick_at: AtomicI64,
    /// When the last tick finished (Unix seconds, wall clock).
    last_tick_finished: AtomicI64,
    last_tick_millis: AtomicU64,
    /// When the dispatcher last completed a pass (Unix seconds, wall clock).
    last_dispatch: AtomicI64,
    dispatch_failures: AtomicU64,
    commits: AtomicU64,
    committed: AtomicU64,
    moves: Mutex<BTreeMap<String, u64>>,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

/// The registry of this process.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::default)
}

/// What the database says at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (channel, status, count) over the whole outreach table.
    pub messages: Vec<(String, String, i64)>,
    /// Queued messages due now.
    pub due_now: i64,
    /// Customers per pool.
    pub pools: Vec<(String, i64)>,
}

impl Metrics {
    /// A tick finished: `at` is the time it judged at, `moves_by_rule` its moves.
    pub fn tick_done<'a>(
        &self,
        at: i64,
        finished: i64,
        took: Duration,
        moves_by_rule: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.last_tick_at.store(at, Ordering::Relaxed);
        self.last_tick_finished.store(finished, Ordering::Relaxed);
        self.last_tick_millis
            .store(took.as_millis() as u64, Ordering::Relaxed);
        self.tick_moves(moves_by_rule);
    }

    /// The last tick a previous run of the service finished, read from the
    /// database at start: a restart shows it, not 0, until the next tick.
    /// Counters stay at zero: they count what this process did.
    pub fn seed_last_tick(&self, at: i64, finished: i64, took: Duration) {
        if self.last_tick_at.load(Ordering::Relaxed) == 0 {
            self.last_tick_at.store(at, Ordering::Relaxed);
            self.last_tick_finished.store(finished, Ordering::Relaxed);
            self.last_tick_millis
                .store(took.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Moves of a tick that did not finish (it stopped, was already done,
    /// or was a dry run): they count, the tick does not.
    pub fn tick_moves<'a>(&self, moves_by_rule: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut counted = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        for (rule, n) in moves_by_rule {
            if n > 0 {
                *counted.entry(rule.to_string()).or_default() += n;
            }
        }
    }

    pub fn tick_failed(&self) {
        self.tick_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The dispatcher finished a pass (even one with nothing to send).
    pub fn dispatch_pass(&self, finished: i64, ok: bool) {
        if ok {
            self.last_dispatch.store(finished, Ordering::Relaxed);
        } else {
            self.dispatch_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One committed outcome of a dispatch round.
    pub fn dispatched(&self, outcome: &'static str) {
        *self
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// A group of outcomes was committed in one transaction.
    pub fn group_committed(&self, size: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed.fetch_add(size as u64, Ordering::Relaxed);
    }

    /// How long a sender took to answer one message.
    pub fn send_latency(&self, sender: &str, took: Duration) {
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        match latency.get_mut(sender) {
            Some(h) => h.observe(took.as_secs_f64()),
            None => {
                let mut h = Histogram::default();
                h.observe(took.as_secs_f64());
                latency.insert(sender.to_string(), h);
            }
        }
    }

    /// When the last tick finished and the last dispatch pass completed
    /// (wall-clock Unix seconds; 0 for never).
    pub fn last_activity(&self) -> (i64, i64) {
        (
            self.last_tick_finished.load(Ordering::Relaxed),
            self.last_dispatch.load(Ordering::Relaxed),
        )
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, db: &Snapshot) -> String {
        let mut w = Writer::default();
        self.render_ticks(&mut w);
        self.render_dispatch(&mut w);
        self.render_latency(&mut w);
        render_database(&mut w, db);
        w.out
    }

    /// Ticks: how many, how many failed, the last one, moves by rule.
    fn render_ticks(&self, w: &mut Writer) {
        w.scalar(
            "recall_ticks_total",
            "counter",
            "Ticks finished since the service started.",
            self.ticks.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_tick_failures_total",
            "counter",
            "Ticks that failed (they resume at the next trigger).",
            self.tick_failures.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_last_tick_timestamp_seconds",
            "gauge",
            "The time the last finished tick judged at (0: none yet).",
            self.last_tick_at.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_last_tick_duration_seconds",
            "gauge",
            "How long the last finished tick took.",
            self.last_tick_millis.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        w.family(
            "recall_moves_total",
            "counter",
            "Pool moves written by ticks since the service started, by rule.",
        );
        for (rule, n) in self.moves.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            w.value("recall_moves_total", &[("rule", rule)], *n as f64);
        }
    }

    /// Dispatch: outcomes, failed passes, the last pass, group commits.
    fn render_dispatch(&self, w: &mut Writer) {
        w.family(
            "recall_dispatch_outcomes_total",
            "counter",
            "Outcomes the dispatcher committed since the service started.",
        );
        for (outcome, n) in self
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            w.value(
                "recall_dispatch_outcomes_total",
                &[("outcome", outcome)],
                *n as f64,
            );
        }
        w.scalar(
            "recall_dispatch_failures_total",
            "counter",
            "Dispatch passes that failed (database errors).",
            self.dispatch_failures.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_last_dispatch_timestamp_seconds",
            "gauge",
            "When the dispatcher last completed a pass.",
            self.last_dispatch.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_outcome_commits_total",
            "counter",
            "Transactions that wrote dispatch outcomes (group commits).",
            self.commits.load(Ordering::Relaxed) as f64,
        );
        w.scalar(
            "recall_outcomes_committed_total",
            "counter",
            "Dispatch outcomes written by those transactions.",
            self.committed.load(Ordering::Relaxed) as f64,
        );
    }

    /// The providers' latency histograms, by sender.
    fn render_latency(&self, w: &mut Writer) {
        w.family(
            "recall_provider_latency_seconds",
            "histogram",
            "How long each sender's provider took to answer one message.",
        );
        for (sender, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let mut cumulative = 0;
            for (i, count) in h.buckets.iter().enumerate() {
                cumulative += count;
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map_or("+Inf".to_string(), |b| b.to_string());
                w.value(
                    "recall_provider_latency_seconds_bucket",
                    &[("sender", sender), ("le", &le)],
                    cumulative as f64,
                );
            }
            w.value(
                "recall_provider_latency_seconds_sum",
                &[("sender", sender)],
                h.sum,
            );
            w.value(
                "recall_provider_latency_seconds_count",
                &[("sender", sender)],
                h.count as f64,
            );
        }
    }
}

/// What the database said at scrape time: messages, the queue, the pools.
fn render_database(w: &mut Writer, db: &Snapshot) {
    w.family(
        "recall_messages",
        "gauge",
        "Messages in the outreach table, by channel and status.",
    );
    for (channel, status, n) in &db.messages {
        w.value(
            "recall_messages",
            &[("channel", channel), ("status", status)],
            *n as f64,
        );
    }
    w.scalar(
        "recall_queue_due",
        "gauge",
        "Queued messages that are due now.",
        db.due_now as f64,
    );
    w.family("recall_pool_customers", "gauge", "Customers per pool.");
    for (pool, n) in &db.pools {
        w.value("recall_pool_customers", &[("pool", pool)], *n as f64);
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    /// A family with one unlabelled value.
    fn scalar(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.value(name, &[], value);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_cumulative_buckets() {
        let m = Metrics::default();
        m.send_latency("gateway", Duration::from_millis(3));
        m.send_latency("gateway", Duration::from_millis(300));
        m.dispatched("sent");
        m.tick_done(
            100,
            200,
            Duration::from_millis(1500),
            [("r1", 2u64), ("r2", 0)],
        );
        let text = m.render(&Snapshot {
            messages: vec![("sms".into(), "sent".into(), 7)],
            due_now: 3,
            pools: vec![("new".into(), 5)],
        });
        assert!(text.contains("recall_ticks_total 1\n"), "{text}");
        assert!(
            text.contains("recall_moves_total{rule=\"r1\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("rule=\"r2\""), "{text}");
        assert!(
            text.contains("recall_last_tick_duration_seconds 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "recall_provider_latency_seconds_bucket{sender=\"gateway\",le=\"0.005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "recall_provider_latency_seconds_bucket{sender=\"gateway\",le=\"0.5\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "recall_provider_latency_seconds_bucket{sender=\"gateway\",le=\"+Inf\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("recall_provider_latency_seconds_count{sender=\"gateway\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("recall_messages{channel=\"sms\",status=\"sent\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("recall_queue_due 3\n"), "{text}");
        assert!(
            text.contains("# TYPE recall_provider_latency_seconds histogram\n"),
            "{text}"
        );
    }
}
