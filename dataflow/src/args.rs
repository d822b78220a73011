//! The standard cluster flags, for a custom job's own command line (cargo
//! feature `clap`).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::run::{ClusterSecret, RunConfig};

/// `--workers --processes --process --hostfile --peers --connect-timeout
/// --peer-timeout --cluster-secret-file --ready-file`: where a job's workers
/// run and how its processes find and watch each other. Flatten it into a job's clap arguments; the bundled
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
    /// Number of processes in the cluster [default: the number of
    /// addresses in --hostfile or --peers, else 1]
    #[arg(long)]
    pub processes: Option<usize>,
    /// Index of this process, 0..processes, or `auto`: the number after the
    /// last `-` of $HOSTNAME (else the system host name), as StatefulSet
    /// pods are named `keyflow-0`, `keyflow-1`, ...
    #[arg(long, default_value = "0", value_parser = parse_process)]
    pub process: ProcessIndex,
    /// File with one host:port per line, in process order (needed when
    /// --processes > 1, unless --peers is given).
    #[arg(long, conflicts_with = "peers")]
    pub hostfile: Option<PathBuf>,
    /// The processes' addresses in process order, separated by commas;
    /// `{0..2}` expands as in the shell (`keyflow-{0..2}.keyflow:2101` is
    /// three addresses). Also read from $KEYFLOW_PEERS.
    #[arg(long, value_name = "HOSTS")]
    pub peers: Option<String>,
    /// How long to wait for the other processes at start-up, name
    /// resolution included (and for a Kafka broker's first answer).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// A peer silent for this long (down, partitioned or stopped) stops the
    /// process with an error naming it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub peer_timeout: Duration,
    /// File holding the cluster secret that every process must share;
    /// without it, $KEYFLOW_CLUSTER_SECRET, else no secret (see the
    /// README's notes on the network).
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Create this file once the process has joined its cluster (a
    /// readiness signal).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Settings every process must share; see [`agreed_settings`].
    #[arg(skip)]
    pub settings: Vec<(String, String)>,
}

/// `--process`: a number, or taken from the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessIndex {
    /// This index.
    Given(usize),
    /// The trailing `-N` of the host name.
    Auto,
}

fn parse_process(text: &str) -> std::result::Result<ProcessIndex, String> {
    if text == "auto" {
        return Ok(ProcessIndex::Auto);
    }
    text.parse()
        .map(ProcessIndex::Given)
        .map_err(|_| format!("`{text}` is neither a process index (0, 1, ...) nor `auto`"))
}

/// The index at the end of a host name such as `keyflow-3`
/// (or `keyflow-3.keyflow.default.svc`).
///
/// ```
/// use keyflow_dataflow::args::index_from_host_name;
/// assert_eq!(index_from_host_name("keyflow-3"), Some(3));
/// assert_eq!(index_from_host_name("keyflow-12.keyflow.default.svc"), Some(12));
/// assert_eq!(index_from_host_name("keyflow"), None);
/// ```
pub fn index_from_host_name(name: &str) -> Option<usize> {
    let short = name.split('.').next()?;
    let (_, number) = short.rsplit_once('-')?;
    number.parse().ok()
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
}

/// Expands a peer list: commas separate addresses, `{A..B}` counts from A
/// to B inclusive, as in the shell.
///
/// ```
/// use keyflow_dataflow::args::expand_peers;
/// assert_eq!(
///     expand_peers("keyflow-{0..2}.keyflow:2101").unwrap(),
///     ["keyflow-0.keyflow:2101", "keyflow-1.keyflow:2101", "keyflow-2.keyflow:2101"]
/// );
/// assert_eq!(expand_peers("a:1, b:2").unwrap(), ["a:1", "b:2"]);
/// assert!(expand_peers("k-{2..1}:1").is_err());
/// assert!(expand_peers("k{0..1}{0..1}:1").is_err());
/// ```
pub fn expand_peers(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((head, rest)) = part.split_once('{') else {
            out.push(part.to_string());
            continue;
        };
        let bad = || {
            Error::Config(format!(
                "--peers: `{part}` has a range that is not {{FIRST..LAST}} with FIRST <= LAST"
            ))
        };
        let (range, tail) = rest.split_once('}').ok_or_else(bad)?;
        let (a, b) = range.split_once("..").ok_or_else(bad)?;
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(bad());
        }
        if b - a >= 10_000 {
            return Err(Error::Config(format!(
                "--peers: `{part}` names {} hosts; at most 10000 per range",
                b - a + 1
            )));
        }
        if tail.contains('{') {
            return Err(Error::Config(format!(
                "--peers: `{part}` has more than one range; give one {{FIRST..LAST}} per entry"
            )));
        }
        out.extend((a..=b).map(|i| format!("{head}{i}{tail}")));
    }
    Ok(out)
}

