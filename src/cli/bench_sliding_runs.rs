//! How `keyflow bench sliding` runs its job: timed, in this process or as
//! a cluster of local processes on loopback, and checked against the
//! reference, byte for byte or, for part files, by a digest of their lines
//! in any order.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use keyflow::dataflow::prelude::RunConfig;
use serde_json::{json, Value};

use super::bench::{peak_rss, reset_peak_rss};
use super::bench_dir::settle;
use super::bench_jsonl::median;
use super::bench_sliding::{job, Output, SlidingBenchArgs};
use super::bench_sliding_reference::reference;

/// The times of one worker count over the rounds.
pub(super) struct Runs {
    pub(super) workers: usize,
    pub(super) seconds: Vec<f64>,
    pub(super) peak_rss_bytes: u64,
}

impl Runs {
    pub(super) fn median(&self) -> f64 {
        median(&self.seconds)
    }
}

/// The reference's results, as each run is compared with them.
pub(super) enum Expected {
    /// The same bytes as this file.
    Bytes(PathBuf),
    /// The same lines in any order: their digest.
    Lines((u64, u64)),
}

/// Runs the job once at `workers` per process: here, or as
/// `--processes` programs. Returns its seconds, the events it read and
/// its peak memory (summed over the processes).
pub(super) fn timed_job(
    args: &SlidingBenchArgs,
    dir: &Path,
    output: &Output,
    workers: usize,
) -> anyhow::Result<(f64, u64, u64)> {
    let input = dir.join("events.csv");
    if args.processes == 1 {
        reset_peak_rss();
        let start = Instant::now();
        let config = RunConfig::threads(workers);
        let read = job(&input, output, config, args.encoded, args.format)?;
        return Ok((start.elapsed().as_secs_f64(), read, peak_rss().unwrap_or(0)));
    }
    let mut member_args: Vec<String> = ["bench", "sliding", "--workers"].map(String::from).into();
    member_args.push(workers.to_string());
    member_args.extend(["--processes".into(), args.processes.to_string()]);
    member_args.extend(["--dir".into(), dir.display().to_string()]);
    member_args.extend([
        "--format".into(),
        format!("{:?}", args.format).to_lowercase(),
    ]);
    if args.encoded {
        member_args.push("--encoded".into());
    }
    if args.partitioned {
        member_args.push("--partitioned".into());
    }
    let start = Instant::now();
    let reports = run_members(args.processes, &member_args)?;
    let secs = start.elapsed().as_secs_f64();
    let sum = |field: &str| reports.iter().filter_map(|r| r[field].as_u64()).sum();
    Ok((secs, sum("events"), sum("peak_rss_bytes")))
}

/// Member `member` of a `--processes` run: runs its part of the job over
/// the input the bench wrote and prints what it read.
pub(super) fn member_run(args: &SlidingBenchArgs, member: usize) -> anyhow::Result<i32> {
    let (Some(dir), [workers], Some(peers)) = (&args.dir, &args.workers[..], &args.peers) else {
        anyhow::bail!("--member needs --dir, --peers and one --workers count");
    };
    let hosts: Vec<String> = peers.split(',').map(String::from).collect();
    anyhow::ensure!(
        hosts.len() == args.processes && member < args.processes,
        "--member {member} --peers {peers}: one address per process of --processes {}",
        args.processes
    );
    let output = Output::of(args, dir);
    let config = RunConfig {
        processes: args.processes,
        process: member,
        hosts,
        ..RunConfig::threads(*workers)
    };
    reset_peak_rss();
    let read = job(
        &dir.join("events.csv"),
        &output,
        config,
        args.encoded,
        args.format,
    )?;
    let report = json!({ "events": read, "peak_rss_bytes": peak_rss().unwrap_or(0) });
    showln!("{report}");
    Ok(0)
}

