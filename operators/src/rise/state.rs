//! The state of one rise operator on one worker, apart from timely so that
//! it can be unit-tested and checkpointed.
//!
//! Each key keeps its sparse pane weights ([`Panes`]) in a hash table found
//! by the key's stable hash. An index maps every pane to the hashes of the
//! keys whose *oldest* pane it is. A key can pass at boundary `b` only if it
//! has weight in the first window, so evaluating `b` reads the index buckets
//! of the first window's panes; evicting the panes that fall out of the span
//! reads the buckets below it and re-files each key under its new oldest
//! pane. Work is proportional to the keys that can pass, not to all keys.
//!
//! When every window must hold weight for a key to pass (the built-in rules
//! with `min_first >= 1`, over two or more windows), a passing key has a
//! pane in the first window and one in the last, so its panes spread over
//! at least `reach = (N - 2) * panes_per_window + 1` panes. Such keys are
//! also filed, under the same oldest pane, in a second index, and
//! evaluation reads that index alone. Under a Zipf load few keys are seen
//! that often, so this skips most hash-table lookups, which are cache
//! misses on a large table. Each entry of that index is read once; the
//! read plans the later boundaries at which the key can still pass (the
//! `plan` module), and the next boundary's candidates are read ahead of
//! its close (the `ahead` module). Every pass of lookups over many keys
//! starts each key's cache misses well before its lookup (the `prefetch`
//! module).
//!
//! An index entry can go stale: when a key gets weight in a pane older than
//! its oldest one (out-of-order input), it is filed under the new pane and
//! its old entry stays behind. A stale entry is harmless: eviction handles a
//! key only from the bucket of its current oldest pane, and evaluation
//! deduplicates the hashes it reads. A key still holds the pane of every
//! entry that names it, so the smallest bucket is the oldest live pane.

use std::collections::BTreeMap;

use hashbrown::HashTable;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::Key;
use serde::{Deserialize, Serialize};

use super::chain::ChangeLog;
use super::panes::{Overflow, Panes};

mod ahead;
mod plan;
mod prefetch;

use ahead::Ahead;
use plan::Candidate;

/// The shape of the rise span, in panes (a pane is one slide long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Slide (and pane) length in ms.
    pub slide: u64,
    /// Panes per window: window / slide.
    pub per_window: u64,
    /// Number of windows N.
    pub windows: usize,
}

impl Geometry {
    /// Panes in the span of N windows.
    pub fn span(&self) -> u64 {
        self.per_window * self.windows as u64
    }
}

/// Why a pane weight was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The key's weight in one pane would pass `u32::MAX`.
    Overflow,
    /// The pane is 2^32 panes or more away from another live pane.
    OutOfRange,
}

impl From<Overflow> for AddError {
    fn from(_: Overflow) -> Self {
        AddError::Overflow
    }
}

#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    panes: Panes,
}

/// The table's hash of a key: the stable hash rotated, because the exchange
/// routes on the stable hash's low bits, which are then the same for every
/// key of one worker.
#[inline]
fn mix(hash: u64) -> u64 {
    hash.rotate_left(32)
}

/// Adds a key's weights in the panes below boundary `b` to the counts of
/// the N windows ending there (`counts` holds N zeros or more), all panes
/// relative to `lo`. Returns whether any pane lay below `b`.
#[inline]
fn window_counts(panes: &Panes, lo: u64, b: u64, geo: &Geometry, counts: &mut [u64]) -> bool {
    let mut any = false;
    for (p, w) in panes.iter(lo) {
        if p >= b {
            break;
        }
        let back = (b - 1 - p) / geo.per_window;
        counts[geo.windows - 1 - back as usize] += w as u64;
        any = true;
    }
    any
}

