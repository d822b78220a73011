//! N-window rise detection: which keys' weights grew over the last N
//! disjoint windows, evaluated at every slide boundary.
//!
//! At every boundary `T` (a multiple of the slide, aligned to the Unix
//! epoch), once event-time progress reaches `T`, the operator sums each
//! key's weight over the N disjoint windows
//! `[T - N*window, T - (N-1)*window) ... [T - window, T)` into `c1..cN`
//! (a window without weight counts 0). A key *passes* when it has weight
//! somewhere in those windows, `c1 >= min_first`, and the rule (or a custom
//! predicate) holds. Passing keys come out as [`Rising`] records at time `T`.
//!
//! **Ticks.** A boundary `T` is *evaluated* when any key has weight in its
//! span `[T - N*window, T)`; every evaluated `T` gets exactly one
//! [`RiseTick`] with the number of keys that passed, 0 included, so a
//! consumer knows that `T` is complete. Boundaries whose span holds no
//! weight at all (a gap in the input longer than `N*window`) are not
//! evaluated and get no tick. [`crate::topk::GlobalTopK::top_k_ticked`]
//! takes the ticks, so it emits a ranking for every evaluated `T`. (Under
//! allowed lateness, a `T` whose span gets weight only from late records
//! read at or after `T` is evaluated only for them, without a tick;
//! [`RiseOut::top_k`] still ranks it.)
//!
//! **Late records** (event time below the time they travel at, decided per
//! source partition) are dropped and counted in `late_dropped`, since a
//! boundary's result is final once emitted; unless the config allows
//! lateness ([`RiseConfig::with_allowed_lateness`]): then they still count
//! for the boundaries they can change, and [`RiseOut::top_k`] ranks those
//! again as updates. Records of weight 0 carry nothing and are ignored.
//!
//! **Cost.** Records are summed per key and pane on each worker before the
//! keyed exchange. Each key keeps only the panes of the span that hold
//! weight, and a boundary reads only the keys whose oldest pane lies in its
//! first window (with `min_first >= 1`; with `min_first == 0` every key of
//! the span is read). With a built-in rule and `min_first >= 1` it reads
//! only those of them whose panes spread far enough to reach the last
//! window, since such a rule needs weight in every window. Such a rule is
//! also read ahead: once a boundary is closed, the next one's candidates
//! are read in slices while input still arrives, and its close reads again
//! only the keys that got weight in the meantime. See [`RiseState`].

mod chain;
mod config;
mod late;
mod operator;
mod panes;
mod pre;
mod state;

use std::cmp::Ordering;
use std::sync::Arc;

use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{Events, Key};
use serde::{Deserialize, Serialize};

pub use config::{RiseConfig, RiseRule};
pub use state::{RiseSnapshot, RiseState};

use crate::topk::{GlobalTopK, TopK};

/// A key that passed at boundary `t`, with its window counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rising<K> {
    /// The key.
    pub key: K,
    /// The boundary, in ms (also the record's event time).
    pub t: EventTime,
    /// `c1..cN`, oldest window first.
    pub counts: Vec<u64>,
}

impl<K: Ord> Rising<K> {
    /// `cN - c1` (0 if the counts fell).
    pub fn growth(&self) -> u64 {
        self.last().saturating_sub(self.first())
    }

    /// `c1`, the oldest window's count.
    pub fn first(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    /// `cN`, the newest window's count.
    pub fn last(&self) -> u64 {
        self.counts.last().copied().unwrap_or(0)
    }
}

/// The end of one evaluated boundary: how many keys passed at `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RiseTick {
    /// The boundary, in ms (also the record's event time).
    pub t: EventTime,
    /// How many keys passed at `t`, over all workers.
    pub trending: u64,
}

/// What the rise operator returns.
pub struct RiseOut<'scope, K> {
    /// Passing keys, at time `t` with event time `t`, on the worker that
    /// owns the key: the first evaluation of each boundary.
    pub rising: Events<'scope, Rising<K>>,
    /// One tick per boundary's first evaluation, at time `t`, on worker 0.
    pub ticks: Events<'scope, RiseTick>,
    /// Under allowed lateness, every evaluation, for [`RiseOut::top_k`].
    late: Option<late::Corrections<'scope, K>>,
}

impl<'scope, K: Key> RiseOut<'scope, K> {
    fn empty(flow: &keyflow_dataflow::Dataflow<'scope>) -> Self {
        RiseOut {
            rising: flow.empty(),
            ticks: flow.empty(),
            late: None,
        }
    }

