//! Sinks: where results go, written exactly once and in a stable order.
//!
//! Three operators hand a stream to [`Sink`]s, one complete timestamp at a
//! time, once the frontier has passed that time:
//!
//! - [`crate::Events::sink`] has a single writer, beside worker 0 of the
//!   cluster. Each worker sorts its own records of a complete time into
//!   one run and sends the run to worker 0, whose writer merges the runs.
//!   So every result is written once, by one writer, and the file is byte
//!   for byte the same at any number of workers and processes.
//! - [`crate::Events::sink_encoded`] is the same single writer, but every
//!   worker also encodes its own records into bytes (the lines of a file),
//!   so that the writer merges bytes instead of formatting every record.
//! - [`crate::Events::sink_partitioned`] has one writer per worker, each
//!   writing its own records, sorted within each time, to its own part (as
//!   Flink's file sink writes part files). Nothing crosses workers.
//!
//! Each writer runs its sink on a thread of its own (`writer.rs`), so a
//! sink must be `Send`. Every writer saves a commit point at each
//! checkpoint epoch, so that a restored run cuts its output back to what
//! the checkpoint covers.

mod encoded;
mod jsonl;
mod ordered;
mod partitioned;
mod ranges;
#[cfg(feature = "redis")]
mod redis;
mod writer;

use std::io::Write;

use crate::checkpoint::StepCheckpoint;
use crate::error::Result;
use crate::time::EventTime;

#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisConnection, RedisEntries, RedisSink};
pub(crate) use encoded::sink_encoded_stream;
pub use encoded::Encoded;
pub use jsonl::{
    remove_orphaned_temps, remove_stale_temps, remove_temporary_files, temp_name, JsonLinesSink,
};
pub(crate) use ordered::sink_stream;
pub(crate) use partitioned::sink_partitioned;

/// Something that takes a job's results. [`Sink::restore`] and
/// [`Sink::watch_completions`] are called on the worker while the job is
/// built; once it runs, the other methods are called on the writer's own
/// thread, one at a time, in the order of the stream.
pub trait Sink<T>: 'static {
    /// Takes every record of one complete event time, sorted: all of the
    /// stream's records for [`crate::Events::sink`], this worker's for
    /// [`crate::Events::sink_partitioned`]. Each time comes once, in
    /// increasing order.
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()>;

    /// Called once when the stream ends, on the writer's thread, before
    /// [`Sink::close`]: the slow part of closing (flushing, syncing a
    /// file), so that `close` only has to publish.
    fn prepare_close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called once the whole run has ended well: the stream ended, and
    /// every other step of every process of the cluster ended without a
    /// failure. It publishes the output (renames a file into place, commits
    /// a transaction). A run that fails never calls it, even where this
    /// sink's own stream had ended, so a failed run leaves no output that
    /// looks complete. Called on the thread that started the run, one sink
    /// after another; called directly, it flushes and closes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes everything written so far durable and returns the commit
    /// point a restore cuts the output back to. Called at each checkpoint
    /// epoch, after every time below it was written. The default (for
    /// sinks whose writes are idempotent or that cannot take anything back,
    /// such as a terminal) records nothing.
    fn commit(&mut self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Called just before [`Sink::commit`] with the checkpoint epoch being
    /// taken: a sink that keeps records per checkpoint (a transactional
    /// sink's pre-commit) closes its batch for that epoch here.
    fn pre_commit(&mut self, _epoch: EventTime) {}

    /// Resumes from a commit point returned by [`Sink::commit`] in an
    /// earlier run, before anything is written.
    fn restore(&mut self, _point: &[u8]) -> Result<()> {
        Ok(())
    }

    /// With checkpoints: called once, before anything is written, with the
    /// watch on the newest complete checkpoint. A sink that commits to an
    /// outside system only once a checkpoint is complete (a transactional
    /// producer's two-phase commit) keeps it.
    fn watch_completions(&mut self, _completed: crate::checkpoint::Completed) {}

    /// [`Sink::commit`] for a sink whose commit point holds much that does
    /// not change between epochs (rows it keeps until an hour is complete,
    /// say): it saves such pieces once in `blobs` and returns a point that
    /// names them, so each epoch writes only what is new. The default is
    /// [`Sink::commit`]. (A sink of [`crate::Events::sink_partitioned`]
    /// should not use blobs: the points of parts that a smaller run adopts
    /// are carried on without them.)
    fn commit_with(&mut self, _blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
        self.commit()
    }

    /// Resumes from a point returned by [`Sink::commit_with`], reading the
    /// blobs it names from `blobs`. The default is [`Sink::restore`].
    fn restore_with(&mut self, point: &[u8], _blobs: &mut dyn Blobs) -> Result<()> {
        self.restore(point)
    }
}

/// The checkpoint blobs a sink's commit point refers to (see
/// [`Sink::commit_with`]).
pub trait Blobs {
    /// Saves `bytes` as a blob of this commit (at most one per commit) and
    /// returns its name. The commit point that returns also refers to it.
    fn save(&mut self, bytes: Vec<u8>) -> Result<String>;

    /// Declares that this commit point refers to the blob `name`, saved by
    /// an earlier commit (or the restored run): it is then kept as long as
    /// a kept checkpoint refers to it.
    fn keep(&mut self, name: &str);

    /// A blob of the restored run, by name.
    fn read(&mut self, name: &str) -> Result<Vec<u8>>;
}

