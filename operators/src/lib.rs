//! Reusable keyed, windowed operators built on `keyflow-dataflow`.
//! No job-specific code lives here.
//!
//! - [`rise`]: N-window rise detection per key, with a tick per evaluated
//!   boundary;
//! - [`topk`]: the global top-k of each event time, combined per worker
//!   before it is gathered;
//! - [`distance`]: Canberra and Bray-Curtis distances, and ranking keys by
//!   their distance from a baseline;
//! - [`moving_average`]: cumulative moving averages, alone and per key.
//!
//! A complete job: every 10 ms, the articles whose views grew over three
//! 10 ms windows, best first.
//!
//! ```
//! use keyflow_dataflow::prelude::*;
//! use keyflow_dataflow::testing::{capture, Captured};
//! use keyflow_operators::rise::{Rise, RiseConfig, Rising};
//! use keyflow_operators::topk::GlobalTopK;
//!
//! let out = Captured::new();
//! let sink = out.clone();
//! run(&RunConfig::threads(2), move |worker, ctx| {
//!     let sink = sink.clone();
//!     worker.dataflow(|scope| {
//!         let views = IterSource::new("views", 2, |p| {
//!             let title = if p == 0 { "Rust" } else { "Timely" };
//!             (0..30u64).map(move |ms| (ms, (title.to_string(), 1 + ms / 10 * (1 + p as u64))))
//!         });
//!         let config = RiseConfig { window: 10, slide: 10, windows: 3, ..Default::default() };
//!         let rise = source(scope, ctx, views, &SourceConfig::default())?.rise(ctx, "rise", config)?;
//!         let top = rise.rising.top_k_ticked(rise.ticks, ctx, "top", 10, Rising::trending_order);
//!         capture(top, &sink);
//!         Ok(())
//!     })
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
pub mod moving_average;
pub mod rise;
pub mod topk;

pub use distance::{bray_curtis, canberra, rank_against_baseline, Metric, Scored};
pub use error::{Error, Result};
pub use moving_average::{CumulativeAverage, KeyedAverage};
pub use rise::{Rise, RiseConfig, RiseOut, RiseRule, RiseTick, Rising};
pub use topk::{GlobalTopK, TopK};
