//! The churn model through the real binary: the demo fits it on its
//! schedule, ticks record the fit they used and moves name it, and
//! `recall model fit|show|evaluate` explain it to a person.

mod common;

use common::{Clinic, stdout};
use predicates::prelude::*;

#[test]
fn the_demo_is_scored_by_a_scheduled_fit_that_every_decision_names() {
    let clinic = Clinic::demo(1500);
    // The demo replays 120 days with a weekly refit (Mondays 03:00): a fit
    // before the first tick, then one per week.
    let fits = clinic.count("SELECT count(*) FROM model_fits");
    assert!((17..=19).contains(&fits), "{fits} fits");
    assert_eq!(
        clinic.count("SELECT count(*) FROM ticks WHERE model_fit_id IS NULL"),
        0,
        "every tick records its fit"
    );
    // Each tick used the latest fit cut before it.
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM ticks t JOIN model_fits f ON f.id = t.model_fit_id
             WHERE f.as_of > t.at
                OR EXISTS (SELECT 1 FROM model_fits g WHERE g.as_of <= t.at AND g.as_of > f.as_of)"
        ),
        0
    );
    let predicted = clinic
        .count("SELECT count(*) FROM transitions WHERE rule_id = 'customer_to_warning_predicted'");
    assert!(predicted > 0, "the churn rule fired in the demo");
    assert_eq!(
        clinic.count(
            "SELECT count(*) FROM transitions t JOIN ticks k ON k.id = t.tick_id
             WHERE t.rule_id = 'customer_to_warning_predicted'
               AND t.reason NOT LIKE '%churn_risk=0._%model #' || k.model_fit_id || ']'"
        ),
        0,
        "every move by the churn rule names the fit its tick used"
    );
    assert!(
        clinic.count("SELECT count(*) FROM outreach WHERE rule_id = 'customer_treatment_due'") > 0,
        "treatment cycles fired in the demo"
    );

    let show = clinic.recall().args(["model", "show"]).output().unwrap();
    assert!(show.status.success());
    let text = stdout(&show);
    for expected in [
        "Churn model #",
        "customers' visits from",
        "BG/NBD  r = ",
        "Gamma-Gamma  p = ",
        " 90–100 ",
        "│ high ",
        "Mean churn risk",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    let histogram: usize = text
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric) && l.contains('–'))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum();
    assert_eq!(
        histogram, 1500,
        "the histogram counts every customer:\n{text}"
    );

    let evaluation = clinic
        .recall()
        .args(["model", "evaluate"])
        .output()
        .unwrap();
    assert!(evaluation.status.success());
    let text = stdout(&evaluation);
    assert!(
        text.contains("judged on who visited in the 90 days"),
        "{text}"
    );
    let auc: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("AUC ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no AUC in:\n{text}"));
    // Lapsing and one-visit customers against loyal ones: the score must
    // rank them clearly better than chance.
    assert!(auc > 0.65, "AUC {auc}:\n{text}");
    assert!(text.contains("precision, this band or higher"), "{text}");
    assert!(text.contains("Visit days in the holdout:"), "{text}");

    let chinese = clinic
        .recall()
        .args(["--lang", "zh", "model", "evaluate", "--holdout-days", "60"])
        .output()
        .unwrap();
    let text = stdout(&chinese);
    assert!(text.contains("流失模型检验"), "{text}");
    assert!(text.contains("之后 60 天"), "{text}");
    assert!(text.contains("实际流失率（精确率）"), "{text}");
    // Evaluating records nothing.
    assert_eq!(clinic.count("SELECT count(*) FROM model_fits"), fits);
}

#[test]
fn a_tick_after_a_refit_slot_refits_first_and_fit_records_one() {
    let clinic = Clinic::demo(300);
    let fits = clinic.count("SELECT count(*) FROM model_fits");
    // A week after the demo's last tick a Monday slot has passed.
    let out = clinic
        .recall()
        .args(["tick", "--at", "2099-01-05 09:00"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("refitted the churn model"),
        "{}",
        stdout(&out)
    );
    assert_eq!(clinic.count("SELECT count(*) FROM model_fits"), fits + 1);
    // The next day no slot has passed: no refit.
    let out = clinic
        .recall()
        .args(["tick", "--at", "2099-01-06 09:00"])
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("refitted"), "{}", stdout(&out));
    clinic
        .recall()
        .args(["model", "fit"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Churn model #"));
    assert_eq!(clinic.count("SELECT count(*) FROM model_fits"), fits + 2);
}

#[test]
fn without_a_model_or_enough_customers_the_commands_say_what_to_do() {
    let clinic = Clinic::new();
    clinic
        .recall()
        .args(["model", "show"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no churn model yet: run `recall model fit`",
        ));
    let small = Clinic::demo(40);
    assert_eq!(
        small.count("SELECT count(*) FROM model_fits"),
        0,
        "40 customers are too few for the default min_customers = 100"
    );
    small
        .recall()
        .args(["model", "fit"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("40 customers had visited by"))
        .stderr(predicate::str::contains(
            "needs at least 100 (`[model] min_customers`)",
        ));
}
