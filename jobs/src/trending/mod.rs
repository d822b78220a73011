//! The trending job: every minute, the articles whose views did not fall
//! across the six 10-minute windows of the last hour.
//!
//! The job counts views per article in minute panes on event time. At every
//! minute boundary `T`, once progress reaches `T`, the six disjoint windows
//! `[T-60m, T-50m) .. [T-10m, T)` give counts `c1..c6` (a missing window
//! counts 0). The default rule keeps articles with `c1 <= .. <= c6`,
//! `c6 > c1` and `c1 >= min_views`; `Strict` asks for strictly increasing
//! counts, `AllowFlat` is the original non-decreasing rule. Each minute
//! yields the number of trending articles and the top K, ranked by
//! `c6 - c1`, then `c6`, then project, then title. Each hour yields
//! per-article totals for `[H, H+1h)`.
//!
//! The rule itself is the reusable rise operator of `keyflow-operators`; this
//! module only wires it to pageviews.

mod hourly;
mod hourly_commit;

use std::sync::Arc;

use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::time::{HOUR, MINUTE};
use keyflow_operators::rise::{Rise, RiseConfig, RiseRule, Rising};
use keyflow_operators::topk::TopK;
use serde::{Deserialize, Serialize};

pub use hourly::{hourly_file_name, HourlyDumpSink};

use crate::error::{Error, Result};
use crate::pageviews::{Article, PageView};

/// Which series count as rising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RiseRuleArg {
    /// `c1 <= .. <= c6` and `c6 > c1`.
    #[default]
    NonDecreasing,
    /// `c1 < c2 < .. < c6`.
    Strict,
    /// `c1 <= .. <= c6` (flat series pass).
    AllowFlat,
}

/// The trending job's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingConfig {
    /// Length of each of the compared windows, in ms.
    pub window: u64,
    /// Step between evaluated boundaries, in ms.
    pub slide: u64,
    /// How many consecutive windows are compared.
    pub windows: usize,
    /// The comparison.
    pub rule: RiseRuleArg,
    /// Views the oldest window needs at least.
    pub min_views: u64,
    /// Entries listed per minute; 0 lists all.
    pub top: usize,
    /// What happens to late events.
    pub lateness: Lateness,
    /// Whether to compute the hourly per-article totals (skip them when
    /// nothing reads them).
    pub hourly: bool,
}

impl Default for TrendingConfig {
    fn default() -> Self {
        TrendingConfig {
            window: 10 * MINUTE,
            slide: MINUTE,
            windows: 6,
            rule: RiseRuleArg::NonDecreasing,
            min_views: 1,
            top: 10,
            lateness: Lateness::Drop,
            hourly: true,
        }
    }
}

impl TrendingConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.slide == 0 || self.window == 0 {
            return Err(Error::Config(format!(
                "window {} ms and slide {} ms must both be positive",
                self.window, self.slide
            )));
        }
        if !self.window.is_multiple_of(self.slide) {
            return Err(Error::Config(format!(
                "window {} ms must be a multiple of slide {} ms",
                self.window, self.slide
            )));
        }
        if self.windows < 2 {
            return Err(Error::Config(format!(
                "{} windows cannot show a rise; need at least 2",
                self.windows
            )));
        }
        Ok(())
    }
}

/// One listed article of a minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrendingEntry {
    /// 1-based rank.
    pub rank: usize,
    /// Wikimedia domain code.
    pub project: String,
    /// Page title.
    pub title: String,
    /// Views in the six windows, oldest first.
    pub counts: Vec<u64>,
}

/// The result of one evaluated minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct TrendingMinute {
    /// The boundary `T` (ms): the windows end at `T`.
    pub t: u64,
    /// How many articles trend at `T`.
    pub trending: u64,
    /// The best of them, ranked.
    pub top: Vec<TrendingEntry>,
    /// `true` when this re-emits `T` because of late events.
    #[serde(default)]
    pub update: bool,
}

// JSON leaves `update` out when false; bincode (between processes, in
// checkpoints) always writes it.
keyflow_dataflow::serialize_with_update!(TrendingMinute, [t, trending, top]);

/// The job's output streams.
pub struct TrendingStreams<'scope> {
    /// One record per evaluated minute.
    pub minutes: Events<'scope, TrendingMinute>,
    /// Per-article totals per hour (window results of a 1-hour tumbling sum).
    pub hourly: Events<'scope, WindowResult<Article, u64>>,
    /// Late events (only with [`Lateness::SideOutput`]).
    pub late: Events<'scope, PageView>,
}

/// The trending ranking: `cN - c1` descending, then `cN` descending, then
/// the article ascending. `Less` means ranked higher.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::Article;
/// use keyflow_jobs::trending::trending_order;
/// use keyflow_operators::rise::Rising;
/// let rising = |title, counts| Rising { key: Article::named("en", title), t: 0, counts };
/// let (a, b, c) = (rising("a", vec![1, 5]), rising("b", vec![2, 6]), rising("c", vec![0, 4]));
/// let mut all = vec![c.clone(), b.clone(), a.clone()];
/// all.sort_by(trending_order);
/// assert_eq!(all, vec![b, a, c]);
/// ```
pub fn trending_order(a: &Rising<Article>, b: &Rising<Article>) -> std::cmp::Ordering {
    b.growth()
        .cmp(&a.growth())
        .then_with(|| b.last().cmp(&a.last()))
        .then_with(|| a.key.cmp(&b.key))
}

