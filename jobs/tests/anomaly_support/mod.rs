//! Shared by the anomaly tests: a runner for the job, and an oracle that
//! recomputes its results with plain loops, independently of the job's code.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyflow_dataflow::metrics::MetricsSnapshot;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::source::Source;
use keyflow_dataflow::testing::Captured;
use keyflow_dataflow::time::{civil, DAY, HOUR};
use keyflow_jobs::anomaly::{anomaly, AnomalyConfig, AnomalyEntry, AnomalyHour, Metric};
use keyflow_jobs::baseline::Baseline;
use keyflow_jobs::pageviews::{Article, PageView};

/// Views per article, per hour start.
pub type Hours = BTreeMap<u64, BTreeMap<Article, u64>>;

/// Runs the anomaly job over the source `make` builds, on `workers`
/// threads; returns its hours in order and the metrics.
pub fn run_job<S, F>(
    workers: usize,
    make: F,
    config: &AnomalyConfig,
) -> (Vec<AnomalyHour>, MetricsSnapshot)
where
    S: Source<Item = PageView>,
    F: Fn() -> S + Send + Sync + 'static,
{
    let out: Captured<(u64, AnomalyHour)> = Captured::new();
    let sink = out.clone();
    let config = config.clone();
    let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
    run_with_context(Arc::clone(&ctx), move |flow| {
        let (sink, config) = (sink.clone(), config.clone());
        let src = make();
        let events = flow.source("input", src, &SourceConfig::default())?;
        let hours = anomaly(events, &config).map_err(|e| Error::External(e.to_string()))?;
        hours.capture(&sink);
        Ok(())
    })
    .expect("the anomaly job runs");
    let items = out.sorted();
    let times: BTreeSet<u64> = items.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), items.len(), "one record per scored hour");
    for (t, hour) in &items {
        assert_eq!(hour.end(), Some(*t), "{hour:?} travels at its end");
    }
    (
        items.into_iter().map(|(_, h)| h).collect(),
        ctx.metrics.snapshot(),
    )
}

/// Runs the anomaly job and writes its hours to `path` as JSON lines, the
/// way `keyflow run anomaly --out` does.
pub fn run_job_to_file<S, F>(
    workers: usize,
    make: F,
    config: &AnomalyConfig,
    path: &std::path::Path,
) where
    S: Source<Item = PageView>,
    F: Fn() -> S + Send + Sync + 'static,
{
    let config = config.clone();
    let path = path.to_path_buf();
    keyflow_dataflow::run::run(&RunConfig::threads(workers), move |flow| {
        let (config, path, src) = (config.clone(), path.clone(), make());
        let events = flow.source("input", src, &SourceConfig::default())?;
        let hours = anomaly(events, &config).map_err(|e| Error::External(e.to_string()))?;
        hours.sink("out", move || JsonLinesSink::create(&path))
    })
    .expect("the anomaly job runs");
}

fn canberra(c: &[f64], a: &[f64]) -> f64 {
    let mut s = 0.0;
    for j in 0..c.len() {
        let den = c[j].abs() + a[j].abs();
        if den != 0.0 {
            s += (c[j] - a[j]).abs() / den;
        }
    }
    s
}

