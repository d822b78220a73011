//! The partitioned sink: one writer per worker, nothing exchanged.
//!
//! Worker `W` writes part `W`. Its checkpoint part holds a list of
//! `(part, commit point)`: its own part first, then, on worker 0, the parts
//! of a larger earlier run that it finished on restore. A restore collects
//! the lists of every old worker, so each part is found whichever worker
//! carried it:
//! - part `W` below the new worker count is resumed by worker `W`: cut back
//!   to its commit point, then appended to;
//! - a part at or above the new count is finished by worker 0 as it was
//!   committed (cut back to its commit point and closed when the run ends
//!   well, which for a file sink means renamed into place), much as
//!   Flink's file sink commits the in-progress files that a scale-down
//!   hands to the remaining subtasks.
//!   Its point stays in worker 0's checkpoints, so a later restore at more
//!   workers resumes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::writer::{Target, Writer};
use super::{Points, Sink};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use crate::Data;

/// Writes each worker's records of `stream` to the sink that `make(W)`
/// builds for its worker index `W`: the operator behind
/// [`crate::Events::sink_partitioned`].
pub(crate) fn sink_partitioned<'scope, T, S, F>(
    stream: EventStream<'scope, T>,
    ctx: &Arc<Context>,
    step: &str,
    mut make: F,
) -> Result<()>
where
    T: Data + Ord,
    S: Sink<T> + Send,
    F: FnMut(usize) -> Result<S>,
{
    let scope = stream.scope();
    let (index, peers) = (scope.index(), scope.peers());
    let ckpt = ctx.checkpoint_step(index, step, &format!("sink `{step}`"))?;
    let restored = match &ckpt {
        Some(k) => restored_points(k.restored_parts(), step)?,
        None => BTreeMap::new(),
    };
    let mut target = make(index)?;
    if let (Some(point), Some(k)) = (restored.get(&(index as u64)), ckpt.as_ref()) {
        super::restore_sink(&mut target, point, k)?;
    }
    let mut adopted = Vec::new();
    if index == 0 {
        for (&part, point) in restored.range(peers as u64..) {
            if point.is_empty() {
                // Nothing was committed there: nothing to finish.
                continue;
            }
            let mut old = make(part as usize)?;
            if let Some(k) = ckpt.as_ref() {
                super::restore_sink(&mut old, point, k)?;
            }
            old.prepare_close()?;
            ctx.close_later::<T, S>(step, old);
            adopted.push((part, point.clone()));
        }
    }
    let points = Points::Parts {
        part: index as u64,
        adopted,
    };
    let target = Target {
        sink: target,
        ckpt,
        points,
    };
    // With an `Ord` under which equal records are identical (a derived
    // one), an unstable sort writes the same bytes as a stable one, and it
    // is faster.
    let sort = |mut records: Vec<(EventTime, T)>, batch: &mut Vec<(EventTime, T)>| {
        records.sort_unstable();
        *batch = records;
    };
    let mut writer = Writer::start(target, ctx, step, sort)?;
    let counters = ctx.metrics.step(step);
    let mut stash: BTreeMap<EventTime, Vec<(EventTime, T)>> = BTreeMap::new();
    stream.sink(
        Pipeline,
        &format!("SinkPart({step})"),
        move |(input, frontier)| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                Metrics::add(&counters.records_in, data.len() as u64);
                let records = stash.entry(time).or_default();
                if records.is_empty() {
                    std::mem::swap(records, data);
                } else {
                    records.append(data);
                }
            });
            writer.advance(frontier, &mut stash);
        },
    );
    Ok(())
}

/// The commit point of every part in the restored checkpoint, by part.
fn restored_points(parts: &[Vec<u8>], step: &str) -> Result<BTreeMap<u64, Vec<u8>>> {
    let what = format!("commit points of sink `{step}`");
    let mut points = BTreeMap::new();
    for bytes in parts {
        let list: Vec<(u64, Vec<u8>)> = crate::checkpoint::decode(bytes, &what)?;
        for (part, point) in list {
            if points.insert(part, point).is_some() {
                return Err(Error::Checkpoint {
                    path: what.clone().into(),
                    reason: format!("part {part} has two commit points"),
                });
            }
        }
    }
    Ok(points)
}
