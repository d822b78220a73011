//! One process's checkpoint coordinator: which steps each worker has, which
//! parts have arrived, and the thread that writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::{self, Status};
use super::{CheckpointConfig, EpochClock};
use crate::error::{Error, Result};
use crate::time::EventTime;

type Parts = BTreeMap<String, Vec<u8>>;

/// The parts of one complete local epoch, for the writer.
struct Job {
    epoch: EventTime,
    workers: Vec<(usize, Parts)>,
    /// Blobs the parts refer to.
    blobs: BTreeSet<String>,
}

/// Which epochs a deposited part is for.
#[derive(Debug, Clone, Copy)]
enum When {
    /// This epoch.
    At(EventTime),
    /// This epoch and every later one.
    From(EventTime),
}

/// What the writer thread is asked to write.
enum Msg {
    /// A step's large, shared state (a base for later increments), written
    /// at once: the epochs that refer to it are written after it.
    Blob(String, Vec<u8>),
    Epoch(Job),
}

#[derive(Default)]
struct Shared {
    /// Global worker index -> its steps (and where they were declared).
    steps: BTreeMap<usize, BTreeMap<String, String>>,
    /// Workers whose dataflows are built: their step lists are final.
    sealed: BTreeSet<usize>,
    deposits: BTreeMap<EventTime, BTreeMap<usize, Parts>>,
    /// Blobs referred to by the deposits of each epoch.
    refs: BTreeMap<EventTime, BTreeSet<String>>,
    /// Parts that hold for every epoch from the one given on (a finished
    /// source: what it read is final, and it sent nothing at or after
    /// that epoch). An earlier epoch needs its own part.
    forever: BTreeMap<usize, BTreeMap<String, (EventTime, Vec<u8>)>>,
}

/// Collects the checkpoint parts of one process and writes them.
pub struct Checkpointer {
    config: CheckpointConfig,
    process: usize,
    processes: usize,
    workers: usize,
    restored_epoch: Option<EventTime>,
    restored: BTreeMap<String, Vec<Vec<u8>>>,
    shared: Mutex<Shared>,
    tx: Mutex<Option<SyncSender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    failure: Arc<Mutex<Option<Error>>>,
    completed: Completed,
}

/// The newest complete checkpoint epoch, as this process knows it: process
/// 0 completes epochs itself, the others read the directory every half
/// second. Sinks and sources that commit to an outside system (a Kafka
/// transaction, a consumer group's offsets) watch it, as Flink's
/// `notifyCheckpointComplete` tells them.
#[derive(Debug, Clone, Default)]
pub struct Completed(Arc<AtomicU64>);

