//! The command line: clap definitions and dispatch.

pub mod activity;
pub mod anomaly;
pub mod bench;
pub mod checkpoint_args;
pub mod cluster;
pub mod explain;
pub mod progress;
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
    /// Print the dataflow graph of a bundled job.
    Explain {
        /// The job's name (see `keyflow jobs`).
        job: String,
    },
    /// Run a bundled job.
    Run {
        /// The job.
        #[command(subcommand)]
        job: RunJob,
    },
    /// Build a baseline of hourly averages from historical dump files.
    Baseline(Box<anomaly::BaselineArgs>),
    /// Start a local multi-process cluster running one job.
    Cluster(cluster::ClusterCmd),
    /// Measure the trending job (use a release build).
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
}

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
        "activity",
        "per window, top pages, browser and device shares and conversion; per user, features as Parquet",
    ),
];
