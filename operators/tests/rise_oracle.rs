//! Seeded oracle tests for rise detection and the global top-k: random,
//! out-of-order, partly late input at 1, 2 and 4 workers, compared boundary
//! by boundary (every passing key with its counts, and every tick) with a
//! brute-force recomputation.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::testing::Captured;
use keyflow_dataflow::Key;
use keyflow_operators::rise::{Rise, RiseConfig, RiseRule, RiseTick, Rising};
use keyflow_operators::topk::{GlobalTopK, TopK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

const OOO: u64 = 1_500;
const TOP: usize = 3;

type Predicate = dyn Fn(&[u64]) -> bool;

/// A key whose hash is coarse (eight keys share one), so that hash
/// collisions go through the whole pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Coarse(u32);

impl Hash for Coarse {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 / 8).hash(state);
    }
}

type Record<K> = (u64, (K, u64));

/// Random partitions: mostly increasing time with jitter inside the allowed
/// out-of-orderness, a few records far behind (late), gaps, ties, zero
/// weights, and ramps (keys 100..) whose weight steps up, or stays flat,
/// every second, so that every rule has keys to pass.
fn random_partitions(seed: u64, partitions: usize, per_partition: usize) -> Vec<Vec<Record<u32>>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..partitions)
        .map(|_| {
            // (time the record is read at, event time, key, weight)
            let mut rows: Vec<(u64, u64, u32, u64)> = Vec::new();
            let mut t = rng.gen_range(0..3_000u64);
            for _ in 0..per_partition {
                t += match rng.gen_range(0..200) {
                    0 => rng.gen_range(20_000..40_000), // a gap longer than the span
                    1..=20 => 0,                        // a tie
                    _ => rng.gen_range(0..120),
                };
                let ts = match rng.gen_range(0..100) {
                    0..=2 => t.saturating_sub(rng.gen_range(2_000..20_000)), // late
                    3..=40 => t.saturating_sub(rng.gen_range(0..OOO)),       // jitter
                    _ => t,
                };
                let key = if rng.gen_bool(0.3) {
                    rng.gen_range(0..4u32) // hot keys
                } else {
                    rng.gen_range(0..60u32)
                };
                let weight = if rng.gen_range(0..20) == 0 {
                    0
                } else {
                    rng.gen_range(1..4u64)
                };
                rows.push((t, ts, key, weight));
            }
            for _ in 0..per_partition / 100 {
                let key = rng.gen_range(100..110u32);
                let start = rng.gen_range(0..=t);
                let step = rng.gen_range(0..3u64);
                for i in 0..12u64 {
                    let at = start + i * 1_000 + rng.gen_range(0..1_000);
                    let ts = at.saturating_sub(rng.gen_range(0..OOO / 2));
                    rows.push((at, ts, key, 1 + i * step));
                }
            }
            rows.sort_by_key(|r| r.0);
            rows.into_iter()
                .map(|(_, ts, key, w)| (ts, (key, w)))
                .collect()
        })
        .collect()
}

/// The records a partition's source keeps on time (the rest are late and
/// dropped by the rise operator).
fn on_time<K: Clone>(partition: &[Record<K>]) -> (Vec<Record<K>>, u64) {
    let mut max_seen: Option<u64> = None;
    let mut kept = Vec::new();
    let mut late = 0;
    for (ts, kv) in partition {
        let wm = max_seen.map_or(0, |m| m.saturating_sub(OOO));
        if *ts < wm {
            late += 1;
        } else {
            max_seen = Some(max_seen.map_or(*ts, |m| m.max(*ts)));
            kept.push((*ts, kv.clone()));
        }
    }
    (kept, late)
}

struct Expected<K> {
    rising: Vec<(u64, Rising<K>)>,
    ticks: Vec<(u64, RiseTick)>,
    top: Vec<(u64, TopK<Rising<K>>)>,
}

