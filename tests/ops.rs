//! Operations through the real binary: backup while the service runs,
//! retention pruning, health and Prometheus metrics scraped over HTTP,
//! a customer's data export and erasure, and logs free of personal data.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Clinic, stdout};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn append_config(clinic: &Clinic, text: &str) {
    let mut config = std::fs::read_to_string(clinic.config()).unwrap();
    config = config.replace("dispatch_every = \"30s\"", "dispatch_every = \"1s\"");
    config.push_str(text);
    std::fs::write(clinic.config(), config).unwrap();
}

/// Starts `recall run`; returns the child and a receiver of its log lines.
fn service(clinic: &Clinic) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = clinic
        .process()
        .arg("run")
        .env("RECALL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for(lines: &std::sync::mpsc::Receiver<String>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200))
            && line.contains(text)
        {
            return;
        }
    }
    panic!("no log line with {text:?}");
}

fn stop(mut child: std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let answer = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

#[test]
fn the_service_serves_health_and_metrics_that_a_scraper_reads() {
    let clinic = Clinic::demo(80);
    let port = free_port();
    append_config(
        &clinic,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // The service works at the wall clock: it sends (and times the provider)
    // at any hour the test runs, and ticks once, not again at a scheduled slot.
    clinic.without_quiet_hours();
    clinic.tick_daily_half_a_day_away();
    let (child, lines) = service(&clinic);
    wait_for(&lines, "tick done");
    wait_for(&lines, "dispatched");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, metrics) = runtime.block_on(get(port, "/metrics"));
    assert_eq!(status, 200, "{metrics}");
    for expected in [
        "# TYPE recall_ticks_total counter",
        "recall_ticks_total 1\n",
        "recall_last_tick_duration_seconds ",
        "# TYPE recall_moves_total counter",
        "recall_messages{channel=\"sms\",status=\"sent\"} ",
        "recall_queue_due ",
        "recall_provider_latency_seconds_bucket{sender=\"log\",le=\"+Inf\"} ",
        "recall_dispatch_outcomes_total{outcome=\"sent\"} ",
        "recall_pool_customers{pool=\"churned\"} ",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }
    let (status, health) = runtime.block_on(get(port, "/healthz"));
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(runtime.block_on(get(port, "/nope")).0, 404);
    stop(child);

    // After a restart, before any tick: the last tick is the one the
    // database knows, as /healthz says, not 0.
    let last_tick = clinic.count("SELECT max(at) FROM ticks WHERE status = 'done'");
    let (child, lines) = service(&clinic);
    wait_for(&lines, "next scheduled tick");
    let (_, metrics) = runtime.block_on(get(port, "/metrics"));
    assert!(
        metrics.contains(&format!("recall_last_tick_timestamp_seconds {last_tick}\n")),
        "{last_tick} in\n{metrics}"
    );
    assert!(metrics.contains("recall_ticks_total 0\n"), "{metrics}");
    stop(child);
}

#[test]
fn backup_copies_a_running_database_privately_and_never_overwrites_by_accident() {
    let clinic = Clinic::demo(60);
    append_config(&clinic, "");
    let (child, lines) = service(&clinic);
    wait_for(&lines, "recall is running");
    let target = clinic.path().join("backup.db");
    let out = clinic
        .recall()
        .args(["backup", target.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let again = clinic
        .recall()
        .args(["backup", target.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    clinic
        .recall()
        .args(["backup", "--force", target.to_str().unwrap()])
        .assert()
        .success();
    stop(child);
    let copy = rusqlite::Connection::open(&target).unwrap();
    let customers: i64 = copy
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(customers, 60);
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn prune_deletes_old_finished_messages_and_keeps_moves_and_the_queue() {
    let clinic = Clinic::demo(60);
    append_config(&clinic, "\n[retention]\nmessages = \"90d\"\n");
    let at = chrono::Utc::now() + chrono::Duration::days(60);
    let cutoff = (at - chrono::Duration::days(90)).timestamp();
    let finished = "status IN ('sent', 'failed', 'suppressed', 'opted_out', 'held_out')";
    let old = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE {finished} AND updated_at < {cutoff}"
    ));
    let total = clinic.count("SELECT count(*) FROM outreach");
    let queued = clinic.count("SELECT count(*) FROM outreach WHERE status = 'queued'");
    let moves = clinic.count("SELECT count(*) FROM transitions");
    assert!(
        old > 0 && old < total,
        "the demo needs old and new messages"
    );
    let out = clinic
        .recall()
        .args(["prune", "--at", &at.to_rfc3339()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains(&format!("pruned {old} finished messages")),
        "{}",
        stdout(&out)
    );
    assert_eq!(clinic.count("SELECT count(*) FROM outreach"), total - old);
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE status = 'queued'"),
        queued
    );
    assert_eq!(clinic.count("SELECT count(*) FROM transitions"), moves);
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM outcomes WHERE outreach_id NOT IN (SELECT id FROM outreach)"
        ),
        0
    );
    // Again: nothing left to prune.
    let again = clinic
        .recall()
        .args(["prune", "--at", &at.to_rfc3339()])
        .output()
        .unwrap();
    assert!(stdout(&again).contains("pruned 0 finished messages"));
}

/// Every text value in every table, for searching personal data.
fn all_text(clinic: &Clinic) -> String {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut text = String::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                if let Ok(rusqlite::types::ValueRef::Text(t)) = row.get_ref(i) {
                    text.push_str(&String::from_utf8_lossy(t));
                    text.push('\n');
                }
            }
        }
    }
    text
}

