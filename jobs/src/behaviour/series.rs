//! The global reduce: every boundary's populations, flows, alerts and
//! quality, from the per-interval tallies, on one worker.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use keyflow_dataflow::checkpoint::{decode, encode, take_below};
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::time::{wall_clock_ms, EventTime};
use keyflow_dataflow::window::WindowResult;
use keyflow_dataflow::Result;
use keyflow_operators::rate_alert::RateWatch;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::event::UserState;
use super::report::{Alert, Measure, Quality, Report};

/// An idle stretch (no user in a counted state, no change) longer than
/// this many intervals, between two changes, is reported by its last this
/// many intervals only (or the alert window's, if longer: enough for the
/// alerts after it to be the same). One stale event time, decades before
/// the rest, would otherwise report every interval in between.
pub const MAX_IDLE_REPORTS: u64 = 100_000;

/// The tallies of one interval (or, for totals, of all emitted ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    flows: BTreeMap<(UserState, UserState), u64>,
    on_time: u64,
    late_counted: u64,
    late_dropped: u64,
}

impl Tally {
    fn add_counts(&mut self, other: &Tally) {
        self.on_time += other.on_time;
        self.late_counted += other.late_counted;
        self.late_dropped += other.late_dropped;
    }
}

/// The series of boundary reports, built from per-interval tallies that
/// may come in any order. Serializable, for checkpoints.
///
/// The first report is at the end of the first interval with a state
/// change; then one comes at every boundary, changes or not, as long as
/// some user is in a counted state or a later change is known. A boundary
/// with no users counted and no change known after it waits: at the end
/// of the input it is not reported, so the last report is the end of the
/// interval in which the last user left. An idle stretch longer than
/// [`MAX_IDLE_REPORTS`] intervals is cut to its last ones.
///
/// # Examples
/// ```
/// use keyflow_jobs::behaviour::{Measure, Series, UserState};
/// use keyflow_operators::rate_alert::{Percent, RateAlert, RateWatch};
///
/// let watch = RateWatch::new(RateAlert { rise: Percent::whole(100), min: 10 }, 360, 4)?;
/// let mut series = Series::new(10, watch);
/// series.add(20, Measure::Flow(UserState::None, UserState::Landed), 3);
/// series.add(50, Measure::Flow(UserState::Landed, UserState::Gone), 3);
/// let mut out = Vec::new();
/// series.emit(|_| true, true, 0, &mut out);
/// let lines: Vec<_> = out.iter().map(|r| (r.t, r.populations[0])).collect();
/// assert_eq!(lines, vec![(20, 3), (30, 3), (40, 3), (50, 0)]);
/// # Ok::<(), keyflow_operators::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    resolution: u64,
    /// Tallies not yet reported, by the boundary ending their interval.
    tallies: BTreeMap<EventTime, Tally>,
    /// The next boundary to report, once the first is known.
    next: Option<EventTime>,
    /// Users per counted state as of the last report.
    populations: [u64; 4],
    /// The latest boundary known to end an interval with changes.
    last_flow: Option<EventTime>,
    /// Event counts reported so far.
    totals: Tally,
    watch: RateWatch,
}

impl Series {
    /// An empty series of boundaries every `resolution` ms, alerting with
    /// `watch` (over the four counted states).
    pub fn new(resolution: u64, watch: RateWatch) -> Self {
        Series {
            resolution,
            tallies: BTreeMap::new(),
            next: None,
            populations: [0; 4],
            last_flow: None,
            totals: Tally::default(),
            watch,
        }
    }

    /// Adds `n` of `measure` to the interval ending at `boundary`.
    pub fn add(&mut self, boundary: EventTime, measure: Measure, n: u64) {
        let tally = self.tallies.entry(boundary).or_default();
        match measure {
            Measure::Flow(from, to) => {
                *tally.flows.entry((from, to)).or_default() += n;
                self.last_flow = Some(self.last_flow.map_or(boundary, |l| l.max(boundary)));
            }
            Measure::OnTime => tally.on_time += n,
            Measure::LateCounted => tally.late_counted += n,
            Measure::LateDropped => tally.late_dropped += n,
        }
    }

    /// The least boundary that may still be reported, if any is pending.
    pub fn pending_from(&self) -> Option<EventTime> {
        let first = self.tallies.keys().next().copied();
        match (self.next, first) {
            (Some(n), Some(f)) => Some(n.min(f)),
            (n, f) => n.or(f),
        }
    }

