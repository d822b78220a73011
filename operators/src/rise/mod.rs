//! N-window rise detection: which keys' weights grew over the last N
//! disjoint windows, evaluated at every slide boundary.
//!
//! At every boundary `T` (a multiple of the slide, aligned to the Unix
//! epoch), once event-time progress reaches `T`, the operator sums each
//! key's weight over the N disjoint windows
//! `[T - N*window, T - (N-1)*window) ... [T - window, T)` into `c1..cN`
//! (a window without weight counts 0). A key *passes* when it has weight
//! somewhere in those windows, `c1 >= min_first`, and the rule (or a custom
//! predicate) holds. Passing keys come out as [`Rising`] records at time `T`.
//!
//! **Ticks.** A boundary `T` is *evaluated* when any key has weight in its
//! span `[T - N*window, T)`; every evaluated `T` gets exactly one
//! [`RiseTick`] with the number of keys that passed, 0 included, so a
//! consumer knows that `T` is complete. Boundaries whose span holds no
//! weight at all (a gap in the input longer than `N*window`) are not
//! evaluated and get no tick. [`crate::topk::GlobalTopK::top_k_ticked`]
//! takes the ticks, so it emits a ranking for every evaluated `T`.
//!
//! **Late records** (event time below the time they travel at, decided per
//! source partition) are dropped and counted in `late_dropped`; the operator
//! has no allowed lateness, since a boundary's result is final once emitted.
//! Records of weight 0 carry nothing and are ignored.
//!
//! **Cost.** Records are summed per key and pane on each worker before the
//! keyed exchange. Each key keeps only the panes of the span that hold
//! weight, and a boundary reads only the keys whose oldest pane lies in its
//! first window (with `min_first >= 1`; with `min_first == 0` every key of
//! the span is read). With a built-in rule and `min_first >= 1` it reads
//! only those of them whose panes spread far enough to reach the last
//! window, since such a rule needs weight in every window. See
//! [`RiseState`].

mod operator;
mod panes;
mod state;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use keyflow_dataflow::time::{EventTime, MINUTE};
use keyflow_dataflow::{Events, Key};
use serde::{Deserialize, Serialize};

pub use state::{RiseSnapshot, RiseState};

use crate::error::{Error, Result};
use state::Geometry;

/// The built-in rise rules over the window counts `c1..cN`.
///
/// None of them lets a count fall below `c1`, so with `min_first >= 1` a
/// passing key has weight in every window; the operator uses this to read
/// only keys whose panes spread from the first window to the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RiseRule {
    /// `c1 <= c2 <= ... <= cN` and `cN > c1`: never falling, and grown.
    #[default]
    NonDecreasing,
    /// `c1 < c2 < ... < cN`.
    Strict,
    /// `c1 <= c2 <= ... <= cN`; a flat series passes.
    AllowFlat,
}

impl RiseRule {
    /// Whether `counts` (`c1..cN`) satisfy the rule.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::rise::RiseRule;
    /// assert!(RiseRule::NonDecreasing.holds(&[1, 1, 2]));
    /// assert!(!RiseRule::NonDecreasing.holds(&[2, 2, 2]));
    /// assert!(!RiseRule::Strict.holds(&[1, 1, 2]));
    /// assert!(RiseRule::AllowFlat.holds(&[2, 2, 2]));
    /// ```
    pub fn holds(&self, counts: &[u64]) -> bool {
        let (Some(first), Some(last)) = (counts.first(), counts.last()) else {
            return false;
        };
        match self {
            RiseRule::NonDecreasing => counts.windows(2).all(|w| w[0] <= w[1]) && last > first,
            RiseRule::Strict => counts.windows(2).all(|w| w[0] < w[1]),
            RiseRule::AllowFlat => counts.windows(2).all(|w| w[0] <= w[1]),
        }
    }
}

impl FromStr for RiseRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "non-decreasing" | "default" => Ok(RiseRule::NonDecreasing),
            "strict" => Ok(RiseRule::Strict),
            "allow-flat" | "flat" => Ok(RiseRule::AllowFlat),
            other => Err(Error::Config(format!(
                "rise rule `{other}` is not one of: non-decreasing, strict, allow-flat"
            ))),
        }
    }
}

