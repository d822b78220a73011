//! The single-writer sink: sorted runs on every worker, merged by the
//! writer beside worker 0, or from [`RANGES_FROM`] workers on by the
//! workers, a range each (`ranges.rs`), and joined by the writer.
//!
//! Sorting is the expensive part of ordered output, so every worker sorts
//! its own records of each complete time, and the writer only merges the
//! runs, on its own thread (`writer.rs`). A run crosses workers as one
//! record of the exchange (its vector is moved between threads of a
//! process, and serialized whole inside one message between processes),
//! not as one exchanged record per result.

use std::collections::BTreeMap;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::ranges::{join_parts, merged_ranges};
use super::writer::{Target, Writer};
use super::{Points, Sink};
use crate::error::Result;
use crate::merge::pairwise;
use crate::metrics::{Metrics, StepMetrics};
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use crate::Data;

/// One worker's records of one complete time, sorted.
type Run<T> = Vec<(EventTime, T)>;

/// Writes `stream` to the sink that `make` builds: the operator behind
/// [`crate::Events::sink`]. Only worker 0 of the cluster calls `make` (at
/// build time, so a bad path fails before any work) and writes; every
/// worker sorts its records of each complete time into one run, and
/// either sends it to worker 0 or, from [`RANGES_FROM`] workers on, takes
/// part in merging the runs by range.
pub(crate) fn sink_stream<'scope, T, S, F>(
    stream: EventStream<'scope, T>,
    ctx: &Arc<Context>,
    step: &str,
    make: F,
) -> Result<()>
where
    T: Data + Ord,
    S: Sink<T> + Send,
    F: FnOnce() -> Result<S>,
{
    let (index, peers) = (stream.scope().index(), stream.scope().peers());
    // Built after the writer, so that a bad path fails before any operator.
    let runs = || sorted_runs(stream, ctx.metrics.step(step), step);
    if peers < RANGES_FROM {
        let writer = single_writer(index, ctx, step, make, merge_runs)?;
        to_writer(runs(), writer, step);
    } else {
        let writer = single_writer(index, ctx, step, make, join_parts)?;
        to_writer(merged_ranges(runs(), step), writer, step);
    }
    Ok(())
}

/// From this many workers on, the workers merge the runs by range and the
/// writer only joins the ranges ([`merged_ranges`]). Cutting and joining
/// move every record twice more, spread over the workers, and save the
/// writer a merge pass per doubling of the workers: nothing at 2 workers,
/// and from 4 on a gain wherever the writer formats its records
/// (BENCHMARKS.md, *Ordered output merged by range on the workers*).
const RANGES_FROM: usize = 4;

/// Sends every worker's parts of each time to worker 0, which stashes them
/// until the frontier passes the time, then hands them to `writer`.
fn to_writer<'scope, X: Data>(
    parts: Stream<'scope, EventTime, Vec<X>>,
    mut writer: Writer<Vec<X>>,
    step: &str,
) {
    // Parts by time, until the frontier passes it: then every worker's
    // part of that time is here.
    let mut stash: BTreeMap<EventTime, Vec<X>> = BTreeMap::new();
    parts.sink(
        Exchange::new(|_: &X| 0),
        &format!("Sink({step})"),
        move |(input, frontier)| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    stash.entry(time).or_default().append(data);
                }
            });
            writer.advance(frontier, &mut stash);
        },
    );
}

/// The writer of a single-writer sink: on worker 0, the sink that `make`
/// builds (at build time, so a bad path fails before any work), restored
/// from the checkpoint being resumed, on its thread, where `records` turns
/// each stashed time into its records; elsewhere, a writer without a sink.
pub(super) fn single_writer<X, T, S, F, R>(
    worker: usize,
    ctx: &Arc<Context>,
    step: &str,
    make: F,
    records: R,
) -> Result<Writer<X>>
where
    X: Send + 'static,
    T: Send + 'static,
    S: Sink<T> + Send,
    F: FnOnce() -> Result<S>,
    R: FnMut(X, &mut Vec<(EventTime, T)>) + Send + 'static,
{
    if worker != 0 {
        return Ok(Writer::idle());
    }
    let ckpt = ctx.checkpoint_step(worker, step, &format!("sink `{step}`"))?;
    let mut target = make()?;
    if let Some(k) = ckpt.as_ref() {
        if let Some(point) = k.restored_parts().first() {
            super::restore_sink(&mut target, point, k)?;
        }
        target.watch_completions(k.completed());
    }
    let target = Target {
        sink: target,
        ckpt,
        points: Points::Single,
    };
    Writer::start(target, ctx, step, records)
}

