//! Global top-k per event time: the k best records of each time, ranked by
//! a caller's comparator, computed locally on every worker and merged on
//! worker 0.
//!
//! Records are grouped by event time (window results and [`crate::rise`]
//! results travel at their event time). Each worker keeps only its own k
//! best per time; once its frontier passes a time it sends them, with its
//! record count, to worker 0, which merges the partials and emits one
//! [`TopK`] per time once every worker's partial is in.
//!
//! Ties under the comparator are broken by the records' own `Ord`, so the
//! ranking is a total order and the output is the same at any number of
//! workers.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::checkpoint::take_below;
use keyflow_dataflow::metrics::{Metrics, StepMetrics};
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{Data, Dataflow, Events};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// The ranking of one event time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct TopK<R> {
    /// The event time ranked (also the record's event time).
    pub t: EventTime,
    /// How many records there were at `t`, over all workers.
    pub total: u64,
    /// The best records, best first: at most k of them (all when k is 0).
    pub top: Vec<R>,
    /// `true` when this ranks `t` again, at a later time, because late
    /// records counted there (see [`crate::rise::RiseOut::top_k`]); always
    /// `false` from [`GlobalTopK`].
    #[serde(default)]
    pub update: bool,
}

// JSON leaves `update` out when false; bincode (between processes, in
// checkpoints) always writes it.
keyflow_dataflow::serialize_with_update!(TopK<R>, [t, total, top]);

/// One worker's part of the ranking of one time: its record count and its
/// best records. Serializable, as is [`TopKState`], for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopKPartial<R> {
    /// Records counted.
    pub total: u64,
    /// The best of them, unsorted, at most `max(2k, 64)` between prunings.
    pub top: Vec<R>,
}

impl<R> Default for TopKPartial<R> {
    fn default() -> Self {
        TopKPartial {
            total: 0,
            top: Vec::new(),
        }
    }
}

/// The pending partials of one top-k stage, by event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopKState<R> {
    /// Partials not yet sent (local stage) or emitted (global stage).
    pub pending: BTreeMap<EventTime, TopKPartial<R>>,
}

impl<R> Default for TopKState<R> {
    fn default() -> Self {
        TopKState {
            pending: BTreeMap::new(),
        }
    }
}

/// The comparator made total by the records' `Ord`.
fn total_order<R: Ord, F: Fn(&R, &R) -> Ordering>(cmp: &F) -> impl Fn(&R, &R) -> Ordering + '_ {
    move |a, b| cmp(a, b).then_with(|| a.cmp(b))
}

impl<R: Ord> TopKPartial<R> {
    pub(crate) fn prune<F: Fn(&R, &R) -> Ordering>(&mut self, k: usize, cmp: &F) {
        if k > 0 && self.top.len() > k {
            self.top.select_nth_unstable_by(k, total_order(cmp));
            self.top.truncate(k);
        }
    }

    pub(crate) fn push<F: Fn(&R, &R) -> Ordering>(&mut self, record: R, k: usize, cmp: &F) {
        self.total += 1;
        self.top.push(record);
        if k > 0 && self.top.len() >= (2 * k).max(64) {
            self.prune(k, cmp);
        }
    }

    pub(crate) fn merge<F: Fn(&R, &R) -> Ordering>(
        &mut self,
        other: TopKPartial<R>,
        k: usize,
        cmp: &F,
    ) {
        self.total += other.total;
        self.top.extend(other.top);
        if k > 0 && self.top.len() >= (2 * k).max(64) {
            self.prune(k, cmp);
        }
    }

    pub(crate) fn finish<F: Fn(&R, &R) -> Ordering>(
        self,
        t: EventTime,
        k: usize,
        cmp: &F,
    ) -> TopK<R> {
        TopK {
            t,
            total: self.total,
            top: best_k(self.top, k, cmp),
            update: false,
        }
    }
}

/// The `k` best of `records` by `cmp` (`Less` = better), best first; all of
/// them, sorted, when `k` is 0. Ties under `cmp` are broken by the records'
/// own `Ord`, so the result does not depend on the input's order. This is
/// the ranking [`GlobalTopK`] applies to each time, for records already
/// gathered in one place (the pages of one window, say).
///
/// # Examples
/// ```
/// use keyflow_operators::topk::best_k;
///
/// // Most views first, ties by name.
/// let pages = vec![("/b", 3u64), ("/c", 9), ("/a", 3), ("/d", 1)];
/// let top = best_k(pages, 3, |x, y| y.1.cmp(&x.1));
/// assert_eq!(top, vec![("/c", 9), ("/a", 3), ("/b", 3)]);
/// ```
pub fn best_k<R: Ord, F: Fn(&R, &R) -> Ordering>(records: Vec<R>, k: usize, cmp: F) -> Vec<R> {
    let mut partial = TopKPartial {
        total: 0,
        top: records,
    };
    partial.prune(k, &cmp);
    partial.top.sort_by(total_order(&cmp));
    partial.top
}

