//! The hour clock: a keyed operator that applies each hour's counts, scores
//! the worker's articles and ends days, strictly in hour order.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::{EventTime, DAY, HOUR};
use keyflow_operators::distance::Metric;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::{Capability, InputCapability};

use super::state::{ScoredArticle, Shard, ShardSnapshot};
use crate::baseline::format_day;
use crate::pageviews::Article;

/// What the scoring operator needs besides its inputs.
#[derive(Debug, Clone)]
pub(crate) struct ScoreParams {
    pub metric: Metric,
    pub min_volume: f64,
    pub top: usize,
    pub snapshots: bool,
    /// Fold days not after the baseline's last day instead of failing.
    pub refold: bool,
    /// Report a day left unfolded by an input that ends mid-day (one worker
    /// says it for all).
    pub report_partial: bool,
}

/// The scoring operator's outputs, all at hour ends.
pub(crate) struct Scored<'scope> {
    /// Each worker's best articles of each scored hour.
    pub scored: EventStream<'scope, ScoredArticle>,
    /// One record per scored hour from every worker.
    pub ticks: EventStream<'scope, ()>,
    /// Each worker's articles at each day end (when asked for).
    pub snapshots: EventStream<'scope, ShardSnapshot>,
}

/// One capability per output.
struct Caps([Capability<EventTime>; 3]);

impl Caps {
    fn new(cap: &InputCapability<EventTime>, time: EventTime) -> Self {
        Caps([0, 1, 2].map(|port| cap.delayed(&time, port)))
    }

    fn downgrade(&mut self, time: EventTime) {
        self.0.iter_mut().for_each(|c| c.downgrade(&time));
    }
}

/// Scores hours on each worker. `counts` are `(article, views)` per hour
/// end; `data_hours` carries every hour end that has counts on any worker
/// (broadcast). Hours are processed one after the other, from the first hour
/// with data to the last: an hour is processed once progress has passed its
/// end and a later or equal hour is known to have data, so that every
/// worker scores the same hours whatever the timing. At the end of the
/// input, hours after the last hour with data are not scored.
pub(crate) fn score_hours<'scope>(
    counts: EventStream<'scope, (Article, u64)>,
    data_hours: EventStream<'scope, ()>,
    ctx: &Arc<Context>,
    params: ScoreParams,
    mut shard: Shard,
) -> Scored<'scope> {
    let mut builder = OperatorBuilder::new("AnomalyScore".to_string(), counts.scope());
    let route = |(_, (article, _)): &(EventTime, (Article, u64))| stable_hash(article);
    let mut counts_in = builder.new_input(counts, Exchange::new(route));
    let mut hours_in = builder.new_input(data_hours, Pipeline);
    let (scored_out, scored) = builder.new_output();
    let (ticks_out, ticks) = builder.new_output();
    let (snap_out, snapshots) = builder.new_output();
    let mut scored_out = OutputBuilder::from(scored_out);
    let mut ticks_out = OutputBuilder::from(ticks_out);
    let mut snap_out = OutputBuilder::from(snap_out);
    let ctx = Arc::clone(ctx);
    builder.build(move |_initial| {
        let mut stash: BTreeMap<EventTime, Vec<(Article, u64)>> = BTreeMap::new();
        let mut held: BTreeMap<EventTime, Caps> = BTreeMap::new();
        let mut last_data: Option<EventTime> = None;
        let mut cursor: Option<(EventTime, Caps)> = None;
        let mut last_scored: Option<EventTime> = None;
        move |frontiers| {
            let mut late = 0;
            counts_in.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                for (end, (article, views)) in data.drain(..) {
                    if end < time {
                        late += 1;
                        continue;
                    }
                    held.entry(end).or_insert_with(|| Caps::new(&cap, end));
                    stash.entry(end).or_default().push((article, views));
                }
            });
            hours_in.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                for (end, ()) in data.drain(..) {
                    if end >= time {
                        held.entry(end).or_insert_with(|| Caps::new(&cap, end));
                        last_data = Some(last_data.map_or(end, |l| l.max(end)));
                    }
                }
            });
            Metrics::add(&ctx.metrics.late_dropped, late);
            if ctx.is_aborted() {
                (held, cursor, stash) = Default::default();
                return;
            }
            let passed = |t: &EventTime| frontiers.iter().all(|f| !f.less_equal(t));
            let finished = frontiers.iter().all(|f| f.is_empty());
            let mut scored_out = scored_out.activate();
            let mut ticks_out = ticks_out.activate();
            let mut snap_out = snap_out.activate();
            loop {
                if cursor.is_none() {
                    // The first hour with data anywhere, once no earlier one
                    // can arrive.
                    match held.first_key_value() {
                        Some((first, _)) if passed(first) => cursor = held.pop_first(),
                        _ => break,
                    }
                }
                let Some((end, mut caps)) = cursor.take() else {
                    break;
                };
                if !passed(&end) || last_data.is_none_or(|last| end > last) {
                    if finished {
                        // Past the last hour with data, at the end of input.
                        (held, stash) = Default::default();
                        if params.report_partial {
                            report_partial_day(last_scored);
                        }
                    } else {
                        cursor = Some((end, caps));
                    }
                    break;
                }
                let start = end - HOUR;
                let day = start - start % DAY;
                let hour = ((start % DAY) / HOUR) as usize;
                for (article, views) in stash.remove(&end).unwrap_or_default() {
                    shard.add(article, hour, views);
                }
                match shard.score(hour, params.metric, params.min_volume, params.top) {
                    Ok(best) => scored_out
                        .session(&caps.0[0])
                        .give_iterator(best.into_iter().map(|s| (end, s))),
                    Err(e) => {
                        ctx.fail(e.into());
                        (held, stash) = Default::default();
                        break;
                    }
                }
                ticks_out.session(&caps.0[1]).give((end, ()));
                last_scored = Some(end);
                if hour + 1 == crate::baseline::HOURS {
                    if let Some(last) = shard.last_day.filter(|&last| day <= last && !params.refold)
                    {
                        // Days fold in order, so only the first folded day can
                        // be refused, before any baseline was written.
                        ctx.fail(keyflow_dataflow::Error::Config(super::refold_error(
                            day, last,
                        )));
                        (held, stash) = Default::default();
                        break;
                    }
                    shard.end_day(day);
                    if params.snapshots {
                        snap_out.session(&caps.0[2]).give((end, shard.snapshot()));
                    }
                }
                // Capabilities held for this hour (and any earlier) go.
                while held.first_key_value().is_some_and(|(t, _)| *t <= end) {
                    held.pop_first();
                }
                caps.downgrade(end + HOUR);
                cursor = Some((end + HOUR, caps));
            }
        }
    });
    Scored {
        scored,
        ticks,
        snapshots,
    }
}

/// Says on stderr (as a warning) that the day of the last scored hour was
/// not folded into the baseline, when that hour is not the day's last.
fn report_partial_day(last_scored: Option<EventTime>) {
    let Some(end) = last_scored else { return };
    let start = end - HOUR;
    let hour = (start % DAY) / HOUR;
    if hour + 1 < crate::baseline::HOURS as u64 {
        tracing::warn!(
            "anomaly: the input ends at {} {:02}:00 UTC, mid-day: day {} was scored up to \
             that hour but not folded into the baseline output (its missing hours would \
             count as zero views)",
            format_day(start),
            hour + 1,
            format_day(start)
        );
    }
}
