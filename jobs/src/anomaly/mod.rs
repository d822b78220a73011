//! The anomaly job: every hour, the articles whose views today stray
//! furthest from their hourly baseline; every day, the baseline updated.
//!
//! **Hours and days.** Hours and days are UTC and aligned to the epoch: hour
//! `h` of day `D` is `[D + h*1h, D + (h+1)*1h)`. The job counts views per
//! article in tumbling one-hour windows on event time (late events are
//! dropped and counted in `late_dropped`; the source decides what is late).
//!
//! **Scored hours.** Hours are scored one after the other, from the first
//! hour that has views in the stream to the last one that has: an hour is
//! scored once progress has passed its end (and, for an hour without any
//! view, once a later hour is known to have views, so that all workers
//! agree). A bounded input (files) therefore scores every hour from its
//! first to its last hour with data, and nothing after.
//!
//! **Scores.** When hour `h` of day `D` is scored, every tracked article (in
//! the baseline, or seen on a scored day up to this hour) is compared on the
//! vectors `c_0..c_h` (its views in each hour of `D` so far, 0 where it had
//! none) and `a_0..a_h` (its baseline averages), in `f64`, summing in `j`
//! order:
//! - [`Metric::Canberra`] (default): `sum_j |c_j - a_j| / (|c_j| + |a_j|)`,
//!   a `0/0` term counting 0;
//! - [`Metric::BrayCurtis`]: `sum_j |c_j - a_j| / sum_j (c_j + a_j)`, 0 when
//!   the denominator is 0.
//!
//! Articles with volume `sum_j (c_j + a_j)` below `min_volume` are skipped.
//! The hour's record ([`AnomalyHour`]) lists the `top` best by score
//! descending, then project, then title; there is exactly one record per
//! scored hour, even when no article qualifies.
//!
//! **Daily update.** Once hour 23 of day `D` is scored, the day ends: `n <-
//! n + 1`, and for every tracked article and hour `a <- a + (x - a) / n`,
//! where `x` is its views in that hour of `D` (0 without views). An article
//! first seen on `D` joins with averages 0, as if it had no views on the n
//! earlier days. The updated averages score the next day and, with
//! `baseline_out`, are written there atomically (temp file, fsync, rename) at
//! each day's end. The first day folded must come after the baseline's last
//! day (otherwise the job fails, unless `refold_days` says to average it in
//! again); see [`check_fold_days`]. A day whose hour 23 is never scored (an input that stops
//! mid-day) is scored up to its last hour with data but not averaged in: its
//! missing hours would count as zero views. A stream that starts mid-day
//! scores that day from its first hour with data and averages it in at its
//! end, with no views in the hours before the stream began.
//!
//! **Workers.** Articles are sharded by [`keyflow_dataflow::stable_hash`];
//! each worker keeps only its articles of the baseline, scores them, and
//! sends its own best `top` to worker 0, which merges them. Results are the
//! same at any number of workers and processes.
//!
//! **Output.** [`AnomalyHour`] serializes as one JSON line per scored hour,
//! `{"day":"2016-08-02","hour":13,"top":[{"rank":1,"project":"en",
//! "title":"X","score":1.25}]}`, and displays as a small table for stdout.
//! [`anomaly`] shows a complete job; the baseline it starts from comes from
//! [`crate::baseline`].

mod operator;
mod output;
mod state;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::stable_hash;
use keyflow_operators::topk::GlobalTopK;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

pub use keyflow_operators::distance::Metric;
pub use operator::MAX_EMPTY_HOURS;
pub use output::{AnomalyEntry, AnomalyHour};

use crate::baseline::Baseline;
use crate::error::{Error, Result};
use crate::pageviews::{Article, PageView};
use operator::{score_hours, ScoreParams};
use state::{ScoredArticle, Shard};

/// The anomaly job's configuration.
#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    /// The distance between today's counts and the baseline.
    pub metric: Metric,
    /// Articles listed per hour; 0 lists every scored article.
    pub top: usize,
    /// Articles with `sum_j (c_j + a_j)` below this are not scored.
    pub min_volume: f64,
    /// The averages to compare with (read once, shared by the workers of a
    /// process; each keeps only its own articles).
    pub baseline: Arc<Baseline>,
    /// Where to write the updated baseline at each day's end.
    pub baseline_out: Option<PathBuf>,
    /// Fold a day that is not after the baseline's last day (one it already
    /// averages, or one in a gap of its history) as one more day, instead of
    /// failing. The baseline keeps no per-day values, so an earlier fold of
    /// the same day cannot be taken out: such a day then counts twice.
    pub refold_days: bool,
}

