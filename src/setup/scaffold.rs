//! What `recall init` writes: a commented `recall.toml` and the shipped rules
//! and templates, embedded in the binary so `init` works from anywhere.

/// `(path relative to the new folder, contents)` of every shipped file: the
/// rules, their tests (rules/tests) and the templates.
pub const FILES: &[(&str, &str)] = &[
    ("rules/01-new.toml", include_str!("../../rules/01-new.toml")),
    (
        "rules/02-customer.toml",
        include_str!("../../rules/02-customer.toml"),
    ),
    (
        "rules/03-warning.toml",
        include_str!("../../rules/03-warning.toml"),
    ),
    (
        "rules/04-maintenance.toml",
        include_str!("../../rules/04-maintenance.toml"),
    ),
    (
        "rules/05-churned.toml",
        include_str!("../../rules/05-churned.toml"),
    ),
    (
        "rules/tests/01-new.toml",
        include_str!("../../rules/tests/01-new.toml"),
    ),
    (
        "rules/tests/02-customer.toml",
        include_str!("../../rules/tests/02-customer.toml"),
    ),
    (
        "rules/tests/03-warning.toml",
        include_str!("../../rules/tests/03-warning.toml"),
    ),
    (
        "rules/tests/04-maintenance.toml",
        include_str!("../../rules/tests/04-maintenance.toml"),
    ),
    (
        "rules/tests/05-churned.toml",
        include_str!("../../rules/tests/05-churned.toml"),
    ),
    (
        "templates/email/churned_recall.html",
        include_str!("../../templates/email/churned_recall.html"),
    ),
    (
        "templates/email/churned_recall.subject.txt",
        include_str!("../../templates/email/churned_recall.subject.txt"),
    ),
    (
        "templates/email/churned_recall.txt",
        include_str!("../../templates/email/churned_recall.txt"),
    ),
    (
        "templates/email/welcome_back.html",
        include_str!("../../templates/email/welcome_back.html"),
    ),
    (
        "templates/email/welcome_back.subject.txt",
        include_str!("../../templates/email/welcome_back.subject.txt"),
    ),
    (
        "templates/email/welcome_back.txt",
        include_str!("../../templates/email/welcome_back.txt"),
    ),
    (
        "templates/phone/maintenance_call.txt",
        include_str!("../../templates/phone/maintenance_call.txt"),
    ),
    (
        "templates/phone/new_day1_call.txt",
        include_str!("../../templates/phone/new_day1_call.txt"),
    ),
    (
        "templates/phone/new_day30_call.txt",
        include_str!("../../templates/phone/new_day30_call.txt"),
    ),
    (
        "templates/phone/warning_call.txt",
        include_str!("../../templates/phone/warning_call.txt"),
    ),
    (
        "templates/phone/churn_risk_call.txt",
        include_str!("../../templates/phone/churn_risk_call.txt"),
    ),
    (
        "templates/sms/churned_recall.params.toml",
        include_str!("../../templates/sms/churned_recall.params.toml"),
    ),
    (
        "templates/sms/churned_recall.txt",
        include_str!("../../templates/sms/churned_recall.txt"),
    ),
    (
        "templates/sms/maintenance_offer.params.toml",
        include_str!("../../templates/sms/maintenance_offer.params.toml"),
    ),
    (
        "templates/sms/maintenance_offer.txt",
        include_str!("../../templates/sms/maintenance_offer.txt"),
    ),
    (
        "templates/sms/new_day14_reminder.params.toml",
        include_str!("../../templates/sms/new_day14_reminder.params.toml"),
    ),
    (
        "templates/sms/new_day14_reminder.txt",
        include_str!("../../templates/sms/new_day14_reminder.txt"),
    ),
    (
        "templates/sms/warning_offer.params.toml",
        include_str!("../../templates/sms/warning_offer.params.toml"),
    ),
    (
        "templates/sms/warning_offer.txt",
        include_str!("../../templates/sms/warning_offer.txt"),
    ),
    (
        "templates/wechat/back_to_customer.txt",
        include_str!("../../templates/wechat/back_to_customer.txt"),
    ),
    (
        "templates/wechat/customer_checkin.txt",
        include_str!("../../templates/wechat/customer_checkin.txt"),
    ),
    (
        "templates/wechat/treatment_due.txt",
        include_str!("../../templates/wechat/treatment_due.txt"),
    ),
    (
        "templates/wechat/maintenance_care.txt",
        include_str!("../../templates/wechat/maintenance_care.txt"),
    ),
    (
        "templates/wechat/new_day3_care.txt",
        include_str!("../../templates/wechat/new_day3_care.txt"),
    ),
    (
        "templates/wechat/new_day7_review.txt",
        include_str!("../../templates/wechat/new_day7_review.txt"),
    ),
    (
        "templates/wechat/new_to_customer.txt",
        include_str!("../../templates/wechat/new_to_customer.txt"),
    ),
    (
        "templates/wechat/warning_care.txt",
        include_str!("../../templates/wechat/warning_care.txt"),
    ),
    (
        "templates/wechat/welcome_back.txt",
        include_str!("../../templates/wechat/welcome_back.txt"),
    ),
];

