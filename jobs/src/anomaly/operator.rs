//! The hour clock: a keyed operator that applies each hour's counts, scores
//! the worker's articles and ends days, strictly in hour order.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::checkpoint::{take_below, StepCheckpoint};
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::{EventTime, DAY, HOUR};
use keyflow_operators::distance::Metric;
use serde::{Deserialize, Serialize};
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

    fn delayed(&self, time: EventTime) -> Self {
        Caps([0, 1, 2].map(|port| self.0[port].delayed(&time)))
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
    let scope = counts.scope();
    let (peers, index) = (scope.peers(), scope.index());
    // score_hours cannot fail in the middle of the graph: a bad step id or
    // a damaged checkpoint stops the job through the context instead.
    let mut ckpt = ctx
        .checkpoint_step(index, "anomaly-score", "the anomaly scoring")
        .unwrap_or_else(|e| {
            ctx.fail(e);
            None
        });
    let mut restored: Option<(EventTime, Saved)> = None;
    if let Some(k) = ckpt.as_ref() {
        if let Some(epoch) = k.restored_epoch() {
            match restore(k, &mut shard, peers, index) {
                Ok(saved) => restored = Some((epoch, saved)),
                Err(e) => ctx.fail(e),
            }
        }
    }
    let mut builder = OperatorBuilder::new("AnomalyScore".to_string(), scope);
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
    builder.build(move |initial| {
        let mut me = HourClock {
            shard,
            stash: BTreeMap::new(),
            held: BTreeMap::new(),
            last_data: None,
            cursor: None,
            last_scored: None,
            dirty: true,
        };
        if let (Some((_, saved)), [a, b, c]) = (restored, &initial[..]) {
            me.last_data = saved.last_data;
            me.last_scored = saved.last_scored;
            me.cursor = saved
                .cursor
                .map(|t| (t, Caps([a.delayed(&t), b.delayed(&t), c.delayed(&t)])));
            me.dirty = true;
        }
        // Input held back until the next epoch's snapshot: per message
        // time, capabilities, counts and data hours.
        type Waiting =
            BTreeMap<EventTime, (Caps, Vec<(EventTime, (Article, u64))>, Vec<EventTime>)>;
        let mut waiting: Waiting = BTreeMap::new();
        let mut blob: Option<String> = None;
        move |frontiers| {
            let mut late = 0;
            let gate = ckpt.as_mut().map(|k| k.clock().next());
            counts_in.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let caps = Caps::new(&cap, time);
                if gate.is_some_and(|next| time >= next) {
                    let w = waiting
                        .entry(time)
                        .or_insert_with(|| (caps, Vec::new(), Vec::new()));
                    w.1.append(data);
                } else {
                    late += me.add_counts(&caps, std::mem::take(data));
                }
            });
            hours_in.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let caps = Caps::new(&cap, time);
                let ends: Vec<EventTime> = data.drain(..).map(|(t, ())| t).collect();
                if gate.is_some_and(|next| time >= next) {
                    let w = waiting
                        .entry(time)
                        .or_insert_with(|| (caps, Vec::new(), Vec::new()));
                    w.2.extend(ends);
                } else {
                    me.add_hours(&caps, ends);
                }
            });
            Metrics::add(&ctx.metrics.late_dropped, late);
            if ctx.is_aborted() {
                (me.held, me.cursor, me.stash) = Default::default();
                waiting.clear();
                return;
            }
            let mut scored_out = scored_out.activate();
            let mut ticks_out = ticks_out.activate();
            let mut snap_out = snap_out.activate();
            let mut outs = Outs {
                scored: &mut scored_out,
                ticks: &mut ticks_out,
                snaps: &mut snap_out,
            };
            let finished = frontiers.iter().all(|f| f.is_empty());
            if let Some(k) = ckpt.as_mut() {
                let low = frontiers
                    .iter()
                    .filter_map(|f| f.frontier().first().copied())
                    .min();
                let mut late = 0;
                for epoch in k.clock().passed(low) {
                    for (_, (caps, counts, hours)) in take_below(&mut waiting, epoch) {
                        late += me.add_counts(&caps, counts);
                        me.add_hours(&caps, hours);
                    }
                    if !me.run(&ctx, &params, &mut outs, |t| *t < epoch, false) {
                        return;
                    }
                    if let Err(e) = me.save(k, epoch, &mut blob) {
                        ctx.fail(e);
                        return;
                    }
                }
                let next = k.clock().release_bound(low);
                for (_, (caps, counts, hours)) in take_below(&mut waiting, next) {
                    late += me.add_counts(&caps, counts);
                    me.add_hours(&caps, hours);
                }
                Metrics::add(&ctx.metrics.late_dropped, late);
            }
            let passed = |t: &EventTime| frontiers.iter().all(|f| !f.less_equal(t));
            me.run(&ctx, &params, &mut outs, passed, finished);
        }
    });
    Scored {
        scored,
        ticks,
        snapshots,
    }
}

