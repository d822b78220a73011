//! `keyflow bench jsonl`: the trending job reading a JSON-lines file of the
//! generator's events, against the same job on the generator itself, in one
//! run. An untimed run on the generator comes first; then rounds alternate
//! which input goes first, and the report gives the medians and their
//! ratio: what reading, parsing and naming articles from a file costs on
//! top of the generator's bare ids. With `--cold`, each run is a process of
//! its own, as a standalone run is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::jobs::pageviews::{DumpTime, GeneratorConfig, InputFormat, PageviewSource};
use keyflow::jobs::trending::TrendingMinute;
use serde_json::json;

use super::bench::{generator, peak_rss, reset_peak_rss, run_source};
use super::bench_dir::{settle, work_dir};

/// Flags of `keyflow bench jsonl`.
#[derive(Debug, Clone, Args)]
pub struct JsonlBenchArgs {
    /// Distinct articles (Zipf ranks).
    #[arg(long, default_value_t = 1_000_000)]
    pub articles: u32,
    /// Events to generate (spread over two hours of event time).
    #[arg(long, default_value_t = 5_000_000)]
    pub events: u64,
    /// Worker threads for the job.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rounds, each one run from the file and one from the generator; odd
    /// rounds run the file first, even ones the generator.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Keep the JSON-lines file here [default: a temporary directory,
    /// removed at the end].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run each timed run as a process of its own (`keyflow run trending`,
    /// its output to a file in the directory), as a standalone run is: no
    /// untimed run first, and each run pays for its new memory.
    #[arg(long)]
    pub cold: bool,
}

/// The files this benchmark writes in `--dir`, and rewrites on a rerun.
const OWN_FILES: [&str; 3] = ["events.jsonl", "file.out", "generator.out"];

/// One timed run: seconds, peak RSS (in this process only), and what it
/// wrote.
struct Timed {
    seconds: f64,
    peak_rss: Option<u64>,
    output: Output,
}

/// What a run wrote: its minutes, or, run as a process, its output file.
#[derive(PartialEq)]
enum Output {
    Minutes(Vec<TrendingMinute>),
    Bytes(Vec<u8>),
}

impl Output {
    /// How many minutes it holds (a line each in a file).
    fn minutes(&self) -> usize {
        match self {
            Output::Minutes(minutes) => minutes.len(),
            Output::Bytes(bytes) => bytes.iter().filter(|&&b| b == b'\n').count(),
        }
    }
}

/// Runs the trending job over `source`, checking that it read `events`.
fn timed(source: &PageviewSource, workers: usize, events: u64) -> anyhow::Result<Timed> {
    reset_peak_rss();
    let start = Instant::now();
    let (minutes, ctx) = run_source(source.clone(), RunConfig::threads(workers))?;
    let seconds = start.elapsed().as_secs_f64();
    let read = ctx.metrics.snapshot().events;
    anyhow::ensure!(
        read == events,
        "the job read {read} events, expected {events}"
    );
    Ok(Timed {
        seconds,
        peak_rss: peak_rss(),
        output: Output::Minutes(minutes.into_iter().map(|(m, _)| m).collect()),
    })
}

/// Runs `keyflow run trending` over `input` (`--input FILE`, or the
/// generator's flags) as a process of its own, its output to `out`.
fn timed_process(input: &[String], workers: usize, out: &Path) -> anyhow::Result<Timed> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let ran = std::process::Command::new(exe)
        .args(["run", "trending", "--top", "0", "--quiet", "--workers"])
        .arg(workers.to_string())
        .args(input)
        .arg("--out")
        .arg(out)
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        ran.status.success(),
        "keyflow run trending {input:?}: {}: {}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr).trim()
    );
    Ok(Timed {
        seconds,
        peak_rss: None,
        output: Output::Bytes(std::fs::read(out)?),
    })
}

