//! The three timely operators of the lateness path: local pre-aggregation,
//! the keyed evaluation with its late stash, and the ranking on worker 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::frontier::MutableAntichain;

use super::ranking::{LocalMinute, Rankings};
use super::state::KeyedMinutes;
use super::Params;
use crate::pageviews::{Article, PageView};
use crate::trending::TrendingMinute;

/// What crosses the keyed exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Piece {
    /// On-time views of one article in one pane, summed on one worker.
    Pane {
        /// The article.
        article: Article,
        /// Pane index: event time / slide.
        pane: u64,
        /// Summed views.
        views: u64,
    },
    /// One late event, whole; it travels at the time it was read.
    Late {
        /// The article.
        article: Article,
        /// Its event time, below the time it travels at.
        ts: u64,
        /// Its views.
        views: u64,
    },
}

impl Piece {
    fn article(&self) -> &Article {
        match self {
            Piece::Pane { article, .. } | Piece::Late { article, .. } => article,
        }
    }
}

type Pieces<'scope> = Stream<'scope, u64, Vec<Piece>>;
type LocalMinutes<'scope> = Stream<'scope, u64, Vec<LocalMinute>>;
type LocalOutput<'a> =
    OutputBuilderSession<'a, u64, timely::container::CapacityContainerBuilder<Vec<LocalMinute>>>;
/// Late events waiting for their read time to complete, by that time.
type LateStash = BTreeMap<u64, (Capability<u64>, Vec<(Article, u64, u64)>)>;

/// The least time of a frontier (time is totally ordered), `None` when empty.
fn least(frontier: &MutableAntichain<u64>) -> Option<u64> {
    frontier.frontier().iter().min().copied()
}

/// Sums, per activation, the on-time views of each article and pane (sent
/// at the activation's least time, at or below their event times); late
/// events pass whole at their own time. Events of 0 views carry nothing and
/// are skipped, as the rise operator does.
pub(crate) fn pre_aggregate<'scope>(
    events: EventStream<'scope, PageView>,
    id: &str,
    slide: u64,
) -> Pieces<'scope> {
    events.unary(Pipeline, &format!("LatePreAggregate({id})"), move |_, _| {
        let mut panes: StableMap<(Article, u64), u64> = StableMap::default();
        move |input, output| {
            let mut least: Option<Capability<u64>> = None;
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                if least.as_ref().is_none_or(|c| *c.time() > time) {
                    least = Some(cap.delayed(&time, 0));
                }
                let mut late = Vec::new();
                for (ts, view) in data.drain(..) {
                    if view.views == 0 {
                        continue;
                    }
                    if ts < time {
                        late.push(Piece::Late {
                            article: view.article,
                            ts,
                            views: view.views,
                        });
                    } else {
                        let sum = panes.entry((view.article, ts / slide)).or_default();
                        *sum = sum.saturating_add(view.views);
                    }
                }
                if !late.is_empty() {
                    output.session(&cap).give_iterator(late.into_iter());
                }
            });
            if let Some(cap) = least {
                output.session(&cap).give_iterator(panes.drain().map(
                    |((article, pane), views)| Piece::Pane {
                        article,
                        pane,
                        views,
                    },
                ));
            }
        }
    })
}

/// First-evaluates, in order, every pending boundary `T` for which
/// `ready(T)`, sending this worker's ranking at `T`.
fn evaluate_ready(
    state: &mut KeyedMinutes,
    held: &mut Option<Capability<u64>>,
    params: &Params,
    worker: usize,
    ready: impl Fn(u64) -> bool,
    output: &mut LocalOutput<'_>,
) {
    while let Some(b) = state.next_boundary() {
        let t = b * params.slide;
        if !ready(t) {
            break;
        }
        let Some(cap) = held.as_ref().map(|h| h.delayed(&t)) else {
            panic!("lateness: boundary {t} is pending without a capability");
        };
        let rank = state.evaluate(b);
        output.session(&cap).give(LocalMinute {
            t,
            worker,
            update: false,
            rank: Some(rank),
        });
        match state.next_boundary() {
            Some(next) => {
                if let Some(h) = held.as_mut() {
                    h.downgrade(&(next * params.slide));
                }
            }
            None => *held = None,
        }
    }
}