/// Per-key sparse pane weights of one rise operator on one worker.
///
/// Serializable for checkpoints: it is written as a [`RiseSnapshot`].
#[derive(Debug, Clone)]
pub struct RiseState<K> {
    table: HashTable<Slot<K>>,
    /// Pane -> stable hashes of the keys whose oldest pane it is.
    index: BTreeMap<u64, Vec<u64>>,
    /// The same, for the keys whose panes spread over `reach` or more,
    /// until an evaluation reads them (see [`RiseState::take_candidates`]).
    spread: BTreeMap<u64, Vec<u64>>,
    /// Boundary -> stable hashes of keys read at an earlier boundary whose
    /// first N - 1 windows there were already complete and hold
    /// `min_first` each.
    schedule: BTreeMap<u64, Vec<u64>>,
    /// The least spread (newest minus oldest pane) of a key that can pass;
    /// `None` when any key can, and `spread` is not kept.
    reach: Option<u64>,
    /// The highest pane added since the state was last empty.
    hi: u64,
    /// The last boundary evaluated, in panes (`T / slide`).
    last: Option<u64>,
    /// Panes below this one lie outside every later span, but may still
    /// be held: [`RiseState::close`] leaves them to [`RiseState::evict_some`],
    /// so that a boundary's results need not wait for its eviction.
    doomed: u64,
    /// With incremental checkpoints: the changes since the last one, in
    /// order, to be replayed over a snapshot.
    log: Option<Vec<Op<K>>>,
    /// The next boundary's evaluation, read ahead of its close
    /// ([`RiseState::read_ahead`]). Derived: never logged or saved.
    ahead: Option<Ahead>,
    /// The last read ahead, done with: its buffers serve the next.
    spare_ahead: Option<Ahead>,
}

/// One change to a [`RiseState`], as its methods were called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op<K> {
    /// `add(key, pane, weight)` (the key's hash is recomputed on replay).
    Add(K, u64, u32),
    /// `evict_before(pane)`.
    Evict(u64),
    /// `finish(boundary)`.
    Finish(u64),
}

impl<K> Default for RiseState<K> {
    fn default() -> Self {
        RiseState {
            table: HashTable::new(),
            index: BTreeMap::new(),
            spread: BTreeMap::new(),
            schedule: BTreeMap::new(),
            reach: None,
            hi: 0,
            last: None,
            doomed: 0,
            log: None,
            ahead: None,
            spare_ahead: None,
        }
    }
}

impl<K: Key> RiseState<K> {
    /// A state for rule evaluation over `geo`. `every_window` promises that
    /// the predicate fails unless every window holds at least `min_first`;
    /// with `min_first >= 1` the state then keeps the spread index.
    pub(crate) fn new(geo: &Geometry, min_first: u64, every_window: bool) -> Self {
        let reach = (every_window && min_first >= 1 && geo.windows >= 2)
            .then(|| (geo.windows as u64 - 2) * geo.per_window + 1);
        RiseState {
            reach,
            ..RiseState::default()
        }
    }

    /// How many keys hold weight.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key holds weight.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The last boundary evaluated, in ms.
    pub fn last_boundary(&self, slide: u64) -> Option<u64> {
        self.last.map(|b| b * slide)
    }

    /// Bytes held by the table, the index and the pane lists (not counting
    /// heap memory owned by the keys themselves).
    pub fn approx_bytes(&self) -> usize {
        let table = self.table.allocation_size();
        let panes: usize = self.table.iter().map(|s| s.panes.heap_bytes()).sum();
        let index: usize = (self.index.values())
            .chain(self.spread.values())
            .chain(self.schedule.values())
            .map(|v| v.capacity() * 8 + 48)
            .sum();
        let ahead = (self.ahead.iter())
            .chain(&self.spare_ahead)
            .map(|a| a.approx_bytes())
            .sum::<usize>();
        table + panes + index + ahead + std::mem::size_of::<Self>()
    }

    /// Sorts stable hashes into the order of the table's buckets, so that a
    /// pass of lookups walks the table's memory forward instead of jumping
    /// at random: neighbouring control bytes share cache lines and pages.
    /// The bucket is the low bits of `mix(hash)`, as many as the table has
    /// buckets (a power of two just above its capacity); a wrong guess
    /// costs speed only. Equal hashes end up adjacent.
    fn sort_by_bucket(&self, hashes: &mut [u64]) {
        let bits = self.bucket_bits();
        hashes.sort_unstable_by_key(|&h| mix(h).rotate_right(bits));
    }

    /// How many low bits of `mix(hash)` pick the table's bucket (see
    /// [`RiseState::sort_by_bucket`]).
    fn bucket_bits(&self) -> u32 {
        (self.table.capacity() + 1)
            .next_power_of_two()
            .trailing_zeros()
    }

