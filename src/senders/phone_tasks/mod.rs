//! The `phone_tasks` sender: a phone message becomes a call task for a person
//! at the clinic, not a robot call.
//!
//! Tasks go round robin to the configured staff, within each person's daily
//! capacity; what exceeds today's capacity waits for the next working day
//! rather than piling up. A message whose action says `assign = "advisor"`
//! goes to the customer's own advisor (专属顾问, a staff entry with
//! `advisor = true` of that name) when they can take it today: not `off`,
//! with calls left. Otherwise (no advisor, an advisor not among the staff,
//! off or fully booked) it goes to the round robin, so the call is still
//! made. Tasks are only planned inside working hours on
//! working days. Each task carries the call script rendered from the
//! template plus the customer's recent history. The message then awaits the
//! call: `recall tasks done ID --outcome ...` settles it (see
//! [`complete`]) and records the call as a follow-up (回访). Optionally a
//! WeCom group robot posts a notice when new tasks arrive: the notice owed
//! is kept with the tasks in the database, and every dispatch pass sends
//! what is owed, so a notice that failed goes out with a later pass (of
//! this process or the next `recall dispatch`) or is given up with the
//! reason in the log.

pub mod sheet;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{BuildError, Context, Invalid, Problems, SenderConfig};
use crate::base::clock::{self, Timestamp};
use crate::base::content::Content;
use crate::base::mask;
use crate::config::QuietHours;
use crate::dispatch::sender::{Outbound, PollOutcome, SendOutcome, Sender};
use crate::store::shared::{SharedStore, blocking};
use crate::store::tasks::{CallOutcome, History, NewTask, OwedNotice, Settle, TaskRow};
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
    /// A customer's own advisor (专属顾问): gets the calls of the customers
    /// whose `advisor` is this `name`, from actions with
    /// `assign = "advisor"`. Advisors take round-robin calls too.
    #[serde(default)]
    pub advisor: bool,
    /// Away (on leave, 休假): gets no call; their customers' calls go to
    /// the round robin.
    #[serde(default)]
    pub off: bool,
}