/// Extension trait: the global top-k of each event time.
pub trait GlobalTopK<'scope, R> {
    /// Emits, at every event time that has records, one [`TopK`] on worker 0
    /// with the `k` best records by `cmp` (`Less` = better; `k == 0` keeps
    /// all, sorted). Late records (event time below the time they travel at)
    /// are dropped and counted. `id` is the step's stable id.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::topk::GlobalTopK;
    ///
    /// let scores = vec![(10, 1u64), (10, 5), (10, 6), (20, 7)];
    /// let out = example(scores, |s| Ok(s.top_k("best", 2, |a, b| b.cmp(a)).map(|t| (t.total, t.top))));
    /// assert_eq!(out.unwrap(), vec![(10, (3, vec![6, 5])), (20, (1, vec![7]))]);
    /// ```
    fn top_k<F>(self, id: &str, k: usize, cmp: F) -> Events<'scope, TopK<R>>
    where
        F: Fn(&R, &R) -> Ordering + Clone + 'static;

    /// Like [`GlobalTopK::top_k`], and also emits a [`TopK`] (with what
    /// records it has, perhaps none) at every event time of `ticks`. This is
    /// how a consumer learns that a time is complete even when nothing
    /// ranked: pass [`crate::rise::RiseOut::ticks`].
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    /// use keyflow_operators::topk::GlobalTopK;
    ///
    /// let views = vec![(0, ('a', 1)), (0, ('b', 1)), (10, ('a', 3)), (10, ('b', 2))];
    /// let out = example(views, |views| {
    ///     let rise = views.rise("rise", RiseConfig::new(10, 10, 2)?);
    ///     let top = rise.rising.top_k_ticked("top", rise.ticks, 1, |a, b| b.growth().cmp(&a.growth()));
    ///     Ok(top.map(|t| (t.total, t.top.into_iter().map(|r| r.key).collect::<Vec<_>>())))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, (0, vec![])), (20, (2, vec!['a'])), (30, (0, vec![]))]);
    /// ```
    fn top_k_ticked<D, F>(
        self,
        id: &str,
        ticks: Events<'scope, D>,
        k: usize,
        cmp: F,
    ) -> Events<'scope, TopK<R>>
    where
        D: Data,
        F: Fn(&R, &R) -> Ordering + Clone + 'static;
}

impl<'scope, R: Data + Ord> GlobalTopK<'scope, R> for Events<'scope, R> {
    #[track_caller]
    fn top_k<F>(self, id: &str, k: usize, cmp: F) -> Events<'scope, TopK<R>>
    where
        F: Fn(&R, &R) -> Ordering + Clone + 'static,
    {
        let flow = self.flow().clone();
        let step = flow.step(id);
        let partials = local_top_k::<R, (), F>(self.inner(), None, &flow, &step, k, cmp.clone());
        let counters = flow.context().metrics.step(&step);
        flow.wrap(global_top_k(partials, &step, k, cmp, counters))
    }

    #[track_caller]
    fn top_k_ticked<D, F>(
        self,
        id: &str,
        ticks: Events<'scope, D>,
        k: usize,
        cmp: F,
    ) -> Events<'scope, TopK<R>>
    where
        D: Data,
        F: Fn(&R, &R) -> Ordering + Clone + 'static,
    {
        let flow = self.flow().clone();
        let step = flow.step(id);
        let partials = local_top_k(
            self.inner(),
            Some(ticks.inner()),
            &flow,
            &step,
            k,
            cmp.clone(),
        );
        let counters = flow.context().metrics.step(&step);
        flow.wrap(global_top_k(partials, &step, k, cmp, counters))
    }
}

type PartialStream<'scope, R> = Stream<'scope, EventTime, Vec<(EventTime, TopKPartial<R>)>>;

/// Per worker: counts and keeps the k best records of each event time, and
/// sends them on once the frontiers of both inputs have passed that time.
/// The output handle of the local top-k.
type PartialOut<'a, R> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    EventTime,
    timely::container::CapacityContainerBuilder<Vec<(EventTime, TopKPartial<R>)>>,
