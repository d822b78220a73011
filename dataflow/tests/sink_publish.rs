//! A run that fails publishes nothing: a sink whose own stream ended well
//! before another step failed still leaves its output under its temporary
//! name (removed, without checkpoints), never under its final one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyflow_dataflow::prelude::*;

/// `0..n`, each at event time equal to itself, in a source named `name`.
fn numbers(name: &str, n: u64) -> impl Source<Item = u64> {
    IterSource::new(name, 1, move |_| (0..n).map(|i| (i, i)))
}

/// Passes everything to the inner sink and raises `ended` once the
/// inner sink's stream has ended (prepared or closed, whichever comes
/// first).
struct Ending<S> {
    inner: S,
    ended: Arc<AtomicBool>,
}

impl<S: Sink<u64>> Sink<u64> for Ending<S> {
    fn write(&mut self, time: EventTime, records: &[(EventTime, u64)]) -> Result<()> {
        self.inner.write(time, records)
    }

    fn prepare_close(&mut self) -> Result<()> {
        self.inner.prepare_close()?;
        self.ended.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.inner.close()?;
        self.ended.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Fails on its first write, but only after `ended` is raised (or ten
/// seconds), so that the other sink's stream has surely ended first.
struct FailsAfter(Arc<AtomicBool>);

impl Sink<u64> for FailsAfter {
    fn write(&mut self, _: EventTime, _: &[(EventTime, u64)]) -> Result<()> {
        let start = Instant::now();
        while !self.0.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(Error::External("disk full".into()))
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyflow-publish-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs a short stream into `dir` (one file, or with `parts` a part per
/// worker) beside a longer one whose sink fails once the short stream has
/// ended; checks the failure and that `dir` is left empty: neither the
/// final names nor, without checkpoints, the files in progress stay.
fn fails_after_the_early_stream_ended(dir: &Path, workers: usize, parts: bool) {
    let ended = Arc::new(AtomicBool::new(false));
    let (target, flag) = (dir.to_path_buf(), Arc::clone(&ended));
    let err = run(&RunConfig::threads(workers), move |flow| {
        let (target, first, second) = (target.clone(), Arc::clone(&flag), Arc::clone(&flag));
        let early = move |name: String| -> Result<Ending<JsonLinesSink>> {
            Ok(Ending {
                inner: JsonLinesSink::create(&target.join(name))?,
                ended: Arc::clone(&first),
            })
        };
        let short = flow.source("short", numbers("short", 3), &SourceConfig::default())?;
        if parts {
            short.sink_partitioned("early", move |part| early(format!("part-{part}.jsonl")))?;
        } else {
            short.sink("early", move || early("early.jsonl".into()))?;
        }
        flow.source("long", numbers("long", 3), &SourceConfig::default())?
            .sink("broken", move || Ok(FailsAfter(second)))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "step `broken`: disk full");
    assert!(ended.load(Ordering::SeqCst), "the early stream never ended");
    assert_eq!(entries(dir), Vec::<String>::new(), "{workers} workers");
}

#[test]
fn an_ended_stream_is_not_published_when_another_step_fails_later() {
    for workers in [1, 2] {
        let dir = scratch(&format!("single-{workers}"));
        fails_after_the_early_stream_ended(&dir, workers, false);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn ended_parts_are_not_published_when_another_step_fails_later() {
    let dir = scratch("parts");
    fails_after_the_early_stream_ended(&dir, 2, true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_that_ends_well_publishes_every_sink() {
    let dir = scratch("well");
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let (ta, tb) = (a.clone(), b.clone());
    run(&RunConfig::threads(2), move |flow| {
        let (ta, tb) = (ta.clone(), tb.clone());
        flow.source("short", numbers("short", 3), &SourceConfig::default())?
            .sink("a", move || JsonLinesSink::create(&ta))?;
        flow.source("long", numbers("long", 5), &SourceConfig::default())?
            .sink("b", move || JsonLinesSink::create(&tb))
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "0\n1\n2\n");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "0\n1\n2\n3\n4\n");
    assert_eq!(entries(&dir), vec!["a.jsonl", "b.jsonl"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
