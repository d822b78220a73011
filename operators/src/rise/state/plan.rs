//! Which keys a boundary reads, when the rule needs weight in every window.
//!
//! A key with oldest pane `o` is a candidate at each boundary `b` whose
//! first window holds `o`: up to `per_window` boundaries in a row. At the
//! first of them, `b`, every pane below `b` is final, and so are the first
//! N - 1 windows of every later boundary up to `o + span` (they end at or
//! before `o + span - per_window < b`). So that read also finds the later
//! boundaries at which those windows hold `min_first` each, and files the
//! key there: the key is read again only at those, not at each boundary
//! its oldest pane lies in the first window. Under a Zipf load most keys
//! that reach across the span are rare, and most of them fail there.
//!
//! The spread index therefore holds only entries not read yet: reading
//! takes them out. A key filed again (a new oldest pane after an eviction,
//! or newly reaching across the span) is read again as a new entry.
//! Neither the plan nor the read marks are saved: a restored state files
//! every key as not read, and reads each once more.

use std::collections::BTreeMap;

use keyflow_dataflow::Key;

use super::{mix, window_counts, Geometry, Panes, RiseState};

/// A stable hash to read at a boundary, and where its entry was filed: a
/// pane of the spread index (not read yet) or [`DUE`] (read before and
/// planned, or from the plain index, where nothing is planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) hash: u64,
    pub(crate) filed: u64,
}

/// [`Candidate::filed`] of a key read before (or not planned at all).
pub(crate) const DUE: u64 = u64::MAX;

impl Candidate {
    /// Whether the entry was not read before: reading it plans the key.
    pub(crate) fn unread(&self) -> bool {
        self.filed != DUE
    }
}

impl<K: Key> RiseState<K> {
    /// Takes the keys that can pass at boundary `b`, in the table's bucket
    /// order, each once (an unread entry ahead of a planned one): with the
    /// spread index, its unread entries of the first window and the keys
    /// planned for `b`; otherwise every index entry of the first window
    /// (or of the span, with `min_first == 0`), which stay.
    pub(crate) fn take_candidates(
        &mut self,
        b: u64,
        geo: &Geometry,
        min_first: u64,
    ) -> Vec<Candidate> {
        let span = geo.span();
        let start = b.saturating_sub(span);
        // With c1 >= 1 a key has weight in the first window, so its oldest
        // pane (and its index entry) lies there; otherwise any key with
        // weight in the span is a candidate.
        let end = if min_first >= 1 {
            (b + geo.per_window).saturating_sub(span).min(b)
        } else {
            b
        };
        let mut out: Vec<Candidate> = Vec::new();
        if self.reach.is_some() {
            let panes: Vec<u64> = self.spread.range(start..end).map(|(p, _)| *p).collect();
            for p in panes {
                let hashes = self.spread.remove(&p).unwrap_or_default();
                out.extend(hashes.into_iter().map(|hash| Candidate { hash, filed: p }));
            }
            let due = self.schedule.remove(&b).unwrap_or_default();
            out.extend(due.into_iter().map(|hash| Candidate { hash, filed: DUE }));
        } else {
            let entries = self.index.range(start..end).flat_map(|(_, h)| h.iter());
            out.extend(entries.map(|&hash| Candidate { hash, filed: DUE }));
        }
        let bits = self.bucket_bits();
        out.sort_unstable_by_key(|c| (mix(c.hash).rotate_right(bits), c.filed));
        out.dedup_by_key(|c| c.hash);
        out
    }

    /// Puts candidates back as they were before [`RiseState::take_candidates`]
    /// took them, for boundary `b`: unread entries into the spread index,
    /// the others into the plan of `b`.
    pub(crate) fn put_back(&mut self, b: u64, candidates: impl Iterator<Item = Candidate>) {
        for c in candidates {
            match c.filed {
                DUE => self.schedule.entry(b).or_default().push(c.hash),
                p => self.spread.entry(p).or_default().push(c.hash),
            }
        }
    }
}

/// Files the key of stable hash `hash`, read at boundary `b` (every pane
/// below `b - 1` final) with its oldest pane in `b`'s first window, under
/// each later boundary whose first window still holds that pane and whose
/// first N - 1 windows hold `min_first` each. `counts` is scratch space.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    schedule: &mut BTreeMap<u64, Vec<u64>>,
    hash: u64,
    panes: &Panes,
    lo: u64,
    b: u64,
    geo: &Geometry,
    min_first: u64,
    counts: &mut Vec<u64>,
) {
    let n = geo.windows;
    let last = panes.oldest(lo) + geo.span();
    if last >= b + geo.per_window {
        // Not in the first window at `b`: read again when it is.
        return;
    }
    for at in b + 1..=last {
        // The first N - 1 windows at `at` end at `last - per_window` or
        // before, which is at most `b - 1`: their panes are final. The
        // last window may still grow and is not judged; every pane lies
        // in the span of `at`, which starts at `last - span` or later.
        counts.clear();
        counts.resize(n, 0);
        window_counts(panes, lo, at, geo, counts);
        if counts[..n - 1].iter().all(|&c| c >= min_first) {
            schedule.entry(at).or_default().push(hash);
        }
    }
}

/// Drops the plan of every boundary up to `b` (those skipped in a gap
/// included).
pub(crate) fn drop_through(schedule: &mut BTreeMap<u64, Vec<u64>>, b: u64) {
    while let Some(entry) = schedule.first_entry() {
        if *entry.key() > b {
            break;
        }
        entry.remove();
    }
}