/// Every worker's local stage: holds its records by time and, once the
/// frontier has passed a time, sends that time's records on as one sorted
/// run, at that time.
pub(super) fn sorted_runs<'scope, T: Data + Ord>(
    stream: EventStream<'scope, T>,
    counters: Arc<StepMetrics>,
    step: &str,
) -> Stream<'scope, EventTime, Vec<Run<T>>> {
    stream.unary_frontier::<CapacityContainerBuilder<Vec<Run<T>>>, _, _, _>(
        Pipeline,
        &format!("SortRuns({step})"),
        move |_, _| {
            let mut stash: BTreeMap<EventTime, (Capability<EventTime>, Run<T>)> = BTreeMap::new();
            // The last run's length. A run that grows past an eighth of it
            // takes that much room at once instead of doubling (a large run
            // would be copied many times); a small one stays small.
            let mut room = 0;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    Metrics::add(&counters.records_in, data.len() as u64);
                    let (_, run) = stash
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    if run.is_empty() {
                        std::mem::swap(run, data);
                    } else {
                        let need = run.len() + data.len();
                        if need > run.capacity() && need <= room && need >= room / 8 {
                            run.reserve_exact(room - run.len());
                        }
                        run.append(data);
                    }
                });
                while let Some(entry) = stash.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, mut run) = entry.remove();
                    if run.is_empty() {
                        continue;
                    }
                    room = run.len();
                    // With an `Ord` under which equal records are identical
                    // (a derived one), an unstable sort writes the same
                    // bytes as a stable one, and it is faster. Runs often
                    // come sorted (a window's results come in key order):
                    // the sort then only checks that.
                    run.sort_unstable();
                    output.session(&cap).give(run);
                }
            }
        },
    )
}

/// Merges sorted runs into `out` (cleared first), moving every record, never
/// cloning one. A single run is moved whole; more are merged pairwise
/// ([`pairwise`]) within each half, and the two halves into `out`, whose
/// allocation the writer keeps between times: a fresh vector for every
/// time's records would fault its pages in anew each time.
pub(super) fn merge_runs<R: Ord>(mut runs: Vec<Vec<R>>, out: &mut Vec<R>) {
    out.clear();
    if runs.len() < 2 {
        if let Some(run) = runs.pop() {
            *out = run;
        }
        return;
    }
    let later = runs.split_off(runs.len() / 2);
    if let (Some(a), Some(b)) = (pairwise(runs, merge_two), pairwise(later, merge_two)) {
        merge_into(a, b, out);
    }
}

/// The merge of two sorted runs; on ties, `a`'s records come first.
fn merge_two<R: Ord>(a: Vec<R>, b: Vec<R>) -> Vec<R> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    merge_into(a, b, &mut out);
    out
}

/// Appends the merge of two sorted runs to `out`; on ties, `a`'s records
/// come first.
fn merge_into<R: Ord>(a: Vec<R>, b: Vec<R>, out: &mut Vec<R>) {
    out.reserve(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    // Comparing the heads in place and moving only the one taken keeps
    // this to one move per record.
    while let (Some(x), Some(y)) = (a.as_slice().first(), b.as_slice().first()) {
        let next = if y < x { b.next() } else { a.next() };
        if let Some(record) = next {
            out.push(record);
        }
    }
    out.extend(a);
    out.extend(b);
}

#[cfg(test)]
mod tests {
    use super::merge_runs;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn merging_sorted_runs_equals_sorting_their_union() {
        let mut rng = StdRng::seed_from_u64(7);
        // One output for all, as the writer keeps it: each merge clears it.
        let mut got = vec![(9, 9)];
        for k in (0..9).chain((0..9).rev()) {
            let runs: Vec<Vec<(u8, u16)>> = (0..k)
                .map(|_| {
                    let len = rng.gen_range(0..40);
                    let mut run: Vec<_> = (0..len)
                        .map(|_| (rng.gen_range(0..4), rng.gen_range(0..50)))
                        .collect();
                    run.sort();
                    run
                })
                .collect();
            let mut want: Vec<_> = runs.iter().flatten().copied().collect();
            want.sort();
            merge_runs(runs, &mut got);
            assert_eq!(got, want, "{k} runs");
        }
    }

    #[test]
    fn merging_several_runs_keeps_the_output_allocation() {
        let mut out: Vec<u32> = Vec::with_capacity(64);
        let kept = out.as_ptr();
        for k in 2..7 {
            let runs = (0..k).map(|i| vec![i, i + 10]).collect();
            merge_runs(runs, &mut out);
            let mut want: Vec<u32> = (0..k).chain(10..10 + k).collect();
            want.sort();
            assert_eq!(out, want);
            assert_eq!(out.as_ptr(), kept, "{k} runs");
        }
    }
}
