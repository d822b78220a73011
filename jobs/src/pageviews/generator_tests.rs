//! Tests of the pageview generator.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::{Batch, PollStatus};
use keyflow_dataflow::testing::Captured;

use super::*;

fn small(partitions: usize) -> GeneratorConfig {
    GeneratorConfig {
        articles: 50_000,
        seed: 7,
        rate: 50,
        duration_ms: 5 * MINUTE,
        partitions,
        bursts: 3,
        ..Default::default()
    }
}

fn events(config: GeneratorConfig) -> Vec<(u64, PageView)> {
    let src = GeneratorSource::new(config).unwrap();
    let (mut records, bad) = read_all(&src).unwrap();
    assert!(bad.is_empty());
    records.sort();
    records
}

#[test]
fn same_seed_same_events() {
    let a = events(small(4));
    assert_eq!(a.len(), 15_000);
    assert_eq!(a, events(small(4)));
    assert_ne!(
        a,
        events(GeneratorConfig {
            seed: 8,
            ..small(4)
        })
    );
    assert!(a.iter().all(|(_, v)| v.views == 1));
}

#[test]
fn partition_count_does_not_change_the_events() {
    let one = events(small(1));
    assert_eq!(one, events(small(3)));
    assert_eq!(one, events(small(8)));
}

#[test]
fn partitions_emit_in_time_order_and_agree_with_event() {
    let src = GeneratorSource::new(small(3)).unwrap();
    for p in 0..3 {
        let (records, _) = read_partition(&src, p).unwrap();
        assert!(records.windows(2).all(|w| w[0].0 <= w[1].0));
        for (k, (ts, view)) in records.iter().enumerate().step_by(997) {
            let (want_ts, want) = src.event((p + 3 * k) as u64);
            assert_eq!((*ts, &view.article), (want_ts, &want));
        }
    }
}

fn run_workers(workers: usize) -> Vec<(u64, PageView)> {
    let out = Captured::new();
    let sink = out.clone();
    run(&RunConfig::threads(workers), move |flow| {
        let sink = sink.clone();
        let src = PageviewSource::generator(small(8))
            .map_err(|e| keyflow_dataflow::Error::Config(e.to_string()))?;
        flow.source("input", src, &SourceConfig::default())?
            .capture(&sink);
        Ok(())
    })
    .unwrap();
    out.sorted()
}

#[test]
fn worker_count_does_not_change_the_events() {
    let one = run_workers(1);
    assert_eq!(one, events(small(8)));
    assert_eq!(one, run_workers(3));
}

#[test]
fn popularity_follows_zipf() {
    let config = GeneratorConfig {
        articles: 1_000_000,
        rate: 1_000,
        duration_ms: 200_000,
        bursts: 0,
        partitions: 1,
        ..small(1)
    };
    let src = GeneratorSource::new(config).unwrap();
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for i in 0..src.total_events() {
        *counts.entry(src.article_id(i)).or_default() += 1;
    }
    let top = counts.get(&1).copied().unwrap_or(0);
    let deep = counts.get(&1000).copied().unwrap_or(0);
    // Expected: 200k / H(1e6) ≈ 13,900 against about 14.
    assert!((12_500..15_300).contains(&top), "rank 1: {top}");
    assert!(top > 100 * deep.max(1), "rank 1: {top}, rank 1000: {deep}");
    assert!(counts.keys().all(|&k| (1..=1_000_000).contains(&k)));
}

