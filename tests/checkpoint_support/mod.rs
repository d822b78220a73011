//! Shared by the checkpoint tests: a bounded runner for the `keyflow`
//! binary that can kill it, a gzip input with late events, and comparison
//! of output files.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");
/// 2016-08-01T00:00:00Z.
pub const BASE: u64 = 1_470_009_600_000;

/// The `keyflow` command with `args`, stdout discarded, stderr piped.
pub fn cmd(args: &[String]) -> Command {
    let mut c = Command::new(KEYFLOW);
    c.args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end (bounded); returns the exit code and stderr.
pub fn finish(args: &[String]) -> (i32, String) {
    let child = cmd(args).spawn().expect("start keyflow");
    let out = wait_bounded(child, Duration::from_secs(240));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for `child`, killing it and failing the test after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("keyflow ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Starts the run and SIGKILLs it after `delay` (if it is still running).
/// Returns whether it was killed.
pub fn kill_after(args: &[String], delay: Duration) -> bool {
    let mut child = cmd(args).stderr(Stdio::null()).spawn().expect("start");
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// Starts the run and SIGKILLs it `extra` after the checkpoint directory
/// `ck` first holds a complete epoch, so that a restart resumes whatever
/// the machine's load. Fails the test if the run ends before that.
pub fn kill_after_checkpoint(args: &[String], ck: &Path, extra: Duration) {
    let mut child = cmd(args).stderr(Stdio::null()).spawn().expect("start");
    let start = Instant::now();
    while !has_complete_epoch(ck) {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the run ended ({status}) before it completed a checkpoint");
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("no checkpoint was completed in 240 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(extra);
    let _ = child.kill();
    let _ = child.wait();
}

/// Owned strings of `items`.
pub fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|x| x.to_string()).collect()
}

/// `path` as a command-line argument.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A gzip JSON-lines file with skewed titles, out-of-order and late events.
pub fn gzip_events(path: &Path) {
    gzip_events_n(path, 240_000);
}

/// [`gzip_events`] with the first `n` of its events (20 per second of event
/// time).
pub fn gzip_events_n(path: &Path, n: u64) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut x: u64 = 7;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let r = next();
        // 200 minutes of event time for 240,000 events; every 50th event is
        // 20 s late, every 7th a little out of order.
        let mut ts = BASE + i * 50;
        if i % 50 == 0 {
            ts -= 20_000;
        } else if i % 7 == 0 {
            ts -= r % 3_000;
        }
        let title = (r % 64).min(r % 1500);
        let line = format!(
            "{{\"project\":\"en\",\"title\":\"T{title}\",\"ts\":{ts},\"views\":{}}}\n",
            1 + (r >> 40) % 3
        );
        gz.write_all(line.as_bytes()).unwrap();
    }
    gz.finish().unwrap();
}

/// The bytes of `path`; fails the test naming it when it cannot be read.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fails, naming the first file that differs, unless `got` and `want`
/// hold the same files with the same bytes.
pub fn assert_same(what: &str, got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)]) {
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the output files differ");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert!(
            g == w,
            "{what}: {name} differs ({} vs {} bytes)",
            g.len(),
            w.len()
        );
    }
}

/// Kills the run at each delay, then runs it again until it finishes.
pub fn kill_and_finish(args: &[String], delays_ms: &[u64]) -> usize {
    let mut killed = 0;
    for &d in delays_ms {
        if kill_after(args, Duration::from_millis(d)) {
            killed += 1;
        }
    }
    let (code, err) = finish(args);
    assert_eq!(code, 0, "the restarted run failed: {err}");
    killed
}

/// Whether the checkpoint directory `ck` holds a complete epoch.
pub fn has_complete_epoch(ck: &Path) -> bool {
    !complete_epochs(ck).is_empty()
}

/// The complete epochs in the checkpoint directory `ck`.
pub fn complete_epochs(ck: &Path) -> Vec<u64> {
    std::fs::read_dir(ck)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().join("MANIFEST").exists())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_prefix("epoch-")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}