/// [`Blobs`] of one step's checkpoints, at one epoch.
struct StepBlobs<'a> {
    ckpt: &'a StepCheckpoint,
    epoch: EventTime,
    saved: bool,
    refs: Vec<String>,
}

impl<'a> StepBlobs<'a> {
    fn new(ckpt: &'a StepCheckpoint, epoch: EventTime) -> Self {
        StepBlobs {
            ckpt,
            epoch,
            saved: false,
            refs: Vec::new(),
        }
    }
}

impl Blobs for StepBlobs<'_> {
    fn save(&mut self, bytes: Vec<u8>) -> Result<String> {
        // Blob names are unique per step, worker and epoch.
        if std::mem::replace(&mut self.saved, true) {
            return Err(crate::Error::Config(format!(
                "sink `{}` saved two blobs in one commit",
                self.ckpt.step()
            )));
        }
        let name = self.ckpt.save_blob(self.epoch, bytes)?;
        self.refs.push(name.clone());
        Ok(name)
    }

    fn keep(&mut self, name: &str) {
        self.refs.push(name.to_string());
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        self.ckpt.restored_blob(name)
    }
}

/// Restores `sink` from `point`, with the blobs of the restored run.
fn restore_sink<T, S: Sink<T>>(sink: &mut S, point: &[u8], ckpt: &StepCheckpoint) -> Result<()> {
    let epoch = ckpt.restored_epoch().unwrap_or(0);
    sink.restore_with(point, &mut StepBlobs::new(ckpt, epoch))
}

/// How a writer's commit point is stored in its checkpoint part.
enum Points {
    /// The sink's own point, as it returned it (the single writer).
    Single,
    /// A list of `(part, point)`: this writer's part first, then the parts
    /// of a larger earlier run that it finished on restore (see
    /// [`partitioned`]), carried on so that a later restore finds them.
    Parts {
        part: u64,
        adopted: Vec<(u64, Vec<u8>)>,
    },
}

/// Turns each record, with its event time, into another before handing it
/// to an inner sink: a job's records into the JSON objects a file should
/// hold, say. Commit points and restores are the inner sink's.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::sink::MapSink;
///
/// let path = std::env::temp_dir().join(format!("keyflow-map-sink-{}.jsonl", std::process::id()));
/// let target = path.clone();
/// run(&RunConfig::threads(1), move |flow| {
///     let input = IterSource::new("n", 1, |_| (1..=2u64).map(|i| (i * SECOND, i)));
///     let target = target.clone();
///     flow.source("n", input, &SourceConfig::default())?.sink("out", move || {
///         let lines = JsonLinesSink::create(&target)?;
///         Ok(MapSink::new(lines, |ts, n: &u64| serde_json::json!({"ts": ts, "n": n})))
///     })
/// })
/// .unwrap();
/// let text = std::fs::read_to_string(&path).unwrap();
/// assert_eq!(text, "{\"n\":1,\"ts\":1000}\n{\"n\":2,\"ts\":2000}\n");
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub struct MapSink<S, F, U> {
    inner: S,
    f: F,
    /// The mapped records of the time being written, reused across times.
    batch: Vec<(EventTime, U)>,
}

impl<S, F, U> MapSink<S, F, U> {
    /// A sink that maps records with `f` into `inner`.
    pub fn new(inner: S, f: F) -> Self {
        MapSink {
            inner,
            f,
            batch: Vec::new(),
        }
    }
}

impl<T, U, S, F> Sink<T> for MapSink<S, F, U>
where
    U: 'static,
    S: Sink<U>,
    F: FnMut(EventTime, &T) -> U + 'static,
{
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        let f = &mut self.f;
        self.batch
            .extend(records.iter().map(|(ts, r)| (*ts, f(*ts, r))));
        let written = self.inner.write(time, &self.batch);
        self.batch.clear();
        written
    }

    fn prepare_close(&mut self) -> Result<()> {
        self.inner.prepare_close()
    }

    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        self.inner.commit()
    }

    fn restore(&mut self, point: &[u8]) -> Result<()> {
        self.inner.restore(point)
    }

    fn watch_completions(&mut self, completed: crate::checkpoint::Completed) {
        self.inner.watch_completions(completed)
    }

    fn pre_commit(&mut self, epoch: EventTime) {
        self.inner.pre_commit(epoch)
    }

    fn commit_with(&mut self, blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
        self.inner.commit_with(blobs)
    }

    fn restore_with(&mut self, point: &[u8], blobs: &mut dyn Blobs) -> Result<()> {
        self.inner.restore_with(point, blobs)
    }
}

/// Prints each record on stdout with a formatting function of its event
/// time and the record.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
///
/// run(&RunConfig::threads(2), |flow| {
///     let input = IterSource::new("n", 1, |_| (1..=3u64).map(|i| (i * SECOND, i)));
///     flow.source("n", input, &SourceConfig::default())?
///         .sink("print", || Ok(StdoutSink(|ts, n: &u64| format!("{ts} ms: {n}"))))
/// })
/// .unwrap();
/// ```
pub struct StdoutSink<F>(pub F);

impl<T, F> Sink<T> for StdoutSink<F>
where
    F: FnMut(EventTime, &T) -> String + 'static,
{
    fn write(&mut self, _time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (ts, record) in records {
            // A closed pipe (`| head`) is not a job failure worth a panic.
            if writeln!(out, "{}", (self.0)(*ts, record)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}
