//! `keyflow cluster`: start N local processes of one job on 127.0.0.1 and
//! supervise them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

/// Start a local multi-process cluster running one job.
#[derive(Debug, Clone, Args)]
pub struct ClusterCmd {
    /// Number of processes to start.
    #[arg(long)]
    pub processes: usize,
    /// Worker threads per process.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// First TCP port of the mesh (process i listens on base-port + i);
    /// 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// When a process fails, stop the others and start them all again, up
    /// to this many times. With `--checkpoint-dir` in the job command each
    /// restart resumes from the last complete checkpoint; without it, from
    /// the beginning.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub restart: u32,
    /// The job command, after `--`: `run JOB [job flags]`.
    #[arg(last = true, required = true, value_name = "run JOB ...")]
    pub command: Vec<String>,
}

pub(super) fn pick_ports(processes: usize, base: u16) -> anyhow::Result<Vec<u16>> {
    if base == 0 {
        // Hold every listener until all are chosen so no port repeats.
        let listeners = (0..processes)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?);
    }
    let mut ports = Vec::new();
    for i in 0..processes {
        let port = base
            .checked_add(i as u16)
            .ok_or_else(|| anyhow::anyhow!("--base-port {base} + {i} is past port 65535"))?;
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            anyhow::bail!("port {port} (process {i}) is not free on 127.0.0.1: {e}");
        }
        ports.push(port);
    }
    Ok(ports)
}

fn forward(prefix: String, stream: impl std::io::Read + Send + 'static, to_stderr: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "{prefix}{line}");
            }
        }
    });
}

fn describe(status: ExitStatus) -> (String, i32) {
    if let Some(code) = status.code() {
        return (format!("exited with status {code}"), code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return (format!("was killed by signal {signal}"), 128 + signal);
        }
    }
    ("ended abnormally".to_string(), 1)
}

