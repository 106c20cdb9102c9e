//! The front desk's rules through the real binary (issue 12, items 4 and 5):
//! calls given to a customer's own advisor (专属顾问), birthday facts,
//! Chinese values in conditions, and what `recall check` says about
//! advisors and full-width punctuation typed on a Chinese keyboard.

//
// The customers are imported as first seen a few days before the first
// tick: genuinely new, so the tick judges them without `recall onboard`.

mod common;

use common::{Clinic, stdout};

// 2099-01-05 is a Monday.
const MONDAY: &str = "2099-01-05";

/// The clinic's shipped rules replaced by `rules` (one file, `front.toml`),
/// with templates for them.
fn with_rules(clinic: &Clinic, rules: &str) {
    let dir = clinic.path().join("rules");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(dir.join("front.toml"), rules).unwrap();
    let templates = clinic.path().join("templates");
    std::fs::write(
        templates.join("phone/vip_call.txt"),
        "{{ customer.salutation }}的专属顾问：{{ advisor }}",
    )
    .unwrap();
    std::fs::write(
        templates.join("wechat/birthday.txt"),
        "{{ customer.salutation }}，还有 {{ days_to_birthday }} 天就是您的生日（{{ birth_month }} 月）",
    )
    .unwrap();
}

/// Phone messages become call tasks: 小林 and 小周 take turns, 王芳 is an
/// advisor, 李娜 an advisor on leave.
fn with_advisors(clinic: &Clinic, staff: &str) {
    clinic.edit_config(
        "[channels.phone]\nsender = \"log\"",
        &format!(
            "[senders.calls]\nkind = \"phone_tasks\"\nstaff = {staff}\nworking_hours = \"10:00-19:00\"\n\n[channels.phone]\nsender = \"calls\""
        ),
    );
}

const STAFF: &str = r#"[
  { name = "小林", daily_capacity = 10 },
  { name = "小周", daily_capacity = 10 },
  { name = "王芳", daily_capacity = 10, advisor = true },
  { name = "李娜", daily_capacity = 10, advisor = true, off = true },
]"#;

const VIP_CALL: &str = r#"
[[rule]]
id = "vip_advisor_call"
description = "VIP 由专属顾问电话回访"
from = "new"
when = '"vip" in tags'
[[rule.action]]
channel = "phone"
template = "vip_call"
assign = "advisor"
"#;

