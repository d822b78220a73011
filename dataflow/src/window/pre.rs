//! Local pre-aggregation before the keyed exchange.

use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;

use super::{Aggregator, Data, Key, Lateness, Partial, WindowSpec};
use crate::hash::StableMap;
use crate::metrics::Metrics;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;

pub(crate) type PartialStream<'scope, K, V, A> =
    Stream<'scope, EventTime, Vec<(EventTime, Partial<K, V, A>)>>;

/// Partials for the exchange, and late records for the side output.
pub(crate) type PreOutput<'scope, K, V, A> =
    (PartialStream<'scope, K, V, A>, EventStream<'scope, (K, V)>);

/// Combines, per message time, the on-time records of each key and pane (or
/// session piece) into one partial; applies the late policy to late ones.
pub(crate) fn pre_aggregate<'scope, K: Key, V: Data, A: Aggregator<V>>(
    stream: EventStream<'scope, (K, V)>,
    ctx: &Arc<Context>,
    id: &str,
    spec: WindowSpec,
    lateness: Lateness,
    agg: A,
) -> PreOutput<'scope, K, V, A::Acc> {
    let mut builder = OperatorBuilder::new(format!("PreAggregate({id})"), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    let (partials_out, partials) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let mut partials_out = OutputBuilder::from(partials_out);
    let mut late_out = OutputBuilder::from(late_out);
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);
    let grid = spec.grid();
    let gap = match spec {
        WindowSpec::Session { gap } => gap,
        _ => 0,
    };

    builder.build(move |_initial_capabilities| {
        let mut panes: StableMap<(K, EventTime), (EventTime, A::Acc)> = StableMap::default();
        let mut pieces: StableMap<K, Vec<(EventTime, V)>> = StableMap::default();
        move |_frontiers| {
            let mut partials_out = partials_out.activate();
            let mut late_out = late_out.activate();
            input.for_each_stamp(|cap, data| {
                let time = cap.least().copied().unwrap_or(0);
                let mut late_count = 0;
                let mut records = 0;
                let mut late_session = late_out.session(&cap);
                let mut partial_session = partials_out.session(&cap);
                for (ts, (key, value)) in data.flat_map(|d| d.drain(..)) {
                    records += 1;
                    if ts < time {
                        late_count += 1;
                        match lateness {
                            Lateness::Drop => {}
                            Lateness::SideOutput => late_session.give((ts, (key, value))),
                            Lateness::Allowed(_) => {
                                partial_session.give((ts, Partial::Late { ts, key, value }))
                            }
                        }
                        continue;
                    }
                    match grid {
                        Some(grid) => {
                            let pane = grid.pane_of(ts);
                            let entry =
                                panes.entry((key, pane)).or_insert_with(|| (ts, agg.init()));
                            entry.0 = entry.0.min(ts);
                            agg.add(&mut entry.1, value);
                        }
                        None => pieces.entry(key).or_default().push((ts, value)),
                    }
                }
                Metrics::add(&counters.records_in, records);
                Metrics::add(&counters.late, late_count);
                match lateness {
                    Lateness::Drop => {
                        Metrics::add(&ctx.metrics.late_dropped, late_count);
                        Metrics::add(&counters.dropped, late_count);
                    }
                    Lateness::SideOutput => Metrics::add(&ctx.metrics.late_side, late_count),
                    Lateness::Allowed(_) => {}
                }
                partial_session.give_iterator(panes.drain().map(|((key, start), (min, acc))| {
                    (
                        min,
                        Partial::Agg {
                            key,
                            start,
                            last: start,
                            acc,
                        },
                    )
                }));
                for (key, mut records) in pieces.drain() {
                    records.sort_by_key(|(ts, _)| *ts);
                    let mut current: Option<(EventTime, EventTime, A::Acc)> = None;
                    for (ts, value) in records {
                        match current.as_mut() {
                            Some((_, last, acc)) if ts < *last + gap => {
                                *last = ts;
                                agg.add(acc, value);
                            }
                            _ => {
                                if let Some((start, last, acc)) = current.take() {
                                    partial_session.give((
                                        start,
                                        Partial::Agg {
                                            key: key.clone(),
                                            start,
                                            last,
                                            acc,
                                        },
                                    ));
                                }
                                let mut acc = agg.init();
                                agg.add(&mut acc, value);
                                current = Some((ts, ts, acc));
                            }
                        }
                    }
                    if let Some((start, last, acc)) = current {
                        partial_session.give((
                            start,
                            Partial::Agg {
                                key,
                                start,
                                last,
                                acc,
                            },
                        ));
                    }
                }
            });
        }
    });
    (partials, late)
}
