//! The keyed state of rise detection under allowed lateness on one worker,
//! apart from timely so that it can be unit-tested and checkpointed: sparse
//! pane weights per key, and, per boundary still inside the allowed
//! lateness, the keys that pass there.
//!
//! Keys live in a slab so that the pane index and the passing sets hold
//! 4-byte ids rather than clones of the key. A slot is freed only once none
//! of its panes lies in the span of an open boundary, so an id in a passing
//! set always names a live slot.

use std::collections::BTreeMap;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::Key;

use super::log::Change;
use crate::rise::state::Geometry;
use crate::rise::Rising;

/// What applying one batch of late records did.
#[derive(Debug)]
pub(crate) struct LateOutcome<K> {
    /// Records that no open boundary accepted.
    pub dropped: u64,
    /// Re-evaluated boundaries (ms), each with every key that passes there
    /// now, or `None` when its passing set and counts did not change.
    pub updates: Vec<(EventTime, Option<Vec<Rising<K>>>)>,
}

#[derive(Debug, Clone)]
pub(super) struct Slot<K> {
    pub(super) key: K,
    /// `(pane, weight)`, sorted by pane.
    pub(super) panes: Vec<(u64, u64)>,
}

/// Pane weights and passing sets of the keys routed to one worker.
#[derive(Debug)]
pub(crate) struct LateState<K> {
    pub(super) geo: Geometry,
    /// Allowed lateness in ms.
    pub(super) lateness: u64,
    pub(super) min_first: u64,
    pub(super) slots: Vec<Option<Slot<K>>>,
    pub(super) free: Vec<u32>,
    pub(super) ids: StableMap<K, u32>,
    /// Pane -> ids of the keys with weight in it.
    pub(super) index: BTreeMap<u64, Vec<u32>>,
    /// Boundary (in panes) -> passing key -> its counts `c1..cN`, for every
    /// boundary this worker evaluated that is still open.
    pub(super) passing: BTreeMap<u64, StableMap<u32, Box<[u64]>>>,
    /// Every boundary at or below this one (in panes) had its chance to be
    /// evaluated for the first time; later weight there is an update.
    pub(super) considered: Option<u64>,
    /// The progress of the last eviction, which a later one at the same
    /// progress would repeat without effect (weight never lands below what
    /// an eviction keeps).
    pub(super) evicted: Option<EventTime>,
    /// With incremental checkpoints: the changes since the last one.
    pub(super) log: Option<Vec<Change<K>>>,
}

impl<K: Key> LateState<K> {
    /// An empty state for boundaries of `geo`, open `lateness` ms after
    /// their time, passing keys with `c1 >= min_first`.
    pub(crate) fn new(geo: Geometry, lateness: u64, min_first: u64) -> Self {
        LateState {
            geo,
            lateness,
            min_first,
            slots: Vec::new(),
            free: Vec::new(),
            ids: StableMap::default(),
            index: BTreeMap::new(),
            passing: BTreeMap::new(),
            considered: None,
            evicted: None,
            log: None,
        }
    }

