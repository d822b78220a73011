//! Event time, windows and durations.
//!
//! Event time is `u64` milliseconds since the Unix epoch, UTC. It is also the
//! timely timestamp: a record travels at a timely time that is a lower bound on
//! its event time (the watermark of its partition when it was read), so the
//! frontier of a stream is its event-time progress. A record whose event time
//! is below the timely time it travels at is *late*.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Event time in milliseconds since the Unix epoch, UTC (also timely's time).
pub type EventTime = u64;

/// One second in milliseconds.
pub const SECOND: u64 = 1_000;
/// One minute in milliseconds.
pub const MINUTE: u64 = 60 * SECOND;
/// One hour in milliseconds.
pub const HOUR: u64 = 60 * MINUTE;
/// One day in milliseconds.
pub const DAY: u64 = 24 * HOUR;

/// The end of the event times a source accepts: 10000-01-01T00:00:00Z.
/// A record at or after it is rejected like one too far in the future
/// (counted, never emitted): window ends, timers and bounds past it would
/// come near `u64::MAX` and overflow, and no date after it has four digits.
pub const MAX_EVENT_TIME: EventTime = 253_402_300_800_000;

/// A half-open event-time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond inside the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
}

impl Window {
    /// Builds `[start, end)`.
    pub fn new(start: EventTime, end: EventTime) -> Self {
        Window { start, end }
    }

    /// Whether `ts` lies inside the window.
    pub fn contains(&self, ts: EventTime) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// The wall clock, in ms since the Unix epoch (0 before it).
pub fn wall_clock_ms() -> EventTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The start of the period of length `size` (aligned to the epoch plus
/// `offset`) that contains `ts`.
///
/// # Examples
/// ```
/// use keyflow_dataflow::time::align_down;
/// assert_eq!(align_down(125, 60, 0), 120);
/// assert_eq!(align_down(125, 60, 10), 070);
/// assert_eq!(align_down(5, 60, 10), 0);
/// ```
#[inline]
pub fn align_down(ts: EventTime, size: u64, offset: u64) -> EventTime {
    let offset = offset % size;
    if ts < offset {
        // The period that starts before the epoch is clamped to 0: event time
        // is unsigned.
        return 0;
    }
    ts - (ts - offset) % size
}

/// Parses a human duration such as `10m`, `5s` or `1h 30m` into milliseconds,
/// naming `what` in the error.
///
/// # Examples
/// ```
/// use keyflow_dataflow::time::parse_duration_ms;
/// assert_eq!(parse_duration_ms("window", "10m").unwrap(), 600_000);
/// assert!(parse_duration_ms("window", "ten").unwrap_err().to_string().contains("ten"));
/// // Longer than all of event time, or finer than a millisecond: refused,
/// // not wrapped or cut.
/// assert!(parse_duration_ms("window", "10000000years").is_err());
/// assert!(parse_duration_ms("window", "10m 999us").is_err());
/// ```
pub fn parse_duration_ms(what: &str, text: &str) -> Result<u64> {
    let d: Duration = humantime::parse_duration(text.trim())
        .map_err(|e| Error::Config(format!("{what} `{text}` is not a duration ({e})")))?;
    // Event time counts milliseconds: a finer part would be dropped
    // without a word.
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(Error::Config(format!(
            "{what} `{text}` is not a whole number of milliseconds"
        )));
    }
    // Event time ends at MAX_EVENT_TIME: a longer span means nothing, and
    // one past u64 milliseconds would wrap into a short one.
    match u64::try_from(d.as_millis()) {
        Ok(ms) if ms <= MAX_EVENT_TIME => Ok(ms),
        _ => Err(Error::Config(format!(
            "{what} `{text}` is longer than event time spans \
             (at most {MAX_EVENT_TIME} ms, from 1970 to the year 10000)"
        ))),
    }
}

/// Formats event time as `YYYY-MM-DD HH:MM:SS` in UTC.
///
/// # Examples
/// ```
/// use keyflow_dataflow::time::format_utc;
/// assert_eq!(format_utc(1_470_009_600_000), "2016-08-01 00:00:00");
/// ```
pub fn format_utc(ts: EventTime) -> String {
    let (y, mo, d, h, mi, s) = civil(ts);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Splits event time into UTC `(year, month, day, hour, minute, second)`.
pub fn civil(ts: EventTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (ts / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Event time of midnight UTC on the given date; `None` for an invalid date.
///
/// # Examples
/// ```
/// use keyflow_dataflow::time::days_from_civil;
/// assert_eq!(days_from_civil(2016, 8, 1), Some(1_470_009_600_000));
/// assert_eq!(days_from_civil(2016, 2, 30), None);
/// ```
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<EventTime> {
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || y < 1970 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as u64 * DAY)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for day in [0u64, 1, 59, 60, 365, 10_000, 17_000, 20_000] {
            let (y, m, d, ..) = civil(day * DAY);
            assert_eq!(days_from_civil(y, m, d), Some(day * DAY));
        }
    }

    #[test]
    fn align_is_epoch_based() {
        assert_eq!(align_down(MINUTE * 10 + 5, MINUTE, 0), MINUTE * 10);
        assert_eq!(align_down(0, MINUTE, 0), 0);
    }
}