impl fmt::Display for RiseRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RiseRule::NonDecreasing => "non-decreasing",
            RiseRule::Strict => "strict",
            RiseRule::AllowFlat => "allow-flat",
        })
    }
}

/// Parameters of the rise operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiseConfig {
    /// Length of each of the N windows, in ms (default 10 minutes); a
    /// positive multiple of `slide`.
    pub window: u64,
    /// Distance between evaluated boundaries, in ms (default 1 minute).
    pub slide: u64,
    /// Number N of disjoint windows (default 6).
    pub windows: usize,
    /// The rule the counts must satisfy (default non-decreasing).
    pub rule: RiseRule,
    /// The least `c1` of a passing key (default 1).
    pub min_first: u64,
}

impl Default for RiseConfig {
    fn default() -> Self {
        RiseConfig {
            window: 10 * MINUTE,
            slide: MINUTE,
            windows: 6,
            rule: RiseRule::NonDecreasing,
            min_first: 1,
        }
    }
}

impl RiseConfig {
    /// `windows` disjoint windows of `window` ms, evaluated every `slide`
    /// ms, with the default rule (non-decreasing) and `min_first` 1; checked
    /// here, so a bad value fails where the job is declared.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::time::MINUTE;
    /// use keyflow_operators::rise::{RiseConfig, RiseRule};
    /// let config = RiseConfig::new(10 * MINUTE, MINUTE, 6).unwrap().with_rule(RiseRule::Strict);
    /// assert_eq!(config.rule, RiseRule::Strict);
    /// assert!(RiseConfig::new(90_000, MINUTE, 6).unwrap_err().to_string().contains("multiple"));
    /// ```
    pub fn new(window: u64, slide: u64, windows: usize) -> Result<Self> {
        let config = RiseConfig {
            window,
            slide,
            windows,
            ..RiseConfig::default()
        };
        config.validate().map(|()| config)
    }

    /// The same config with another rule.
    pub fn with_rule(self, rule: RiseRule) -> Self {
        RiseConfig { rule, ..self }
    }

    /// The same config with another least `c1` of a passing key.
    pub fn with_min_first(self, min_first: u64) -> Self {
        RiseConfig { min_first, ..self }
    }

    /// Checks the values, naming the first bad one.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::rise::RiseConfig;
    /// assert!(RiseConfig::default().validate().is_ok());
    /// let bad = RiseConfig { window: 90_000, slide: 60_000, ..Default::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("multiple"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.slide == 0 {
            return Err(Error::Config("rise slide 0 ms must be positive".into()));
        }
        if self.window == 0 || !self.window.is_multiple_of(self.slide) {
            return Err(Error::Config(format!(
                "rise window {} ms must be a positive multiple of the slide {} ms",
                self.window, self.slide
            )));
        }
        if self.windows == 0 {
            return Err(Error::Config("rise needs at least 1 window, not 0".into()));
        }
        let span = (self.window / self.slide).checked_mul(self.windows as u64);
        if span.is_none_or(|s| s > 1 << 30)
            || self.window.checked_mul(self.windows as u64).is_none()
        {
            return Err(Error::Config(format!(
                "rise span of {} windows of {} ms at slide {} ms is too long",
                self.windows, self.window, self.slide
            )));
        }
        Ok(())
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            slide: self.slide,
            per_window: self.window / self.slide,
            windows: self.windows,
        }
    }
}

/// A key that passed at boundary `t`, with its window counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rising<K> {
    /// The key.
    pub key: K,
    /// The boundary, in ms (also the record's event time).
    pub t: EventTime,
    /// `c1..cN`, oldest window first.
    pub counts: Vec<u64>,
}

impl<K: Ord> Rising<K> {
    /// `cN - c1` (0 if the counts fell).
    pub fn growth(&self) -> u64 {
        self.last().saturating_sub(self.first())
    }

    /// `c1`, the oldest window's count.
    pub fn first(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    /// `cN`, the newest window's count.
    pub fn last(&self) -> u64 {
        self.counts.last().copied().unwrap_or(0)
    }
}

/// The end of one evaluated boundary: how many keys passed at `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RiseTick {
    /// The boundary, in ms (also the record's event time).
    pub t: EventTime,
    /// How many keys passed at `t`, over all workers.
    pub trending: u64,
}