/// Runs the reference once the job's `files` are on disk; returns its
/// report and what every run of the job must match.
pub(super) fn run_reference(
    args: &SlidingBenchArgs,
    dir: &Path,
    files: &[PathBuf],
) -> anyhow::Result<(serde_json::Value, Expected)> {
    for file in files {
        settle(file)?;
    }
    let ref_out = dir.join("reference.csv");
    reset_peak_rss();
    let start = Instant::now();
    let read = reference(&dir.join("events.csv"), &ref_out, args.keys, args.format)?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(read == args.events, "the reference read {read} events");
    let report = json!({
        "seconds": secs,
        "events_per_s": args.events as f64 / secs,
        "peak_rss_bytes": peak_rss().unwrap_or(0),
    });
    let expected = match args.partitioned {
        true => Expected::Lines(digest(&[ref_out])?),
        false => Expected::Bytes(ref_out),
    };
    Ok((report, expected))
}

/// Starts `processes` copies of this program with `args` and, for each,
/// `--member I --peers LIST` (free loopback ports), waits for all of them,
/// and returns what each printed on its standard output, parsed as JSON.
/// A member that fails fails the whole, with its standard error.
fn run_members(processes: usize, args: &[String]) -> anyhow::Result<Vec<Value>> {
    let peers = super::cluster::pick_ports(processes, 0)?
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..processes {
        let child = Command::new(&exe)
            .args(args)
            .args(["--member", &i.to_string(), "--peers", &peers])
            // Members die with the bench, however it ends.
            .env(super::signals::LAUNCHER_PID, std::process::id().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => {
                for mut started in children {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                anyhow::bail!("cannot start member {i}: {e}");
            }
        }
    }
    // Each member is waited for on a thread of its own, so that none
    // blocks on a full pipe while another is waited for.
    let outputs = std::thread::scope(|scope| {
        let waits: Vec<_> = children
            .into_iter()
            .map(|child| scope.spawn(move || child.wait_with_output()))
            .collect();
        waits
            .into_iter()
            .map(|w| w.join().expect("a wait thread does not panic"))
            .collect::<Vec<_>>()
    });
    let mut reports = Vec::new();
    for (i, output) in outputs.into_iter().enumerate() {
        let output = output?;
        anyhow::ensure!(
            output.status.success(),
            "member {i} of {processes} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        reports.push(serde_json::from_slice(&output.stdout).map_err(|e| {
            anyhow::anyhow!(
                "member {i} printed no report ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?);
    }
    Ok(reports)
}

/// Lines and a sum of their hashes over `files`: equal for two sets of
/// files that hold the same lines in any order and split. Each file is
/// read on a thread of its own.
pub(super) fn digest(files: &[PathBuf]) -> anyhow::Result<(u64, u64)> {
    std::thread::scope(|scope| {
        let parts: Vec<_> = files
            .iter()
            .map(|f| scope.spawn(move || digest_file(f)))
            .collect();
        let mut total = (0u64, 0u64);
        for part in parts {
            let (lines, sum) = part.join().expect("a digest thread does not panic")?;
            total = (total.0 + lines, total.1.wrapping_add(sum));
        }
        Ok(total)
    })
}

fn digest_file(path: &Path) -> anyhow::Result<(u64, u64)> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let (mut lines, mut sum) = (0u64, 0u64);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok((lines, sum));
        }
        lines += 1;
        sum = sum.wrapping_add(hash_line(&line));
    }
}

/// FNV-1a, then a 64-bit finalizer so that sums of similar lines spread.
fn hash_line(line: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in line {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_order_and_split_but_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let whole = write("whole", "a,1\nb,2\nc,3\n");
        let parts = [write("p0", "c,3\n"), write("p1", "b,2\na,1\n")];
        let other = write("other", "a,1\nb,2\nc,4\n");
        let twice = write("twice", "a,1\na,1\nb,2\nc,3\n");
        let once = digest(std::slice::from_ref(&whole)).unwrap();
        assert_eq!(once.0, 3);
        assert_eq!(digest(&parts).unwrap(), once);
        assert_ne!(digest(&[other]).unwrap(), once);
        assert_ne!(digest(&[twice]).unwrap(), once);
    }
}
