//! keyflow: keyed, windowed streaming dataflows in Rust, on timely dataflow.
//!
//! This facade re-exports the library crates:
//! - [`dataflow`]: the event-time DSL and runtime (sources, watermarks,
//!   keyed windows, sinks, run configuration, checkpoints, testing kit);
//! - [`operators`]: reusable operators (rise detection, top-k, distances,
//!   moving averages);
//! - `jobs`: the bundled jobs (feature `jobs`, on by default);
//! - [`timely`] and `differential_dataflow` (feature `differential`), so a
//!   job that mixes in raw timely or differential operators uses the same
//!   versions keyflow does.
//!
//! With default features it also builds the `keyflow` command-line tool. A
//! custom job that needs only the DSL and the operators depends on
//! `keyflow` with `default-features = false` (add `features = ["args"]` for
//! the standard cluster flags, [`dataflow::args::ClusterArgs`]).
//!
//! [`prelude`] holds what a job usually needs from both crates.

pub use keyflow_dataflow as dataflow;
#[cfg(feature = "jobs")]
pub use keyflow_jobs as jobs;
pub use keyflow_operators as operators;

pub use timely;

#[cfg(feature = "differential")]
pub use differential_dataflow;

/// The dataflow and operator preludes together: `use keyflow::prelude::*`.
pub mod prelude {
    pub use keyflow_dataflow::prelude::*;
    pub use keyflow_operators::prelude::*;
}
