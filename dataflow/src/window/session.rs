//! Session windows: one window per burst of a key's activity.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::pre::PartialStream;
use super::{Aggregator, Data, Key, LateStash, Lateness, Partial, ResultOutput, WindowResult};
use crate::hash::{stable_hash, StableMap};
use crate::metrics::Metrics;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;

/// One session of one key: records from `start` to `last`; the window is
/// `[start, last + gap)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session<A> {
    /// First record's event time.
    pub start: EventTime,
    /// Last record's event time.
    pub last: EventTime,
    /// The aggregate so far.
    pub acc: A,
    /// Whether its result was emitted (kept only under allowed lateness).
    pub fired: bool,
}

/// Merges the piece `[start, last]` into `sessions`, joining every session it
/// overlaps; returns the index of the merged session and whether it absorbed
/// one that had fired.
fn merge_piece<V, G: Aggregator<V>>(
    sessions: &mut Vec<Session<G::Acc>>,
    agg: &G,
    gap: u64,
    mut piece: Session<G::Acc>,
) -> (usize, bool) {
    let mut absorbed_fired = false;
    let mut i = 0;
    while i < sessions.len() {
        let s = &sessions[i];
        if s.start < piece.last + gap && piece.start < s.last + gap {
            let s = sessions.swap_remove(i);
            absorbed_fired |= s.fired;
            piece.start = piece.start.min(s.start);
            piece.last = piece.last.max(s.last);
            agg.merge(&mut piece.acc, &s.acc);
        } else {
            i += 1;
        }
    }
    sessions.push(piece);
    (sessions.len() - 1, absorbed_fired)
}

type Timers<K> = BTreeMap<EventTime, (Capability<EventTime>, Vec<K>)>;

/// Emits every session whose end is a timer at or below `upto`. Without
/// allowed lateness a fired session is forgotten at once.
#[allow(clippy::too_many_arguments)]
fn fire<V, K: Key, G: Aggregator<V>>(
    upto: impl Fn(EventTime) -> bool,
    sessions: &mut StableMap<K, Vec<Session<G::Acc>>>,
    timers: &mut Timers<K>,
    gap: u64,
    keep: u64,
    agg: &G,
    output: &mut ResultOutput<'_, K, G::Output>,
) {
    while let Some(entry) = timers.first_entry() {
        let end = *entry.key();
        if !upto(end) {
            break;
        }
        let (cap, keys) = entry.remove();
        let mut session = output.session(&cap);
        for key in keys {
            let Some(list) = sessions.get_mut(&key) else {
                continue;
            };
            for s in list.iter_mut().filter(|s| !s.fired && s.last + gap == end) {
                s.fired = true;
                session.give((
                    end,
                    WindowResult {
                        key: key.clone(),
                        start: s.start,
                        end,
                        value: agg.finish(&s.acc),
                        update: false,
                    },
                ));
            }
            if keep == 0 {
                list.retain(|s| !s.fired);
                if list.is_empty() {
                    sessions.remove(&key);
                }
            }
        }
    }
}

/// The keyed, stateful half of a session aggregation.
pub(crate) fn session_windows<'scope, K: Key, V: Data, A: Aggregator<V>>(
    partials: PartialStream<'scope, K, V, A::Acc>,
    ctx: &Arc<Context>,
    id: &str,
    gap: u64,
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
        &format!("Session({id})"),
        move |_, _| {
            let mut sessions: StableMap<K, Vec<Session<A::Acc>>> = StableMap::default();
            // Window ends to look at, with the keys that may have a session
            // ending there (stale entries are skipped when they fire).
            let mut timers: Timers<K> = BTreeMap::new();
            let mut late: LateStash<K, V> = LateStash::new();
            let mut seen_frontier = Some(0);
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    for (_, partial) in data.drain(..) {
                        match partial {
                            Partial::Agg {
                                key,
                                start,
                                last,
                                acc,
                            } => {
                                let list = sessions.entry(key.clone()).or_default();
                                let piece = Session {
                                    start,
                                    last,
                                    acc,
                                    fired: false,
                                };
                                let (i, _) = merge_piece(list, &agg, gap, piece);
                                let end = list[i].last + gap;
                                timers
                                    .entry(end)
                                    .or_insert_with(|| (cap.delayed(&end, 0), Vec::new()))
                                    .1
                                    .push(key);
                            }
                            Partial::Late { ts, key, value } => {
                                late.stash(&cap.delayed(&time, 0), time, (ts, key, value));
                            }
                        }
                    }
                });

                while let Some((t, (cap, records))) = late.next_complete(frontier) {
                    fire(
                        |end| end <= t,
                        &mut sessions,
                        &mut timers,
                        gap,
                        keep,
                        &agg,
                        output,
                    );
                    let mut dropped = 0;
                    let mut updates = 0;
                    let mut session = output.session(&cap);
                    for (ts, key, value) in records {
                        let list = sessions.entry(key.clone()).or_default();
                        let mut acc = agg.init();
                        agg.add(&mut acc, value);
                        let piece = Session {
                            start: ts,
                            last: ts,
                            acc,
                            fired: false,
                        };
                        let (i, absorbed_fired) = merge_piece(list, &agg, gap, piece);
                        let end = list[i].last + gap;
                        if end > t {
                            // Still open: it fires at its end, as an update if it
                            // swallowed an emitted session.
                            timers
                                .entry(end)
                                .or_insert_with(|| (cap.delayed(&end), Vec::new()))
                                .1
                                .push(key);
                            if absorbed_fired {
                                list[i].fired = false;
                            }
                        } else if end + keep > t {
                            list[i].fired = true;
                            updates += 1;
                            session.give((
                                end,
                                WindowResult {
                                    key,
                                    start: list[i].start,
                                    end,
                                    value: agg.finish(&list[i].acc),
                                    update: true,
                                },
                            ));
                        } else {
                            dropped += 1;
                            if !absorbed_fired {
                                list.swap_remove(i);
                            }
                        }
                    }
                    Metrics::add(&ctx.metrics.late_dropped, dropped);
                    Metrics::add(&ctx.metrics.late_updates, updates);
                }

                fire(
                    |end| !frontier.less_than(&end),
                    &mut sessions,
                    &mut timers,
                    gap,
                    keep,
                    &agg,
                    output,
                );

                // Under allowed lateness, forget fired sessions once no late
                // record can reach them (checked when progress moves).
                let now = frontier.frontier().first().copied();
                if keep > 0 && now != seen_frontier {
                    seen_frontier = now;
                    sessions.retain(|_, list| {
                        list.retain(|s| !s.fired || frontier.less_than(&(s.last + gap + keep)));
                        !list.is_empty()
                    });
                }
            }
        },
    )
}
