//! Rise detection under allowed lateness `d`
//! ([`super::RiseConfig::with_allowed_lateness`]): late records re-evaluate the
//! boundaries they change, and [`RiseOut::top_k`] ranks those again as
//! updates.
//!
//! **What counts.** A record at `ts` lies in the span of the boundaries `T`
//! with `ts < T <= ts + span` (in whole panes). An on-time record counts
//! for all of them. A late record read at time `t` (above `ts`) counts for
//! those still ahead (`T > t`) or still open (`T + d > t`); if there is
//! none it is dropped and counted in `late_dropped`. A boundary is
//! evaluated when some record counts for it.
//!
//! **What is emitted.** Each evaluated `T` has its first evaluation at time
//! `T` once progress reaches `T`, exactly as without lateness: its passing
//! keys in `rising` and a tick in `ticks`. Each batch of late records read
//! at `t` re-evaluates the open boundaries `T <= t` it counts for, once
//! each, at time `t`: [`RiseOut::top_k`] then ranks `T` again over every
//! record counted so far, with `update: true`, and `late_updates` counts
//! it. A batch read at `t == T` folds into `T`'s first ranking. The
//! re-evaluations reach no other output: `rising` and `ticks` carry first
//! evaluations only.
//!
//! **Determinism.** A late batch is applied only once its time `t` is
//! complete, and after every boundary at or below `t` has been evaluated,
//! so the output is the same whatever the scheduling and the number of
//! workers.
//!
//! **How.** Weights are summed per key and pane on each worker before the
//! keyed exchange; late records cross it whole. The keyed operator keeps
//! pane weights for `span + d` and, per evaluated boundary still open, the
//! keys that pass there; a late batch re-checks only the keys it touched.
//! For each evaluation the worker sends a [`Revision`]: its passing keys of
//! the boundary, or, for an update that changed nothing there, only the
//! boundary. The ranking cuts each to its best `k` on the worker and keeps
//! the latest of every worker on worker 0.
//!
//! **Checkpoints.** The keyed state (pane weights, passing sets, the
//! boundaries considered) is written at each epoch `E` as a chain of
//! change logs over a full snapshot, as the state without lateness is: all
//! input below `E` applied, nothing at or after it. A late batch read below
//! `E` is complete by then and applied, so none is pending in a checkpoint.

mod log;
mod operator;
mod ranking;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::{Events, Key};
use serde::{Deserialize, Serialize};

pub(crate) use ranking::rank;

use super::pre::pre_aggregate;
use super::state::Geometry;
use super::{RiseOut, Rising};

/// Why a worker sends its passing set of a boundary. The order is the
/// order in which news of one boundary at one time apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Reason {
    /// After a restore, the set as of the checkpoint: worker 0 takes it in
    /// and emits nothing.
    Restate,
    /// The boundary's first evaluation, at the boundary's time.
    First,
    /// A re-evaluation for late records, at the time they were read.
    Update,
}

/// One worker's news about one boundary (the record's event time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Revision<K> {
    /// The worker that owns the keys.
    pub worker: usize,
    /// Why it is sent.
    pub reason: Reason,
    /// Every key of the worker that passes at the boundary now, or `None`
    /// when an update changed nothing there.
    pub passing: Option<Vec<Rising<K>>>,
}

/// One worker's tick of a boundary (the record's event time): how many of
/// its keys passed at the first evaluation, or `None` for an update.
pub(crate) type LocalTick = Option<u64>;

/// The revisions of a rise operator under allowed lateness, for ranking.
pub(crate) struct Corrections<'scope, K> {
    /// Every worker's [`Revision`]s.
    pub revisions: EventStream<'scope, Revision<K>>,
    /// The allowed lateness, in ms.
    pub lateness: u64,
}

/// Wires rise detection with allowed lateness `lateness` ms over `events`.
#[allow(clippy::too_many_arguments)]
pub(super) fn build<'scope, K: Key, P>(
    events: Events<'scope, (K, u64)>,
    ctx: &Arc<Context>,
    step: &str,
    geo: Geometry,
    lateness: u64,
    min_first: u64,
    predicate: P,
) -> keyflow_dataflow::Result<RiseOut<'scope, K>>
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let flow = events.flow().clone();
    let partials = pre_aggregate(events.inner(), ctx, step, geo.slide, true);
    let (revisions, local) =
        operator::late_rise(partials, ctx, step, geo, lateness, min_first, predicate)?;
    let rising = flow
        .wrap(revisions.clone())
        .flat_map(|rev: Revision<K>| match rev.reason {
            Reason::First => rev.passing.unwrap_or_default(),
            Reason::Restate | Reason::Update => Vec::new(),
        });
    Ok(RiseOut {
        rising,
        ticks: flow.wrap(operator::gather_ticks(local, ctx, step)),
        late: Some(Corrections {
            revisions,
            lateness,
        }),
    })
}
