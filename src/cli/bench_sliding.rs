//! `keyflow bench sliding`: a sliding 10-minute / 1-minute keyed count over
//! a CSV file of Zipf-like events, through the ordered output path into a
//! file (`Events::sink`, or `Events::sink_encoded` with `--encoded`), as
//! CSV lines or, with `--format json`, through the standard `JsonLinesSink`,
//! against a single-thread loop that reads the same file and writes the
//! same results. The run fails unless both files hold the same bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use keyflow::dataflow::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;

use super::bench::{peak_rss, reset_peak_rss};
use super::bench_dir::{settle, work_dir};

/// Flags of `keyflow bench sliding`.
#[derive(Debug, Clone, Args)]
pub struct SlidingBenchArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Distinct keys; key `k` is drawn with weight about `1 / (k + 1)`.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Event time the events span, in minutes.
    #[arg(long, default_value_t = 120)]
    pub minutes: u64,
    /// Worker threads for the job.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Keep the input and both outputs here [default: a temporary
    /// directory, removed at the end].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Skip the reference loop (job only).
    #[arg(long)]
    pub no_reference: bool,
    /// Write through `Events::sink_encoded` (each worker formats its own
    /// lines) instead of `Events::sink` (worker 0 formats every line).
    #[arg(long)]
    pub encoded: bool,
    /// The output's format: `csv` lines formatted by the bench's own sink,
    /// or `json` lines written by `JsonLinesSink` (serde), the standard
    /// file sink.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

/// The output's format, of the job and the reference alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `start,end,key,count`.
    Csv,
    /// A `WindowResult` as serde writes it.
    Json,
}

/// A row of the input, `key,ts`, as the job reads it (the source takes the
/// time from `ts`).
#[derive(Debug, Clone, Deserialize)]
struct Row {
    key: u64,
}

const SIZE: u64 = 10 * MINUTE;

/// The first event's time: 2024-01-01, on a minute.
const START_MS: u64 = 1_704_067_200_000;

type Counted = WindowResult<u64, u64>;

/// The write buffer of the job's CSV sink and of the reference.
const BUFFER: usize = 1 << 20;

/// One result as both write it, in `format`: `start,end,key,count`, or
/// a `WindowResult<u64, u64>` as `JsonLinesSink` writes it (serde), here
/// by hand (a test checks that the two agree).
fn line(
    out: &mut impl Write,
    format: Format,
    start: u64,
    end: u64,
    key: u64,
    count: u64,
) -> std::io::Result<()> {
    match format {
        Format::Csv => numbers(
            out,
            [(&b""[..], start), (b",", end), (b",", key), (b",", count)],
            b"\n",
        ),
        Format::Json => numbers(
            out,
            [
                (&b"{\"key\":"[..], key),
                (b",\"start\":", start),
                (b",\"end\":", end),
                (b",\"value\":", count),
            ],
            b",\"update\":false}\n",
        ),
    }
}