/// What the rise operator returns.
pub struct RiseOut<'scope, K> {
    /// Passing keys, at time `t` with event time `t`, on the worker that
    /// owns the key.
    pub rising: Events<'scope, Rising<K>>,
    /// One tick per evaluated boundary, at time `t`, on worker 0.
    pub ticks: Events<'scope, RiseTick>,
}

/// Extension trait: rise detection on a stream of `(key, weight)` events.
pub trait Rise<'scope, K: Key> {
    /// Detects keys whose weights rose over the last `config.windows`
    /// windows, by `config.rule`. `id` is the step's stable id.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    ///
    /// // Three 10 ms windows sliding by 10 ms; "up" grows 1, 2, 3.
    /// let views = vec![(0, ('u', 1)), (10, ('u', 2)), (15, ('f', 2)), (20, ('u', 3)), (25, ('f', 2))];
    /// let out = example(views, |views| {
    ///     let rise = views.rise("rise", RiseConfig::new(10, 10, 3)?);
    ///     Ok(rise.rising.map(|r| (r.key, r.counts)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(30, ('u', vec![1, 2, 3]))]);
    /// ```
    fn rise(self, id: &str, config: RiseConfig) -> RiseOut<'scope, K>;

    /// Like [`Rise::rise`] with a custom predicate over `c1..cN` in place of
    /// `config.rule`. Only keys with `c1 >= config.min_first` and some
    /// weight in the span are offered to it.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::rise::{Rise, RiseConfig};
    ///
    /// let views = vec![(0, (1u32, 2)), (0, (2, 3)), (5, (1, 4)), (5, (2, 4))];
    /// let out = example(views, |views| {
    ///     let doubled = views.rise_by("doubling", RiseConfig::new(5, 5, 2)?, |c| c[1] >= 2 * c[0]);
    ///     Ok(doubled.rising.map(|r| (r.key, r.counts)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, (1, vec![2, 4]))]);
    /// ```
    fn rise_by<P>(self, id: &str, config: RiseConfig, predicate: P) -> RiseOut<'scope, K>
    where
        P: Fn(&[u64]) -> bool + 'static;
}

impl<'scope, K: Key> Rise<'scope, K> for Events<'scope, (K, u64)> {
    #[track_caller]
    fn rise(self, id: &str, config: RiseConfig) -> RiseOut<'scope, K> {
        let rule = config.rule;
        let predicate = move |counts: &[u64]| rule.holds(counts);
        let step = self.flow().step(id);
        build(self, &step, config, true, predicate)
    }

    #[track_caller]
    fn rise_by<P>(self, id: &str, config: RiseConfig, predicate: P) -> RiseOut<'scope, K>
    where
        P: Fn(&[u64]) -> bool + 'static,
    {
        let step = self.flow().step(id);
        build(self, &step, config, false, predicate)
    }
}

/// Wires the three operators; `every_window` says that `predicate` fails
/// unless every window holds at least `c1`. Errors (a bad config, a damaged
/// checkpoint) are recorded on the dataflow, which then does not run.
fn build<'scope, K: Key, P>(
    events: Events<'scope, (K, u64)>,
    step: &str,
    config: RiseConfig,
    every_window: bool,
    predicate: P,
) -> RiseOut<'scope, K>
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let flow = events.flow().clone();
    if let Err(e) = config.validate() {
        flow.fail(e.into());
        return RiseOut {
            rising: flow.empty(),
            ticks: flow.empty(),
        };
    }
    let ctx = Arc::clone(flow.context());
    let geo = config.geometry();
    let partials = operator::pre_aggregate(events.inner(), &ctx, step, geo.slide);
    let panes = operator::rise_panes(
        partials,
        &ctx,
        step,
        geo,
        config.min_first,
        every_window,
        predicate,
    );
    match panes {
        Ok((rising, local_ticks)) => RiseOut {
            rising: flow.wrap(rising),
            ticks: flow.wrap(operator::gather_ticks(local_ticks, step)),
        },
        Err(e) => {
            flow.fail(e);
            RiseOut {
                rising: flow.empty(),
                ticks: flow.empty(),
            }
        }
    }
}