impl AnomalyConfig {
    /// Canberra, top 5, minimum volume 100, against `baseline`, with no
    /// baseline output.
    pub fn new(baseline: Arc<Baseline>) -> Self {
        AnomalyConfig {
            metric: Metric::Canberra,
            top: 5,
            min_volume: 100.0,
            baseline,
            baseline_out: None,
            refold_days: false,
        }
    }

    /// Checks the values, naming the first bad one. (The baseline's
    /// averages are checked by [`anomaly`], each worker its own.)
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use keyflow_jobs::anomaly::AnomalyConfig;
    /// use keyflow_jobs::baseline::Baseline;
    /// let config = AnomalyConfig { min_volume: -1.0, ..AnomalyConfig::new(Arc::new(Baseline::empty())) };
    /// assert!(config.validate().unwrap_err().to_string().contains("--min-volume -1"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if !self.min_volume.is_finite() || self.min_volume < 0.0 {
            return Err(Error::Config(format!(
                "--min-volume {} must be a finite number >= 0",
                self.min_volume
            )));
        }
        if let Some(path) = &self.baseline_out {
            if path.file_name().is_none() {
                return Err(Error::Config(format!(
                    "--baseline-out {} is not a file path",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Why folding `day` into a baseline whose last day is `last` is refused.
pub(crate) fn refold_error(day: EventTime, last: EventTime) -> String {
    let (day, last) = (
        crate::baseline::format_day(day),
        crate::baseline::format_day(last),
    );
    let why = if day == last {
        format!("day {day} is the baseline's last day")
    } else {
        format!("day {day} is before the baseline's last day {last}")
    };
    format!(
        "{why}: folding it in again would count it twice (or, in a gap of the history, out \
         of order). Score only later days, or pass --refold-days to average it in as one \
         more day anyway"
    )
}

/// Checks, before the job starts, the first day it would fold into
/// `baseline`, from the hours (starts, UTC ms) its input holds: with hours
/// from the first day's hour 23 on, that day is folded, and it must lie
/// after the baseline's last day unless `refold_days` is set. Later days
/// fold after it, in order. The job checks the same at each day's end, for
/// inputs whose hours cannot be known up front.
///
/// # Examples
/// ```
/// use keyflow_jobs::anomaly::check_fold_days;
/// use keyflow_jobs::baseline::Baseline;
/// const DAY: u64 = 86_400_000;
/// let mut base = Baseline::empty();
/// (base.days, base.first_day, base.last_day) = (1, Some(DAY), Some(DAY));
/// let hours = |day: u64, n: u64| (0..n).map(move |h| day * DAY + h * 3_600_000);
/// assert!(check_fold_days(&base, hours(2, 24), false).is_ok());
/// // Part of the baseline's last day is scored but never folded.
/// assert!(check_fold_days(&base, hours(1, 23), false).is_ok());
/// let err = check_fold_days(&base, hours(1, 24), false).unwrap_err().to_string();
/// assert!(err.contains("1970-01-02") && err.contains("--refold-days"), "{err}");
/// assert!(check_fold_days(&base, hours(1, 24), true).is_ok());
/// ```
pub fn check_fold_days(
    baseline: &Baseline,
    hours: impl IntoIterator<Item = EventTime>,
    refold_days: bool,
) -> Result<()> {
    let (Some(last), false) = (baseline.last_day, refold_days) else {
        return Ok(());
    };
    let mut span: Option<(EventTime, EventTime)> = None;
    for hour in hours {
        span = Some(span.map_or((hour, hour), |(lo, hi)| (lo.min(hour), hi.max(hour))));
    }
    let Some((first, latest)) = span else {
        return Ok(());
    };
    let day = first - first % DAY;
    if day <= last && latest >= day + 23 * HOUR {
        return Err(Error::Config(refold_error(day, last)));
    }
    Ok(())
}

/// The key the job tracks: generated articles become named ones, so that
/// they meet their baseline lines (which are always named).
fn named(article: Article) -> Article {
    match article {
        Article::Generated(_) => Article::named(article.project(), article.title()),
        named => named,
    }
}

/// Builds the anomaly job over `events`: one [`AnomalyHour`] per scored hour,
/// at the hour's end, from worker 0 (see the module docs for what is scored
/// and when). With `baseline_out` set, the updated baseline is written there
/// at each day's end.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::Captured;
/// use keyflow_jobs::anomaly::{anomaly, AnomalyConfig};
/// use keyflow_jobs::baseline::Baseline;
/// use keyflow_jobs::pageviews::{Article, PageView};
///
/// // Both articles usually get 10 views at 00:00-01:00 UTC.
/// let mut base = Baseline::empty();
/// base.days = 1;
/// base.first_day = Some(0);
/// base.last_day = Some(0);
/// for title in ["Calm", "Spike"] {
///     let mut hours = [0.0; 24];
///     hours[0] = 10.0;
///     base.keys.insert(Article::named("en", title), hours);
/// }
/// let config = AnomalyConfig { min_volume: 1.0, ..AnomalyConfig::new(Arc::new(base)) };
///
/// let out = Captured::new();
/// let sink = out.clone();
/// run(&RunConfig::threads(2), move |flow| {
///     // Day 1 (86_400_000 ms on): "Calm" gets 10 views, "Spike" 30.
///     let views = vec![(86_400_000, ("Calm", 10)), (86_400_000, ("Spike", 30))];
///     let input = IterSource::new("views", 1, move |_| {
///         views.clone().into_iter().map(|(ts, (t, n))| (ts, PageView::new(Article::named("en", t), n)))
///     });
///     let events = flow.source("views", input, &SourceConfig::default())?;
///     anomaly(events, &config)?.capture(&sink);
///     Ok(())
/// })
/// .unwrap();
/// let hours = out.sorted();
/// assert_eq!(hours.len(), 1);
/// let top: Vec<_> = hours[0].1.top.iter().map(|e| (e.title.as_str(), e.score)).collect();
/// // Canberra: |30 - 10| / (30 + 10) = 0.5; |10 - 10| / 20 = 0.
/// assert_eq!(top, vec![("Spike", 0.5), ("Calm", 0.0)]);
/// assert_eq!((hours[0].1.day.as_str(), hours[0].1.hour), ("1970-01-02", 0));
/// ```
pub fn anomaly<'scope>(
    events: Events<'scope, PageView>,
    config: &AnomalyConfig,
) -> Result<Events<'scope, AnomalyHour>> {
    config.validate()?;
    let flow = events.flow().clone();
    let ctx = flow.context();
    let (index, peers) = (flow.index(), flow.peers() as u64);
    let shard = Shard::from_baseline(&config.baseline, |article| {
        stable_hash(article) % peers == index as u64
    })
    .map_err(Error::Config)?;
    // Each worker checks its own articles: a NaN would make scores unordered.
    shard
        .check()
        .map_err(|reason| Error::Config(format!("the baseline cannot be used: {reason}")))?;
    let hourly = events
        .key_by(|view| (view.article, view.views))
        .window(WindowSpec::tumbling(HOUR)?)
        .sum("anomaly-hourly")
        .results
        .inner();
    // Every worker learns every hour end that has views somewhere: each
    // worker sends its hour ends to every worker (a broadcast, with
    // operators named for the job graph).
    let data_hours = hourly
        .clone()
        .unary(Pipeline, "AnomalyDataHours", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut ends: Vec<EventTime> = data.iter().map(|(t, _)| *t).collect();
                    ends.sort_unstable();
                    ends.dedup();
                    let to_all = ends
                        .into_iter()
                        .flat_map(|t| (0..peers).map(move |w| (t, w)));
                    output.session(&cap).give_iterator(to_all);
                });
            }
        })
        .unary(
            Exchange::new(|(_, w): &(EventTime, u64)| *w),
            "AnomalyHoursToAll",
            |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        output
                            .session(&cap)
                            .give_iterator(data.drain(..).map(|(t, _)| (t, ())));
                    });
                }
            },
        );
    let counts = flow
        .wrap(hourly)
        .map_named("ArticleCounts", |r| (named(r.key), r.value))
        .inner();
    let params = ScoreParams {
        metric: config.metric,
        min_volume: config.min_volume,
        top: config.top,
        snapshots: config.baseline_out.is_some(),
        refold: config.refold_days,
        report_partial: config.baseline_out.is_some() && index == 0,
    };
    let scored = score_hours(counts, data_hours, ctx, params, shard);
    if let Some(path) = &config.baseline_out {
        writer::write_baselines(scored.snapshots, ctx, path.clone());
    }
    let hours = flow
        .wrap(scored.scored)
        .top_k_ticked(
            "anomaly-top",
            flow.wrap(scored.ticks),
            config.top,
            ScoredArticle::cmp,
        )
        .map_named("AnomalyHour", move |top| AnomalyHour::from_top(top.t, top));
    Ok(hours)
}
