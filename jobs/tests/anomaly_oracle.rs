//! The anomaly and baseline jobs on generated traffic with planted
//! anomalies, checked against a direct computation (seeded, so repeatable).

mod anomaly_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anomaly_support::{assert_same_baseline, assert_same_hours, oracle, run_job, Hours};
use keyflow_dataflow::run::RunConfig;
use keyflow_dataflow::source::{BadInputPolicy, IterSource};
use keyflow_dataflow::time::{DAY, HOUR};
use keyflow_jobs::anomaly::{AnomalyConfig, AnomalyHour, Metric};
use keyflow_jobs::baseline::{run_baseline, Baseline, BaselineConfig};
use keyflow_jobs::pageviews::{Article, InputFormat, PageView};
use rand::{Rng, SeedableRng};

/// 2024-01-01, the first day of history.
const D0: u64 = 1_704_067_200_000;
const HISTORY_DAYS: u64 = 3;

fn art(title: &str) -> Article {
    Article::named("en", title)
}

/// Views of every article in every hour of days `0..days` after `D0`:
/// steady articles with a daily profile and ±10% noise, tiny ones, and the
/// planted anomalies of days 3 and 4.
fn traffic(days: u64) -> Hours {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut hours = Hours::new();
    for d in 0..days {
        for h in 0..24u64 {
            let start = D0 + d * DAY + h * HOUR;
            let profile = 1.0 + 0.5 * (h as f64 * std::f64::consts::PI / 12.0).sin();
            let slot = hours.entry(start).or_default();
            for i in 0..200u64 {
                let rate = 20.0 + ((i * 37) % 400) as f64;
                let noise = rng.gen_range(-0.1..0.1);
                slot.insert(
                    art(&format!("Steady_{i:03}")),
                    (rate * profile * (1.0 + noise)).round() as u64,
                );
            }
            for i in 0..40u64 {
                let v = rng.gen_range(0..3u64);
                if v > 0 {
                    slot.insert(Article::named("de", format!("Tiny_{i:02}")), v);
                }
            }
            let spike = if d == 3 && h >= 8 { 20.0 } else { 1.0 };
            slot.insert(
                art("Planted_Spike"),
                (100.0 * profile * spike).round() as u64,
            );
            if !(d == 4 && h >= 5) {
                slot.insert(art("Planted_Drop"), (150.0 * profile).round() as u64);
            }
            if d == 4 && h >= 12 {
                slot.insert(art("New_Burst"), 500);
            }
        }
    }
    hours.retain(|_, v| {
        v.retain(|_, n| *n > 0);
        true
    });
    hours
}

/// The hours as events: each count split into up to three events at random
/// instants of its hour, dealt over `partitions` partitions, each in time
/// order (so that nothing is late).
fn events(hours: &Hours, partitions: usize, seed: u64) -> Vec<Vec<(u64, PageView)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut parts = vec![Vec::new(); partitions];
    for (start, views) in hours {
        for (article, &n) in views {
            let pieces = (1 + n % 3).min(n);
            for p in 0..pieces {
                let v = n / pieces + u64::from(p < n % pieces);
                let ts = start + rng.gen_range(0..HOUR);
                parts[rng.gen_range(0..partitions)].push((ts, PageView::new(article.clone(), v)));
            }
        }
    }
    for p in &mut parts {
        p.sort_by_key(|(ts, _)| *ts);
    }
    parts
}

type Parts = Arc<Vec<Vec<(u64, PageView)>>>;

