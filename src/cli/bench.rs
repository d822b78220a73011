//! `keyflow bench`: the trending job against a hand-written loop, and the
//! latency from a minute's close to its result.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::time::MINUTE;
use keyflow::jobs::pageviews::{
    GeneratorConfig, GeneratorSource, PageviewSource, DEFAULT_START_MS,
};
use keyflow::jobs::trending::{trending, TrendingConfig, TrendingMinute};
use serde_json::json;

use super::reference;
use super::run_args::parse_duration;

/// Benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCmd {
    /// Throughput of the trending job against a single-thread hash-map loop
    /// over the same events, in one run; prints JSON.
    Trending(ThroughputArgs),
    /// Latency from a minute's close (progress passing T) to its result,
    /// at a paced rate; prints JSON.
    Latency(LatencyArgs),
    /// Throughput of the behaviour job over the user generator; prints
    /// JSON.
    Behaviour(super::bench_behaviour::BehaviourBenchArgs),
    /// Throughput of a sliding 10-minute / 1-minute keyed count over a CSV
    /// file, through the ordered output path or into part files, against a
    /// single-thread loop writing the same results, at one or several
    /// worker counts; prints JSON.
    Sliding(super::bench_sliding::SlidingBenchArgs),
    /// Throughput of the trending job reading a JSON-lines file of the
    /// generator's events, against the generator itself, rounds
    /// alternating in one run; prints JSON.
    Jsonl(super::bench_jsonl::JsonlBenchArgs),
    /// Throughput of the trending job reading a Kafka topic (an in-process
    /// mock cluster) next to a file and the generator; prints JSON. Needs
    /// the `kafka` feature.
    #[cfg(feature = "kafka")]
    Kafka(super::bench_kafka::KafkaBenchArgs),
}

/// Flags of `keyflow bench trending`.
#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    /// Distinct articles (Zipf ranks).
    #[arg(long, default_value_t = 1_000_000)]
    pub articles: u32,
    /// Events to generate (spread over two hours of event time).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Worker threads for the job.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the reference loop (job only).
    #[arg(long)]
    pub no_reference: bool,
    /// Also run the job checkpointing every this much event time (into a
    /// temporary directory), and report its cost and checkpoint size.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub checkpoint_every: Option<Duration>,
}

/// Flags of `keyflow bench latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Events per second of wall-clock time, paced.
    #[arg(long, default_value_t = 1_000_000)]
    pub rate: u64,
    /// How long to run, in wall-clock time.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Event time runs this many times as fast as the wall clock, so that
    /// a short run closes many minutes (60: a minute a second); the events
    /// per second of event time are `--rate` divided by it.
    #[arg(long, default_value_t = 1)]
    pub speedup: u64,
    /// Distinct articles.
    #[arg(long, default_value_t = 1_000_000)]
    pub articles: u32,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
}

/// Peak resident memory of this process, in bytes (Linux `VmHWM`).
pub(super) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak so the next phase measures its own (Linux >= 4.0).
pub(super) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(super) fn generator(articles: u32, events: u64, seed: u64, realtime: bool) -> GeneratorConfig {
    // Two hours of event time, so that every minute of the second hour has
    // six full windows behind it.
    let rate = (events / 7_200).max(1);
    GeneratorConfig {
        articles,
        seed,
        rate,
        duration_ms: events * 1000 / rate,
        start_ms: DEFAULT_START_MS,
        realtime,
        ..GeneratorConfig::default()
    }
}

fn job_config() -> TrendingConfig {
    TrendingConfig {
        hourly: false,
        ..TrendingConfig::default()
    }
}

/// Minutes with the wall-clock time they were written.
pub(super) type Timed = Vec<(TrendingMinute, Instant)>;

/// Runs the trending job over `config`'s events, collecting its minutes
/// with their wall-clock write times.
fn run_job(config: &GeneratorConfig, run: RunConfig) -> anyhow::Result<(Timed, Arc<Context>)> {
    run_source(PageviewSource::generator(config.clone())?, run)
}

