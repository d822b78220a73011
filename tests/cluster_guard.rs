//! What protects a cluster started by hand: processes that disagree on the
//! job stop with the first difference named; strangers on the port are
//! refused without disturbing the mesh; a wrong secret is refused; a silent
//! member stops the others within `--peer-timeout`; a failing member stops
//! the others with its error; members die with their launcher.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod cluster_support;

use cluster_support::*;

/// A cluster member's command on `hosts`: the trending job over two hours
/// of dump files, plus `extra`.
fn member(process: usize, hosts: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(KEYFLOW);
    command
        .args(["run", "trending", "--input-format", "dump", "--quiet"])
        .arg("--input")
        .args(&dump_inputs()[..2])
        .args(["--processes", "2", "--hostfile", hosts])
        .args(["--process", &process.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts both members with their own extra flags and waits for both.
fn pair(hosts: &str, zero: &[&str], one: &[&str]) -> (Output, Output) {
    let patient = ["--connect-timeout", "20s"];
    let a = member(0, hosts, zero).args(patient).spawn().unwrap();
    let b = member(1, hosts, one).args(patient).spawn().unwrap();
    let limit = Duration::from_secs(60);
    let (b, _) = wait_bounded(b, limit);
    let (a, elapsed) = wait_bounded(a, limit);
    assert!(elapsed < limit, "process 0 hung");
    (a, b)
}

#[test]
fn an_output_given_to_one_process_only_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let out = dir.path().join("out.jsonl").display().to_string();
    let (a, b) = pair(&hosts, &["--out", &out], &[]);
    assert!(!a.status.success() && !b.status.success());
    let both = stderr(&a) + &stderr(&b);
    assert!(
        both.contains("process 1 was started with no --out but process 0 with `--out (given)`"),
        "{both}"
    );
}

#[test]
fn a_different_result_flag_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let (a, b) = pair(&hosts, &[], &["--min-views", "5"]);
    assert!(!a.status.success() && !b.status.success());
    let both = stderr(&a) + &stderr(&b);
    assert!(both.contains("`--min-views 5`"), "{both}");
    assert!(both.contains("`--min-views 1`"), "{both}");
}

/// A member that fails tells the others, which stop with it and name its
/// error, instead of waiting for it forever (its heartbeat goes on while it
/// waits for them to close their links).
#[test]
fn a_failing_member_stops_the_cluster_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let bad = dir.path().join("bad-dump");
    std::fs::write(&bad, "garbage line\n".repeat(100)).unwrap();
    let bad = bad.display().to_string();
    let flags = ["--input", &bad, "--bad-input", "fail"];
    let (a, b) = pair(&hosts, &flags, &flags);
    assert!(!a.status.success() && !b.status.success());
    let (a, b) = (stderr(&a), stderr(&b));
    let both = a.clone() + &b;
    assert!(both.contains("of the cluster failed"), "{both}");
    for err in [a, b] {
        assert!(
            err.contains("bad input at") && err.contains("bad-dump:1"),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let short = ["--connect-timeout", "4s"];
    let a = member(0, &hosts, &short)
        .env("KEYFLOW_CLUSTER_SECRET", "right")
        .spawn()
        .unwrap();
    let b = member(1, &hosts, &short)
        .env("KEYFLOW_CLUSTER_SECRET", "wrong")
        .spawn()
        .unwrap();
    let (b, _) = wait_bounded(b, Duration::from_secs(60));
    let (a, _) = wait_bounded(a, Duration::from_secs(60));
    assert!(!a.status.success() && !b.status.success());
    assert!(
        stderr(&b).contains("not signed with this cluster's secret"),
        "{}",
        stderr(&b)
    );
    assert!(
        stderr(&a).contains("could not connect to processes 1"),
        "{}",
        stderr(&a)
    );
}

fn port_of(hosts: &str, line: usize) -> String {
    std::fs::read_to_string(hosts)
        .unwrap()
        .lines()
        .nth(line)
        .unwrap()
        .to_string()
}

/// Connects to `address`, retrying for a few seconds while it starts.
fn connect(address: &str) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(address) {
            Ok(s) => return s,
            Err(e) if start.elapsed() > Duration::from_secs(20) => panic!("{address}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn strangers_on_the_port_are_refused_and_the_cluster_still_forms() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let zero = port_of(&hosts, 0);
    let out = dir.path().join("out.jsonl");
    let out_flag = ["--out", out.to_str().unwrap()];
    let a = member(0, &hosts, &out_flag)
        .env("KEYFLOW_CLUSTER_SECRET", "s3cret")
        .spawn()
        .unwrap();
    // Random bytes, a frame far over the size limit, a newline-free flood,
    // a trickle of one byte at a time, and a forged hello that claims to
    // be process 1 without knowing the secret.
    let mut random = connect(&zero);
    random
        .write_all(&[0x17, 0xff, 0x00, 0x42, 0x99, 0x13, 0x37])
        .unwrap();
    let mut huge = connect(&zero);
    let _ = huge.write_all(&u32::MAX.to_be_bytes());
    let mut flood = connect(&zero);
    let flooding = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            if flood.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut trickle = connect(&zero);
    let trickling = std::thread::spawn(move || {
        for _ in 0..30 {
            if trickle.write_all(b"k").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut forged = connect(&zero);
    let mut greeting = [0u8; 4 + 48];
    let _ = std::io::Read::read_exact(&mut forged, &mut greeting);
    let hello = br#"{"process":1,"channel":"Data","settings":[]}"#;
    let mut frame = vec![0u8; 64];
    frame.extend_from_slice(hello);
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend(frame);
    let _ = forged.write_all(&bytes);
    let b = member(1, &hosts, &out_flag)
        .env("KEYFLOW_CLUSTER_SECRET", "s3cret")
        .spawn()
        .unwrap();
    let (b, _) = wait_bounded(b, Duration::from_secs(90));
    let (a, _) = wait_bounded(a, Duration::from_secs(90));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(
        stderr(&a).contains("refused a connection"),
        "{}",
        stderr(&a)
    );
    let _ = flooding.join();
    let _ = trickling.join();

    let single = dir.path().join("single.jsonl");
    let status = Command::new(KEYFLOW)
        .args(["run", "trending", "--input-format", "dump", "--quiet"])
        .arg("--input")
        .args(&dump_inputs()[..2])
        .args(["--out", single.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let clustered = std::fs::read(&out).unwrap();
    assert!(!clustered.is_empty());
    assert_eq!(clustered, std::fs::read(&single).unwrap());
}

/// A long-running member: the generator paced at real time.
fn long_member(process: usize, hosts: &str, ready: &Path) -> Child {
    Command::new(KEYFLOW)
        .args([
            "run",
            "trending",
            "--quiet",
            "--articles",
            "1000",
            "--rate",
            "50",
        ])
        .args(["--duration", "2h", "--realtime"])
        .args([
            "--processes",
            "2",
            "--hostfile",
            hosts,
            "--process",
            &process.to_string(),
        ])
        .args([
            "--peer-timeout",
            "3s",
            "--ready-file",
            ready.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

#[test]
fn a_stopped_member_stops_the_cluster_within_the_peer_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let (ready0, ready1) = (dir.path().join("ready0"), dir.path().join("ready1"));
    let a = long_member(0, &hosts, &ready0);
    let b = long_member(1, &hosts, &ready1);
    wait_for(&ready0, Duration::from_secs(30));
    wait_for(&ready1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    signal(b.id(), "STOP");
    let (a, elapsed) = wait_bounded(a, Duration::from_secs(20));
    signal(b.id(), "KILL");
    let _ = wait_bounded(b, Duration::from_secs(10));
    assert!(
        elapsed < Duration::from_secs(15),
        "process 0 ran on for {elapsed:?}"
    );
    assert!(!a.status.success());
    let zero = stderr(&a);
    let one = port_of(&hosts, 1);
    assert!(
        zero.contains(&format!("process 0 lost process 1 ({one})"))
            && zero.contains("--peer-timeout"),
        "{zero}"
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn members_die_with_their_launcher() {
    let mut launcher = Command::new(KEYFLOW)
        .args([
            "cluster",
            "--processes",
            "2",
            "--",
            "run",
            "trending",
            "--quiet",
        ])
        .args([
            "--articles",
            "1000",
            "--rate",
            "50",
            "--duration",
            "2h",
            "--realtime",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let members = loop {
        let found = children_of(launcher.id());
        if found.len() == 2 {
            break found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "members never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    // A launcher killed outright cannot remove its own folder.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("keyflow-cluster-{}", launcher.id())),
    );
    let start = Instant::now();
    while members.iter().any(|&m| alive(m)) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let orphans: Vec<u32> = members.iter().copied().filter(|&m| alive(m)).collect();
    for &m in &orphans {
        signal(m, "KILL");
    }
    assert!(
        orphans.is_empty(),
        "members {orphans:?} outlived their launcher"
    );
}