    /// The oldest live pane; every live pane lies in `[lo, lo + 2^32)`.
    fn lo(&self) -> Option<u64> {
        self.index.first_key_value().map(|(p, _)| *p)
    }

    /// Adds weight `w` of `key` (whose stable hash is `hash`) to pane `p`.
    pub(crate) fn add(&mut self, hash: u64, key: K, p: u64, w: u64) -> Result<(), AddError> {
        let w = u32::try_from(w).map_err(|_| AddError::Overflow)?;
        let r = match self.lo() {
            None => {
                self.hi = p;
                p
            }
            Some(lo) => {
                let r = lo.min(p);
                let hi = self.hi.max(p);
                if hi - r > u32::MAX as u64 {
                    return Err(AddError::OutOfRange);
                }
                self.hi = hi;
                r
            }
        };
        if let Some(log) = self.log.as_mut() {
            log.push(Op::Add(key.clone(), p, w));
        }
        let mut abandon = false;
        match self.table.find_entry(mix(hash), |s| s.key == key) {
            Ok(mut found) => {
                let bucket = found.bucket_index();
                let slot = found.get_mut();
                let before = slot.panes.spread(r);
                let oldest_now = slot.panes.add(r, p, w)?;
                if oldest_now {
                    self.index.entry(p).or_default().push(hash);
                }
                if let Some(ahead) = self.ahead.as_mut() {
                    abandon = !ahead.note(hash, bucket, p, w, slot.panes.oldest(r));
                }
                // File the key when it first reaches, or under its new
                // oldest pane.
                if let Some(reach) = self.reach {
                    if slot.panes.spread(r) >= reach && (oldest_now || before < reach) {
                        let oldest = slot.panes.oldest(r);
                        self.spread.entry(oldest).or_default().push(hash);
                    }
                }
            }
            Err(_) => {
                // A new key holds one pane, too few to pass a rule that
                // reads ahead; only a pane below the span stops the read,
                // or an insert that may grow the table and so move the
                // buckets the read keeps (it grows only when full).
                let full = self.table.len() == self.table.capacity();
                if self.ahead.as_ref().is_some_and(|a| full || !a.spans(p)) {
                    self.abandon_ahead();
                }
                self.table.insert_unique(
                    mix(hash),
                    Slot {
                        key,
                        panes: Panes::new(p, w),
                    },
                    |s| mix(stable_hash(&s.key)),
                );
                self.index.entry(p).or_default().push(hash);
            }
        }
        if abandon {
            self.abandon_ahead();
        }
        Ok(())
    }

    /// The next boundary to evaluate, in panes: the first one after the last
    /// evaluated whose span holds a live pane. `None` when the state is empty.
    pub(crate) fn next_boundary(&self) -> Option<u64> {
        let lo = self.lo()?;
        Some(match self.last {
            Some(last) => (last + 1).max(lo + 1),
            None => lo + 1,
        })
    }

    /// Drops every pane below `p`, and every key left without panes.
    pub(crate) fn evict_before(&mut self, p: u64) {
        if let Some(log) = self.log.as_mut() {
            log.push(Op::Evict(p));
        }
        self.evict(p);
    }

    fn evict(&mut self, p: u64) {
        while let Some(entry) = self.index.first_entry() {
            if *entry.key() >= p {
                break;
            }
            let (oldest, hashes) = entry.remove_entry();
            self.evict_keys(oldest, hashes, p);
        }
        self.drop_spread_below(p);
    }

    /// Drops the panes below `p` of the keys of `hashes`, all filed under
    /// their oldest pane `oldest` (below `p`), and re-files each key that
    /// keeps a pane under its new oldest one.
    fn evict_keys(&mut self, oldest: u64, mut hashes: Vec<u64>, p: u64) {
        // What was read ahead assumed that nothing is evicted before the
        // close it was read for.
        self.abandon_ahead();
        self.sort_by_bucket(&mut hashes);
        for (i, &hash) in hashes.iter().enumerate() {
            self.prefetch_before(i, 0, hashes.len(), |j| hashes[j]);
            // Colliding keys share a hash: handle each one filed here.
            while let Ok(mut found) = self.table.find_entry(mix(hash), |s| {
                s.panes.oldest(oldest) == oldest && stable_hash(&s.key) == hash
            }) {
                if found.get_mut().panes.drop_before(oldest, p) {
                    let next = found.get().panes.oldest(oldest);
                    self.index.entry(next).or_default().push(hash);
                    let left = found.get().panes.spread(oldest);
                    if self.reach.is_some_and(|reach| left >= reach) {
                        self.spread.entry(next).or_default().push(hash);
                    }
                } else {
                    found.remove();
                }
            }
        }
    }

