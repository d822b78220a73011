//! The anomaly job's records: one per scored hour.

use std::cmp::Ordering;
use std::fmt;

use keyflow_dataflow::time::{EventTime, DAY, HOUR};
use keyflow_operators::topk::TopK;
use serde::{Deserialize, Serialize};

use super::state::ScoredArticle;
use crate::baseline::format_day;

/// One ranked article of an hour.
///
/// Serializes as `{"rank":1,"project":"en","title":"X","score":1.25}`.
/// Ordered (and equal) by rank, project, title, then score under
/// `f64::total_cmp`, so that it can go through sinks that sort.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyEntry {
    /// 1-based rank.
    pub rank: usize,
    /// Wikimedia domain code.
    pub project: String,
    /// Page title.
    pub title: String,
    /// The distance of the day's counts so far from the baseline.
    pub score: f64,
}

impl Ord for AnomalyEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.rank, &self.project, &self.title)
            .cmp(&(other.rank, &other.project, &other.title))
            .then_with(|| self.score.total_cmp(&other.score))
    }
}

impl PartialOrd for AnomalyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for AnomalyEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for AnomalyEntry {}

/// The result of one scored hour: the top articles by score.
///
/// Serializes as one JSON line:
/// `{"day":"2016-08-02","hour":13,"top":[{"rank":1,"project":"en","title":"X","score":1.25}]}`.
///
/// # Examples
/// ```
/// use keyflow_jobs::anomaly::{AnomalyEntry, AnomalyHour};
/// let hour = AnomalyHour {
///     day: "2016-08-02".into(),
///     hour: 13,
///     top: vec![AnomalyEntry { rank: 1, project: "en".into(), title: "X".into(), score: 1.25 }],
/// };
/// assert_eq!(
///     serde_json::to_string(&hour).unwrap(),
///     r#"{"day":"2016-08-02","hour":13,"top":[{"rank":1,"project":"en","title":"X","score":1.25}]}"#
/// );
/// assert_eq!(hour.end(), Some(1_470_146_400_000));
/// let table = [
///     "2016-08-02 13:00-14:00 UTC  1 anomaly",
///     "  rank  project  title         score",
///     "     1  en       X          1.250000",
/// ];
/// assert_eq!(hour.to_string(), table.join("\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AnomalyHour {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The hour of the day scored, 0..23: counts `c_0..c_hour` were compared.
    pub hour: u32,
    /// The best-ranked articles, best first.
    pub top: Vec<AnomalyEntry>,
}

impl AnomalyHour {
    /// The record of the hour ending at `end`, from its ranking.
    pub(crate) fn from_top(end: EventTime, top: TopK<ScoredArticle>) -> Self {
        let start = end - HOUR;
        AnomalyHour {
            day: format_day(start),
            hour: ((start % DAY) / HOUR) as u32,
            top: top
                .top
                .into_iter()
                .enumerate()
                .map(|(i, s)| AnomalyEntry {
                    rank: i + 1,
                    project: s.article.project().to_string(),
                    title: s.article.title().into_owned(),
                    score: s.score,
                })
                .collect(),
        }
    }

    /// The end of the scored hour (ms since the epoch, UTC), when `day` is
    /// a valid date.
    pub fn end(&self) -> Option<EventTime> {
        let mut parts = self.day.splitn(3, '-').map(str::parse::<u32>);
        let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let midnight = keyflow_dataflow::time::days_from_civil(y as i64, m, d)?;
        Some(midnight + (self.hour as u64 + 1) * HOUR)
    }
}

/// A small plain-text table: a title line, then a header and one line per
/// entry, with no line break at the end.
impl fmt::Display for AnomalyHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:00-{:02}:00 UTC  {} anomal{}",
            self.day,
            self.hour,
            self.hour + 1,
            self.top.len(),
            if self.top.len() == 1 { "y" } else { "ies" }
        )?;
        if self.top.is_empty() {
            return Ok(());
        }
        let pw = self
            .top
            .iter()
            .map(|e| e.project.len())
            .max()
            .unwrap_or(0)
            .max(7);
        let tw = self
            .top
            .iter()
            .map(|e| e.title.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        write!(
            f,
            "\n  {:>4}  {:<pw$}  {:<tw$}  {:>12}",
            "rank", "project", "title", "score"
        )?;
        for e in &self.top {
            write!(
                f,
                "\n  {:>4}  {:<pw$}  {:<tw$}  {:>12.6}",
                e.rank, e.project, e.title, e.score
            )?;
        }
        Ok(())
    }
}
