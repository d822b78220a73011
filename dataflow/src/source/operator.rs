//! The timely operator that reads partitions and holds event-time progress.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source as timely_source;
use timely::dataflow::Scope;

use super::watermark::{PartitionClock, Verdict};
use super::{BadInputPolicy, Batch, EventStream, Partition, PollStatus, Source, SourceConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::run::Context;
use crate::time::EventTime;

struct Reader<T> {
    index: usize,
    partition: Box<dyn Partition<T>>,
    clock: PartitionClock,
    done: bool,
}

/// Reads `src` on every worker of the dataflow and returns its event stream.
///
/// Each worker opens the partitions `p` with `p % peers == index`. The
/// operator holds a capability at the least watermark of its partitions that
/// are neither exhausted nor idle, so the stream's frontier is event-time
/// progress; an exhausted worker drops its capability, which lets every
/// window of a bounded input fire. Late records travel at their partition's
/// watermark, which is above their event time: that is how every later
/// operator recognizes them.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::{capture, Captured};
///
/// let out = Captured::new();
/// let sink = out.clone();
/// run(&RunConfig::threads(1), move |worker, ctx| {
///     let sink = sink.clone();
///     worker.dataflow(|scope| {
///         let input = IterSource::new("numbers", 1, |_| (0..3u64).map(|i| (i * 1000, i)));
///         let events = source(scope, ctx, input, &SourceConfig::default())?;
///         capture(events, &sink);
///         Ok(())
///     })
/// })
/// .unwrap();
/// assert_eq!(out.sorted(), vec![(0, 0), (1000, 1), (2000, 2)]);
/// ```
pub fn source<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &Arc<Context>,
    src: S,
    config: &SourceConfig,
) -> Result<EventStream<'scope, S::Item>> {
    config.validate()?;
    let peers = scope.peers();
    let index = scope.index();
    let name = src.name();
    let mut readers = Vec::new();
    for p in (0..src.partitions()).filter(|p| p % peers == index) {
        readers.push(Reader {
            index: p,
            partition: src.open(p)?,
            clock: PartitionClock::new(config.max_out_of_orderness, config.max_future),
            done: false,
        });
    }
    let ctx = Arc::clone(ctx);
    let config = config.clone();
    let op_name = format!("Source({name})");
    let stream = timely_source::<_, CapacityContainerBuilder<Vec<(EventTime, S::Item)>>, _, _>(
        scope,
        &op_name,
        move |capability, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(capability);
            let mut batch = Batch::new(config.batch);
            let mut late = Vec::new();
            let mut finished_watermark = 0;
            let mut bad_seen = 0u64;
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                if ctx.is_aborted() {
                    cap = None;
                    return;
                }
                let now = Instant::now();
                let mut busy = false;
                for reader in readers.iter_mut() {
                    batch.clear();
                    let status = match reader.partition.poll(&mut batch) {
                        Ok(status) => status,
                        Err(e) => {
                            ctx.fail(e);
                            cap = None;
                            return;
                        }
                    };
                    Metrics::add(&ctx.metrics.skipped, batch.skipped);
                    for bad in batch.bad.drain(..) {
                        match config.bad_input {
                            BadInputPolicy::Fail => {
                                ctx.fail(Error::BadInput {
                                    location: bad.location,
                                    reason: bad.reason,
                                });
                                cap = None;
                                return;
                            }
                            BadInputPolicy::Drop => {
                                bad_seen += 1;
                                Metrics::add(&ctx.metrics.bad, 1);
                                // A sample, not a flood: the first few, then
                                // one in ten thousand.
                                if bad_seen <= 5 || bad_seen.is_multiple_of(10_000) {
                                    tracing::warn!(
                                        source = %name,
                                        location = %bad.location,
                                        "skipped malformed record ({} so far): {}",
                                        bad_seen,
                                        bad.reason
                                    );
                                }
                            }
                        }
                    }
                    if !batch.records.is_empty() {
                        busy = true;
                        reader.clock.note_active(*c.time());
                        Metrics::add(&ctx.metrics.events, batch.records.len() as u64);
                    } else if status == PollStatus::Idle {
                        reader.clock.note_idle(now);
                    }
                    if status == PollStatus::Ready {
                        busy = true;
                    }
                    let mut future = 0;
                    let mut session = output.session(&*c);
                    for (ts, item) in batch.records.drain(..) {
                        match reader.clock.observe(ts) {
                            Verdict::OnTime => session.give((ts, item)),
                            Verdict::Late(at) => late.push((at, ts, item)),
                            Verdict::Future => future += 1,
                        }
                    }
                    drop(session);
                    if future > 0 {
                        Metrics::add(&ctx.metrics.future, future);
                        tracing::warn!(
                            source = %name,
                            partition = reader.index,
                            "rejected {future} records too far ahead of the watermark"
                        );
                    }
                    if status == PollStatus::Done {
                        reader.done = true;
                    }
                }
                if !late.is_empty() {
                    late.sort_by_key(|(at, _, _)| *at);
                    let mut rest = late.drain(..).peekable();
                    while let Some((at, ts, item)) = rest.next() {
                        let late_cap = c.delayed(&at);
                        let mut session = output.session(&late_cap);
                        session.give((ts, item));
                        while let Some((_, ts, item)) = rest.next_if(|(a, _, _)| *a == at) {
                            session.give((ts, item));
                        }
                    }
                }
                for reader in readers.iter().filter(|r| r.done) {
                    finished_watermark = finished_watermark.max(reader.clock.watermark());
                }
                readers.retain(|r| !r.done);
                let highest = readers
                    .iter()
                    .map(|r| r.clock.watermark())
                    .max()
                    .unwrap_or(0)
                    .max(finished_watermark);
                ctx.metrics.raise_watermark(highest);
                if readers.is_empty() {
                    cap = None;
                    return;
                }
                let active_min = readers
                    .iter()
                    .filter(|r| !r.clock.is_idle(now, config.idle_timeout))
                    .map(|r| r.clock.watermark())
                    .min();
                // With every partition idle, follow the most advanced
                // watermark in this process rather than hold progress back.
                let target = active_min
                    .unwrap_or_else(|| highest.max(ctx.metrics.watermark.load(Ordering::Relaxed)));
                if target > *c.time() {
                    c.downgrade(&target);
                }
                if busy {
                    activator.activate();
                } else {
                    let nap = config
                        .idle_timeout
                        .map(|t| t / 4)
                        .unwrap_or(Duration::from_millis(10))
                        .clamp(Duration::from_millis(1), Duration::from_millis(50));
                    activator.activate_after(nap);
                }
            }
        },
    );
    Ok(stream)
}
