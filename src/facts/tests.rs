//! Deriving facts, their values and the catalogue, as specs.

use super::*;
use crate::base::clock::parse_time;
use crate::store::record::{
    CustomerRow, FollowupAgg, OrderAgg, OutreachAgg, RepeatAgg, TreatmentAgg, VisitAgg,
};

const TZ: Tz = chrono_tz::Asia::Shanghai;

fn at(text: &str) -> Timestamp {
    parse_time(text, TZ, chrono::DateTime::UNIX_EPOCH)
        .unwrap()
        .timestamp()
}

fn record() -> CustomerRecord {
    CustomerRecord {
        customer: CustomerRow {
            id: 1,
            external_id: "C1".into(),
            name: "王丽".into(),
            gender: Some("female".into()),
            birth_date: Some("1990-06-15".into()),
            city: Some("上海".into()),
            source_channel: None,
            advisor: Some("王芳".into()),
            tags: r#"["vip","玻尿酸"]"#.into(),
            pool: Pool::Customer,
            entered_at: at("2026-03-01 10:00"),
            history_from: None,
        },
        visits: VisitAgg {
            count: 3,
            first_at: Some(at("2026-01-05 15:00")),
            last_at: Some(at("2026-03-20 23:50")),
        },
        orders: OrderAgg {
            count: 2,
            total_cents: 1_280_050,
            last_at: Some(at("2026-02-10 11:00")),
        },
        followups: FollowupAgg {
            last_at: Some(at("2026-03-30 09:00")),
            last_result: Some(FollowupResult::NotSmooth),
            not_smooth_30d: 2,
        },
        outreach: OutreachAgg {
            contacts_in_pool: 1,
            last_contact_at: None,
        },
        fired_in_pool: Vec::new(),
        last_fired: Vec::new(),
        treatments: Vec::new(),
        repeat: RepeatAgg::default(),
    }
}

fn treatment(project: Option<&str>, department: &str, at_text: &str) -> TreatmentAgg {
    TreatmentAgg {
        project: project.map(str::to_string),
        department: Some(department.to_string()),
        last_at: at(at_text),
    }
}

#[test]
fn the_latest_order_with_a_cycle_decides_how_overdue() {
    let cycles = Cycles(
        [("肉毒素除皱", 120), ("玻尿酸", 270), ("皮肤科", 60)]
            .map(|(k, v)| (k.to_string(), v))
            .into(),
    );
    let context = FactContext {
        tz: TZ,
        cycles: &cycles,
        model: None,
    };
    let mut r = record();
    r.treatments = vec![
        treatment(Some("肉毒素除皱"), "注射科", "2026-01-10 10:00"),
        // Later, but no cycle for the project or the department.
        treatment(Some("双眼皮"), "整形外科", "2026-02-01 10:00"),
    ];
    let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
    assert_eq!(facts.last_treatment.as_deref(), Some("肉毒素除皱"));
    assert_eq!(facts.expected_revisit_days, Some(120));
    assert_eq!(facts.days_overdue, Some(130 - 120));
    // A project without a cycle falls back to its department's.
    r.treatments
        .push(treatment(Some("光子嫩肤"), "皮肤科", "2026-05-10 10:00"));
    let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
    assert_eq!(facts.last_treatment.as_deref(), Some("皮肤科"));
    assert_eq!(facts.days_overdue, Some(10 - 60));
    // Two on the same visit: the one due first.
    r.treatments
        .push(treatment(Some("玻尿酸"), "注射科", "2026-05-10 10:00"));
    let facts = Facts::derive_in(&r, at("2026-05-20 09:00"), &context);
    assert_eq!(facts.expected_revisit_days, Some(60));
    // Without cycles, nothing to say.
    assert_eq!(Facts::derive(&r, at("2026-05-20"), TZ).days_overdue, None);
}

fn churn_model() -> Arc<ChurnModel> {
    Arc::new(ChurnModel {
        fit_id: 7,
        as_of: 0,
        model: predict::Model {
            unit: predict::TimeUnit::Days,
            purchases: predict::BgNbd {
                r: 0.5,
                alpha: 30.0,
                a: 0.6,
                b: 2.5,
            },
            spend: Some(predict::GammaGamma {
                p: 6.0,
                q: 4.0,
                v: 2_000.0,
            }),
        },
        scoring: predict::ScoreConfig::default(),
    })
}