>;

fn local_top_k<'scope, R, D, F>(
    records: EventStream<'scope, R>,
    ticks: Option<EventStream<'scope, D>>,
    flow: &Dataflow<'scope>,
    id: &str,
    k: usize,
    cmp: F,
) -> PartialStream<'scope, R>
where
    R: Data + Ord,
    D: Data,
    F: Fn(&R, &R) -> Ordering + 'static,
{
    let scope = records.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let ctx = flow.context();
    // top_k cannot fail in the middle of a chain: a damaged part stops the
    // dataflow from running instead.
    let mut ckpt = ctx
        .checkpoint_step(index, id, &format!("top-k `{id}`"))
        .unwrap_or_else(|e| {
            flow.fail(e);
            None
        });
    let mut restored = TopKState::<R>::default();
    if let Some(k_) = ckpt.as_ref().filter(|k_| k_.restored_epoch().is_some()) {
        for part in k_.restored_parts() {
            let decoded: keyflow_dataflow::Result<(usize, TopKState<R>)> =
                keyflow_dataflow::checkpoint::decode(part, id);
            match decoded {
                // Partials are per worker and merge in any order: an old
                // worker's pending times go whole to one new worker.
                Ok((old, state)) if old % peers == index => {
                    for (t, partial) in state.pending {
                        restored
                            .pending
                            .entry(t)
                            .or_default()
                            .merge(partial, k, &cmp);
                    }
                }
                Ok(_) => {}
                Err(e) => flow.fail(e),
            }
        }
    }
    let mut builder = OperatorBuilder::new(format!("TopKLocal({id})"), scope);
    let mut records_in = builder.new_input(records, Pipeline);
    let mut ticks_in = ticks.map(|t| builder.new_input(t, Pipeline));
    let (out, partials) = builder.new_output();
    let mut out = OutputBuilder::from(out);
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);
    let id = id.to_string();
    builder.build(move |initial| {
        let mut state = restored;
        let mut caps: BTreeMap<EventTime, Capability<EventTime>> = BTreeMap::new();
        if let Some(cap) = initial.first() {
            for t in state.pending.keys() {
                caps.insert(*t, cap.delayed(t));
            }
        }
        // Input held back until the next epoch's snapshot: (capability,
        // records, tick times) by message time.
        type Waiting<R> =
            BTreeMap<EventTime, (Capability<EventTime>, Vec<(EventTime, R)>, Vec<EventTime>)>;
        let mut waiting: Waiting<R> = BTreeMap::new();
        move |frontiers| {
            let mut out = out.activate();
            let mut late = 0;
            let gate = ckpt.as_mut().map(|k_| k_.clock().next());
            let mut add = |caps: &mut BTreeMap<EventTime, Capability<EventTime>>,
                           state: &mut TopKState<R>,
                           cap: &Capability<EventTime>,
                           records: Vec<(EventTime, R)>,
                           ticks: Vec<EventTime>| {
                let time = *cap.time();
                for (ts, record) in records {
                    if ts < time {
                        late += 1;
                        continue;
                    }
                    caps.entry(ts).or_insert_with(|| cap.delayed(&ts));
                    state.pending.entry(ts).or_default().push(record, k, &cmp);
                }
                for ts in ticks {
                    if ts < time {
                        late += 1;
                        continue;
                    }
                    caps.entry(ts).or_insert_with(|| cap.delayed(&ts));
                    state.pending.entry(ts).or_default();
                }
            };
            records_in.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                Metrics::add(&counters.records_in, data.len() as u64);
                let cap = cap.delayed(&time, 0);
                if gate.is_some_and(|next| time >= next) {
                    let entry = waiting
                        .entry(time)
                        .or_insert_with(|| (cap, Vec::new(), Vec::new()));
                    entry.1.append(data);
                } else {
                    add(
                        &mut caps,
                        &mut state,
                        &cap,
                        std::mem::take(data),
                        Vec::new(),
                    );
                }
            });
            if let Some(ticks_in) = ticks_in.as_mut() {
                ticks_in.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let cap = cap.delayed(&time, 0);
                    let ticks: Vec<EventTime> = data.drain(..).map(|(ts, _)| ts).collect();
                    if gate.is_some_and(|next| time >= next) {
                        let entry = waiting
                            .entry(time)
                            .or_insert_with(|| (cap, Vec::new(), Vec::new()));
                        entry.2.extend(ticks);
                    } else {
                        add(&mut caps, &mut state, &cap, Vec::new(), ticks);
                    }
                });
            }
            let emit = |caps: &mut BTreeMap<EventTime, Capability<EventTime>>,
                        state: &mut TopKState<R>,
                        out: &mut PartialOut<'_, R>,
                        ready: &dyn Fn(EventTime) -> bool| {
                while let Some(entry) = caps.first_entry() {
                    let t = *entry.key();
                    if !ready(t) {
                        break;
                    }
                    let cap = entry.remove();
                    let mut partial = state.pending.remove(&t).unwrap_or_default();
                    partial.prune(k, &cmp);
                    out.session(&cap).give((t, partial));
                }
            };
            if let Some(k_) = ckpt.as_mut() {
                let low = frontiers
                    .iter()
                    .filter_map(|f| f.frontier().first().copied())
                    .min();
                for epoch in k_.clock().passed(low) {
                    for (_, (cap, records, ticks)) in take_below(&mut waiting, epoch) {
                        add(&mut caps, &mut state, &cap, records, ticks);
                    }
                    emit(&mut caps, &mut state, &mut out, &|t| t < epoch);
                    let saved = keyflow_dataflow::checkpoint::encode(&(index, &state))
                        .and_then(|bytes| k_.save(epoch, bytes));
                    if let Err(e) = saved {
                        ctx.fail(e.in_step(&id));
                        return;
                    }
                }
                let next = k_.clock().release_bound(low);
                for (_, (cap, records, ticks)) in take_below(&mut waiting, next) {
                    add(&mut caps, &mut state, &cap, records, ticks);
                }
            }
            Metrics::add(&ctx.metrics.late_dropped, late);
            Metrics::add(&counters.late, late);
            Metrics::add(&counters.dropped, late);
            emit(&mut caps, &mut state, &mut out, &|t| {
                !frontiers.iter().any(|f| f.less_equal(&t))
            });
        }
    });
    partials
}