#[test]
fn burst_articles_are_distinct_and_not_top_ranked() {
    let src = GeneratorSource::new(GeneratorConfig::default()).unwrap();
    let bursts = src.bursts();
    assert_eq!(bursts.len(), 20);
    let ids: HashSet<u32> = bursts
        .iter()
        .map(|b| match b.article {
            Article::Generated(id) => id,
            _ => panic!("{b:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 20);
    assert!(
        ids.iter().all(|&id| (60_001..=6_000_000).contains(&id)),
        "{ids:?}"
    );
    let all = GeneratorSource::new(GeneratorConfig {
        articles: 5,
        bursts: 5,
        ..small(1)
    })
    .unwrap();
    let ids: HashSet<Article> = all.bursts().into_iter().map(|b| b.article).collect();
    assert_eq!(ids.len(), 5);
}

#[test]
fn bursts_ramp_up_over_their_hour() {
    let config = GeneratorConfig {
        articles: 1_000_000,
        rate: 200,
        duration_ms: 90 * MINUTE,
        bursts: 2,
        partitions: 1,
        ..small(1)
    };
    let src = GeneratorSource::new(config.clone()).unwrap();
    let bursts = src.bursts();
    assert_eq!(bursts[0].ramp_start_ms, config.start_ms);
    assert_eq!(bursts[1].ramp_start_ms, config.start_ms + 30 * MINUTE);
    let mut windows = vec![[0u64; 6]; bursts.len()];
    for i in 0..src.total_events() {
        let (ts, article) = src.event(i);
        for (b, burst) in bursts.iter().enumerate() {
            if article == burst.article && ts >= burst.ramp_start_ms {
                let w = ((ts - burst.ramp_start_ms) / (10 * MINUTE)) as usize;
                if w < 6 {
                    windows[b][w] += 1;
                }
            }
        }
    }
    for counts in windows {
        // The trending rule, strictly: c1 < c2 < ... < c6.
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
        assert!(counts[0] >= 1 && counts[5] > 5 * counts[0], "{counts:?}");
    }
}

#[test]
fn realtime_paces_to_the_wall_clock() {
    let config = GeneratorConfig {
        rate: 1_000,
        partitions: 1,
        realtime: true,
        ..small(1)
    };
    let src = GeneratorSource::new(config).unwrap();
    let mut partition = src.open(0).unwrap();
    let mut batch = Batch::new(100_000);
    assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Idle);
    let first = batch.records.len();
    assert!(first < 50, "{first} events before any time passed");
    std::thread::sleep(Duration::from_millis(200));
    batch.clear();
    assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Idle);
    let later = batch.records.len();
    assert!(
        (150..2_000).contains(&later),
        "{later} events in 200 ms at 1000/s"
    );
}

#[test]
fn a_speedup_runs_event_time_faster_than_the_wall_clock() {
    let config = GeneratorConfig {
        rate: 100,
        partitions: 1,
        realtime: true,
        speedup: 50,
        ..small(1)
    };
    let src = GeneratorSource::new(config).unwrap();
    let mut partition = src.open(0).unwrap();
    let mut batch = Batch::new(100_000);
    assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Idle);
    std::thread::sleep(Duration::from_millis(200));
    batch.clear();
    assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Idle);
    // 200 ms of wall time are 10 s of event time: about 1,000 events.
    let later = batch.records.len();
    assert!((500..5_000).contains(&later), "{later} events");
    let bad = GeneratorConfig {
        speedup: 0,
        ..small(1)
    };
    let err = GeneratorSource::new(bad).err().unwrap().to_string();
    assert!(err.contains("speedup 0"), "{err}");
}

#[test]
fn validate_names_bad_values() {
    let cases = [
        (
            GeneratorConfig {
                articles: 0,
                ..small(1)
            },
            "articles",
        ),
        (
            GeneratorConfig {
                rate: 0,
                ..small(1)
            },
            "rate",
        ),
        (
            GeneratorConfig {
                partitions: 0,
                ..small(1)
            },
            "partitions",
        ),
        (
            GeneratorConfig {
                duration_ms: 0,
                ..small(1)
            },
            "duration",
        ),
        (
            GeneratorConfig {
                articles: 10,
                bursts: 11,
                ..small(1)
            },
            "bursts",
        ),
        (
            GeneratorConfig {
                start_ms: u64::MAX,
                ..small(1)
            },
            "year 9999",
        ),
        (
            // Events past it would all be dropped, for ever.
            GeneratorConfig {
                duration_ms: keyflow_dataflow::time::MAX_EVENT_TIME,
                ..small(1)
            },
            "year 9999",
        ),
    ];
    for (config, word) in cases {
        let err = GeneratorSource::new(config).unwrap_err().to_string();
        assert!(err.contains(word), "{word}: {err}");
    }
    assert!(GeneratorConfig::default().validate().is_ok());
    assert_eq!(GeneratorConfig::default().total_events(), 144_000_000);
}
