use super::*;

#[test]
fn rates_parse_in_the_units_staff_write() {
    assert_eq!(
        RateLimit::parse("20/min").unwrap(),
        RateLimit {
            count: 20,
            per: Duration::from_secs(60)
        }
    );
    assert_eq!(
        RateLimit::parse("10/s").unwrap().per,
        Duration::from_secs(1)
    );
    assert!(RateLimit::parse("10 per s").is_err());
    assert!(RateLimit::parse("0/s").is_err());
    assert!(RateLimit::parse("5/fortnight").is_err());
}

fn load_text(text: &str) -> Result<Config, Report> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recall.toml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

const MINIMAL: &str = "[clinic]\nname = \"美丽诊所\"\n";

#[test]
fn minimal_config_takes_the_defaults() {
    let config = load_text(MINIMAL).unwrap();
    assert_eq!(config.clinic.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(config.schedule.ticks, ["0 0 9 * * *"]);
    assert_eq!(config.schedule.dispatch_every, Duration::from_secs(30));
    assert!(config.database.ends_with("data/recall.db"));
    assert!(config.channels.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = format!(
        "{MINIMAL}timezone = \"Asia/Shanghia\"\n[schedule]\nticks = [\"0 9 * *\"]\n\
         [senders.journal]\nkind = \"log\"\n[channels.sms]\nsender = \"jornal\"\n[channels.fax]\nsender = \"journal\"\n"
    );
    let report = load_text(&text).unwrap_err();
    let lines = report.to_lines();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].contains(":3:12: error: unknown time zone `Asia/Shanghia`"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("did you mean `Asia/Shanghai`?"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(":5:10: error: bad schedule"),
        "{}",
        lines[1]
    );
    assert!(
        lines.iter().any(|l| l.contains("did you mean `journal`?")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("unknown channel `fax`")),
        "{lines:#?}"
    );
}

#[test]
fn rate_limits_are_common_to_every_sender() {
    let report = load_text(&format!(
        "{MINIMAL}[senders.other]\nkind = \"log\"\nrate_limit = \"5/fortnight\"\n"
    ))
    .unwrap_err();
    let lines = report.to_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[senders.other] rate_limit: unknown unit `fortnight`")),
        "{lines:#?}"
    );
    let config = load_text(&format!(
        "{MINIMAL}[senders.journal]\nkind = \"log\"\nrate_limit = \"20/min\"\n[channels.wechat]\nsender = \"journal\"\nfallback = \"sms\"\ncost = 0.045\nquiet_hours = \"21:00-09:00\"\nmax_per_customer = \"2/7d\"\n[channels.sms]\nsender = \"journal\"\n"
    ))
    .unwrap();
    assert_eq!(config.senders["journal"].rate_limit.unwrap().count, 20);
    let wechat = &config.channels[&Channel::Wechat];
    assert_eq!(wechat.fallback, Some(Channel::Sms));
    assert_eq!(wechat.cost_milli, 45);
    assert_eq!(wechat.cap.unwrap().count, 2);
    let quiet = wechat.quiet_hours.unwrap();
    let t = |s| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    assert!(
        quiet.contains(t("23:00")) && quiet.contains(t("08:59")) && !quiet.contains(t("09:00"))
    );
}

#[test]
fn a_fallback_needs_a_channel_section() {
    let report = load_text(&format!(
        "{MINIMAL}[senders.journal]\nkind = \"log\"\n[channels.wechat]\nsender = \"journal\"\nfallback = \"sms\"\n"
    ))
    .unwrap_err();
    assert!(
        report.to_lines()[0].contains("falls back to `sms`, which has no [channels.sms]"),
        "{report}"
    );
}

#[test]
fn retention_and_metrics_are_checked() {
    let config = load_text(&format!(
        "{MINIMAL}[retention]\nmessages = \"2y\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
    ))
    .unwrap();
    assert!(config.retention.unwrap() > Duration::from_secs(700 * 86_400));
    assert_eq!(config.metrics.unwrap().port(), 9464);
    let report = load_text(&format!(
        "{MINIMAL}[retention]\nmessages = \"7d\"\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"
    ))
    .unwrap_err();
    let lines = report.to_lines();
    assert!(
        lines.iter().any(|l| l.contains("shorter than 90 days")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("not a loopback address")),
        "{lines:#?}"
    );
    let config = load_text(&format!(
        "{MINIMAL}[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"
    ))
    .unwrap();
    assert!(config.metrics.is_some());
}

#[test]
fn cycles_and_the_model_are_read_and_checked() {
    let config = load_text(&format!(
        "{MINIMAL}[cycles]\n\"肉毒素除皱\" = 120\n\"皮肤科\" = 45\n[model]\nrefit = \"0 4 * * 0\"\nchurn_window_days = 60\nhigh_risk_from = 70\n"
    ))
    .unwrap();
    let cycles = &config.clinic.cycles;
    assert_eq!(
        cycles.of(Some("肉毒素除皱"), Some("注射科")),
        Some(("肉毒素除皱", 120))
    );
    assert_eq!(
        cycles.of(Some("光子嫩肤"), Some("皮肤科")),
        Some(("皮肤科", 45))
    );
    assert_eq!(cycles.of(Some("双眼皮"), Some("整形外科")), None);
    assert_eq!(config.model.refit, "0 0 4 * * 0");
    assert_eq!(config.clinic.scoring.churn_window_days, 60.0);
    assert_eq!(config.clinic.scoring.bands.high_from, 70);
    assert_eq!(config.clinic.scoring.bands.medium_from, 50);

    let report = load_text(&format!(
        "{MINIMAL}[cycles]\n\"水光针\" = 0\n[model]\nmedium_risk_from = 90\nrefit = \"weekly\"\n"
    ))
    .unwrap_err();
    let lines = report.to_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(":4:9: error: [cycles] `水光针` = 0")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("medium_risk_from = 90 is above high_risk_from = 80")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad refit schedule `weekly`")),
        "{lines:#?}"
    );
}

