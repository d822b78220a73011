//! The ranking of rise results under allowed lateness: each worker's latest
//! passing set of every open boundary, cut to its best `k` where it is
//! computed and merged on worker 0 into one [`TopK`] per boundary and time
//! it was evaluated at.
//!
//! The ranking keeps no checkpoint of its own: after a restore every worker
//! restates its passing sets of the open boundaries
//! ([`Reason::Restate`]), which rebuilds worker 0's view under the new
//! assignment of keys to workers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::Key;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Capability;

use super::{Corrections, Reason, Revision};
use crate::rise::Rising;
use crate::topk::{TopK, TopKPartial};

/// One worker's ranking of one boundary (the record's event time).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ranked<R> {
    worker: usize,
    reason: Reason,
    /// Its passing records, cut to the best k; `None` when unchanged.
    rank: Option<TopKPartial<R>>,
}

/// Every worker's latest ranking of each open boundary, on worker 0.
struct Rankings<R> {
    lateness: u64,
    k: usize,
    boundaries: BTreeMap<EventTime, BTreeMap<usize, TopKPartial<R>>>,
}

impl<R: Clone + Ord> Rankings<R> {
    /// Takes in everything that travelled at time `at` (all of it, once
    /// progress has passed `at`) and returns one ranking per boundary that a
    /// first evaluation or an update named: an update when `at` is past the
    /// boundary.
    fn apply<F>(
        &mut self,
        at: EventTime,
        mut news: Vec<(EventTime, Ranked<R>)>,
        cmp: &F,
    ) -> Vec<TopK<R>>
    where
        F: Fn(&R, &R) -> Ordering,
    {
        // A worker may first-evaluate `T` and re-evaluate it for late
        // records read at `T` itself: the re-evaluation is the newer one, as
        // both are newer than a restated set.
        news.sort_by_key(|(t, n)| (*t, n.reason, n.worker));
        let mut named = BTreeSet::new();
        for (t, news) in news {
            let ranks = self.boundaries.entry(t).or_default();
            if let Some(rank) = news.rank {
                ranks.insert(news.worker, rank);
            }
            if news.reason != Reason::Restate {
                named.insert(t);
            }
        }
        named
            .into_iter()
            .map(|t| self.ranking(t, at, cmp))
            .collect()
    }

    /// The merged ranking of boundary `t` as emitted at time `at`.
    fn ranking<F: Fn(&R, &R) -> Ordering>(&self, t: EventTime, at: EventTime, cmp: &F) -> TopK<R> {
        let mut all = TopKPartial::default();
        for rank in self.boundaries.get(&t).into_iter().flat_map(|r| r.values()) {
            all.merge(rank.clone(), self.k, cmp);
        }
        let mut top = all.finish(t, self.k, cmp);
        top.update = at > t;
        top
    }

    /// Drops the boundaries `T` with `T + lateness <= upto`: nothing about
    /// them travels at `upto` or later. `None` (the input is done) drops all.
    fn evict(&mut self, upto: Option<EventTime>) {
        match upto {
            None => self.boundaries.clear(),
            Some(upto) => {
                while let Some(entry) = self.boundaries.first_entry() {
                    if entry.key().saturating_add(self.lateness) > upto {
                        break;
                    }
                    entry.remove();
                }
            }
        }
    }
}

