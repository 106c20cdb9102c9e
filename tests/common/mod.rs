//! Helpers shared by the integration tests: a scaffolded clinic folder in a
//! temp dir, the real binary, and a few queries on the real database.

#![allow(dead_code)]

pub mod provider;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use chrono::{DateTime, Utc};
use recall::cli::InitArgs;
use recall::daemon::Loaded;

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

pub fn recall_in(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("recall").unwrap();
    cmd.current_dir(dir)
        .env_remove("RECALL_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

pub fn at(text: &str) -> DateTime<Utc> {
    recall::clock::parse_time(text, chrono_tz::Asia::Shanghai).unwrap()
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
