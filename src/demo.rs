//! Synthetic clinics: customers with realistic visit, order and follow-up
//! histories, for `recall init --demo` and the benchmark.
//!
//! Deterministic for a given seed and "now". The demo then replays the
//! shipped rules day by day over the last months of that history (real
//! ticks, real dispatch through the configured senders), so its database
//! holds pools, moves and an outreach log as a clinic's would after months
//! of running.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use chrono_tz::Tz;
use fastrand::Rng;

use crate::base::clock::{self, Clock, Timestamp};
use crate::base::model::{FollowupResult, Gender};
use crate::store::Result;
use crate::store::ingest::{Consent, Ingest, NewCustomer};

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "欧阳",
    "上官",
];
const FEMALE_NAMES: &[&str] = &[
    "丽", "静", "敏", "婷", "雪", "琳", "佳怡", "欣然", "梦瑶", "雨涵", "诗琪", "晓燕", "思雨",
    "嘉欣", "若曦", "紫涵", "美玲", "海燕", "倩", "颖",
];
const MALE_NAMES: &[&str] = &[
    "伟", "强", "磊", "洋", "勇", "军", "杰", "浩然", "子轩", "宇航", "建华", "志明",
];
const CITIES: &[&str] = &[
    "上海", "上海", "上海", "杭州", "苏州", "南京", "北京", "深圳", "成都",
];
const SOURCES: &[&str] = &[
    "美团",
    "新氧",
    "小红书",
    "抖音",
    "朋友推荐",
    "自然到店",
    "老带新",
];

/// (department, project, typical price in yuan)
const PROJECTS: &[(&str, &str, i64)] = &[
    ("皮肤科", "光子嫩肤", 1_680),
    ("皮肤科", "水光针", 2_980),
    ("皮肤科", "热玛吉", 16_800),
    ("皮肤科", "超皮秒祛斑", 4_800),
    ("注射科", "玻尿酸", 6_800),
    ("注射科", "肉毒素除皱", 3_800),
    ("整形外科", "双眼皮", 12_800),
    ("整形外科", "隆鼻", 23_800),
    ("口腔科", "牙齿美白", 2_280),
];

/// A synthetic person: name, contact details, consent, profile.
pub fn person(rng: &mut Rng, index: usize) -> NewCustomer {
    let female = rng.f64() < 0.85;
    let surname = SURNAMES[rng.usize(..SURNAMES.len())];
    let given = if female {
        FEMALE_NAMES[rng.usize(..FEMALE_NAMES.len())]
    } else {
        MALE_NAMES[rng.usize(..MALE_NAMES.len())]
    };
    let prefixes = [
        "138", "139", "135", "136", "137", "150", "151", "158", "159", "186", "187", "188", "177",
        "199",
    ];
    let phone = format!(
        "{}{:08}",
        prefixes[rng.usize(..prefixes.len())],
        rng.u32(0..100_000_000)
    );
    let birth_year = rng.i32(1968..2005);
    let birth = NaiveDate::from_ymd_opt(birth_year, rng.u32(1..13), rng.u32(1..29));
    NewCustomer {
        external_id: format!("C{:06}", index + 1),
        name: format!("{surname}{given}"),
        phone: (rng.f64() < 0.97).then_some(phone),
        email: (rng.f64() < 0.15).then(|| format!("user{}@example.com", index + 1)),
        wechat_openid: (rng.f64() < 0.75).then(|| format!("o{:016x}", rng.u64(..))),
        wecom_external_userid: (rng.f64() < 0.4).then(|| format!("wm{:016x}", rng.u64(..))),
        gender: Some(if female { Gender::Female } else { Gender::Male }),
        birth_date: if rng.f64() < 0.9 { birth } else { None },
        city: Some(CITIES[rng.usize(..CITIES.len())].to_string()),
        source_channel: Some(SOURCES[rng.usize(..SOURCES.len())].to_string()),
        advisor: None,
        tags: Vec::new(),
        consent: Consent {
            sms: rng.f64() < 0.92,
            phone: rng.f64() < 0.97,
            wechat: rng.f64() < 0.95,
            email: rng.f64() < 0.9,
        },
        do_not_contact: rng.f64() < 0.02,
    }
}