#[test]
fn churn_facts_follow_the_model_and_the_history_at_the_tick() {
    let model = churn_model();
    let context = FactContext {
        tz: TZ,
        cycles: &Cycles::default(),
        model: Some(&model),
    };
    let mut r = record();
    r.repeat = RepeatAgg {
        visit_days: 3,
        repeat_spend_cents: 1_000_000,
    };
    let soon = Facts::derive_in(&r, at("2026-03-25 09:00"), &context);
    let later = Facts::derive_in(&r, at("2026-09-25 09:00"), &context);
    let risk = |f: &Facts| match f.get("churn_risk") {
        Some(FactValue::Double(Some(v))) => v,
        other => panic!("{other:?}"),
    };
    assert!(
        risk(&soon) < risk(&later),
        "six months of silence raise the risk"
    );
    let summary = later.outlook.summary().unwrap();
    assert_eq!(
        (
            summary.frequency,
            summary.recency,
            summary.age,
            summary.monetary
        ),
        (2, 74.0, 263.0, 5_000.0)
    );
    let score = predict::score(&model.model, summary, &model.scoring).unwrap();
    assert_eq!(
        later.get("churn_score"),
        Some(FactValue::Int(Some(i64::from(score.risk_score))))
    );
    assert_eq!(
        later.get("churn_band"),
        Some(FactValue::Text(Some(score.band.as_str())))
    );
    assert_eq!(
        later.get("p_alive"),
        Some(FactValue::Double(Some(score.p_alive)))
    );
    assert_eq!(
        later.get("expected_visits_90d"),
        Some(FactValue::Double(Some(score.expected_visits)))
    );
    let clv = (score.clv.unwrap() * 100.0).round() / 100.0;
    assert_eq!(
        later.get("predicted_clv"),
        Some(FactValue::Double(Some(clv)))
    );
    assert_eq!(later.outlook.fit_id(), Some(7));
}

#[test]
fn churn_facts_are_null_without_a_model_or_a_visit() {
    let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
    for name in [
        "churn_risk",
        "churn_score",
        "churn_band",
        "p_alive",
        "predicted_clv",
    ] {
        assert_eq!(facts.get(name).unwrap().to_string(), "null", "{name}");
    }
    let model = churn_model();
    let context = FactContext {
        tz: TZ,
        cycles: &Cycles::default(),
        model: Some(&model),
    };
    let mut r = record();
    r.visits = VisitAgg::default();
    let facts = Facts::derive_in(&r, at("2026-04-01"), &context);
    assert_eq!(facts.get("churn_risk"), Some(FactValue::Double(None)));
    assert!(
        CATALOGUE.iter().filter(|f| f.from_model).count() == 6,
        "every churn fact is marked as the model's"
    );
}

#[test]
fn days_are_calendar_days_in_the_clinic_zone() {
    let facts = Facts::derive(&record(), at("2026-03-21 00:10"), TZ);
    // Last visit 23:50 the evening before: one day ago, though 20 minutes.
    assert_eq!(facts.days_since_last_visit, Some(1));
    assert_eq!(facts.days_in_pool, 20);
    assert_eq!(facts.days_since_first_visit, Some(75));
    assert_eq!(facts.days_since_last_purchase, Some(39));
}

#[test]
fn in_pool_flags_compare_with_the_moment_of_entry() {
    let facts = Facts::derive(&record(), at("2026-04-01 09:00"), TZ);
    assert!(
        facts.visited_in_pool,
        "visit on 03-20 is after entry on 03-01"
    );
    assert!(!facts.purchased_in_pool, "order on 02-10 is before entry");
}

#[test]
fn money_is_yuan_and_profile_facts_are_typed() {
    let facts = Facts::derive(&record(), at("2026-06-14 09:00"), TZ);
    assert_eq!(facts.total_spend, 12800.5);
    assert_eq!(facts.age, Some(35));
    assert_eq!(facts.gender, Some(Gender::Female));
    assert_eq!(facts.tags, ["vip", "玻尿酸"]);
    assert_eq!(facts.days_since_last_contact, None);
}

#[test]
fn missing_history_is_null_not_zero() {
    let mut r = record();
    r.visits = VisitAgg::default();
    r.customer.birth_date = None;
    r.customer.city = Some(String::new());
    let facts = Facts::derive(&r, at("2026-04-01"), TZ);
    assert_eq!(facts.days_since_last_visit, None);
    assert_eq!(facts.visit_count, 0);
    assert!(!facts.visited_in_pool);
    assert_eq!(facts.age, None);
    assert_eq!(facts.city, None);
}

