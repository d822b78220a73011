//! The one error type of the `keyflow-dataflow` crate.

use std::path::PathBuf;

/// Who is at fault when an [`Error`] happens: this tells a CLI how to report
/// it and a caller whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad configuration or bad input data: the user must change something.
    User,
    /// Something outside the process failed: a file system, a peer, a server.
    External,
    /// A bug in keyflow or in a job: a worker panicked.
    Internal,
}

/// Everything that can go wrong while building or running a dataflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid; the message names the value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A malformed record under the `fail` bad-input policy.
    #[error("bad input at {location}: {reason}")]
    BadInput {
        /// File and line (or partition and offset) of the record.
        location: String,
        /// Why the record was rejected.
        reason: String,
    },
    /// An input or output file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A source or sink failed for a reason outside keyflow.
    #[error("{0}")]
    External(String),
    /// A checkpoint file is damaged, foreign or of another version, or the
    /// directory is in use by another run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An error raised inside a step, with the step's id.
    #[error("step `{step}`: {source}")]
    Step {
        /// The step's full id.
        step: String,
        /// What went wrong.
        source: Box<Error>,
    },
    /// Timely could not set up the workers or the process mesh.
    #[error("cannot start the workers: {0}")]
    Startup(String),
    /// A worker thread panicked; the message is the panic's.
    #[error("worker {worker} panicked: {message}")]
    WorkerPanic {
        /// Index of the worker that panicked.
        worker: usize,
        /// The panic message.
        message: String,
    },
    /// Another process of the cluster failed, and this one stopped with it.
    #[error("process {process} of the cluster failed: {message}")]
    PeerFailed {
        /// Index of the process that failed first.
        process: usize,
        /// Its error.
        message: String,
    },
}

impl Error {
    /// Classifies the error as user, external or internal.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) | Error::BadInput { .. } => ErrorClass::User,
            Error::Io { .. }
            | Error::Checkpoint { .. }
            | Error::External(_)
            | Error::Startup(_)
            | Error::PeerFailed { .. } => ErrorClass::External,
            Error::WorkerPanic { .. } => ErrorClass::Internal,
            Error::Step { source, .. } => source.class(),
        }
    }

    /// Wraps the error with the id of the step it was raised in (once).
    pub fn in_step(self, step: &str) -> Self {
        match self {
            e @ Error::Step { .. } => e,
            e => Error::Step {
                step: step.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// The error without the step it was raised in.
    pub fn root(&self) -> &Error {
        match self {
            Error::Step { source, .. } => source.root(),
            e => e,
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
