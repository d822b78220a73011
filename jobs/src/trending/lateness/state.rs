//! The keyed state of the lateness path on one worker, apart from timely so
//! that it can be unit-tested: sparse pane views per article, and, per
//! boundary still inside the allowed lateness, the articles that pass there.
//!
//! Articles live in a slab so that the pane index and the passing sets hold
//! 4-byte ids rather than clones of the article. A slot is freed only once
//! none of its panes lies in the span of an open boundary, so an id in a
//! passing set always names a live slot.

use std::collections::BTreeMap;

use keyflow_dataflow::hash::StableMap;
use keyflow_operators::rise::Rising;
use keyflow_operators::topk::TopKPartial;

use super::Params;
use crate::pageviews::Article;

/// One worker's ranking of one boundary: how many of its articles pass, and
/// its best `top` of them (all with `top == 0`), unsorted.
pub(crate) type LocalRank = TopKPartial<Rising<Article>>;

/// What applying one batch of late events did.
#[derive(Debug, Default)]
pub(crate) struct LateOutcome {
    /// Events that no open boundary accepted.
    pub dropped: u64,
    /// Re-evaluated boundaries (ms), each with this worker's new ranking, or
    /// `None` when its passing set did not change.
    pub updates: Vec<(u64, Option<LocalRank>)>,
}

#[derive(Debug)]
struct Slot {
    article: Article,
    /// `(pane, views)`, sorted by pane.
    panes: Vec<(u64, u64)>,
}

/// Pane views and passing sets of the articles routed to one worker.
#[derive(Debug)]
pub(crate) struct KeyedMinutes {
    params: Params,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: StableMap<Article, u32>,
    /// Pane -> ids of the articles with views in it.
    index: BTreeMap<u64, Vec<u32>>,
    /// Boundary (in panes) -> passing article -> its counts `c1..cN`, for
    /// every boundary this worker evaluated that is still open.
    passing: BTreeMap<u64, StableMap<u32, Box<[u64]>>>,
    /// Every boundary at or below this one (in panes) had its chance to be
    /// evaluated for the first time; later weight there is an update.
    considered: Option<u64>,
}

impl KeyedMinutes {
    /// An empty state.
    pub(crate) fn new(params: Params) -> Self {
        KeyedMinutes {
            params,
            slots: Vec::new(),
            free: Vec::new(),
            ids: StableMap::default(),
            index: BTreeMap::new(),
            passing: BTreeMap::new(),
            considered: None,
        }
    }

    /// How many articles hold views.
    #[cfg(test)]
    pub(crate) fn articles(&self) -> usize {
        self.ids.len()
    }

    /// How many boundaries keep a passing set.
    #[cfg(test)]
    pub(crate) fn open_boundaries(&self) -> usize {
        self.passing.len()
    }

    fn slot(&self, id: u32) -> &Slot {
        match self.slots.get(id as usize) {
            Some(Some(slot)) => slot,
            _ => panic!("lateness state: article id {id} names no live slot"),
        }
    }

