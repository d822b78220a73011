//! Which epoch boundaries an operator snapshots.

use std::collections::BTreeMap;

use timely::progress::frontier::MutableAntichain;

use crate::time::EventTime;

/// The first jump of the frontier (from the start, or the restored epoch,
/// to the input's first times) crosses boundaries nobody needs: only the
/// last this many are taken. Operators may see that jump end at different
/// times, but each takes every boundary after it, so their sets agree from
/// the latest of their last few on.
const FIRST_JUMP: u64 = 4;
/// Later, a jump over a long gap in the input takes at most this many (a
/// day of minutes): an epoch that one operator skips is never complete, so
/// skipping is safe, and epochs after the gap complete again.
const MAX_PER_JUMP: u64 = 1440;

/// The boundaries an operator has yet to snapshot.
#[derive(Debug, Clone)]
pub struct EpochClock {
    every: u64,
    /// Boundaries at or below this are done (or restored from).
    done: EventTime,
    /// Whether the frontier has moved past a boundary yet.
    started: bool,
}

impl EpochClock {
    /// A clock for boundaries every `every` ms, of which those at or below
    /// `restored` are already taken.
    ///
    /// ```
    /// use keyflow_dataflow::checkpoint::EpochClock;
    /// let mut clock = EpochClock::new(60, 0);
    /// assert_eq!(clock.next(), 60);
    /// // The first jump takes only its last four boundaries...
    /// assert_eq!(clock.passed(Some(10_000)), vec![9_780, 9_840, 9_900, 9_960]);
    /// assert_eq!(clock.passed(Some(10_000)), Vec::<u64>::new());
    /// // ...later ones every boundary (up to a day of them).
    /// assert_eq!(clock.passed(Some(10_250)), vec![10_020, 10_080, 10_140, 10_200]);
    /// assert_eq!(clock.passed(None), Vec::<u64>::new());
    /// ```
    pub fn new(every: u64, restored: EventTime) -> Self {
        EpochClock {
            every,
            done: restored - restored % every,
            started: false,
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
        let most = if self.started {
            MAX_PER_JUMP
        } else {
            FIRST_JUMP
        };
        self.started = true;
        let count = ((last - self.done) / self.every).min(most);
        let first = last - (count - 1) * self.every;
        self.done = last;
        (0..count).map(|i| first + i * self.every).collect()
    }

    /// Up to where input held back for the next snapshot may be applied,
    /// given the least time still possible: below the next boundary, or
    /// everything once the input is complete (no epoch is taken any more).
    pub fn release_bound(&self, low: Option<EventTime>) -> EventTime {
        match low {
            Some(_) => self.next(),
            None => EventTime::MAX,
        }
    }

    /// The same, read off a frontier.
    pub fn passed_frontier(&mut self, frontier: &MutableAntichain<EventTime>) -> Vec<EventTime> {
        let low = frontier.frontier().iter().min().copied();
        self.passed(low)
    }
}

/// Removes from `held` (input held back by message time) the entries below
/// `bound`, and returns them in time order.
///
/// ```
/// use std::collections::BTreeMap;
/// use keyflow_dataflow::checkpoint::take_below;
/// let mut held = BTreeMap::from([(5, 'a'), (9, 'b'), (12, 'c')]);
/// assert_eq!(take_below(&mut held, 10), vec![(5, 'a'), (9, 'b')]);
/// assert_eq!(held, BTreeMap::from([(12, 'c')]));
/// ```
pub fn take_below<T>(held: &mut BTreeMap<EventTime, T>, bound: EventTime) -> Vec<(EventTime, T)> {
    let rest = held.split_off(&bound);
    std::mem::replace(held, rest).into_iter().collect()
}