/// The keyed half: pane views per article, a capability at the next boundary
/// to evaluate, and a stash of late events by read time. A batch of late
/// events is applied once its time is complete and after every boundary at
/// or below it has been evaluated, so the results do not depend on when
/// messages arrive.
pub(crate) fn keyed_minutes<'scope>(
    pieces: Pieces<'scope>,
    ctx: &Arc<Context>,
    id: &str,
    params: Params,
) -> LocalMinutes<'scope> {
    let worker = pieces.scope().index();
    let ctx = Arc::clone(ctx);
    let route = |piece: &Piece| stable_hash(piece.article());
    pieces.unary_frontier(
        Exchange::new(route),
        &format!("LateRise({id})"),
        move |_, _| {
            let mut state = KeyedMinutes::new(params);
            let mut held: Option<Capability<u64>> = None;
            let mut stash: LateStash = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    for piece in data.drain(..) {
                        match piece {
                            Piece::Pane {
                                article,
                                pane,
                                views,
                            } => {
                                state.add(article, pane, views);
                            }
                            Piece::Late { article, ts, views } => stash
                                .entry(time)
                                .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                                .1
                                .push((article, ts, views)),
                        }
                    }
                    // On-time views only open boundaries above this time.
                    if let Some(b) = state.next_boundary() {
                        let t = b * params.slide;
                        if held.as_ref().is_none_or(|h| *h.time() > t) {
                            held = Some(cap.delayed(&t, 0));
                        }
                    }
                });

                while let Some(entry) = stash.first_entry() {
                    let t = *entry.key();
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let (cap, events) = entry.remove();
                    evaluate_ready(&mut state, &mut held, &params, worker, |at| at <= t, output);
                    let outcome = state.apply_late(t, events);
                    Metrics::add(&ctx.metrics.late_dropped, outcome.dropped);
                    output
                        .session(&cap)
                        .give_iterator(outcome.updates.into_iter().map(|(b, rank)| LocalMinute {
                            t: b,
                            worker,
                            update: true,
                            rank,
                        }));
                    // Late views may open boundaries above `t`.
                    if let Some(b) = state.next_boundary() {
                        let next = b * params.slide;
                        if held.as_ref().is_none_or(|h| *h.time() > next) {
                            held = Some(cap.delayed(&next));
                        }
                    }
                }

                evaluate_ready(
                    &mut state,
                    &mut held,
                    &params,
                    worker,
                    |at| !frontier.less_than(&at),
                    output,
                );
                state.evict(least(frontier));
            }
        },
    )
}

/// On worker 0: keeps every worker's latest ranking of each open boundary
/// and, once progress passes a time, emits one minute per boundary named at
/// that time: first evaluations at `T`, updates at the late batch's time.
pub(crate) fn rank_minutes<'scope>(
    local: LocalMinutes<'scope>,
    ctx: &Arc<Context>,
    id: &str,
    params: Params,
) -> EventStream<'scope, TrendingMinute> {
    let ctx = Arc::clone(ctx);
    local.unary_frontier(
        Exchange::new(|_: &LocalMinute| 0),
        &format!("LateTopK({id})"),
        move |_, _| {
            let mut rankings = Rankings::new(params);
            let mut stash: BTreeMap<u64, (Capability<u64>, Vec<LocalMinute>)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    stash
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                        .1
                        .append(data);
                });
                while let Some(entry) = stash.first_entry() {
                    let at = *entry.key();
                    if frontier.less_equal(&at) {
                        break;
                    }
                    let (cap, news) = entry.remove();
                    let minutes = rankings.apply(at, news);
                    let updates = minutes.iter().filter(|m| m.update).count();
                    Metrics::add(&ctx.metrics.late_updates, updates as u64);
                    output
                        .session(&cap)
                        .give_iterator(minutes.into_iter().map(|m| (m.t, m)));
                }
                rankings.evict(least(frontier));
            }
        },
    )
}