/// Four numbers, each after its prefix, then `tail`: formatted with `itoa`
/// into one buffer and written once. Through `writeln!`, `core::fmt` took
/// two thirds of the writer's time.
fn numbers(out: &mut impl Write, fields: [(&[u8], u64); 4], tail: &[u8]) -> std::io::Result<()> {
    // Four numbers of at most 20 digits, prefixes and a tail of at most 20
    // bytes each.
    let mut text = [0u8; 200];
    let mut at = 0;
    let mut digits = itoa::Buffer::new();
    for (prefix, n) in fields {
        for part in [prefix, digits.format(n).as_bytes()] {
            text[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
    text[at..at + tail.len()].copy_from_slice(tail);
    out.write_all(&text[..at + tail.len()])
}

/// [`line`] into the bytes of an encoded output (writing to a `Vec`
/// cannot fail).
fn encode(format: Format) -> impl FnMut(EventTime, &Counted, &mut Vec<u8>) {
    move |_, r, out| {
        let _ = line(out, format, r.start, r.end, r.key, r.value);
    }
}

/// Writes `n` events: keys drawn as `floor(keys^u) - 1` for uniform `u` (a
/// log-uniform law, Zipf's with exponent 1), at evenly spaced times.
fn write_input(path: &Path, n: u64, keys: u64, span: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "key,ts")?;
    let mut rng = StdRng::seed_from_u64(42);
    let ln_keys = (keys as f64).ln();
    for i in 0..n {
        let u: f64 = rng.gen();
        let key = ((u * ln_keys).exp() as u64).saturating_sub(1).min(keys - 1);
        writeln!(out, "{key},{}", START_MS + i * span / n)?;
    }
    out.flush()?;
    Ok(())
}

/// The job's file: the records the ordered sink hands over, in order.
struct CsvOut(BufWriter<File>, PathBuf);

impl CsvOut {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(CsvOut(BufWriter::with_capacity(BUFFER, file), path.into()))
    }
}

impl Sink<Counted> for CsvOut {
    fn write(&mut self, _: EventTime, records: &[(EventTime, Counted)]) -> Result<()> {
        for (_, r) in records {
            line(&mut self.0, Format::Csv, r.start, r.end, r.key, r.value)
                .map_err(|e| Error::io(&self.1, e))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.0.flush().map_err(|e| Error::io(&self.1, e))
    }
}

fn job(
    input: &Path,
    out: &Path,
    workers: usize,
    encoded: bool,
    format: Format,
) -> anyhow::Result<u64> {
    let (input, out) = (input.to_path_buf(), out.to_path_buf());
    let ctx = std::sync::Arc::new(Context::new(RunConfig::threads(workers)));
    keyflow::dataflow::run::run_with_context(std::sync::Arc::clone(&ctx), move |flow| {
        let source = CsvSource::<Row>::new("events", vec![input.clone()], "ts");
        let out = out.clone();
        let results = flow
            .source("events", source, &SourceConfig::default())?
            .key_by(|row: Row| (row.key, ()))
            .window(WindowSpec::sliding(SIZE, MINUTE)?)
            .count("counts")
            .results;
        match (encoded, format) {
            (true, _) => {
                results.sink_encoded("out", encode(format), move || JsonLinesSink::create(&out))
            }
            (false, Format::Csv) => results.sink("out", move || CsvOut::create(&out)),
            (false, Format::Json) => results.sink("out", move || JsonLinesSink::create(&out)),
        }
    })?;
    Ok(ctx.metrics.snapshot().events)
}

/// The reference: one thread, dense key ids, one pane of counts a minute
/// and a running sum over the last ten; a window's keys come out in order
/// by walking the sum's array.
fn reference(input: &Path, out: &Path, keys: u64, format: Format) -> anyhow::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(input)?);
    let mut out = BufWriter::with_capacity(BUFFER, File::create(out)?);
    let keys = keys as usize;
    let (mut pane, mut sum) = (vec![0u32; keys], vec![0u32; keys]);
    let mut touched: Vec<u32> = Vec::new();
    let mut panes: std::collections::VecDeque<Vec<(u32, u32)>> = Default::default();
    let mut minute: Option<u64> = None;
    let mut live = 0usize;
    // Closes minute `m`'s pane: the window ending after it comes out, and
    // the pane that leaves the next window is taken off the sum.
    let mut close = |m: u64,
                     pane: &mut Vec<u32>,
                     touched: &mut Vec<u32>,
                     out: &mut BufWriter<File>|
     -> std::io::Result<()> {
        let mut counts = Vec::with_capacity(touched.len());
        for &k in touched.iter() {
            let c = std::mem::take(&mut pane[k as usize]);
            if sum[k as usize] == 0 {
                live += 1;
            }
            sum[k as usize] += c;
            counts.push((k, c));
        }
        touched.clear();
        let end = (m + 1) * MINUTE;
        if live > 0 {
            for (k, &c) in sum.iter().enumerate() {
                if c > 0 {
                    line(out, format, end - SIZE, end, k as u64, c as u64)?;
                }
            }
        }
        panes.push_back(counts);
        if panes.len() == (SIZE / MINUTE) as usize {
            for (k, c) in panes.pop_front().unwrap_or_default() {
                sum[k as usize] -= c;
                if sum[k as usize] == 0 {
                    live -= 1;
                }
            }
        }
        Ok(())
    };
    let mut text = String::new();
    reader.read_line(&mut text)?;
    let mut events = 0u64;
    let mut bytes = Vec::with_capacity(64);
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        let (key, ts) = parse_row(&bytes)
            .ok_or_else(|| anyhow::anyhow!("bad row `{}`", String::from_utf8_lossy(&bytes)))?;
        anyhow::ensure!((key as usize) < keys, "key {key} outside --keys");
        let m = ts / MINUTE;
        match minute {
            Some(current) if m > current => {
                for empty in current..m {
                    close(empty, &mut pane, &mut touched, &mut out)?;
                }
            }
            Some(current) if m < current => anyhow::bail!("rows out of time order"),
            _ => {}
        }
        minute = Some(m);
        if pane[key as usize] == 0 {
            touched.push(key as u32);
        }
        pane[key as usize] += 1;
        events += 1;
    }
    if let Some(last) = minute {
        // The stream ended: every window holding an event closes.
        for m in last..last + SIZE / MINUTE {
            close(m, &mut pane, &mut touched, &mut out)?;
        }
    }
    out.flush()?;
    Ok(events)
}

