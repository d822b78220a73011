//! Tumbling and sliding windows over shared panes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::aggregate::result_of;
use super::pane::{merge_in_key_order, Pane};
use super::pre::PartialStream;
use super::spec::Grid;
use super::{Aggregator, Data, Key, LateStash, Lateness, Partial, ResultOutput, WindowResult};
use crate::checkpoint::take_below;
use crate::error::{Error, Result};
use crate::hash::stable_hash;
use crate::metrics::{Metrics, StepMetrics};
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;

/// The state of one pane-window operator on one worker: serializable, so a
/// checkpoint can store it under the operator's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Key, A: Data")]
pub struct PaneState<K, A> {
    /// Partial aggregates by pane start, then key.
    pub panes: BTreeMap<EventTime, Pane<K, A>>,
}

impl<K, A> Default for PaneState<K, A> {
    fn default() -> Self {
        PaneState {
            panes: BTreeMap::new(),
        }
    }
}

impl<K: Key, A: Data> PaneState<K, A> {
    /// The merged accumulator of `key` over the window ending at `end`.
    fn window_value<V, G: Aggregator<V, Acc = A>>(
        &self,
        grid: &Grid,
        agg: &G,
        end: EventTime,
        key: &K,
    ) -> Option<A> {
        let mut acc: Option<A> = None;
        for pane in self.panes.range(grid.start_of(end)..end).map(|(_, p)| p) {
            if let Some(part) = pane.get(key) {
                match acc.as_mut() {
                    Some(acc) => agg.merge(acc, part),
                    None => acc = Some(part.clone()),
                }
            }
        }
        acc
    }

    /// Emits, via `give` and in key order, the merged accumulator of every
    /// key in the window. Sorts the window's panes that are still filling.
    fn for_each_in_window<V, G: Aggregator<V, Acc = A>>(
        &mut self,
        grid: &Grid,
        agg: &G,
        end: EventTime,
        give: impl FnMut(&K, &A),
    ) {
        let runs: Vec<&[(K, A)]> = self
            .panes
            .range_mut(grid.start_of(end)..end)
            .map(|(_, pane)| pane.sorted())
            .collect();
        merge_in_key_order(runs, agg, give);
    }
}

/// Fires every pending window whose end is at or below `upto`.
fn fire<'a, V, K: Key, G: Aggregator<V>>(
    pending: &mut BTreeMap<EventTime, Capability<EventTime>>,
    upto: impl Fn(EventTime) -> bool,
    state: &mut PaneState<K, G::Acc>,
    grid: &Grid,
    (agg, refused): (&G, &mut Option<Error>),
    output: &mut ResultOutput<'a, K, G::Output>,
) {
    while let Some(entry) = pending.first_entry() {
        let end = *entry.key();
        if !upto(end) {
            break;
        }
        let cap = entry.remove();
        let start = grid.start_of(end);
        // The window's results go out as one container, not in buffers of
        // 8 KiB: the sink's stage then takes the vector as its run instead
        // of copying every result into one. The panes' keys together bound
        // the window's, so the vector need not regrow; past 64 MiB it
        // grows as it fills instead, so that a long window of many panes
        // over the same keys does not reserve many times what it fills.
        let (sum, most) = state
            .panes
            .range(start..end)
            .fold((0, 0), |(sum, most), (_, p)| {
                (sum + p.len(), most.max(p.len()))
            });
        let budget = (64 << 20) / std::mem::size_of::<(EventTime, WindowResult<K, G::Output>)>();
        let mut results = Vec::with_capacity(sum.min(budget.max(most)));
        state.for_each_in_window(grid, agg, end, |key, acc| {
            if let Some(value) = result_of(agg, acc, (key, start, end), refused) {
                results.push((
                    end,
                    WindowResult {
                        key: key.clone(),
                        start,
                        end,
                        value,
                        update: false,
                    },
                ));
            }
        });
        if !results.is_empty() {
            output.session(&cap).give_container(&mut results);
        }
    }
}

/// What one pane-window operator keeps between activations.
struct Windows<K, V, A> {
    state: PaneState<K, A>,
    pending: BTreeMap<EventTime, Capability<EventTime>>,
    late: LateStash<K, V>,
    /// Why a window's result was refused (see [`Aggregator::check`]): the
    /// step fails with it.
    refused: Option<Error>,
}

