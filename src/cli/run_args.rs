//! Flags shared by every `keyflow run JOB`: workers, processes, sources.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::time::parse_duration_ms;

/// Where the workers run.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Index of this process, 0..processes.
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per line, in process order (needed when
    /// --processes > 1).
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// How long to wait for the other processes at start-up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

impl ClusterArgs {
    /// The run configuration, checked.
    pub fn run_config(&self) -> anyhow::Result<RunConfig> {
        let hosts = match (&self.hostfile, self.processes) {
            (Some(path), _) => RunConfig::read_hostfile(path)?,
            (None, 1) => Vec::new(),
            (None, n) => anyhow::bail!("--processes {n} needs --hostfile with {n} host:port lines"),
        };
        let config = RunConfig {
            checkpoint: None,
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hosts,
            connect_timeout: self.connect_timeout,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Wikimedia pagecounts/pageviews dump files.
    Dump,
}

/// Whether a dump file's hour stamp marks the start or the end of its hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpTimeArg {
    /// The stamp is the hour's start (Wikimedia's convention).
    Start,
    /// The stamp is the hour's end.
    End,
}

/// Where events come from and how their time is judged.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Input files (gzip or plain). Without any, the built-in generator runs.
    #[arg(long = "input", num_args = 1.., value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Format of the input files.
    #[arg(long, value_enum, default_value_t = InputFormat::Jsonl)]
    pub input_format: InputFormat,
    /// For dump files: whether the hour stamp is the hour's start or end.
    #[arg(long, value_enum, default_value_t = DumpTimeArg::Start)]
    pub dump_time: DumpTimeArg,
    /// Generator: number of distinct articles.
    #[arg(long, default_value_t = 6_000_000)]
    pub articles: u32,
    /// Generator: random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Generator: events per second of event time.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Generator: event-time span of the generated stream.
    #[arg(long, default_value = "75m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Generator: pace events at real time instead of as fast as possible.
    #[arg(long)]
    pub realtime: bool,
    /// Allowed out-of-orderness: the watermark trails the largest event
    /// time seen by this much.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub max_out_of_orderness: Duration,
    /// A partition with nothing to read for this long stops holding event
    /// time back.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Records this far ahead of the watermark are rejected and counted.
    #[arg(long, default_value = "7days", value_parser = parse_duration)]
    pub max_future: Duration,
    /// Malformed input: drop (count and skip) or fail (stop, naming file
    /// and line).
    #[arg(long, default_value = "drop", value_parser = parse_bad_input)]
    pub bad_input: BadInputPolicy,
}

impl SourceArgs {
    /// The source configuration.
    pub fn source_config(&self) -> SourceConfig {
        SourceConfig {
            max_out_of_orderness: self.max_out_of_orderness.as_millis() as u64,
            idle_timeout: Some(self.idle_timeout),
            max_future: Some(self.max_future.as_millis() as u64),
            bad_input: self.bad_input,
            ..SourceConfig::default()
        }
    }

    /// Fails fast on a missing input file, naming it.
    pub fn check_inputs(&self) -> anyhow::Result<()> {
        for path in &self.inputs {
            if !path.exists() {
                anyhow::bail!("input {} does not exist", path.display());
            }
        }
        Ok(())
    }
}

/// Parses a duration flag such as `10m`, naming the bad text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_ms("duration", text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}

fn parse_bad_input(text: &str) -> Result<BadInputPolicy, String> {
    text.parse()
        .map_err(|e: keyflow::dataflow::Error| e.to_string())
}

/// Parses `--late drop | side-output | allowed-lateness D`.
pub fn parse_late(values: &[String]) -> anyhow::Result<Lateness> {
    match values {
        [] => Ok(Lateness::Drop),
        [p] if p == "drop" => Ok(Lateness::Drop),
        [p] if p == "side-output" => Ok(Lateness::SideOutput),
        [p, d] if p == "allowed-lateness" => {
            Ok(Lateness::Allowed(parse_duration_ms("allowed lateness", d)?))
        }
        [p] if p == "allowed-lateness" => {
            anyhow::bail!(
                "--late allowed-lateness needs a duration, e.g. `--late allowed-lateness 30s`"
            )
        }
        other => anyhow::bail!(
            "--late {} is not one of: drop, side-output, allowed-lateness <DURATION>",
            other.join(" ")
        ),
    }
}
