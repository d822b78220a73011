//! `keyflow bench sliding`: a sliding 10-minute / 1-minute keyed count over
//! a CSV file of Zipf-like events, through the ordered output path into a
//! file (`Events::sink`, or `Events::sink_encoded` with `--encoded`), as
//! CSV lines or, with `--format json`, through the standard `JsonLinesSink`,
//! against a single-thread loop that reads the same file and writes the
//! same results. The run fails unless both files hold the same bytes.
//!
//! With `--partitioned` the job writes part files instead, compared with
//! the reference line for line in any order. A list of `--workers` runs
//! the job at each count over one input, `--rounds` times, and
//! `--processes` runs it as that many programs on loopback. A run's peak
//! memory is its process's high-water mark: after the first run of a
//! process it includes what the allocator kept from the runs before, so
//! only the first run's, or that of runs as processes, stands alone.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use keyflow::dataflow::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;

use super::bench_dir::{settle, work_dir};
use super::bench_sliding_runs::{digest, member_run, run_reference, timed_job, Expected, Runs};

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
    /// Worker threads per process. A list such as `1,2,4,8,16` runs the job
    /// at each count over the same input, one after another (the peak
    /// memory of each run after the first includes what earlier runs left
    /// with the allocator).
    #[arg(long, short = 'w', value_delimiter = ',', default_value = "1")]
    pub workers: Vec<usize>,
    /// Processes the job runs as, each with `--workers` threads, connected
    /// on loopback. Each is a program of its own, timed from the first
    /// one's start to the last one's end.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Times to run the list of `--workers`; each count reports every
    /// time and their median.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
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
    /// Write one part file per worker through `Events::sink_partitioned`
    /// (`parts/part-W.csv`, each ordered within a window's time) instead of
    /// one ordered file; compared with the reference line for line in any
    /// order.
    #[arg(long, conflicts_with = "encoded")]
    pub partitioned: bool,
    /// This program is member I of a `--processes` run (started by the
    /// bench itself).
    #[arg(long, hide = true, requires = "peers", value_name = "I")]
    pub member: Option<usize>,
    /// The members' `host:port`, in order (with `--member`).
    #[arg(long, hide = true, value_name = "LIST")]
    pub peers: Option<String>,
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

pub(super) const SIZE: u64 = 10 * MINUTE;

/// The first event's time: 2024-01-01, on a minute.
const START_MS: u64 = 1_704_067_200_000;

type Counted = WindowResult<u64, u64>;

/// The write buffer of the job's CSV sink and of the reference.
pub(super) const BUFFER: usize = 1 << 20;

