//! `keyflow bench jsonl`: the trending job reading a JSON-lines file of the
//! generator's events, against the same job on the generator itself, in one
//! run. An untimed run on the generator comes first; then rounds alternate
//! which input goes first, and the report gives the medians and their
//! ratio: what reading, parsing and naming articles from a file costs on
//! top of the generator's bare ids.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::jobs::pageviews::{DumpTime, InputFormat, PageviewSource};
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
}

/// The files this benchmark writes in `--dir`, and rewrites on a rerun.
const OWN_FILES: [&str; 1] = ["events.jsonl"];

/// One timed run: seconds, peak RSS, and the minutes it wrote.
struct Timed {
    seconds: f64,
    peak_rss: u64,
    minutes: Vec<TrendingMinute>,
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
        peak_rss: peak_rss().unwrap_or(0),
        minutes: minutes.into_iter().map(|(m, _)| m).collect(),
    })
}

fn median(values: &[f64]) -> f64 {
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
    let from_generator = PageviewSource::generator(config)?;
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

    // The process's first run is slower whichever input it reads: its
    // memory is new, and every page it touches is a fault. An untimed run
    // first, so that the rounds compare the inputs alone.
    let warmup = timed(&from_generator, args.workers, events)?;
    let mut rounds = Vec::with_capacity(args.rounds);
    let (mut file_secs, mut gen_secs) = (Vec::new(), Vec::new());
    let (mut file_peak, mut gen_peak) = (0u64, 0u64);
    let (warmup_seconds, expected) = (warmup.seconds, warmup.minutes);
    for round in 0..args.rounds {
        let file_first = round % 2 == 0;
        let mut pair = [None, None];
        for file in [file_first, !file_first] {
            let source = if file { &from_file } else { &from_generator };
            let run = timed(source, args.workers, events)?;
            anyhow::ensure!(
                expected == run.minutes,
                "round {}: the trending minutes from the {} differ from the generator's",
                round + 1,
                if file { "file" } else { "generator" }
            );
            pair[usize::from(!file)] = Some(run);
        }
        let [Some(file), Some(gen)] = pair else {
            unreachable!("each round runs both")
        };
        file_secs.push(file.seconds);
        gen_secs.push(gen.seconds);
        file_peak = file_peak.max(file.peak_rss);
        gen_peak = gen_peak.max(gen.peak_rss);
        rounds.push(json!({
            "first": if file_first { "file" } else { "generator" },
            "file_seconds": file.seconds,
            "generator_seconds": gen.seconds,
            "file_vs_generator": gen.seconds / file.seconds,
        }));
    }
    let (file_median, gen_median) = (median(&file_secs), median(&gen_secs));
    let report = json!({
        "bench": "jsonl",
        "articles": args.articles,
        "events": events,
        "workers": args.workers,
        "input_bytes": std::fs::metadata(&path)?.len(),
        "warmup_seconds": warmup_seconds,
        "minutes": expected.len(),
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
    println!("{}", serde_json::to_string_pretty(&report)?);
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
