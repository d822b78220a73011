//! keyflow: keyed, windowed streaming dataflows in Rust, on timely dataflow.
//!
//! This facade re-exports the three library crates:
//! - [`dataflow`]: the event-time DSL and runtime (sources, watermarks,
//!   keyed windows, sinks, run configuration, testing kit);
//! - [`operators`]: reusable operators (rise detection, top-k, distances,
//!   moving averages);
//! - [`jobs`]: the bundled jobs.
//!
//! It also builds the `keyflow` command-line tool.

pub use keyflow_dataflow as dataflow;
pub use keyflow_jobs as jobs;
pub use keyflow_operators as operators;
