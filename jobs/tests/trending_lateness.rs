//! The trending job's minute ranking under allowed lateness: equal to the
//! normal path without late events, updates for late events within the
//! bound, drops beyond it, and a seeded oracle against a naive
//! recomputation, at 1, 2 and 4 workers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyflow_dataflow::metrics::MetricsSnapshot;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::testing::{capture_timed, Captured};
use keyflow_jobs::pageviews::{Article, GeneratorConfig, GeneratorSource, PageView};
use keyflow_jobs::trending::{
    trending, RiseRuleArg, TrendingConfig, TrendingEntry, TrendingMinute,
};
use keyflow_operators::rise::RiseRule;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `(timely time, event time, minute)`, sorted.
type Timed = Vec<(u64, u64, TrendingMinute)>;
type Partitions = Arc<Vec<Vec<(u64, PageView)>>>;

fn view(name: &str, views: u64) -> PageView {
    PageView::new(Article::named("en", name), views)
}

/// Runs the trending job over `parts` (one source partition each) with
/// out-of-orderness `ooo`, and returns its minutes and the metrics.
fn run_job(
    workers: usize,
    parts: &Partitions,
    config: &TrendingConfig,
    ooo: u64,
) -> (Timed, MetricsSnapshot) {
    let out = Captured::new();
    let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
    let (sink, parts, config) = (out.clone(), Arc::clone(parts), config.clone());
    run_with_context(Arc::clone(&ctx), move |flow| {
        let (sink, parts) = (sink.clone(), Arc::clone(&parts));
        let config = config.clone();
        let input = IterSource::new("views", parts.len(), move |p| parts[p].clone().into_iter());
        let source_config = SourceConfig {
            max_out_of_orderness: ooo,
            idle_timeout: None,
            max_future: None,
            ..SourceConfig::default()
        };
        let events = flow.source("input", input, &source_config)?;
        let out = trending(events, &config)?;
        capture_timed(out.minutes.inner(), &sink);
        Ok(())
    })
    .unwrap();
    (out.sorted(), ctx.metrics.snapshot())
}

fn small_config(lateness: Lateness) -> TrendingConfig {
    TrendingConfig {
        window: 20,
        slide: 10,
        windows: 3,
        top: 3,
        lateness,
        ..TrendingConfig::default()
    }
}

/// Random pageviews over a few articles; with `late_share > 0`, that share
/// of the events jumps back in time by up to `back` ms.
fn random_input(seed: u64, partitions: usize, late_share: f64, back: u64) -> Partitions {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let parts = (0..partitions)
        .map(|_| {
            let mut cursor = rng.gen_range(0..30u64);
            (0..rng.gen_range(60..160))
                .map(|_| {
                    cursor += rng.gen_range(0..6);
                    let ts = if rng.gen_bool(late_share) {
                        cursor.saturating_sub(rng.gen_range(0..back))
                    } else {
                        cursor
                    };
                    let name = names[rng.gen_range(0..names.len())];
                    (ts, view(name, rng.gen_range(1..4)))
                })
                .collect()
        })
        .collect();
    Arc::new(parts)
}

#[test]
fn without_late_events_it_equals_the_normal_path() {
    let configs = [
        small_config(Lateness::Drop),
        TrendingConfig {
            rule: RiseRuleArg::AllowFlat,
            min_views: 0,
            top: 0,
            ..small_config(Lateness::Drop)
        },
        TrendingConfig {
            window: 10,
            rule: RiseRuleArg::Strict,
            windows: 2,
            ..small_config(Lateness::Drop)
        },
    ];
    for (seed, base) in configs.iter().enumerate() {
        let parts = random_input(seed as u64, 4, 0.0, 1);
        let (expected, _) = run_job(1, &parts, base, 5);
        assert!(expected.iter().any(|(_, _, m)| m.trending > 0));
        for workers in [1, 2, 4] {
            let allowed = TrendingConfig {
                lateness: Lateness::Allowed(25),
                ..base.clone()
            };
            let (got, metrics) = run_job(workers, &parts, &allowed, 5);
            assert_eq!(got, expected, "config {base:?} at {workers} workers");
            assert_eq!(metrics.late_updates, 0);
        }
    }
}

