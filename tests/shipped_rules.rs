//! The shipped rules implement the seed's pool model. One customer lives
//! through the whole recall flow, ticked every morning for 300 days:
//! new → customer → warning → maintenance → churned → (recalled)
//! maintenance → customer, with the follow-up cadence on the way.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{Clinic, at};
use recall::engine::{self, Engine, TickOptions};
use recall::store::Store;
use recall::store::ingest::NewCustomer;

fn day(n: i64, hour: i64) -> DateTime<Utc> {
    at("2026-01-01 00:00") + Duration::days(n) + Duration::hours(hour)
}

#[test]
fn one_customer_through_the_whole_recall_flow() {
    let clinic = Clinic::new();
    let loaded = clinic.load();
    let mut store = Store::open(&clinic.database()).unwrap();
    let clinic_id = store
        .ensure_clinic("main", "测试诊所", "Asia/Shanghai", 0)
        .unwrap();
    let customer = {
        let mut ingest = store.ingest().unwrap();
        let customer = NewCustomer {
            phone: Some("13812345678".into()),
            gender: Some(recall::base::model::Gender::Female),
            ..NewCustomer::named("C1", "王丽")
        };
        let id = ingest
            .add_customer(clinic_id, &customer, day(0, 10).timestamp())
            .unwrap();
        ingest
            .add_visit(id, day(0, 10).timestamp(), Some("皮肤科"))
            .unwrap();
        ingest
            .add_order(
                id,
                day(0, 11).timestamp(),
                298_000,
                Some("水光针"),
                Some("皮肤科"),
            )
            .unwrap();
        // Second visit on day 20; silence until a recall brings her back on day 250.
        ingest.add_visit(id, day(20, 10).timestamp(), None).unwrap();
        ingest
            .add_visit(id, day(250, 10).timestamp(), None)
            .unwrap();
        ingest
            .add_visit(id, day(255, 10).timestamp(), None)
            .unwrap();
        ingest
            .add_order(
                id,
                day(255, 11).timestamp(),
                680_000,
                Some("玻尿酸"),
                Some("注射科"),
            )
            .unwrap();
        ingest.commit().unwrap();
        id
    };
    let engine = Engine::new(
        &loaded.config.clinic,
        clinic_id,
        &loaded.rules,
        &loaded.templates,
    );
    let mut fired = Vec::new();
    for n in 1..=300 {
        let report = engine::tick(&mut store, &engine, TickOptions::at(day(n, 9))).unwrap();
        for (rule, count) in &report.by_rule {
            assert_eq!(count.errors, 0, "day {n}: {rule}: {:?}", count.first_error);
            if count.fired > 0 {
                fired.push((n, rule.clone()));
            }
        }
    }
    let expected: Vec<(i64, String)> = [
        (1, "new_day1_call"),
        (3, "new_day3_wechat"),
        (7, "new_day7_wechat"),
        (14, "new_day14_sms"),
        (21, "new_to_customer"),
        // 水光针 is due every 30 days (`[cycles]`): a reminder 3 days early,
        // and no generic 60-day check-in for a customer with a known cycle.
        (27, "customer_treatment_due"),
        (110, "customer_to_warning_inactive"),
        (117, "warning_offer_sms"),
        (124, "warning_to_maintenance"),
        (145, "maintenance_offer_sms"),
        (164, "maintenance_care_wechat"),
        (184, "maintenance_to_churned"),
        (214, "churned_recall_sms"),
        (251, "churned_returned"),
        (281, "maintenance_stable"),
    ]
    .into_iter()
    .map(|(d, r)| (d, r.to_string()))
    .collect();
    assert_eq!(fired, expected);

    let conn = rusqlite::Connection::open(clinic.database()).unwrap();
    let path: Vec<String> = conn
        .prepare("SELECT to_pool FROM transitions WHERE customer_id = ?1 ORDER BY at, id")
        .unwrap()
        .query_map([customer], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        path,
        [
            "new",
            "customer",
            "warning",
            "maintenance",
            "churned",
            "maintenance",
            "customer"
        ]
    );

    // Every move says which rule made it and why, with the facts it read.
    let reason: String = conn
        .query_row(
            "SELECT reason FROM transitions WHERE rule_id = 'customer_to_warning_inactive'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        reason,
        "days_since_last_visit >= 90 && (days_overdue == null || days_overdue >= 30) \
         [days_overdue=80, days_since_last_visit=90]"
    );

    // Messages are rendered for the customer, with the clinic's details.
    let sms: String = conn
        .query_row(
            "SELECT content FROM outreach WHERE rule_id = 'warning_offer_sms'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sms.starts_with("王女士您好，好久不见！测试诊所"), "{sms}");
    assert!(sms.ends_with("回T退订"), "{sms}");
    let due: i64 = conn
        .query_row(
            "SELECT due_at FROM outreach WHERE rule_id = 'new_to_customer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        due,
        day(21, 11).timestamp(),
        "the welcome waits its 2h delay"
    );
}

/// Every shipped rule that markets keeps a control group, so the report can
/// say what it caused (docs/report.md sizes each share); service contacts
/// (calls, welcome and post-treatment messages) keep none, since holding
/// them back would hold back service.
#[test]
fn shipped_marketing_rules_keep_a_control_group_and_service_contacts_do_not() {
    let service = [
        "new_to_customer",
        "new_day3_wechat",
        "new_day7_wechat",
        "maintenance_stable",
        "churned_returned",
    ];
    let loaded = Clinic::new().load();
    let mut marketing = 0;
    for rule in loaded.rules.rules.iter().filter(|r| !r.actions.is_empty()) {
        let calls = rule
            .actions
            .iter()
            .all(|a| a.channel == recall::base::model::Channel::Phone);
        if calls || service.contains(&rule.id.as_str()) {
            assert_eq!(rule.holdout, 0.0, "{} is a service contact", rule.id);
        } else {
            marketing += 1;
            assert!(
                (0.1..=0.25).contains(&rule.holdout),
                "{} markets: it needs a control group (holdout {})",
                rule.id,
                rule.holdout
            );
        }
    }
    assert_eq!(marketing, 8, "the shipped marketing rules");
}
