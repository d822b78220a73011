//! The `keyflow` command-line tool.

mod cli;

use clap::Parser;
use cli::{Cli, Command, RunJob};

fn main() {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let code = match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyflow: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Jobs => {
            for (name, what) in cli::JOBS {
                println!("{name:<12} {what}");
            }
            Ok(0)
        }
        Command::Explain { job } => {
            print!("{}", cli::explain::explain(&job)?);
            Ok(0)
        }
        Command::Run { job } => match job {
            RunJob::Trending(args) => cli::trending::run(&args),
            RunJob::Anomaly(args) => cli::anomaly::run_anomaly(&args),
            RunJob::Pageviews(args) => cli::anomaly::run_pageviews(&args),
        },
        Command::Baseline(args) => cli::anomaly::baseline(&args),
        Command::Cluster(cmd) => cli::cluster::launch(&cmd),
        Command::Bench { what } => match what {
            cli::bench::BenchCmd::Trending(args) => cli::bench::throughput(&args),
            cli::bench::BenchCmd::Latency(args) => cli::bench::latency(&args),
        },
    }
}
