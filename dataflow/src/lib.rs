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
//! use keyflow_dataflow::testing::{capture, Captured};
//!
//! let out = Captured::new();
//! let sink = out.clone();
//! run(&RunConfig::threads(2), move |worker, ctx| {
//!     let sink = sink.clone();
//!     worker.dataflow(|scope| {
//!         let words = IterSource::new("words", 2, |p| {
//!             let text = if p == 0 { "a b a" } else { "b c" };
//!             text.split(' ').enumerate().map(|(i, w)| (i as u64 * 4_000, w)).collect::<Vec<_>>().into_iter()
//!         });
//!         let counts = source(scope, ctx, words, &SourceConfig::default())?
//!             .key_by("word", |w| (w.to_string(), ()))
//!             .window(WindowSpec::tumbling(10_000))
//!             .count(ctx, "counts")?;
//!         capture(counts.results, &sink);
//!         Ok(())
//!     })
//! })
//! .unwrap();
//! let counts: Vec<_> = out.sorted().into_iter().map(|(_, r)| (r.key, r.value)).collect();
//! assert_eq!(counts, vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 1)]);
//! ```

pub mod checkpoint;
pub mod error;
pub mod explain;
pub mod handshake;
pub mod hash;
pub mod late;
pub mod metrics;
pub mod run;
pub mod sink;
pub mod source;
pub mod testing;
pub mod time;
pub mod window;

pub use error::{Error, ErrorClass, Result};
pub use hash::stable_hash;

/// Everything a job definition usually needs.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::late::SplitLate;
    pub use crate::run::{run, Context, RunConfig};
    pub use crate::sink::{sink, JsonLinesSink, Sink, StdoutSink};
    pub use crate::source::{
        source, BadInputPolicy, EventStream, IterSource, JsonLinesSource, Source, SourceConfig,
    };
    pub use crate::time::{EventTime, Window, DAY, HOUR, MINUTE};
    pub use crate::window::{
        Aggregator, Count, KeyBy, Keyed, Lateness, WindowOut, WindowResult, WindowSpec, Windowed,
    };
}
