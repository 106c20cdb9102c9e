//! `recall simulate --against`: the proposal is `--against`, the current
//! rules `--rules`; every Δ is proposal minus current and the columns say so,
//! in English and in Chinese.

mod common;

use common::{Clinic, stdout};

#[test]
fn deltas_are_proposal_minus_current_and_headers_say_so_in_both_languages() {
    let clinic = Clinic::demo(60);
    let proposal = clinic.path().join("rules-new");
    std::fs::create_dir_all(&proposal).unwrap();
    for entry in std::fs::read_dir(clinic.path().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, proposal.join(path.file_name().unwrap())).unwrap();
        }
    }
    // The demo's days, not the wall clock's: midnight may have passed since.
    let today = clinic.demo_today();
    let from = (today - chrono::Duration::days(4)).to_string();
    let to = (today - chrono::Duration::days(2)).to_string();
    let run = |lang: &str| {
        let out = clinic
            .recall()
            .args([
                "simulate",
                "--lang",
                lang,
                "--from",
                &from,
                "--to",
                &to,
                "--rules",
                "rules",
                "--against",
                "rules-new",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let en = run("en");
    for header in [
        "moves (current: rules)",
        "moves (proposal: rules-new)",
        "Δ moves (proposal − current)",
        "Δ cost (proposal − current)",
    ] {
        assert!(en.contains(header), "{header}: {en}");
    }
    let zh = run("zh");
    for header in [
        "规则",
        "渠道",
        "流转（当前：rules）",
        "消息（提案：rules-new）",
        "Δ 消息（提案 − 当前）",
        "预计成本（当前：rules）",
    ] {
        assert!(zh.contains(header), "{header}: {zh}");
    }
    assert!(!zh.contains("messages ("), "{zh}");
}