    /// Adds `views` of `article` in `pane`; returns the article's id.
    pub(crate) fn add(&mut self, article: Article, pane: u64, views: u64) -> u32 {
        let id = match self.ids.get(&article) {
            Some(&id) => id,
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    (self.slots.len() - 1) as u32
                });
                self.ids.insert(article.clone(), id);
                self.slots[id as usize] = Some(Slot {
                    article,
                    panes: Vec::new(),
                });
                id
            }
        };
        let Some(slot) = self.slots[id as usize].as_mut() else {
            panic!("lateness state: article id {id} was just made live");
        };
        match slot.panes.binary_search_by_key(&pane, |&(p, _)| p) {
            Ok(i) => slot.panes[i].1 = slot.panes[i].1.saturating_add(views),
            Err(i) => {
                slot.panes.insert(i, (pane, views));
                self.index.entry(pane).or_default().push(id);
            }
        }
        id
    }

    /// The next boundary (in panes) to evaluate for the first time: the
    /// first one after those considered whose span holds views.
    pub(crate) fn next_boundary(&self) -> Option<u64> {
        let from = self.considered.map_or(0, |c| c + 1);
        let (&pane, _) = self
            .index
            .range(from.saturating_sub(self.params.span())..)
            .next()?;
        Some(from.max(pane + 1))
    }

    /// `c1..cN` of article `id` at boundary `b` (in panes) into `counts`;
    /// returns whether it passes the rule.
    fn counts_at(&self, id: u32, b: u64, counts: &mut [u64]) -> bool {
        let p = &self.params;
        counts.fill(0);
        let panes = &self.slot(id).panes;
        let from = panes.partition_point(|&(q, _)| q < b.saturating_sub(p.span()));
        let mut any = false;
        for &(q, views) in panes[from..].iter().take_while(|(q, _)| *q < b) {
            let back = ((b - 1 - q) / p.per_window) as usize;
            let c = &mut counts[p.windows - 1 - back];
            *c = c.saturating_add(views);
            any = true;
        }
        any && counts[0] >= p.min_first && p.rule.holds(counts)
    }

    /// First evaluation of boundary `b` (in panes): keeps its passing set
    /// and returns this worker's ranking of it.
    pub(crate) fn evaluate(&mut self, b: u64) -> LocalRank {
        let p = self.params;
        debug_assert!(self.considered.is_none_or(|c| c < b), "boundary {b} again");
        self.considered = Some(b);
        let start = b.saturating_sub(p.span());
        // With c1 >= 1 a passing article has views in the first window, so
        // only those are read; otherwise any article of the span may pass.
        let end = if p.min_first >= 1 {
            (b + p.per_window).saturating_sub(p.span()).min(b)
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
        let mut counts = vec![0; p.windows];
        let mut pass = StableMap::default();
        for id in candidates {
            if self.counts_at(id, b, &mut counts) {
                pass.insert(id, counts.clone().into_boxed_slice());
            }
        }
        self.passing.insert(b, pass);
        self.rank(b)
    }

    /// Applies the late events read at time `t` (`(article, ts, views)`),
    /// once every boundary at or below `t` has been evaluated. An event
    /// counts for the boundaries `T` with `ts < T <= ts + span` that are
    /// still ahead (`T > t`) or open (`T + lateness > t`); the open ones at
    /// or below `t` are re-evaluated for the articles it touched.
    pub(crate) fn apply_late(&mut self, t: u64, events: Vec<(Article, u64, u64)>) -> LateOutcome {
        let p = self.params;
        debug_assert!(
            self.next_boundary().is_none_or(|b| b * p.slide > t),
            "late batch {t} applied before boundary {:?}",
            self.next_boundary()
        );
        let at = t / p.slide;
        self.considered = Some(self.considered.map_or(at, |c| c.max(at)));
        // The first open boundary: b * slide + lateness > t.
        let open = t
            .checked_sub(p.lateness)
            .map_or(0, |rest| rest / p.slide + 1);
        let mut touched: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut outcome = LateOutcome::default();
        for (article, ts, views) in events {
            let pane = ts / p.slide;
            let (first, last) = ((pane + 1).max(open), pane.saturating_add(p.span()));
            if first > last {
                outcome.dropped += 1;
                continue;
            }
            let id = self.add(article, pane, views);
            for b in first..=last.min(at) {
                touched.entry(b).or_default().push(id);
            }
        }
        for (b, mut ids) in touched {
            ids.sort_unstable();
            ids.dedup();
            let changed = self.reevaluate(b, &ids);
            outcome
                .updates
                .push((b * p.slide, changed.then(|| self.rank(b))));
        }
        outcome
    }

    /// Re-checks `ids` at boundary `b`; returns whether its passing set or
    /// a passing article's counts changed.
    fn reevaluate(&mut self, b: u64, ids: &[u32]) -> bool {
        let mut counts = vec![0; self.params.windows];
        let fresh: Vec<(u32, Option<Box<[u64]>>)> = ids
            .iter()
            .map(|&id| {
                let passes = self.counts_at(id, b, &mut counts);
                (id, passes.then(|| counts.clone().into_boxed_slice()))
            })
            .collect();
        // A boundary this worker never evaluated (nothing of its span was
        // here) starts with an empty passing set.
        let pass = self.passing.entry(b).or_default();
        let mut changed = false;
        for (id, now) in fresh {
            match now {
                Some(c) => {
                    if pass.get(&id) != Some(&c) {
                        pass.insert(id, c);
                        changed = true;
                    }
                }
                None => changed |= pass.remove(&id).is_some(),
            }
        }
        changed
    }

    /// This worker's ranking of evaluated boundary `b` (in panes).
    fn rank(&self, b: u64) -> LocalRank {
        let p = &self.params;
        let Some(pass) = self.passing.get(&b) else {
            panic!("lateness state: boundary {b} has no passing set");
        };
        let mut best: Vec<(&Article, &[u64])> = pass
            .iter()
            .map(|(&id, c)| (&self.slot(id).article, &c[..]))
            .collect();
        if p.top > 0 && best.len() > p.top {
            best.select_nth_unstable_by(p.top, |a, b| trending_order(*a, *b));
            best.truncate(p.top);
        }
        let t = b * p.slide;
        TopKPartial {
            total: pass.len() as u64,
            top: best
                .into_iter()
                .map(|(article, counts)| Rising {
                    key: article.clone(),
                    t,
                    counts: counts.to_vec(),
                })
                .collect(),
        }
    }

    /// Drops what no boundary open at progress `upto` can need: passing
    /// sets of boundaries `T` with `T + lateness <= upto`, and panes whose
    /// last boundary is such a one. `None` (the input is done) drops all.
    pub(crate) fn evict(&mut self, upto: Option<u64>) {
        let p = self.params;
        let Some(upto) = upto else {
            self.slots.clear();
            self.free.clear();
            self.ids.clear();
            self.index.clear();
            self.passing.clear();
            return;
        };
        let Some(rest) = upto.checked_sub(p.lateness) else {
            return;
        };
        // Boundaries b with b * slide <= rest are closed.
        let closed = rest / p.slide;
        while let Some(entry) = self.passing.first_entry() {
            if *entry.key() > closed {
                break;
            }
            entry.remove();
        }
        // Pane q is last used by boundary q + span.
        let keep = (closed + 1).saturating_sub(p.span());
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
                        self.ids.remove(&slot.article);
                        self.free.push(id);
                    }
                }
            }
        }
    }
}

/// [`crate::trending::trending_order`] on borrowed parts: growth `cN - c1`
/// descending, then `cN` descending, then article ascending.
fn trending_order(a: (&Article, &[u64]), b: (&Article, &[u64])) -> std::cmp::Ordering {
    let growth = |c: &[u64]| c[c.len() - 1].saturating_sub(c[0]);
    let last = |c: &[u64]| c[c.len() - 1];
    growth(b.1)
        .cmp(&growth(a.1))
        .then_with(|| last(b.1).cmp(&last(a.1)))
        .then_with(|| a.0.cmp(b.0))
}