#[test]
fn export_shows_a_customers_data_and_forget_erases_it_keeping_the_counts() {
    let clinic = Clinic::demo(80);
    // The database holds personal data: its owner only, whatever the umask.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(clinic.database())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "recall init made the database {mode:o}"
        );
    }
    // The customer with the most messages and moves.
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let (id, external, name, phone): (i64, String, String, String) = conn
        .query_row(
            "SELECT c.id, c.external_id, c.name, c.phone FROM customers c
             WHERE c.phone IS NOT NULL AND length(c.name) >= 2
             ORDER BY (SELECT count(*) FROM outreach o WHERE o.customer_id = c.id) DESC,
                      (SELECT count(*) FROM transitions t WHERE t.customer_id = c.id) DESC
             LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    drop(conn);
    let messages = clinic.count(&format!(
        "SELECT count(*) FROM outreach WHERE customer_id = {id}"
    ));
    assert!(messages > 0);

    let export = clinic
        .recall()
        .args(["export", "--customer", &external])
        .output()
        .unwrap();
    assert!(export.status.success());
    let json: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(json["customer"]["name"], name.as_str());
    assert_eq!(json["customer"]["phone"], phone.as_str());
    assert_eq!(json["messages"].as_array().unwrap().len() as i64, messages);
    for section in [
        "moves",
        "visits",
        "orders",
        "followups",
        "outcomes",
        "call_tasks",
        "current_pool",
    ] {
        assert!(json[section].is_array(), "no {section} in the export");
    }
    assert!(!json["messages"][0]["content"].as_str().unwrap().is_empty());

    let report = |clinic: &Clinic| {
        stdout(
            &clinic
                .recall()
                .args([
                    "report",
                    "--format",
                    "json",
                    "--from",
                    "2000-01-01",
                    "--to",
                    "2100-01-01",
                ])
                .output()
                .unwrap(),
        )
    };
    let status = |clinic: &Clinic| {
        stdout(
            &clinic
                .recall()
                .args(["status", "--format", "json"])
                .output()
                .unwrap(),
        )
    };
    let (report_before, status_before) = (report(&clinic), status(&clinic));
    let outbox = std::fs::read_to_string(clinic.path().join("data/outbox.log")).unwrap_or_default();
    assert!(
        outbox.contains(&external),
        "the log sender's file names the customer"
    );

    // Another connection stays open, as the running service's would: the
    // write-ahead log is not folded into the database when forget exits.
    let holder = rusqlite::Connection::open(clinic.database()).unwrap();
    holder
        .query_row("SELECT count(*) FROM customers", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let forget = clinic
        .recall()
        .args(["forget", "--customer", &external])
        .output()
        .unwrap();
    assert!(
        forget.status.success(),
        "{}",
        String::from_utf8_lossy(&forget.stderr)
    );
    assert!(stdout(&forget).contains("forgot customer"));
    // Not in the rows, and not in the bytes of the files either (free
    // space, old page versions in the database or its log).
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", clinic.database().display());
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for secret in [&name, &phone] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is still in the bytes of {file}"
            );
        }
    }
    drop(holder);
    let text = all_text(&clinic);
    for secret in [&name, &phone, &external] {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is still in the database"
        );
    }
    let outbox = std::fs::read_to_string(clinic.path().join("data/outbox.log")).unwrap_or_default();
    assert!(!outbox.contains(&format!("\"{external}\"")));
    assert_eq!(
        report(&clinic),
        report_before,
        "the report's counts do not change"
    );
    assert_eq!(status(&clinic), status_before);
    assert_eq!(
        clinic.count(&format!(
            "SELECT count(*) FROM outreach WHERE customer_id = {id}"
        )),
        messages
    );
    let reasons = clinic.count(&format!(
        "SELECT count(*) FROM transitions WHERE customer_id = {id} AND reason LIKE '%=%'"
    ));
    assert_eq!(reasons, 0, "fact values are gone from the move reasons");
    // The anonymised export has nothing personal left.
    let export = clinic
        .recall()
        .args(["export", "--customer", &format!("forgotten-{id}")])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(json["customer"]["name"], "");
    assert!(json["customer"]["phone"].is_null());

    // Idempotent: again, by either id, changes nothing.
    let again = clinic
        .recall()
        .args(["forget", "--customer", &external])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(stdout(&again).contains("nothing to forget"));
    clinic
        .recall()
        .args(["forget", "--customer", &format!("forgotten-{id}")])
        .assert()
        .success();
    assert_eq!(report(&clinic), report_before);
    assert_eq!(all_text(&clinic), text);
}

