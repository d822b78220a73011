//! A boundary's evaluation, read ahead of its close.
//!
//! Once boundary `b - 1` is closed, event-time progress has passed the
//! start of pane `b - 1`, so every later weight lands in pane `b - 1` or
//! later: of the panes that boundary `b` reads, only the last can still
//! change. The candidates of `b` can then be read while input still
//! arrives, a slice at a time, in the time that paced input leaves idle.
//! A rule that reads ahead needs weight in every window, so a candidate
//! whose first `N - 1` windows already fall short is settled; the others
//! keep their counts. Weight added afterwards to a candidate goes into its
//! kept counts, or, for a key read as settled or not read yet, names it
//! for a second read at the close. The close then reads only those keys,
//! so its cost follows the keys that got weight late, not every candidate.
//!
//! A kept key is named by its bucket in the state's table, not by a copy:
//! copying a key such as a shared name would touch its memory at every
//! read, and comparing two copies of one name read by two workers reads
//! both names. Buckets stay put while the read lasts, because it is
//! dropped before anything could move them: before any eviction, and
//! before an insert that could make the table grow.
//!
//! What was read ahead is derived from the state: it is neither logged nor
//! saved, and a restored state starts without it.

use hashbrown::HashTable;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::Key;

use super::plan::{self, Candidate, DUE};
use super::{mix, window_counts, Geometry, RiseState};

/// Boundary `b`'s candidates, read ahead of its close.
#[derive(Debug, Clone)]
pub(crate) struct Ahead {
    /// The boundary, in panes.
    pub(super) b: u64,
    /// The first pane of `b`'s span, and the end of its first window.
    start: u64,
    first_end: u64,
    geo: Geometry,
    /// The candidates in the table's bucket order; from `next` on, not read
    /// yet.
    todo: Vec<Candidate>,
    next: usize,
    /// The table buckets of the keys that can still pass, their stable
    /// hashes, and their counts (`windows` per key, in a row).
    pub(super) buckets: Vec<usize>,
    hashes: Vec<u64>,
    counts: Vec<u64>,
    /// Position in `buckets`, found by stable hash.
    at: HashTable<u32>,
    /// Stable hashes of the keys to read again at the close.
    recheck: Vec<u64>,
}

impl Ahead {
    /// Boundary `b`'s read of `todo`, in the buffers of `spare` (an
    /// earlier boundary's read, done with) where there is one: a read
    /// keeps up to a few MiB, which fresh buffers would fault in again
    /// every boundary.
    fn new(b: u64, geo: &Geometry, todo: Vec<Candidate>, spare: Option<Ahead>) -> Self {
        let start = b.saturating_sub(geo.span());
        let (mut buckets, mut hashes, mut counts, mut at, mut recheck) = spare
            .map(|a| (a.buckets, a.hashes, a.counts, a.at, a.recheck))
            .unwrap_or_default();
        buckets.clear();
        hashes.clear();
        counts.clear();
        at.clear();
        recheck.clear();
        Ahead {
            b,
            start,
            first_end: start + geo.per_window,
            geo: *geo,
            todo,
            next: 0,
            buckets,
            hashes,
            counts,
            at,
            recheck,
        }
    }

    /// Whether pane `p` lies at or after the start of the span. A weight
    /// below it would only be possible before `b - 1` closed; the read is
    /// then dropped rather than reasoned about.
    pub(super) fn spans(&self, p: u64) -> bool {
        p >= self.start
    }

    /// Takes note of weight `w` added to pane `p` of the key in table
    /// bucket `bucket`, whose oldest pane is now `oldest`. Returns `false`
    /// when the read must be dropped.
    pub(super) fn note(&mut self, hash: u64, bucket: usize, p: u64, w: u32, oldest: u64) -> bool {
        if !self.spans(p) {
            return false;
        }
        // A key passes at `b` only with weight in the first window, where
        // its oldest pane then lies (no pane lies below the span).
        if p >= self.b || oldest >= self.first_end {
            return true;
        }
        match self.position(hash) {
            Some(i) if self.buckets[i as usize] == bucket => {
                let n = self.geo.windows;
                let back = (self.b - 1 - p) / self.geo.per_window;
                self.counts[i as usize * n + n - 1 - back as usize] += w as u64;
            }
            _ => self.recheck.push(hash),
        }
        true
    }