fn config_with(ticks: &[&str]) -> Config {
    let list: Vec<String> = ticks.iter().map(|t| format!("\"{t}\"")).collect();
    load_text(&format!(
        "[clinic]\nname = \"x\"\n[schedule]\nticks = [{}]\n",
        list.join(", ")
    ))
    .unwrap()
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    crate::base::clock::parse_time(
        text,
        chrono_tz::Asia::Shanghai,
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap()
}

#[test]
fn latest_slot_is_in_clinic_time() {
    let config = config_with(&["0 9 * * *"]);
    let tz = config.clinic.timezone;
    assert_eq!(
        config.schedule.latest_slot(tz, at("2026-05-02 08:00")),
        Some(at("2026-05-01 09:00"))
    );
    assert_eq!(
        config.schedule.latest_slot(tz, at("2026-05-02 10:00")),
        Some(at("2026-05-02 09:00"))
    );
}

#[test]
fn latest_slot_takes_the_newest_of_several_schedules() {
    let config = config_with(&["0 9 * * *", "0 15 * * *"]);
    assert_eq!(
        config
            .schedule
            .latest_slot(config.clinic.timezone, at("2026-05-02 16:00")),
        Some(at("2026-05-02 15:00"))
    );
}

#[test]
fn five_field_cron_gets_a_seconds_field() {
    assert_eq!(parse_cron("30 9 * * 1-5").unwrap().0, "0 30 9 * * 1-5");
    assert!(parse_cron("61 9 * * *").is_err());
}

#[test]
fn schedules_that_never_fire_are_errors_at_their_line() {
    let cron = |text: &str| parse_cron(text).unwrap().0;
    assert!(ever_fires(&cron("0 9 * * *")));
    assert!(ever_fires(&cron("0 9 29 2 *")), "leap days come");
    assert!(
        ever_fires(&cron("0 9 29 2 1")),
        "a leap day on a Monday comes"
    );
    assert!(!ever_fires(&cron("0 9 31 2 *")));
    assert!(!ever_fires(&cron("0 9 31 4 *")));
    let text = format!(
        "{MINIMAL}[schedule]\nticks = [\"0 9 * * *\", \"0 9 31 2 *\"]\n[model]\nrefit = \"0 3 30 2 *\"\n"
    );
    let lines = load_text(&text).unwrap_err().to_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains(":4:23: error: the schedule `0 9 31 2 *` never fires"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(":6:9: error: the schedule `0 3 30 2 *` never fires"),
        "{}",
        lines[1]
    );
}