/// How a synthetic customer behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archetype {
    /// Comes back every month or two and buys.
    Loyal,
    /// Was loyal, then stopped coming; follow-ups sour at the end.
    Lapsing,
    /// One visit, one purchase.
    OneTime,
    /// Came to consult, never bought.
    Browser,
    /// Stayed away for months, then came back.
    Returning,
}

fn archetype(rng: &mut Rng) -> Archetype {
    match rng.u32(0..100) {
        0..=24 => Archetype::Loyal,
        25..=44 => Archetype::Lapsing,
        45..=64 => Archetype::OneTime,
        65..=84 => Archetype::Browser,
        _ => Archetype::Returning,
    }
}

/// One customer's history, before it is written.
struct History {
    visits: Vec<Timestamp>,
    orders: Vec<(Timestamp, i64, usize)>,
    followups: Vec<(Timestamp, FollowupResult)>,
}

/// A time on `day` (a clinic day number) during opening hours.
fn opening_hours(rng: &mut Rng, day: i64, tz: Tz) -> Timestamp {
    let date = clock::day_to_date(day);
    let time = date
        .and_hms_opt(rng.u32(10..20), rng.u32(0..60), 0)
        .unwrap_or_default();
    clock::local_to_utc(time, tz).map_or(0, |t| t.timestamp())
}

fn history(rng: &mut Rng, kind: Archetype, first_day: i64, today: i64, tz: Tz) -> History {
    let mut visit_days = vec![first_day];
    match kind {
        Archetype::Loyal => {
            let mut day = first_day;
            loop {
                day += rng.i64(25..70);
                if day >= today {
                    break;
                }
                visit_days.push(day);
            }
        }
        Archetype::Lapsing => {
            let stop = today - rng.i64(95..320);
            let mut day = first_day;
            loop {
                day += rng.i64(25..60);
                if day >= stop.max(first_day + 1) {
                    break;
                }
                visit_days.push(day);
            }
        }
        Archetype::OneTime | Archetype::Browser => {}
        Archetype::Returning => {
            let gap_end = today - rng.i64(1..40);
            if gap_end - first_day > 150 {
                visit_days.push(gap_end);
            }
        }
    }
    let mut h = History {
        visits: Vec::new(),
        orders: Vec::new(),
        followups: Vec::new(),
    };
    let project_base = rng.usize(..PROJECTS.len());
    for (i, &day) in visit_days.iter().enumerate() {
        let at = opening_hours(rng, day, tz);
        h.visits.push(at);
        let buys = match kind {
            Archetype::Browser => false,
            Archetype::OneTime => i == 0,
            _ => i == 0 || rng.f64() < 0.75,
        };
        if buys {
            let project = if rng.f64() < 0.6 {
                project_base
            } else {
                rng.usize(..PROJECTS.len())
            };
            let price = PROJECTS[project].2;
            let cents = (price as f64 * (0.7 + rng.f64() * 0.6)).round() as i64 * 100;
            h.orders.push((at + 1_800, cents, project));
        }
        // A follow-up call the next day or so, and sometimes a week later.
        for offset in [1, 7] {
            if offset == 7 && rng.f64() < 0.5 {
                continue;
            }
            let followup_day = day + offset + rng.i64(0..2);
            if followup_day >= today {
                continue;
            }
            let late = i + 1 == visit_days.len();
            let result = followup_result(rng, kind, late);
            h.followups
                .push((opening_hours(rng, followup_day, tz), result));
        }
    }
    if matches!(kind, Archetype::Lapsing | Archetype::Browser) {
        // Attempts to reach them after they stopped coming.
        let last = *visit_days.last().unwrap_or(&first_day);
        let mut day = last + rng.i64(20..40);
        while day < today && rng.f64() < 0.6 {
            h.followups.push((
                opening_hours(rng, day, tz),
                followup_result(rng, kind, true),
            ));
            day += rng.i64(10..30);
        }
    }
    h
}

fn followup_result(rng: &mut Rng, kind: Archetype, late: bool) -> FollowupResult {
    let sour = match (kind, late) {
        (Archetype::Lapsing, true) | (Archetype::Browser, true) => 0.7,
        (Archetype::Browser, false) => 0.4,
        _ => 0.1,
    };
    if rng.f64() >= sour {
        return FollowupResult::Smooth;
    }
    match rng.u32(0..10) {
        0..=4 => FollowupResult::NotSmooth,
        5..=8 => FollowupResult::Unreachable,
        _ => FollowupResult::Refused,
    }
}