fn import(clinic: &Clinic, kind: &str, name: &str, csv: &str) {
    let file = clinic.path().join(name);
    std::fs::write(&file, csv).unwrap();
    let out = clinic
        .recall()
        .args(["import", kind, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (customer, staff, via_advisor) of every call task.
fn call_tasks(clinic: &Clinic) -> Vec<(String, String, bool)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT c.external_id, t.staff, t.via_advisor FROM call_tasks t
             JOIN customers c ON c.id = t.customer_id ORDER BY c.external_id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// (customer, rule, content) of every message, by customer.
fn messages(clinic: &Clinic) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT c.external_id, o.rule_id, o.content FROM outreach o
             JOIN customers c ON c.id = o.customer_id ORDER BY c.external_id, o.id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn tick(clinic: &Clinic, at: &str) {
    clinic
        .recall()
        .args(["tick", "--at", at])
        .assert()
        .success();
}

fn check(clinic: &Clinic, lang: &str) -> (bool, String) {
    let out = clinic
        .recall()
        .args(["check", "--lang", lang])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn an_advisor_rule_sends_the_call_to_the_advisor_and_falls_back_to_the_round_robin() {
    let clinic = Clinic::new();
    with_rules(&clinic, VIP_CALL);
    with_advisors(&clinic, STAFF);
    // English header, then a Chinese one (专属顾问) for more customers.
    import(
        &clinic,
        "customers",
        "customers.csv",
        "external_id,name,phone,tags,advisor,first_seen\n\
         C1,王丽,13800000001,vip,王芳,2099-01-02\n\
         C2,李梅,13800000002,vip,,2099-01-02\n\
         C3,赵敏,13800000003,vip,李娜,2099-01-02\n\
         C4,孙磊,13800000004,vip,张三,2099-01-02\n\
         C5,周强,13800000005,,王芳,2099-01-02\n",
    );
    import(
        &clinic,
        "customers",
        "顾客.csv",
        "客户编号,姓名,手机,标签,专属顾问,建档时间\nC6,吴芳,13800000006,vip,王芳,2099-01-02\n",
    );
    assert_eq!(
        clinic.count("SELECT count(*) FROM customers WHERE advisor = '王芳'"),
        3
    );
    let (ok, text) = check(&clinic, "en");
    assert!(ok, "{text}");
    assert!(
        !text.contains("gives calls to the customer's advisor"),
        "no warning: 王芳 is an advisor\n{text}"
    );

    tick(&clinic, &format!("{MONDAY} 09:00"));
    assert_eq!(
        clinic.count("SELECT count(*) FROM outreach WHERE assign_to = '王芳'"),
        2,
        "the tick notes the advisor of C1 and C6 (C5 is no VIP)"
    );
    clinic
        .recall()
        .args(["dispatch", "--at", &format!("{MONDAY} 11:00")])
        .assert()
        .success();
    let tasks = call_tasks(&clinic);
    let task = |customer: &str| {
        tasks
            .iter()
            .find(|(c, _, _)| c == customer)
            .unwrap_or_else(|| panic!("no call task for {customer}: {tasks:?}"))
    };
    assert_eq!(tasks.len(), 5, "{tasks:?}");
    assert_eq!(task("C1").1, "王芳", "her own customer, English header");
    assert_eq!(task("C6").1, "王芳", "her own customer, Chinese header");
    assert!(task("C1").2 && task("C6").2, "{tasks:?}");
    for fallback in ["C2", "C3", "C4"] {
        let (_, staff, via_advisor) = task(fallback);
        assert!(
            !via_advisor,
            "{fallback} goes to the round robin: {tasks:?}"
        );
        assert_ne!(staff, "李娜", "李娜 is off: no call at all");
    }

    let list = clinic
        .recall()
        .args([
            "tasks", "list", "--date", MONDAY, "--staff", "王芳", "--format", "json",
        ])
        .output()
        .unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let customers: Vec<&str> = listed
        .iter()
        .filter_map(|t| t["customer"].as_str())
        .collect();
    // Advisors take round-robin calls too: her list may hold more.
    assert!(
        customers.contains(&"C1") && customers.contains(&"C6"),
        "王芳's list: {customers:?}"
    );
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM call_tasks WHERE staff = '王芳' AND script LIKE '%的专属顾问：王芳%'"
        ),
        2,
        "templates read the advisor fact"
    );
}

#[test]
fn check_warns_when_no_staff_is_an_advisor_and_refuses_an_unknown_assign() {
    let clinic = Clinic::new();
    with_rules(&clinic, VIP_CALL);
    with_advisors(&clinic, r#"[{ name = "小林" }]"#);
    let (ok, text) = check(&clinic, "en");
    assert!(ok, "a warning, not an error:\n{text}");
    assert!(
        text.contains("rule `vip_advisor_call` gives calls to the customer's advisor, but no staff entry of the phone sender `calls` is an advisor"),
        "{text}"
    );
    assert!(
        text.contains("rules/front.toml:10:10"),
        "at the assign value:\n{text}"
    );
    assert!(text.contains("advisor = true"), "{text}");

    with_rules(&clinic, &VIP_CALL.replace("\"advisor\"", "\"advisr\""));
    let (ok, text) = check(&clinic, "en");
    assert!(!ok, "{text}");
    assert!(text.contains("unknown assign `advisr`"), "{text}");
    assert!(text.contains("rules/front.toml:10:10"), "{text}");
    assert!(text.contains("did you mean `advisor`?"), "{text}");

    let sms = VIP_CALL
        .replace("channel = \"phone\"", "channel = \"wechat\"")
        .replace("vip_call", "birthday");
    with_rules(&clinic, &sms);
    let (ok, text) = check(&clinic, "zh");
    assert!(!ok, "{text}");
    assert!(text.contains("assign 只适用于电话动作"), "{text}");
}

const BIRTHDAYS: &str = r#"
[[rule]]
id = "birthday_week"
from = "new"
priority = 20
when = "days_to_birthday <= 7"
[[rule.action]]
channel = "wechat"
template = "birthday"

[[rule]]
id = "birthday_month"
from = "new"
priority = 10
when = "birth_month == 3"
[[rule.action]]
channel = "wechat"
template = "birthday"
"#;

#[test]
fn birthday_rules_fire_in_the_week_and_the_month_and_29_february_is_28_february() {
    let clinic = Clinic::new();
    with_rules(&clinic, BIRTHDAYS);
    import(
        &clinic,
        "customers",
        "customers.csv",
        "客户编号,姓名,性别,生日,建档时间\n\
         B1,王丽,女,1990-03-10,2027-02-15\n\
         B2,李梅,女,1996-02-29,2027-02-15\n\
         B3,赵敏,女,1985-04-01,2027-02-15\n\
         B4,孙磊,男,,2027-02-15\n",
    );
    // 2027 has no 29 February: B2's birthday is on the 28th, 8 days away.
    tick(&clinic, "2027-02-20 09:00");
    let fired = messages(&clinic);
    assert_eq!(
        fired,
        [(
            "B1".to_string(),
            "birthday_month".to_string(),
            "王女士，还有 18 天就是您的生日（3 月）".to_string()
        )],
        "only B1 (born in March)"
    );
    tick(&clinic, "2027-02-21 09:00");
    let fired = messages(&clinic);
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(
        fired[1],
        (
            "B2".to_string(),
            "birthday_week".to_string(),
            "李女士，还有 7 天就是您的生日（2 月）".to_string()
        )
    );
}

const BY_GENDER: &str = r#"
[[rule]]
id = "women"
from = "new"
priority = 20
when = 'gender == "女"'
[[rule.action]]
channel = "wechat"
template = "birthday"

[[rule]]
id = "not_smooth"
from = "new"
priority = 10
when = 'last_followup_result == "不顺畅" && pool == "新客池"'
[[rule.action]]
channel = "wechat"
template = "birthday"
"#;

#[test]
fn chinese_values_in_conditions_mean_the_english_ones() {
    let clinic = Clinic::new();
    with_rules(&clinic, BY_GENDER);
    import(
        &clinic,
        "customers",
        "customers.csv",
        "external_id,name,gender,first_seen\n\
         G1,王丽,女,2026-02-26\n\
         G2,Anna,female,2026-02-26\n\
         G3,孙磊,男,2026-02-26\n\
         G4,周强,,2026-02-26\n",
    );
    import(
        &clinic,
        "followups",
        "followups.csv",
        "回访编号,客户编号,回访时间,回访结果\nF1,G3,2026-02-27,不顺畅\nF2,G4,2026-02-27,顺畅\n",
    );
    tick(&clinic, "2026-03-01 09:00");
    let fired: Vec<(String, String)> = messages(&clinic)
        .into_iter()
        .map(|(customer, rule, _)| (customer, rule))
        .collect();
    let expected: Vec<(String, String)> = [("G1", "women"), ("G2", "women"), ("G3", "not_smooth")]
        .iter()
        .map(|(c, r)| (c.to_string(), r.to_string()))
        .collect();
    assert_eq!(fired, expected);

    with_rules(&clinic, &BY_GENDER.replace("\"女\"", "\"女士\""));
    let (ok, text) = check(&clinic, "en");
    assert!(!ok, "{text}");
    assert!(text.contains("`gender` is never \"女士\""), "{text}");
    assert!(
        text.contains("the words an import accepts mean the same: 女"),
        "{text}"
    );
}

#[test]
fn check_points_at_full_width_punctuation_and_underlines_whole_names() {
    let clinic = Clinic::new();
    with_rules(
        &clinic,
        r#"
[[rule]]
id = "full_width"
from = "new"
to = "customer"
when = 'city == "上海" && （visit_count ＞ 3）'

[[rule]]
id = "typo"
from = "new"
to = "customer"
when = 'city == "上海" && visit_cont > 3'
"#,
    );
    let (ok, text) = check(&clinic, "en");
    assert!(!ok, "{text}");
    // `when = 'city == "上海" && ` is 22 half-width characters and 2
    // Chinese ones, 2 columns each: the caret starts in column 26 of the line.
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
    };
    let full = at("full-width `（` from a Chinese keyboard: conditions need the half-width `(`");
    assert_eq!(
        lines[full + 1].trim(),
        "--> rules/front.toml:6:25",
        "{text}"
    );
    assert_eq!(
        lines[full + 3],
        "6 | when = 'city == \"上海\" && （visit_count ＞ 3）'"
    );
    assert_eq!(lines[full + 4], format!("  | {}^^", " ".repeat(26)));
    assert!(
        lines[full + 5].contains("half-width (English) punctuation")
            && lines[full + 5].contains("`（` → `(`, `＞` → `>`, `）` → `)`"),
        "{text}"
    );
    let typo = at("unknown fact `visit_cont`");
    assert_eq!(
        lines[typo + 1].trim(),
        "--> rules/front.toml:12:25",
        "{text}"
    );
    assert_eq!(
        lines[typo + 4],
        format!("   | {}{}", " ".repeat(26), "^".repeat("visit_cont".len())),
        "the whole name is underlined"
    );

    let (_, text) = check(&clinic, "zh");
    assert!(text.contains("条件里要用半角的 `(`"), "{text}");
    assert!(text.contains("切换到英文（半角）标点"), "{text}");
}
