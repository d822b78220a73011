//! The `keyflow` command-line tool.

/// Writes a line to stderr as `eprintln!` does, but a failed write is
/// ignored: `eprintln!` panics when stderr is a pipe whose reader is gone
/// (a cluster member whose launcher was killed), after the work is done.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes to stdout as `print!` does, but a failed write (the reader of a
/// pipe gone, as with `keyflow jobs | head -1`) is ignored, not a panic.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// As [`show!`], with a newline.
macro_rules! showln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod serve;

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, RunJob};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Run { job } = &mut cli.command {
        // Every process of a cluster compares these when they connect.
        job.cluster_mut().settings =
            keyflow::dataflow::args::agreed_settings(&matches, cli::WRITTEN_BY_ONE);
    }
    let (text, from) = match std::env::var("RUST_LOG") {
        Ok(text) => (text, "RUST_LOG"),
        Err(_) => (cli.log.clone(), "--log"),
    };
    // A filter that does not parse would silently log less than asked.
    let filter = tracing_subscriber::EnvFilter::try_new(&text).unwrap_or_else(|e| {
        say!("keyflow: error: invalid configuration: {from} `{text}`: {e}");
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    cli::signals::install();
    cli::signals::die_with_launcher();
    let code = match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            say!("keyflow: error: {}", error_chain(&e));
            2
        }
    };
    std::process::exit(code);
}

/// The error and its causes, joined by `: `, leaving out a cause whose text
/// the message already holds (many errors quote their source, such as an
/// OS error, in their own text).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    keyflow::dataflow::source::check_split_bytes()?;
    match command {
        Command::Jobs => {
            for (name, what) in cli::JOBS {
                showln!("{name:<12} {what}");
            }
            Ok(0)
        }
        Command::Explain { job, format } => {
            show!("{}", cli::explain::explain(&job, format)?);
            Ok(0)
        }
        Command::Run { job } => match job {
            RunJob::Trending(args) => cli::trending::run(&args),
            RunJob::Anomaly(args) => cli::anomaly::run_anomaly(&args),
            RunJob::Pageviews(args) => cli::anomaly::run_pageviews(&args),
            RunJob::Behaviour(args) => cli::behaviour::run(&args),
            RunJob::Activity(args) => cli::activity::run(&args),
        },
        Command::Baseline(args) => cli::anomaly::baseline(&args),
        Command::Cluster(cmd) => cli::cluster::launch(&cmd),
        Command::Generate(args) => cli::generate::generate(&args),
        Command::Ready { file } => Ok(if file.exists() { 0 } else { 1 }),
        Command::Bench { what } => match what {
            cli::bench::BenchCmd::Trending(args) => cli::bench::throughput(&args),
            cli::bench::BenchCmd::Latency(args) => cli::bench::latency(&args),
            cli::bench::BenchCmd::Sliding(args) => cli::bench_sliding::sliding(&args),
            cli::bench::BenchCmd::Jsonl(args) => cli::bench_jsonl::jsonl(&args),
            cli::bench::BenchCmd::Behaviour(args) => {
                cli::bench_behaviour::behaviour_throughput(&args)
            }
            #[cfg(feature = "kafka")]
            cli::bench::BenchCmd::Kafka(args) => cli::bench_kafka::kafka_throughput(&args),
        },
    }
}
