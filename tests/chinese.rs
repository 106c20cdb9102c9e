//! `--lang zh` through the real binary: the words staff read in status,
//! the outreach log, a tick and a dispatch are Chinese, statuses, channels,
//! pools and the reasons a message was not sent included; scripts reading
//! JSON still get the stored English words.

mod common;

use common::Clinic;

fn run_zh(clinic: &Clinic, args: &[&str]) -> String {
    let out = clinic
        .recall()
        .args(["--lang", "zh"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "recall {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The cells of a column, by its header, of the first table that has it,
/// without padding.
fn column(output: &str, header: &str) -> Vec<String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('│')
            .split('┆')
            .map(|c| c.trim().to_string())
            .collect()
    };
    for table in output.split('┌').skip(1) {
        let rows: Vec<Vec<String>> = table
            .lines()
            .filter(|l| l.starts_with('│'))
            .map(cells)
            .collect();
        if let Some(at) = rows[0].iter().position(|h| h == header) {
            return rows[1..].iter().map(|r| r[at].clone()).collect();
        }
    }
    panic!("no column {header} in:\n{output}")
}

#[test]
fn status_names_channels_and_statuses_in_chinese() {
    let clinic = Clinic::demo(300);
    let status = run_zh(&clinic, &["status"]);
    let states = column(&status, "状态");
    assert!(states.iter().any(|s| s == "已发送"), "{status}");
    assert!(states.iter().any(|s| s == "已拦截"), "{status}");
    for english in ["sent", "suppressed", "held_out", "queued", "failed"] {
        assert!(!states.iter().any(|s| s == english), "{english}:\n{status}");
    }
    let channels = column(&status, "渠道");
    assert!(channels.iter().any(|c| c == "短信"), "{status}");
    assert!(
        !channels.iter().any(|c| c == "sms" || c == "wechat"),
        "{status}"
    );
    assert!(status.contains("位顾客"), "{status}");
    assert!(status.contains("上次评估："), "{status}");
    for english in ["customers", "last tick", "due now", "done"] {
        assert!(!status.contains(english), "{english}:\n{status}");
    }

    let csv = run_zh(&clinic, &["status", "--format", "csv"]);
    assert!(csv.contains("消息,短信,已发送,"), "{csv}");
    assert!(!csv.contains("outreach"), "{csv}");
}

#[test]
fn the_log_says_why_a_message_was_not_sent_in_chinese() {
    let clinic = Clinic::demo(300);
    let log = run_zh(&clinic, &["log", "--limit", "0"]);
    let states = column(&log, "状态");
    assert!(states.iter().any(|s| s == "已拦截"), "{log}");
    assert!(!states.iter().any(|s| s == "suppressed" || s == "sent"));
    let reasons = column(&log, "错误");
    assert!(reasons.iter().any(|r| r == "顾客未同意接收短信"), "{log}");
    assert!(reasons.iter().any(|r| r == "顾客已标记为不再联系"), "{log}");
    assert!(reasons.iter().any(|r| r.starts_with("没有登记")), "{log}");
    for english in ["no consent for", "on record", "do-not-contact"] {
        assert!(!log.contains(english), "{english}:\n{log}");
    }

    // Scripts read what the database keeps.
    let json = run_zh(&clinic, &["log", "--limit", "0", "--format", "json"]);
    assert!(json.contains(r#""status": "suppressed""#), "{json}");
    assert!(json.contains(r#""error": "no consent for sms""#), "{json}");

    let moves = run_zh(&clinic, &["log", "--moves", "--limit", "0"]);
    assert!(column(&moves, "新池").iter().any(|p| p == "新客池"));
    assert!(column(&moves, "原因").iter().any(|r| r == "首次记录该顾客"));
    assert!(!moves.contains("first record of the customer"));
}

#[test]
fn a_tick_and_a_dispatch_report_in_chinese() {
    let clinic = Clinic::demo(300);
    let at = format!("{} 14:00", clinic.demo_today());
    let dry = run_zh(&clinic, &["tick", "--dry-run", "--show", "3", "--at", &at]);
    assert!(dry.contains("试运行：没有写入任何内容"), "{dry}");
    assert!(dry.contains("位顾客") && dry.contains("条消息"), "{dry}");
    assert!(dry.contains("示例："), "{dry}");
    for english in [
        "dry run",
        "would queue",
        "customers evaluated",
        "examples:",
        " send ",
    ] {
        assert!(!dry.contains(english), "{english}:\n{dry}");
    }

    run_zh(&clinic, &["tick", "--at", &at]);
    let sent = run_zh(&clinic, &["dispatch", "--at", &at]);
    assert!(sent.contains("发送：已发送"), "{sent}");
    assert!(!sent.contains("dispatched at"), "{sent}");
}

#[test]
fn a_refused_import_explains_itself_in_chinese() {
    let clinic = Clinic::demo(20);
    let file = clinic.path().join("bad.csv");
    std::fs::write(&file, "customer_id,name,phone\nX1,王,13800000000\n,李,\n").unwrap();
    let out = clinic
        .recall()
        .args(["--lang", "zh", "import", "customers"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8(out.stderr).unwrap() + &String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("没有导入任何数据"), "{said}");
    assert!(!said.contains("nothing was imported"), "{said}");

    // Each row's problem, with its line, in Chinese too.
    std::fs::write(
        &file,
        "客户编号,姓名,手机,性别,短信同意,出生日期
         C1,王丽,13800000000,女,是,1990-06-15
         C2,李娜,1.38E+10,女,是,1991-01-01
         C3,赵敏,13900000000,女士,也许,90年
         C1,王丽,13800000000,女,是,1990-06-15
",
    )
    .unwrap();
    let out = clinic
        .recall()
        .args(["--lang", "zh", "import", "customers"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8(out.stderr).unwrap();
    for line in [
        "bad.csv:3: `phone` = `1.38E+10` 不是电话号码：Excel 把它写成了科学计数法",
        "bad.csv:4: 性别 `女士` 不是 女、男、其他",
        "不是 是/否",
        "出生日期 `90年` 不是日期",
        "编号 `C1` 出现了两次（第 2 行和第 5 行）",
    ] {
        assert!(said.contains(line), "{line}\n{said}");
    }
    for english in ["is not", "appears twice", "is empty"] {
        assert!(!said.contains(english), "{english}\n{said}");
    }
}