/// `key,ts` without allocating.
fn parse_row(row: &[u8]) -> Option<(u64, u64)> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let comma = row.iter().position(|&b| b == b',')?;
    Some((number(&row[..comma])?, number(&row[comma + 1..])?))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add((d - b'0') as u64))
            .flatten()
    })
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

pub fn sliding(args: &SlidingBenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.events > 0, "--events 0: there must be events");
    anyhow::ensure!(
        (1..=u32::MAX as u64).contains(&args.keys),
        "--keys {}: use 1 to {}",
        args.keys,
        u32::MAX
    );
    anyhow::ensure!(args.minutes > 0, "--minutes 0: the events must span time");
    anyhow::ensure!(args.workers > 0, "--workers 0: at least one worker");
    let (dir, _removed) = work_dir(args.dir.as_deref(), "sliding", &OWN_FILES)?;
    let input = dir.join("events.csv");
    write_input(&input, args.events, args.keys, args.minutes * MINUTE)?;
    settle(&input)?;

    let job_out = dir.join("job.csv");
    reset_peak_rss();
    let start = Instant::now();
    let read = job(&input, &job_out, args.workers, args.encoded, args.format)?;
    let job_secs = start.elapsed().as_secs_f64();
    let job_peak = peak_rss().unwrap_or(0);
    anyhow::ensure!(
        read == args.events,
        "the job read {read} events, expected {}",
        args.events
    );
    let results = BufReader::new(File::open(&job_out)?).lines().count();
    let mut report = json!({
        "bench": "sliding",
        "events": args.events,
        "keys": args.keys,
        "minutes": args.minutes,
        "workers": args.workers,
        "window": "10m sliding by 1m, count per key, ordered output to a file",
        "sink": if args.encoded { "sink_encoded" } else { "sink" },
        "format": format!("{:?}", args.format).to_lowercase(),
        "input_bytes": std::fs::metadata(&input)?.len(),
        "results": results,
        "job": {
            "seconds": job_secs,
            "events_per_s": args.events as f64 / job_secs,
            "peak_rss_bytes": job_peak,
        },
    });
    if !args.no_reference {
        settle(&job_out)?;
        let ref_out = dir.join("reference.csv");
        reset_peak_rss();
        let start = Instant::now();
        let read = reference(&input, &ref_out, args.keys, args.format)?;
        let ref_secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(read == args.events, "the reference read {read} events");
        let same = same_bytes(&job_out, &ref_out)?;
        report["reference"] = json!({
            "seconds": ref_secs,
            "events_per_s": args.events as f64 / ref_secs,
            "peak_rss_bytes": peak_rss().unwrap_or(0),
        });
        report["ratio"] = json!(ref_secs / job_secs);
        report["results_match_reference"] = json!(same);
        if !same {
            showln!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::bail!(
                "the job's results ({}) differ from the reference loop's ({})",
                job_out.display(),
                ref_out.display()
            );
        }
    }
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// The files this benchmark writes in `--dir`, and rewrites on a rerun.
const OWN_FILES: [&str; 3] = ["events.csv", "job.csv", "reference.csv"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_row(b"12,1704067200000\n"),
            Some((12, 1_704_067_200_000))
        );
        assert_eq!(parse_row(b"12,\n"), None);
        assert_eq!(parse_row(b"x,1\n"), None);
        assert_eq!(parse_row(b"99999999999999999999,1"), None);
    }

    #[test]
    fn a_line_reads_as_its_four_numbers() {
        let mut out = Vec::new();
        line(&mut out, Format::Csv, 0, 9, u64::MAX, 1_704_067_200_000).unwrap();
        line(&mut out, Format::Csv, 10, 200, 3000, 40_000).unwrap();
        let want = format!("0,9,{},1704067200000\n10,200,3000,40000\n", u64::MAX);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn a_json_line_is_what_serde_writes() {
        for (start, end, key, value) in [(0, 9, u64::MAX, 1), (600_000, 1_200_000, 3, 40_000)] {
            let result = WindowResult {
                key,
                start,
                end,
                value,
                update: false,
            };
            let mut want = serde_json::to_vec(&result).unwrap();
            want.push(b'\n');
            let mut out = Vec::new();
            line(&mut out, Format::Json, start, end, key, value).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn the_job_and_the_reference_write_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        write_input(&input, 30_000, 500, 25 * MINUTE).unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        for format in [Format::Csv, Format::Json] {
            assert_eq!(reference(&input, &b, 500, format).unwrap(), 30_000);
            for encoded in [false, true] {
                assert_eq!(job(&input, &a, 2, encoded, format).unwrap(), 30_000);
                assert!(std::fs::metadata(&a).unwrap().len() > 100_000);
                assert!(
                    same_bytes(&a, &b).unwrap(),
                    "{format:?}, encoded: {encoded}"
                );
            }
        }
    }
}
