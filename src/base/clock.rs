//! Time: parsing `--at`, the clinic's time zone, and calendar-day arithmetic.
//!
//! Nothing in `recall` reads the wall clock except through [`Clock`], so ticks,
//! dispatch and backtests are deterministic: tests pass a fixed time, the
//! daemon passes the system clock. Stored times are Unix seconds (UTC); days
//! are counted on the clinic's calendar, never as raw 24-hour spans.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Seconds since the Unix epoch, UTC. The store's unit of time.
pub type Timestamp = i64;

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant: `--at`, tests, backtests.
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(at) => *at,
        }
    }

    /// From an optional `--at` argument: fixed if given, the system clock if not.
    pub fn from_arg(at: Option<DateTime<Utc>>) -> Clock {
        at.map_or(Clock::System, Clock::Fixed)
    }
}

/// A time given on the command line could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the time `{0}`: use `2026-03-01`, `2026-03-01 09:30` (clinic time) or RFC 3339 such as `2026-03-01T09:30:00+08:00`"
)]
pub struct BadTime(pub String);

/// Parses a time as staff type it. Times without an offset are in the clinic's
/// time zone; a bare date means midnight at the start of that day; `now` is
/// the caller's `now` (its clock's, read once by the caller).
pub fn parse_time(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadTime> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local_to_utc(naive, tz).ok_or_else(|| BadTime(text.to_string()));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local_to_utc(date.and_time(NaiveTime::MIN), tz)
            .ok_or_else(|| BadTime(text.to_string()));
    }
    Err(BadTime(text.to_string()))
}

/// A clinic-local wall time as UTC. In a daylight-saving gap the time does not
/// exist and the next valid instant is used; in an overlap, the earlier one.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let mut candidate = naive;
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&candidate).earliest() {
            return Some(at.with_timezone(&Utc));
        }
        candidate += chrono::Duration::minutes(30);
    }
    None
}

/// The clinic-calendar day of an instant, as a day number (days since
/// 1970-01-01 in the clinic's calendar). Differences of day numbers are
/// "days since" as staff count them: yesterday is 1 day ago at any hour.
pub fn local_day(at: Timestamp, tz: Tz) -> i64 {
    // The zone's offset at that instant, then plain arithmetic: a tick
    // computes millions of these, and building a calendar date for each cost
    // more than the rest of the fact (measured on `recall bench`).
    (at + utc_offset(at, tz)).div_euclid(86_400)
}

/// The clinic's UTC offset at `at`, in seconds: SQL counts clinic days as
/// `(at + offset) / 86400`.
pub fn utc_offset(at: Timestamp, tz: Tz) -> i64 {
    let utc = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// `NaiveDate::from_ymd(1970, 1, 1).num_days_from_ce()`.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// A calendar date from a day number.
pub fn day_to_date(day: i64) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt((day + EPOCH_DAYS_FROM_CE) as i32).unwrap_or_default()
}

/// Whole years between a birth date and a day, as people count their age.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i64 {
    let mut age = i64::from(today.year() - birth.year());
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// Formats a stored time in the clinic's zone, for tables and logs.
pub fn format_local(at: Timestamp, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Formats a stored time as RFC 3339 in the clinic's zone, for CSV and JSON.
pub fn format_rfc3339(at: Timestamp, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map(|t| t.with_timezone(&tz).to_rfc3339())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;
    /// The caller's now: only the word `now` reads it.
    const NOW: DateTime<Utc> = DateTime::UNIX_EPOCH;

    #[test]
    fn local_day_is_the_calendar_day_in_the_zone() {
        // Around midnight, across DST changes and before 1970.
        let zones = [
            SHANGHAI,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
        ];
        let instants = [
            -86_400 * 400 - 1,
            0,
            1_772_294_399, // 2026-02-28 15:59:59 UTC: Shanghai's last second of the day
            1_772_294_400,
            1_773_471_600, // 2026-03-14 07:00 UTC, around New York's DST change
            1_773_554_400,
            1_775_318_400,
        ];
        for tz in zones {
            for at in instants
                .iter()
                .flat_map(|&t| [t - 3_600, t - 1, t, t + 1, t + 3_600])
            {
                let date = DateTime::<Utc>::from_timestamp(at, 0)
                    .unwrap()
                    .with_timezone(&tz)
                    .date_naive();
                assert_eq!(day_to_date(local_day(at, tz)), date, "{at} in {tz}");
            }
        }
    }

    #[test]
    fn bare_dates_and_wall_times_are_clinic_local() {
        let midnight = parse_time("2026-03-01", SHANGHAI, NOW).unwrap();
        assert_eq!(midnight.to_rfc3339(), "2026-02-28T16:00:00+00:00");
        let morning = parse_time("2026-03-01 09:30", SHANGHAI, NOW).unwrap();
        assert_eq!(morning.to_rfc3339(), "2026-03-01T01:30:00+00:00");
        let explicit = parse_time("2026-03-01T09:30:00Z", SHANGHAI, NOW).unwrap();
        assert_eq!(explicit.to_rfc3339(), "2026-03-01T09:30:00+00:00");
    }

    #[test]
    fn now_is_the_callers_now() {
        let at = parse_time("2026-03-01 09:30", SHANGHAI, NOW).unwrap();
        assert_eq!(parse_time("now", SHANGHAI, at).unwrap(), at);
        assert_eq!(parse_time(" NOW ", SHANGHAI, at).unwrap(), at);
    }

    #[test]
    fn unreadable_times_explain_the_accepted_forms() {
        let err = parse_time("March 1st", SHANGHAI, NOW).unwrap_err();
        assert!(err.to_string().contains("2026-03-01 09:30"));
    }

    #[test]
    fn days_are_counted_on_the_clinic_calendar() {
        // 23:30 and 00:30 the next morning, Shanghai time: one hour apart, one day apart.
        let late = parse_time("2026-03-01 23:30", SHANGHAI, NOW)
            .unwrap()
            .timestamp();
        let early = parse_time("2026-03-02 00:30", SHANGHAI, NOW)
            .unwrap()
            .timestamp();
        assert_eq!(local_day(early, SHANGHAI) - local_day(late, SHANGHAI), 1);
        // Same UTC day but different Shanghai days.
        assert_eq!(
            day_to_date(local_day(early, SHANGHAI)),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
    }

    #[test]
    fn age_counts_completed_years() {
        let birth = NaiveDate::from_ymd_opt(1990, 6, 15).unwrap();
        let before = NaiveDate::from_ymd_opt(2026, 6, 14).unwrap();
        let on = NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
        assert_eq!(age_on(birth, before), 35);
        assert_eq!(age_on(birth, on), 36);
    }

    #[test]
    fn times_in_a_daylight_saving_gap_move_forward() {
        let new_york: Tz = chrono_tz::America::New_York;
        let at = parse_time("2026-03-08 02:30", new_york, NOW).unwrap();
        assert_eq!(
            at.with_timezone(&new_york).format("%H:%M").to_string(),
            "03:00"
        );
    }
}
