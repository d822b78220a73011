//! What ordered output costs: a sliding 10-minute / 1-minute keyed count
//! over generated Zipf-like events, with its results
//!
//! - `reduce`: folded into a checksum on each worker and dropped (the
//!   reference: no sink at all);
//! - `gather`: the sink as it was before sorted runs: every record sent to
//!   worker 0, which sorts each complete time (a copy of that operator);
//! - `ordered`: [`Events::sink`]: every worker sorts its runs, worker 0
//!   merges them;
//! - `partitioned`: [`Events::sink_partitioned`]: one writer per worker.
//!
//! Every sink folds the records it is given into the same checksum, so the
//! figures measure the path to the writer, not a file system. Every path
//! runs at every worker count in one process, interleaved, `--repeat`
//! times; the run fails unless every path saw the same results.
//!
//! ```text
//! cargo run --release -p keyflow-dataflow --example sink_bench -- --events 10000000 --repeat 3
//! ```
//!
//! The events come from `--partitions` source partitions (2 unless
//! given), so at more workers than partitions the rest generate nothing.
//! Keys are numbers, or with `--string-keys` strings, whose comparisons
//! read memory behind a pointer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::timely::dataflow::channels::pact::{Exchange, Pipeline};
use keyflow_dataflow::timely::dataflow::operators::generic::Operator;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sink throughput of a sliding keyed count.
#[derive(Debug, Parser)]
struct Args {
    /// Events in all.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Distinct keys; key `k` is drawn with weight about `1 / (k + 1)`.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Event time the events span, in minutes.
    #[arg(long, default_value_t = 120)]
    minutes: u64,
    /// Worker counts to run at.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Paths to run: reduce, gather, ordered, partitioned.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "reduce,gather,ordered,partitioned"
    )]
    paths: Vec<String>,
    /// Runs of each path at each worker count; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Source partitions, the same at every worker count so that every
    /// count reads the same events. Workers beyond them generate nothing:
    /// give at least the most workers to measure.
    #[arg(long, default_value_t = 2)]
    partitions: usize,
    /// Key by strings (`page/0000042`) instead of numbers: keys whose
    /// comparisons read memory behind a pointer.
    #[arg(long)]
    string_keys: bool,
}

type Counted<K> = WindowResult<K, u64>;

/// A key the bench can draw and fold into its checksum.
trait BenchKey: keyflow_dataflow::Key {
    /// Key number `k`.
    fn of(k: u64) -> Self;
    /// 64 bits that stand for the key in the checksum.
    fn mix(&self) -> u64;
}

impl BenchKey for u64 {
    fn of(k: u64) -> Self {
        k
    }
    fn mix(&self) -> u64 {
        *self
    }
}

impl BenchKey for String {
    fn of(k: u64) -> Self {
        format!("page/{k:07}")
    }
    fn mix(&self) -> u64 {
        // FNV-1a.
        self.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }
}

/// How many records a path saw and their checksum, summed over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    records: u64,
    sum: u64,
}

impl Tally {
    fn add<K: BenchKey>(&mut self, ts: EventTime, r: &Counted<K>) {
        let mut x = ts ^ r.key.mix().rotate_left(17) ^ r.value.rotate_left(41) ^ r.start;
        // splitmix64's finalizer: order-independent sums of mixed values.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.records += 1;
        self.sum = self.sum.wrapping_add(x ^ (x >> 31));
    }
}

/// A sink that folds what it is given into a shared [`Tally`].
struct Checksum {
    mine: Tally,
    total: Arc<Mutex<Tally>>,
}

impl Checksum {
    fn new(total: &Arc<Mutex<Tally>>) -> Self {
        Checksum {
            mine: Tally::default(),
            total: Arc::clone(total),
        }
    }
}

impl<K: BenchKey> Sink<Counted<K>> for Checksum {
    fn write(&mut self, _: EventTime, records: &[(EventTime, Counted<K>)]) -> Result<()> {
        for (ts, r) in records {
            self.mine.add(*ts, r);
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let mut total = self.total.lock().unwrap();
        total.records += self.mine.records;
        total.sum = total.sum.wrapping_add(self.mine.sum);
        Ok(())
    }
}

/// Partition `p`'s events: keys drawn as `floor(keys^u) - 1` for uniform
/// `u` (a log-uniform law, Zipf's with exponent 1), at evenly spaced
/// times over `span` ms.
fn events(p: usize, n: u64, keys: u64, span: u64) -> impl Iterator<Item = (EventTime, u64)> {
    let mut rng = StdRng::seed_from_u64(42 + p as u64);
    let ln_keys = (keys as f64).ln();
    (0..n).map(move |i| {
        let u: f64 = rng.gen();
        let key = ((u * ln_keys).exp() as u64).saturating_sub(1).min(keys - 1);
        (i * span / n, key)
    })
}

/// The sink operator as it was before sorted runs: every record goes to
/// worker 0, which sorts each complete time and writes it.
fn gather<K: BenchKey>(results: EventStream<'_, Counted<K>>, mut sink: Option<Checksum>) {
    let mut stash: BTreeMap<EventTime, Vec<(EventTime, Counted<K>)>> = BTreeMap::new();
    let mut closed = false;
    results.sink(
        Exchange::new(|_: &(EventTime, Counted<K>)| 0),
        "Gather",
        move |(input, frontier)| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    stash.entry(time).or_default().append(data);
                }
            });
            let Some(sink) = sink.as_mut() else {
                stash.clear();
                return;
            };
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let time = *entry.key();
                let mut records = entry.remove();
                records.sort();
                sink.write(time, &records).unwrap();
            }
            if frontier.is_empty() && !closed {
                closed = true;
                Sink::<Counted<K>>::close(sink).unwrap();
            }
        },
    );
}

