//! One worker's share of the anomaly job's state: its articles' baseline
//! averages and today's hourly counts, with the scoring and the daily
//! update. No timely code here, so that it can be tested directly.

use std::cmp::Ordering;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::time::EventTime;
use keyflow_operators::distance::{best_first, BestScores, Metric};
use keyflow_operators::moving_average::average_in;
use serde::{Deserialize, Serialize};

use crate::baseline::{Baseline, HOURS};
use crate::pageviews::Article;

/// One tracked article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tracked {
    /// `a_0..a_23`: the baseline averages.
    pub base: [f64; HOURS],
    /// `c_0..c_23`: today's views per hour so far.
    pub today: [u64; HOURS],
}

impl Tracked {
    fn new(base: [f64; HOURS]) -> Self {
        Tracked {
            base,
            today: [0; HOURS],
        }
    }
}

/// An article's score for one hour, ordered best first ([`best_first`]):
/// score descending, then article (project, then title) ascending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScoredArticle {
    /// The distance of today's counts from the baseline.
    pub score: f64,
    /// The article.
    pub article: Article,
}

impl Ord for ScoredArticle {
    fn cmp(&self, other: &Self) -> Ordering {
        best_first((self.score, &self.article), (other.score, &other.article))
    }
}

impl PartialOrd for ScoredArticle {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ScoredArticle {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ScoredArticle {}

/// A worker's articles, sent to the baseline writer at each day's end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShardSnapshot {
    /// Days averaged.
    pub days: u64,
    /// Oldest day averaged.
    pub first_day: Option<EventTime>,
    /// Newest day averaged.
    pub last_day: Option<EventTime>,
    /// The articles and their averages.
    pub keys: Vec<(Article, [f64; HOURS])>,
}

/// One worker's articles: those whose stable hash it owns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Shard {
    /// n: days averaged (the same on every worker).
    pub days: u64,
    /// Oldest day averaged.
    pub first_day: Option<EventTime>,
    /// Newest day averaged.
    pub last_day: Option<EventTime>,
    /// Every tracked article: in the baseline, or seen on a scored day.
    pub keys: StableMap<Article, Tracked>,
}

impl Shard {
    /// The articles of `baseline` for which `owns` holds. Running out of
    /// memory for them is an error that says so, rather than an abort.
    pub fn from_baseline(
        baseline: &Baseline,
        owns: impl Fn(&Article) -> bool,
    ) -> std::result::Result<Self, String> {
        let owned: Vec<_> = baseline.keys.keys().filter(|a| owns(a)).collect();
        let mut keys = StableMap::default();
        keys.try_reserve(owned.len()).map_err(|_| {
            format!(
                "out of memory while building the scoring table of {} baseline articles",
                owned.len()
            )
        })?;
        keys.extend(
            owned
                .into_iter()
                .map(|article| (article.clone(), Tracked::new(baseline.keys[article]))),
        );
        Ok(Shard {
            days: baseline.days,
            first_day: baseline.first_day,
            last_day: baseline.last_day,
            keys,
        })
    }

    /// Checks that every average is finite and non-negative.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (article, tracked) in &self.keys {
            if let Some(h) = tracked.base.iter().position(|a| !a.is_finite() || *a < 0.0) {
                return Err(format!(
                    "`{article}` hour {h}: average {} is not a finite non-negative number",
                    tracked.base[h]
                ));
            }
        }
        Ok(())
    }

    /// Adds `views` to today's count of `article` in `hour`. An article not
    /// tracked yet joins with zero averages: zero views on each earlier day.
    pub fn add(&mut self, article: Article, hour: usize, views: u64) {
        let tracked = self
            .keys
            .entry(article)
            .or_insert_with(|| Tracked::new([0.0; HOURS]));
        tracked.today[hour] = tracked.today[hour].saturating_add(views);
    }

    /// Scores every tracked article on hours `0..=hour`, skipping those with
    /// volume `sum_j (c_j + a_j)` below `min_volume`, and returns this
    /// worker's `k` best, best first (all when `k` is 0).
    pub fn score(
        &self,
        hour: usize,
        metric: Metric,
        min_volume: f64,
        k: usize,
    ) -> keyflow_operators::Result<Vec<ScoredArticle>> {
        let len = hour + 1;
        let mut best = BestScores::new(k);
        let mut c = [0.0; HOURS];
        for (article, tracked) in &self.keys {
            for (cj, &x) in c[..len].iter_mut().zip(&tracked.today[..len]) {
                *cj = x as f64;
            }
            if let Some(scored) =
                metric.score(article, &c[..len], &tracked.base[..len], min_volume)?
            {
                best.push(scored);
            }
        }
        Ok(best
            .into_sorted()
            .into_iter()
            .map(|scored| ScoredArticle {
                score: scored.score,
                article: scored.key.clone(),
            })
            .collect())
    }

    /// Ends the day starting at `day`: `n <- n + 1`, then for every tracked
    /// article and hour `a <- a + (x - a) / n` with x today's count (0
    /// without views); today's counts are cleared.
    pub fn end_day(&mut self, day: EventTime) {
        self.days += 1;
        for tracked in self.keys.values_mut() {
            let today = tracked.today.iter().map(|&x| x as f64);
            average_in(&mut tracked.base, today, self.days);
            tracked.today = [0; HOURS];
        }
        self.first_day = Some(self.first_day.map_or(day, |d| d.min(day)));
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
    }

    /// A copy of the shard's averages, for the baseline writer.
    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            days: self.days,
            first_day: self.first_day,
            last_day: self.last_day,
            keys: self
                .keys
                .iter()
                .map(|(article, tracked)| (article.clone(), tracked.base))
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