/// The `recall.toml` that `init` writes, for a clinic called `name`.
pub fn config(name: &str) -> String {
    CONFIG.replace("{{name}}", &name.replace('"', "'"))
}

const CONFIG: &str = r#"# recall.toml: the recall service for one clinic.
# Secrets (API keys, SMTP passwords) never go in this file: senders read them
# from environment variables. Check every edit with `recall check`.

[clinic]
code = "main"                  # short, stable id of the clinic in the database
name = "{{name}}"
timezone = "Asia/Shanghai"     # days, schedules and quiet hours follow this zone
phone = "400-000-0000"         # templates show it as {{ clinic.phone }}

[paths]                        # relative to this file
database = "data/recall.db"
rules = "rules"
templates = "templates"

[schedule]
# When the rules are evaluated, in clinic time: minute hour day month weekday.
ticks = ["0 9 * * *"]          # every day at 09:00
dispatch_every = "30s"         # how often due messages are sent

[dispatch]
max_per_customer = "4/7d"      # at most 4 messages per customer a week, all channels together
batch_size = 200               # messages per dispatch round
give_up_after = "48h"          # a provider failing (outage, timeout, throttling) is retried this long, then `failed`
max_attempts = 5               # calls nobody answers: call tasks made for a phone message in all
retry_backoff = "1m"           # first retry after this long, doubling each time
max_backoff = "6h"             # ... up to this long
# concurrency = 32            # messages sent at once; a crash can send at most this many twice

# Senders carry the messages. The `log` sender records each message in the
# outreach log (`recall log`) and in `file`, and marks it sent, without
# reaching the customer: the safe way to start.
[senders.log]
kind = "log"
file = "data/outbox.log"

# Which sender carries each channel, and its policy. A channel without a
# sender keeps its messages queued.
#   cost              yuan per message, for the recall report
#   quiet_hours       clinic-time window with no messages; they wait for its end
#   max_per_customer  at most N messages per customer in a rolling window
#   fallback          another channel for customers this one cannot reach
[channels.sms]
sender = "log"
cost = 0.045
quiet_hours = "21:00-09:00"
max_per_customer = "2/7d"

[channels.phone]
sender = "log"
cost = 2.0                     # staff time per call
quiet_hours = "20:00-10:00"

[channels.wechat]
sender = "log"
cost = 0.0
quiet_hours = "22:00-08:00"
max_per_customer = "3/7d"      # pushing too often backfires

[channels.email]
sender = "log"
cost = 0.005

# Consent (PIPL): a new customer's consent for a channel when the imported
# customers file says nothing about it (no consent column such as 短信同意 /
# consent_sms, or an empty cell). true counts silence as consent; false
# sends nothing on that channel until a file says yes. `recall import` says
# when it applied this. Customers already in the database keep theirs.
[consent]
default_when_absent = true

# Treatment cycles: how many days after a treatment the next one is due, by
# project (or, for projects not listed, by department), as on the orders.
# Rules read them as `days_overdue` and `expected_revisit_days`; a project
# without a cycle (a surgery) is never "due".
[cycles]
"水光针" = 30
"光子嫩肤" = 30
"超皮秒祛斑" = 60
"肉毒素除皱" = 120
"玻尿酸" = 270
"热玛吉" = 365
"牙齿美白" = 180
"皮肤科" = 45                  # any other skin treatment

# The churn model behind `churn_risk`, `churn_band`, `p_alive`,
# `expected_visits_90d` and `predicted_clv` (see `recall model show` and
# `recall model evaluate`). The service refits it on this schedule.
[model]
refit = "0 3 * * 1"            # Mondays at 03:00, clinic time
churn_window_days = 90         # churn_risk = chance of no visit in this many days
medium_risk_from = 50          # churn_band "medium" from this churn_score (0-100)
high_risk_from = 80            # ... and "high" from this one
# visit_window_days = 90       # expected_visits_90d looks this far ahead
# clv_months = 12              # predicted_clv: months ahead...
# monthly_discount_rate = 0.01 # ... discounted by 1% a month
# min_customers = 100          # fewer customers with a visit: no model, churn facts stay null

# How long finished messages are kept (deleted daily by the service; pool
# moves are kept). At least 90 days.
# [retention]
# messages = "2y"

# Health check (/healthz) and Prometheus metrics (/metrics) over HTTP, on
# loopback only.
# [metrics]
# listen = "127.0.0.1:9464"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, root, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }

    #[test]
    fn every_shipped_rule_and_template_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        files_under(&root.join("rules"), root, &mut on_disk);
        files_under(&root.join("templates"), root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
