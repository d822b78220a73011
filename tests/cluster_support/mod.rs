//! Helpers shared by the cluster tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

pub fn data(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    assert!(path.exists(), "test data {} is missing", path.display());
    path
}

/// Waits for `child` at most `limit`, killing it after that.
pub fn wait_bounded(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() || start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    let _ = child.kill();
    (child.wait_with_output().unwrap(), elapsed)
}

pub fn run(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(KEYFLOW)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, elapsed) = wait_bounded(child, limit);
    assert!(elapsed < limit, "keyflow {args:?} ran past {limit:?}");
    out
}

pub fn dump_inputs() -> Vec<String> {
    (10..14)
        .map(|h| {
            data(&format!(
                "pagecounts-2016-08/pagecounts-20160801-{h:02}0000.gz"
            ))
            .display()
            .to_string()
        })
        .collect()
}

pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A host file naming two free loopback ports; returns its path.
pub fn two_free_hosts(dir: &Path) -> String {
    let hosts = dir.join("hosts");
    let ports = free_ports(2);
    let text = format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]);
    std::fs::write(&hosts, text).unwrap();
    hosts.display().to_string()
}

/// The pids of the members `keyflow cluster` (pid `launcher`) started,
/// once both of two run; fewer if they did not within 20 s.
pub fn two_members(launcher: u32) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let found = Command::new("pgrep")
            .args(["-P", &launcher.to_string()])
            .output()
            .unwrap();
        let pids: Vec<u32> = String::from_utf8_lossy(&found.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.len() == 2 || started.elapsed() > Duration::from_secs(20) {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
