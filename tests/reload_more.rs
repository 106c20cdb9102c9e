//! Hot reload through the real service, in Chinese: a broken edit is logged
//! with the same text `recall check --lang zh` prints (place, the line and a
//! caret, hints), and a change to [cycles] is logged as a change.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Clinic;

fn wait_for(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!(
        "no line with {text:?} within 90 s; saw:\n{}",
        seen.join("\n")
    );
}

#[test]
fn reload_logs_check_errors_with_a_caret_in_chinese_and_names_changed_cycles() {
    let clinic = Clinic::new();
    let mut child = clinic
        .process()
        .env("RECALL_LANG", "zh")
        .env("RECALL_LOG", "info")
        .arg("run")
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
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, "recall 正在运行");
    wait_for(&lines, &mut seen, "评估完成");
    // The file watcher starts after the first tick is under way.
    std::thread::sleep(Duration::from_secs(1));

    let rules = clinic.path().join("rules/02-customer.toml");
    let good = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(
        &rules,
        good.replace("days_since_last_visit >= 90", "days_since_last_vist >= 90"),
    )
    .unwrap();
    wait_for(&lines, &mut seen, "未知的事实 `days_since_last_vist`");
    wait_for(&lines, &mut seen, "--> rules/02-customer.toml:");
    wait_for(&lines, &mut seen, "^^^^");
    wait_for(&lines, &mut seen, "您是不是想写 `days_since_last_visit`？");
    wait_for(&lines, &mut seen, "正在运行的规则继续运行");
    std::fs::write(&rules, &good).unwrap();
    wait_for(&lines, &mut seen, "已重新加载");

    let config = clinic.config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"水光针\" = 30", "\"水光针\" = 45")).unwrap();
    wait_for(&lines, &mut seen, "[cycles] `水光针`：30 → 45 天");

    let _ = child.kill();
    let _ = child.wait();
}
