//! Reusable keyed, windowed operators built on `keyflow-dataflow`.
//! No job-specific code lives here.

pub mod error;

pub use error::{Error, Result};
