//! The single writer whose records are encoded on the workers: every
//! worker sorts and encodes its own records of a complete time, and the
//! writer (on its thread beside worker 0) merges the runs by record,
//! copying bytes.
//!
//! Encoding (formatting numbers, serializing) often costs more than the
//! rest of the output path, and the plain single writer does all of it on
//! its one thread. Here each worker encodes its share, so the writer only
//! compares records and copies their bytes. That pays where many workers
//! feed one writer; with few, the plain writer's thread has room for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

use super::ordered::{single_writer, sorted_runs};
use super::Sink;
use crate::error::Result;
use crate::merge::pairwise;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use crate::Data;

/// The bytes of every record of one complete time, in record order: what
/// [`crate::Events::sink_encoded`] hands its sink, as the one record of
/// each [`Sink::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

/// One worker's records of one complete time, sorted, with their bytes:
/// record `i` is `bytes[ends[i - 1]..ends[i]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EncodedRun<T> {
    records: Vec<(EventTime, T)>,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl<T> EncodedRun<T> {
    fn with_capacity(records: usize, bytes: usize) -> Self {
        EncodedRun {
            records: Vec::with_capacity(records),
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    fn push(&mut self, record: (EventTime, T), bytes: &[u8]) {
        self.records.push(record);
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len());
    }
}

/// Writes `stream` to the sink that `make` builds, encoding each record
/// with `encode` on the worker that holds it: the operator behind
/// [`crate::Events::sink_encoded`].
pub(crate) fn sink_encoded_stream<'scope, T, E, S, F>(
    stream: EventStream<'scope, T>,
    ctx: &Arc<Context>,
    step: &str,
    mut encode: E,
    make: F,
) -> Result<()>
where
    T: Data + Ord,
    E: FnMut(EventTime, &T, &mut Vec<u8>) + 'static,
    S: Sink<Encoded> + Send,
    F: FnOnce() -> Result<S>,
{
    let merge = |(time, runs), batch: &mut Vec<(EventTime, Encoded)>| {
        if let Some(run) = pairwise(runs, merge_two) {
            batch.push((time, Encoded(run.bytes)));
        }
    };
    let mut writer = single_writer(stream.scope().index(), ctx, step, make, merge)?;
    let runs = sorted_runs(stream, ctx.metrics.step(step), step);
    let encoded = runs.unary(Pipeline, &format!("Encode({step})"), |_, _| {
        // Bytes per record in the last run: a run's bytes take about that
        // much room at once instead of doubling their way up.
        let mut per_record = 0;
        move |input, output| {
            input.for_each(|cap, data| {
                let mut session = output.session(&cap);
                for records in data.drain(..) {
                    let mut bytes = Vec::with_capacity(records.len() * per_record);
                    let mut ends = Vec::with_capacity(records.len());
                    for (ts, record) in &records {
                        encode(*ts, record, &mut bytes);
                        ends.push(bytes.len());
                    }
                    per_record = bytes.len().div_ceil(records.len().max(1)) + 1;
                    session.give(EncodedRun {
                        records,
                        bytes,
                        ends,
                    });
                }
            });
        }
    });
    // Runs by time, until the frontier passes it: then every worker's run
    // of that time is here.
    let mut stash: BTreeMap<EventTime, (EventTime, Vec<EncodedRun<T>>)> = BTreeMap::new();
    encoded.sink(
        Exchange::new(|_: &EncodedRun<T>| 0),
        &format!("Sink({step})"),
        move |(input, frontier)| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    let (_, runs) = stash.entry(time).or_insert((time, Vec::new()));
                    runs.extend(data.drain(..).filter(|r| !r.records.is_empty()));
                }
            });
            writer.advance(frontier, &mut stash);
        },
    );
    Ok(())
}

/// The merge of two encoded runs by record; on ties, `a`'s come first.
fn merge_two<T: Ord>(a: EncodedRun<T>, b: EncodedRun<T>) -> EncodedRun<T> {
    let mut out = EncodedRun::with_capacity(
        a.records.len() + b.records.len(),
        a.bytes.len() + b.bytes.len(),
    );
    let (mut ai, mut bi) = (a.records.into_iter(), b.records.into_iter());
    let (mut a_at, mut b_at) = (0, 0);
    let (mut a_ends, mut b_ends) = (a.ends.iter(), b.ends.iter());
    // Compares the heads in place and moves only the record taken.
    loop {
        let take_b = match (ai.as_slice().first(), bi.as_slice().first()) {
            (Some(x), Some(y)) => y < x,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        let (records, ends, at, bytes) = if take_b {
            (&mut bi, &mut b_ends, &mut b_at, &b.bytes)
        } else {
            (&mut ai, &mut a_ends, &mut a_at, &a.bytes)
        };
        if let (Some(record), Some(&end)) = (records.next(), ends.next()) {
            out.push(record, &bytes[*at..end]);
            *at = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{merge_two, EncodedRun};
    use crate::merge::pairwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn run(records: &[(u64, u16)]) -> EncodedRun<u16> {
        let mut run = EncodedRun::with_capacity(0, 0);
        for r in records {
            run.push(*r, format!("<{}:{}>", r.0, r.1).as_bytes());
        }
        run
    }

    #[test]
    fn merged_runs_hold_the_bytes_of_the_sorted_records() {
        let mut rng = StdRng::seed_from_u64(3);
        for k in 0..7 {
            let runs: Vec<Vec<(u64, u16)>> = (0..k)
                .map(|_| {
                    let mut r: Vec<(u64, u16)> = (0..rng.gen_range(0..30))
                        .map(|_| (rng.gen_range(0..3), rng.gen_range(0..40)))
                        .collect();
                    r.sort();
                    r
                })
                .collect();
            let mut all: Vec<(u64, u16)> = runs.iter().flatten().copied().collect();
            all.sort();
            let want: String = all.iter().map(|r| format!("<{}:{}>", r.0, r.1)).collect();
            let merged = pairwise(runs.iter().map(|r| run(r)).collect(), merge_two);
            let got = merged.map(|m| {
                assert_eq!(m.records, all);
                assert_eq!(m.ends.len(), all.len());
                String::from_utf8(m.bytes).unwrap()
            });
            assert_eq!(got.unwrap_or_default(), want, "{k} runs");
        }
    }
}
