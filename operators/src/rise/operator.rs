//! The three timely operators of rise detection: local pre-aggregation per
//! key and pane, the keyed stateful evaluation, and the gathering of
//! per-worker tick counts on worker 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::window::Key;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::state::{AddError, Geometry, RiseState};
use super::{RiseTick, Rising};

/// The summed weight of one key in one pane, from one worker's batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaneWeight<K> {
    /// `stable_hash(&key)`, computed once before the exchange.
    hash: u64,
    key: K,
    /// Pane index: event time / slide.
    pane: u64,
    weight: u64,
}

type PartialStream<'scope, K> = Stream<'scope, EventTime, Vec<(EventTime, PaneWeight<K>)>>;

/// Sums, per activation, the on-time weight of each key and pane; drops and
/// counts late records. Partials travel at the least message time of the
/// activation, which is at or below every record's event time.
pub(crate) fn pre_aggregate<'scope, K: Key>(
    stream: EventStream<'scope, (K, u64)>,
    ctx: &Arc<Context>,
    id: &str,
    slide: u64,
) -> PartialStream<'scope, K> {
    let ctx = Arc::clone(ctx);
    stream.unary(Pipeline, &format!("RisePreAggregate({id})"), move |_, _| {
        let mut panes: StableMap<(K, u64), (EventTime, u64)> = StableMap::default();
        move |input, output| {
            let mut least: Option<Capability<EventTime>> = None;
            let mut late = 0;
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                if least.as_ref().is_none_or(|c| *c.time() > time) {
                    least = Some(cap.delayed(&time, 0));
                }
                for (ts, (key, weight)) in data.drain(..) {
                    if ts < time {
                        late += 1;
                        continue;
                    }
                    if weight == 0 {
                        continue;
                    }
                    let entry = panes.entry((key, ts / slide)).or_insert((ts, 0));
                    entry.0 = entry.0.min(ts);
                    entry.1 += weight;
                }
            });
            Metrics::add(&ctx.metrics.late_dropped, late);
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
                            },
                        )
                    },
                ));
            }
        }
    })
}

/// The keyed half: merges pane weights into [`RiseState`], holds one
/// capability per output at the next boundary to evaluate (only while there
/// is state), and evaluates each boundary once the frontier reaches it.
/// Returns the passing keys and, per worker and evaluated boundary, the
/// number of local keys that passed.
pub(crate) fn rise_panes<'scope, K: Key, P>(
    partials: PartialStream<'scope, K>,
    ctx: &Arc<Context>,
    id: &str,
    geo: Geometry,
    min_first: u64,
    every_window: bool,
    predicate: P,
) -> (EventStream<'scope, Rising<K>>, EventStream<'scope, u64>)
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let mut builder = OperatorBuilder::new(format!("Rise({id})"), partials.scope());
    let route = |(_, w): &(EventTime, PaneWeight<K>)| w.hash;
    let mut input = builder.new_input(partials, Exchange::new(route));
    let (rising_out, rising) = builder.new_output();
    let (ticks_out, ticks) = builder.new_output();
    let mut rising_out = OutputBuilder::from(rising_out);
    let mut ticks_out = OutputBuilder::from(ticks_out);
    let ctx = Arc::clone(ctx);
    let id = id.to_string();

    builder.build(move |_initial_capabilities| {
        let mut state = RiseState::<K>::new(&geo, min_first, every_window);
        // Capabilities for (rising, ticks) at the next boundary.
        let mut held: Option<[Capability<EventTime>; 2]> = None;
        let mut counts = Vec::with_capacity(geo.windows);
        let mut future = 0u64;
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut rising_out = rising_out.activate();
            let mut ticks_out = ticks_out.activate();

            input.for_each(|cap, data| {
                if cap.least().is_none() {
                    return;
                }
                for (_, w) in data.drain(..) {
                    match state.add(w.hash, w.key, w.pane, w.weight) {
                        Ok(()) => {}
                        Err(AddError::OutOfRange) => {
                            future += 1;
                            Metrics::add(&ctx.metrics.future, 1);
                        }
                        // Weight beyond 32 bits per key and pane is not
                        // real traffic: count it as bad input and go on.
                        Err(AddError::Overflow) => {
                            Metrics::add(&ctx.metrics.bad, 1);
                            tracing::warn!(
                                operator = %id,
                                pane = w.pane,
                                "skipped a weight that would take one key's pane past 4294967295"
                            );
                        }
                    }
                }
                // New weight can only move the next boundary earlier, and
                // only to one above this message's time.
                if let Some(next) = state.next_boundary() {
                    let t = next * geo.slide;
                    if held.as_ref().is_none_or(|h| *h[0].time() > t) {
                        held = Some([cap.delayed(&t, 0), cap.delayed(&t, 1)]);
                    }
                }
            });
            if future > 0 {
                tracing::warn!(
                    operator = %id,
                    "rejected {future} pane weights 2^32 panes or more away from the live ones"
                );
                future = 0;
            }

            while let Some(caps) = held.as_ref() {
                let t = *caps[0].time();
                if frontier.less_than(&t) {
                    break;
                }
                let b = t / geo.slide;
                state.evict_before(b.saturating_sub(geo.span()));
                let mut session = rising_out.session(&caps[0]);
                let passed = state.evaluate(b, &geo, min_first, &predicate, &mut counts, |k, c| {
                    session.give((
                        t,
                        Rising {
                            key: k.clone(),
                            t,
                            counts: c.to_vec(),
                        },
                    ))
                });
                drop(session);
                ticks_out.session(&caps[1]).give((t, passed));
                state.finish(b, &geo);
                match state.next_boundary() {
                    Some(next) => {
                        let next = next * geo.slide;
                        if let Some(caps) = held.as_mut() {
                            caps[0].downgrade(&next);
                            caps[1].downgrade(&next);
                        }
                    }
                    None => held = None,
                }
            }
        }
    });
    (rising, ticks)
}

/// Sums the per-worker tick counts of each boundary on worker 0 and emits
/// one [`RiseTick`] per boundary once the frontier has passed it.
pub(crate) fn gather_ticks<'scope>(
    local: EventStream<'scope, u64>,
    id: &str,
) -> EventStream<'scope, RiseTick> {
    local.unary_frontier(
        Exchange::new(|_: &(EventTime, u64)| 0),
        &format!("RiseTicks({id})"),
        |_, _| {
            let mut pending: BTreeMap<EventTime, (Capability<EventTime>, u64)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if cap.least().is_none() {
                        return;
                    }
                    for (t, n) in data.drain(..) {
                        pending
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), 0))
                            .1 += n;
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let t = *entry.key();
                    let (cap, trending) = entry.remove();
                    output.session(&cap).give((t, RiseTick { t, trending }));
                }
            }
        },
    )
}
