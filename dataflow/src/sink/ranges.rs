//! The ordered sink's merge spread over the workers: each time's sorted
//! runs are cut into ranges of the record order, one range per worker;
//! each worker merges its range, and the writer only joins the merged
//! ranges end to end.
//!
//! Merged by the writer alone, every record of a time passes through one
//! thread once per doubling of the workers (`merge_runs`), and past a few
//! workers that thread set the pace of the whole job. The cuts come from
//! samples: every worker sends a few records of its run, at evenly spaced
//! ranks and weighted by the share of the run each stands for, to every
//! worker, and all pick the same cuts from the same samples, so the ranges
//! hold about equal shares without another round trip. Records equal to a
//! cut all go to the same range, so the joined ranges are in order.
//!
//! A run shorter than [`CUT_FROM`] is not cut: it goes whole to the
//! writer, past these stages, and the writer merges it with the joined
//! ranges. Cutting costs every time a message from every worker to every
//! other and three more stages that hold it; for the many small times of
//! a stream of single events (a side output of late events, say) that
//! would cost more than the merge it spreads.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::Stream;

use super::ordered::merge_runs;
use crate::time::EventTime;
use crate::Data;

/// One worker's records of one complete time, sorted.
type Run<T> = Vec<(EventTime, T)>;

/// A record of a run and how many records of its run it stands for.
type Sample<T> = ((EventTime, T), u64);

/// Samples each run sends to every worker, per worker: enough that the
/// ranges come out about even (the largest within a few percent of the
/// mean at 16 workers), few against the runs' thousands of records.
const SAMPLES_PER_PEER: usize = 8;

/// Runs shorter than this go whole to the writer instead of being cut.
const CUT_FROM: usize = 1024;

/// What the writer gets of one time: a merged range and its place in the
/// order, or (`None`) a run too short to cut.
pub(super) type Part<T> = (Option<usize>, Run<T>);

/// Cuts each time's sorted `runs` (one per worker and time) into a range
/// per worker, merges every range on its worker, and returns each range
/// merged, tagged with its place in the order, at the runs' time, with
/// the runs too short to cut as they were.
pub(super) fn merged_ranges<'scope, T: Data + Ord>(
    runs: Stream<'scope, EventTime, Vec<Run<T>>>,
    step: &str,
) -> Stream<'scope, EventTime, Vec<Part<T>>> {
    let peers = runs.scope().peers();
    let per_run = SAMPLES_PER_PEER * peers;
    // Short runs skip the stages below, which hold every time they see.
    let mut sized = runs.partition(2, |run: Run<T>| (u64::from(run.len() < CUT_FROM), run));
    let (Some(short), Some(runs)) = (sized.pop(), sized.pop()) else {
        unreachable!("partition gives the two streams asked for")
    };
    let whole = short.map(|run| (None, run));
    let samples = runs
        .clone()
        .unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
            Pipeline,
            &format!("SampleRuns({step})"),
            move |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for run in data.iter() {
                            let picked = samples(run, per_run);
                            for peer in 0..peers {
                                session.give((peer, picked.clone()));
                            }
                        }
                    });
                }
            },
        );
    let cut = runs.binary_frontier::<_, CapacityContainerBuilder<Vec<_>>, _, _, _, _>(
        samples,
        Pipeline,
        Exchange::new(|(peer, _): &(usize, Vec<Sample<T>>)| *peer as u64),
        &format!("CutRuns({step})"),
        move |_, _| {
            let mut held: BTreeMap<EventTime, (Capability<EventTime>, Vec<Run<T>>)> =
                BTreeMap::new();
            let mut sampled: BTreeMap<EventTime, Vec<Sample<T>>> = BTreeMap::new();
            move |(runs, runs_frontier), (samples, samples_frontier), output| {
                runs.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let (_, held) = held
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    held.append(data);
                });
                samples.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let all = sampled.entry(time).or_default();
                    all.extend(data.drain(..).flat_map(|(_, picked)| picked));
                });
                let passed = |time: &EventTime| {
                    !runs_frontier.less_equal(time) && !samples_frontier.less_equal(time)
                };
                while let Some(entry) = held.first_entry() {
                    if !passed(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let (cap, runs) = entry.remove();
                    let cuts = cuts(sampled.remove(&time).unwrap_or_default(), peers);
                    let mut session = output.session(&cap);
                    for run in runs {
                        for (peer, range) in split(run, &cuts).into_iter().enumerate() {
                            if !range.is_empty() {
                                session.give((peer, range));
                            }
                        }
                    }
                }
                // Samples of a time this worker held no run of.
                while let Some(entry) = sampled.first_entry() {
                    if !passed(entry.key()) {
                        break;
                    }
                    entry.remove();
                }
            }
        },
    );
    let place = cut.scope().index();
    let merged = cut.unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
        Exchange::new(|(peer, _): &(usize, Run<T>)| *peer as u64),
        &format!("MergeRanges({step})"),
        move |_, _| {
            let mut held: BTreeMap<EventTime, (Capability<EventTime>, Vec<Run<T>>)> =
                BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let (_, ranges) = held
                        .entry(time)
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    ranges.extend(data.drain(..).map(|(_, range)| range));
                });
                while let Some(entry) = held.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, ranges) = entry.remove();
                    let mut merged = Vec::new();
                    merge_runs(ranges, &mut merged);
                    output.session(&cap).give((Some(place), merged));
                }
            }
        },
    );
    merged.concat(whole)
}