#[test]
fn every_catalogued_fact_resolves_and_nothing_else_does() {
    let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
    for def in CATALOGUE {
        assert!(
            facts.cel_value(def.name).is_some(),
            "{} does not resolve",
            def.name
        );
    }
    assert!(facts.cel_value("favourite_colour").is_none());
}

#[test]
fn values_display_as_reasons_show_them() {
    let facts = Facts::derive(&record(), at("2026-04-01"), TZ);
    let shown: Vec<String> = [
        "city",
        "total_spend",
        "visited_in_pool",
        "days_since_last_contact",
        "tags",
    ]
    .iter()
    .map(|n| facts.get(n).unwrap().to_string())
    .collect();
    assert_eq!(
        shown,
        [
            "\"上海\"",
            "12800.5",
            "true",
            "null",
            "[\"vip\", \"玻尿酸\"]"
        ]
    );
}

#[test]
fn dates_parse_strictly() {
    assert_eq!(
        parse_date("1990-06-15"),
        NaiveDate::from_ymd_opt(1990, 6, 15)
    );
    assert_eq!(parse_date("1990-02-30"), None);
    assert_eq!(parse_date("15/06/1990"), None);
}

#[test]
fn docs_define_every_fact() {
    let docs = include_str!("../../docs/facts.md");
    for def in CATALOGUE {
        assert!(
            docs.contains(&format!("`{}`", def.name)),
            "docs/facts.md does not define `{}`",
            def.name
        );
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn days_to_birthday_is_zero_on_the_day_and_counts_to_the_next_one() {
    let birth = date(1990, 6, 15);
    assert_eq!(days_to_birthday(birth, date(2026, 6, 15)), 0);
    assert_eq!(days_to_birthday(birth, date(2026, 6, 14)), 1);
    assert_eq!(days_to_birthday(birth, date(2026, 6, 16)), 364);
    assert_eq!(
        days_to_birthday(birth, date(2027, 6, 16)),
        365,
        "2028 is leap"
    );
}

#[test]
fn days_to_birthday_crosses_the_year_end() {
    let new_year = date(1985, 1, 1);
    assert_eq!(days_to_birthday(new_year, date(2026, 12, 31)), 1);
    assert_eq!(days_to_birthday(new_year, date(2026, 1, 1)), 0);
    let eve = date(1985, 12, 31);
    assert_eq!(days_to_birthday(eve, date(2026, 1, 1)), 364);
    assert_eq!(days_to_birthday(eve, date(2026, 12, 25)), 6);
}

#[test]
fn a_29_february_birthday_is_on_28_february_in_other_years() {
    let leap = date(1996, 2, 29);
    assert_eq!(days_to_birthday(leap, date(2027, 2, 28)), 0);
    assert_eq!(days_to_birthday(leap, date(2027, 2, 21)), 7);
    assert_eq!(
        days_to_birthday(leap, date(2028, 2, 28)),
        1,
        "2028 has a 29th"
    );
    assert_eq!(days_to_birthday(leap, date(2028, 2, 29)), 0);
    // The day after: next year's 28 February.
    assert_eq!(
        days_to_birthday(leap, date(2027, 3, 1)),
        365,
        "to 2028-02-29"
    );
    assert_eq!(
        days_to_birthday(leap, date(2028, 3, 1)),
        364,
        "to 2029-02-28"
    );
}

#[test]
fn birthday_facts_and_the_advisor_come_from_the_record() {
    let facts = Facts::derive(&record(), at("2026-06-10 23:30"), TZ);
    assert_eq!(facts.birth_month, Some(6));
    assert_eq!(facts.days_to_birthday, Some(5));
    assert_eq!(facts.current_month, 6);
    assert_eq!(facts.advisor.as_deref(), Some("王芳"));
    let mut r = record();
    r.customer.birth_date = None;
    r.customer.advisor = Some("  ".into());
    let facts = Facts::derive(&r, at("2026-06-10"), TZ);
    assert_eq!(facts.birth_month, None);
    assert_eq!(facts.days_to_birthday, None);
    assert_eq!(facts.advisor, None);
}