impl<K: Key, V: Data, A: Data> Windows<K, V, A> {
    /// Merges partials that travelled at `time` (`cap` is at `time`).
    fn apply<G: Aggregator<V, Acc = A>>(
        &mut self,
        grid: &Grid,
        agg: &G,
        cap: &Capability<EventTime>,
        time: EventTime,
        data: Vec<(EventTime, Partial<K, V, A>)>,
    ) {
        let mut data = data.into_iter().peekable();
        while let Some((_, partial)) = data.next() {
            match partial {
                Partial::Agg {
                    key, start, acc, ..
                } => {
                    // The partials of one pane come in runs (a batch of
                    // input mostly lies in one pane): the pane is looked
                    // up once per run, not once per partial.
                    let same_pane = |(_, p): &(EventTime, Partial<K, V, A>)| p.in_pane(start);
                    if grid.last_end(start).is_none() {
                        // A pane in the gap between hopping windows.
                        while data.next_if(same_pane).is_some() {}
                        continue;
                    }
                    let pending = &mut self.pending;
                    // A new pane mostly ends as large as the newest one:
                    // sized so from the start, its table never regrows.
                    let newest = self
                        .state
                        .panes
                        .last_key_value()
                        .map_or(0, |(_, p)| p.len());
                    let pane = self.state.panes.entry(start).or_insert_with(|| {
                        for end in grid.ends_of(start) {
                            pending.entry(end).or_insert_with(|| cap.delayed(&end));
                        }
                        Pane::with_capacity(newest)
                    });
                    pane.merge(agg, key, acc);
                    while let Some((_, Partial::Agg { key, acc, .. })) = data.next_if(same_pane) {
                        pane.merge(agg, key, acc);
                    }
                }
                Partial::Late { ts, key, value } => {
                    self.late.stash(cap, time, (ts, key, value));
                }
            }
        }
    }

    /// Applies the late records read at `t`, after every window ending at
    /// or before `t` has fired: the same results whatever the scheduling.
    #[allow(clippy::too_many_arguments)]
    fn apply_late<G: Aggregator<V, Acc = A>>(
        &mut self,
        (ctx, counters): (&Context, &StepMetrics),
        grid: &Grid,
        agg: &G,
        keep: u64,
        t: EventTime,
        cap: Capability<EventTime>,
        records: Vec<(EventTime, K, V)>,
        output: &mut ResultOutput<'_, K, G::Output>,
    ) {
        fire(
            &mut self.pending,
            |end| end <= t,
            &mut self.state,
            grid,
            (agg, &mut self.refused),
            output,
        );
        let mut updates = BTreeSet::new();
        let mut dropped = 0;
        for (ts, key, value) in records {
            let pane = grid.pane_of(ts);
            let mut accepted = false;
            for end in grid.ends_of(pane) {
                if end > t {
                    accepted = true;
                    self.pending.entry(end).or_insert_with(|| cap.delayed(&end));
                } else if end + keep > t {
                    accepted = true;
                    updates.insert((end, key.clone()));
                }
            }
            if accepted {
                let mut acc = agg.init();
                agg.add(&mut acc, value);
                let pane = self.state.panes.entry(pane).or_default();
                pane.merge(agg, key, acc);
            } else {
                dropped += 1;
            }
        }
        Metrics::add(&ctx.metrics.late_dropped, dropped);
        Metrics::add(&counters.dropped, dropped);
        Metrics::add(&ctx.metrics.late_updates, updates.len() as u64);
        let mut session = output.session(&cap);
        for (end, key) in updates {
            let start = grid.start_of(end);
            let Some(acc) = self.state.window_value(grid, agg, end, &key) else {
                continue;
            };
            if let Some(value) = result_of(agg, &acc, (&key, start, end), &mut self.refused) {
                session.give((
                    end,
                    WindowResult {
                        key,
                        start,
                        end,
                        value,
                        update: true,
                    },
                ));
            }
        }
    }
}

/// Rebuilds this worker's share of checkpointed pane state: the keys it
/// owns under the current number of workers, from every old worker's part.
fn restore<K: Key, A: Data>(
    parts: &[Vec<u8>],
    id: &str,
    peers: usize,
    index: usize,
) -> Result<PaneState<K, A>> {
    let mut state = PaneState::default();
    for part in parts {
        let old: PaneState<K, A> = crate::checkpoint::decode(part, id)?;
        for (start, pane) in old.panes {
            let target = state.panes.entry(start).or_default();
            for (key, acc) in pane.into_entries() {
                if stable_hash(&key) as usize % peers == index {
                    // Old workers held disjoint keys: nothing to merge.
                    target.insert(key, acc);
                }
            }
        }
    }
    state.panes.retain(|_, p| !p.is_empty());
    Ok(state)
}

