//! The global half of the lateness path, on worker 0: every worker's latest
//! ranking of each open boundary, merged into one minute per boundary and
//! emission time.

use std::collections::{BTreeMap, BTreeSet};

use keyflow_operators::rise::Rising;
use keyflow_operators::topk::TopK;
use serde::{Deserialize, Serialize};

use super::state::LocalRank;
use super::Params;
use crate::trending::{minute_of, TrendingMinute};

/// One worker's news about one boundary, traveling at the time it is about:
/// the boundary itself for a first evaluation, the late batch's time for a
/// re-evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LocalMinute {
    /// The boundary `T` (ms).
    pub t: u64,
    /// The worker that owns the articles ranked.
    pub worker: usize,
    /// Whether a late batch re-evaluated `T` (rather than a first evaluation).
    pub update: bool,
    /// The worker's new ranking of `T`, or `None` when it did not change.
    pub rank: Option<LocalRank>,
}

/// Per open boundary, the latest ranking from each worker.
#[derive(Debug)]
pub(crate) struct Rankings {
    params: Params,
    minutes: BTreeMap<u64, BTreeMap<usize, LocalRank>>,
}

impl Rankings {
    /// No boundary yet.
    pub(crate) fn new(params: Params) -> Self {
        Rankings {
            params,
            minutes: BTreeMap::new(),
        }
    }

    /// How many boundaries are kept.
    #[cfg(test)]
    pub(crate) fn open_boundaries(&self) -> usize {
        self.minutes.len()
    }

    /// Takes in everything that travels at time `at` (all of it, once
    /// progress has passed `at`) and returns one minute per boundary it
    /// named, ranked: an update when `at` is past the boundary.
    pub(crate) fn apply(&mut self, at: u64, mut news: Vec<LocalMinute>) -> Vec<TrendingMinute> {
        // A worker may first-evaluate `T` and re-evaluate it for a late
        // batch read at `T` itself: the re-evaluation is the newer one.
        news.sort_by_key(|n| (n.t, n.update, n.worker));
        let mut named = BTreeSet::new();
        for news in news {
            let ranks = self.minutes.entry(news.t).or_default();
            if let Some(rank) = news.rank {
                ranks.insert(news.worker, rank);
            }
            named.insert(news.t);
        }
        named.into_iter().map(|t| self.minute(t, at)).collect()
    }

    /// The merged ranking of boundary `t` as emitted at time `at`.
    fn minute(&self, t: u64, at: u64) -> TrendingMinute {
        let mut total = 0;
        let mut top: Vec<Rising<_>> = Vec::new();
        for rank in self.minutes.get(&t).into_iter().flat_map(|r| r.values()) {
            total += rank.total;
            top.extend(rank.top.iter().cloned());
        }
        top.sort_by(crate::trending::trending_order);
        if self.params.top > 0 {
            top.truncate(self.params.top);
        }
        let mut minute = minute_of(TopK { t, total, top });
        minute.update = at > t;
        minute
    }

    /// Drops the boundaries `T` with `T + lateness <= upto`: nothing about
    /// them travels at `upto` or later. `None` (the input is done) drops all.
    pub(crate) fn evict(&mut self, upto: Option<u64>) {
        let lateness = self.params.lateness;
        match upto {
            None => self.minutes.clear(),
            Some(upto) => {
                while let Some(entry) = self.minutes.first_entry() {
                    if entry.key().saturating_add(lateness) > upto {
                        break;
                    }
                    entry.remove();
                }
            }
        }
    }
}
