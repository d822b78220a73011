//! Seeded oracle tests: random, out-of-order, partly late input through
//! tumbling, sliding and session windows at 1, 2 and 4 workers, compared
//! window by window with a naive recomputation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::testing::Captured;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OOO: u64 = 2_000;

type Record = (u64, (u32, u64));
type Results = Vec<(u64, WindowResult<u32, u64>)>;

/// Random partitions: mostly increasing time with jitter inside the allowed
/// out-of-orderness, a few records far behind (late), gaps, and ties.
fn random_partitions(seed: u64, partitions: usize, per_partition: usize) -> Vec<Vec<Record>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..partitions)
        .map(|_| {
            let mut t = rng.gen_range(0..5_000u64);
            (0..per_partition)
                .map(|_| {
                    t += match rng.gen_range(0..100) {
                        0 => rng.gen_range(20_000..60_000), // a gap
                        1..=10 => 0,                        // a tie
                        _ => rng.gen_range(0..700),
                    };
                    let ts = match rng.gen_range(0..100) {
                        0..=4 => t.saturating_sub(rng.gen_range(3_000..40_000)), // late
                        5..=40 => t.saturating_sub(rng.gen_range(0..OOO)),       // jitter
                        _ => t,
                    };
                    (ts, (rng.gen_range(0..12u32), rng.gen_range(1..10u64)))
                })
                .collect()
        })
        .collect()
}

/// Splits a partition's records the way its source does: on-time ones, and
/// late ones with the watermark they travel at.
fn split_late(partition: &[Record]) -> (Vec<Record>, Vec<(u64, Record)>) {
    let mut max_seen: Option<u64> = None;
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for &(ts, kv) in partition {
        let wm = max_seen.map_or(0, |m| m.saturating_sub(OOO));
        if ts < wm {
            late.push((wm, (ts, kv)));
        } else {
            max_seen = Some(max_seen.map_or(ts, |m| m.max(ts)));
            on_time.push((ts, kv));
        }
    }
    (on_time, late)
}

/// Window ends holding `ts` for windows of `size` starting every `slide`.
fn naive_ends(ts: u64, size: u64, slide: u64) -> Vec<u64> {
    // Every start s = k*slide with ts - size < s <= ts (starts below the
    // epoch included), reported with start clamped to 0.
    let mut ends = Vec::new();
    let mut k = (ts / slide) as i64;
    while k * slide as i64 > ts as i64 - size as i64 {
        ends.push((k * slide as i64 + size as i64) as u64);
        k -= 1;
    }
    ends
}

fn result(
    key: u32,
    start: u64,
    end: u64,
    value: u64,
    update: bool,
) -> (u64, WindowResult<u32, u64>) {
    (
        end,
        WindowResult {
            key,
            start,
            end,
            value,
            update,
        },
    )
}

