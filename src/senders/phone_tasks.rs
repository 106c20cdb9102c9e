//! The `phone_tasks` sender: a phone message becomes a call task for a person
//! at the clinic, not a robot call.
//!
//! Tasks go round robin to the configured staff, within each person's daily
//! capacity; what exceeds today's capacity waits for the next working day
//! rather than piling up. Tasks are only planned inside working hours on
//! working days. Each task carries the call script rendered from the
//! template plus the customer's recent history. The message then awaits the
//! call: `recall tasks done ID --outcome ...` settles it (see
//! [`complete`]) and records the call as a follow-up (回访). Optionally a
//! WeCom group robot posts a notice when new tasks arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{BuildError, Context, SenderConfig};
use crate::clock::{self, Timestamp};
use crate::config::QuietHours;
use crate::dispatch::sender::{Outbound, PollOutcome, SendOutcome, Sender};
use crate::dispatch::{SharedStore, blocking};
use crate::mask;
use crate::model::Channel;
use crate::store::tasks::{CallOutcome, History, Settle, TaskRow};
use crate::store::{Store, StoreError};

/// `[senders.<name>]` with `kind = "phone_tasks"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The people who make the calls. Tasks go to them in turn.
    pub staff: Vec<Staff>,
    /// Clinic hours in which calls are made, e.g. "10:00-19:00".
    #[serde(default = "default_hours")]
    pub working_hours: String,
    /// Days on which calls are made (mon ... sun). Default Monday to Saturday.
    #[serde(default = "default_days")]
    pub working_days: Vec<String>,
    /// How many of the customer's latest visits, orders and follow-ups the
    /// call script lists.
    #[serde(default = "default_history")]
    pub history: u32,
    /// A `wecom_robot` sender (by name) that posts a notice to staff when
    /// new call tasks arrive.
    #[serde(default)]
    pub notify: Option<String>,
}

/// One person who makes calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    /// As staff know each other; shown on tasks and in `recall tasks`.
    pub name: String,
    /// Calls this person can make in a day.
    #[serde(default = "default_capacity")]
    pub daily_capacity: u32,
}

fn default_hours() -> String {
    "10:00-19:00".to_string()
}

fn default_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat"]
        .map(String::from)
        .to_vec()
}

fn default_history() -> u32 {
    3
}

fn default_capacity() -> u32 {
    40
}

/// When calls are made.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: Vec<Weekday>,
    pub tz: Tz,
}

impl Schedule {
    pub fn new(config: &Config, tz: Tz) -> Result<Schedule, String> {
        let hours = QuietHours::parse(&config.working_hours)
            .map_err(|why| format!("working_hours: {why}"))?;
        if hours.start > hours.end {
            return Err(format!(
                "working_hours `{}` must start before it ends on the same day",
                config.working_hours
            ));
        }
        let mut days = Vec::new();
        for day in &config.working_days {
            let weekday = day.parse::<Weekday>().map_err(|_| {
                format!("working_days: `{day}` is not a day (mon, tue, wed, thu, fri, sat, sun)")
            })?;
            days.push(weekday);
        }
        if days.is_empty() {
            return Err("working_days is empty: no call could ever be made".into());
        }
        Ok(Schedule {
            start: hours.start,
            end: hours.end,
            days,
            tz,
        })
    }

    fn works_on(&self, date: NaiveDate) -> bool {
        self.days.contains(&date.weekday())
    }

    /// Whether calls can be made at `now`.
    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        self.works_on(local.date_naive()) && self.start <= local.time() && local.time() < self.end
    }

    /// The start of the next working window strictly after today's (or
    /// today's, if it has not begun yet).
    pub fn next_start(&self, now: DateTime<Utc>, skip_today: bool) -> DateTime<Utc> {
        let local = now.with_timezone(&self.tz);
        let mut date = local.date_naive();
        if skip_today || local.time() >= self.start {
            date = date.succ_opt().unwrap_or(date);
        }
        for _ in 0..14 {
            if self.works_on(date)
                && let Some(at) = clock::local_to_utc(date.and_time(self.start), self.tz)
            {
                return at;
            }
            date = date.succ_opt().unwrap_or(date);
        }
        now + chrono::Duration::days(1)
    }
}

pub struct PhoneTasks {
    staff: Vec<Staff>,
    schedule: Schedule,
    history: u32,
    store: SharedStore,
    notify: Option<Arc<dyn Sender>>,
    /// Tasks created since the last notice: staff name → count.
    new_tasks: Mutex<BTreeMap<String, u32>>,
    /// Held while a task is planned and created: the dispatcher sends
    /// several messages at once, and two plans made side by side would both
    /// see the same free capacity.
    planning: tokio::sync::Mutex<()>,
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(PhoneTasks::new(name, config, ctx)?))
}