    /// The position in `keys` of the key kept with stable hash `hash`.
    fn position(&self, hash: u64) -> Option<u32> {
        let hashes = &self.hashes;
        self.at
            .find(mix(hash), |&i| hashes[i as usize] == hash)
            .copied()
    }

    /// Keeps the key in table bucket `bucket` with its `counts`; a second
    /// key of the same stable hash sends both to the second read.
    fn keep(&mut self, hash: u64, bucket: usize, counts: &[u64]) {
        if self.position(hash).is_some() {
            self.recheck.push(hash);
            return;
        }
        let i = self.buckets.len() as u32;
        let hashes = &self.hashes;
        self.at
            .insert_unique(mix(hash), i, |&j| mix(hashes[j as usize]));
        self.buckets.push(bucket);
        self.hashes.push(hash);
        self.counts.extend_from_slice(counts);
    }

    /// Heap bytes held.
    pub(super) fn approx_bytes(&self) -> usize {
        self.todo.capacity() * std::mem::size_of::<Candidate>()
            + self.buckets.capacity() * std::mem::size_of::<usize>()
            + self.hashes.capacity() * 8
            + self.counts.capacity() * 8
            + self.at.allocation_size()
            + self.recheck.capacity() * 8
    }
}

impl<K: Key> RiseState<K> {
    /// Reads up to `budget` candidates of the next boundary ahead of its
    /// close. Returns whether any are left to read.
    ///
    /// Reads only for a rule that needs weight in every window (the state
    /// keeps the spread index), right after the boundary before was closed
    /// and the pane it left behind evicted; otherwise the close reads all.
    /// `min_first` must be the one the state was made with.
    pub(crate) fn read_ahead(&mut self, geo: &Geometry, min_first: u64, budget: usize) -> bool {
        let Some(b) = self.ahead_boundary() else {
            return false;
        };
        let mut ahead = match self.take_ahead(b) {
            Some(a) => a,
            None => {
                let todo = self.take_candidates(b, geo, min_first);
                Ahead::new(b, geo, todo, self.spare_ahead.take())
            }
        };
        let left = self.read(&mut ahead, min_first, budget);
        self.ahead = Some(ahead);
        left
    }

    /// Whether [`RiseState::read_ahead`] has work to do: a read begun and
    /// not finished, or a boundary ready whose read has not begun (it may
    /// turn out to have no candidates).
    pub(crate) fn can_read_ahead(&self) -> bool {
        match (self.ahead_boundary(), self.ahead.as_ref()) {
            (None, _) => false,
            (Some(b), Some(a)) if a.b == b => a.next < a.todo.len(),
            (Some(_), _) => true,
        }
    }

    /// The boundary to read ahead for, if any: the one after the last
    /// closed, once the pane that close left behind is evicted.
    fn ahead_boundary(&self) -> Option<u64> {
        let b = self.next_boundary()?;
        let ready = self.reach.is_some()
            && self.last.map(|l| l + 1) == Some(b)
            && self.lo().is_some_and(|lo| lo >= self.doomed);
        ready.then_some(b)
    }

