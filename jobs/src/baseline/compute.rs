//! The baseline as a differential dataflow: hourly counts in, per-article
//! averages out.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::input::{Input, InputSession};
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::{step_until_done, Context};
use keyflow_dataflow::source::{open_lines, BadInputPolicy};
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::{align_down, format_utc, EventTime, DAY, HOUR, MAX_EVENT_TIME};
use timely::dataflow::operators::{Exchange, Inspect};
use timely::worker::Worker;

use super::format::HOURS;
use crate::pageviews::{hour_from_file_name, parse_dump_line_with, parse_json_line};
use crate::pageviews::{Article, DumpTime, InputFormat};

/// Days since the epoch (UTC).
pub(crate) type DayNo = u32;

/// `(days averaged, first day, last day)`.
pub(crate) type Meta = (u64, DayNo, DayNo);

/// An article's averages as `f64` bits (collections need `Ord` data).
pub(crate) type Row = (Article, [u64; HOURS]);

/// What worker 0 gathers from the dataflow: the consolidated rows and the
/// day summary, each with its multiplicity (1 when all is well).
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub rows: Vec<(Row, isize)>,
    pub meta: Vec<(Meta, isize)>,
}

/// How one worker reads its files.
#[derive(Debug, Clone)]
pub(crate) struct ReadSpec {
    pub files: Vec<PathBuf>,
    pub format: InputFormat,
    pub dump_time: DumpTime,
    pub bad_input: BadInputPolicy,
}

/// Input handles of the dataflow: hourly counts `(article, day, hour)` with
/// the views as multiplicity, and the days the input covers.
struct Inputs {
    hours: InputSession<u64, (Article, DayNo, u8), isize>,
    days: InputSession<u64, DayNo, isize>,
    /// Days this worker has inserted already: each goes in once.
    seen_days: BTreeSet<DayNo>,
}

impl Inputs {
    fn day(&mut self, hour: EventTime) {
        let day = day_of(hour);
        if self.seen_days.insert(day) {
            self.days.insert(day);
        }
    }
}

type Captured<D> = Rc<RefCell<Vec<(D, isize)>>>;

/// Builds the dataflow:
/// - `totals`: views per (article, hour of day), summed over days (`count`
///   of the hourly collection, whose multiplicities are views);
/// - `vectors`: one 24-hour vector of totals per article (`reduce`);
/// - `meta`: the number of distinct days and the first and last (`distinct`,
///   then `reduce`);
/// - the averages: `vectors` joined with `meta`, dividing by n. `meta` is one
///   record, copied once per worker-bucket so that the join stays spread over
///   the workers instead of sending every article to the worker owning `()`.
fn build(worker: &mut Worker) -> (Inputs, Captured<Row>, Captured<Meta>) {
    let rows: Captured<Row> = Rc::default();
    let metas: Captured<Meta> = Rc::default();
    let (rows_in, metas_in) = (Rc::clone(&rows), Rc::clone(&metas));
    let inputs = worker.dataflow_named::<u64, _, _>("Baseline", move |scope| {
        let buckets = scope.peers() as u64;
        let (hours, hourly) = scope.new_collection::<(Article, DayNo, u8), isize>();
        let (days, covered) = scope.new_collection::<DayNo, isize>();

        let vectors = hourly
            .map(|(article, _day, hour)| (article, hour))
            .count()
            .map(|((article, hour), views)| (article, (hour, views)))
            .reduce_named("HourVector", |_article, input, output| {
                let mut totals = [0u64; HOURS];
                for ((hour, views), mult) in input {
                    totals[*hour as usize] += (*views * *mult).max(0) as u64;
                }
                output.push((totals, 1isize));
            });
        let meta = covered
            .distinct()
            .map(|day| ((), day))
            .reduce_named("Days", |_unit, input, output| {
                let n = input.len() as u64;
                let (first, last) = (*input[0].0, *input[input.len() - 1].0);
                output.push(((n, first, last), 1isize));
            })
            .map(|((), meta)| meta);
        let averages = vectors
            .map(move |(article, totals)| (stable_hash(&article) % buckets, (article, totals)))
            .join_map(
                meta.clone()
                    .flat_map(move |m: Meta| (0..buckets).map(move |b| (b, m))),
                |_bucket, (article, totals), (n, _, _)| {
                    let n = *n as f64;
                    let bits: [u64; HOURS] =
                        std::array::from_fn(|h| (totals[h] as f64 / n).to_bits());
                    (article.clone(), bits)
                },
            );
        averages
            .inner
            .exchange(|_| 0)
            .inspect(move |(row, _time, diff)| rows_in.borrow_mut().push((row.clone(), *diff)));
        meta.inner
            .exchange(|_| 0)
            .inspect(move |(m, _time, diff)| metas_in.borrow_mut().push((*m, *diff)));
        Inputs {
            hours,
            days,
            seen_days: BTreeSet::new(),
        }
    });
    (inputs, rows, metas)
}