#[test]
fn json_logs_of_a_tick_and_dispatch_hold_no_phone_number_or_name() {
    let clinic = Clinic::demo(150);
    // A month on, in the daytime: no channel is in its quiet hours, so the
    // dispatch sends (and logs) messages whatever the hour the test runs at.
    let at = common::daytime_in_days(30);
    let mut log = String::new();
    for args in [vec!["tick", "--at", &at], vec!["dispatch", "--at", &at]] {
        let out = clinic
            .process()
            .arg("--log-json")
            .args(&args)
            .env("RECALL_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success());
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        log.push_str(&stdout(&out));
    }
    assert!(
        log.lines().filter(|l| l.starts_with('{')).count() > 5,
        "{log}"
    );
    assert!(
        log.contains("logged message"),
        "the dispatch logged its messages"
    );
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let people: Vec<(String, Option<String>, Option<String>)> = conn
        .prepare("SELECT name, phone, email FROM customers")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, phone, email) in people {
        if name.chars().count() >= 2 {
            assert!(!log.contains(&name), "the name {name} is in the logs");
        }
        for value in [phone, email].into_iter().flatten() {
            assert!(!log.contains(&value), "{value} is in the logs");
        }
    }
}

/// A gateway on 127.0.0.1 that refuses every request (400) and echoes it
/// back: request line, headers and body, as some gateways do. Returns its
/// port and everything it received.
fn echoing_gateway() -> (u16, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim_end().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let echo = format!("bad request: {head}{}", String::from_utf8_lossy(&body));
                    record.lock().unwrap().push_str(&echo);
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{echo}",
                        echo.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn secrets_a_gateway_echoes_stay_out_of_the_outreach_log_and_the_logs() {
    let clinic = Clinic::demo(60);
    let (port, seen) = echoing_gateway();
    let secret_file = clinic.path().join("gw-auth");
    std::fs::write(&secret_file, "Bearer TOPSECRET-abc\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = format!(
        r#"[clinic]
name = "测试诊所"

[schedule]
ticks = ["0 9 * * *"]

[dispatch]
batch_size = 50

[senders.gateway]
kind = "webhook"
url = "http://127.0.0.1:{port}/send?token=URLTOKEN-998877&x=1"
secret_headers = {{ Authorization = "GW_AUTH" }}
body = '''{{"to": {{{{ address }}}}, "text": {{{{ content }}}}, "ref": {{{{ id }}}}}}'''

[channels.sms]
sender = "gateway"
[channels.phone]
sender = "gateway"
[channels.wechat]
sender = "gateway"
[channels.email]
sender = "gateway"
"#
    );
    std::fs::write(clinic.config(), config).unwrap();
    let at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let mut log = String::new();
    for args in [vec!["tick", "--at", &at], vec!["dispatch", "--at", &at]] {
        let out = clinic
            .process()
            .args(&args)
            .env_remove("GW_AUTH")
            .env("GW_AUTH_FILE", &secret_file)
            .env("RECALL_LOG", "debug")
            .output()
            .unwrap();
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        log.push_str(&stdout(&out));
        assert!(out.status.success(), "{log}");
    }
    // The gateway did get (and echo) the secrets.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains("Bearer TOPSECRET-abc"), "{seen}");
    assert!(seen.contains("token=URLTOKEN-998877"), "{seen}");

    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let errors: Vec<String> = conn
        .prepare("SELECT last_error FROM outreach WHERE last_error LIKE '%bad request%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!errors.is_empty(), "no message reached the gateway");
    for error in &errors {
        assert!(error.contains("[redacted]"), "{error}");
    }
    let stored = errors.join("\n");
    assert!(log.contains("bad request"), "the refusal is logged: {log}");
    for secret in ["TOPSECRET", "URLTOKEN-998877"] {
        assert!(
            !stored.contains(secret),
            "{secret} in outreach.last_error: {stored}"
        );
        assert!(!log.contains(secret), "{secret} in the logs: {log}");
    }
}