/// The output handles of the scoring operator.
struct Outs<'a, 'b> {
    scored: &'a mut Out<'b, ScoredArticle>,
    ticks: &'a mut Out<'b, ()>,
    snaps: &'a mut Out<'b, ShardSnapshot>,
}

type Out<'a, D> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    EventTime,
    timely::container::CapacityContainerBuilder<Vec<(EventTime, D)>>,
>;

/// What the scoring operator keeps between activations.
struct HourClock {
    shard: Shard,
    stash: BTreeMap<EventTime, Vec<(Article, u64)>>,
    held: BTreeMap<EventTime, Caps>,
    last_data: Option<EventTime>,
    cursor: Option<(EventTime, Caps)>,
    last_scored: Option<EventTime>,
    /// Whether the shard changed since it was last saved.
    dirty: bool,
}

/// The scoring operator's checkpoint, besides its shard (kept in a blob,
/// written again only when an hour changed it).
#[derive(Serialize, Deserialize)]
struct Saved {
    shard: String,
    last_data: Option<EventTime>,
    cursor: Option<EventTime>,
    last_scored: Option<EventTime>,
}

/// Rebuilds the shard from every old worker's blob, keeping the articles
/// this worker owns now.
fn restore(
    k: &StepCheckpoint,
    shard: &mut Shard,
    peers: usize,
    index: usize,
) -> keyflow_dataflow::Result<Saved> {
    use keyflow_dataflow::checkpoint::decode;
    let mut first: Option<Saved> = None;
    let mut keys = keyflow_dataflow::hash::StableMap::default();
    for part in k.restored_parts() {
        let saved: Saved = decode(part, "anomaly-score")?;
        let old: Shard = decode(&k.restored_blob(&saved.shard)?, &saved.shard)?;
        keys.extend(
            old.keys
                .into_iter()
                .filter(|(a, _)| stable_hash(a) as usize % peers == index),
        );
        if first.is_none() {
            shard.days = old.days;
            shard.first_day = old.first_day;
            shard.last_day = old.last_day;
            first = Some(saved);
        }
    }
    shard.keys = keys;
    first.ok_or_else(|| keyflow_dataflow::Error::Checkpoint {
        path: "step anomaly-score".into(),
        reason: "no part to restore from".into(),
    })
}

impl HourClock {
    /// Files counts for their hour ends; returns how many were late.
    fn add_counts(&mut self, caps: &Caps, data: Vec<(EventTime, (Article, u64))>) -> u64 {
        let time = *caps.0[0].time();
        let mut late = 0;
        for (end, (article, views)) in data {
            if end < time {
                late += 1;
                continue;
            }
            self.held.entry(end).or_insert_with(|| caps.delayed(end));
            self.stash.entry(end).or_default().push((article, views));
        }
        late
    }

    /// Notes hour ends that have data on some worker.
    fn add_hours(&mut self, caps: &Caps, ends: Vec<EventTime>) {
        let time = *caps.0[0].time();
        for end in ends {
            if end >= time {
                self.held.entry(end).or_insert_with(|| caps.delayed(end));
                self.last_data = Some(self.last_data.map_or(end, |l| l.max(end)));
            }
        }
    }

    /// Writes the state as of `epoch`; the shard again only if it changed.
    fn save(
        &mut self,
        k: &StepCheckpoint,
        epoch: EventTime,
        blob: &mut Option<String>,
    ) -> keyflow_dataflow::Result<()> {
        use keyflow_dataflow::checkpoint::encode;
        if self.dirty || blob.is_none() {
            *blob = Some(k.save_blob(epoch, encode(&self.shard)?)?);
            self.dirty = false;
        }
        let name = blob.clone().unwrap_or_default();
        let saved = Saved {
            shard: name.clone(),
            last_data: self.last_data,
            cursor: self.cursor.as_ref().map(|(t, _)| *t),
            last_scored: self.last_scored,
        };
        k.save_with(epoch, encode(&saved)?, &[name])
    }

