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
    /// Too far ahead of the watermark, but in step with the records held
    /// ahead just before it: held, with what the clock will say of it if
    /// the run of held records grows long enough to be followed (see
    /// [`PartitionClock::settled`]). Never `Ahead` itself.
    Ahead(Held),
}

/// What a held record will be if its run is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// On time under the run's own clock.
    OnTime,
    /// Below the run's own watermark at the time: it travels at that time.
    Late(EventTime),
}

/// What became of the run of records held ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The first `n` held records are rejected: a record that is not far
    /// ahead, or one out of step with them, came next.
    Rejected(usize),
    /// All `n` held records stand, and the watermark moved on to them.
    Followed(usize),
}

/// Records held ahead of the watermark: the clock they would have on their
/// own, and how many there are.
#[derive(Debug, Clone)]
struct Run {
    clock: PartitionClock,
    len: usize,
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
    /// How many records in a row, all far ahead but in step with each
    /// other, move the watermark on to them; `None`: never. Not saved: a
    /// restore sets it from the config.
    #[serde(skip)]
    jump_after: Option<usize>,
    /// The records held ahead. Not saved: a checkpoint taken while a run is
    /// held re-reads its records from where the run began.
    #[serde(skip)]
    run: Option<Box<Run>>,
    /// The wall clock when reading began: before the first record, with
    /// `jump_after` set, a record more than `max_future` past it is held as
    /// if far ahead, since nothing real is stamped that far past the
    /// present. Not saved: set again on restore.
    #[serde(skip)]
    started: Option<EventTime>,
    #[serde(skip)]
    settled: Option<Settled>,
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
            jump_after: None,
            run: None,
            settled: None,
            started: None,
        }
    }

    /// With [`with_jump_after`](Self::with_jump_after): a partition's first
    /// records, while it has no watermark, are judged against `now` (the
    /// wall clock, ms since the epoch), and those more than `max_future`
    /// past it are held as if far ahead. So a first record stamped in the
    /// year 9999 is rejected by the ordinary records after it, instead of
    /// setting a watermark that makes them all late; a partition whose
    /// records all lie in the future still stands, once `jump_after` of
    /// them agree or the input ends.
    pub fn starting_at(mut self, now: EventTime) -> Self {
        self.started = Some(now);
        self
    }

    /// Follows a partition that moved on: once `n` records in a row are too
    /// far ahead of the watermark but in step with each other (none too far
    /// ahead of, or behind, the others), they stand and the watermark moves
    /// on to them. Until then they are held, and a record that is not far
    /// ahead rejects them. So a gap longer than `max_future` in a
    /// partition's event time costs nothing, while a few stray records
    /// from a wrong clock are still rejected. `None` rejects every record
    /// too far ahead, as one at a time.
    pub fn with_jump_after(mut self, n: Option<usize>) -> Self {
        self.jump_after = n;
        self
    }

    /// Whether records are held ahead of the watermark.
    pub fn holds(&self) -> bool {
        self.run.is_some()
    }

    /// What became of the held run at the last [`observe`](Self::observe),
    /// if anything did; taken once.
    #[inline]
    pub fn settled(&mut self) -> Option<Settled> {
        // Read first: most records settle nothing, and need no write.
        self.settled.as_ref()?;
        self.settled.take()
    }

    /// The input ended: the records held ahead are rejected, unless the
    /// partition had no watermark before them (then they were all it
    /// had, and they stand). What became of them is in
    /// [`settled`](Self::settled).
    pub fn end_of_input(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.settled = Some(if self.max_seen.is_none() {
            self.max_seen = run.clock.max_seen;
            Settled::Followed(run.len)
        } else {
            Settled::Rejected(run.len)
        });
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
    /// A record held ahead, or one that ends a run, also leaves word in
    /// [`settled`](Self::settled).
    #[inline]
    pub fn observe(&mut self, ts: EventTime) -> Verdict {
        if ts >= crate::time::MAX_EVENT_TIME {
            return Verdict::Future;
        }
        let wm = self.watermark();
        if ts < wm {
            self.end_run();
            return Verdict::Late(wm);
        }
        if let Some(limit) = self.max_future {
            if self.max_seen.is_some() {
                if ts - wm > limit {
                    return self.ahead(ts, limit);
                }
            } else if self.jump_after.is_some()
                && self
                    .started
                    .is_some_and(|now| ts > now.saturating_add(limit))
            {
                return self.ahead(ts, limit);
            }
        }
        self.end_run();
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
        }
        Verdict::OnTime
    }

    /// A record that is not far ahead rejects the run held before it.
    #[inline]
    fn end_run(&mut self) {
        if self.run.is_some() {
            self.reject_run();
        }
    }

    #[cold]
    fn reject_run(&mut self) {
        if let Some(run) = self.run.take() {
            self.settled = Some(Settled::Rejected(run.len));
        }
    }

    /// Judges a record more than `limit` ahead of the watermark.
    #[cold]
    fn ahead(&mut self, ts: EventTime, limit: u64) -> Verdict {
        let Some(after) = self.jump_after else {
            return Verdict::Future;
        };
        let (out_of_orderness, max_future) = (self.out_of_orderness, self.max_future);
        let fresh = || {
            let mut clock = PartitionClock::new(out_of_orderness, max_future);
            clock.observe(ts);
            Box::new(Run { clock, len: 0 })
        };
        let (mut run, held, rejected) = match self.run.take() {
            Some(mut run) => {
                let in_step = run.clock.watermark().saturating_sub(ts) <= limit;
                match run.clock.observe(ts) {
                    Verdict::OnTime => (run, Held::OnTime, 0),
                    Verdict::Late(at) if in_step => (run, Held::Late(at), 0),
                    // Out of step: the run so far is rejected, and this
                    // record begins another.
                    _ => (fresh(), Held::OnTime, run.len),
                }
            }
            None => (fresh(), Held::OnTime, 0),
        };
        run.len += 1;
        self.settled = if run.len >= after {
            self.max_seen = run.clock.max_seen;
            Some(Settled::Followed(run.len))
        } else {
            self.run = Some(run);
            (rejected > 0).then_some(Settled::Rejected(rejected))
        };
        Verdict::Ahead(held)
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

    #[test]
    fn a_gap_longer_than_max_future_is_followed_once_enough_records_agree() {
        let mut c = PartitionClock::new(5, Some(1000)).with_jump_after(Some(3));
        assert_eq!(c.observe(10_000), Verdict::OnTime);
        assert_eq!(c.observe(50_000), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.settled(), None);
        assert!(c.holds());
        assert_eq!(c.watermark(), 9_995);
        // Out of order within the run, but in step: late under its clock.
        assert_eq!(c.observe(49_000), Verdict::Ahead(Held::Late(49_995)));
        assert_eq!(c.observe(50_100), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.settled(), Some(Settled::Followed(3)));
        assert!(!c.holds());
        assert_eq!(c.watermark(), 50_095);
        assert_eq!(c.observe(50_200), Verdict::OnTime);
        assert_eq!(c.settled(), None);
    }

    #[test]
    fn a_stray_record_far_ahead_is_rejected_by_the_next_ordinary_one() {
        let mut c = PartitionClock::new(0, Some(1000)).with_jump_after(Some(3));
        c.observe(10_000);
        assert_eq!(c.observe(900_000), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.observe(900_001), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.observe(10_001), Verdict::OnTime);
        assert_eq!(c.settled(), Some(Settled::Rejected(2)));
        assert_eq!(c.watermark(), 10_001);
        // A late record ends a run too.
        c.observe(900_000);
        assert_eq!(c.observe(5), Verdict::Late(10_001));
        assert_eq!(c.settled(), Some(Settled::Rejected(1)));
    }

    #[test]
    fn a_record_out_of_step_with_the_run_rejects_it_and_begins_another() {
        let mut c = PartitionClock::new(0, Some(1000)).with_jump_after(Some(2));
        c.observe(10_000);
        c.observe(900_000);
        // Too far ahead of the run itself.
        assert_eq!(c.observe(950_000), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.settled(), Some(Settled::Rejected(1)));
        // Too far behind it (but still far ahead of the watermark).
        assert_eq!(c.observe(500_000), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.settled(), Some(Settled::Rejected(1)));
        assert_eq!(c.observe(500_500), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.settled(), Some(Settled::Followed(2)));
        assert_eq!(c.watermark(), 500_500);
        // Times past the end of event time are never part of a run.
        c.observe(600_000);
        assert_eq!(c.observe(crate::time::MAX_EVENT_TIME), Verdict::Future);
        assert!(c.holds());
        c.end_of_input();
        assert_eq!(c.settled(), Some(Settled::Rejected(1)));
        assert!(!c.holds());
    }

    #[test]
    fn without_jump_after_every_record_far_ahead_is_rejected() {
        let mut c = PartitionClock::new(0, Some(1000));
        c.observe(10_000);
        for i in 0..1000 {
            assert_eq!(c.observe(900_000 + i), Verdict::Future);
        }
        assert_eq!(c.settled(), None);
        assert_eq!(c.watermark(), 10_000);
    }

    #[test]
    fn a_first_record_far_past_the_wall_clock_is_rejected_by_the_ordinary_ones() {
        let now = 1_000_000;
        let fresh = || {
            PartitionClock::new(0, Some(1000))
                .with_jump_after(Some(3))
                .starting_at(now)
        };
        let mut c = fresh();
        assert_eq!(c.observe(9_000_000), Verdict::Ahead(Held::OnTime));
        assert_eq!(c.watermark(), 0);
        assert_eq!(c.observe(500), Verdict::OnTime);
        assert_eq!(c.settled(), Some(Settled::Rejected(1)));
        assert_eq!(c.observe(600), Verdict::OnTime);
        assert_eq!(c.watermark(), 600);

        // A partition wholly in the future stands once enough agree...
        let mut c = fresh();
        for ts in [9_000_000, 9_000_100] {
            assert_eq!(c.observe(ts), Verdict::Ahead(Held::OnTime));
        }
        assert_eq!(c.observe(9_000_050), Verdict::Ahead(Held::Late(9_000_100)));
        assert_eq!(c.settled(), Some(Settled::Followed(3)));
        assert_eq!(c.watermark(), 9_000_100);
        // ... or when its input ends, since nothing contradicts it.
        let mut c = fresh();
        c.observe(9_000_000);
        c.end_of_input();
        assert_eq!(c.settled(), Some(Settled::Followed(1)));
        assert_eq!(c.watermark(), 9_000_000);
        // Up to the bound, the first record starts the watermark as ever;
        // and without following, nothing is judged by the wall clock.
        let mut c = fresh();
        assert_eq!(c.observe(now + 1000), Verdict::OnTime);
        let mut c = PartitionClock::new(0, Some(1000)).starting_at(now);
        assert_eq!(c.observe(9_000_000), Verdict::OnTime);
        // The builders may come in either order.
        let mut c = PartitionClock::new(0, Some(1000))
            .starting_at(now)
            .with_jump_after(Some(3));
        assert_eq!(c.observe(9_000_000), Verdict::Ahead(Held::OnTime));
    }
}