/// Adds `count` synthetic customers first seen within `days` before `now`,
/// with their histories. Returns the time of the earliest first visit.
pub fn populate(
    ingest: &mut Ingest<'_>,
    clinic_id: i64,
    count: usize,
    days: i64,
    now: DateTime<Utc>,
    tz: Tz,
    seed: u64,
) -> Result<Timestamp> {
    let mut rng = Rng::with_seed(seed);
    let today = clock::local_day(now.timestamp(), tz);
    let mut earliest = now.timestamp();
    for index in 0..count {
        let mut customer = person(&mut rng, index);
        let kind = archetype(&mut rng);
        let first_day = today - rng.i64(2..days.max(3));
        let h = history(&mut rng, kind, first_day, today, tz);
        let spent: i64 = h.orders.iter().map(|o| o.1).sum();
        if spent >= 3_000_000 {
            customer.tags.push("vip".into());
        }
        if let Some((_, _, project)) = h.orders.first() {
            customer.tags.push(PROJECTS[*project].1.to_string());
        }
        let first_at = h.visits[0];
        earliest = earliest.min(first_at);
        let id = ingest.add_customer(clinic_id, &customer, first_at)?;
        for at in &h.visits {
            ingest.add_visit(id, *at, None)?;
        }
        for (at, cents, project) in &h.orders {
            let (department, name, _) = PROJECTS[*project];
            ingest.add_order(id, *at, *cents, Some(name), Some(department))?;
        }
        let staff = ["顾问小林", "顾问小周", "顾问小陈"];
        for (at, result) in &h.followups {
            ingest.add_followup(
                id,
                *at,
                Some(staff[rng.usize(..staff.len())]),
                *result,
                None,
            )?;
        }
    }
    Ok(earliest)
}

/// The times at which the demo replays daily ticks: 09:00 clinic time on
/// each of the `days` days ending two days before `now`, so the first tick
/// of `recall demo` has something to catch up on.
pub fn replay_days(now: DateTime<Utc>, tz: Tz, days: i64) -> Vec<DateTime<Utc>> {
    let today = clock::local_day(now.timestamp(), tz);
    (0..days)
        .rev()
        .filter_map(|back| {
            let date = clock::day_to_date(today - 2 - back);
            clock::local_to_utc(date.and_hms_opt(9, 0, 0)?, tz)
        })
        .collect()
}

/// The clock a replayed day dispatches at: the end of that day's office hours.
pub fn dispatch_clock(tick: DateTime<Utc>) -> Clock {
    Clock::Fixed(tick + ChronoDuration::hours(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_are_deterministic_for_a_seed() {
        let tz = chrono_tz::Asia::Shanghai;
        let mut a = Rng::with_seed(7);
        let mut b = Rng::with_seed(7);
        let ha = history(&mut a, Archetype::Loyal, 100, 400, tz);
        let hb = history(&mut b, Archetype::Loyal, 100, 400, tz);
        assert_eq!(ha.visits, hb.visits);
        assert!(ha.visits.len() > 3);
        assert!(ha.visits.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn browsers_never_buy_and_lapsers_stop_coming() {
        let tz = chrono_tz::Asia::Shanghai;
        let mut rng = Rng::with_seed(1);
        for _ in 0..50 {
            let h = history(&mut rng, Archetype::Browser, 100, 500, tz);
            assert!(h.orders.is_empty());
            let h = history(&mut rng, Archetype::Lapsing, 100, 500, tz);
            let last = clock::local_day(*h.visits.last().unwrap(), tz);
            assert!(
                500 - last >= 95,
                "lapsing customer visited {} days ago",
                500 - last
            );
        }
    }

    #[test]
    fn replay_ends_two_days_before_now_at_nine() {
        let tz = chrono_tz::Asia::Shanghai;
        let now = clock::parse_time("2026-05-10 15:00", tz, chrono::DateTime::UNIX_EPOCH).unwrap();
        let days = replay_days(now, tz, 3);
        let shown: Vec<String> = days
            .iter()
            .map(|d| clock::format_local(d.timestamp(), tz))
            .collect();
        assert_eq!(
            shown,
            ["2026-05-06 09:00", "2026-05-07 09:00", "2026-05-08 09:00"]
        );
    }
}