    /// Reads up to `budget` more candidates into `ahead`. Returns whether
    /// any are left.
    fn read(&mut self, ahead: &mut Ahead, min_first: u64, budget: usize) -> bool {
        let Some(lo) = self.lo() else {
            ahead.next = ahead.todo.len();
            return false;
        };
        let geo = ahead.geo;
        let mut counts = vec![0; geo.windows];
        let mut scratch = Vec::with_capacity(geo.windows);
        let end = ahead.todo.len().min(ahead.next.saturating_add(budget));
        for n in ahead.next..end {
            self.prefetch_before(n, ahead.next, end, |j| ahead.todo[j].hash);
            let c = ahead.todo[n];
            for bucket in self.table.iter_hash_buckets(mix(c.hash)) {
                let Some(slot) = self.table.get_bucket(bucket) else {
                    continue;
                };
                if stable_hash(&slot.key) != c.hash {
                    continue;
                }
                counts.fill(0);
                window_counts(&slot.panes, lo, ahead.b, &geo, &mut counts);
                // Only the last window can still grow: a key whose others
                // fall short cannot pass a rule that needs every window.
                if counts[..geo.windows - 1].iter().all(|&c| c >= min_first) {
                    ahead.keep(c.hash, bucket, &counts);
                }
                if c.unread() {
                    let s = &mut self.schedule;
                    plan::plan(
                        s,
                        c.hash,
                        &slot.panes,
                        lo,
                        ahead.b,
                        &geo,
                        min_first,
                        &mut scratch,
                    );
                }
            }
        }
        ahead.next = end;
        end < ahead.todo.len()
    }

    /// Takes what was read ahead for boundary `b`; what was read for
    /// another boundary is abandoned.
    fn take_ahead(&mut self, b: u64) -> Option<Ahead> {
        match self.ahead.take() {
            Some(a) if a.b == b => Some(a),
            other => {
                self.ahead = other;
                self.abandon_ahead();
                None
            }
        }
    }

    /// Drops what was read ahead, and puts the candidates taken for it
    /// back: the next evaluation reads them as if nothing had been read.
    pub(super) fn abandon_ahead(&mut self) {
        if let Some(a) = self.ahead.take() {
            // Those read already are planned: they stay due at `b` only.
            let read = a.todo[..a.next].iter().map(|c| Candidate {
                hash: c.hash,
                filed: DUE,
            });
            self.put_back(a.b, read.chain(a.todo[a.next..].iter().copied()));
            self.spare_ahead = Some(a);
        }
    }

    /// Evaluates boundary `b` as [`RiseState::evaluate`] does, from what
    /// was read ahead of the close where that read was of `b`: the
    /// candidates not read yet are read now, and the keys named for a
    /// second read are read again whole.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn evaluate_close<P, E>(
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
        let Some(mut ahead) = self.take_ahead(b) else {
            return self.evaluate(b, geo, min_first, pred, counts, emit);
        };
        self.read(&mut ahead, min_first, usize::MAX);
        let Some(lo) = self.lo() else { return 0 };
        let mut recheck = std::mem::take(&mut ahead.recheck);
        self.sort_by_bucket(&mut recheck);
        recheck.dedup();
        let mut again: HashTable<u64> = HashTable::with_capacity(recheck.len());
        for &h in &recheck {
            again.insert_unique(mix(h), h, |&h| mix(h));
        }
        let n = geo.windows;
        let mut passed = 0;
        for (i, &bucket) in ahead.buckets.iter().enumerate() {
            let hash = ahead.hashes[i];
            let kept = &ahead.counts[i * n..(i + 1) * n];
            if again.find(mix(hash), |&h| h == hash).is_none() && pred(kept) {
                match self.table.get_bucket(bucket) {
                    Some(slot) if stable_hash(&slot.key) == hash => {
                        passed += 1;
                        emit(&slot.key, kept);
                    }
                    // Nothing moves a kept key (see the module comment);
                    // were one moved, it is read again, not trusted.
                    _ => recheck.push(hash),
                }
            }
        }
        for hash in recheck {
            let c = Candidate { hash, filed: DUE };
            passed += self.evaluate_hash(c, lo, b, geo, min_first, pred, counts, &mut emit);
        }
        self.spare_ahead = Some(ahead);
        passed
    }
}