    /// Reports, in order, every boundary whose interval is `complete` (all
    /// its tallies are in), stamping each with `now_ms` for its delay.
    /// `ended` says that no tally will come any more: then the series ends
    /// after the last change.
    pub fn emit(
        &mut self,
        complete: impl Fn(EventTime) -> bool,
        ended: bool,
        now_ms: i64,
        out: &mut Vec<Report>,
    ) {
        if self.next.is_none() {
            let first = self
                .tallies
                .iter()
                .find(|(_, t)| !t.flows.is_empty())
                .map(|(b, _)| *b);
            match first {
                Some(b) if complete(b) => self.next = Some(b),
                _ => return,
            }
        }
        while let Some(t) = self.next {
            if !complete(t) {
                break;
            }
            let changes = self.tallies.get(&t).is_some_and(|x| !x.flows.is_empty());
            let later = self.last_flow.is_some_and(|l| l > t);
            let idle = self.populations.iter().all(|n| *n == 0);
            if idle && !changes && later {
                if let Some(to) = self.cut_idle(t) {
                    self.next = Some(to);
                    continue;
                }
            }
            if !changes && !later && (idle || ended) {
                // Nobody is active and no change is known after `t`: the
                // series ends here unless more changes come. (At the end of
                // the input every user has left by the last change.)
                break;
            }
            // Counts of intervals before the first report join it.
            let below = take_below(&mut self.tallies, t.saturating_add(1));
            let mut flows = BTreeMap::new();
            for (_, tally) in below {
                self.totals.add_counts(&tally);
                for (pair, n) in tally.flows {
                    *flows.entry(pair).or_default() += n;
                }
            }
            // All changes of the interval at once: within it, a user may
            // leave a state before the change that brought it there.
            let mut delta = [0i128; 4];
            for (&(from, to), &n) in &flows {
                if let Some(i) = from.counted_index() {
                    delta[i] -= i128::from(n);
                }
                if let Some(i) = to.counted_index() {
                    delta[i] += i128::from(n);
                }
            }
            for (population, d) in self.populations.iter_mut().zip(delta) {
                *population = u64::try_from(i128::from(*population) + d).unwrap_or(0);
            }
            let alerts = self
                .watch
                .push(&self.populations)
                .into_iter()
                .map(|c| Alert {
                    state: UserState::COUNTED[c.series],
                    was: c.was,
                    now: c.now,
                })
                .collect();
            let totals = &self.totals;
            out.push(Report {
                t,
                populations: self.populations,
                flows: flows.into_iter().map(|((f, to), n)| (f, to, n)).collect(),
                alerts,
                quality: Quality {
                    received: totals.on_time + totals.late_counted + totals.late_dropped,
                    counted: totals.on_time + totals.late_counted,
                    late: totals.late_counted + totals.late_dropped,
                    dropped: totals.late_dropped,
                    delay_ms: now_ms.saturating_sub(t.min(i64::MAX as u64) as i64),
                },
            });
            self.next = Some(t.saturating_add(self.resolution));
        }
    }

    /// Where to go on from `t`, idle, when the next change is more than
    /// [`MAX_IDLE_REPORTS`] intervals away: that many intervals before it.
    fn cut_idle(&self, t: EventTime) -> Option<EventTime> {
        let (&change, _) = self
            .tallies
            .range(t.saturating_add(1)..)
            .find(|(_, x)| !x.flows.is_empty())?;
        let kept = MAX_IDLE_REPORTS.max(self.watch.window() as u64);
        let steps = (change - t) / self.resolution;
        if steps <= kept {
            return None;
        }
        tracing::warn!(
            "nobody active for {steps} intervals from {t} to {change}: reporting the last {kept} only"
        );
        Some(change - kept * self.resolution)
    }
}

/// Restores the series from the parts of a checkpoint: worker 0's holds
/// it, the others' are empty.
fn restore(parts: &[Vec<u8>], id: &str, fresh: Series) -> Result<Series> {
    for part in parts {
        let series: Option<Series> = decode(part, id)?;
        if let Some(series) = series {
            return Ok(series);
        }
    }
    Ok(fresh)
}

