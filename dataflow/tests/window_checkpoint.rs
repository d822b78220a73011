//! Session windows under checkpoints: a job whose source fails part way
//! through, started again with the same checkpoint directory (at the same
//! or another worker count), writes the same bytes as a run that was never
//! interrupted, with and without allowed lateness. Late records read
//! together update sessions the same way whatever order they arrive in,
//! which such a comparison relies on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyflow_dataflow::checkpoint::{newest_complete, status, Status};
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::source::{Batch, Partition, PollStatus};
use keyflow_dataflow::testing::{Captured, ScriptedSource, Step};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Allowed out-of-orderness of the source.
const OOO: u64 = 2_000;
/// Inactivity that closes a session.
const GAP: u64 = 3_000;
/// Event time between checkpoints.
const EVERY: u64 = 10_000;
const FINGERPRINT: &str = "session counts v1";
const ABORT: &str = "interrupted for the test";

/// `(event time, key)` records, one list per partition.
type Partitions = Vec<Vec<(u64, u32)>>;

/// Random partitions in which keys take turns: each is busy for a while,
/// then quiet for long enough to close its sessions. Some records are a
/// little out of order, a few far behind (late).
fn partitions(seed: u64, count: usize, per_partition: usize) -> Partitions {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut t = rng.gen_range(0..2_000u64);
            (0..per_partition)
                .map(|_| {
                    t += match rng.gen_range(0..100) {
                        0 => rng.gen_range(5_000..15_000), // a pause
                        1..=10 => 0,                       // a tie
                        _ => rng.gen_range(50..300),
                    };
                    let key = ((t / 7_000) as u32 * 3 + rng.gen_range(0..4)) % 24;
                    let ts = match rng.gen_range(0..100) {
                        0..=3 => t.saturating_sub(rng.gen_range(3_000..15_000)), // late
                        4..=30 => t.saturating_sub(rng.gen_range(0..OOO)),       // jitter
                        _ => t,
                    };
                    (ts, key)
                })
                .collect()
        })
        .collect()
}

fn total(parts: &Partitions) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

/// A scratch directory for one test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keyflow-window-checkpoint-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where a first run's source fails: partition 0 reads `after` records,
/// then stays idle until the checkpoint in `dir` has reached `epoch`, and
/// fails. Waiting makes sure the failure comes after a checkpoint, whatever
/// the scheduling of the workers.
#[derive(Clone)]
struct Failure {
    after: usize,
    epoch: u64,
    dir: PathBuf,
}

/// The partitions as a source; partition 0 fails as `failure` says.
struct Keys {
    parts: Arc<Partitions>,
    failure: Option<Failure>,
}

struct KeyPartition {
    parts: Arc<Partitions>,
    index: usize,
    next: usize,
    failure: Option<Failure>,
    waiting_since: Option<Instant>,
}

impl Partition<u32> for KeyPartition {
    fn poll(&mut self, batch: &mut Batch<u32>) -> Result<PollStatus> {
        while !batch.is_full() {
            if let Some(f) = self.failure.as_ref().filter(|f| f.after == self.next) {
                let since = *self.waiting_since.get_or_insert_with(Instant::now);
                let reached = newest_complete(&f.dir)?.is_some_and(|e| e >= f.epoch);
                // The time limit only turns a hang into a failed assertion.
                if reached || since.elapsed() > Duration::from_secs(20) {
                    return Err(Error::External(ABORT.into()));
                }
                return Ok(if batch.records.is_empty() {
                    PollStatus::Idle
                } else {
                    PollStatus::Ready
                });
            }
            let Some(&(ts, key)) = self.parts[self.index].get(self.next) else {
                return Ok(PollStatus::Done);
            };
            batch.push(ts, key);
            self.next += 1;
        }
        Ok(PollStatus::Ready)
    }
}

impl Source for Keys {
    type Item = u32;

    fn name(&self) -> String {
        "keys".into()
    }

