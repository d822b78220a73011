//! `keyflow bench behaviour`: the behaviour job's throughput over the
//! user generator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::jobs::behaviour::{behaviour, BehaviourConfig, UserGeneratorConfig, UserSource};
use serde_json::json;

use super::bench::{peak_rss, reset_peak_rss};
use super::run_args::parse_duration;

/// Flags of `keyflow bench behaviour`.
#[derive(Debug, Clone, Args)]
pub struct BehaviourBenchArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u32,
    /// Event time to generate.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Runs the job with default settings over the generator, as fast as it
/// goes, and prints events/s and peak memory as JSON.
pub fn behaviour_throughput(args: &BehaviourBenchArgs) -> anyhow::Result<i32> {
    let generator = UserGeneratorConfig {
        users: args.users,
        seed: args.seed,
        duration_ms: args.duration.as_millis() as u64,
        ..UserGeneratorConfig::default()
    };
    generator.validate()?;
    let ctx = Arc::new(Context::new(RunConfig::threads(args.workers)));
    let reports = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&reports);
    reset_peak_rss();
    let start = Instant::now();
    run_with_context(Arc::clone(&ctx), move |flow| {
        let source = UserSource::generator(generator.clone())?;
        let events = flow.source("user-events", source, &SourceConfig::default())?;
        let counted = Arc::clone(&counted);
        behaviour(events, &BehaviourConfig::default())?
            .reports
            .inspect(move |_, _| {
                counted.fetch_add(1, Ordering::Relaxed);
            });
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let events = ctx.metrics.snapshot().events;
    let report = json!({
        "bench": "behaviour",
        "users": args.users,
        "duration_ms": args.duration.as_millis() as u64,
        "workers": args.workers,
        "events": events,
        "reports": reports.load(Ordering::Relaxed),
        "seconds": seconds,
        "events_per_s": events as f64 / seconds,
        "peak_rss_bytes": peak_rss().unwrap_or(0),
    });
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
