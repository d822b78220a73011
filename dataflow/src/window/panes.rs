//! Tumbling and sliding windows over shared panes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::pre::PartialStream;
use super::spec::Grid;
use super::{Aggregator, Data, Key, LateStash, Lateness, Partial, ResultOutput, WindowResult};
use crate::hash::{stable_hash, StableMap};
use crate::metrics::Metrics;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;

/// The state of one pane-window operator on one worker: serializable, so a
/// checkpoint can store it under the operator's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Key, A: Data")]
pub struct PaneState<K, A> {
    /// Partial aggregates by pane start, then key.
    pub panes: BTreeMap<EventTime, StableMap<K, A>>,
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

    /// Emits, via `give`, the merged accumulator of every key in the window.
    fn for_each_in_window<V, G: Aggregator<V, Acc = A>>(
        &self,
        grid: &Grid,
        agg: &G,
        end: EventTime,
        mut give: impl FnMut(&K, &A),
    ) {
        let mut range = self.panes.range(grid.start_of(end)..end);
        match (range.next(), range.next()) {
            (None, _) => {}
            // One pane (always so for tumbling windows): nothing to merge.
            (Some((_, only)), None) => only.iter().for_each(|(k, a)| give(k, a)),
            _ => {
                let mut merged: StableMap<&K, A> = StableMap::default();
                for (_, pane) in self.panes.range(grid.start_of(end)..end) {
                    for (key, part) in pane {
                        match merged.get_mut(key) {
                            Some(acc) => agg.merge(acc, part),
                            None => {
                                merged.insert(key, part.clone());
                            }
                        }
                    }
                }
                merged.into_iter().for_each(|(k, a)| give(k, &a));
            }
        }
    }
}

fn merge_into<V, K: Key, G: Aggregator<V>>(
    pane: &mut StableMap<K, G::Acc>,
    agg: &G,
    key: K,
    acc: G::Acc,
) {
    match pane.get_mut(&key) {
        Some(existing) => agg.merge(existing, &acc),
        None => {
            pane.insert(key, acc);
        }
    }
}

/// Fires every pending window whose end is at or below `upto`.
fn fire<'a, V, K: Key, G: Aggregator<V>>(
    pending: &mut BTreeMap<EventTime, Capability<EventTime>>,
    upto: impl Fn(EventTime) -> bool,
    state: &PaneState<K, G::Acc>,
    grid: &Grid,
    agg: &G,
    output: &mut ResultOutput<'a, K, G::Output>,
) {
    while let Some(entry) = pending.first_entry() {
        let end = *entry.key();
        if !upto(end) {
            break;
        }
        let cap = entry.remove();
        let mut session = output.session(&cap);
        let start = grid.start_of(end);
        state.for_each_in_window(grid, agg, end, |key, acc| {
            session.give((
                end,
                WindowResult {
                    key: key.clone(),
                    start,
                    end,
                    value: agg.finish(acc),
                    update: false,
                },
            ));
        });
    }
}

/// The keyed, stateful half of a tumbling or sliding aggregation.
pub(crate) fn pane_windows<'scope, K: Key, V: Data, A: Aggregator<V>>(
    partials: PartialStream<'scope, K, V, A::Acc>,
    ctx: &Arc<Context>,
    id: &str,
    grid: Grid,
    lateness: Lateness,
    agg: A,
) -> EventStream<'scope, WindowResult<K, A::Output>> {
    let keep = match lateness {
        Lateness::Allowed(ms) => ms,
        _ => 0,
    };
    let ctx = Arc::clone(ctx);
    let route = |(_, p): &(EventTime, Partial<K, V, A::Acc>)| stable_hash(p.key());
    partials.unary_frontier(
        Exchange::new(route),
        &format!("Window({id})"),
        move |_, _| {
            let mut state = PaneState::<K, A::Acc>::default();
            let mut pending: BTreeMap<EventTime, Capability<EventTime>> = BTreeMap::new();
            let mut late: LateStash<K, V> = LateStash::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    for (_, partial) in data.drain(..) {
                        match partial {
                            Partial::Agg {
                                key, start, acc, ..
                            } => {
                                if grid.last_end(start).is_none() {
                                    // A pane in the gap between hopping windows.
                                    continue;
                                }
                                let pane = state.panes.entry(start).or_insert_with(|| {
                                    for end in grid.ends_of(start) {
                                        pending.entry(end).or_insert_with(|| cap.delayed(&end, 0));
                                    }
                                    StableMap::default()
                                });
                                merge_into(pane, &agg, key, acc);
                            }
                            Partial::Late { ts, key, value } => {
                                late.stash(&cap, time, (ts, key, value));
                            }
                        }
                    }
                });

                // Late records read at time `t` are applied once `t` is complete,
                // after every window ending at or before `t` has fired: the same
                // results whatever the scheduling.
                while let Some((t, (cap, records))) = late.next_complete(frontier) {
                    fire(&mut pending, |end| end <= t, &state, &grid, &agg, output);
                    let mut updates = BTreeSet::new();
                    let mut dropped = 0;
                    for (ts, key, value) in records {
                        let pane = grid.pane_of(ts);
                        let mut accepted = false;
                        for end in grid.ends_of(pane) {
                            if end > t {
                                accepted = true;
                                pending.entry(end).or_insert_with(|| cap.delayed(&end));
                            } else if end + keep > t {
                                accepted = true;
                                updates.insert((end, key.clone()));
                            }
                        }
                        if accepted {
                            let mut acc = agg.init();
                            agg.add(&mut acc, value);
                            merge_into(state.panes.entry(pane).or_default(), &agg, key, acc);
                        } else {
                            dropped += 1;
                        }
                    }
                    Metrics::add(&ctx.metrics.late_dropped, dropped);
                    Metrics::add(&ctx.metrics.late_updates, updates.len() as u64);
                    let mut session = output.session(&cap);
                    for (end, key) in updates {
                        if let Some(acc) = state.window_value(&grid, &agg, end, &key) {
                            let value = agg.finish(&acc);
                            let start = grid.start_of(end);
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

                fire(
                    &mut pending,
                    |end| !frontier.less_than(&end),
                    &state,
                    &grid,
                    &agg,
                    output,
                );

                // A pane is needed until the last window holding it is past its
                // allowed lateness.
                while let Some(entry) = state.panes.first_entry() {
                    let expires = grid.last_end(*entry.key()).map_or(0, |e| e + keep);
                    if frontier.less_than(&expires) {
                        break;
                    }
                    entry.remove();
                }
            }
        },
    )
}