/// What a grid window aggregation (sum of values) must emit.
fn naive_grid(parts: &[Vec<Record>], size: u64, slide: u64, lateness: Lateness) -> Results {
    let keep = match lateness {
        Lateness::Allowed(d) => d,
        _ => 0,
    };
    let mut on_time: Vec<Record> = Vec::new();
    let mut late: Vec<(u64, Record)> = Vec::new();
    for p in parts {
        let (o, l) = split_late(p);
        on_time.extend(o);
        late.extend(l);
    }
    // Value of (key, end) counting on-time records and late ones accepted at
    // or before stamp `upto`.
    let value_at = |key: u32, end: u64, upto: Option<u64>| -> u64 {
        let mut v = 0;
        for &(ts, (k, x)) in &on_time {
            if k == key && naive_ends(ts, size, slide).contains(&end) {
                v += x;
            }
        }
        if keep > 0 {
            for &(stamp, (ts, (k, x))) in &late {
                if k == key && naive_ends(ts, size, slide).contains(&end) {
                    let accepted_before = stamp < end;
                    let accepted_update =
                        upto.is_some_and(|u| stamp >= end && stamp <= u && stamp < end + keep);
                    if accepted_before || accepted_update {
                        v += x;
                    }
                }
            }
        }
        v
    };
    let mut windows = BTreeSet::new();
    for &(ts, (k, _)) in &on_time {
        for end in naive_ends(ts, size, slide) {
            windows.insert((k, end));
        }
    }
    let mut updates = BTreeSet::new();
    if keep > 0 {
        for &(stamp, (ts, (k, _))) in &late {
            for end in naive_ends(ts, size, slide) {
                if end > stamp {
                    windows.insert((k, end));
                } else if end + keep > stamp {
                    updates.insert((k, end, stamp));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (k, end) in windows {
        out.push(result(
            k,
            end.saturating_sub(size),
            end,
            value_at(k, end, None),
            false,
        ));
    }
    for (k, end, stamp) in updates {
        out.push(result(
            k,
            end.saturating_sub(size),
            end,
            value_at(k, end, Some(stamp)),
            true,
        ));
    }
    out.sort();
    out
}

/// What a session aggregation (sum of values, drop policy) must emit.
fn naive_sessions(parts: &[Vec<Record>], gap: u64) -> Results {
    let mut by_key: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for p in parts {
        for (ts, (k, x)) in split_late(p).0 {
            by_key.entry(k).or_default().push((ts, x));
        }
    }
    let mut out = Vec::new();
    for (k, mut recs) in by_key {
        recs.sort();
        let (mut start, mut last, mut sum) = (recs[0].0, recs[0].0, 0);
        for (ts, x) in recs {
            if ts >= last + gap {
                out.push(result(k, start, last + gap, sum, false));
                start = ts;
                sum = 0;
            }
            last = ts;
            sum += x;
        }
        out.push(result(k, start, last + gap, sum, false));
    }
    out.sort();
    out
}

struct Outcome {
    results: Results,
    late: Vec<(u64, (u32, u64))>,
    metrics: keyflow_dataflow::metrics::MetricsSnapshot,
}

fn run_windows(
    parts: &[Vec<Record>],
    workers: usize,
    spec: WindowSpec,
    lateness: Lateness,
) -> Outcome {
    let parts = Arc::new(parts.to_vec());
    let results = Captured::new();
    let late = Captured::new();
    let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
    let (r, l) = (results.clone(), late.clone());
    run_with_context(Arc::clone(&ctx), move |flow| {
        let parts = Arc::clone(&parts);
        let (r, l) = (r.clone(), l.clone());
        let input = IterSource::new("random", parts.len(), move |p| parts[p].clone().into_iter());
        let config = SourceConfig {
            max_out_of_orderness: OOO,
            idle_timeout: None,
            max_future: None,
            batch: 64,
            ..SourceConfig::default()
        };
        let out = flow
            .source("input", input, &config)?
            .key_by(|kv| kv)
            .window(spec)
            .lateness(lateness)
            .sum("sums");
        out.results.capture(&r);
        out.late.capture(&l);
        Ok(())
    })
    .unwrap();
    Outcome {
        results: results.sorted(),
        late: late.sorted(),
        metrics: ctx.metrics.snapshot(),
    }
}

fn check_grid(seed: u64, size: u64, slide: u64, lateness: Lateness) {
    let parts = random_partitions(seed, 5, 400);
    let expected = naive_grid(&parts, size, slide, lateness);
    assert!(
        expected.len() > 50,
        "the fixture is too small: {}",
        expected.len()
    );
    for workers in [1, 2, 4] {
        let got = run_windows(
            &parts,
            workers,
            WindowSpec::sliding(size, slide).unwrap(),
            lateness,
        );
        assert_eq!(
            got.results.len(),
            expected.len(),
            "workers={workers} size={size} slide={slide}"
        );
        for (g, e) in got.results.iter().zip(&expected) {
            assert_eq!(
                g, e,
                "workers={workers} size={size} slide={slide} seed={seed}"
            );
        }
    }
}

#[test]
fn tumbling_matches_naive() {
    for seed in 0..3 {
        check_grid(seed, 10_000, 10_000, Lateness::Drop);
    }
}

#[test]
fn sliding_matches_naive() {
    for seed in 10..13 {
        check_grid(seed, 10_000, 2_000, Lateness::Drop);
    }
    // A slide that does not divide the size: panes of gcd(7000, 3000).
    check_grid(20, 7_000, 3_000, Lateness::Drop);
}

#[test]
fn hopping_windows_skip_records_between_them() {
    check_grid(30, 2_000, 5_000, Lateness::Drop);
}

#[test]
fn sessions_match_naive() {
    for seed in 40..43 {
        let parts = random_partitions(seed, 4, 300);
        let expected = naive_sessions(&parts, 3_000);
        for workers in [1, 2, 4] {
            let got = run_windows(
                &parts,
                workers,
                WindowSpec::session(3_000).unwrap(),
                Lateness::Drop,
            );
            assert_eq!(got.results, expected, "workers={workers} seed={seed}");
        }
    }
}

#[test]
fn late_records_are_dropped_and_counted() {
    let parts = random_partitions(50, 5, 400);
    let late: usize = parts.iter().map(|p| split_late(p).1.len()).sum();
    assert!(late > 10);
    for workers in [1, 2, 4] {
        let got = run_windows(
            &parts,
            workers,
            WindowSpec::tumbling(10_000).unwrap(),
            Lateness::Drop,
        );
        assert_eq!(got.metrics.late_dropped, late as u64);
        assert!(got.late.is_empty());
        assert_eq!(got.metrics.events, 5 * 400);
    }
}

#[test]
fn late_records_go_to_the_side_output() {
    let parts = random_partitions(60, 5, 400);
    let mut expected: Vec<_> = parts
        .iter()
        .flat_map(|p| split_late(p).1.into_iter().map(|(_, r)| r))
        .collect();
    expected.sort();
    for workers in [1, 2, 4] {
        let got = run_windows(
            &parts,
            workers,
            WindowSpec::tumbling(10_000).unwrap(),
            Lateness::SideOutput,
        );
        assert_eq!(got.late, expected, "workers={workers}");
        assert_eq!(got.metrics.late_side, expected.len() as u64);
        assert_eq!(
            got.results,
            naive_grid(&parts, 10_000, 10_000, Lateness::Drop)
        );
    }
}

#[test]
fn allowed_lateness_re_emits_updates() {
    for (seed, size, slide) in [(70, 10_000, 10_000), (71, 10_000, 5_000)] {
        let parts = random_partitions(seed, 5, 400);
        let lateness = Lateness::Allowed(15_000);
        let expected = naive_grid(&parts, size, slide, lateness);
        assert!(
            expected.iter().any(|(_, r)| r.update),
            "no updates in the fixture"
        );
        for workers in [1, 2, 4] {
            let got = run_windows(
                &parts,
                workers,
                WindowSpec::sliding(size, slide).unwrap(),
                lateness,
            );
            assert_eq!(got.results, expected, "workers={workers} seed={seed}");
        }
    }
}
