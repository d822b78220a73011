//! Loads started ahead of the lookups of a pass over many keys.
//!
//! Adding a message's pane weights, evaluating a boundary, reading one
//! ahead and evicting a pane each look up thousands of keys (the last three
//! sorted by bucket). With a table bigger than the
//! cache nearly every lookup misses twice: on the key's slot, and on its
//! boxed pane list. Each miss waits about as long as tens of lookups that
//! hit take, and the processor overlaps only the few that fit its window.
//! So a pass prefetches the slot [`AHEAD`] lookups before the lookup and
//! its pane list, read from the slot that has arrived by then, half as far.

use keyflow_dataflow::Key;
use prefetch_index::prefetch_index;

use super::{mix, Panes, RiseState};

/// How many lookups ahead of its lookup a key's slot is prefetched (and its
/// pane list half as far).
pub(super) const AHEAD: usize = 16;

impl<K: Key> RiseState<K> {
    /// Before the lookup of the `i`-th of the `n` keys whose stable hashes
    /// `hash_at` gives, in a pass that starts at `start`: prefetches the
    /// slot of the key [`AHEAD`] on and the pane list of the key half as
    /// far on (and at the start, those of the keys before them).
    pub(crate) fn prefetch_before(
        &self,
        i: usize,
        start: usize,
        n: usize,
        hash_at: impl Fn(usize) -> u64,
    ) {
        let half = AHEAD / 2;
        if i == start {
            for j in start..(start + AHEAD).min(n) {
                self.prefetch_slot(hash_at(j));
            }
            for j in start..(start + half).min(n) {
                self.prefetch_panes(hash_at(j));
            }
        }
        if i + AHEAD < n {
            self.prefetch_slot(hash_at(i + AHEAD));
        }
        if i + half < n {
            self.prefetch_panes(hash_at(i + half));
        }
    }

    /// Starts loading the slot a lookup of `hash` will most likely read:
    /// the first one whose control byte matches, found from the control
    /// bytes alone (the match accepts it without reading it). A wrong
    /// guess costs one load.
    fn prefetch_slot(&self, hash: u64) {
        if let Some(slot) = self.table.find(mix(hash), |_| true) {
            prefetch_index(std::slice::from_ref(&slot.key), 0);
            prefetch_index(std::slice::from_ref(&slot.panes), 0);
        }
    }

    /// Starts loading the boxed pane list of the slot a lookup of `hash`
    /// will most likely read (see [`RiseState::prefetch_slot`]), whose slot
    /// should be in cache by now.
    fn prefetch_panes(&self, hash: u64) {
        if let Some(slot) = self.table.find(mix(hash), |_| true) {
            if let Panes::Many(panes) = &slot.panes {
                prefetch_index(panes, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Every pass asks only for the hashes of its own keys, and asks for
    /// each of them before its lookup, whatever its length and start.
    #[test]
    fn prefetches_stay_within_the_pass() {
        let mut state = RiseState::<u64>::default();
        for key in 0..100u64 {
            let hash = keyflow_dataflow::stable_hash(&key);
            state.add(hash, key, 5, 1).unwrap();
        }
        for n in [0, 1, 7, AHEAD, AHEAD + 1, 3 * AHEAD + 5] {
            for start in [0, 1, n / 2] {
                let asked = RefCell::new(Vec::new());
                for i in start..n {
                    state.prefetch_before(i, start, n, |j| {
                        asked.borrow_mut().push((i, j));
                        keyflow_dataflow::stable_hash(&(j as u64))
                    });
                }
                let asked = asked.into_inner();
                assert!(asked.iter().all(|&(_, j)| (start..n).contains(&j)));
                for key in start..n {
                    let first = asked.iter().find(|&&(_, j)| j == key);
                    assert!(
                        first.is_some_and(|&(i, _)| i <= key),
                        "n {n}, start {start}"
                    );
                }
            }
        }
    }
}
