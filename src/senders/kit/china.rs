//! China time for the senders whose providers count by the China day or
//! month: daily limits that reset at midnight (Aliyun, Tencent, the
//! Official Account), send dates (Aliyun), sending hours (Tencent) and
//! monthly limits (WeCom). A pure function of `now`: no clock.

use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveTime, TimeZone, Utc};

/// China Standard Time (UTC+8, no daylight saving).
pub fn offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The next time it is `hour`:00 in China, strictly after `now`.
pub fn next_hour(now: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let local = now.with_timezone(&offset());
    let time = NaiveTime::from_hms_opt(hour, 0, 0).expect("hour below 24");
    let mut day = local.date_naive();
    if local.time() >= time {
        day = day + Days::new(1);
    }
    offset()
        .from_local_datetime(&day.and_time(time))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// How long until a daily limit resets: China midnight, plus a minute so the
/// retry does not race the reset.
pub fn until_midnight(now: DateTime<Utc>) -> Duration {
    let reset = next_hour(now, 0) + chrono::Duration::minutes(1);
    (reset - now).to_std().unwrap_or(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_days_start_at_utc_four_pm() {
        // 15:30 UTC is 23:30 in Beijing: midnight is 31 minutes away (with
        // the minute of margin).
        let now = DateTime::parse_from_rfc3339("2026-03-01T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_midnight(now), Duration::from_secs(31 * 60));
        // 23:30 UTC is 07:30 in Beijing: 08:00 is the same China day.
        let now = DateTime::parse_from_rfc3339("2026-03-01T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(next_hour(now, 8).to_rfc3339(), "2026-03-02T00:00:00+00:00");
    }
}