    /// How many keys hold weight.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.ids.len()
    }

    /// How many boundaries keep a passing set.
    #[cfg(test)]
    pub(crate) fn open_boundaries(&self) -> usize {
        self.passing.len()
    }

    pub(super) fn record(&mut self, change: impl FnOnce() -> Change<K>) {
        if let Some(log) = self.log.as_mut() {
            log.push(change());
        }
    }

    pub(super) fn slot(&self, id: u32) -> &Slot<K> {
        match self.slots.get(id as usize) {
            Some(Some(slot)) => slot,
            _ => panic!("rise lateness state: key id {id} names no live slot"),
        }
    }

    /// Adds weight `w` of `key` in `pane`; returns the key's id.
    pub(crate) fn add(&mut self, key: K, pane: u64, w: u64) -> u32 {
        self.record(|| Change::Add(key.clone(), pane, w));
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    (self.slots.len() - 1) as u32
                });
                self.ids.insert(key.clone(), id);
                self.slots[id as usize] = Some(Slot {
                    key,
                    panes: Vec::new(),
                });
                id
            }
        };
        let Some(slot) = self.slots[id as usize].as_mut() else {
            panic!("rise lateness state: key id {id} was just made live");
        };
        match slot.panes.binary_search_by_key(&pane, |&(p, _)| p) {
            Ok(i) => slot.panes[i].1 = slot.panes[i].1.saturating_add(w),
            Err(i) => {
                slot.panes.insert(i, (pane, w));
                self.index.entry(pane).or_default().push(id);
            }
        }
        id
    }

    /// The next boundary (in panes) to evaluate for the first time: the
    /// first one after those considered whose span holds weight.
    pub(crate) fn next_boundary(&self) -> Option<u64> {
        let from = self.considered.map_or(0, |c| c + 1);
        let (&pane, _) = self
            .index
            .range(from.saturating_sub(self.geo.span())..)
            .next()?;
        Some(from.max(pane + 1))
    }

    pub(super) fn consider(&mut self, b: u64) {
        self.record(|| Change::Consider(b));
        self.considered = Some(self.considered.map_or(b, |c| c.max(b)));
    }

    /// `c1..cN` of key `id` at boundary `b` (in panes) into `counts`;
    /// returns whether it passes.
    fn counts_at<P>(&self, id: u32, b: u64, counts: &mut [u64], pred: &P) -> bool
    where
        P: Fn(&[u64]) -> bool + ?Sized,
    {
        let geo = &self.geo;
        counts.fill(0);
        let panes = &self.slot(id).panes;
        let from = panes.partition_point(|&(q, _)| q < b.saturating_sub(geo.span()));
        let mut any = false;
        for &(q, w) in panes[from..].iter().take_while(|(q, _)| *q < b) {
            let back = ((b - 1 - q) / geo.per_window) as usize;
            let c = &mut counts[geo.windows - 1 - back];
            *c = c.saturating_add(w);
            any = true;
        }
        any && counts[0] >= self.min_first && pred(counts)
    }

    /// First evaluation of boundary `b` (in panes): keeps its passing set
    /// and returns the keys that pass.
    pub(crate) fn evaluate<P>(&mut self, b: u64, pred: &P) -> Vec<Rising<K>>
    where
        P: Fn(&[u64]) -> bool + ?Sized,
    {
        let geo = self.geo;
        debug_assert!(self.considered.is_none_or(|c| c < b), "boundary {b} again");
        self.consider(b);
        let start = b.saturating_sub(geo.span());
        // With c1 >= 1 a passing key has weight in the first window, so
        // only those are read; otherwise any key of the span may pass.
        let end = if self.min_first >= 1 {
            (b + geo.per_window).saturating_sub(geo.span()).min(b)
        } else {
            b
        };
        let mut candidates: Vec<u32> = self
            .index
            .range(start..end)
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut counts = vec![0; geo.windows];
        let mut pass = StableMap::default();
        for id in candidates {
            if self.counts_at(id, b, &mut counts, pred) {
                pass.insert(id, counts.clone().into_boxed_slice());
            }
        }
        self.record(|| Change::Open(b));
        self.passing.insert(b, StableMap::default());
        for (id, c) in pass {
            self.set(b, id, Some(c));
        }
        self.passing_at(b)
    }

    /// Applies the late records read at time `t` (`(key, pane, weight)`),
    /// once every boundary at or below `t` has been evaluated. A record
    /// counts for the boundaries `T` of its span (`pane < T <= pane + span`,
    /// in panes) that are still ahead (`T > t`) or open (`T + lateness >
    /// t`); the open ones at or below `t` are evaluated again for the keys
    /// it touched.
    pub(crate) fn apply_late<P>(
        &mut self,
        t: EventTime,
        records: Vec<(K, u64, u64)>,
        pred: &P,
    ) -> LateOutcome<K>
    where
        P: Fn(&[u64]) -> bool + ?Sized,
    {
        let geo = self.geo;
        debug_assert!(
            self.next_boundary().is_none_or(|b| b * geo.slide > t),
            "late batch {t} applied before boundary {:?}",
            self.next_boundary()
        );
        let at = t / geo.slide;
        self.consider(at);
        // The first open boundary: b * slide + lateness > t.
        let open = t
            .checked_sub(self.lateness)
            .map_or(0, |rest| rest / geo.slide + 1);
        let mut touched: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut outcome = LateOutcome {
            dropped: 0,
            updates: Vec::new(),
        };
        for (key, pane, w) in records {
            let (first, last) = ((pane + 1).max(open), pane.saturating_add(geo.span()));
            if first > last {
                outcome.dropped += 1;
                continue;
            }
            let id = self.add(key, pane, w);
            for b in first..=last.min(at) {
                touched.entry(b).or_default().push(id);
            }
        }
        for (b, mut ids) in touched {
            ids.sort_unstable();
            ids.dedup();
            let changed = self.reevaluate(b, &ids, pred);
            let now = changed.then(|| self.passing_at(b));
            outcome.updates.push((b * geo.slide, now));
        }
        outcome
    }

    /// Re-checks `ids` at boundary `b`; returns whether its passing set or
    /// a passing key's counts changed.
    fn reevaluate<P>(&mut self, b: u64, ids: &[u32], pred: &P) -> bool
    where
        P: Fn(&[u64]) -> bool + ?Sized,
    {
        let mut counts = vec![0; self.geo.windows];
        let fresh: Vec<(u32, Option<Box<[u64]>>)> = ids
            .iter()
            .map(|&id| {
                let passes = self.counts_at(id, b, &mut counts, pred);
                (id, passes.then(|| counts.clone().into_boxed_slice()))
            })
            .collect();
        // A boundary this worker never evaluated (nothing of its span was
        // here) starts with an empty passing set.
        if !self.passing.contains_key(&b) {
            self.record(|| Change::Open(b));
            self.passing.insert(b, StableMap::default());
        }
        let mut changed = false;
        for (id, now) in fresh {
            let before = self.passing.get(&b).and_then(|p| p.get(&id));
            if before != now.as_ref() {
                self.set(b, id, now);
                changed = true;
            }
        }
        changed
    }

    /// Makes key `id` pass at open boundary `b` with `counts`, or not pass.
    pub(super) fn set(&mut self, b: u64, id: u32, counts: Option<Box<[u64]>>) {
        if self.log.is_some() {
            let key = self.slot(id).key.clone();
            let counts = counts.clone();
            self.record(|| match counts {
                Some(c) => Change::Pass(b, key, c),
                None => Change::Fail(b, key),
            });
        }
        let Some(pass) = self.passing.get_mut(&b) else {
            panic!("rise lateness state: boundary {b} is not open");
        };
        match counts {
            Some(c) => {
                pass.insert(id, c);
            }
            None => {
                pass.remove(&id);
            }
        }
    }

    /// Every key that passes at open boundary `b` (in panes).
    pub(crate) fn passing_at(&self, b: u64) -> Vec<Rising<K>> {
        let Some(pass) = self.passing.get(&b) else {
            panic!("rise lateness state: boundary {b} has no passing set");
        };
        let t = b * self.geo.slide;
        pass.iter()
            .map(|(&id, counts)| Rising {
                key: self.slot(id).key.clone(),
                t,
                counts: counts.to_vec(),
            })
            .collect()
    }

    /// The open boundaries (in panes) that keep a passing set.
    pub(crate) fn open(&self) -> impl Iterator<Item = u64> + '_ {
        self.passing.keys().copied()
    }

    /// Drops what no boundary open at progress `upto` can need: passing
    /// sets of boundaries `T` with `T + lateness <= upto`, and panes whose
    /// last boundary is such a one. `None` (the input is done) drops all.
    pub(crate) fn evict(&mut self, upto: Option<EventTime>) {
        if upto.is_some() && upto <= self.evicted {
            return;
        }
        self.evicted = upto;
        self.record(|| Change::Evict(upto));
        let geo = self.geo;
        let Some(upto) = upto else {
            self.slots.clear();
            self.free.clear();
            self.ids.clear();
            self.index.clear();
            self.passing.clear();
            return;
        };
        let Some(rest) = upto.checked_sub(self.lateness) else {
            return;
        };
        // Boundaries b with b * slide <= rest are closed.
        let closed = rest / geo.slide;
        while let Some(entry) = self.passing.first_entry() {
            if *entry.key() > closed {
                break;
            }
            entry.remove();
        }
        // Pane q is last used by boundary q + span.
        let keep = (closed + 1).saturating_sub(geo.span());
        while let Some(entry) = self.index.first_entry() {
            if *entry.key() >= keep {
                break;
            }
            for id in entry.remove() {
                let Some(slot) = self.slots[id as usize].as_mut() else {
                    continue;
                };
                let gone = slot.panes.partition_point(|&(q, _)| q < keep);
                slot.panes.drain(..gone);
                if slot.panes.is_empty() {
                    if let Some(slot) = self.slots[id as usize].take() {
                        self.ids.remove(&slot.key);
                        self.free.push(id);
                    }
                }
            }
        }
    }
}