/// The brute force: every boundary whose span holds weight, every key.
fn oracle<K: Key>(
    partitions: &[Vec<Record<K>>],
    config: &RiseConfig,
    pred: &Predicate,
) -> Expected<K> {
    let slide = config.slide;
    let span = config.window / slide * config.windows as u64;
    let mut panes: BTreeMap<K, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut boundaries = BTreeSet::new();
    for partition in partitions {
        for (ts, (key, w)) in on_time(partition).0 {
            if w == 0 {
                continue;
            }
            let p = ts / slide;
            *panes.entry(key).or_default().entry(p).or_default() += w;
            boundaries.extend(p + 1..=p + span);
        }
    }
    let mut expected = Expected {
        rising: Vec::new(),
        ticks: Vec::new(),
        top: Vec::new(),
    };
    for b in boundaries {
        let t = b * slide;
        let mut passing = Vec::new();
        for (key, key_panes) in &panes {
            let counts: Vec<u64> = (0..config.windows as u64)
                .map(|j| {
                    let hi = b as i64
                        - (config.windows as u64 - 1 - j) as i64 * (config.window / slide) as i64;
                    let lo = hi - (config.window / slide) as i64;
                    key_panes
                        .iter()
                        .filter(|(p, _)| (**p as i64) >= lo && (**p as i64) < hi)
                        .map(|(_, w)| *w)
                        .sum()
                })
                .collect();
            if counts.iter().any(|c| *c > 0) && counts[0] >= config.min_first && pred(&counts) {
                passing.push(Rising {
                    key: key.clone(),
                    t,
                    counts,
                });
            }
        }
        expected.ticks.push((
            t,
            RiseTick {
                t,
                trending: passing.len() as u64,
            },
        ));
        let mut ranked = passing.clone();
        ranked.sort_by(growth_order);
        ranked.truncate(TOP);
        expected.top.push((
            t,
            TopK {
                t,
                total: passing.len() as u64,
                top: ranked,
                update: false,
            },
        ));
        expected.rising.extend(passing.into_iter().map(|r| (t, r)));
    }
    expected.rising.sort();
    expected
}

/// Growth descending, then the newest count descending, then key.
fn growth_order<K: Ord>(a: &Rising<K>, b: &Rising<K>) -> std::cmp::Ordering {
    b.growth()
        .cmp(&a.growth())
        .then_with(|| b.last().cmp(&a.last()))
        .then_with(|| a.key.cmp(&b.key))
}

/// Runs rise (with `predicate` if given) and top-k on `workers` workers.
fn run_dataflow<K: Key + Send + Sync>(
    partitions: &[Vec<Record<K>>],
    config: RiseConfig,
    predicate: Option<fn(&[u64]) -> bool>,
    workers: usize,
) -> (Expected<K>, u64) {
    let rising = Captured::new();
    let ticks = Captured::new();
    let top = Captured::new();
    let (r, t, k) = (rising.clone(), ticks.clone(), top.clone());
    let data = Arc::new(partitions.to_vec());
    let ctx = Arc::new(keyflow_dataflow::run::Context::new(RunConfig::threads(
        workers,
    )));
    run_with_context(Arc::clone(&ctx), move |flow| {
        let (r, t, k) = (r.clone(), t.clone(), k.clone());
        let data = Arc::clone(&data);
        let src = IterSource::new("random", data.len(), move |p| data[p].clone().into_iter());
        let source_config = SourceConfig {
            max_out_of_orderness: OOO,
            idle_timeout: None,
            max_future: None,
            batch: 37,
            ..SourceConfig::default()
        };
        let events = flow.source("input", src, &source_config)?;
        let out = match predicate {
            Some(p) => events.rise_by("rise", config, p),
            None => events.rise("rise", config),
        };
        let rising = out.rising;
        let ranked = rising
            .clone()
            .top_k_ticked("top", out.ticks.clone(), TOP, growth_order);
        rising.capture(&r);
        out.ticks.capture(&t);
        ranked.capture(&k);
        Ok(())
    })
    .unwrap();
    let late = ctx.metrics.snapshot().late_dropped;
    // The rise step's own counters account for every late record it saw.
    let steps: std::collections::BTreeMap<_, _> = ctx.metrics.steps().into_iter().collect();
    assert_eq!((steps["rise"].late, steps["rise"].dropped), (late, late));
    assert_eq!(steps["top"].dropped, 0);
    (
        Expected {
            rising: rising.sorted(),
            ticks: ticks.sorted(),
            top: top.sorted(),
        },
        late,
    )
}

fn check<K: Key + Send + Sync>(
    partitions: Vec<Vec<Record<K>>>,
    config: RiseConfig,
    predicate: Option<fn(&[u64]) -> bool>,
) {
    let rule = config.rule;
    let pred: Box<Predicate> = match predicate {
        Some(p) => Box::new(p),
        None => Box::new(move |c: &[u64]| rule.holds(c)),
    };
    let expected = oracle(&partitions, &config, &*pred);
    let late: u64 = partitions.iter().map(|p| on_time(p).1).sum();
    assert!(!expected.ticks.is_empty());
    assert!(
        expected.rising.len() > 5,
        "too few passing keys to be a test: {}",
        expected.rising.len()
    );
    eprintln!(
        "{} boundaries ({} with none passing), {} passing keys, {late} late records",
        expected.ticks.len(),
        expected
            .ticks
            .iter()
            .filter(|(_, t)| t.trending == 0)
            .count(),
        expected.rising.len()
    );
    for workers in [1, 2, 4] {
        let (got, got_late) = run_dataflow(&partitions, config, predicate, workers);
        let what = format!("{config:?} at {workers} workers");
        assert_eq!(got.ticks, expected.ticks, "ticks, {what}");
        assert_eq!(got.rising, expected.rising, "rising keys, {what}");
        assert_eq!(got.top, expected.top, "top-k, {what}");
        assert_eq!(got_late, late, "late records, {what}");
    }
}