    /// Drops the spread index's entries below `p`; once no key is left,
    /// both indexes.
    fn drop_spread_below(&mut self, p: u64) {
        while let Some(entry) = self.spread.first_entry() {
            if *entry.key() >= p {
                break;
            }
            entry.remove();
        }
        if self.table.is_empty() {
            self.index.clear();
            self.spread.clear();
            self.schedule.clear();
        }
    }

    /// Evaluates boundary `b` (in panes): for every key whose counts
    /// `c1..cN` over the N windows ending at `b` have `c1 >= min_first`,
    /// weight somewhere, and pass `pred`, calls `emit(key, counts)`. Returns
    /// how many keys passed. Panes below the span must be evicted first.
    ///
    /// `min_first` must be the one the state was made with.
    pub(crate) fn evaluate<P, E>(
        &mut self,
        b: u64,
        geo: &Geometry,
        min_first: u64,
        pred: &P,
        counts: &mut Vec<u64>,
        mut emit: E,
    ) -> u64
    where
        P: Fn(&[u64]) -> bool + ?Sized,
        E: FnMut(&K, &[u64]),
    {
        let Some(lo) = self.lo() else { return 0 };
        debug_assert!(
            lo >= b.saturating_sub(geo.span()),
            "pane {lo} was not evicted before boundary {b}"
        );
        let candidates = self.take_candidates(b, geo, min_first);
        let mut passed = 0;
        for (i, &c) in candidates.iter().enumerate() {
            self.prefetch_before(i, 0, candidates.len(), |j| candidates[j].hash);
            passed += self.evaluate_hash(c, lo, b, geo, min_first, pred, counts, &mut emit);
        }
        passed
    }

