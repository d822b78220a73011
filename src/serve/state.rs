//! What the dashboard shows, as the job's sinks hand it over, and the
//! job's health read from its metrics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::Context;
use keyflow::dataflow::time::wall_clock_ms;
use keyflow::jobs::anomaly::AnomalyHour;
use keyflow::jobs::trending::TrendingMinute;
use serde::Serialize;

/// How many scored hours the anomaly panel and `/api/anomaly` keep.
pub const ANOMALY_HOURS: usize = 24;

/// The trending results seen so far.
#[derive(Debug, Default, Clone)]
pub struct Trending {
    /// The latest evaluated minute (possibly with nothing trending).
    pub latest: Option<TrendingMinute>,
    /// The latest minute that had trending articles: what the page lists,
    /// so that the list stays when the input ends with empty minutes.
    pub shown: Option<TrendingMinute>,
}

impl Trending {
    /// Takes the next minute written by the job (minutes come in time
    /// order; an update re-emits a minute already seen).
    pub fn take(&mut self, minute: &TrendingMinute) {
        if self.latest.as_ref().is_none_or(|l| minute.t >= l.t) {
            self.latest = Some(minute.clone());
        }
        if minute.trending > 0 && self.shown.as_ref().is_none_or(|s| minute.t >= s.t) {
            self.shown = Some(minute.clone());
        }
    }
}

/// A count of events at one moment, for the events/s rate.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    events: u64,
}

/// Everything the server reads: the job's context and what its sinks
/// wrote. Shared between the job's sinks and the server thread.
pub struct Shared {
    /// The job's name, as `keyflow run` knows it.
    pub job: String,
    /// The running job's metrics and graph.
    pub ctx: Arc<Context>,
    trending: Mutex<Option<Trending>>,
    anomaly: Mutex<Option<BTreeMap<(String, u32), AnomalyHour>>>,
    samples: Mutex<VecDeque<Sample>>,
    finished: AtomicBool,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The job's health, as `/api/health` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// The job's name.
    pub job: String,
    /// Whether the input has ended and the page shows the final state.
    pub finished: bool,
    /// Seconds since the job started.
    pub uptime_s: f64,
    /// Events read by the sources, late ones included.
    pub events: u64,
    /// Events read per second over the last few seconds (0 once the input
    /// has ended).
    pub events_per_s: f64,
    /// The highest source watermark (ms since the epoch, UTC); 0 before any.
    pub watermark: u64,
    /// Wall-clock time minus the watermark, in seconds; `None` before any.
    pub watermark_lag_s: Option<f64>,
    /// Late records: dropped or sent to a side output.
    pub late: u64,
    /// Malformed records skipped.
    pub bad: u64,
    /// Records too far ahead of the watermark, rejected.
    pub future: u64,
}

impl Shared {
    /// The state of job `job` running with `ctx`, with no panels until
    /// [`Shared::show_trending`] or [`Shared::show_anomaly`].
    pub fn new(job: &str, ctx: &Arc<Context>) -> Shared {
        Shared {
            job: job.to_string(),
            ctx: Arc::clone(ctx),
            trending: Mutex::new(None),
            anomaly: Mutex::new(None),
            samples: Mutex::new(VecDeque::new()),
            finished: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Adds the trending panel (every worker asks; once is enough).
    pub fn show_trending(&self) {
        lock(&self.trending).get_or_insert_with(Trending::default);
    }

    /// Adds the anomaly panel.
    pub fn show_anomaly(&self) {
        lock(&self.anomaly).get_or_insert_with(BTreeMap::new);
    }

    /// Takes trending minutes written by the job.
    pub fn take_minutes(&self, records: &[(EventTime, TrendingMinute)]) {
        if let Some(trending) = lock(&self.trending).as_mut() {
            for (_, minute) in records {
                trending.take(minute);
            }
        }
    }

    /// Takes scored hours written by the job, keeping the latest
    /// [`ANOMALY_HOURS`].
    pub fn take_hours(&self, records: &[(EventTime, AnomalyHour)]) {
        if let Some(hours) = lock(&self.anomaly).as_mut() {
            for (_, hour) in records {
                hours.insert((hour.day.clone(), hour.hour), hour.clone());
            }
            while hours.len() > ANOMALY_HOURS {
                hours.pop_first();
            }
        }
    }

    /// The trending results, if the job has a trending panel.
    pub fn trending(&self) -> Option<Trending> {
        lock(&self.trending).clone()
    }

    /// The kept scored hours, oldest first, if the job has an anomaly panel.
    pub fn anomaly(&self) -> Option<Vec<AnomalyHour>> {
        lock(&self.anomaly)
            .as_ref()
            .map(|hours| hours.values().cloned().collect())
    }

    /// Marks the input as ended: the page then says it shows the final
    /// state.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Whether the input has ended.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Notes the event count now, keeping about three seconds of samples.
    pub fn sample(&self) {
        let events = self.ctx.metrics.cluster().totals.events;
        let mut samples = lock(&self.samples);
        let now = Instant::now();
        samples.push_back(Sample { at: now, events });
        while samples.len() > 2 && now.duration_since(samples[0].at).as_secs_f64() > 3.0 {
            samples.pop_front();
        }
    }

    /// Events per second between the oldest and the newest sample.
    fn rate(&self) -> f64 {
        let samples = lock(&self.samples);
        match (samples.front(), samples.back()) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.events - a.events) as f64 / b.at.duration_since(a.at).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// The job's health now.
    pub fn health(&self) -> Health {
        let m = self.ctx.metrics.cluster().totals;
        let watermark_lag_s =
            (m.watermark > 0).then(|| (wall_clock_ms() as f64 - m.watermark as f64) / 1000.0);
        Health {
            job: self.job.clone(),
            finished: self.finished(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            events: m.events,
            events_per_s: if self.finished() { 0.0 } else { self.rate() },
            watermark: m.watermark,
            watermark_lag_s,
            late: m.late(),
            bad: m.bad,
            future: m.future,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyflow::jobs::trending::TrendingEntry;

    fn minute(t: u64, trending: u64) -> TrendingMinute {
        let top = (0..trending)
            .map(|i| TrendingEntry {
                rank: i as usize + 1,
                project: "en".into(),
                title: format!("T{t}_{i}"),
                counts: vec![1, 2, 3, 4, 5, 6],
            })
            .collect();
        TrendingMinute {
            t,
            trending,
            top,
            update: false,
        }
    }

    #[test]
    fn the_list_stays_through_empty_minutes() {
        let mut trending = Trending::default();
        for (t, n) in [
            (60_000, 0),
            (120_000, 2),
            (180_000, 1),
            (240_000, 0),
            (300_000, 0),
        ] {
            trending.take(&minute(t, n));
        }
        assert_eq!(trending.latest.unwrap().t, 300_000);
        assert_eq!(trending.shown.unwrap().t, 180_000);
    }

    #[test]
    fn an_update_of_an_older_minute_does_not_replace_the_latest() {
        let mut trending = Trending::default();
        trending.take(&minute(180_000, 1));
        trending.take(&minute(120_000, 3));
        assert_eq!(trending.shown.unwrap().t, 180_000);
    }
}