impl PhoneTasks {
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<PhoneTasks, BuildError> {
        if config.staff.is_empty() {
            return Err(BuildError::new(
                name,
                "staff is empty: add at least one person, e.g. staff = [{ name = \"小林\", daily_capacity = 40 }]",
            ));
        }
        if let Some(zero) = config.staff.iter().find(|s| s.daily_capacity == 0) {
            return Err(BuildError::new(
                name,
                format!("staff `{}` has daily_capacity 0", zero.name),
            ));
        }
        let schedule =
            Schedule::new(config, ctx.timezone).map_err(|why| BuildError::new(name, why))?;
        let notify = match &config.notify {
            None => None,
            Some(robot) => {
                let Some(robot_config) = ctx.senders.get(robot) else {
                    return Err(BuildError::new(
                        name,
                        format!(
                            "notify names sender `{robot}`, which is not defined under [senders]"
                        ),
                    ));
                };
                if !matches!(robot_config, SenderConfig::WecomRobot(_)) {
                    return Err(BuildError::new(
                        name,
                        format!(
                            "notify must name a sender of kind wecom_robot; `{robot}` is {}",
                            robot_config.kind()
                        ),
                    ));
                }
                Some(super::build(robot, robot_config, ctx)?)
            }
        };
        let store = Store::open(&ctx.database).map_err(|e| BuildError::new(name, e.to_string()))?;
        Ok(PhoneTasks {
            staff: config.staff.clone(),
            schedule,
            history: config.history,
            store: Arc::new(std::sync::Mutex::new(store)),
            notify,
            new_tasks: Mutex::new(BTreeMap::new()),
            planning: tokio::sync::Mutex::new(()),
        })
    }

    /// The next person in turn after the last one who got a task, among
    /// those with calls left on `date`.
    fn pick(&self, last: Option<&str>, planned: &BTreeMap<String, i64>) -> Option<&Staff> {
        let start = last
            .and_then(|name| self.staff.iter().position(|s| s.name == name))
            .map_or(0, |i| i + 1);
        (0..self.staff.len())
            .map(|offset| &self.staff[(start + offset) % self.staff.len()])
            .find(|s| planned.get(&s.name).copied().unwrap_or(0) < i64::from(s.daily_capacity))
    }

    async fn create(&self, message: &Outbound<'_>) -> Result<SendOutcome, StoreError> {
        let now = message.now;
        if !self.schedule.open_at(now) {
            let retry_at = self.schedule.next_start(now, false);
            return Ok(SendOutcome::Deferred {
                retry_at,
                reason: format!(
                    "calls are planned in working hours; waits until {}",
                    clock::format_local(retry_at.timestamp(), self.schedule.tz)
                ),
            });
        }
        let date = now
            .with_timezone(&self.schedule.tz)
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let customer = message.recipient.customer_id;
        let limit = i64::from(self.history);
        let (planned, last, history) = {
            let date = date.clone();
            blocking(&self.store, move |s| {
                Ok((
                    s.tasks_per_staff(&date)?,
                    s.last_assigned_staff()?,
                    s.history(customer, limit)?,
                ))
            })
            .await?
        };
        let Some(staff) = self.pick(last.as_deref(), &planned) else {
            let retry_at = self.schedule.next_start(now, true);
            return Ok(SendOutcome::Deferred {
                retry_at,
                reason: format!(
                    "every caller is fully booked today; waits until {}",
                    clock::format_local(retry_at.timestamp(), self.schedule.tz)
                ),
            });
        };
        let script = format!(
            "{}\n\n{}",
            message.content,
            describe(&history, self.schedule.tz)
        );
        let (outreach, attempt, name, at) = (
            message.id,
            message.attempt,
            staff.name.clone(),
            now.timestamp(),
        );
        let task = blocking(&self.store, move |s| {
            s.create_task(outreach, attempt, customer, &name, &date, &script, at)
        })
        .await?;
        tracing::info!(task, staff = %staff.name, customer = %message.recipient.external_id,
            phone = %mask::address(message.address), "call task created");
        *self
            .new_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(staff.name.clone())
            .or_default() += 1;
        Ok(SendOutcome::Awaiting {
            provider_id: format!("task-{task}"),
        })
    }
}