/// Gathers the window results of the tallies (at `end = boundary + delay`)
/// on worker 0 and reports every boundary there, at time `boundary +
/// delay`. Publishes the latest report's quality as gauges named
/// `<id>_delay_ms`, `_received`, `_counted`, `_late`, `_dropped` and
/// `_coverage_ppm`.
pub(crate) fn series<'scope>(
    results: EventStream<'scope, WindowResult<Measure, u64>>,
    ctx: &Arc<Context>,
    id: &str,
    delay: u64,
    fresh: Series,
) -> Result<EventStream<'scope, Report>> {
    let scope = results.scope();
    let index = scope.index();
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("behaviour series `{id}`"))?;
    // Only worker 0 keeps the series; the others' parts are empty.
    let mut me = match ckpt.as_ref() {
        Some(k) if k.restored_epoch().is_some() && index == 0 => {
            restore(k.restored_parts(), id, fresh)?
        }
        _ => fresh,
    };
    let gauges = [
        "delay_ms",
        "received",
        "counted",
        "late",
        "dropped",
        "coverage_ppm",
    ]
    .map(|g| ctx.metrics.gauge(&format!("{id}_{g}")));
    let id = id.to_string();
    let ctx = Arc::clone(ctx);
    Ok(results.unary_frontier(
        Exchange::new(|_: &(EventTime, WindowResult<Measure, u64>)| 0),
        &format!("Series({id})"),
        move |initial, _| {
            let mut hold: Option<Capability<EventTime>> = None;
            if index == 0 {
                if let Some(b) = me.pending_from() {
                    hold = Some(initial.delayed(&b.saturating_add(delay)));
                }
            }
            let mut waiting = BTreeMap::new();
            let mut reports = Vec::new();
            move |(input, frontier), output| {
                let gate = ckpt.as_mut().map(|k| k.clock().next());
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    if hold.as_ref().is_none_or(|h| *h.time() > time) {
                        hold = Some(cap.delayed(&time, 0));
                    }
                    let records = std::mem::take(data);
                    if gate.is_some_and(|next| time >= next) {
                        waiting.entry(time).or_insert_with(Vec::new).extend(records);
                    } else {
                        for (_, r) in records {
                            me.add(r.end.saturating_sub(delay), r.key, r.value);
                        }
                    }
                });
                let mut flush = |me: &mut Series,
                                 hold: &mut Option<Capability<EventTime>>,
                                 complete: &dyn Fn(EventTime) -> bool,
                                 ended: bool| {
                    me.emit(complete, ended, wall_clock_ms() as i64, &mut reports);
                    if let (Some(h), Some(last)) = (hold.as_ref(), reports.last()) {
                        let q = last.quality;
                        let values = [
                            q.delay_ms,
                            q.received as i64,
                            q.counted as i64,
                            q.late as i64,
                            q.dropped as i64,
                            (q.coverage() * 1e6).round() as i64,
                        ];
                        for (g, v) in gauges.iter().zip(values) {
                            g.store(v, Ordering::Relaxed);
                        }
                        let stamped = reports.drain(..).map(|r| (r.t.saturating_add(delay), r));
                        output.session(h).give_iterator(stamped);
                    }
                    reports.clear();
                    if let (Some(h), Some(b)) = (hold.as_mut(), me.pending_from()) {
                        let at = b.saturating_add(delay);
                        if *h.time() < at {
                            h.downgrade(&at);
                        }
                    }
                };
                if let Some(k) = ckpt.as_mut() {
                    for epoch in k.clock().passed_frontier(frontier) {
                        for (_, records) in take_below(&mut waiting, epoch) {
                            for (_, r) in records {
                                me.add(r.end.saturating_sub(delay), r.key, r.value);
                            }
                        }
                        flush(
                            &mut me,
                            &mut hold,
                            &|b| b.saturating_add(delay) < epoch,
                            false,
                        );
                        let part = if index == 0 { Some(&me) } else { None };
                        if let Err(e) = encode(&part).and_then(|b| k.save(epoch, b)) {
                            ctx.fail(e);
                            return;
                        }
                    }
                    let next = k
                        .clock()
                        .release_bound(frontier.frontier().first().copied());
                    for (_, records) in take_below(&mut waiting, next) {
                        for (_, r) in records {
                            me.add(r.end.saturating_sub(delay), r.key, r.value);
                        }
                    }
                }
                let ended = frontier.frontier().is_empty();
                flush(
                    &mut me,
                    &mut hold,
                    &|b| !frontier.less_equal(&b.saturating_add(delay)),
                    ended,
                );
                if ended || me.pending_from().is_none() {
                    hold = None;
                }
            }
        },
    ))
}
