//! Local pre-aggregation before the keyed exchange, shared by rise
//! detection with and without allowed lateness.

use std::sync::Arc;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::Key;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// The summed weight of one key in one pane, from one worker's batch; or,
/// under allowed lateness, one late record, whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaneWeight<K> {
    /// `stable_hash(&key)`, computed once before the exchange.
    pub(crate) hash: u64,
    pub(crate) key: K,
    /// Pane index: event time / slide.
    pub(crate) pane: u64,
    pub(crate) weight: u64,
    /// A late record, which travels at the time it was read.
    pub(crate) late: bool,
}

pub(crate) type PartialStream<'scope, K> =
    Stream<'scope, EventTime, Vec<(EventTime, PaneWeight<K>)>>;

/// Sums, per activation, the on-time weight of each key and pane. Partials
/// travel at the least message time of the activation, which is at or below
/// every record's event time. Late records are dropped and counted, or,
/// with `keep_late`, passed on whole at the time they were read; records of
/// weight 0 carry nothing and are skipped.
pub(crate) fn pre_aggregate<'scope, K: Key>(
    stream: EventStream<'scope, (K, u64)>,
    ctx: &Arc<Context>,
    id: &str,
    slide: u64,
    keep_late: bool,
) -> PartialStream<'scope, K> {
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);
    stream.unary(Pipeline, &format!("RisePreAggregate({id})"), move |_, _| {
        let mut panes: StableMap<(K, u64), (EventTime, u64)> = StableMap::default();
        move |input, output| {
            let mut least: Option<Capability<EventTime>> = None;
            let (mut dropped, mut records, mut late_seen) = (0, 0, 0);
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                if least.as_ref().is_none_or(|c| *c.time() > time) {
                    least = Some(cap.delayed(&time, 0));
                }
                let mut late = Vec::new();
                for (ts, (key, weight)) in data.drain(..) {
                    records += 1;
                    if ts < time {
                        late_seen += 1;
                    }
                    if ts < time && !keep_late {
                        dropped += 1;
                        continue;
                    }
                    if weight == 0 {
                        continue;
                    }
                    if ts < time {
                        let hash = stable_hash(&key);
                        let pane = ts / slide;
                        let late_weight = PaneWeight {
                            hash,
                            key,
                            pane,
                            weight,
                            late: true,
                        };
                        late.push((ts, late_weight));
                        continue;
                    }
                    let entry = panes.entry((key, ts / slide)).or_insert((ts, 0));
                    entry.0 = entry.0.min(ts);
                    entry.1 += weight;
                }
                if !late.is_empty() {
                    output.session(&cap).give_iterator(late.into_iter());
                }
            });
            Metrics::add(&ctx.metrics.late_dropped, dropped);
            Metrics::add(&counters.dropped, dropped);
            Metrics::add(&counters.records_in, records);
            Metrics::add(&counters.late, late_seen);
            if let Some(cap) = least {
                output.session(&cap).give_iterator(panes.drain().map(
                    |((key, pane), (ts, weight))| {
                        let hash = stable_hash(&key);
                        (
                            ts,
                            PaneWeight {
                                hash,
                                key,
                                pane,
                                weight,
                                late: false,
                            },
                        )
                    },
                ));
            }
        }
    })
}
