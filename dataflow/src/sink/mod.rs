//! Sinks: where results go, written exactly once and in a stable order.
//!
//! The [`sink`] operator gathers a stream on worker 0 of the cluster and
//! hands it over one complete timestamp at a time, sorted, once the frontier
//! has passed that time. So every result is written once, by one writer, and
//! the file is byte for byte the same at any number of workers and processes.

mod jsonl;

use std::io::Write;
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use crate::Data;

pub use jsonl::{remove_stale_temps, remove_temporary_files, temp_name, JsonLinesSink};

/// Something that takes a job's results.
pub trait Sink<T>: 'static {
    /// Takes every record of one complete event time, sorted.
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()>;

    /// Called once when the stream ends: flush and close.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes everything written so far durable and returns the commit
    /// point a restore cuts the output back to. Called at each checkpoint
    /// epoch, after every time below it was written. The default (for
    /// sinks whose writes are idempotent or that cannot take anything back,
    /// such as a terminal) records nothing.
    fn commit(&mut self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Resumes from a commit point returned by [`Sink::commit`] in an
    /// earlier run, before anything is written.
    fn restore(&mut self, _point: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Writes `stream` to the sink that `make` builds: the operator behind
/// [`crate::Events::sink`]. Only worker 0 of the cluster calls `make` (at
/// build time, so a bad path fails before any work) and writes; the other
/// workers forward their records to it.
pub(crate) fn sink_stream<'scope, T, S, F>(
    stream: EventStream<'scope, T>,
    ctx: &Arc<Context>,
    step: &str,
    make: F,
) -> Result<()>
where
    T: Data + Ord,
    S: Sink<T>,
    F: FnOnce() -> Result<S>,
{
    let worker = stream.scope().index();
    let mut ckpt = if worker == 0 {
        ctx.checkpoint_step(worker, step, &format!("sink `{step}`"))?
    } else {
        None
    };
    let mut target = if worker == 0 {
        let mut target = make()?;
        if let Some(point) = ckpt.as_ref().and_then(|k| k.restored_parts().first()) {
            target.restore(point)?;
        }
        Some(target)
    } else {
        None
    };
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(step);
    let step = step.to_string();
    let mut builder = OperatorBuilder::new(format!("Sink({step})"), stream.scope());
    let mut input = builder.new_input(stream, Exchange::new(|_: &(EventTime, T)| 0));
    builder.build(move |_| {
        let mut stash: std::collections::BTreeMap<EventTime, Vec<(EventTime, T)>> =
            std::collections::BTreeMap::new();
        let mut closed = false;
        move |frontiers| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    Metrics::add(&counters.records_in, data.len() as u64);
                    stash.entry(time).or_default().append(data);
                }
            });
            let Some(sink) = target.as_mut() else {
                stash.clear();
                return;
            };
            let frontier = &frontiers[0];
            let mut epochs = ckpt
                .as_mut()
                .map(|k| k.clock().passed_frontier(frontier))
                .unwrap_or_default()
                .into_iter()
                .peekable();
            let mut outcome = Ok(());
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let time = *entry.key();
                while let Some(epoch) = epochs.next_if(|e| *e <= time) {
                    outcome = outcome.and_then(|()| commit(sink, ckpt.as_ref(), epoch));
                }
                let mut records = entry.remove();
                records.sort();
                outcome = outcome.and_then(|()| sink.write(time, &records));
                if outcome.is_err() {
                    break;
                }
            }
            for epoch in epochs {
                outcome = outcome.and_then(|()| commit(sink, ckpt.as_ref(), epoch));
            }
            if let Err(e) = outcome {
                ctx.fail(e.in_step(&step));
                target = None;
                return;
            }
            if frontier.is_empty() && !closed {
                closed = true;
                if let Err(e) = sink.close() {
                    ctx.fail(e.in_step(&step));
                }
            }
        }
    });
    Ok(())
}

fn commit<T, S: Sink<T>>(
    sink: &mut S,
    ckpt: Option<&crate::checkpoint::StepCheckpoint>,
    epoch: EventTime,
) -> Result<()> {
    match ckpt {
        Some(k) => k.save(epoch, sink.commit()?),
        None => Ok(()),
    }
}

/// Prints each record on stdout with a formatting function of its event
/// time and the record.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
///
/// run(&RunConfig::threads(2), |flow| {
///     let input = IterSource::new("n", 1, |_| (1..=3u64).map(|i| (i * SECOND, i)));
///     flow.source("n", input, &SourceConfig::default())?
///         .sink("print", || Ok(StdoutSink(|ts, n: &u64| format!("{ts} ms: {n}"))))
/// })
/// .unwrap();
/// ```
pub struct StdoutSink<F>(pub F);

impl<T, F> Sink<T> for StdoutSink<F>
where
    F: FnMut(EventTime, &T) -> String + 'static,
{
    fn write(&mut self, _time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (ts, record) in records {
            // A closed pipe (`| head`) is not a job failure worth a panic.
            if writeln!(out, "{}", (self.0)(*ts, record)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}