/// Ranks the boundaries of `late` by `cmp` (`Less` = better), keeping the
/// best `k` (all when `k` is 0): one [`TopK`] at each boundary's time for
/// its first evaluation, and one, marked as an update, at the time of each
/// late batch that re-evaluated it. `id` is the step's full id.
pub(crate) fn rank<'scope, K, F>(
    late: Corrections<'scope, K>,
    id: &str,
    k: usize,
    cmp: F,
) -> EventStream<'scope, TopK<Rising<K>>>
where
    K: Key,
    F: Fn(&Rising<K>, &Rising<K>) -> Ordering + Clone + 'static,
{
    let local_cmp = cmp.clone();
    let ranked = late
        .revisions
        .map(move |(t, rev): (EventTime, Revision<K>)| {
            let rank = rev.passing.map(|passing| {
                let mut rank = TopKPartial::default();
                for r in passing {
                    rank.push(r, k, &local_cmp);
                }
                rank.prune(k, &local_cmp);
                rank
            });
            let ranked = Ranked {
                worker: rev.worker,
                reason: rev.reason,
                rank,
            };
            (t, ranked)
        });
    let lateness = late.lateness;
    ranked.unary_frontier(
        Exchange::new(|_: &(EventTime, Ranked<Rising<K>>)| 0),
        &format!("RiseTopK({id})"),
        move |_, _| {
            let mut rankings = Rankings {
                lateness,
                k,
                boundaries: BTreeMap::new(),
            };
            type Stash<R> =
                BTreeMap<EventTime, (Capability<EventTime>, Vec<(EventTime, Ranked<R>)>)>;
            let mut stash: Stash<Rising<K>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let entry =
                        (stash.entry(time)).or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    entry.1.append(data);
                });
                while let Some(entry) = stash.first_entry() {
                    let at = *entry.key();
                    if frontier.less_equal(&at) {
                        break;
                    }
                    let (cap, news) = entry.remove();
                    let ranked = rankings.apply(at, news, &cmp);
                    output
                        .session(&cap)
                        .give_iterator(ranked.into_iter().map(|top| (top.t, top)));
                }
                rankings.evict(frontier.frontier().iter().min().copied());
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(a: &(u32, u64), b: &(u32, u64)) -> Ordering {
        b.1.cmp(&a.1)
    }

    fn news(
        t: u64,
        worker: usize,
        reason: Reason,
        top: Option<&[(u32, u64)]>,
    ) -> (u64, Ranked<(u32, u64)>) {
        let rank = top.map(|top| TopKPartial {
            total: top.len() as u64,
            top: top.to_vec(),
        });
        (
            t,
            Ranked {
                worker,
                reason,
                rank,
            },
        )
    }

    fn keys(top: &TopK<(u32, u64)>) -> (u64, u64, Vec<u32>, bool) {
        let keys = top.top.iter().map(|r| r.0).collect();
        (top.t, top.total, keys, top.update)
    }

    #[test]
    fn rankings_merge_workers_and_keep_the_latest() {
        use Reason::{First, Restate, Update};
        let mut r = Rankings {
            lateness: 2,
            k: 2,
            boundaries: BTreeMap::new(),
        };
        let apply = |r: &mut Rankings<_>, at, news| -> Vec<_> {
            r.apply(at, news, &best).iter().map(keys).collect()
        };
        let first = vec![
            news(10, 1, First, Some(&[(1, 5)])),
            news(10, 0, First, Some(&[(2, 3), (3, 1)])),
        ];
        assert_eq!(apply(&mut r, 10, first), vec![(10, 3, vec![1, 2], false)]);
        // At time 12 worker 0 re-ranks 10; worker 1's ranking stays.
        let later = vec![news(10, 0, Update, Some(&[(3, 9)]))];
        assert_eq!(apply(&mut r, 12, later), vec![(10, 2, vec![3, 1], true)]);
        // An update that changed nothing only re-emits the boundary.
        let same = vec![news(10, 1, Update, None)];
        assert_eq!(apply(&mut r, 13, same), vec![(10, 2, vec![3, 1], true)]);
        // At one time, a re-evaluation wins over a first evaluation, and a
        // restated set is taken in without being emitted.
        let mixed = vec![
            news(20, 0, Update, Some(&[])),
            news(20, 0, First, Some(&[(4, 1)])),
            news(11, 1, Restate, Some(&[(5, 1)])),
        ];
        assert_eq!(apply(&mut r, 20, mixed), vec![(20, 0, vec![], false)]);
        let after = vec![news(11, 0, Update, Some(&[(6, 2)]))];
        assert_eq!(apply(&mut r, 21, after), vec![(11, 2, vec![6, 5], true)]);
        assert_eq!(r.boundaries.len(), 3);
        r.evict(Some(13)); // 10 + 2 <= 13 and 11 + 2 <= 13
        assert_eq!(r.boundaries.len(), 1);
        r.evict(None);
        assert!(r.boundaries.is_empty());
    }
}
