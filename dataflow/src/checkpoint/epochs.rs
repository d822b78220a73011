//! Which epoch boundaries an operator snapshots.

use timely::progress::frontier::MutableAntichain;

use crate::time::EventTime;

/// After a jump of the frontier over many boundaries, only the last this
/// many are written: the skipped ones would hold the same state over and
/// over (a gap in the input), and an epoch that one operator skips is never
/// complete, so skipping is always safe.
const MAX_PER_JUMP: u64 = 4;

/// The boundaries an operator has yet to snapshot.
#[derive(Debug, Clone)]
pub struct EpochClock {
    every: u64,
    /// Boundaries at or below this are done (or restored from).
    done: EventTime,
}

impl EpochClock {
    /// A clock for boundaries every `every` ms, of which those at or below
    /// `restored` are already taken.
    ///
    /// ```
    /// use keyflow_dataflow::checkpoint::EpochClock;
    /// let mut clock = EpochClock::new(60, 0);
    /// assert_eq!(clock.next(), 60);
    /// assert_eq!(clock.passed(Some(250)), vec![60, 120, 180, 240]);
    /// assert_eq!(clock.passed(Some(250)), Vec::<u64>::new());
    /// assert_eq!(clock.passed(Some(10_000)), vec![9_780, 9_840, 9_900, 9_960]);
    /// assert_eq!(clock.passed(None), Vec::<u64>::new());
    /// ```
    pub fn new(every: u64, restored: EventTime) -> Self {
        EpochClock {
            every,
            done: restored - restored % every,
        }
    }

    /// The next boundary not yet taken: input at or above it must wait.
    pub fn next(&self) -> EventTime {
        self.done.saturating_add(self.every)
    }

    /// The boundaries that progress has passed, given the least time still
    /// possible (`None` once the input is complete: no more snapshots then,
    /// as the job is ending). Marks them done.
    pub fn passed(&mut self, low: Option<EventTime>) -> Vec<EventTime> {
        let Some(low) = low else { return Vec::new() };
        if low < self.next() {
            return Vec::new();
        }
        let last = low - low % self.every;
        let count = (last - self.done) / self.every;
        let first = last - (count.min(MAX_PER_JUMP) - 1) * self.every;
        self.done = last;
        (0..count.min(MAX_PER_JUMP))
            .map(|i| first + i * self.every)
            .collect()
    }

    /// The same, read off a frontier.
    pub fn passed_frontier(&mut self, frontier: &MutableAntichain<EventTime>) -> Vec<EventTime> {
        let low = frontier.frontier().iter().min().copied();
        self.passed(low)
    }
}
