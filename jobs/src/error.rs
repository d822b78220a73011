//! The one error type of the `keyflow-jobs` crate.

/// Errors of the bundled jobs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the dataflow layer (config, I/O, a failed worker...).
    #[error(transparent)]
    Dataflow(#[from] keyflow_dataflow::Error),
    /// An error of a reusable operator.
    #[error(transparent)]
    Operator(#[from] keyflow_operators::Error),
    /// A job configuration value is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A data file (baseline, dump) is damaged or of another version.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Who is at fault.
    pub fn class(&self) -> keyflow_dataflow::ErrorClass {
        match self {
            Error::Dataflow(e) => e.class(),
            Error::Operator(_) => keyflow_dataflow::ErrorClass::Internal,
            Error::Config(_) | Error::Format { .. } => keyflow_dataflow::ErrorClass::User,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lets job errors cross a `keyflow_dataflow::run` closure with `?`.
impl From<Error> for keyflow_dataflow::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Dataflow(inner) => inner,
            Error::Config(msg) => keyflow_dataflow::Error::Config(msg),
            other => keyflow_dataflow::Error::External(other.to_string()),
        }
    }
}
