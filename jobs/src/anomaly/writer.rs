//! Writing the updated baseline at each day's end, from worker 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::time::EventTime;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::state::ShardSnapshot;
use crate::baseline::Baseline;
use crate::error::Error;

/// A job error as a dataflow error, to stop the job from inside an operator.
pub(crate) fn dataflow_error(error: Error) -> keyflow_dataflow::Error {
    match error {
        Error::Dataflow(e) => e,
        Error::Operator(e) => e.into(),
        Error::Config(message) => keyflow_dataflow::Error::Config(message),
        other => keyflow_dataflow::Error::External(other.to_string()),
    }
}

/// Merges the workers' snapshots of one day end into one baseline.
pub(crate) fn merge(snapshots: Vec<ShardSnapshot>) -> std::result::Result<Baseline, String> {
    let mut base = Baseline::empty();
    let mut first = true;
    for snap in snapshots {
        if first {
            (base.days, base.first_day, base.last_day) = (snap.days, snap.first_day, snap.last_day);
            first = false;
        } else if (base.days, base.first_day, base.last_day)
            != (snap.days, snap.first_day, snap.last_day)
        {
            return Err(format!(
                "workers disagree on the days averaged: {} and {}",
                base.days, snap.days
            ));
        }
        for (article, hours) in snap.keys {
            if base.keys.insert(article.clone(), hours).is_some() {
                return Err(format!("`{article}` is tracked by two workers"));
            }
        }
    }
    Ok(base)
}

/// Gathers the snapshots of each day end on worker 0 and, once every
/// worker's has arrived, writes them as one baseline file to `path`,
/// atomically. A failed write stops the job.
pub(crate) fn write_baselines(
    snapshots: EventStream<'_, ShardSnapshot>,
    ctx: &Arc<Context>,
    path: PathBuf,
) {
    let ctx = Arc::clone(ctx);
    let mut pending: BTreeMap<EventTime, Vec<ShardSnapshot>> = BTreeMap::new();
    let mut failed = false;
    snapshots.sink(
        Exchange::new(|_: &(EventTime, ShardSnapshot)| 0),
        "AnomalyBaselineWriter",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (t, snap) in data.drain(..) {
                    pending.entry(t).or_default().push(snap);
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let snapshots = entry.remove();
                if failed {
                    continue;
                }
                let written = merge(snapshots)
                    .map_err(|reason| Error::Format {
                        path: path.clone(),
                        reason: format!("internal error: {reason}"),
                    })
                    .and_then(|base| base.write_atomic(&path));
                if let Err(e) = written {
                    failed = true;
                    ctx.fail(dataflow_error(e));
                }
            }
        },
    );
}