/// One time's parts into `out` (cleared first), sorted: the merged ranges
/// joined in their order, merged with the runs too short to cut, if any.
pub(super) fn join_parts<R: Ord>(parts: Vec<(Option<usize>, Vec<R>)>, out: &mut Vec<R>) {
    let (ranges, whole): (Vec<_>, Vec<_>) = parts.into_iter().partition(|p| p.0.is_some());
    if whole.is_empty() {
        join_ranges(ranges, out);
        return;
    }
    let mut runs: Vec<Vec<R>> = whole.into_iter().map(|(_, run)| run).collect();
    if !ranges.is_empty() {
        let mut joined = Vec::new();
        join_ranges(ranges, &mut joined);
        runs.push(joined);
    }
    merge_runs(runs, out);
}

/// The merged ranges of one time joined in their order into `out`
/// (cleared first).
fn join_ranges<R>(mut ranges: Vec<(Option<usize>, Vec<R>)>, out: &mut Vec<R>) {
    out.clear();
    if ranges.len() == 1 {
        if let Some((_, range)) = ranges.pop() {
            *out = range;
        }
        return;
    }
    ranges.sort_unstable_by_key(|(place, _)| *place);
    for (_, range) in ranges {
        out.extend(range);
    }
}

/// Up to `count` records of a sorted run at evenly spaced ranks, each
/// weighted by the records it stands for (the weights sum to the run's
/// length).
fn samples<T: Clone>(run: &[(EventTime, T)], count: usize) -> Vec<Sample<T>> {
    let n = run.len();
    let count = count.min(n);
    (0..count)
        .map(|i| {
            // Sample `i` stands for the ranks from `i * n / count` up to
            // the next sample's, and is the last of them: a cut at it
            // takes just the records it was weighed for.
            let (from, to) = (i * n / count, (i + 1) * n / count);
            (run[to - 1].clone(), (to - from) as u64)
        })
        .collect()
}

/// At most `parts - 1` cuts from every run's samples: cut `j` is the
/// first sample at which the weight seen reaches `(j + 1) / parts` of the
/// total. Every worker gets the same cuts from the same samples, in
/// whatever order they came.
fn cuts<T: Ord + Clone>(mut samples: Vec<Sample<T>>, parts: usize) -> Vec<(EventTime, T)> {
    samples.sort_unstable();
    let total: u64 = samples.iter().map(|(_, weight)| weight).sum();
    let mut cuts = Vec::with_capacity(parts.saturating_sub(1));
    let mut seen = 0u64;
    for (record, weight) in samples {
        seen += weight;
        // A heavy sample may reach several shares: they all cut at it,
        // and the ranges between them stay empty.
        while cuts.len() + 1 < parts && seen * parts as u64 >= (cuts.len() as u64 + 1) * total {
            cuts.push(record.clone());
        }
    }
    cuts
}