/// The keyed, stateful half of a tumbling or sliding aggregation.
///
/// With checkpoints, partials at or after the next epoch boundary wait
/// until progress passes it; the state is then written as of the boundary
/// (windows ending below it fired, nothing at or after it applied).
pub(crate) fn pane_windows<'scope, K: Key, V: Data, A: Aggregator<V>>(
    partials: PartialStream<'scope, K, V, A::Acc>,
    ctx: &Arc<Context>,
    id: &str,
    grid: Grid,
    lateness: Lateness,
    agg: A,
) -> Result<EventStream<'scope, WindowResult<K, A::Output>>> {
    let keep = match lateness {
        Lateness::Allowed(ms) => ms,
        _ => 0,
    };
    let scope = partials.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("window `{id}`"))?;
    let restored = match ckpt.as_ref() {
        Some(k) if k.restored_epoch().is_some() => Some((
            k.restored_epoch().unwrap_or(0),
            restore::<K, A::Acc>(k.restored_parts(), id, peers, index)?,
        )),
        _ => None,
    };
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);
    let step = id.to_string();
    let route = |(_, p): &(EventTime, Partial<K, V, A::Acc>)| stable_hash(p.key());
    Ok(partials.unary_frontier(
        Exchange::new(route),
        &format!("Window({id})"),
        move |initial, _| {
            let mut me = Windows {
                state: PaneState::<K, A::Acc>::default(),
                pending: BTreeMap::new(),
                late: LateStash::new(),
                refused: None,
            };
            if let Some((epoch, state)) = restored {
                // Windows ending below the epoch fired before it was taken.
                for start in state.panes.keys() {
                    for end in grid.ends_of(*start).filter(|end| *end >= epoch) {
                        me.pending
                            .entry(end)
                            .or_insert_with(|| initial.delayed(&end));
                    }
                }
                me.state = state;
            }
            let mut waiting: BTreeMap<EventTime, (Capability<EventTime>, Vec<_>)> = BTreeMap::new();
            move |(input, frontier), output| {
                let gate = ckpt.as_mut().map(|k| k.clock().next());
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let cap = cap.delayed(&time, 0);
                    if gate.is_some_and(|next| time >= next) {
                        waiting
                            .entry(time)
                            .or_insert_with(|| (cap, Vec::new()))
                            .1
                            .append(data);
                    } else {
                        me.apply(&grid, &agg, &cap, time, std::mem::take(data));
                    }
                });

                if let Some(k) = ckpt.as_mut() {
                    for epoch in k.clock().passed_frontier(frontier) {
                        for (time, (cap, data)) in take_below(&mut waiting, epoch) {
                            me.apply(&grid, &agg, &cap, time, data);
                        }
                        while let Some((t, (cap, records))) = me.late.next_below(epoch) {
                            me.apply_late(
                                (&ctx, &counters),
                                &grid,
                                &agg,
                                keep,
                                t,
                                cap,
                                records,
                                output,
                            );
                        }
                        fire(
                            &mut me.pending,
                            |end| end < epoch,
                            &mut me.state,
                            &grid,
                            (&agg, &mut me.refused),
                            output,
                        );
                        if let Some(e) = me.refused.take() {
                            ctx.fail(e.in_step(&step));
                            return;
                        }
                        let saved =
                            crate::checkpoint::encode(&me.state).and_then(|b| k.save(epoch, b));
                        if let Err(e) = saved {
                            ctx.fail(e.in_step(&step));
                            return;
                        }
                    }
                    let next = k
                        .clock()
                        .release_bound(frontier.frontier().first().copied());
                    for (time, (cap, data)) in take_below(&mut waiting, next) {
                        me.apply(&grid, &agg, &cap, time, data);
                    }
                }

                while let Some((t, (cap, records))) = me.late.next_complete(frontier) {
                    me.apply_late(
                        (&ctx, &counters),
                        &grid,
                        &agg,
                        keep,
                        t,
                        cap,
                        records,
                        output,
                    );
                }

                fire(
                    &mut me.pending,
                    |end| !frontier.less_than(&end),
                    &mut me.state,
                    &grid,
                    (&agg, &mut me.refused),
                    output,
                );
                if let Some(e) = me.refused.take() {
                    ctx.fail(e.in_step(&step));
                    return;
                }

                // A pane is needed until the last window holding it is past its
                // allowed lateness.
                while let Some(entry) = me.state.panes.first_entry() {
                    let expires = grid.last_end(*entry.key()).map_or(0, |e| e + keep);
                    if frontier.less_than(&expires) {
                        break;
                    }
                    entry.remove();
                }
            }
        },
    ))
}
