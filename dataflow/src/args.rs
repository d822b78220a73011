//! The standard cluster flags, for a custom job's own command line (cargo
//! feature `clap`).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::run::RunConfig;

/// `--workers --processes --process --hostfile --connect-timeout`: where a
/// job's workers run. Flatten it into a job's clap arguments; the bundled
/// jobs use the same struct.
///
/// # Examples
/// ```
/// use clap::Parser;
/// use keyflow_dataflow::args::ClusterArgs;
///
/// #[derive(Parser)]
/// struct Args {
///     /// Input files.
///     files: Vec<std::path::PathBuf>,
///     #[command(flatten)]
///     cluster: ClusterArgs,
/// }
///
/// let args = Args::parse_from(["job", "a.csv", "--workers", "4"]);
/// let config = args.cluster.run_config().unwrap();
/// assert_eq!((config.workers, config.processes), (4, 1));
/// ```
#[derive(Debug, Clone, clap::Args)]
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
    /// The run configuration, checked; an error names the bad flag.
    pub fn run_config(&self) -> Result<RunConfig> {
        if let (Some(path), 1) = (&self.hostfile, self.processes) {
            return Err(Error::Config(format!(
                "--hostfile {} does nothing with --processes 1: a single process needs no \
                 addresses; give --processes N to run N processes",
                path.display()
            )));
        }
        let hosts = match (&self.hostfile, self.processes) {
            (Some(path), _) => RunConfig::read_hostfile(path)?,
            (None, 1) => Vec::new(),
            (None, n) => {
                return Err(Error::Config(format!(
                    "--processes {n} needs --hostfile with {n} host:port lines"
                )))
            }
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

/// Parses a duration flag such as `30s` or `10m`, naming the bad text.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::time::parse_duration_ms("duration", text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}