/// Cuts a sorted run at `cuts`: range `j` holds the records after cut
/// `j - 1` up to and including cut `j`, and the last range the rest.
fn split<T: Ord>(mut run: Run<T>, cuts: &[(EventTime, T)]) -> Vec<Run<T>> {
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    // From the back, so that each range comes off the end of what is
    // left, and the first keeps the run's allocation.
    for cut in cuts.iter().rev() {
        let at = run.partition_point(|record| record <= cut);
        ranges.push(run.split_off(at));
    }
    ranges.push(run);
    ranges.reverse();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Sorted runs of records with many repeats, as window results of a
    /// few keys give.
    fn runs(rng: &mut StdRng, count: usize) -> Vec<Run<u32>> {
        (0..count)
            .map(|_| {
                let len = rng.gen_range(0..300);
                let mut run: Run<u32> = (0..len)
                    .map(|_| (rng.gen_range(0..3), rng.gen_range(0..100)))
                    .collect();
                run.sort_unstable();
                run
            })
            .collect()
    }

    #[test]
    fn ranges_merged_and_joined_equal_the_sorted_union() {
        let mut rng = StdRng::seed_from_u64(11);
        for peers in 1..=9 {
            for _ in 0..20 {
                let runs = runs(&mut rng, peers);
                let mut want: Run<u32> = runs.iter().flatten().copied().collect();
                want.sort_unstable();
                let picked: Vec<_> = runs.iter().flat_map(|r| samples(r, 8 * peers)).collect();
                let cuts = cuts(picked, peers);
                assert!(cuts.len() < peers.max(1));
                let mut at_peer = vec![Vec::new(); peers];
                for run in runs {
                    let ranges = split(run, &cuts);
                    assert_eq!(ranges.len(), cuts.len() + 1);
                    for (peer, range) in ranges.into_iter().enumerate() {
                        at_peer[peer].push(range);
                    }
                }
                let merged = at_peer
                    .into_iter()
                    .enumerate()
                    .map(|(peer, ranges)| {
                        let mut out = Vec::new();
                        merge_runs(ranges, &mut out);
                        (Some(peer), out)
                    })
                    .rev()
                    .collect();
                let mut got = vec![(9, 9)];
                join_parts(merged, &mut got);
                assert_eq!(got, want, "{peers} peers");
            }
        }
    }

    #[test]
    fn runs_too_short_to_cut_merge_with_the_joined_ranges() {
        let mut got = vec![(9, 9)];
        let parts = vec![
            (None, vec![(0, 5), (1, 1)]),
            (Some(1), vec![(0, 7), (1, 0)]),
            (Some(0), vec![(0, 1), (0, 6)]),
            (None, vec![(0, 6)]),
        ];
        join_parts(parts, &mut got);
        assert_eq!(
            got,
            [(0, 1), (0, 5), (0, 6), (0, 6), (0, 7), (1, 0), (1, 1)]
        );
        join_parts(vec![(None, vec![(2, 2)])], &mut got);
        assert_eq!(got, [(2, 2)]);
        join_parts(Vec::new(), &mut got);
        assert!(got.is_empty());
    }

    #[test]
    fn the_cuts_do_not_depend_on_the_order_samples_came_in() {
        let mut rng = StdRng::seed_from_u64(5);
        let runs = runs(&mut rng, 6);
        let mut picked: Vec<_> = runs.iter().flat_map(|r| samples(r, 48)).collect();
        let first = cuts(picked.clone(), 6);
        picked.reverse();
        assert_eq!(cuts(picked, 6), first);
    }

    #[test]
    fn ranges_of_distinct_records_come_out_about_even() {
        // 16 runs of 10,000 distinct records, interleaved as hashed keys
        // spread them over workers.
        let peers = 16;
        let runs: Vec<Run<u64>> = (0..peers as u64)
            .map(|w| (0..10_000).map(|i| (0, i * peers as u64 + w)).collect())
            .collect();
        let picked: Vec<_> = runs
            .iter()
            .flat_map(|r| samples(r, SAMPLES_PER_PEER * peers))
            .collect();
        let cuts = cuts(picked, peers);
        let mut sizes = vec![0usize; peers];
        for run in runs {
            for (peer, range) in split(run, &cuts).into_iter().enumerate() {
                sizes[peer] += range.len();
            }
        }
        let mean = 10_000;
        for size in &sizes {
            assert!(size.abs_diff(mean) < mean / 20, "{sizes:?}");
        }
    }

    #[test]
    fn samples_weigh_the_whole_run() {
        let run: Run<u8> = (0..10).map(|i| (0, i)).collect();
        for count in [1, 3, 10, 50] {
            let picked = samples(&run, count);
            assert_eq!(picked.len(), count.min(10));
            assert_eq!(picked.iter().map(|(_, w)| w).sum::<u64>(), 10);
        }
        assert!(samples::<u8>(&[], 4).is_empty());
    }
}