/// The flags of `keyflow run trending` for the generator of `config`.
fn generator_flags(config: &GeneratorConfig) -> Vec<String> {
    [
        ("--articles", config.articles.to_string()),
        ("--seed", config.seed.to_string()),
        ("--rate", config.rate.to_string()),
        ("--duration", format!("{}ms", config.duration_ms)),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// The median of `values` (NaN for none).
pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `keyflow bench jsonl`.
pub fn jsonl(args: &JsonlBenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.events > 0, "--events 0: there must be events");
    anyhow::ensure!(args.articles > 0, "--articles 0: there must be articles");
    anyhow::ensure!(args.workers > 0, "--workers 0: at least one worker");
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds {}: use 1 to 100",
        args.rounds
    );
    let config = generator(args.articles, args.events, args.seed, false);
    let events = config.total_events();
    let from_generator = PageviewSource::generator(config.clone())?;
    let (dir, _removed) = work_dir(args.dir.as_deref(), "jsonl", &OWN_FILES)?;
    let path = dir.join(OWN_FILES[0]);
    let written = super::generate::jsonl_file(&from_generator, &path)?;
    anyhow::ensure!(
        written == events,
        "wrote {written} events, expected {events}"
    );
    settle(&path)?;
    let from_file = PageviewSource::from_files(
        InputFormat::Jsonl,
        std::slice::from_ref(&path),
        DumpTime::Start,
    )?;

    let (file_args, gen_args) = (
        vec!["--input".to_string(), path.display().to_string()],
        generator_flags(&config),
    );
    let run = |file: bool| {
        let source = if file { &from_file } else { &from_generator };
        if !args.cold {
            return timed(source, args.workers, events);
        }
        let (input, out) = if file {
            (&file_args, dir.join(OWN_FILES[1]))
        } else {
            (&gen_args, dir.join(OWN_FILES[2]))
        };
        timed_process(input, args.workers, &out)
    };
    // A process's first run is slower whichever input it reads: its memory
    // is new, and every page it touches is a fault. In one process, an
    // untimed run first, so that the rounds compare the inputs alone.
    let warmup = if args.cold { None } else { Some(run(false)?) };
    let warmup_seconds = warmup.as_ref().map(|w| w.seconds);
    let mut expected = warmup.map(|w| w.output);
    let mut rounds = Vec::with_capacity(args.rounds);
    let (mut file_secs, mut gen_secs) = (Vec::new(), Vec::new());
    let (mut file_peak, mut gen_peak) = (None, None);
    for round in 0..args.rounds {
        let file_first = round % 2 == 0;
        let (mut file, mut gen) = (0.0, 0.0);
        for from_file in [file_first, !file_first] {
            let timed = run(from_file)?;
            match &expected {
                None => expected = Some(timed.output),
                Some(output) => anyhow::ensure!(
                    *output == timed.output,
                    "round {}: the {} run wrote other trending minutes than the first run",
                    round + 1,
                    if from_file { "file" } else { "generator" }
                ),
            }
            let (seconds, peak) = if from_file {
                (&mut file, &mut file_peak)
            } else {
                (&mut gen, &mut gen_peak)
            };
            *seconds = timed.seconds;
            *peak = (*peak).max(timed.peak_rss);
        }
        file_secs.push(file);
        gen_secs.push(gen);
        rounds.push(json!({
            "first": if file_first { "file" } else { "generator" },
            "file_seconds": file,
            "generator_seconds": gen,
            "file_vs_generator": gen / file,
        }));
    }
    let (file_median, gen_median) = (median(&file_secs), median(&gen_secs));
    let report = json!({
        "bench": "jsonl",
        "articles": args.articles,
        "events": events,
        "workers": args.workers,
        "input_bytes": std::fs::metadata(&path)?.len(),
        "cold": args.cold,
        "warmup_seconds": warmup_seconds,
        "minutes": expected.as_ref().map_or(0, Output::minutes),
        "results_match": true,
        "file": {
            "median_seconds": file_median,
            "events_per_s": events as f64 / file_median,
            "peak_rss_bytes": file_peak,
        },
        "generator": {
            "median_seconds": gen_median,
            "events_per_s": events as f64 / gen_median,
            "peak_rss_bytes": gen_peak,
        },
        // The file's speed as a share of the generator's, from the medians.
        "file_vs_generator": gen_median / file_median,
        "rounds": rounds,
    });
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
