//! Checkpoints of [`LateState`]: a full snapshot by key, and the changes
//! made since, both of which keep only the keys a worker owns when they are
//! read back, so a restore can change the number of workers.
//!
//! Changes are logged as data (weight added, boundary opened, key passing
//! with its counts), not as the calls that made them, so a replay does not
//! evaluate the rule again.

use std::collections::BTreeMap;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{stable_hash, Key};
use serde::{Deserialize, Serialize};

use super::state::LateState;
use crate::rise::chain::ChangeLog;

/// One change to a [`LateState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change<K> {
    /// Weight added to a key's pane: `(key, pane, weight)`.
    Add(K, u64, u64),
    /// Boundaries up to this one (in panes) were considered.
    Consider(u64),
    /// A boundary (in panes) got a passing set, empty at first.
    Open(u64),
    /// A key passes at an open boundary with these counts.
    Pass(u64, K, Box<[u64]>),
    /// A key no longer passes at an open boundary.
    Fail(u64, K),
    /// An eviction at this progress (`None`: the input is done).
    Evict(Option<EventTime>),
}

/// The keys passing at one boundary, with their counts.
type Passing<K> = Vec<(K, Box<[u64]>)>;

/// The serialized form of a [`LateState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LateSnapshot<K> {
    /// See [`LateState`]'s field of the same name.
    pub considered: Option<u64>,
    /// Every key with its `(pane, weight)` pairs, oldest first, sorted.
    pub keys: Vec<(K, Vec<(u64, u64)>)>,
    /// Every open boundary (in panes) with its passing keys and counts.
    pub passing: Vec<(u64, Passing<K>)>,
}

impl<K> LateSnapshot<K> {
    /// Keeps only the keys whose stable hash `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(u64) -> bool)
    where
        K: Key,
    {
        self.keys.retain(|(k, _)| keep(stable_hash(k)));
        for (_, pass) in &mut self.passing {
            pass.retain(|(k, _)| keep(stable_hash(k)));
        }
    }

    /// Adds `other`'s keys (another worker's, so disjoint from these).
    pub(crate) fn absorb(&mut self, other: LateSnapshot<K>) {
        self.considered = self.considered.max(other.considered);
        self.keys.extend(other.keys);
        let mut passing: BTreeMap<u64, Passing<K>> =
            std::mem::take(&mut self.passing).into_iter().collect();
        for (b, pass) in other.passing {
            passing.entry(b).or_default().extend(pass);
        }
        self.passing = passing.into_iter().collect();
    }
}

impl<K: Key> LateState<K> {
    /// A plain copy, keys sorted.
    pub(crate) fn snapshot(&self) -> LateSnapshot<K> {
        let mut keys: Vec<(K, Vec<(u64, u64)>)> = (self.slots.iter().flatten())
            .map(|s| (s.key.clone(), s.panes.clone()))
            .collect();
        keys.sort();
        let passing = (self.passing.iter())
            .map(|(&b, pass)| {
                let mut pass: Passing<K> = (pass.iter())
                    .map(|(&id, c)| (self.slot(id).key.clone(), c.clone()))
                    .collect();
                pass.sort();
                (b, pass)
            })
            .collect();
        LateSnapshot {
            considered: self.considered,
            keys,
            passing,
        }
    }

    /// Loads `snapshot` into this empty state (made with the same
    /// parameters).
    pub(crate) fn load(mut self, snapshot: LateSnapshot<K>) -> Result<Self, String> {
        self.considered = snapshot.considered;
        for (key, panes) in snapshot.keys {
            for (pane, w) in panes {
                self.add(key.clone(), pane, w);
            }
        }
        for (b, pass) in snapshot.passing {
            self.passing.insert(b, StableMap::default());
            for (key, counts) in pass {
                self.pass(b, &key, Some(counts))?;
            }
        }
        Ok(self)
    }

    fn pass(&mut self, b: u64, key: &K, counts: Option<Box<[u64]>>) -> Result<(), String> {
        let Some(&id) = self.ids.get(key) else {
            return Err(format!(
                "rise lateness state: key {key:?} passes at boundary {b} without weight"
            ));
        };
        if !self.passing.contains_key(&b) {
            return Err(format!(
                "rise lateness state: boundary {b} changes without being open"
            ));
        }
        self.set(b, id, counts);
        Ok(())
    }

    /// Replays logged changes, skipping those of keys `keep` rejects (by
    /// stable hash): another worker owns them now.
    pub(crate) fn replay(
        &mut self,
        changes: Vec<Change<K>>,
        keep: impl Fn(u64) -> bool,
    ) -> Result<(), String> {
        let mine = |k: &K| keep(stable_hash(k));
        for change in changes {
            match change {
                Change::Add(key, pane, w) => {
                    if mine(&key) {
                        self.add(key, pane, w);
                    }
                }
                Change::Consider(b) => self.consider(b),
                Change::Open(b) => {
                    self.passing.entry(b).or_default();
                }
                Change::Pass(b, key, counts) => {
                    if mine(&key) {
                        self.pass(b, &key, Some(counts))?;
                    }
                }
                Change::Fail(b, key) => {
                    if mine(&key) {
                        self.pass(b, &key, None)?;
                    }
                }
                Change::Evict(upto) => self.evict(upto),
            }
        }
        Ok(())
    }
}

impl<K: Key> ChangeLog for LateState<K> {
    type Full = LateSnapshot<K>;
    type Change = Change<K>;

    fn full(&self) -> LateSnapshot<K> {
        self.snapshot()
    }

    fn track_changes(&mut self) {
        self.log = Some(Vec::new());
    }

    fn take_changes(&mut self) -> Vec<Change<K>> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