impl ClusterArgs {
    /// The run configuration, checked; an error names the bad flag.
    pub fn run_config(&self) -> Result<RunConfig> {
        let peers = match &self.peers {
            Some(list) => Some(expand_peers(list)?),
            None => match std::env::var("KEYFLOW_PEERS") {
                Ok(list) if self.hostfile.is_none() && !list.trim().is_empty() => {
                    Some(expand_peers(&list)?)
                }
                _ => None,
            },
        };
        let listed = match (&self.hostfile, peers) {
            (Some(path), _) => Some(RunConfig::read_hostfile(path)?),
            (None, peers) => peers,
        };
        if listed.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Config(match &self.hostfile {
                Some(path) => format!("--hostfile {} lists no addresses", path.display()),
                None => "--peers lists no addresses".into(),
            }));
        }
        let processes = self
            .processes
            .or(listed.as_ref().map(Vec::len))
            .unwrap_or(1);
        if let (Some(path), 1) = (&self.hostfile, processes) {
            return Err(Error::Config(format!(
                "--hostfile {} does nothing with --processes 1: a single process needs no \
                 addresses; give --processes N to run N processes",
                path.display()
            )));
        }
        let hosts = match (listed, processes) {
            (Some(hosts), _) => hosts,
            (None, 1) => Vec::new(),
            (None, n) => {
                return Err(Error::Config(format!(
                    "--processes {n} needs --hostfile with {n} host:port lines, or --peers"
                )))
            }
        };
        let process = match self.process {
            ProcessIndex::Given(i) => i,
            ProcessIndex::Auto => {
                let name = host_name().unwrap_or_default();
                index_from_host_name(&name).ok_or_else(|| {
                    Error::Config(format!(
                        "--process auto: the host name `{name}` does not end in -N \
                         (as StatefulSet pods are named keyflow-0, keyflow-1, ...)"
                    ))
                })?
            }
        };
        let secret = match &self.cluster_secret_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                let trimmed = bytes.trim_ascii();
                if trimmed.is_empty() {
                    return Err(Error::Config(format!(
                        "--cluster-secret-file {}: the file is empty",
                        path.display()
                    )));
                }
                Some(ClusterSecret(trimmed.to_vec()))
            }
            None => std::env::var("KEYFLOW_CLUSTER_SECRET")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| ClusterSecret(s.trim().as_bytes().to_vec())),
        };
        if self.peer_timeout.is_zero() {
            return Err(Error::Config(
                "--peer-timeout 0s: the timeout must be positive".into(),
            ));
        }
        let config = RunConfig {
            checkpoint: None,
            workers: self.workers,
            processes,
            process,
            hosts,
            connect_timeout: self.connect_timeout,
            peer_timeout: self.peer_timeout,
            settings: self.settings.clone(),
            secret,
            ready_file: self.ready_file.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Flags that may differ between the processes of one cluster: they say
/// where this process is or how patient it is, not what the job computes.
pub const PER_PROCESS: &[&str] = &[
    "process",
    "processes",
    "hostfile",
    "peers",
    "connect_timeout",
    "peer_timeout",
    "cluster_secret_file",
    "ready_file",
    "log",
];

/// What every process of a cluster must agree on, read from its parsed
/// command line: every flag but [`PER_PROCESS`] ones, with its value (as
/// typed, or its default; a flag without a default that is not given is
/// left out), in a fixed order. Flags in `presence_only` (files
/// that one process writes) are compared by whether they are given, not by
/// their value. Subcommand names are part of it.
///
/// ```
/// use clap::{CommandFactory, FromArgMatches, Parser};
/// use keyflow_dataflow::args::{agreed_settings, ClusterArgs};
///
/// #[derive(Parser)]
/// struct Args {
///     #[arg(long, default_value = "10m")]
///     window: String,
///     #[arg(long)]
///     out: Option<String>,
///     #[command(flatten)]
///     cluster: ClusterArgs,
/// }
///
/// let command = ["job", "--window", "5m", "--out", "a.jsonl", "--process", "1"];
/// let matches = Args::command().get_matches_from(command);
/// let settings = agreed_settings(&matches, &["out"]);
/// assert!(settings.contains(&("--window".into(), "5m".into())));
/// assert!(settings.contains(&("--out".into(), "(given)".into())));
/// assert!(!settings.iter().any(|(k, _)| k == "--process"));
/// let mut args = Args::from_arg_matches(&matches).unwrap();
/// args.cluster.settings = settings;
/// ```
pub fn agreed_settings(
    matches: &clap::ArgMatches,
    presence_only: &[&str],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect_settings(matches, presence_only, &mut out);
    out
}

fn collect_settings(
    matches: &clap::ArgMatches,
    presence_only: &[&str],
    out: &mut Vec<(String, String)>,
) {
    let mut ids: Vec<&str> = matches.ids().map(|id| id.as_str()).collect();
    ids.sort_unstable();
    for id in ids {
        if PER_PROCESS.contains(&id) {
            continue;
        }
        let Ok(raw) = matches.try_get_raw(id) else {
            continue;
        };
        let values: Vec<String> = raw
            .into_iter()
            .flatten()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let flag = format!("--{}", id.replace('_', "-"));
        let value = if presence_only.contains(&id) {
            if values.is_empty() {
                "(none)"
            } else {
                "(given)"
            }
            .to_string()
        } else if values.is_empty() {
            "(none)".to_string()
        } else {
            values.join(" ")
        };
        out.push((flag, value));
    }
    if let Some((name, sub)) = matches.subcommand() {
        out.push(("command".to_string(), name.to_string()));
        collect_settings(sub, presence_only, out);
    }
}

/// Parses a duration flag such as `30s` or `10m`, naming the bad text.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::time::parse_duration_ms("duration", text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}