/// Counts a malformed line, or fails the job under `--bad-input fail`.
fn bad_line(
    ctx: &Context,
    policy: BadInputPolicy,
    seen: &mut u64,
    location: String,
    reason: String,
) -> keyflow_dataflow::Result<()> {
    if policy == BadInputPolicy::Fail {
        return Err(keyflow_dataflow::Error::BadInput { location, reason });
    }
    *seen += 1;
    Metrics::add(&ctx.metrics.bad, 1);
    if *seen <= 5 || seen.is_multiple_of(10_000) {
        tracing::warn!(%location, "skipped malformed line ({} so far): {reason}", seen);
    }
    Ok(())
}

fn day_of(ts: EventTime) -> DayNo {
    (ts / DAY) as DayNo
}

/// Reads one file into the inputs.
fn read_file(
    path: &Path,
    spec: &ReadSpec,
    ctx: &Context,
    inputs: &mut Inputs,
    worker: &mut Worker,
    bad_seen: &mut u64,
) -> keyflow_dataflow::Result<()> {
    let mut reader = open_lines(path)?;
    let file_stamp = hour_from_file_name(path);
    if spec.format == InputFormat::Dump {
        // A dump file covers its hour even when it holds no line.
        if let Some(hour) = file_stamp.and_then(|s| spec.dump_time.hour_start(s)) {
            inputs.day(hour);
        }
    }
    let mut read = 0u64;
    while let Some(line) = reader.next_line()? {
        let parsed = match line {
            Err(reason) => Err(reason),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match spec.format {
                InputFormat::Dump => parse_dump_line_with(line, file_stamp, spec.dump_time)
                    .map(|l| (l.article(), l.hour_start_ms, l.views)),
                InputFormat::Jsonl => parse_json_line(line)
                    .map(|(ts, view)| (view.article, align_down(ts, HOUR, 0), view.views)),
            },
        }
        // As the streaming sources do: days past it have no four-digit
        // year, and the baseline could not be read back.
        .and_then(|parsed| match parsed.1 {
            hour if hour >= MAX_EVENT_TIME => Err(format!(
                "event time {hour} is at or after {}, the end of event time",
                format_utc(MAX_EVENT_TIME)
            )),
            _ => Ok(parsed),
        });
        match parsed {
            Ok((article, hour, views)) => {
                read += 1;
                inputs.day(hour);
                if views > 0 {
                    let views = isize::try_from(views).unwrap_or(isize::MAX);
                    let hour_of_day = ((hour % DAY) / HOUR) as u8;
                    inputs
                        .hours
                        .update((article, day_of(hour), hour_of_day), views);
                }
            }
            Err(reason) => bad_line(ctx, spec.bad_input, bad_seen, reader.location(), reason)?,
        }
        // Let the dataflow consolidate as the input streams in, so that
        // memory follows the distinct keys rather than the lines.
        if read.is_multiple_of(1 << 16) && read > 0 {
            inputs.hours.flush();
            inputs.days.flush();
            worker.step();
        }
    }
    Metrics::add(&ctx.metrics.events, read);
    Ok(())
}

/// Runs the baseline dataflow on one worker: reads this worker's share of
/// the files (file `i` goes to worker `i % peers`), steps to completion, and
/// returns what worker 0 gathered (`None` on the other workers).
pub(crate) fn run_worker(
    worker: &mut Worker,
    ctx: &Arc<Context>,
    spec: &ReadSpec,
) -> keyflow_dataflow::Result<Option<Gathered>> {
    let (index, peers) = (worker.index(), worker.peers());
    let (mut inputs, rows, metas) = build(worker);
    let mut bad_seen = 0;
    for (i, path) in spec.files.iter().enumerate() {
        if i % peers == index {
            read_file(path, spec, ctx, &mut inputs, worker, &mut bad_seen)?;
        }
    }
    drop(inputs);
    step_until_done(worker, ctx);
    if index != 0 || ctx.is_aborted() {
        return Ok(None);
    }
    let rows = rows.take();
    let meta = metas.take();
    Ok(Some(Gathered { rows, meta }))
}