    /// Evaluates boundary `b` for the keys of candidate `c`, as
    /// [`RiseState::evaluate`] does; `lo` is the oldest live pane.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_hash<P, E>(
        &mut self,
        c: Candidate,
        lo: u64,
        b: u64,
        geo: &Geometry,
        min_first: u64,
        pred: &P,
        counts: &mut Vec<u64>,
        emit: &mut E,
    ) -> u64
    where
        P: Fn(&[u64]) -> bool + ?Sized,
        E: FnMut(&K, &[u64]),
    {
        let mut passed = 0;
        for slot in self.table.iter_hash(mix(c.hash)) {
            if stable_hash(&slot.key) != c.hash {
                continue;
            }
            counts.clear();
            counts.resize(geo.windows, 0);
            if window_counts(&slot.panes, lo, b, geo, counts)
                && counts[0] >= min_first
                && pred(counts)
            {
                passed += 1;
                emit(&slot.key, counts);
            }
            if c.unread() {
                plan::plan(
                    &mut self.schedule,
                    c.hash,
                    &slot.panes,
                    lo,
                    b,
                    geo,
                    min_first,
                    counts,
                );
            }
        }
        passed
    }

    /// Records that boundary `b` is done and drops the pane that no later
    /// boundary's span holds.
    pub(crate) fn finish(&mut self, b: u64, geo: &Geometry) {
        self.close(b, geo);
        self.evict(self.doomed);
    }

    /// What [`RiseState::finish`] does, but the pane that falls out of the
    /// span is only marked: [`RiseState::evict_some`] drops it in slices
    /// between batches of input, and the next [`RiseState::evict_before`]
    /// drops what is left. Logged as `finish`, which a replay runs whole.
    pub(crate) fn close(&mut self, b: u64, geo: &Geometry) {
        if let Some(log) = self.log.as_mut() {
            log.push(Op::Finish(b));
        }
        if self.ahead.as_ref().is_some_and(|a| a.b <= b) {
            self.abandon_ahead();
        }
        plan::drop_through(&mut self.schedule, b);
        self.last = Some(b);
        self.doomed = self.doomed.max((b + 1).saturating_sub(geo.span()));
    }

    /// Drops up to about `budget` keys' panes below the marked pane
    /// ([`RiseState::close`]), oldest bucket first. Returns whether any
    /// are left. Not logged: no evaluation reads the panes dropped here,
    /// and the `evict_before` that comes before every evaluation drops the
    /// same panes in a replay.
    pub(crate) fn evict_some(&mut self, budget: usize) -> bool {
        let p = self.doomed;
        let mut left = budget;
        while left > 0 {
            let Some(mut entry) = self.index.first_entry() else {
                break;
            };
            let oldest = *entry.key();
            if oldest >= p {
                break;
            }
            let bucket = entry.get_mut();
            let take = bucket.len().min(left);
            let hashes = bucket.split_off(bucket.len() - take);
            if bucket.is_empty() {
                entry.remove();
            }
            left -= take.max(1);
            self.evict_keys(oldest, hashes, p);
        }
        let done = self.lo().is_none_or(|q| q >= p);
        if done {
            self.drop_spread_below(p);
        }
        !done
    }

    /// Drops every pane marked by [`RiseState::close`], logged as an
    /// eviction: before a snapshot, so that it holds no such pane.
    pub(crate) fn evict_marked(&mut self) {
        if self.lo().is_some_and(|q| q < self.doomed) {
            self.evict_before(self.doomed);
        }
    }

    /// A plain copy: keys sorted, with their `(pane, weight)` pairs.
    pub fn snapshot(&self) -> RiseSnapshot<K> {
        let lo = self.lo().unwrap_or(0);
        let mut keys: Vec<(K, Vec<(u64, u64)>)> = self
            .table
            .iter()
            .map(|s| {
                let panes = s.panes.iter(lo).map(|(p, w)| (p, w as u64)).collect();
                (s.key.clone(), panes)
            })
            .collect();
        keys.sort();
        RiseSnapshot {
            last: self.last,
            reach: self.reach,
            keys,
        }
    }

    /// Rebuilds a state from a snapshot.
    pub fn restore(snapshot: RiseSnapshot<K>) -> Result<Self, String> {
        let mut state = RiseState {
            last: snapshot.last,
            reach: snapshot.reach,
            ..RiseState::default()
        };
        for (key, panes) in snapshot.keys {
            let hash = stable_hash(&key);
            for (p, w) in panes {
                state
                    .add(hash, key.clone(), p, w)
                    .map_err(|e| format!("rise snapshot: pane {p} weight {w}: {e:?}"))?;
            }
        }
        Ok(state)
    }
}

impl<K: Key> ChangeLog for RiseState<K> {
    type Full = RiseSnapshot<K>;
    type Change = Op<K>;

    fn full(&self) -> RiseSnapshot<K> {
        self.snapshot()
    }

    fn track_changes(&mut self) {
        self.log = Some(Vec::new());
    }

    fn take_changes(&mut self) -> Vec<Op<K>> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

impl<K: Key> RiseState<K> {
    /// Replays logged changes, skipping additions of keys `keep` rejects
    /// (by stable hash): another worker owns them now.
    pub(crate) fn replay(&mut self, ops: Vec<Op<K>>, geo: &Geometry, keep: impl Fn(u64) -> bool) {
        for op in ops {
            match op {
                Op::Add(key, p, w) => {
                    let hash = stable_hash(&key);
                    if keep(hash) {
                        // The same call failed the same way when it was
                        // logged.
                        let _ = self.add(hash, key, p, w as u64);
                    }
                }
                Op::Evict(p) => self.evict_before(p),
                Op::Finish(b) => self.finish(b, geo),
            }
        }
    }
}

/// The serialized form of a [`RiseState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiseSnapshot<K> {
    /// The last boundary evaluated, in panes.
    pub last: Option<u64>,
    /// The least spread of a key that can pass, if the rule has one.
    #[serde(default)]
    pub reach: Option<u64>,
    /// Every key with its `(pane index, weight)` pairs, oldest first.
    pub keys: Vec<(K, Vec<(u64, u64)>)>,
}

impl<K: Key> Serialize for RiseState<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.snapshot().serialize(serializer)
    }
}

impl<'de, K: Key> Deserialize<'de> for RiseState<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot = RiseSnapshot::<K>::deserialize(deserializer)?;
        RiseState::restore(snapshot).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