#[test]
fn default_rule_matches_the_oracle() {
    let config = RiseConfig {
        window: 3_000,
        slide: 1_000,
        windows: 4,
        ..RiseConfig::default()
    };
    check(random_partitions(7, 3, 2_500), config, None);
}

#[test]
fn strict_and_flat_rules_match_the_oracle() {
    let strict = RiseConfig {
        window: 2_000,
        slide: 500,
        windows: 3,
        rule: RiseRule::Strict,
        min_first: 2,
        ..RiseConfig::default()
    };
    check(random_partitions(11, 4, 1_500), strict, None);
    let flat = RiseConfig {
        window: 1_000,
        slide: 1_000,
        windows: 6,
        rule: RiseRule::AllowFlat,
        min_first: 1,
        ..RiseConfig::default()
    };
    check(random_partitions(12, 2, 2_000), flat, None);
}

#[test]
fn min_first_zero_reads_every_key_of_the_span() {
    let config = RiseConfig {
        window: 2_000,
        slide: 1_000,
        windows: 3,
        rule: RiseRule::AllowFlat,
        min_first: 0,
        ..RiseConfig::default()
    };
    check(random_partitions(21, 3, 1_500), config, None);
    // A custom predicate that passes series with an empty first window.
    let jump: fn(&[u64]) -> bool = |c| c[0] == 0 && c[2] >= 3;
    check(random_partitions(22, 3, 1_500), config, Some(jump));
}

#[test]
fn colliding_hashes_match_the_oracle() {
    let partitions: Vec<Vec<Record<Coarse>>> = random_partitions(31, 3, 2_000)
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|(ts, (k, w))| (ts, (Coarse(k), w)))
                .collect()
        })
        .collect();
    let config = RiseConfig {
        window: 2_000,
        slide: 1_000,
        windows: 3,
        ..RiseConfig::default()
    };
    check(partitions, config, None);
}

/// Plain top-k (no ticks) over random records, with ties under the
/// comparator, against sorting each time's on-time records.
#[test]
fn top_k_matches_the_oracle() {
    let partitions: Vec<Vec<Record<u32>>> = random_partitions(41, 3, 1_500)
        .into_iter()
        .map(|p| p.into_iter().map(|(ts, kv)| (ts / 100 * 100, kv)).collect())
        .collect();
    // Rank by weight descending only: ties are broken by the record's Ord.
    let cmp = |a: &(u32, u64), b: &(u32, u64)| b.1.cmp(&a.1);
    for k in [0, 5] {
        let mut by_time: BTreeMap<u64, Vec<(u32, u64)>> = BTreeMap::new();
        for partition in &partitions {
            for (ts, kv) in on_time(partition).0 {
                by_time.entry(ts).or_default().push(kv);
            }
        }
        let expected: Vec<_> = by_time
            .into_iter()
            .map(|(t, mut records)| {
                records.sort_by(|a, b| cmp(a, b).then(a.cmp(b)));
                let total = records.len() as u64;
                if k > 0 {
                    records.truncate(k);
                }
                (
                    t,
                    TopK {
                        t,
                        total,
                        top: records,
                        update: false,
                    },
                )
            })
            .collect();
        for workers in [1, 2, 4] {
            let out = Captured::new();
            let sink = out.clone();
            let data = Arc::new(partitions.clone());
            run(&RunConfig::threads(workers), move |flow| {
                let sink = sink.clone();
                let data = Arc::clone(&data);
                let src =
                    IterSource::new("random", data.len(), move |p| data[p].clone().into_iter());
                let config = SourceConfig {
                    max_out_of_orderness: OOO,
                    idle_timeout: None,
                    max_future: None,
                    batch: 53,
                    ..SourceConfig::default()
                };
                let top = flow.source("input", src, &config)?.top_k("top", k, cmp);
                top.capture(&sink);
                Ok(())
            })
            .unwrap();
            assert_eq!(out.sorted(), expected, "k = {k} at {workers} workers");
        }
    }
}
