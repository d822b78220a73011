//! Per-partition watermark bookkeeping, kept apart from timely so that it can
//! be unit-tested.

use std::time::{Duration, Instant};

use crate::time::EventTime;

/// What a partition decided about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or above the watermark: the record is on time.
    OnTime,
    /// Below the watermark; it travels at the given (watermark) time.
    Late(EventTime),
    /// Too far ahead of the watermark, or at or after
    /// [`MAX_EVENT_TIME`](crate::time::MAX_EVENT_TIME): rejected, and it does
    /// not move the watermark.
    Future,
}

/// The watermark of one source partition.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartitionClock {
    max_seen: Option<EventTime>,
    floor: EventTime,
    out_of_orderness: u64,
    max_future: Option<u64>,
    #[serde(skip)]
    idle_since: Option<Instant>,
}

impl PartitionClock {
    /// A clock that has seen nothing yet.
    pub fn new(out_of_orderness: u64, max_future: Option<u64>) -> Self {
        PartitionClock {
            max_seen: None,
            floor: 0,
            out_of_orderness,
            max_future,
            idle_since: None,
        }
    }

    /// The watermark: the largest event time seen minus the allowed
    /// out-of-orderness (never below the floor set on resumption).
    pub fn watermark(&self) -> EventTime {
        let seen = self
            .max_seen
            .map(|m| m.saturating_sub(self.out_of_orderness))
            .unwrap_or(0);
        seen.max(self.floor)
    }

    /// The largest event time seen.
    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    /// Judges one record and advances the watermark past it if on time.
    #[inline]
    pub fn observe(&mut self, ts: EventTime) -> Verdict {
        if ts >= crate::time::MAX_EVENT_TIME {
            return Verdict::Future;
        }
        let wm = self.watermark();
        if ts < wm {
            return Verdict::Late(wm);
        }
        if let (Some(limit), Some(_)) = (self.max_future, self.max_seen) {
            if ts - wm > limit {
                return Verdict::Future;
            }
        }
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
        }
        Verdict::OnTime
    }

    /// Notes that a poll found nothing to read.
    pub fn note_idle(&mut self, now: Instant) {
        self.idle_since.get_or_insert(now);
    }

    /// Notes that a poll found data. Coming back from idleness, the partition
    /// cannot claim times below `progress`, which moved on without it.
    pub fn note_active(&mut self, progress: EventTime) {
        if self.idle_since.take().is_some() {
            self.floor = self.floor.max(progress);
        }
    }

    /// Whether the partition has been idle for at least `timeout`.
    pub fn is_idle(&self, now: Instant, timeout: Option<Duration>) -> bool {
        match (self.idle_since, timeout) {
            (Some(since), Some(timeout)) => now.duration_since(since) >= timeout,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_the_year_10000_on_are_rejected_even_first() {
        let mut c = PartitionClock::new(0, None);
        assert_eq!(c.observe(u64::MAX), Verdict::Future);
        assert_eq!(c.observe(crate::time::MAX_EVENT_TIME), Verdict::Future);
        assert_eq!(c.watermark(), 0);
        assert_eq!(c.observe(crate::time::MAX_EVENT_TIME - 1), Verdict::OnTime);
    }

    #[test]
    fn watermark_trails_max_seen() {
        let mut c = PartitionClock::new(5, None);
        assert_eq!(c.watermark(), 0);
        assert_eq!(c.observe(100), Verdict::OnTime);
        assert_eq!(c.watermark(), 95);
        assert_eq!(c.observe(96), Verdict::OnTime);
        assert_eq!(c.observe(94), Verdict::Late(95));
        assert_eq!(c.watermark(), 95);
    }

    #[test]
    fn future_records_do_not_move_the_watermark() {
        let mut c = PartitionClock::new(0, Some(1000));
        c.observe(10_000);
        assert_eq!(c.observe(10_000 + 1001), Verdict::Future);
        assert_eq!(c.watermark(), 10_000);
        assert_eq!(c.observe(11_000), Verdict::OnTime);
    }

    #[test]
    fn resuming_raises_the_floor() {
        let mut c = PartitionClock::new(0, None);
        c.observe(10);
        let t0 = Instant::now();
        c.note_idle(t0);
        assert!(c.is_idle(t0 + Duration::from_secs(2), Some(Duration::from_secs(1))));
        c.note_active(500);
        assert_eq!(c.watermark(), 500);
        assert_eq!(c.observe(400), Verdict::Late(500));
    }
}