/// The generator's minutes (1-minute slide, six 10-minute windows, Zipf
/// articles with planted bursts) under `config`.
fn generator_minutes(workers: usize, config: &TrendingConfig) -> Timed {
    let out = Captured::new();
    let (sink, config) = (out.clone(), config.clone());
    run(&RunConfig::threads(workers), move |flow| {
        let (sink, config) = (sink.clone(), config.clone());
        let input = GeneratorSource::new(GeneratorConfig {
            articles: 2_000,
            rate: 40,
            duration_ms: 75 * MINUTE,
            partitions: 3,
            bursts: 5,
            ..GeneratorConfig::default()
        })?;
        let events = flow.source("input", input, &SourceConfig::default())?;
        capture_timed(trending(events, &config)?.minutes.inner(), &sink);
        Ok(())
    })
    .unwrap();
    out.sorted()
}

#[test]
fn generated_traffic_ranks_as_the_normal_path() {
    let expected = generator_minutes(1, &TrendingConfig::default());
    assert!(expected.iter().any(|(_, _, m)| m.trending > 0));
    let allowed = TrendingConfig {
        lateness: Lateness::Allowed(5 * MINUTE),
        ..TrendingConfig::default()
    };
    assert_eq!(generator_minutes(2, &allowed), expected);
}

