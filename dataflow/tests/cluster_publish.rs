//! Across the processes of a cluster, a run that fails publishes nothing:
//! process 0's output, whose stream ended before process 1 failed, stays
//! unpublished, and process 0 stops with process 1's error instead of
//! ending well.
//!
//! The two members are this test binary again, started with
//! [`ROLE`] set, each running [`member`] only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keyflow_dataflow::prelude::*;

/// Set in a member's environment: `PROCESS HOST0 HOST1 DIR`.
const ROLE: &str = "KEYFLOW_TEST_PUBLISH_MEMBER";

/// The file process 0's early sink creates once its stream has ended.
const ENDED: &str = "early-ended";

/// Passes everything to a file and creates [`ENDED`] once its stream has
/// ended (prepared or closed, whichever comes first).
struct Early {
    inner: JsonLinesSink,
    dir: PathBuf,
}

impl Sink<u64> for Early {
    fn write(&mut self, time: EventTime, records: &[(EventTime, u64)]) -> Result<()> {
        Sink::<u64>::write(&mut self.inner, time, records)
    }

    fn prepare_close(&mut self) -> Result<()> {
        Sink::<u64>::prepare_close(&mut self.inner)?;
        let _ = std::fs::write(self.dir.join(ENDED), "");
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Sink::<u64>::close(&mut self.inner)?;
        let _ = std::fs::write(self.dir.join(ENDED), "");
        Ok(())
    }
}

/// Fails on its first write, once [`ENDED`] exists (or after 20 s).
struct FailsLater {
    dir: PathBuf,
}

impl Sink<u64> for FailsLater {
    fn write(&mut self, _: EventTime, _: &[(EventTime, u64)]) -> Result<()> {
        let start = Instant::now();
        while !self.dir.join(ENDED).exists() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(Error::External("disk full".into()))
    }
}

/// One member's run: a short stream to process 0's `early.jsonl`, and a
/// longer one written in parts, whose part on process 1 fails.
fn job(process: usize, hosts: Vec<String>, dir: PathBuf) -> Result<()> {
    let config = RunConfig {
        processes: 2,
        process,
        hosts,
        connect_timeout: Duration::from_secs(20),
        peer_timeout: Duration::from_secs(20),
        ..RunConfig::threads(1)
    };
    run(&config, move |flow| {
        let dir = dir.clone();
        let short = IterSource::new("short", 1, |_| (0..3u64).map(|i| (i, i)));
        let early = dir.clone();
        flow.source("short", short, &SourceConfig::default())?
            .sink("early", move || {
                Ok(Early {
                    inner: JsonLinesSink::create(&early.join("early.jsonl"))?,
                    dir: early.clone(),
                })
            })?;
        let long = IterSource::new("long", 2, |_| (0..3u64).map(|i| (i, i)));
        flow.source("long", long, &SourceConfig::default())?
            .sink_partitioned("parts", move |part| -> Result<Box<dyn PartSink>> {
                Ok(match part {
                    1 => Box::new(FailsLater { dir: dir.clone() }),
                    _ => Box::new(Plain(JsonLinesSink::create(&dir.join("part-0.jsonl"))?)),
                })
            })
    })
    .map(|_| ())
}

/// A part's sink, of either kind.
trait PartSink: Sink<u64> + Send {}
impl<S: Sink<u64> + Send> PartSink for S {}

impl Sink<u64> for Box<dyn PartSink> {
    fn write(&mut self, time: EventTime, records: &[(EventTime, u64)]) -> Result<()> {
        (**self).write(time, records)
    }

    fn prepare_close(&mut self) -> Result<()> {
        (**self).prepare_close()
    }

    fn close(&mut self) -> Result<()> {
        (**self).close()
    }
}

/// A JSON-lines file of numbers.
struct Plain(JsonLinesSink);

impl Sink<u64> for Plain {
    fn write(&mut self, time: EventTime, records: &[(EventTime, u64)]) -> Result<()> {
        Sink::<u64>::write(&mut self.0, time, records)
    }

    fn prepare_close(&mut self) -> Result<()> {
        Sink::<u64>::prepare_close(&mut self.0)
    }

    fn close(&mut self) -> Result<()> {
        Sink::<u64>::close(&mut self.0)
    }
}

/// The member's side: runs only where [`ROLE`] is set, and prints the
/// run's outcome on a line of its own.
#[test]
fn member() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let parts: Vec<&str> = role.split(' ').collect();
    let process = parts[0].parse().unwrap();
    let hosts = vec![parts[1].to_string(), parts[2].to_string()];
    match job(process, hosts, PathBuf::from(parts[3])) {
        Ok(()) => println!("OUTCOME ok"),
        Err(e) => println!("OUTCOME error: {e}"),
    }
}

fn free_ports() -> Vec<u16> {
    let listeners: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Starts member `process` and waits for it at most a minute.
fn start(process: usize, hosts: &[String], dir: &Path) -> std::process::Child {
    let role = format!("{process} {} {} {}", hosts[0], hosts[1], dir.display());
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "member", "--nocapture", "--test-threads", "1"])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn outcome(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // libtest prints the test's name on the same line.
        .find_map(|l| l.split_once("OUTCOME ").map(|(_, o)| o.to_string()))
        .unwrap_or_else(|| format!("no outcome: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_member_that_fails_after_another_s_stream_ended_publishes_nothing_anywhere() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("keyflow-cluster-publish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hosts: Vec<String> = free_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let one = start(1, &hosts, &dir);
    let zero = start(0, &hosts, &dir);
    let (zero, one) = (outcome(&finish(zero)), outcome(&finish(one)));
    assert_eq!(one, "error: step `parts`: disk full");
    assert_eq!(
        zero,
        "error: process 1 of the cluster failed: step `parts`: disk full"
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // Process 0's stream ended before the failure, yet neither its output
    // nor its part is published, and their files in progress are removed.
    assert_eq!(left, vec![ENDED.to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
