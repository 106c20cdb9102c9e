//! Helpers shared by the integration tests: a scaffolded clinic folder in a
//! temp dir, the real binary, and a few queries on the real database.

#![allow(dead_code)]

pub mod provider;
pub mod wechat;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assert_cmd::Command;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use recall::cli::InitArgs;
use recall::setup::Loaded;

/// A clinic folder made by `recall init`, removed when dropped.
pub struct Clinic {
    pub dir: tempfile::TempDir,
}

impl Clinic {
    /// `recall init` without demo data (through the library).
    pub fn new() -> Clinic {
        let dir = tempfile::tempdir().unwrap();
        recall::cli::init(&InitArgs {
            dir: dir.path().to_path_buf(),
            demo: false,
            customers: 0,
            name: "测试诊所".into(),
            seed: 1,
        })
        .unwrap();
        Clinic { dir }
    }

    /// `recall init --demo` through the real binary.
    pub fn demo(customers: usize) -> Clinic {
        let dir = tempfile::tempdir().unwrap();
        recall_in(dir.path())
            .args(["init", ".", "--demo", "--customers", &customers.to_string()])
            .assert()
            .success();
        Clinic { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("recall.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.path().join("data/recall.db")
    }

    /// The real binary, run in the clinic's folder.
    pub fn recall(&self) -> Command {
        recall_in(self.path())
    }

    /// The real binary as a plain process, for tests that signal or kill it.
    pub fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("recall"));
        cmd.current_dir(self.path())
            .env_remove("RECALL_CONFIG")
            .env("NO_COLOR", "1")
            .env("RECALL_LANG", "en");
        cmd
    }

    /// `recall check --lang LANG`: its exit code and all it printed.
    pub fn check(&self, lang: &str) -> (i32, String) {
        let out = self
            .recall()
            .args(["check", "--lang", lang])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn load(&self) -> Loaded {
        match Loaded::load(&self.config()) {
            Ok((loaded, _)) => loaded,
            Err(report) => panic!("{report}"),
        }
    }

    /// Runs a SQL query with one integer result on the clinic's database.
    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Every move and message, in a comparable form (ids and wall times left out).
    pub fn history(&self) -> (Vec<String>, Vec<String>) {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        let moves = conn
            .prepare(
                "SELECT customer_id || ' ' || coalesce(from_pool, '-') || '>' || to_pool || ' ' || coalesce(rule_id, '-') || ' ' || at
                 FROM transitions ORDER BY customer_id, at, id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        let messages = conn
            .prepare(
                "SELECT customer_id || ' ' || rule_id || ' ' || action_index || ' ' || channel || ' ' || created_at || ' ' || content
                 FROM outreach ORDER BY customer_id, created_at, rule_id, action_index",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        (moves, messages)
    }
}

/// What makes a test independent of the hour it runs at. `recall run` (and
/// `dispatch` without `--at`) works at the wall clock, while the shipped
/// recall.toml keeps messages back in quiet hours at night in the clinic's
/// zone (Asia/Shanghai) and ticks daily at 09:00 there: a test that relies
/// on the wall clock removes the one and moves the other, or passes `--at`.
impl Clinic {
    /// Replaces `from` with `to` in recall.toml; panics if `from` is not there,
    /// so that a change to the shipped config cannot quietly undo the edit.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "no {from:?} in recall.toml:\n{text}");
        std::fs::write(self.config(), text.replace(from, to)).unwrap();
    }

    /// Takes the quiet hours off every channel, so that what the service
    /// sends at the wall clock goes out at any hour, not only by day.
    pub fn without_quiet_hours(&self) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("quiet_hours"))
            .collect();
        assert!(
            kept.len() < text.lines().count(),
            "no quiet_hours in recall.toml:\n{text}"
        );
        std::fs::write(self.config(), kept.join("\n") + "\n").unwrap();
    }

    /// Moves the shipped daily tick (09:00) to [`daily_slot_half_a_day_away`].
    pub fn tick_daily_half_a_day_away(&self) {
        self.edit_config(
            "ticks = [\"0 9 * * *\"]",
            &format!("ticks = [\"{}\"]", daily_slot_half_a_day_away()),
        );
    }

    /// The clinic's date when `recall init --demo` made this clinic (not the
    /// wall clock's date, which may have moved on since): the demo's replayed
    /// ticks end at 09:00 two days before it.
    pub fn demo_today(&self) -> NaiveDate {
        let last = self.count("SELECT max(at) FROM ticks");
        DateTime::from_timestamp(last, 0)
            .unwrap()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .date_naive()
            + chrono::Duration::days(2)
    }
}

/// A daily cron slot at the clinic time 12 hours from now (to the minute).
/// Its latest slot is half a day old, newer than a demo's last tick (two days
/// old), so a service started on a demo catches up; its next is half a day
/// away, so no scheduled tick fires during a test, at whatever hour it runs.
pub fn daily_slot_half_a_day_away() -> String {
    let slot = (Utc::now() + chrono::Duration::hours(12)).with_timezone(&chrono_tz::Asia::Shanghai);
    format!("{} {} * * *", slot.minute(), slot.hour())
}

/// An `--at` for `tick` and `dispatch`: 14:00 clinic time, `days` days from
/// the clinic's today, when no channel of the shipped config is in its quiet
/// hours (the last of them ends at 10:00, the first begins at 20:00).
pub fn daytime_in_days(days: i64) -> String {
    let date = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        + chrono::Duration::days(days);
    format!("{date} 14:00")
}

pub fn recall_in(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("recall").unwrap();
    cmd.current_dir(dir)
        .env_remove("RECALL_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

pub fn at(text: &str) -> DateTime<Utc> {
    recall::base::clock::parse_time(
        text,
        chrono_tz::Asia::Shanghai,
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap()
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Clinic {
    /// A copy of this clinic's folder (config, rules, templates, database).
    pub fn copy(&self) -> Clinic {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(self.path(), dir.path());
        Clinic { dir }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A server on 127.0.0.1 for the test providers: a thread per connection,
/// each handed to `serve`. Returns the port.
pub fn listen(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// One HTTP/1.1 request as it arrived.
pub struct RawRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The next request on a keep-alive connection (bodies by content-length),
/// or `None` once the client has closed it.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(RawRequest {
        method,
        target,
        headers,
        body,
    })
}
