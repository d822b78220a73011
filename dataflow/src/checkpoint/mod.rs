//! Checkpoints at event-time epochs, and exactly-once restore.
//!
//! Every `every` milliseconds of event time is an epoch boundary `E`. When
//! an operator's input frontier passes `E`, the operator writes its state as
//! of `E`: everything that travelled at a timely time below `E` applied,
//! nothing at or above it. Sources write their read positions at the moment
//! their capability passes `E`, and sinks their commit point (the length of
//! their output after every time below `E`). Records at `E` and later are
//! then produced again after a restore, so nothing is lost and nothing is
//! counted twice.
//!
//! Parts are keyed by step id, so a restore can route state to a different
//! number of workers. One [`Checkpointer`] per process collects the parts of
//! its workers and hands them to a writer thread, which writes one file per
//! worker (temporary name, fsync, rename) and a `done` marker per process.
//! Process 0 writes the epoch's manifest last, once every process is done,
//! and keeps the two newest complete checkpoints. Across hosts, the
//! checkpoint directory must be one shared file system. A run holds the
//! directory's lock for its process index while it runs (see [`lock`]),
//! so a second run on the same directory is refused at its start.
//!
//! A process that restores first removes what it wrote for the epochs
//! after the restored one: a killed run leaves them incomplete, and they
//! must not be completed with the next run's parts. Once a cluster's mesh
//! has formed, every process checks that all restored the same epoch, as
//! members restarted one at a time may not have.
//!
//! A job checkpoints with one call on its run configuration; a second run
//! with the same directory resumes (here, the job had finished: nothing to
//! do).
//!
//! ```
//! use keyflow_dataflow::prelude::*;
//!
//! let dir = std::env::temp_dir().join(format!("keyflow-ckpt-doc-{}", std::process::id()));
//! let (ckpt, out) = (dir.join("ckpt"), dir.join("counts.jsonl"));
//! let config = RunConfig::threads(2).checkpointed(&ckpt, MINUTE, "word counts v1");
//! let job = move |flow: &Dataflow<'_>| {
//!     let words = IterSource::new("words", 2, |p| (0..600u64).map(move |i| (i * SECOND, (i + p as u64) % 3)));
//!     let out = out.clone();
//!     flow.source("words", words, &SourceConfig::default())?
//!         .key_by(|w| (w, ()))
//!         .window(WindowSpec::tumbling(MINUTE)?)
//!         .count("counts")
//!         .results
//!         .sink("out", move || JsonLinesSink::create(&out))
//! };
//! run(&config, job.clone()).unwrap();
//! assert!(ckpt.join("FINISHED").exists());
//! assert_eq!(std::fs::read_to_string(dir.join("counts.jsonl")).unwrap().lines().count(), 30);
//! assert!(run(&config, job).unwrap().is_empty()); // already finished
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! An operator may skip a boundary (after a long jump of the frontier it
//! writes only the last few), because an epoch counts only when every part
//! of it has been written.

mod coordinator;
mod epochs;
mod inputs;
mod lock;
mod store;

use std::path::PathBuf;

pub use coordinator::{Checkpointer, Completed, StepCheckpoint};
pub use epochs::{take_below, EpochClock};
pub use inputs::describe_inputs;
pub use lock::{check_shared, lock, DirLock};
pub use store::{identity, newest_complete, status, status_as, wipe, Status, FORMAT_VERSION};

/// Where and how often a job checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The checkpoint directory (shared by every process of a cluster).
    pub dir: PathBuf,
    /// Event time between epoch boundaries, in ms.
    pub every: u64,
    /// What the checkpoint must match to be restored: the job, its
    /// semantic configuration and its inputs.
    pub fingerprint: String,
}

impl CheckpointConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        if self.every == 0 {
            return Err(crate::Error::Config(
                "--checkpoint-every 0: the interval must be positive".into(),
            ));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(crate::Error::Config("--checkpoint-dir is empty".into()));
        }
        not_a_file(&self.dir)
    }
}

/// Fails, naming it, when `dir` is there but is not a directory.
pub(crate) fn not_a_file(dir: &std::path::Path) -> crate::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(crate::Error::Config(format!(
            "--checkpoint-dir {} is a file, not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// bincode with variable-length integers: pane indices, weights and
/// counts are mostly small, and checkpoints are written often.
fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .allow_trailing_bytes()
}

/// Encodes a part with bincode.
pub fn encode<T: serde::Serialize>(value: &T) -> crate::Result<Vec<u8>> {
    use bincode::Options;
    options()
        .serialize(value)
        .map_err(|e| crate::Error::External(format!("checkpoint encode: {e}")))
}

/// Decodes a part written by [`encode`]; `what` names it in the error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> crate::Result<T> {
    use bincode::Options;
    options()
        .deserialize(bytes)
        .map_err(|e| crate::Error::Checkpoint {
            path: PathBuf::from(what),
            reason: format!("cannot decode: {e}"),
        })
}
