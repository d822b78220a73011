//! Reusable keyed, windowed operators built on `keyflow-dataflow`.
//! No job-specific code lives here.
//!
//! - [`rise`]: N-window rise detection per key, with a tick per evaluated
//!   boundary, and optionally allowed lateness, under which late records
//!   update the boundaries they change and [`RiseOut::top_k`] re-ranks them;
//! - [`topk`]: the global top-k of each event time, combined per worker
//!   before it is gathered;
//! - [`distance`]: Canberra and Bray-Curtis distances, and ranking keys by
//!   their distance from a baseline;
//! - [`moving_average`]: cumulative moving averages, alone and per key;
//! - [`process`]: keyed process functions, per-key state machines driven by
//!   records and event-time timers (Flink's `KeyedProcessFunction`);
//! - [`rate_alert`]: alerts when a series grows by more than a percentage
//!   over a window.
//! - [`exact_sum`]: a float sum that is the same in any order, for
//!   aggregations whose results must not depend on the number of workers.
//!
//! A complete job: every 10 ms, the articles whose views grew over three
//! 10 ms windows, best first.
//!
//! ```
//! use keyflow_dataflow::prelude::*;
//! use keyflow_dataflow::testing::Captured;
//! use keyflow_operators::prelude::*;
//!
//! let out = Captured::new();
//! let into = out.clone();
//! run(&RunConfig::threads(2), move |flow| {
//!     let views = IterSource::new("views", 2, |p| {
//!         let title = if p == 0 { "Rust" } else { "Timely" };
//!         (0..30u64).map(move |ms| (ms, (title.to_string(), 1 + ms / 10 * (1 + p as u64))))
//!     });
//!     let rise = flow.source("views", views, &SourceConfig::default())?.rise("rise", RiseConfig::new(10, 10, 3)?);
//!     let best = |a: &Rising<String>, b: &Rising<String>| b.growth().cmp(&a.growth());
//!     rise.rising.top_k_ticked("top", rise.ticks, 10, best).capture(&into);
//!     Ok(())
//! })
//! .unwrap();
//! let at_30: Vec<_> = out
//!     .sorted()
//!     .into_iter()
//!     .filter(|(t, _)| *t == 30)
//!     .flat_map(|(_, top)| top.top.into_iter().map(|r| (r.key, r.counts)))
//!     .collect();
//! assert_eq!(
//!     at_30,
//!     vec![("Timely".to_string(), vec![10, 30, 50]), ("Rust".to_string(), vec![10, 20, 30])]
//! );
//! ```

pub mod distance;
pub mod error;
pub mod exact_sum;
pub mod moving_average;
pub mod process;
pub mod rate_alert;
pub mod rise;
pub mod topk;

pub use distance::{bray_curtis, canberra, rank_against_baseline, Metric, Scored};
pub use error::{Error, Result};
pub use exact_sum::ExactSum;
pub use moving_average::{CumulativeAverage, KeyedAverage};
pub use process::{KeyedProcess, ProcessContext, ProcessFunction, ProcessOut, ProcessState};
pub use rate_alert::{Percent, RateAlert, RateChange, RateWatch};
pub use rise::{Rise, RiseConfig, RiseOut, RiseRule, RiseTick, Rising};
pub use topk::{GlobalTopK, TopK};

/// The operator traits and their configuration types, for `use
/// keyflow_operators::prelude::*` beside the dataflow prelude.
pub mod prelude {
    pub use crate::process::{KeyedProcess, ProcessContext, ProcessFunction};
    pub use crate::rise::{Rise, RiseConfig, RiseOut, RiseRule, RiseTick, Rising};
    pub use crate::topk::{GlobalTopK, TopK};
}