fn source(
    parts: Parts,
) -> impl Fn() -> IterSource<PageView, std::vec::IntoIter<(u64, PageView)>> + Send + Sync {
    move || {
        let parts = Arc::clone(&parts);
        IterSource::new("generated", parts.len(), move |p| {
            parts[p].clone().into_iter()
        })
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keyflow-anomaly-oracle-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The history written as JSON lines, one file per day, and its baseline.
fn history_baseline(all: &Hours, dir: &std::path::Path) -> Baseline {
    let mut files = Vec::new();
    for d in 0..HISTORY_DAYS {
        let day: Hours = all
            .range(D0 + d * DAY..D0 + (d + 1) * DAY)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut text = String::new();
        for part in events(&day, 2, d) {
            for (ts, v) in part {
                let (p, t) = (
                    v.article.project().to_string(),
                    v.article.title().into_owned(),
                );
                text.push_str(&format!(
                    "{{\"project\":\"{p}\",\"title\":\"{t}\",\"ts\":{ts},\"views\":{}}}\n",
                    v.views
                ));
            }
        }
        let path = dir.join(format!("history-{d}.jsonl"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let config = BaselineConfig::new(files, InputFormat::Jsonl, dir.join("history.txt"));
    let summary = run_baseline(&RunConfig::threads(2), &config).unwrap();
    assert_eq!((summary.days, summary.bad), (HISTORY_DAYS, 0));
    Baseline::read(&dir.join("history.txt")).unwrap()
}

fn scored_days(all: &Hours, from: u64, to: u64) -> Hours {
    all.range(D0 + from * DAY..D0 + to * DAY)
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn leaders(hours: &[AnomalyHour], day: u64) -> Vec<String> {
    let day = keyflow_jobs::baseline::format_day(D0 + day * DAY);
    hours
        .iter()
        .filter(|h| h.day == day)
        .map(|h| h.top[0].title.clone())
        .collect()
}

#[test]
fn baseline_from_json_lines_is_the_mean_over_days() {
    let dir = temp_dir("history");
    let all = traffic(HISTORY_DAYS);
    let base = history_baseline(&all, &dir);
    let (_, direct) = oracle(&Baseline::empty(), &all, Metric::Canberra, 5, 100.0);
    assert_eq!(base.days, 3);
    assert_same_baseline(&base, &direct);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn planted_anomalies_rank_first_and_scores_match() {
    let dir = temp_dir("planted");
    let all = traffic(5);
    let base = Arc::new(history_baseline(&all, &dir));
    let stream = scored_days(&all, 3, 5);
    let parts: Parts = Arc::new(events(&stream, 3, 7));
    for metric in [Metric::Canberra, Metric::BrayCurtis] {
        let out = dir.join(format!("{metric}.txt"));
        let config = AnomalyConfig {
            metric,
            baseline_out: Some(out.clone()),
            ..AnomalyConfig::new(Arc::clone(&base))
        };
        let (want, want_base) = oracle(&base, &stream, metric, 5, 100.0);
        let (got, _) = run_job(2, source(Arc::clone(&parts)), &config);
        assert_eq!(got.len(), 48);
        assert_same_hours(&got, &want);
        let day3 = leaders(&got, 3);
        assert!(
            day3[8..].iter().all(|t| t == "Planted_Spike"),
            "{metric}: {day3:?}"
        );
        let day4 = leaders(&got, 4);
        match metric {
            Metric::Canberra => assert!(day4[5..].iter().all(|t| t == "Planted_Drop"), "{day4:?}"),
            Metric::BrayCurtis => assert!(day4[12..].iter().all(|t| t == "New_Burst"), "{day4:?}"),
        }
        // The file after the last day: the CMA over all five days.
        let updated = Baseline::read(&out).unwrap();
        assert_eq!(updated.days, 5);
        assert_same_baseline(&updated, &want_base);
        let (_, five_days) = oracle(&Baseline::empty(), &all, metric, 5, 100.0);
        assert_same_baseline(&updated, &five_days);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn results_and_baseline_files_are_the_same_at_any_worker_count() {
    let dir = temp_dir("workers");
    let all = traffic(5);
    let base = Arc::new(history_baseline(&all, &dir));
    let parts: Parts = Arc::new(events(&scored_days(&all, 3, 5), 4, 9));
    let mut runs = Vec::new();
    for workers in [1, 2, 4] {
        let out = dir.join(format!("w{workers}.txt"));
        let config = AnomalyConfig {
            top: 7,
            baseline_out: Some(out.clone()),
            ..AnomalyConfig::new(Arc::clone(&base))
        };
        let (hours, _) = run_job(workers, source(Arc::clone(&parts)), &config);
        runs.push((hours, std::fs::read(&out).unwrap()));
    }
    assert!(runs.windows(2).all(|w| w[0] == w[1]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_partial_last_day_is_scored_but_not_averaged_in() {
    let dir = temp_dir("partial");
    let all = traffic(5);
    let base = Arc::new(history_baseline(&all, &dir));
    // Day 3 whole, day 4 up to 13:59, and no views at all in day 3's 05:00.
    let mut stream = scored_days(&all, 3, 5);
    stream
        .retain(|start, _| *start < D0 + 4 * DAY + 14 * HOUR && *start != D0 + 3 * DAY + 5 * HOUR);
    let parts: Parts = Arc::new(events(&stream, 2, 11));
    let out = dir.join("partial.txt");
    let config = AnomalyConfig {
        baseline_out: Some(out.clone()),
        ..AnomalyConfig::new(Arc::clone(&base))
    };
    let (got, _) = run_job(2, source(Arc::clone(&parts)), &config);
    let (want, want_base) = oracle(&base, &stream, Metric::Canberra, 5, 100.0);
    assert_eq!(
        got.len(),
        24 + 14,
        "the empty hour is scored; nothing after 13:00 of day 4"
    );
    assert_same_hours(&got, &want);
    let updated = Baseline::read(&out).unwrap();
    assert_eq!((updated.days, updated.last_day), (4, Some(D0 + 3 * DAY)));
    assert_same_baseline(&updated, &want_base);
    // An hour is reported even when no article reaches the volume.
    let quiet = AnomalyConfig {
        min_volume: 1e12,
        ..AnomalyConfig::new(Arc::clone(&base))
    };
    let (got, _) = run_job(1, source(parts), &quiet);
    assert_eq!(got.len(), 38);
    assert!(got.iter().all(|h| h.top.is_empty()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn late_events_are_dropped_and_generated_articles_meet_their_baseline() {
    let mut base = Baseline::empty();
    base.days = 1;
    base.first_day = Some(D0);
    base.last_day = Some(D0);
    base.keys.insert(art("Article_0000005"), [100.0; 24]);
    let day = D0 + DAY;
    let part = vec![
        (day + 10 * HOUR, PageView::new(Article::Generated(5), 300)),
        (day + 11 * HOUR, PageView::new(Article::Generated(5), 100)),
        // Two hours behind the watermark: late, dropped and counted.
        (day + 9 * HOUR, PageView::new(Article::Generated(5), 1_000)),
        (day + 12 * HOUR, PageView::new(art("Article_0000005"), 100)),
    ];
    let parts: Parts = Arc::new(vec![part]);
    let config = AnomalyConfig {
        min_volume: 0.0,
        ..AnomalyConfig::new(Arc::new(base.clone()))
    };
    let (got, metrics) = run_job(2, source(parts), &config);
    assert_eq!(metrics.late_dropped, 1);
    let mut stream = Hours::new();
    for (h, v) in [(10, 300), (11, 100), (12, 100)] {
        stream.insert(
            day + h * HOUR,
            BTreeMap::from([(art("Article_0000005"), v)]),
        );
    }
    let (want, _) = oracle(&base, &stream, Metric::Canberra, 5, 0.0);
    assert_same_hours(&got, &want);
    assert_eq!(
        got[0].top[0].score,
        10.0 + 0.5,
        "hours 0..9 without views, then |300-100|/400"
    );
}

#[test]
fn bad_configs_and_inputs_are_named() {
    let base = Arc::new(Baseline::empty());
    let nan = AnomalyConfig {
        min_volume: f64::NAN,
        ..AnomalyConfig::new(Arc::clone(&base))
    };
    assert!(nan
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--min-volume"));
    let dir = temp_dir("bad");
    let path = dir.join("views.jsonl");
    std::fs::write(
        &path,
        "{\"project\":\"en\",\"title\":\"A\",\"ts\":5,\"views\":2}\nnot json\n",
    )
    .unwrap();
    let mut config = BaselineConfig::new(vec![path.clone()], InputFormat::Jsonl, dir.join("b.txt"));
    let summary = run_baseline(&RunConfig::threads(1), &config).unwrap();
    assert_eq!(
        (summary.records, summary.bad, summary.keys, summary.days),
        (1, 1, 1, 1)
    );
    config.bad_input = BadInputPolicy::Fail;
    let err = run_baseline(&RunConfig::threads(1), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("views.jsonl:2"), "{err}");
    config.inputs = vec![dir.join("missing.jsonl")];
    let err = run_baseline(&RunConfig::threads(1), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.jsonl"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