/// One result as both write it, in `format`: `start,end,key,count`, or
/// a `WindowResult<u64, u64>` as `JsonLinesSink` writes it (serde), here
/// by hand (a test checks that the two agree).
pub(super) fn line(
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

/// Where the job writes its results.
#[derive(Debug, Clone)]
pub(super) enum Output {
    /// One file, in order (`Events::sink` or `Events::sink_encoded`).
    Ordered(PathBuf),
    /// `part-W.csv` per worker in this directory (`Events::sink_partitioned`).
    Parts(PathBuf),
}

impl Output {
    /// Where the job of `args` writes in `dir`.
    pub(super) fn of(args: &SlidingBenchArgs, dir: &Path) -> Self {
        match args.partitioned {
            true => Output::Parts(dir.join("parts")),
            false => Output::Ordered(dir.join("job.csv")),
        }
    }

    /// The files the job wrote.
    fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        match self {
            Output::Ordered(file) => Ok(vec![file.clone()]),
            Output::Parts(dir) => Ok(std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?),
        }
    }

    /// Makes room for a new run: a run at fewer workers than the last
    /// would leave the last one's extra parts behind.
    fn clear(&self) -> anyhow::Result<()> {
        if let Output::Parts(dir) = self {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

/// Worker `w`'s part file.
fn part(w: usize) -> String {
    format!("part-{w}.csv")
}

/// Runs the job in this process as `config` says; returns the events its
/// workers read.
pub(super) fn job(
    input: &Path,
    output: &Output,
    config: RunConfig,
    encoded: bool,
    format: Format,
) -> anyhow::Result<u64> {
    let (input, output) = (input.to_path_buf(), output.clone());
    let ctx = std::sync::Arc::new(Context::new(config));
    keyflow::dataflow::run::run_with_context(std::sync::Arc::clone(&ctx), move |flow| {
        let source = CsvSource::<Row>::new("events", vec![input.clone()], "ts");
        let results = flow
            .source("events", source, &SourceConfig::default())?
            .key_by(|row: Row| (row.key, ()))
            .window(WindowSpec::sliding(SIZE, MINUTE)?)
            .count("counts")
            .results;
        match (output.clone(), encoded, format) {
            (Output::Parts(dir), _, Format::Csv) => {
                results.sink_partitioned("out", move |w| CsvOut::create(&dir.join(part(w))))
            }
            (Output::Parts(dir), _, Format::Json) => {
                results.sink_partitioned("out", move |w| JsonLinesSink::create(&dir.join(part(w))))
            }
            (Output::Ordered(out), true, _) => {
                results.sink_encoded("out", encode(format), move || JsonLinesSink::create(&out))
            }
            (Output::Ordered(out), false, Format::Csv) => {
                results.sink("out", move || CsvOut::create(&out))
            }
            (Output::Ordered(out), false, Format::Json) => {
                results.sink("out", move || JsonLinesSink::create(&out))
            }
        }
    })?;
    Ok(ctx.metrics.snapshot().events)
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
    for &w in &args.workers {
        anyhow::ensure!(w > 0, "--workers 0: at least one worker");
    }
    anyhow::ensure!(
        (1..=256).contains(&args.processes),
        "--processes {}: use 1 to 256",
        args.processes
    );
    anyhow::ensure!(args.rounds > 0, "--rounds 0: at least one round");
    if let Some(member) = args.member {
        return member_run(args, member);
    }
    let (dir, _removed) = work_dir(args.dir.as_deref(), "sliding", &OWN_FILES)?;
    let input = dir.join("events.csv");
    write_input(&input, args.events, args.keys, args.minutes * MINUTE)?;
    settle(&input)?;

    let output = Output::of(args, &dir);
    let mut runs: Vec<Runs> = args
        .workers
        .iter()
        .map(|&workers| Runs {
            workers,
            seconds: Vec::new(),
            peak_rss_bytes: 0,
        })
        .collect();
    let (mut results, mut reference_report, mut expected) = (None, None, None);
    for _ in 0..args.rounds {
        for runs in &mut runs {
            output.clear()?;
            let (secs, read, peak) = timed_job(args, &dir, &output, runs.workers)?;
            anyhow::ensure!(
                read == args.events,
                "the job read {read} events at {} workers, expected {}",
                runs.workers,
                args.events
            );
            runs.seconds.push(secs);
            runs.peak_rss_bytes = runs.peak_rss_bytes.max(peak);
            let files = output.files()?;
            // The first run's lines are counted, and part files are
            // compared by their digest: one pass over the files for both.
            let got = match (results, &expected) {
                (None, _) | (_, Some(Expected::Lines(_))) => Some(digest(&files)?),
                _ => None,
            };
            if results.is_none() {
                results = got.map(|(lines, _)| lines);
                if !args.no_reference {
                    let (report, want) = run_reference(args, &dir, &files)?;
                    reference_report = Some(report);
                    expected = Some(want);
                }
            }
            let same = match &expected {
                None => true,
                Some(Expected::Bytes(file)) => same_bytes(&files[0], file)?,
                Some(Expected::Lines(want)) => got == Some(*want),
            };
            anyhow::ensure!(
                same,
                "the job's results at {} workers ({}) differ from the reference loop's (in {})",
                runs.workers,
                files.len(),
                dir.display()
            );
        }
    }

    let sink = match (args.partitioned, args.encoded) {
        (true, _) => "sink_partitioned",
        (false, true) => "sink_encoded",
        (false, false) => "sink",
    };
    let first = runs[0].median();
    let reference_secs = reference_report
        .as_ref()
        .and_then(|r: &serde_json::Value| r["seconds"].as_f64());
    let mut report = json!({
        "bench": "sliding",
        "events": args.events,
        "keys": args.keys,
        "minutes": args.minutes,
        "workers": args.workers,
        "processes": args.processes,
        "rounds": args.rounds,
        "window": "10m sliding by 1m, count per key",
        "sink": sink,
        "format": format!("{:?}", args.format).to_lowercase(),
        "input_bytes": std::fs::metadata(&input)?.len(),
        "results": results.unwrap_or(0),
        "job": {
            "seconds": first,
            "events_per_s": args.events as f64 / first,
            "peak_rss_bytes": runs[0].peak_rss_bytes,
        },
        "runs": runs.iter().map(|r| json!({
            "workers": r.workers,
            "processes": args.processes,
            "seconds": r.seconds,
            "median_seconds": r.median(),
            "events_per_s": args.events as f64 / r.median(),
            "speedup_over_first": first / r.median(),
            "ratio": reference_secs.map(|s| s / r.median()),
            "peak_rss_bytes": r.peak_rss_bytes,
        })).collect::<Vec<_>>(),
    });
    if let Some(reference) = reference_report {
        report["ratio"] = json!(reference_secs.map(|s| s / first));
        report["reference"] = reference;
        report["results_match_reference"] = json!(true);
    }
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// The files this benchmark writes in `--dir`, and rewrites on a rerun.
const OWN_FILES: [&str; 4] = ["events.csv", "job.csv", "reference.csv", "parts"];

#[cfg(test)]
mod tests {
    use super::super::bench_sliding_reference::reference;
    use super::*;

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
                let out = Output::Ordered(a.clone());
                let config = RunConfig::threads(2);
                assert_eq!(job(&input, &out, config, encoded, format).unwrap(), 30_000);
                assert!(std::fs::metadata(&a).unwrap().len() > 100_000);
                assert!(
                    same_bytes(&a, &b).unwrap(),
                    "{format:?}, encoded: {encoded}"
                );
            }
            let parts = Output::Parts(dir.path().join("parts"));
            parts.clear().unwrap();
            assert_eq!(
                job(&input, &parts, RunConfig::threads(3), false, format).unwrap(),
                30_000
            );
            let files = parts.files().unwrap();
            assert_eq!(files.len(), 3);
            let digest = super::digest;
            assert_eq!(
                digest(&files).unwrap(),
                digest(std::slice::from_ref(&b)).unwrap()
            );
        }
    }
}