/// Runs the trending job over `source`, collecting its minutes with their
/// wall-clock write times.
pub(super) fn run_source(
    source: PageviewSource,
    run: RunConfig,
) -> anyhow::Result<(Timed, Arc<Context>)> {
    let minutes = Arc::new(Mutex::new(Vec::new()));
    let ctx = Arc::new(Context::new(run));
    let out = Arc::clone(&minutes);
    keyflow::dataflow::run::run_with_context(Arc::clone(&ctx), move |flow| {
        let src = source.clone();
        let out = Arc::clone(&out);
        let events = flow.source("pageviews", src, &SourceConfig::default())?;
        let job = trending(events, &job_config())?;
        job.minutes.sink("collect", move || Ok(Collect(out)))
    })?;
    let minutes = std::mem::take(&mut *minutes.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((minutes, ctx))
}

struct Collect(Arc<Mutex<Vec<(TrendingMinute, Instant)>>>);

impl Sink<TrendingMinute> for Collect {
    fn write(&mut self, _: EventTime, records: &[(EventTime, TrendingMinute)]) -> Result<()> {
        let now = Instant::now();
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(records.iter().map(|(_, m)| (m.clone(), now)));
        Ok(())
    }
}

fn article_id(title: &str) -> u32 {
    title
        .strip_prefix("Article_")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// `keyflow bench trending`.
pub fn throughput(args: &ThroughputArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.events > 0, "--events 0: there must be events");
    let config = generator(args.articles, args.events, args.seed, false);
    let events = config.total_events();
    let base_rss = current_rss().unwrap_or(0);
    reset_peak_rss();
    let start = Instant::now();
    let (minutes, ctx) = run_job(&config, RunConfig::threads(args.workers))?;
    let job_secs = start.elapsed().as_secs_f64();
    let job_peak = peak_rss().unwrap_or(0);
    anyhow::ensure!(
        ctx.metrics.snapshot().events == events,
        "the job read {} events, expected {events}",
        ctx.metrics.snapshot().events
    );
    drop(ctx);

    let mut report = json!({
        "bench": "trending",
        "articles": args.articles,
        "events": events,
        "workers": args.workers,
        "job": {
            "seconds": job_secs,
            "events_per_s": events as f64 / job_secs,
            "peak_rss_bytes": job_peak,
            "minutes": minutes.len(),
        },
    });
    if !args.no_reference {
        let source = GeneratorSource::new(config.clone())?;
        reset_peak_rss();
        let rss_before = current_rss().unwrap_or(0);
        let start = Instant::now();
        let expected = reference::run(&source, events, args.articles);
        let ref_secs = start.elapsed().as_secs_f64();
        let ref_peak = peak_rss().unwrap_or(0);
        let got: Vec<(u64, u64, Vec<u32>)> = minutes
            .iter()
            .map(|(m, _)| {
                let top = m.top.iter().map(|e| article_id(&e.title)).collect();
                (m.t, m.trending, top)
            })
            .collect();
        let same = got == expected.minutes;
        let state = job_peak.saturating_sub(base_rss) as f64 / expected.peak_articles.max(1) as f64;
        report["reference"] = json!({
            "seconds": ref_secs,
            "events_per_s": events as f64 / ref_secs,
            "peak_rss_bytes": ref_peak,
            "rss_growth_bytes": ref_peak.saturating_sub(rss_before),
            "peak_active_articles": expected.peak_articles,
        });
        report["ratio"] = json!(ref_secs / job_secs);
        report["state_bytes_per_active_article"] = json!(state);
        report["results_match_reference"] = json!(same);
        if !same {
            showln!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::bail!("the job's trending minutes differ from the reference loop's");
        }
    }
    if let Some(every) = args.checkpoint_every {
        let (secs, bytes, same) = checkpointed(&config, args.workers, every, &minutes)?;
        report["checkpointed"] = json!({
            "every_ms": every.as_millis() as u64,
            "seconds": secs,
            "events_per_s": events as f64 / secs,
            "throughput_vs_job": job_secs / secs,
            "largest_checkpoint_dir_bytes": bytes,
            "results_match_job": same,
        });
    }
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// Runs the job again with checkpoints into a temporary directory; returns
/// its seconds, the largest size of that directory, and whether its
/// minutes equal the plain run's.
fn checkpointed(
    config: &GeneratorConfig,
    workers: usize,
    every: Duration,
    plain: &Timed,
) -> anyhow::Result<(f64, u64, bool)> {
    let dir = std::env::temp_dir().join(format!("keyflow-bench-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run =
        RunConfig::threads(workers).checkpointed(&dir, every.as_millis() as u64, "bench trending");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The job marks itself finished and drops its epochs at the end, so a
    // watcher notes the size of the directory while it runs.
    let watcher = {
        let (dir, done) = (dir.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut largest = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                largest = largest.max(complete_epoch_bytes(&dir));
                std::thread::sleep(Duration::from_millis(20));
            }
            largest
        })
    };
    let start = Instant::now();
    let outcome = run_job(config, run);
    let secs = start.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let largest = watcher.join().unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let (minutes, _) = outcome?;
    let same = minutes
        .iter()
        .map(|(m, _)| m)
        .eq(plain.iter().map(|(m, _)| m));
    Ok((secs, largest, same))
}

/// Bytes of everything under the checkpoint directory (the kept epochs
/// and the blobs they refer to): what a checkpoint costs on disk.
fn complete_epoch_bytes(dir: &std::path::Path) -> u64 {
    fn walk(path: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(path) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// `keyflow bench latency`.
pub fn latency(args: &LatencyArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        (1..=args.rate.max(1)).contains(&args.speedup),
        "--speedup {}: use 1 to --rate ({})",
        args.speedup,
        args.rate
    );
    let speedup = args.speedup;
    let duration_ms = args.duration.as_millis() as u64 * speedup;
    let ooo = SourceConfig::default().max_out_of_orderness;
    // Start `ooo` before a minute boundary, so that the first minute closes
    // 2 * ooo (10 s) into the run rather than a minute later: short runs
    // get a sample too.
    let start_ms = DEFAULT_START_MS + MINUTE - ooo;
    let config = GeneratorConfig {
        articles: args.articles,
        rate: args.rate / speedup,
        duration_ms,
        start_ms,
        realtime: true,
        speedup,
        ..GeneratorConfig::default()
    };
    let start = Instant::now();
    let (minutes, ctx) = run_job(&config, RunConfig::threads(args.workers))?;
    let events = ctx.metrics.snapshot().events;
    // A minute T closes when the watermark (newest event time minus the
    // allowed out-of-orderness) passes T: at wall time start + (T + ooo),
    // the event time scaled down by the speedup.
    let mut lat: Vec<f64> = minutes
        .iter()
        .filter(|(m, _)| m.t + ooo <= start_ms + duration_ms)
        .map(|(m, written)| {
            let close = start + Duration::from_millis((m.t + ooo - start_ms) / speedup);
            written.saturating_duration_since(close).as_secs_f64() * 1000.0
        })
        .collect();
    // In minute order in the report, where a backlog shows as a climb.
    let in_order = lat.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let report = json!({
        "bench": "latency",
        "rate": args.rate,
        "speedup": speedup,
        "events": events,
        "achieved_events_per_s": events as f64 / start.elapsed().as_secs_f64(),
        "workers": args.workers,
        "minutes": lat.len(),
        "latency_ms": {
            "median": percentile(&lat, 0.5),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(f64::NAN),
        },
        // One sample per closed minute, in minute order, so short runs have
        // few: listing them shows what the percentiles stand on.
        "samples_ms": in_order,
    });
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