impl TrendingConfig {
    fn rise_config(&self) -> RiseConfig {
        RiseConfig {
            window: self.window,
            slide: self.slide,
            windows: self.windows,
            rule: match self.rule {
                RiseRuleArg::NonDecreasing => RiseRule::NonDecreasing,
                RiseRuleArg::Strict => RiseRule::Strict,
                RiseRuleArg::AllowFlat => RiseRule::AllowFlat,
            },
            min_first: self.min_views,
            allowed_lateness: match self.lateness {
                Lateness::Allowed(d) => Some(d),
                Lateness::Drop | Lateness::SideOutput => None,
            },
        }
    }
}

/// Turns a ranking into the job's per-minute record.
fn minute_of(top: TopK<Rising<Article>>) -> TrendingMinute {
    TrendingMinute {
        t: top.t,
        trending: top.total,
        top: top
            .top
            .into_iter()
            .enumerate()
            .map(|(i, r)| TrendingEntry {
                rank: i + 1,
                project: r.key.project().to_string(),
                title: r.key.title().into_owned(),
                counts: r.counts,
            })
            .collect(),
        update: top.update,
    }
}

/// The per-minute ranking from the rise operator and its top-k (which,
/// under allowed lateness, re-ranks the minutes late events change).
fn ranked_minutes<'scope>(
    events: Events<'scope, PageView>,
    config: &TrendingConfig,
) -> Events<'scope, TrendingMinute> {
    events
        .map_named("ArticleViews", |view| (view.article, view.views))
        .rise("trending-rise", config.rise_config())
        .top_k("trending-top", config.top, trending_order)
        .map_named("TrendingMinute", minute_of)
}

/// Builds the trending job over `events`.
///
/// Late events (older than their partition's watermark) are split off first
/// and handled once, by the configured policy, so that the minute ranking
/// and the hourly totals agree on which events count.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::Captured;
/// use keyflow_jobs::pageviews::{Article, PageView};
/// use keyflow_jobs::trending::{trending, TrendingConfig};
///
/// let out = Captured::new();
/// let into = out.clone();
/// run(&RunConfig::threads(2), move |flow| {
///     // "Rising" gets 1, 2, .., 6 views in six consecutive 10-minute windows.
///     let views: Vec<_> = (0..6u64)
///         .flat_map(|w| (0..=w).map(move |i| (w * 10 * MINUTE + i, PageView::new(Article::named("en", "Rising"), 1))))
///         .collect();
///     let input = IterSource::new("views", 1, move |_| views.clone().into_iter());
///     let events = flow.source("views", input, &SourceConfig::default())?;
///     trending(events, &TrendingConfig::default())?.minutes.capture(&into);
///     Ok(())
/// })
/// .unwrap();
/// let minutes = out.sorted();
/// let at_hour = minutes.iter().find(|(_, m)| m.t == HOUR).unwrap();
/// assert_eq!(at_hour.1.trending, 1);
/// assert_eq!(at_hour.1.top[0].counts, vec![1, 2, 3, 4, 5, 6]);
/// ```
pub fn trending<'scope>(
    events: Events<'scope, PageView>,
    config: &TrendingConfig,
) -> Result<TrendingStreams<'scope>> {
    config.validate()?;
    let flow = events.flow().clone();
    if config.lateness == Lateness::Drop && !config.hourly {
        // The rise operator drops and counts late events itself; with no
        // second consumer there is nothing to split.
        return Ok(TrendingStreams {
            minutes: ranked_minutes(events, config),
            hourly: flow.empty(),
            late: flow.empty(),
        });
    }
    let (on_time, late) = events.clone().split_late();
    let counter = Arc::clone(flow.context());
    let (minutes, hourly_input, late_out) = match config.lateness {
        Lateness::Drop | Lateness::SideOutput => {
            let side = config.lateness == Lateness::SideOutput;
            let late = late.inspect(move |_, _| {
                let m = &counter.metrics;
                Metrics::add(if side { &m.late_side } else { &m.late_dropped }, 1)
            });
            let late_out = if side { late } else { late.filter(|_| false) };
            (ranked_minutes(on_time.clone(), config), on_time, late_out)
        }
        // Late events within the allowed lateness update both outputs; the
        // rise and window operators apply the policy themselves.
        Lateness::Allowed(_) => (
            ranked_minutes(events.clone(), config),
            events,
            late.filter(|_| false),
        ),
    };
    let hourly = if config.hourly {
        hourly_input
            .key_by(|view| (view.article, view.views))
            .window(WindowSpec::tumbling(HOUR)?)
            .lateness(config.lateness)
            .sum("hourly-totals")
            .results
    } else {
        flow.empty()
    };
    Ok(TrendingStreams {
        minutes,
        hourly,
        late: late_out,
    })
}
