//! The command line: clap definitions and dispatch.

pub mod activity;
pub mod anomaly;
pub mod behaviour;
pub mod bench;
pub mod bench_behaviour;
mod bench_dir;
pub mod bench_jsonl;
#[cfg(feature = "kafka")]
pub mod bench_kafka;
pub mod bench_sliding;
mod bench_sliding_reference;
mod bench_sliding_runs;
pub mod checkpoint_args;
pub mod cluster;
pub mod explain;
pub mod generate;
pub mod kafka_io;
pub mod lake_claim;
pub mod progress;
pub mod redis_out;
pub mod reference;
pub mod run_args;
pub mod signals;
pub mod sources;
pub mod trending;
pub mod validate;

use clap::{Parser, Subcommand};

/// keyflow: keyed, windowed streaming jobs on timely dataflow.
#[derive(Debug, Parser)]
#[command(name = "keyflow", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (e.g. `info`, `keyflow=debug`); also read from RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// keyflow's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the bundled jobs.
    Jobs,
    /// Print the dataflow graph of a bundled job: its steps and the
    /// channels between them.
    Explain {
        /// The job's name (see `keyflow jobs`).
        job: String,
        /// How to print it: `text`, `dot` (Graphviz) or `mermaid`.
        #[arg(long, value_enum, default_value_t = explain::GraphFormat::Text)]
        format: explain::GraphFormat,
    },
    /// Run a bundled job.
    Run {
        /// The job.
        #[command(subcommand)]
        job: RunJob,
    },
    /// Build a baseline of hourly averages from historical dump files.
    Baseline(Box<anomaly::BaselineArgs>),
    /// Write the generator's pageview events as JSON lines or into a Redis
    /// stream.
    Generate(Box<generate::GenerateArgs>),
    /// Start a local multi-process cluster running one job.
    Cluster(cluster::ClusterCmd),
    /// Exit 0 when FILE exists, 1 otherwise: a readiness probe for a
    /// process started with `--ready-file FILE`, for images without a shell.
    Ready {
        /// The file a job's `--ready-file` names.
        file: std::path::PathBuf,
    },
    /// Measure the trending and behaviour jobs (use a release build).
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
}

/// Output flags whose files one process writes, and `--serve`, which one
/// process serves: the processes of a cluster must agree on whether they
/// are given, not on their values.
pub const WRITTEN_BY_ONE: &[&str] = &[
    "out",
    "late_out",
    "hourly_out",
    "baseline_out",
    "trending_out",
    "anomaly_out",
    "alerts_out",
    "stats_out",
    "parquet_out",
    "checkpoint_dir",
    // Every process builds the dashboard's sinks, so all must have it or
    // none; only process 0 serves.
    "serve",
];

/// The bundled jobs `keyflow run` can start.
#[derive(Debug, Subcommand)]
pub enum RunJob {
    /// Every minute, the articles whose views did not fall across the six
    /// 10-minute windows of the last hour.
    Trending(Box<trending::TrendingArgs>),
    /// Every hour, the articles whose day so far is farthest (Canberra or
    /// Bray-Curtis) from their historical hourly averages; the averages are
    /// updated at each day's end.
    Anomaly(Box<anomaly::AnomalyArgs>),
    /// Trending every minute and anomalies every hour, over one source in
    /// one dataflow.
    Pageviews(Box<anomaly::PageviewsArgs>),
    /// Every interval, users per state (landed, browsing, bounced,
    /// buying), the flows between states, and alerts when a population
    /// grows fast.
    Behaviour(Box<behaviour::BehaviourArgs>),
    /// Per tumbling window: the most visited pages, browser and device
    /// shares and the conversion rate; per user: activity features, as
    /// hour-partitioned Parquet files.
    Activity(Box<activity::ActivityArgs>),
}

/// The bundled jobs, with one line each.
pub const JOBS: &[(&str, &str)] = &[
    (
        "trending",
        "every minute, the articles whose views did not fall across the six 10-minute windows of the last hour",
    ),
    (
        "anomaly",
        "every hour, Canberra (or Bray-Curtis) distances of the day's hourly views from a baseline, updated daily",
    ),
    (
        "pageviews",
        "trending and anomaly together over one source, in one dataflow",
    ),
    (
        "behaviour",
        "every interval, web users per state (landed, browsing, bounced, buying), the flows between states, and alerts",
    ),
    (
        "activity",
        "per window, top pages, browser and device shares and conversion; per user, features as Parquet",
    ),
];

impl RunJob {
    /// The job's cluster flags.
    pub fn cluster_mut(&mut self) -> &mut run_args::ClusterArgs {
        match self {
            RunJob::Trending(args) => &mut args.cluster,
            RunJob::Anomaly(args) => &mut args.cluster,
            RunJob::Pageviews(args) => &mut args.trending.cluster,
            RunJob::Behaviour(args) => &mut args.cluster,
            RunJob::Activity(args) => &mut args.cluster,
        }
    }
}
