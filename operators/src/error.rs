//! The one error type of the `keyflow-operators` crate.

/// Errors of the reusable operators.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two vectors that must have the same length do not.
    #[error("vector lengths differ: {left} and {right}")]
    LengthMismatch {
        /// Length of the first vector.
        left: usize,
        /// Length of the second vector.
        right: usize,
    },
    /// A value that must be a number is NaN.
    #[error("NaN at index {index}")]
    NaN {
        /// Where the NaN is.
        index: usize,
    },
    /// A value that must be finite is infinite.
    #[error("infinite value at index {index}")]
    Infinite {
        /// Where the infinite value is.
        index: usize,
    },
    /// An operator parameter is invalid; the message names it.
    #[error("invalid operator parameter: {0}")]
    Config(String),
    /// An error of the dataflow layer.
    #[error(transparent)]
    Dataflow(#[from] keyflow_dataflow::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lets an operator's error end a job: `?` inside a `run` closure.
impl From<Error> for keyflow_dataflow::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Dataflow(e) => e,
            Error::Config(message) => keyflow_dataflow::Error::Config(message),
            data @ (Error::LengthMismatch { .. } | Error::NaN { .. } | Error::Infinite { .. }) => {
                keyflow_dataflow::Error::BadInput {
                    location: "operator input".into(),
                    reason: data.to_string(),
                }
            }
        }
    }
}