fn stop_all(children: &mut [(usize, Child)]) {
    for (_, child) in children.iter_mut() {
        #[cfg(unix)]
        {
            // Ask politely first so processes can flush their outputs.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for (_, child) in children.iter_mut() {
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Collects the members that have exited: successes into `finished`,
/// failures returned.
fn reap(
    running: &mut Vec<(usize, Child)>,
    finished: &mut Vec<usize>,
) -> anyhow::Result<Vec<(usize, ExitStatus)>> {
    let mut failures = Vec::new();
    let mut i = 0;
    while i < running.len() {
        match running[i].1.try_wait() {
            Ok(Some(status)) => {
                let (index, _) = running.swap_remove(i);
                if status.success() {
                    finished.push(index);
                } else {
                    failures.push((index, status));
                }
            }
            Ok(None) => i += 1,
            Err(e) => anyhow::bail!("cannot watch process {}: {e}", running[i].0),
        }
    }
    Ok(failures)
}

/// How one start of the cluster ended.
enum Outcome {
    /// Every process ended (or the launcher was interrupted): this code.
    Done(i32),
    /// A process failed; the others were stopped.
    Failed(i32, String),
}

/// The `--checkpoint-dir` of a job command, if any.
fn checkpoint_dir(command: &[String]) -> Option<PathBuf> {
    let mut args = command.iter();
    while let Some(arg) = args.next() {
        if arg == "--checkpoint-dir" {
            return args.next().map(PathBuf::from);
        }
        if let Some(dir) = arg.strip_prefix("--checkpoint-dir=") {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// Starts every process once and watches them until they all end or one
/// fails.
fn run_once(cmd: &ClusterCmd, dir: &std::path::Path, secret: &str) -> anyhow::Result<Outcome> {
    let ports = pick_ports(cmd.processes, cmd.base_port)?;
    let hostfile = dir.join("hosts");
    let hosts: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    std::fs::write(&hostfile, hosts)?;

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..cmd.processes {
        let mut command = Command::new(&exe);
        command
            .args(&cmd.command)
            .args(["--workers", &cmd.workers.to_string()])
            .args(["--processes", &cmd.processes.to_string()])
            .args(["--process", &i.to_string()]);
        // A single process takes no host file (the job refuses one).
        if cmd.processes > 1 {
            command.arg("--hostfile").arg(&hostfile);
        }
        // Members die with the launcher, and prove to each other that they
        // were started by it (a fresh secret per launch, unless one is given).
        command.env(super::signals::LAUNCHER_PID, std::process::id().to_string());
        if !secret.is_empty() {
            command.env("KEYFLOW_CLUSTER_SECRET", secret);
        }
        let spawned = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                stop_all(&mut children);
                anyhow::bail!("cannot start process {i}: {e}");
            }
        };
        if let Some(out) = child.stdout.take() {
            forward(format!("[p{i}] "), out, false);
        }
        if let Some(err) = child.stderr.take() {
            forward(format!("[p{i}] "), err, true);
        }
        children.push((i, child));
    }

    let mut running = children;
    let mut finished = Vec::new();
    loop {
        if let Some(signal) = super::signals::received() {
            say!(
                "keyflow cluster: stopped by signal {signal}, stopping {} processes",
                running.len()
            );
            stop_all(&mut running);
            return Ok(Outcome::Done(128 + signal));
        }
        let mut failures = reap(&mut running, &mut finished)?;
        if !failures.is_empty() {
            // Members die together when one does (they lose their peer): wait
            // a moment so the one that died first can be named as the cause.
            std::thread::sleep(Duration::from_millis(300));
            failures.extend(reap(&mut running, &mut finished)?);
            failures.sort_by_key(|(index, status)| (status.code().is_some(), *index));
            let (index, status) = failures[0];
            let (what, code) = describe(status);
            let others: Vec<String> = failures[1..]
                .iter()
                .map(|(i, s)| format!("process {i} {}", describe(*s).0))
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!(" (then {})", others.join(", "))
            };
            let stopping = match running.len() {
                0 => String::new(),
                1 => "; stopping the other process".to_string(),
                n => format!("; stopping the other {n} processes"),
            };
            say!("keyflow cluster: process {index} {what}{also}{stopping}");
            stop_all(&mut running);
            return Ok(Outcome::Failed(code, format!("process {index} {what}")));
        }
        if running.is_empty() {
            return Ok(Outcome::Done(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The most processes `keyflow cluster` starts on one machine.
const MAX_LOCAL_PROCESSES: usize = 256;

/// Runs the cluster; returns the exit code for the launcher.
pub fn launch(cmd: &ClusterCmd) -> anyhow::Result<i32> {
    if cmd.processes == 0 {
        anyhow::bail!("--processes 0: need at least one process");
    }
    if cmd.processes > MAX_LOCAL_PROCESSES {
        anyhow::bail!(
            "--processes {}: at most {MAX_LOCAL_PROCESSES} on one machine (each process keeps \
             a connection to every other); give a process more --workers instead",
            cmd.processes
        );
    }
    if cmd.workers == 0 {
        anyhow::bail!("--workers 0: need at least one worker");
    }
    if cmd.command.first().map(String::as_str) != Some("run") || cmd.command.len() < 2 {
        anyhow::bail!(
            "after `--` give the job command, e.g. `keyflow cluster --processes 2 -- run trending`"
        );
    }
    for flag in [
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "--peers",
    ] {
        if cmd
            .command
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        {
            anyhow::bail!("{flag} is set by `keyflow cluster`; remove it from the job command");
        }
    }
    // On SIGINT or SIGTERM the members are stopped first; the exit status
    // is then 128 + the signal, as for any keyflow command.
    super::signals::defer();
    let checkpoints = checkpoint_dir(&cmd.command);
    let dir: PathBuf = std::env::temp_dir().join(format!("keyflow-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let given = std::env::var_os("KEYFLOW_CLUSTER_SECRET").is_some()
        || cmd
            .command
            .iter()
            .any(|a| a.starts_with("--cluster-secret-file"));
    let secret = if given {
        String::new()
    } else {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let mut attempt = 0;
    let code = loop {
        let outcome = run_once(cmd, &dir, &secret);
        let (code, cause) = match outcome {
            Ok(Outcome::Done(code)) => break code,
            Ok(Outcome::Failed(code, cause)) => (code, cause),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if attempt >= cmd.restart {
            if cmd.restart > 0 {
                say!(
                    "keyflow cluster: giving up after {} restarts; last failure: {cause}",
                    cmd.restart
                );
            }
            break code;
        }
        attempt += 1;
        let from = match &checkpoints {
            Some(ckpt) => match keyflow::dataflow::checkpoint::newest_complete(ckpt) {
                Ok(Some(epoch)) => format!(
                    "from the checkpoint at {}",
                    keyflow::dataflow::time::format_utc(epoch)
                ),
                Ok(None) => "from the beginning (no complete checkpoint yet)".to_string(),
                Err(e) => format!("(the checkpoint cannot be read: {e})"),
            },
            None => "from the beginning (the job has no --checkpoint-dir)".to_string(),
        };
        say!(
            "keyflow cluster: restart {attempt} of {}: {cause}; starting all {} processes again {from}",
            cmd.restart, cmd.processes
        );
    };
    // Let the forwarding threads drain what the children printed last.
    std::thread::sleep(Duration::from_millis(100));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(code)
}