#[test]
fn a_late_event_within_the_bound_updates_and_one_beyond_is_dropped() {
    // Three 10 ms windows; `d` = 25 ms; the watermark is the last time seen.
    let script = vec![
        (5, view("up", 1)),
        (5, view("slow", 1)),
        (15, view("up", 2)),
        (15, view("slow", 1)),
        (25, view("up", 3)),
        (25, view("slow", 2)),
        (40, view("other", 1)),
        // Read at 40: boundary 30 is still open (30 + 25 > 40).
        (26, view("slow", 5)),
        (100, view("other", 1)),
        // Read at 100: its boundaries 10..=30 all closed at 55.
        (8, view("up", 1)),
    ];
    let parts: Partitions = Arc::new(vec![script]);
    let config = TrendingConfig {
        window: 10,
        ..small_config(Lateness::Allowed(25))
    };
    let entry = |rank, title: &str, counts: Vec<u64>| TrendingEntry {
        rank,
        project: "en".into(),
        title: title.into(),
        counts,
    };
    let mut outputs = Vec::new();
    for workers in [1, 2, 4] {
        let (got, metrics) = run_job(workers, &parts, &config, 0);
        let at30: Vec<_> = got.iter().filter(|(_, ts, _)| *ts == 30).collect();
        assert_eq!(at30.len(), 2, "{got:?}");
        assert_eq!((at30[0].0, at30[0].2.update), (30, false));
        assert_eq!(
            at30[0].2.top,
            vec![
                entry(1, "up", vec![1, 2, 3]),
                entry(2, "slow", vec![1, 1, 2])
            ]
        );
        assert_eq!((at30[1].0, at30[1].2.update), (40, true));
        assert_eq!(at30[1].2.trending, 2);
        assert_eq!(
            at30[1].2.top,
            vec![
                entry(1, "slow", vec![1, 1, 7]),
                entry(2, "up", vec![1, 2, 3])
            ]
        );
        // Boundary 40 folds its late batch (read at 40) into its first minute.
        let updates: Vec<_> = got.iter().filter(|(_, _, m)| m.update).collect();
        assert_eq!(updates.len(), 1);
        let ts: Vec<_> = got.iter().map(|(_, ts, _)| *ts).collect();
        assert_eq!(ts, vec![10, 20, 30, 30, 40, 50, 60, 70, 110, 120, 130]);
        // The hourly totals accept both late events (their hour is open).
        assert_eq!((metrics.late_dropped, metrics.late_updates), (1, 1));
        outputs.push(got);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

/// One event as the oracle sees it: its time, its read time if late, and
/// the view.
struct Seen {
    ts: u64,
    late_at: Option<u64>,
    view: PageView,
}

/// Replays each partition's watermark to tell late events and their times.
fn classify(parts: &Partitions, ooo: u64) -> Vec<Seen> {
    let mut seen = Vec::new();
    for part in parts.iter() {
        let mut max: Option<u64> = None;
        for (ts, view) in part {
            let wm = max.map_or(0, |m| m.saturating_sub(ooo));
            let late_at = (*ts < wm).then_some(wm);
            if late_at.is_none() {
                max = Some(max.map_or(*ts, |m| m.max(*ts)));
            }
            seen.push(Seen {
                ts: *ts,
                late_at,
                view: view.clone(),
            });
        }
    }
    seen
}

fn rule_of(config: &TrendingConfig) -> RiseRule {
    match config.rule {
        RiseRuleArg::NonDecreasing => RiseRule::NonDecreasing,
        RiseRuleArg::Strict => RiseRule::Strict,
        RiseRuleArg::AllowFlat => RiseRule::AllowFlat,
    }
}

/// The minute of boundary `t` over `events`, straight from the definition.
fn naive_minute(config: &TrendingConfig, t: u64, events: &[&Seen], at: u64) -> TrendingMinute {
    let span = config.window * config.windows as u64;
    let mut counts: BTreeMap<&Article, Vec<u64>> = BTreeMap::new();
    for e in events {
        let window = ((e.ts + span - t) / config.window) as usize;
        counts
            .entry(&e.view.article)
            .or_insert_with(|| vec![0; config.windows])[window] += e.view.views;
    }
    let mut passing: Vec<(&Article, Vec<u64>)> = counts
        .into_iter()
        .filter(|(_, c)| c[0] >= config.min_views && rule_of(config).holds(c))
        .collect();
    passing.sort_by(|(ka, a), (kb, b)| {
        let growth = |c: &[u64]| c[c.len() - 1].saturating_sub(c[0]);
        growth(b)
            .cmp(&growth(a))
            .then(b[b.len() - 1].cmp(&a[a.len() - 1]))
            .then(ka.cmp(kb))
    });
    let trending = passing.len() as u64;
    if config.top > 0 {
        passing.truncate(config.top);
    }
    TrendingMinute {
        t,
        trending,
        top: passing
            .into_iter()
            .enumerate()
            .map(|(i, (article, counts))| TrendingEntry {
                rank: i + 1,
                project: article.project().into(),
                title: article.title().into_owned(),
                counts,
            })
            .collect(),
        update: at > t,
    }
}

/// Every minute the job should emit, with the expected drop and update
/// counts of the ranking.
fn oracle(parts: &Partitions, config: &TrendingConfig, ooo: u64) -> (Timed, u64, u64) {
    let Lateness::Allowed(d) = config.lateness else {
        panic!(
            "the oracle models allowed lateness, not {:?}",
            config.lateness
        )
    };
    let span = config.window * config.windows as u64;
    let seen = classify(parts, ooo);
    let mut dropped = 0;
    // Boundary -> the events that count there.
    let mut counted: BTreeMap<u64, Vec<&Seen>> = BTreeMap::new();
    for e in &seen {
        let first = (e.ts / config.slide + 1) * config.slide;
        let mut any = false;
        for t in (first..=e.ts + span).step_by(config.slide as usize) {
            if e.late_at.is_none_or(|at| t > at || t + d > at) {
                counted.entry(t).or_default().push(e);
                any = true;
            }
        }
        dropped += u64::from(!any);
    }
    let mut out = Vec::new();
    for (t, events) in counted {
        // Emission times: `t` itself, unless only late batches read at or
        // after `t` count there; and every such batch's read time.
        let mut times = BTreeSet::new();
        for e in &events {
            match e.late_at {
                Some(at) if at >= t => times.insert(at),
                _ => times.insert(t),
            };
        }
        for at in times {
            let upto: Vec<&Seen> = events
                .iter()
                .copied()
                .filter(|e| e.late_at.is_none_or(|l| l <= at))
                .collect();
            out.push((at, t, naive_minute(config, t, &upto, at)));
        }
    }
    out.sort();
    let updates = out.iter().filter(|(_, _, m)| m.update).count() as u64;
    (out, dropped, updates)
}

#[test]
fn late_events_match_a_naive_recomputation() {
    let configs = [
        (small_config(Lateness::Allowed(40)), 3),
        (
            TrendingConfig {
                rule: RiseRuleArg::AllowFlat,
                min_views: 0,
                top: 0,
                ..small_config(Lateness::Allowed(15))
            },
            0,
        ),
        (
            TrendingConfig {
                window: 10,
                windows: 4,
                min_views: 2,
                ..small_config(Lateness::Allowed(0))
            },
            2,
        ),
        (small_config(Lateness::Allowed(1_000)), 5),
    ];
    for (seed, (config, ooo)) in configs.iter().enumerate() {
        for round in 0..3u64 {
            let parts = random_input(100 + 10 * seed as u64 + round, 4, 0.2, 120);
            let (expected, dropped, updates) = oracle(&parts, config, *ooo);
            // With d = 0 a late event can only count for boundaries ahead.
            let may_update = config.lateness != Lateness::Allowed(0);
            assert_eq!(updates > 0, may_update, "seed {seed} round {round}");
            for workers in [1, 2, 4] {
                let (got, metrics) = run_job(workers, &parts, config, *ooo);
                assert_eq!(
                    got, expected,
                    "config {config:?} round {round} at {workers} workers"
                );
                // Every event lies in the first hour, whose hourly window is
                // open: only the ranking drops or updates.
                assert_eq!(metrics.late_dropped, dropped);
                assert_eq!(metrics.late_updates, updates);
            }
        }
    }
}