/// On worker 0: merges the partials of each time and emits its ranking
/// once every worker has sent its partial.
fn global_top_k<'scope, R, F>(
    partials: PartialStream<'scope, R>,
    id: &str,
    k: usize,
    cmp: F,
    counters: Arc<StepMetrics>,
) -> EventStream<'scope, TopK<R>>
where
    R: Data + Ord,
    F: Fn(&R, &R) -> Ordering + 'static,
{
    partials.unary_frontier(
        Exchange::new(|_: &(EventTime, TopKPartial<R>)| 0),
        &format!("TopK({id})"),
        move |_, _| {
            let mut state = TopKState::<R>::default();
            let mut caps: BTreeMap<EventTime, Capability<EventTime>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if cap.least().is_none() {
                        return;
                    }
                    for (t, partial) in data.drain(..) {
                        caps.entry(t).or_insert_with(|| cap.delayed(&t, 0));
                        state.pending.entry(t).or_default().merge(partial, k, &cmp);
                    }
                });
                while let Some(entry) = caps.first_entry() {
                    let t = *entry.key();
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let cap = entry.remove();
                    let partial = state.pending.remove(&t).unwrap_or_default();
                    Metrics::add(&counters.records_out, 1);
                    output.session(&cap).give((t, partial.finish(t, k, &cmp)));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_the_best_under_a_total_order() {
        let cmp = |a: &(u32, u32), b: &(u32, u32)| b.0.cmp(&a.0); // ties on .0
        let mut p = TopKPartial::default();
        for i in 0..1000u32 {
            p.push((i % 10, 1000 - i), 3, &cmp);
        }
        let top = p.finish(5, 3, &cmp);
        assert_eq!(top.total, 1000);
        // Ties on .0 == 9 are broken by the tuple order: smallest .1 first.
        assert_eq!(top.top, vec![(9, 1), (9, 11), (9, 21)]);
    }

    #[test]
    fn k_zero_keeps_everything_sorted() {
        let cmp = |a: &u32, b: &u32| a.cmp(b);
        let mut p = TopKPartial::default();
        for i in (0..100u32).rev() {
            p.push(i, 0, &cmp);
        }
        let mut q = TopKPartial::default();
        q.push(500, 0, &cmp);
        p.merge(q, 0, &cmp);
        let top = p.finish(1, 0, &cmp);
        assert_eq!(top.total, 101);
        assert_eq!(top.top.len(), 101);
        assert!(top.top.windows(2).all(|w| w[0] < w[1]));
    }
}
