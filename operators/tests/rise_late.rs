//! Rise detection under allowed lateness, through timely: without late
//! records it emits what the operator without lateness emits, and a run
//! that fails after some checkpoints and is resumed, at another number of
//! workers, ranks exactly as one that ran straight through.

use std::sync::Arc;
use std::time::Duration;

use keyflow_dataflow::checkpoint::{status, Status};
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::testing::{capture_timed, Captured, ScriptedSource, Step};
use keyflow_operators::rise::{Rise, RiseConfig, RiseRule, RiseTick, Rising};
use keyflow_operators::topk::TopK;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Record = (u64, (u32, u64));
type Ranked = Vec<(u64, u64, TopK<Rising<u32>>)>;

/// Random partitions over 60 s: time steps forward with some jitter, and,
/// when `late` is set, one record in twenty jumps 1.5 to 9 s back. Keys
/// 0..8 ramp up so that some pass; keys 8.. are noise.
fn partitions(seed: u64, late: bool) -> Vec<Vec<Record>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..2)
        .map(|_| {
            let mut t = rng.gen_range(0..500u64);
            let mut records = Vec::new();
            while t < 60_000 {
                t += rng.gen_range(0..40);
                let ts = if late && rng.gen_range(0..20) == 0 {
                    t.saturating_sub(rng.gen_range(1_500..9_000))
                } else {
                    t.saturating_sub(rng.gen_range(0..300))
                };
                let key = rng.gen_range(0..24u32);
                let weight = if key < 8 { 1 + ts % 6_000 / 1_500 } else { 1 };
                records.push((ts, (key, weight)));
            }
            records
        })
        .collect()
}

fn source_config() -> SourceConfig {
    SourceConfig {
        max_out_of_orderness: 1_000,
        idle_timeout: None,
        max_future: None,
        ..SourceConfig::default()
    }
}

fn config() -> RiseConfig {
    RiseConfig {
        window: 2_000,
        slide: 1_000,
        windows: 3,
        rule: RiseRule::AllowFlat,
        ..RiseConfig::default()
    }
}

fn best(a: &Rising<u32>, b: &Rising<u32>) -> std::cmp::Ordering {
    b.growth().cmp(&a.growth()).then(b.last().cmp(&a.last()))
}

/// The rankings of `scripts` under allowed lateness, with the time each
/// travels at, and whether the run succeeded.
fn ranked(run_config: RunConfig, scripts: Vec<Vec<Step<(u32, u64)>>>) -> (Ranked, bool) {
    let out = Captured::new();
    let into = out.clone();
    let scripts = Arc::new(scripts);
    let done = run(&run_config, move |flow| {
        let input = ScriptedSource::new(scripts.as_ref().clone());
        let config = config().with_allowed_lateness(4_000);
        let top = flow
            .source("input", input, &source_config())?
            .rise("rise", config)
            .top_k("top", 3, best);
        capture_timed(top.inner(), &into);
        Ok(())
    });
    (out.sorted(), done.is_ok())
}

fn script(records: &[Record]) -> Vec<Step<(u32, u64)>> {
    records
        .iter()
        .map(|(ts, kv)| Step::Event(*ts, *kv))
        .collect()
}

#[test]
fn without_late_records_it_emits_what_rise_without_lateness_does() {
    let parts = Arc::new(partitions(3, false));
    let outputs = |workers: usize, lateness: Option<u64>| {
        let rising = Captured::<(u64, Rising<u32>)>::new();
        let ticks = Captured::<(u64, RiseTick)>::new();
        let (r, t, parts) = (rising.clone(), ticks.clone(), Arc::clone(&parts));
        run(&RunConfig::threads(workers), move |flow| {
            let parts = Arc::clone(&parts);
            let input = IterSource::new("input", 2, move |p| parts[p].clone().into_iter());
            let config = RiseConfig {
                allowed_lateness: lateness,
                ..config()
            };
            let rise = flow
                .source("input", input, &source_config())?
                .rise("rise", config);
            rise.rising.capture(&r);
            rise.ticks.capture(&t);
            Ok(())
        })
        .unwrap();
        (rising.sorted(), ticks.sorted())
    };
    let plain = outputs(1, None);
    assert!(plain.0.len() > 100, "only {} keys passed", plain.0.len());
    for workers in [1, 3] {
        assert_eq!(outputs(workers, Some(2_000)), plain, "{workers} workers");
    }
}

#[test]
fn a_failed_run_resumed_at_another_worker_count_ranks_as_a_straight_one() {
    let parts = partitions(5, true);
    let full: Vec<_> = parts.iter().map(|p| script(p)).collect();
    let (want, ok) = ranked(RunConfig::threads(2), full.clone());
    assert!(ok);
    assert!(want
        .iter()
        .any(|(_, _, top)| top.update && !top.top.is_empty()));

    let dir = std::env::temp_dir().join(format!("keyflow-rise-late-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpointed = |workers| RunConfig::threads(workers).checkpointed(&dir, 5_000, "rise-late");
    // The first partition fails halfway, after a pause in which the epochs
    // below its watermark are written.
    let mut failing = full.clone();
    let half = failing[0].len() / 2;
    failing[0].truncate(half);
    failing[0].push(Step::Pause(Duration::from_millis(300)));
    failing[0].push(Step::Abort("a crash".into()));
    let (before, ok) = ranked(checkpointed(2), failing);
    assert!(!ok, "the first run must fail");
    let Status::Resume(epoch) = status(&dir, "rise-late").unwrap() else {
        panic!("no complete checkpoint to resume from");
    };
    assert!(epoch >= 10_000, "resumes from {epoch}");

    let (after, ok) = ranked(checkpointed(3), full);
    assert!(ok);
    assert!(after.iter().all(|(time, _, _)| *time >= epoch));
    let mut got: Ranked = before
        .into_iter()
        .filter(|(time, _, _)| *time < epoch)
        .collect();
    got.extend(after);
    got.sort();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}
