//! keyflow's dataflow layer: an event-time DSL and runtime on timely dataflow.
//!
//! Event time is the timely timestamp. Sources hold capabilities at their
//! partitions' watermarks, so a stream's frontier is event-time progress and
//! a window fires exactly when progress passes its end. Keyed, windowed
//! aggregations combine records locally, exchange them on a stable hash of
//! the key, and merge them in operators whose state is serializable.
//!
//! A complete job: count words per 10-second window.
//!
//! ```
//! use keyflow_dataflow::prelude::*;
//! use keyflow_dataflow::testing::Captured;
//!
//! let out = Captured::new();
//! let into = out.clone();
//! run(&RunConfig::threads(2), move |flow| {
//!     let words = IterSource::new("words", 2, |p| {
//!         let text = if p == 0 { "a b a" } else { "b c" };
//!         text.split(' ').enumerate().map(|(i, w)| (i as u64 * 4 * SECOND, w)).collect::<Vec<_>>().into_iter()
//!     });
//!     let counts = flow
//!         .source("words", words, &SourceConfig::default())?
//!         .key_by(|w| (w.to_string(), ()))
//!         .window(WindowSpec::tumbling(10 * SECOND)?)
//!         .count("counts");
//!     counts.results.map(|r| (r.key, r.value)).capture(&into);
//!     Ok(())
//! })
//! .unwrap();
//! let counts: Vec<_> = out.sorted().into_iter().map(|(_, kv)| kv).collect();
//! assert_eq!(counts, vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 1)]);
//! ```
//!
//! [`prelude`] holds what a job usually needs; [`timely`] is re-exported so
//! that a job mixing raw timely operators into a chain uses the same version.

#[cfg(feature = "clap")]
pub mod args;
pub mod checkpoint;
pub mod error;
pub mod explain;
pub mod flow;
pub mod hash;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod late;
mod merge;
pub mod mesh;
pub mod metrics;
pub mod run;
pub mod sink;
pub mod source;
pub mod testing;
pub mod time;
mod update_field;
pub mod window;

pub use error::{Error, ErrorClass, Result};
pub use flow::{Dataflow, Events};
pub use hash::stable_hash;
/// The Redis client the Redis sink and stream source use.
#[cfg(feature = "redis")]
pub use redis;
/// For [`serialize_with_update!`].
#[doc(hidden)]
pub use serde as __serde;
pub use timely;

/// Records that can cross workers and processes (serializable, cloneable,
/// printable in errors).
pub trait Data: timely::ExchangeData + Clone + std::fmt::Debug {}
impl<T: timely::ExchangeData + Clone + std::fmt::Debug> Data for T {}

/// Key types: hashable (stably), comparable, and able to cross processes.
pub trait Key: Data + std::hash::Hash + Eq + Ord {}
impl<T: Data + std::hash::Hash + Eq + Ord> Key for T {}

/// Everything a job definition usually needs.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::flow::{Dataflow, Events};
    pub use crate::run::{run, Context, RunConfig};
    pub use crate::sink::{Encoded, JsonLinesSink, MapSink, Sink, StdoutSink};
    pub use crate::source::{
        BadInputPolicy, CsvSource, IterSource, JsonLinesSource, ReadAheadWhen, Source, SourceConfig,
    };
    pub use crate::time::{EventTime, Window, DAY, HOUR, MINUTE, SECOND};
    pub use crate::window::{
        Aggregator, Count, Fold, Keyed, Lateness, Reduce, Sum, SumValue, WindowOut, WindowResult,
        WindowSpec, Windowed,
    };
    pub use crate::{Data, Key};
}