    fn partitions(&self) -> usize {
        self.parts.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<u32>>> {
        Ok(Box::new(KeyPartition {
            parts: Arc::clone(&self.parts),
            index,
            next: 0,
            failure: self.failure.clone().filter(|_| index == 0),
            waiting_since: None,
        }))
    }
}

/// The source's settings: no bound on the future unless `future` says.
fn source_config(future: Option<(u64, usize)>) -> SourceConfig {
    SourceConfig {
        max_out_of_orderness: OOO,
        // Progress must not depend on the wall clock.
        idle_timeout: None,
        max_future: future.map(|f| f.0),
        jump_after: future.map(|f| f.1),
        // Small reads, so that sources and windows interleave.
        batch: 20,
        ..SourceConfig::default()
    }
}

/// Session counts per key of `parts`, written to `out`.
fn job(
    parts: &Partitions,
    lateness: Lateness,
    failure: Option<Failure>,
    out: &Path,
) -> impl for<'s> Fn(&Dataflow<'s>) -> Result<()> + Send + Sync + 'static {
    job_with(parts, lateness, failure, out, source_config(None))
}

/// [`job`] with the source's settings given.
fn job_with(
    parts: &Partitions,
    lateness: Lateness,
    failure: Option<Failure>,
    out: &Path,
    config: SourceConfig,
) -> impl for<'s> Fn(&Dataflow<'s>) -> Result<()> + Send + Sync + 'static {
    let parts = Arc::new(parts.clone());
    let out = out.to_path_buf();
    move |flow| {
        let keys = Keys {
            parts: Arc::clone(&parts),
            failure: failure.clone(),
        };
        let out = out.clone();
        flow.source("keys", keys, &config)?
            .key_by(|key| (key, ()))
            .window(WindowSpec::session(GAP)?)
            .lateness(lateness)
            .count("sessions")
            .results
            .sink("out", move || JsonLinesSink::create(&out))
    }
}

/// The output of an uninterrupted run without checkpoints.
fn reference(parts: &Partitions, lateness: Lateness, dir: &Path) -> Vec<u8> {
    let out = dir.join("reference.jsonl");
    run(&RunConfig::threads(2), job(parts, lateness, None, &out)).unwrap();
    std::fs::read(&out).unwrap()
}

fn checkpointed(workers: usize, ckpt: &Path) -> RunConfig {
    RunConfig::threads(workers).checkpointed(ckpt, EVERY, FINGERPRINT)
}

/// Runs with checkpoints until partition 0 fails after `after` records,
/// once the checkpoint at the last boundary at or below its watermark is
/// complete; returns the epoch the next run resumes from.
fn interrupted(
    parts: &Partitions,
    lateness: Lateness,
    workers: usize,
    after: usize,
    ckpt: &Path,
    out: &Path,
) -> u64 {
    let seen = parts[0][..after].iter().map(|r| r.0).max().unwrap_or(0);
    let watermark = seen.saturating_sub(OOO);
    let failure = Failure {
        after,
        epoch: watermark - watermark % EVERY,
        dir: ckpt.to_path_buf(),
    };
    let job = job(parts, lateness, Some(failure.clone()), out);
    let err = run(&checkpointed(workers, ckpt), job).unwrap_err();
    assert!(err.to_string().contains(ABORT), "{err}");
    assert!(!out.exists(), "an interrupted run left a complete output");
    match status(ckpt, FINGERPRINT).unwrap() {
        Status::Resume(epoch) => {
            assert!(
                epoch >= failure.epoch,
                "the run failed before the checkpoint at {} was complete (newest: {epoch})",
                failure.epoch
            );
            epoch
        }
        other => panic!("no checkpoint to resume from after the failure: {other:?}"),
    }
}

/// Runs with checkpoints to the end; returns how many records the sources
/// read (those a restore skipped are not counted).
fn resumed(parts: &Partitions, lateness: Lateness, workers: usize, ckpt: &Path, out: &Path) -> u64 {
    let ctx = Arc::new(Context::new(checkpointed(workers, ckpt)));
    run_with_context(Arc::clone(&ctx), job(parts, lateness, None, out)).unwrap();
    assert_eq!(status(ckpt, FINGERPRINT).unwrap(), Status::Finished);
    ctx.metrics.snapshot().events
}

fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let (got, want) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    let line = got
        .lines()
        .zip(want.lines())
        .position(|(g, w)| g != w)
        .unwrap_or(got.lines().count().min(want.lines().count()));
    panic!(
        "{what}: the output differs from an uninterrupted run at line {} ({} vs {} lines): {:?} vs {:?}",
        line + 1,
        got.lines().count(),
        want.lines().count(),
        got.lines().nth(line),
        want.lines().nth(line),
    );
}