impl Completed {
    /// The newest complete epoch, if any.
    pub fn newest(&self) -> Option<EventTime> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => Some(n - 1),
        }
    }

    fn raise(&self, epoch: EventTime) {
        self.0.fetch_max(epoch.saturating_add(1), Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("dir", &self.config.dir)
            .field("restored_epoch", &self.restored_epoch)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Checkpointer {
    /// Opens the checkpoint directory for process `process` of
    /// `processes`, each with `workers` workers: loads the newest complete
    /// epoch (a damaged one is an error), and starts the writer thread.
    /// Returns `None` when the job already finished.
    pub fn open(
        config: CheckpointConfig,
        process: usize,
        processes: usize,
        workers: usize,
    ) -> Result<Option<Arc<Self>>> {
        config.validate()?;
        std::fs::create_dir_all(&config.dir).map_err(|e| Error::io(&config.dir, e))?;
        let (restored_epoch, restored) =
            match store::status_as(&config.dir, &config.fingerprint, process)? {
                Status::Finished => return Ok(None),
                Status::Fresh => (None, BTreeMap::new()),
                Status::Resume(epoch) => (
                    Some(epoch),
                    store::load(&config.dir, epoch, &config.fingerprint, process)?,
                ),
            };
        store::forget_unfinished(&config.dir, process, restored_epoch)?;
        store::write_start(&config.dir, process, restored_epoch)?;
        let failure = Arc::new(Mutex::new(None));
        let completed = Completed::default();
        if let Some(epoch) = restored_epoch {
            completed.raise(epoch);
        }
        let (tx, rx) = sync_channel::<Msg>(2);
        let writer = {
            let (config, failure) = (config.clone(), Arc::clone(&failure));
            let completed = completed.clone();
            std::thread::Builder::new()
                .name("keyflow-checkpoint".into())
                .spawn(move || {
                    let mut pending = BTreeSet::new();
                    let mut looked = Instant::now();
                    loop {
                        if process > 0 && looked.elapsed() >= Duration::from_millis(500) {
                            looked = Instant::now();
                            if let Ok(Some(epoch)) = store::newest_complete(&config.dir) {
                                completed.raise(epoch);
                            }
                        }
                        let job = rx.recv_timeout(Duration::from_millis(50));
                        let outcome = match job {
                            Ok(Msg::Blob(name, bytes)) => {
                                store::write_blob(&config.dir, &name, &bytes)
                            }
                            Ok(Msg::Epoch(job)) => write_job(&config, process, &job).map(|()| {
                                if process == 0 {
                                    pending.insert(job.epoch);
                                }
                            }),
                            Err(RecvTimeoutError::Timeout) => Ok(()),
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                        .and_then(|()| complete(&config, &mut pending, processes, workers))
                        .map(|newest| {
                            if let Some(epoch) = newest {
                                completed.raise(epoch);
                            }
                        });
                        if let Err(e) = outcome {
                            lock(&failure).get_or_insert(e);
                        }
                    }
                })
                .map_err(|e| Error::Startup(format!("checkpoint writer: {e}")))?
        };
        Ok(Some(Arc::new(Checkpointer {
            config,
            process,
            processes,
            workers,
            restored_epoch,
            restored,
            shared: Mutex::new(Shared::default()),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            failure,
            completed,
        })))
    }

    /// The epoch restored from, if any.
    pub fn restored_epoch(&self) -> Option<EventTime> {
        self.restored_epoch
    }

    /// The checkpoint configuration.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// Declares step `step` on global worker `worker`. A step id used twice
    /// on one worker is an error naming both places.
    pub fn register(
        self: &Arc<Self>,
        worker: usize,
        step: &str,
        place: &str,
    ) -> Result<StepCheckpoint> {
        let mut shared = lock(&self.shared);
        let steps = shared.steps.entry(worker).or_default();
        if let Some(first) = steps.get(step) {
            return Err(Error::Config(format!(
                "duplicate step id `{step}`: used by {first} and by {place}"
            )));
        }
        steps.insert(step.to_string(), place.to_string());
        Ok(StepCheckpoint {
            ckpt: Arc::clone(self),
            worker,
            step: step.to_string(),
            clock: EpochClock::new(self.config.every, self.restored_epoch.unwrap_or(0)),
        })
    }

    /// Marks worker `worker`'s dataflows as built. On global worker 0,
    /// which declares every step (a single writer's too), a restore fails
    /// if the checkpoint holds state of a step that the dataflow no longer
    /// declares (renamed or removed): resuming would drop that state while
    /// the sources skip what built it, as a savepoint with state no
    /// operator claims is refused. A step new to the dataflow starts
    /// empty, and one whose parts are all empty may go.
    pub fn seal(&self, worker: usize) -> Result<()> {
        if worker == 0 {
            let shared = lock(&self.shared);
            let declared = shared.steps.get(&0);
            // A step whose parts are all empty (a terminal's sink, shown
            // in one run and not the next) holds nothing to lose.
            if let Some(step) = self
                .restored
                .iter()
                .filter(|(_, parts)| parts.iter().any(|p| !p.is_empty()))
                .map(|(step, _)| step)
                .find(|step| !declared.is_some_and(|d| d.contains_key(*step)))
            {
                let known: Vec<&str> = declared
                    .map(|d| d.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(Error::Checkpoint {
                    path: self.config.dir.clone(),
                    reason: format!(
                        "it holds the state of step `{step}`, which this dataflow has no \
                         step for (its steps: {}): was it renamed or removed? Resuming \
                         would lose that state. Give the step its old id, or start from \
                         a new checkpoint directory",
                        known.join(", ")
                    ),
                });
            }
        }
        let epochs: Vec<_> = {
            let mut shared = lock(&self.shared);
            shared.sealed.insert(worker);
            shared.deposits.keys().copied().collect()
        };
        for epoch in epochs {
            self.try_send(epoch);
        }
        Ok(())
    }

    fn deposit(
        &self,
        worker: usize,
        step: &str,
        when: When,
        bytes: Vec<u8>,
        blobs: &[String],
    ) -> Result<()> {
        if let Some(e) = lock(&self.failure).take() {
            return Err(e);
        }
        let epochs: Vec<_> = {
            let mut shared = lock(&self.shared);
            match when {
                When::At(epoch) => {
                    if !blobs.is_empty() {
                        shared
                            .refs
                            .entry(epoch)
                            .or_default()
                            .extend(blobs.iter().cloned());
                    }
                    shared
                        .deposits
                        .entry(epoch)
                        .or_default()
                        .entry(worker)
                        .or_default()
                        .insert(step.to_string(), bytes);
                    vec![epoch]
                }
                When::From(from) => {
                    shared
                        .forever
                        .entry(worker)
                        .or_default()
                        .insert(step.to_string(), (from, bytes));
                    shared.deposits.keys().copied().collect()
                }
            }
        };
        for epoch in epochs {
            self.try_send(epoch);
        }
        Ok(())
    }

    /// Hands `epoch` to the writer once every local worker has all its parts.
    fn try_send(&self, epoch: EventTime) {
        let job = {
            let mut shared = lock(&self.shared);
            let local = self.process * self.workers..(self.process + 1) * self.workers;
            if !local.clone().all(|w| shared.sealed.contains(&w)) {
                return;
            }
            let empty = BTreeMap::new();
            let ready = local.clone().all(|w| {
                let have = shared
                    .deposits
                    .get(&epoch)
                    .and_then(|d| d.get(&w))
                    .unwrap_or(&empty);
                let none = BTreeMap::new();
                let forever = shared.forever.get(&w).unwrap_or(&none);
                shared.steps.get(&w).is_none_or(|steps| {
                    steps.keys().all(|s| {
                        have.contains_key(s)
                            || forever.get(s).is_some_and(|(from, _)| epoch >= *from)
                    })
                })
            });
            if !ready {
                return;
            }
            let mut deposits = shared.deposits.remove(&epoch).unwrap_or_default();
            // An older epoch that some step skipped can never complete, and
            // is not needed once a newer one has: drop what it holds.
            shared.deposits.retain(|e, _| *e > epoch);
            let blobs = shared.refs.remove(&epoch).unwrap_or_default();
            shared.refs.retain(|e, _| *e > epoch);
            let workers = local
                .map(|w| {
                    let mut parts = deposits.remove(&w).unwrap_or_default();
                    for (step, (from, bytes)) in shared.forever.get(&w).into_iter().flatten() {
                        if epoch >= *from {
                            parts.entry(step.clone()).or_insert_with(|| bytes.clone());
                        }
                    }
                    (w, parts)
                })
                .collect();
            Job {
                epoch,
                workers,
                blobs,
            }
        };
        if let Some(tx) = lock(&self.tx).as_ref() {
            // Blocks while the writer is two epochs behind: backpressure.
            let _ = tx.send(Msg::Epoch(job));
        }
    }

    /// Stops the writer after the job; marks the checkpoint finished when
    /// the job succeeded and this is process 0.
    pub fn finish(&self, succeeded: bool) -> Result<()> {
        lock(&self.tx).take();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
        if let Some(e) = lock(&self.failure).take() {
            return Err(e);
        }
        if succeeded && self.process == 0 {
            store::mark_finished(&self.config.dir, &self.config.fingerprint)?;
        }
        Ok(())
    }

    /// Number of processes of the run.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Checks that every process of the cluster restored from the same
    /// epoch as this one; call it once the mesh has formed.
    pub fn check_start(&self) -> Result<()> {
        store::check_start(
            &self.config.dir,
            self.process,
            self.processes,
            self.restored_epoch,
        )
    }
}

fn write_job(config: &CheckpointConfig, process: usize, job: &Job) -> Result<()> {
    let dir = store::epoch_dir(&config.dir, job.epoch);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for (worker, parts) in &job.workers {
        let bytes = store::encode_part(parts)?;
        store::write_atomic(&dir.join(store::part_name(process, *worker)), &bytes)?;
    }
    // The done marker lists the blobs this process's parts refer to, for
    // the manifest (and so for pruning).
    let blobs: Vec<&String> = job.blobs.iter().collect();
    let text = serde_json::to_string(&blobs).map_err(|e| Error::External(e.to_string()))?;
    store::write_atomic(&dir.join(format!("done-p{process}")), text.as_bytes())
}

fn complete(
    config: &CheckpointConfig,
    pending: &mut BTreeSet<EventTime>,
    processes: usize,
    workers: usize,
) -> Result<Option<EventTime>> {
    let mut newest = None;
    for &epoch in pending.iter() {
        if store::try_complete(&config.dir, epoch, &config.fingerprint, processes, workers)? {
            newest = Some(epoch);
        }
    }
    if let Some(newest) = newest {
        pending.retain(|e| *e > newest);
    }
    Ok(newest)
}

/// One step's handle on the checkpoints of its worker. A clone saves to
/// the same checkpoints (a sink's writer thread holds one); its clock is
/// its own.
#[derive(Clone)]
pub struct StepCheckpoint {
    ckpt: Arc<Checkpointer>,
    worker: usize,
    step: String,
    clock: EpochClock,
}

impl StepCheckpoint {
    /// The epoch the job restored from, if any.
    pub fn restored_epoch(&self) -> Option<EventTime> {
        self.ckpt.restored_epoch
    }

    /// This step's parts from every worker of the restored run (empty on a
    /// fresh start). Each worker of the new run reads them all and keeps
    /// what it owns, so the worker count may change.
    pub fn restored_parts(&self) -> &[Vec<u8>] {
        self.ckpt
            .restored
            .get(&self.step)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The newest complete epoch, watched.
    pub fn completed(&self) -> Completed {
        self.ckpt.completed.clone()
    }

    /// The step id.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The boundaries this step has yet to write.
    pub fn clock(&mut self) -> &mut EpochClock {
        &mut self.clock
    }

    /// Writes this step's state as of `epoch`.
    pub fn save(&self, epoch: EventTime, bytes: Vec<u8>) -> Result<()> {
        self.ckpt
            .deposit(self.worker, &self.step, When::At(epoch), bytes, &[])
    }

    /// Writes this step's state as of `epoch` as a part that refers to
    /// `blobs` (see [`StepCheckpoint::save_blob`]), which are kept while a
    /// kept checkpoint refers to them.
    pub fn save_with(&self, epoch: EventTime, bytes: Vec<u8>, blobs: &[String]) -> Result<()> {
        self.ckpt
            .deposit(self.worker, &self.step, When::At(epoch), bytes, blobs)
    }

    /// Writes this step's state for `from` and every later epoch (it will
    /// not change, and nothing was sent at or after `from`). Earlier epochs
    /// not yet written need their own parts: without them they never
    /// complete.
    pub fn save_forever(&self, from: EventTime, bytes: Vec<u8>) -> Result<()> {
        self.ckpt
            .deposit(self.worker, &self.step, When::From(from), bytes, &[])
    }

    /// Writes a large state once, under a name unique to this step, worker
    /// and `epoch`, for later parts to refer to; returns the name.
    pub fn save_blob(&self, epoch: EventTime, bytes: Vec<u8>) -> Result<String> {
        if let Some(e) = lock(&self.ckpt.failure).take() {
            return Err(e);
        }
        let step: String = self
            .step
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{step}-w{}-e{epoch}", self.worker);
        if let Some(tx) = lock(&self.ckpt.tx).as_ref() {
            let _ = tx.send(Msg::Blob(name.clone(), bytes));
        }
        Ok(name)
    }

    /// A blob of the restored run, by the name a restored part gave.
    pub fn restored_blob(&self, name: &str) -> Result<Vec<u8>> {
        store::read_blob(&self.ckpt.config.dir, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keyflow-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn config(dir: &std::path::Path) -> CheckpointConfig {
        CheckpointConfig {
            dir: dir.to_path_buf(),
            every: 10,
            fingerprint: "test".into(),
        }
    }

    /// Process `p` of two, one worker each, with one step.
    fn open(dir: &std::path::Path, p: usize) -> (Arc<Checkpointer>, StepCheckpoint) {
        let c = Checkpointer::open(config(dir), p, 2, 1).unwrap().unwrap();
        let k = c.register(p, "s", "here").unwrap();
        c.seal(p).unwrap();
        (c, k)
    }

    /// Process 1 saves epochs with parts that name the blob they refer to.
    fn run_ahead(k: &StepCheckpoint, blob_at: EventTime, epochs: &[EventTime]) {
        let blob = k.save_blob(blob_at, b"shard".to_vec()).unwrap();
        for &e in epochs {
            k.save_with(e, blob.clone().into_bytes(), std::slice::from_ref(&blob))
                .unwrap();
        }
    }

    #[test]
    fn a_killed_member_s_unfinished_epochs_are_not_completed_by_the_next_run() {
        let dir = &scratch("unfinished");
        // Run A: process 1 gets to 50, process 0 to 20; both are killed.
        let (p1, k1) = open(dir, 1);
        run_ahead(&k1, 10, &[10, 20, 30, 40, 50]);
        p1.finish(false).unwrap();
        let (p0, k0) = open(dir, 0);
        for e in [10, 20] {
            k0.save(e, vec![0]).unwrap();
        }
        p0.finish(false).unwrap();
        assert_eq!(store::newest_complete(dir).unwrap(), Some(20));
        // Run B restores 20. Process 1 writes a new blob; process 0 runs
        // past the epochs where pruning drops run A's blob, to 50, where
        // run A's process 1 left its done marker.
        let (p1, k1) = open(dir, 1);
        let (p0, k0) = open(dir, 0);
        assert_eq!(
            (p0.restored_epoch(), p1.restored_epoch()),
            (Some(20), Some(20))
        );
        p0.check_start().unwrap();
        run_ahead(&k1, 30, &[30, 40]);
        p1.finish(false).unwrap();
        for e in [30, 40, 50] {
            k0.save(e, vec![0]).unwrap();
        }
        p0.finish(false).unwrap();
        // 50 is not complete: only run B's process 0 wrote it.
        assert_eq!(store::newest_complete(dir).unwrap(), Some(40));
        // And what is complete restores, blobs included.
        let (p1, k1) = open(dir, 1);
        assert_eq!(p1.restored_epoch(), Some(40));
        let parts = k1.restored_parts();
        assert_eq!(parts.len(), 2);
        let name = String::from_utf8(parts[1].clone()).unwrap();
        assert_eq!(k1.restored_blob(&name).unwrap(), b"shard");
        p1.finish(false).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A restore whose dataflow no longer declares a step of the
    /// checkpoint (renamed) is refused, naming it, before any work; a step
    /// new to the dataflow starts empty.
    #[test]
    fn a_checkpoint_step_the_dataflow_no_longer_has_is_refused() {
        let dir = &scratch("renamed");
        let cfg = || CheckpointConfig {
            dir: dir.clone(),
            every: 10,
            fingerprint: "test".into(),
        };
        let c = Checkpointer::open(cfg(), 0, 1, 1).unwrap().unwrap();
        let k = c.register(0, "counts v1", "here").unwrap();
        let table = c.register(0, "table", "a terminal").unwrap();
        c.seal(0).unwrap();
        k.save(10, vec![1]).unwrap();
        table.save(10, Vec::new()).unwrap();
        c.finish(false).unwrap();
        assert_eq!(store::newest_complete(dir).unwrap(), Some(10));

        let c = Checkpointer::open(cfg(), 0, 1, 1).unwrap().unwrap();
        c.register(0, "counts v2", "here").unwrap();
        let err = c.seal(0).unwrap_err().to_string();
        assert!(
            err.contains("`counts v1`") && err.contains("counts v2") && err.contains("renamed"),
            "{err}"
        );
        assert!(
            !err.contains("`table`"),
            "a step without state may go: {err}"
        );
        c.finish(false).unwrap();

        let c = Checkpointer::open(cfg(), 0, 1, 1).unwrap().unwrap();
        c.register(0, "counts v1", "here").unwrap();
        c.register(0, "a new step", "there").unwrap();
        c.seal(0).unwrap();
        c.finish(false).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn processes_that_restored_different_epochs_are_refused() {
        let dir = &scratch("start");
        let (p1, _k1) = open(dir, 1);
        let (p0, _k0) = open(dir, 0);
        p0.check_start().unwrap();
        p1.check_start().unwrap();
        // Process 1 as if restarted after an epoch completed.
        store::write_start(dir, 1, Some(20)).unwrap();
        let err = p0.check_start().unwrap_err().to_string();
        assert!(
            err.contains("process 1 started from the checkpoint at")
                && err.contains("process 0 started from the beginning")
                && err.contains("start them all again together"),
            "{err}"
        );
        p0.finish(false).unwrap();
        p1.finish(false).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_finished_job_s_leftover_epochs_and_blobs_are_removed() {
        let dir = &scratch("finished");
        std::fs::create_dir_all(dir).unwrap();
        store::mark_finished(dir, "test").unwrap();
        // As a run killed right after the marker leaves them.
        std::fs::create_dir_all(store::epoch_dir(dir, 30)).unwrap();
        store::write_blob(dir, "s-w0-e30", b"shard").unwrap();
        assert!(Checkpointer::open(config(dir), 0, 1, 1).unwrap().is_none());
        let mut left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["FINISHED"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_process_0_checks_the_fingerprint() {
        let dir = &scratch("fingerprint");
        let (p1, k1) = open(dir, 1);
        run_ahead(&k1, 10, &[10]);
        p1.finish(false).unwrap();
        let (p0, k0) = open(dir, 0);
        k0.save(10, vec![0]).unwrap();
        p0.finish(false).unwrap();
        // Process 1 may have another output path, or its own copy of an
        // input: its fingerprint is not the one the manifest carries.
        let other = CheckpointConfig {
            fingerprint: "other".into(),
            ..config(dir)
        };
        let p1 = Checkpointer::open(other.clone(), 1, 2, 1).unwrap().unwrap();
        assert_eq!(p1.restored_epoch(), Some(10));
        p1.finish(false).unwrap();
        let err = Checkpointer::open(other, 0, 2, 1).unwrap_err().to_string();
        assert!(err.contains("different job or configuration"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