fn bray_curtis(c: &[f64], a: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for j in 0..c.len() {
        num += (c[j] - a[j]).abs();
        den += c[j] + a[j];
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn day_string(ts: u64) -> String {
    let (y, m, d, ..) = civil(ts);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The job's results by direct computation: every hour from the first to
/// the last of `hours` is scored; a day is averaged in after its hour 23.
pub fn oracle(
    base: &Baseline,
    hours: &Hours,
    metric: Metric,
    top: usize,
    min_volume: f64,
) -> (Vec<AnomalyHour>, Baseline) {
    let mut base = base.clone();
    let mut out = Vec::new();
    let (Some(&first), Some(&last)) = (hours.keys().next(), hours.keys().next_back()) else {
        return (out, base);
    };
    let mut today: BTreeMap<Article, [f64; 24]> = BTreeMap::new();
    let mut start = first;
    while start <= last {
        let h = ((start % DAY) / HOUR) as usize;
        for (article, views) in hours.get(&start).into_iter().flatten() {
            today.entry(article.clone()).or_insert([0.0; 24])[h] += *views as f64;
        }
        let keys: BTreeSet<&Article> = base.keys.keys().chain(today.keys()).collect();
        let mut scored: Vec<(f64, &Article)> = Vec::new();
        for article in keys {
            let c = today.get(article).copied().unwrap_or([0.0; 24]);
            let a = base.keys.get(article).copied().unwrap_or([0.0; 24]);
            let volume: f64 = (0..=h).map(|j| c[j] + a[j]).sum();
            if volume < min_volume {
                continue;
            }
            let score = match metric {
                Metric::Canberra => canberra(&c[..=h], &a[..=h]),
                Metric::BrayCurtis => bray_curtis(&c[..=h], &a[..=h]),
            };
            scored.push((score, article));
        }
        scored.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap().then(x.1.cmp(y.1)));
        if top > 0 {
            scored.truncate(top);
        }
        out.push(AnomalyHour {
            day: day_string(start),
            hour: h as u32,
            top: scored
                .iter()
                .enumerate()
                .map(|(i, (score, a))| AnomalyEntry {
                    rank: i + 1,
                    project: a.project().to_string(),
                    title: a.title().into_owned(),
                    score: *score,
                })
                .collect(),
        });
        if h == 23 {
            let day = start - start % DAY;
            base.days += 1;
            let n = base.days as f64;
            let keys: BTreeSet<Article> = base.keys.keys().chain(today.keys()).cloned().collect();
            for article in keys {
                let x = today.get(&article).copied().unwrap_or([0.0; 24]);
                let a = base.keys.entry(article).or_insert([0.0; 24]);
                for j in 0..24 {
                    a[j] += (x[j] - a[j]) / n;
                }
            }
            base.first_day = Some(base.first_day.map_or(day, |f| f.min(day)));
            base.last_day = Some(base.last_day.map_or(day, |l| l.max(day)));
            today.clear();
        }
        start += HOUR;
    }
    (out, base)
}

/// Asserts that two runs rank the same articles with scores within 1e-9.
pub fn assert_same_hours(got: &[AnomalyHour], want: &[AnomalyHour]) {
    assert_eq!(got.len(), want.len(), "number of scored hours");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((&g.day, g.hour), (&w.day, w.hour));
        let names = |h: &AnomalyHour| -> Vec<(usize, String, String)> {
            h.top
                .iter()
                .map(|e| (e.rank, e.project.clone(), e.title.clone()))
                .collect()
        };
        assert_eq!(names(g), names(w), "ranking of {} hour {}", g.day, g.hour);
        for (ge, we) in g.top.iter().zip(&w.top) {
            assert!(
                (ge.score - we.score).abs() <= 1e-9,
                "{} hour {} {}: score {} != {}",
                g.day,
                g.hour,
                ge.title,
                ge.score,
                we.score
            );
        }
    }
}

/// Asserts two baselines hold the same days, articles and averages (1e-9).
pub fn assert_same_baseline(got: &Baseline, want: &Baseline) {
    assert_eq!(
        (got.days, got.first_day, got.last_day),
        (want.days, want.first_day, want.last_day)
    );
    assert_eq!(
        got.keys.keys().collect::<Vec<_>>(),
        want.keys.keys().collect::<Vec<_>>(),
        "tracked articles"
    );
    for (article, a) in &got.keys {
        let b = &want.keys[article];
        for h in 0..24 {
            assert!(
                (a[h] - b[h]).abs() <= 1e-9,
                "{article} hour {h}: {} != {}",
                a[h],
                b[h]
            );
        }
    }
}
