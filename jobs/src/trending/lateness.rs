//! The minute ranking under allowed lateness `d`: late events re-emit the
//! minutes they change, marked as updates.
//!
//! **What counts.** An event at `ts` lies in the span of the boundaries `T`
//! with `ts < T <= ts + span`. An on-time event counts for all of them. A
//! late event read at time `t` (its partition's watermark, above `ts`)
//! counts for those still ahead (`T > t`) or still open (`T + d > t`); if
//! there is none it is dropped and counted in `late_dropped`. A boundary is
//! evaluated when some event counts for it.
//!
//! **What is emitted.** Each evaluated `T` yields one minute at time `T`
//! once progress reaches `T`, exactly as the normal path does. Each batch of
//! late events read at `t` re-evaluates the open boundaries `T <= t` it
//! counts for and re-emits each of them once, at time `t` (event time `T`),
//! with `update: true`: the ranking over every event counted so far. A batch
//! read at `t == T` folds into `T`'s first minute. Updates are counted in
//! `late_updates`.
//!
//! **Determinism.** A late batch is applied only once its time `t` is
//! complete, and after every boundary at or below `t` has been evaluated
//! (the trick of keyflow's windowed operators), so the output is the same
//! whatever the scheduling and the number of workers.
//!
//! **How.** Views are summed per article and pane on each worker before the
//! keyed exchange; late events cross it whole. The keyed operator
//! ([`state::KeyedMinutes`]) keeps pane views for `span + d` and, per
//! evaluated boundary still open, the set of its articles that pass; a late
//! batch re-checks only the articles it touched. Each worker sends its
//! ranking of a boundary (count and local top k) to worker 0
//! ([`ranking::Rankings`]), or, on an update that changed nothing there, only
//! the boundary's name; worker 0 merges the latest ranking of every worker.

mod operators;
mod ranking;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::EventStream;
use keyflow_operators::rise::RiseRule;

use super::{TrendingConfig, TrendingMinute};
use crate::error::Result;
use crate::pageviews::PageView;

/// The stable id of the lateness path's operators.
const ID: &str = "trending-late";

/// The geometry and rule of the ranking, in panes of one slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Pane (and slide) length in ms.
    pub slide: u64,
    /// Panes per window.
    pub per_window: u64,
    /// Number of windows N.
    pub windows: usize,
    /// Allowed lateness `d` in ms.
    pub lateness: u64,
    /// The rise rule over `c1..cN`.
    pub rule: RiseRule,
    /// The least `c1` of a passing article.
    pub min_first: u64,
    /// Entries listed per minute; 0 lists all.
    pub top: usize,
}

impl Params {
    /// The parameters of `config` with allowed lateness `lateness` ms,
    /// checked as the rise operator checks them.
    pub(crate) fn new(config: &TrendingConfig, lateness: u64) -> Result<Self> {
        let rise = config.rise_config();
        rise.validate()?;
        Ok(Params {
            slide: rise.slide,
            per_window: rise.window / rise.slide,
            windows: rise.windows,
            lateness,
            rule: rise.rule,
            min_first: rise.min_first,
            top: config.top,
        })
    }

    /// Panes in the span of the N windows.
    pub(crate) fn span(&self) -> u64 {
        self.per_window * self.windows as u64
    }
}

/// The per-minute ranking with allowed lateness `d`
/// (`config.lateness == Lateness::Allowed(d)`), over all events, late ones
/// included: see the module docs.
///
/// # Panics
/// If `config.lateness` is not `Allowed`: [`super::trending`] routes the
/// other policies to the normal path.
pub(super) fn minutes_with_updates<'scope>(
    events: EventStream<'scope, PageView>,
    ctx: &Arc<Context>,
    config: &TrendingConfig,
) -> Result<EventStream<'scope, TrendingMinute>> {
    let Lateness::Allowed(d) = config.lateness else {
        panic!(
            "minutes_with_updates needs allowed lateness, not {:?}",
            config.lateness
        );
    };
    ctx.refuse_checkpoints("trending with allowed lateness")?;
    let params = Params::new(config, d)?;
    let pieces = operators::pre_aggregate(events, ID, params.slide);
    let local = operators::keyed_minutes(pieces, ctx, ID, params);
    Ok(operators::rank_minutes(local, ctx, ID, params))
}