impl Staff {
    /// Whether this person can take another call on a day they already
    /// have `planned` calls for.
    fn free(&self, planned: &BTreeMap<String, i64>) -> bool {
        !self.off && planned.get(&self.name).copied().unwrap_or(0) < i64::from(self.daily_capacity)
    }
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
    pub fn new(config: &Config, tz: Tz) -> Result<Schedule, Invalid> {
        let hours = QuietHours::parse(&config.working_hours).map_err(|why| {
            Invalid::new(
                "working_hours",
                format!("working_hours: {why}"),
                "working_hours 写得不对：应写成如 \"10:00-19:00\" 的时段",
            )
        })?;
        if hours.start > hours.end {
            return Err(Invalid::new(
                "working_hours",
                format!(
                    "working_hours `{}` must start before it ends on the same day",
                    config.working_hours
                ),
                format!(
                    "working_hours `{}` 必须在同一天内先开始后结束",
                    config.working_hours
                ),
            ));
        }
        let mut days = Vec::new();
        for day in &config.working_days {
            let weekday = day.parse::<Weekday>().map_err(|_| {
                Invalid::new(
                    "working_days",
                    format!(
                        "working_days: `{day}` is not a day (mon, tue, wed, thu, fri, sat, sun)"
                    ),
                    format!(
                        "working_days：`{day}` 不是星期几（mon、tue、wed、thu、fri、sat、sun）"
                    ),
                )
            })?;
            days.push(weekday);
        }
        if days.is_empty() {
            return Err(Invalid::new(
                "working_days",
                "working_days is empty: no call could ever be made",
                "working_days 为空：永远无法安排电话",
            ));
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
    /// Held while a task is planned and created: the dispatcher sends
    /// several messages at once, and two plans made side by side would both
    /// see the same free capacity.
    planning: tokio::sync::Mutex<()>,
}

/// Checks a config without touching the environment, the database or the
/// network, and reports every problem at once. `senders` are all the
/// configured senders: `notify` must name a WeCom robot among them.
pub fn validate(
    config: &Config,
    senders: &BTreeMap<String, SenderConfig>,
) -> Result<(), Vec<Invalid>> {
    let mut problems = Problems::default();
    if config.staff.is_empty() {
        problems.push(Invalid::new(
            "staff",
            "staff is empty: add at least one person, e.g. staff = [{ name = \"小林\", daily_capacity = 40 }]",
            "staff 为空：请至少添加一人，例如 staff = [{ name = \"小林\", daily_capacity = 40 }]",
        ));
    }
    if let Some(zero) = config.staff.iter().find(|s| s.daily_capacity == 0) {
        problems.push(Invalid::new(
            "staff",
            format!("staff `{}` has daily_capacity 0", zero.name),
            format!("员工 `{}` 的 daily_capacity 为 0", zero.name),
        ));
    }
    if !config.staff.is_empty() && config.staff.iter().all(|s| s.off) {
        problems.push(Invalid::new(
            "staff",
            "every staff member is off: no call could be made; set off = false for someone",
            "所有员工都设为 off（休假）：没有人能打电话；请至少让一人 off = false",
        ));
    }
    problems.take(Schedule::new(config, chrono_tz::UTC));
    if let Some(robot) = &config.notify {
        match senders.get(robot) {
            None => problems.push(Invalid::new(
                "notify",
                format!("notify names sender `{robot}`, which is not defined under [senders]"),
                format!("notify 指定的发送器 `{robot}` 没有在 [senders] 中定义"),
            )),
            Some(SenderConfig::WecomRobot(_)) => {}
            Some(other) => problems.push(Invalid::new(
                "notify",
                format!(
                    "notify must name a sender of kind wecom_robot; `{robot}` is {}",
                    other.kind()
                ),
                format!(
                    "notify 必须指定 wecom_robot 类型的发送器；`{robot}` 是 {}",
                    other.kind()
                ),
            )),
        }
    }
    problems.finish(Some(()))
}

pub fn build(name: &str, config: &Config, ctx: &Context) -> Result<Arc<dyn Sender>, BuildError> {
    Ok(Arc::new(PhoneTasks::new(name, config, ctx)?))
}

impl PhoneTasks {
    pub fn new(name: &str, config: &Config, ctx: &Context) -> Result<PhoneTasks, BuildError> {
        validate(config, &ctx.senders).map_err(|p| BuildError::invalid(name, &p))?;
        let schedule = Schedule::new(config, ctx.timezone)
            .map_err(|invalid| BuildError::invalid(name, &[invalid]))?;
        let notify = match config
            .notify
            .as_ref()
            .and_then(|robot| ctx.senders.get(robot).map(|c| (robot, c)))
        {
            Some((robot, robot_config)) => Some(super::build(robot, robot_config, ctx)?),
            None => None,
        };
        let store = Store::open(&ctx.database).map_err(|e| BuildError::new(name, e.to_string()))?;
        Ok(PhoneTasks {
            staff: config.staff.clone(),
            schedule,
            history: config.history,
            store: Arc::new(std::sync::Mutex::new(store)),
            notify,
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
            .find(|s| s.free(planned))
    }

    /// The customer's advisor `name` if they are among the staff as an
    /// advisor and can take a call today.
    fn advisor(&self, name: &str, planned: &BTreeMap<String, i64>) -> Option<&Staff> {
        self.staff
            .iter()
            .find(|s| s.advisor && s.name == name)
            .filter(|s| s.free(planned))
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
        let outreach = message.id;
        let (planned, last, history, assigned) = {
            let date = date.clone();
            blocking(&self.store, move |s| {
                Ok((
                    s.tasks_per_staff(&date)?,
                    s.last_assigned_staff()?,
                    s.history(customer, limit)?,
                    s.assigned_to(outreach)?,
                ))
            })
            .await?
        };
        let advisor = assigned
            .as_deref()
            .and_then(|name| self.advisor(name, &planned));
        if let (Some(name), None) = (&assigned, advisor) {
            tracing::info!(advisor = %name, customer = %message.recipient.external_id,
                "the customer's advisor is not among the staff as an advisor, is off or fully booked today: the call goes to the round robin");
        }
        let Some(staff) = advisor.or_else(|| self.pick(last.as_deref(), &planned)) else {
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
            message.content.body,
            describe(&history, self.schedule.tz)
        );
        let (attempt, name, at) = (message.attempt, staff.name.clone(), now.timestamp());
        let (notice, via_advisor) = (self.notify.is_some(), advisor.is_some());
        let task = blocking(&self.store, move |s| {
            let task = NewTask {
                outreach_id: outreach,
                attempt,
                customer_id: customer,
                staff: &name,
                via_advisor,
                due_date: &date,
                script: &script,
                notice,
            };
            s.create_task(&task, at)
        })
        .await?;
        tracing::info!(task, staff = %staff.name, via_advisor, customer = %message.recipient.external_id,
            phone = %mask::address(message.address), "call task created");
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

    /// Sends the staff notice owed for new call tasks, if any: after every
    /// dispatch round, whether or not the round created tasks, so a notice
    /// that failed is sent by a later one.
    async fn after_round(&self, now: DateTime<Utc>) {
        let Some(robot) = &self.notify else { return };
        if let Err(e) = self.announce(robot.as_ref(), now).await {
            tracing::warn!(error = %e, "could not read or record the staff notice about call tasks; the next dispatch tries again");
        }
    }
}

impl PhoneTasks {
    /// Posts one notice about every call task a notice is owed for, and
    /// settles them: when it goes through, and when it never can (the robot
    /// refuses it for good: the reason is logged). A notice that may go
    /// through later (throttled, the robot unreachable) stays owed. Tasks
    /// already done, or planned for a day that has passed, are not
    /// announced any more.
    async fn announce(&self, robot: &dyn Sender, now: DateTime<Utc>) -> Result<(), StoreError> {
        let owed = blocking(&self.store, |s| s.notices_owed()).await?;
        if owed.is_empty() {
            return Ok(());
        }
        let today = now
            .with_timezone(&self.schedule.tz)
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let (current, stale): (Vec<OwedNotice>, Vec<OwedNotice>) = owed
            .into_iter()
            .partition(|task| task.open && task.due_date >= today);
        if !stale.is_empty() {
            tracing::info!(
                tasks = stale.len(),
                "no staff notice for call tasks already done or planned for a day that has passed"
            );
            self.settle_notices(&stale).await?;
        }
        if current.is_empty() {
            return Ok(());
        }
        let mut per_staff: BTreeMap<&str, u32> = BTreeMap::new();
        for task in &current {
            *per_staff.entry(task.staff.as_str()).or_default() += 1;
        }
        let total = current.len();
        let who: Vec<String> = per_staff
            .iter()
            .map(|(name, n)| format!("{name} {n} 个"))
            .collect();
        let text = format!(
            "新的回访电话任务 {total} 个：{}。请用 `recall tasks list` 查看并在通话后记录结果。",
            who.join("，")
        );
        let recipient = crate::store::outbox::Recipient::default();
        let content = Content::text(text);
        let notice = Outbound::staff_notice("call_task_notice", &content, &recipient, now);
        match robot.send(&notice).await {
            SendOutcome::Sent { .. } => {
                tracing::info!(tasks = total, "staff notified of new call tasks");
                self.settle_notices(&current).await
            }
            SendOutcome::Retryable { error, .. } | SendOutcome::Refused { error, .. } => {
                tracing::warn!(tasks = total, %error,
                    "could not notify staff of new call tasks; the next dispatch tries again");
                Ok(())
            }
            SendOutcome::Deferred { reason, .. } => {
                tracing::info!(tasks = total, %reason,
                    "the staff notice about new call tasks waits for the next dispatch");
                Ok(())
            }
            SendOutcome::Permanent { error: why } | SendOutcome::OptedOut { reason: why } => {
                tracing::warn!(tasks = total, error = %why,
                    "gave up the staff notice about new call tasks: the robot will never take it");
                self.settle_notices(&current).await
            }
            SendOutcome::Awaiting { provider_id } => {
                tracing::warn!(
                    tasks = total,
                    provider_id,
                    "gave up the staff notice about new call tasks: the notify sender hands messages to a person instead of posting them"
                );
                self.settle_notices(&current).await
            }
        }
    }

    async fn settle_notices(&self, tasks: &[OwedNotice]) -> Result<(), StoreError> {
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        blocking(&self.store, move |s| s.notices_settled(&ids)).await
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
    let attempt = store.task(id)?.map_or(0, |t| t.attempt);
    let settle = settle(schedule, max_attempts, attempt, outcome, now);
    store.complete_task(id, outcome, note, settle, now.timestamp())
}

/// How a call's outcome settles its message, the call being attempt
/// `attempt` of it.
fn settle(
    schedule: &Schedule,
    max_attempts: u32,
    attempt: i64,
    outcome: CallOutcome,
    now: DateTime<Utc>,
) -> Settle {
    match outcome {
        CallOutcome::ReachedBooked
        | CallOutcome::ReachedInterested
        | CallOutcome::ReachedDeclined => Settle::Sent,
        CallOutcome::WrongNumber => Settle::Failed("the number is not the customer's"),
        CallOutcome::OptOut => Settle::OptedOut,
        CallOutcome::NoAnswer if attempt >= i64::from(max_attempts) => {
            Settle::Failed("nobody answered; out of attempts")
        }
        CallOutcome::NoAnswer => Settle::Retry(schedule.next_start(now, true).timestamp()),
    }
}

#[cfg(test)]
mod tests;