    /// Scores every hour, in order, whose end `passed` accepts and that has
    /// data; returns false when the job failed.
    fn run(
        &mut self,
        ctx: &Context,
        params: &ScoreParams,
        outs: &mut Outs<'_, '_>,
        passed: impl Fn(&EventTime) -> bool,
        finished: bool,
    ) -> bool {
        loop {
            if self.cursor.is_none() {
                match self.held.first_key_value() {
                    Some((first, _)) if passed(first) => self.cursor = self.held.pop_first(),
                    _ => break,
                }
            }
            let Some((end, mut caps)) = self.cursor.take() else {
                break;
            };
            if !passed(&end) || self.last_data.is_none_or(|last| end > last) {
                if finished {
                    (self.held, self.stash) = Default::default();
                    if params.report_partial {
                        report_partial_day(self.last_scored);
                    }
                } else {
                    self.cursor = Some((end, caps));
                }
                break;
            }
            if let Err(e) = self.check_gap(end, &passed) {
                ctx.fail(e);
                (self.held, self.stash) = Default::default();
                return false;
            }
            let start = end - HOUR;
            let day = start - start % DAY;
            let hour = ((start % DAY) / HOUR) as usize;
            for (article, views) in self.stash.remove(&end).unwrap_or_default() {
                self.shard.add(article, hour, views);
            }
            self.dirty = true;
            match self
                .shard
                .score(hour, params.metric, params.min_volume, params.top)
            {
                Ok(best) => outs
                    .scored
                    .session(&caps.0[0])
                    .give_iterator(best.into_iter().map(|s| (end, s))),
                Err(e) => {
                    ctx.fail(e.into());
                    (self.held, self.stash) = Default::default();
                    return false;
                }
            }
            outs.ticks.session(&caps.0[1]).give((end, ()));
            self.last_scored = Some(end);
            if hour + 1 == crate::baseline::HOURS {
                if let Some(last) = self
                    .shard
                    .last_day
                    .filter(|&last| day <= last && !params.refold)
                {
                    ctx.fail(keyflow_dataflow::Error::Config(super::refold_error(
                        day, last,
                    )));
                    (self.held, self.stash) = Default::default();
                    return false;
                }
                self.shard.end_day(day);
                if params.snapshots {
                    outs.snaps
                        .session(&caps.0[2])
                        .give((end, self.shard.snapshot()));
                }
            }
            while self.held.first_key_value().is_some_and(|(t, _)| *t <= end) {
                self.held.pop_first();
            }
            caps.downgrade(end + HOUR);
            self.cursor = Some((end + HOUR, caps));
        }
        true
    }
}

/// At most this many hours in a row without views anywhere are scored
/// (a year): a longer stretch points to a stale or mistyped time, and
/// scoring every empty hour of it would not end.
pub const MAX_EMPTY_HOURS: u64 = 366 * 24;

impl HourClock {
    /// Fails when the next hour with views lies more than
    /// [`MAX_EMPTY_HOURS`] after `end` and nothing can come in between
    /// (progress passed that far).
    fn check_gap(
        &self,
        end: EventTime,
        passed: impl Fn(&EventTime) -> bool,
    ) -> keyflow_dataflow::Result<()> {
        let Some((&next, _)) = self.held.range(end.saturating_add(1)..).next() else {
            return Ok(());
        };
        let limit = end.saturating_add(MAX_EMPTY_HOURS * HOUR);
        if next <= limit || !passed(&limit) {
            return Ok(());
        }
        Err(keyflow_dataflow::Error::BadInput {
            location: format!("event time {}", format_day(next - HOUR)),
            reason: format!(
                "no views anywhere for {} days, from {} to {}: every hour in between would be \
                 scored (at most {} days are), which points to a stale or mistyped time in \
                 the input, such as a dump file's name; fix or leave out that input",
                (next - end) / DAY,
                format_day(end - HOUR),
                format_day(next - HOUR),
                MAX_EMPTY_HOURS / 24
            ),
        })
    }
}

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