    /// The `k` best passing keys of every evaluated boundary by `cmp`
    /// (`Less` = better; `k == 0` keeps all), one [`TopK`] per boundary on
    /// worker 0, with the number of keys that passed. Without allowed
    /// lateness this is `rising.top_k_ticked(id, ticks, k, cmp)`. With it,
    /// a boundary that late records re-evaluated is ranked again, over
    /// every record counted so far, at the time they were read, with
    /// `update: true`. `id` is the step's stable id.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_dataflow::time::SECOND;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    ///
    /// // "b" at 1.5 s comes after 9 s: with 5 s of out-of-orderness it is late,
    /// // read at 4 s, after the boundary at 2 s but within 10 s of it.
    /// let views = vec![(0, ('a', 1)), (500, ('b', 1)), (1_000, ('a', 2)), (9_000, ('c', 1)), (1_500, ('b', 3))];
    /// let out = example(views, |views| {
    ///     let config = RiseConfig::new(SECOND, SECOND, 2)?.with_allowed_lateness(10 * SECOND);
    ///     let top = views.rise("rise", config).top_k("top", 1, |a, b| b.growth().cmp(&a.growth()));
    ///     Ok(top.filter(|t| t.total > 0).map(|t| (t.update, t.total, t.top[0].key)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(2_000, (false, 1, 'a')), (2_000, (true, 2, 'b'))]);
    /// ```
    #[track_caller]
    pub fn top_k<F>(self, id: &str, k: usize, cmp: F) -> Events<'scope, TopK<Rising<K>>>
    where
        F: Fn(&Rising<K>, &Rising<K>) -> Ordering + Clone + 'static,
    {
        match self.late {
            None => self.rising.top_k_ticked(id, self.ticks, k, cmp),
            Some(late) => {
                let flow = self.rising.flow().clone();
                let step = flow.step(id);
                flow.wrap(late::rank(late, &step, k, cmp))
            }
        }
    }
}

/// Extension trait: rise detection on a stream of `(key, weight)` events.
pub trait Rise<'scope, K: Key> {
    /// Detects keys whose weights rose over the last `config.windows`
    /// windows, by `config.rule`. `id` is the step's stable id.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    ///
    /// // Three 10 ms windows sliding by 10 ms; "up" grows 1, 2, 3.
    /// let views = vec![(0, ('u', 1)), (10, ('u', 2)), (15, ('f', 2)), (20, ('u', 3)), (25, ('f', 2))];
    /// let out = example(views, |views| {
    ///     let rise = views.rise("rise", RiseConfig::new(10, 10, 3)?);
    ///     Ok(rise.rising.map(|r| (r.key, r.counts)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(30, ('u', vec![1, 2, 3]))]);
    /// ```
    fn rise(self, id: &str, config: RiseConfig) -> RiseOut<'scope, K>;

    /// Like [`Rise::rise`] with a custom predicate over `c1..cN` in place of
    /// `config.rule`. Only keys with `c1 >= config.min_first` and some
    /// weight in the span are offered to it.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    ///
    /// let views = vec![(0, (1u32, 2)), (0, (2, 3)), (5, (1, 4)), (5, (2, 4))];
    /// let out = example(views, |views| {
    ///     let doubled = views.rise_by("doubling", RiseConfig::new(5, 5, 2)?, |c| c[1] >= 2 * c[0]);
    ///     Ok(doubled.rising.map(|r| (r.key, r.counts)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, (1, vec![2, 4]))]);
    /// ```
    fn rise_by<P>(self, id: &str, config: RiseConfig, predicate: P) -> RiseOut<'scope, K>
    where
        P: Fn(&[u64]) -> bool + 'static;
}

impl<'scope, K: Key> Rise<'scope, K> for Events<'scope, (K, u64)> {
    #[track_caller]
    fn rise(self, id: &str, config: RiseConfig) -> RiseOut<'scope, K> {
        let rule = config.rule;
        let predicate = move |counts: &[u64]| rule.holds(counts);
        let step = self.flow().step(id);
        build(self, &step, config, true, predicate)
    }

    #[track_caller]
    fn rise_by<P>(self, id: &str, config: RiseConfig, predicate: P) -> RiseOut<'scope, K>
    where
        P: Fn(&[u64]) -> bool + 'static,
    {
        let step = self.flow().step(id);
        build(self, &step, config, false, predicate)
    }
}

/// Wires the operators: without allowed lateness, local pre-aggregation,
/// the keyed evaluation and the gathering of ticks; with it, the same
/// stages of the `late` module. `every_window` says that `predicate` fails
/// unless every window holds at least `c1`. Errors (a bad config, a damaged
/// checkpoint) are recorded on the dataflow, which then does not run.
fn build<'scope, K: Key, P>(
    events: Events<'scope, (K, u64)>,
    step: &str,
    config: RiseConfig,
    every_window: bool,
    predicate: P,
) -> RiseOut<'scope, K>
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let flow = events.flow().clone();
    if let Err(e) = config.validate() {
        flow.fail(e.into());
        return RiseOut::empty(&flow);
    }
    let ctx = Arc::clone(flow.context());
    let geo = config.geometry();
    let min_first = config.min_first;
    let built = match config.allowed_lateness {
        Some(lateness) => late::build(events, &ctx, step, geo, lateness, min_first, predicate),
        None => {
            let partials = pre::pre_aggregate(events.inner(), &ctx, step, geo.slide, false);
            let panes = operator::rise_panes(
                partials,
                &ctx,
                step,
                geo,
                min_first,
                every_window,
                predicate,
            );
            panes.map(|(rising, local_ticks)| RiseOut {
                rising: flow.wrap(rising),
                ticks: flow.wrap(operator::gather_ticks(local_ticks, step)),
                late: None,
            })
        }
    };
    built.unwrap_or_else(|e| {
        flow.fail(e);
        RiseOut::empty(&flow)
    })
}