/// Interrupts a run at `first` workers after `after` records of
/// partition 0, finishes it at `second` workers, and compares the output
/// with an uninterrupted run.
fn interrupt_and_resume(
    name: &str,
    seed: u64,
    lateness: Lateness,
    (first, second): (usize, usize),
    after: usize,
) {
    let dir = scratch(name);
    let parts = partitions(seed, 4, 1_200);
    let want = reference(&parts, lateness, &dir);
    let lines = String::from_utf8_lossy(&want).lines().count();
    assert!(lines > 100, "too few sessions in the fixture: {lines}");

    let (ckpt, out) = (dir.join("ckpt"), dir.join("out.jsonl"));
    let epoch = interrupted(&parts, lateness, first, after, &ckpt, &out);
    let read = resumed(&parts, lateness, second, &ckpt, &out);
    assert!(
        read < total(&parts),
        "the resumed run read all {read} records: it did not restore the checkpoint at {epoch}"
    );
    let got = std::fs::read(&out).unwrap();
    assert_same_bytes(&format!("{name} (resumed at {epoch})"), &got, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn session_counts_resume_byte_for_byte() {
    interrupt_and_resume("same-workers", 1, Lateness::Drop, (2, 2), 500);
}

#[test]
fn session_counts_resume_at_more_workers() {
    interrupt_and_resume("two-to-three", 2, Lateness::Drop, (2, 3), 700);
}

#[test]
fn session_counts_resume_at_fewer_workers() {
    interrupt_and_resume("three-to-one", 3, Lateness::Drop, (3, 1), 600);
}

#[test]
fn late_updates_resume_at_more_workers() {
    interrupt_and_resume(
        "late-two-to-three",
        4,
        Lateness::Allowed(10_000),
        (2, 3),
        650,
    );
}

#[test]
fn late_updates_resume_at_fewer_workers() {
    interrupt_and_resume(
        "late-three-to-one",
        5,
        Lateness::Allowed(10_000),
        (3, 1),
        450,
    );
}

/// The fixture with allowed lateness really updates sessions, and the
/// result does not depend on the worker count.
#[test]
fn late_updates_are_the_same_at_any_worker_count() {
    let dir = scratch("late-workers");
    let parts = partitions(4, 4, 1_200);
    let lateness = Lateness::Allowed(10_000);
    let want = reference(&parts, lateness, &dir);
    let text = String::from_utf8_lossy(&want);
    assert!(
        text.contains("\"update\":true"),
        "no updates in the fixture"
    );
    assert!(text.contains("\"update\":false"));
    for workers in [1, 3] {
        let out = dir.join(format!("w{workers}.jsonl"));
        run(
            &RunConfig::threads(workers),
            job(&parts, lateness, None, &out),
        )
        .unwrap();
        let got = std::fs::read(&out).unwrap();
        assert_same_bytes(&format!("{workers} workers"), &got, &want);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run restored from a checkpoint checkpoints again, and a second failure
/// resumes from the newer checkpoint.
#[test]
fn a_restored_run_can_fail_and_resume_again() {
    let dir = scratch("twice");
    let parts = partitions(6, 4, 1_200);
    let lateness = Lateness::Allowed(10_000);
    let want = reference(&parts, lateness, &dir);

    let (ckpt, out) = (dir.join("ckpt"), dir.join("out.jsonl"));
    let first = interrupted(&parts, lateness, 2, 400, &ckpt, &out);
    let second = interrupted(&parts, lateness, 3, 850, &ckpt, &out);
    assert!(
        second > first,
        "the restored run wrote no newer checkpoint ({first} then {second})"
    );
    let read = resumed(&parts, lateness, 1, &ckpt, &out);
    assert!(read < total(&parts));
    let got = std::fs::read(&out).unwrap();
    assert_same_bytes(
        &format!("resumed at {first}, then at {second}"),
        &got,
        &want,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint taken while a partition holds records far ahead of its
/// watermark (after a gap longer than `max_future`, before enough of them
/// agree to be followed) re-reads them on restore: they were read, but
/// not yet sent.
#[test]
fn records_held_ahead_at_a_checkpoint_are_read_again_on_restore() {
    let dir = scratch("held-ahead");
    let gap = 2 * DAY;
    let mut before: Vec<(u64, u32)> = (0..300).map(|i| (i * 100, (i % 4) as u32)).collect();
    before.extend((0..400).map(|i| (gap + i * 3_100, (i % 3) as u32)));
    // Partition 1 is slower in event time, so that the boundaries pass
    // while partition 0 holds its records.
    let slow = (0..2_400).map(|i| (i * 25, 7 + (i % 2) as u32)).collect();
    let parts = vec![before, slow];
    let config = source_config(Some((DAY, 50)));
    let lateness = Lateness::Drop;
    let want = {
        let out = dir.join("reference.jsonl");
        let ctx = Arc::new(Context::new(RunConfig::threads(2)));
        let job = job_with(&parts, lateness, None, &out, config.clone());
        run_with_context(Arc::clone(&ctx), job).unwrap();
        assert_eq!(ctx.metrics.snapshot().future, 0);
        std::fs::read(&out).unwrap()
    };
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out.jsonl"));
    // 330 records: the last 30 of them held, and held until the failure.
    let failure = Failure {
        after: 330,
        epoch: 20_000,
        dir: ckpt.clone(),
    };
    let job = job_with(&parts, lateness, Some(failure), &out, config.clone());
    let err = run(&checkpointed(1, &ckpt), job).unwrap_err();
    assert!(err.to_string().contains(ABORT), "{err}");
    let Status::Resume(epoch) = status(&ckpt, FINGERPRINT).unwrap() else {
        panic!("no checkpoint to resume from");
    };
    assert!((20_000..gap).contains(&epoch), "resumed at {epoch}");
    let ctx = Arc::new(Context::new(checkpointed(2, &ckpt)));
    run_with_context(
        Arc::clone(&ctx),
        job_with(&parts, lateness, None, &out, config),
    )
    .unwrap();
    assert!(ctx.metrics.snapshot().events < total(&parts));
    assert_eq!(ctx.metrics.snapshot().future, 0);
    let got = std::fs::read(&out).unwrap();
    assert_same_bytes(&format!("resumed at {epoch}"), &got, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Late records read at one time update sessions the same way whatever
/// order they arrive in (which varies with the worker count), so that a
/// resumed run can repeat them: taken in event-time order per key, and one
/// update per session and read time.
#[test]
fn late_records_read_together_give_one_result_in_any_order() {
    // Both partitions reach watermark 10 s, then read late records: they
    // all travel at 10 s. Gap 1 s, 5 s of allowed lateness.
    let scripts = vec![
        vec![
            Step::Event(0, 1),
            Step::Event(7_000, 2),
            Step::Event(10_000, 9),
            Step::Event(4_500, 1),
            Step::Event(7_200, 2),
        ],
        vec![
            Step::Event(10_000, 8),
            Step::Event(3_800, 1),
            Step::Event(7_300, 2),
        ],
    ];
    let result = |end, key, start, value, update| {
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
    };
    let want = vec![
        result(1_000, 1, 0, 1, false),
        // 3.8 s on its own ends at 4.8 s, past the lateness by 10 s: dropped
        // before 4.5 s (a session of its own, ending at 5.5 s) is read.
        result(5_500, 1, 4_500, 1, true),
        result(8_000, 2, 7_000, 1, false),
        // Both late records of key 2 in one update.
        result(8_300, 2, 7_000, 3, true),
        result(11_000, 8, 10_000, 1, false),
        result(11_000, 9, 10_000, 1, false),
    ];
    for workers in [1, 2, 3] {
        let got = Captured::new();
        let into = got.clone();
        let scripts = Arc::new(scripts.clone());
        let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
        run_with_context(Arc::clone(&ctx), move |flow| {
            let config = SourceConfig {
                max_out_of_orderness: 0,
                idle_timeout: None,
                max_future: None,
                ..SourceConfig::default()
            };
            flow.source("keys", ScriptedSource::new(scripts.to_vec()), &config)?
                .key_by(|key: u32| (key, ()))
                .window(WindowSpec::session(1_000)?)
                .lateness(Lateness::Allowed(5_000))
                .count("sessions")
                .results
                .capture(&into);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.sorted(), want, "workers={workers}");
        let metrics = ctx.metrics.snapshot();
        assert_eq!(
            (metrics.late_dropped, metrics.late_updates),
            (1, 2),
            "workers={workers}"
        );
    }
}