/// The reference: each worker folds its own results and drops them.
fn reduce<K: BenchKey>(results: EventStream<'_, Counted<K>>, total: Arc<Mutex<Tally>>) {
    let mut mine = Some(Checksum::new(&total));
    results.sink(Pipeline, "Reduce", move |(input, frontier)| {
        input.for_each(|_, data| {
            if let Some(sink) = mine.as_mut() {
                for (ts, r) in data.iter() {
                    sink.mine.add(*ts, r);
                }
            }
        });
        if frontier.is_empty() {
            if let Some(mut sink) = mine.take() {
                Sink::<Counted<K>>::close(&mut sink).unwrap();
            }
        }
    });
}

/// CPU seconds this process has used, user and system (Linux; `None`
/// elsewhere). On a shared machine, CPU time moves less with other
/// processes' load than wall time does.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// One run of `path`: events per second, CPU seconds and what it saw.
fn measure(args: &Args, path: &str, workers: usize) -> Result<(f64, Option<f64>, Tally)> {
    if args.string_keys {
        measure_keyed::<String>(args, path, workers)
    } else {
        measure_keyed::<u64>(args, path, workers)
    }
}

/// [`measure`] with keys of type `K`.
fn measure_keyed<K: BenchKey>(
    args: &Args,
    path: &str,
    workers: usize,
) -> Result<(f64, Option<f64>, Tally)> {
    let total = Arc::new(Mutex::new(Tally::default()));
    let (n, keys, span) = (args.events, args.keys, args.minutes * MINUTE);
    let partitions = args.partitions;
    let per_partition = n / partitions as u64;
    let path = path.to_string();
    let into = Arc::clone(&total);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    run(&RunConfig::threads(workers), move |flow| {
        let input = IterSource::new("zipf", partitions, move |p| {
            events(p, per_partition, keys, span)
        });
        let results = flow
            .source("events", input, &SourceConfig::default())?
            .key_by(|k| (K::of(k), ()))
            .window(WindowSpec::sliding(10 * MINUTE, MINUTE)?)
            .count("counts")
            .results;
        let total = Arc::clone(&into);
        match path.as_str() {
            "reduce" => reduce::<K>(results.inner(), total),
            "gather" => {
                let sink = (flow.index() == 0).then(|| Checksum::new(&total));
                gather::<K>(results.inner(), sink);
            }
            "ordered" => results.sink("out", move || Ok(Checksum::new(&total)))?,
            "partitioned" => results.sink_partitioned("out", move |_| Ok(Checksum::new(&total)))?,
            other => {
                return Err(Error::Config(format!(
                    "unknown path `{other}`: use reduce, gather, ordered or partitioned"
                )))
            }
        }
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu).map(|(end, start)| end - start);
    let tally = *total.lock().unwrap();
    Ok((
        (per_partition * partitions as u64) as f64 / seconds,
        cpu,
        tally,
    ))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.partitions == 0 {
        return Err(Error::Config("--partitions 0: at least one".into()));
    }
    let mut rates: BTreeMap<(usize, String), Vec<f64>> = BTreeMap::new();
    let mut cpus: BTreeMap<(usize, String), Vec<f64>> = BTreeMap::new();
    let mut seen: Option<Tally> = None;
    for round in 1..=args.repeat {
        for &workers in &args.workers {
            for path in &args.paths {
                let (rate, cpu, tally) = measure(&args, path, workers)?;
                println!(
                    "round {round} workers {workers} {path:<11} {rate:>12.0} events/s  {} CPU s  ({} results)",
                    cpu.map_or("-".into(), |c| format!("{c:.2}")),
                    tally.records
                );
                if let Some(cpu) = cpu {
                    cpus.entry((workers, path.clone())).or_default().push(cpu);
                }
                if *seen.get_or_insert(tally) != tally {
                    return Err(Error::External(format!(
                        "{path} at {workers} workers saw {tally:?}, earlier runs {seen:?}"
                    )));
                }
                rates.entry((workers, path.clone())).or_default().push(rate);
            }
        }
    }
    println!(
        "\nmedians of {} runs: events/s, against reduce and 1 worker; CPU seconds",
        args.repeat
    );
    for &workers in &args.workers {
        let reference = rates
            .get(&(workers, "reduce".to_string()))
            .map(|r| median(r));
        for path in &args.paths {
            let rate = median(&rates[&(workers, path.clone())]);
            let vs_reduce = reference.map_or(String::new(), |r| format!("{:.2}x reduce", rate / r));
            let vs_one = match rates.get(&(1, path.clone())) {
                Some(one) if workers > 1 => format!("{:.2}x 1 worker", rate / median(one)),
                _ => String::new(),
            };
            let cpu = cpus
                .get(&(workers, path.clone()))
                .map_or("-".into(), |c| format!("{:.2}", median(c)));
            println!(
                "workers {workers} {path:<11} {rate:>12.0}  {vs_reduce:>12}  {vs_one:>14}  {cpu:>7}"
            );
        }
    }
    Ok(())
}