/// The customer's recent history as a script section.
fn describe(history: &History, tz: Tz) -> String {
    let day = |t: Timestamp| {
        clock::format_local(t, tz)
            .chars()
            .take(10)
            .collect::<String>()
    };
    let mut lines = vec!["——近况 / recent history——".to_string()];
    if history.visits.is_empty() {
        lines.push("到院 visits: 无".into());
    }
    for (at, department) in &history.visits {
        lines.push(
            format!(
                "到院 visit {} {}",
                day(*at),
                department.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        );
    }
    for (at, cents, project) in &history.orders {
        lines.push(
            format!(
                "消费 order {} {:.2} 元 {}",
                day(*at),
                *cents as f64 / 100.0,
                project.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        );
    }
    for (at, staff, result, note) in &history.followups {
        let mut line = format!(
            "回访 follow-up {} {} {}",
            day(*at),
            staff.as_deref().unwrap_or(""),
            result
        );
        if let Some(note) = note {
            line.push_str(&format!(" ({note})"));
        }
        lines.push(line);
    }
    lines.join("\n")
}

#[async_trait]
impl Sender for PhoneTasks {
    fn kind(&self) -> &'static str {
        "phone_tasks"
    }

    async fn send(&self, message: &Outbound<'_>) -> SendOutcome {
        let _planning = self.planning.lock().await;
        match self.create(message).await {
            Ok(outcome) => outcome,
            Err(e) => SendOutcome::Retryable {
                error: format!("could not create the call task: {e}"),
                retry_after: None,
            },
        }
    }

    /// Call tasks settle through `recall tasks done`, which updates the
    /// message directly; until then the message is pending.
    async fn poll(&self, provider_id: &str, _message: &Outbound<'_>) -> PollOutcome {
        let Some(id) = provider_id
            .strip_prefix("task-")
            .and_then(|n| n.parse::<i64>().ok())
        else {
            return PollOutcome::Failed {
                error: format!("`{provider_id}` is not a call task id"),
            };
        };
        match blocking(&self.store, move |s| s.task(id)).await {
            Ok(Some(_)) => PollOutcome::Pending,
            Ok(None) => PollOutcome::Failed {
                error: format!("call task {id} no longer exists"),
            },
            Err(e) => PollOutcome::Unknown {
                error: e.to_string(),
            },
        }
    }

    async fn after_round(&self, now: DateTime<Utc>) {
        let Some(robot) = &self.notify else { return };
        let pending: BTreeMap<String, u32> =
            std::mem::take(&mut *self.new_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        let total: u32 = pending.values().sum();
        let who: Vec<String> = pending
            .iter()
            .map(|(name, n)| format!("{name} {n} 个"))
            .collect();
        let text = format!(
            "新的回访电话任务 {total} 个：{}。请用 `recall tasks list` 查看并在通话后记录结果。",
            who.join("，")
        );
        let recipient = crate::store::outbox::Recipient::default();
        let notice = Outbound {
            id: 0,
            channel: Channel::Wechat,
            rule_id: "call_task_notice",
            template: "call_task_notice",
            subject: None,
            content: &text,
            html: None,
            params: None,
            recipient: &recipient,
            address: "",
            attempt: 1,
            previous_error: None,
            in_doubt: false,
            now,
        };
        match robot.send(&notice).await {
            SendOutcome::Sent { .. } => tracing::info!(total, "staff notified of new call tasks"),
            other => {
                tracing::warn!(outcome = ?other, "could not notify staff of new call tasks; will try again");
                let mut again = self.new_tasks.lock().unwrap_or_else(|p| p.into_inner());
                for (name, n) in pending {
                    *again.entry(name).or_default() += n;
                }
            }
        }
    }
}

/// Closes a call task with what the call achieved: a reached customer means
/// the message was sent; no answer tries again at the next working day's
/// start until the message's attempts run out; a wrong number fails it; an
/// opt-out withdraws phone consent. Returns the task, or `None` if there is
/// no open task with this id.
pub fn complete(
    store: &mut Store,
    schedule: &Schedule,
    max_attempts: u32,
    id: i64,
    outcome: CallOutcome,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<TaskRow>, StoreError> {
    let settle = match outcome {
        CallOutcome::ReachedBooked
        | CallOutcome::ReachedInterested
        | CallOutcome::ReachedDeclined => Settle::Sent,
        CallOutcome::WrongNumber => Settle::Failed("the number is not the customer's"),
        CallOutcome::OptOut => Settle::OptedOut,
        CallOutcome::NoAnswer => {
            let attempt = store.task(id)?.map_or(0, |t| t.attempt);
            if attempt >= i64::from(max_attempts) {
                Settle::Failed("nobody answered; out of attempts")
            } else {
                Settle::Retry(schedule.next_start(now, true).timestamp())
            }
        }
    };
    store.complete_task(id, outcome, note, settle, now.timestamp())
}

#[cfg(test)]
mod tests;
