//! Multi-process clusters on 127.0.0.1: identical results at every layout,
//! clean failure when a member dies, clear errors for bad host files and
//! mismatched settings.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod cluster_support;

use cluster_support::*;

/// `run JOB` on `processes x workers`: through `keyflow cluster` when there
/// are several processes, with `--workers` alone otherwise.
fn layout_args((processes, workers): (usize, usize), job: &str) -> Vec<String> {
    let (processes, workers) = (processes.to_string(), workers.to_string());
    if processes != "1" {
        [
            "cluster",
            "--processes",
            &processes,
            "--workers",
            &workers,
            "--",
            "run",
            job,
        ]
        .map(String::from)
        .to_vec()
    } else {
        ["run", job, "--workers", &workers]
            .map(String::from)
            .to_vec()
    }
}

fn trending_at(layout: (usize, usize), dir: &Path) -> Vec<u8> {
    let (processes, workers) = layout;
    let out = dir.join(format!("trending-{processes}x{workers}.jsonl"));
    let hourly = dir.join(format!("hourly-{processes}x{workers}"));
    let mut args = layout_args(layout, "trending");
    args.extend(["--input-format", "dump", "--top", "0", "--quiet"].map(String::from));
    args.extend(["--out".into(), out.display().to_string()]);
    args.push("--hourly-out".into());
    args.push(hourly.display().to_string());
    args.push("--input".into());
    args.extend(dump_inputs());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = run(&argv, Duration::from_secs(120));
    assert!(
        result.status.success(),
        "{layout:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let mut bytes = std::fs::read(&out).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&hourly)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        bytes.extend(f.file_name().unwrap().to_string_lossy().as_bytes());
        bytes.extend(std::fs::read(f).unwrap());
    }
    bytes
}

#[test]
fn trending_is_identical_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let reference = trending_at((1, 1), dir.path());
    assert!(
        reference.len() > 1000,
        "the fixture produced almost nothing"
    );
    for layout in [(1, 4), (2, 2), (4, 1)] {
        assert!(
            trending_at(layout, dir.path()) == reference,
            "layout {layout:?} differs from 1x1"
        );
    }
}

#[test]
fn a_killed_member_stops_the_cluster_quickly() {
    let child = Command::new(KEYFLOW)
        .args([
            "cluster",
            "--processes",
            "2",
            "--workers",
            "1",
            "--",
            "run",
            "trending",
        ])
        .args([
            "--articles",
            "10000",
            "--rate",
            "100",
            "--duration",
            "30m",
            "--realtime",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let members = two_members(child.id());
    assert_eq!(members.len(), 2, "the cluster did not start its members");
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-9", &members[1].to_string()])
        .status()
        .unwrap();
    let (out, elapsed) = wait_bounded(child, Duration::from_secs(30));
    assert!(
        elapsed < Duration::from_secs(10),
        "the cluster took {elapsed:?} to stop"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("process 1 was killed by signal 9"),
        "{stderr}"
    );
}

#[test]
fn an_idle_cluster_outlives_its_connect_timeout_and_a_member_paused_briefly() {
    // One event a second, paced: the links sit idle for longer than the
    // start-up timeout, whose deadline the handshake left on the sockets
    // (timely's threads took the timed-out read for a lost peer), and a
    // member stopped for a second saw its read fail with EINTR.
    let dir = tempfile::tempdir().unwrap();
    let job = |out: &Path| {
        [
            "run",
            "trending",
            "--articles",
            "100",
            "--rate",
            "1",
            "--duration",
            "6s",
            "--top",
            "0",
            "--quiet",
            "--out",
            &out.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let want = dir.path().join("want.jsonl");
    let argv = job(&want);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    assert!(run(&argv, Duration::from_secs(60)).status.success());
    let got = dir.path().join("got.jsonl");
    let child = Command::new(KEYFLOW)
        .args(["cluster", "--processes", "2", "--workers", "1", "--"])
        .args(job(&got))
        .args(["--realtime", "--connect-timeout", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let members: Vec<String> = two_members(child.id()).iter().map(u32::to_string).collect();
    assert_eq!(members.len(), 2, "the cluster did not start its members");
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").args(["-STOP", &members[0]]).status();
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill").args(["-CONT", &members[0]]).status();
    let (out, _) = wait_bounded(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read(&want).unwrap();
    assert!(!want.is_empty() && std::fs::read(&got).unwrap() == want);
}

#[test]
fn a_short_hostfile_is_rejected_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1:1\n").unwrap();
    let hosts = hosts.display().to_string();
    let out = run(
        &[
            "run",
            "trending",
            "--processes",
            "2",
            "--process",
            "0",
            "--hostfile",
            &hosts,
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the host file lists 1 addresses but --processes is 2"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_peer_is_a_clear_error_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let out = run(
        &[
            "run",
            "trending",
            "--processes",
            "2",
            "--process",
            "1",
            "--hostfile",
            &hosts,
            "--connect-timeout",
            "2s",
            "--quiet",
        ],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not connect to processes 0"),
        "{stderr}"
    );
}

/// Starts processes 0 and 1 of a two-process trending job on `hosts`,
/// each with its own `extra` flags and `KEYFLOW_SPLIT_BYTES`; both must
/// fail soon, saying they disagree and naming `named`.
fn members_disagree(hosts: &str, extra: [(&[&str], &str); 2], named: &str) {
    let children: Vec<_> = extra
        .iter()
        .enumerate()
        .map(|(process, (flags, split))| {
            Command::new(KEYFLOW)
                .args(["run", "trending", "--quiet", "--articles", "1000"])
                .args(["--rate", "10", "--processes", "2", "--process"])
                .arg(process.to_string())
                .args(["--hostfile", hosts, "--connect-timeout", "10s"])
                .args(*flags)
                .env("KEYFLOW_SPLIT_BYTES", split)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (process, child) in children.into_iter().enumerate() {
        let (out, elapsed) = wait_bounded(child, Duration::from_secs(30));
        assert!(
            elapsed < Duration::from_secs(20),
            "process {process} took {elapsed:?}"
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("disagree") && stderr.contains(named),
            "process {process}: {stderr}"
        );
    }
}

#[test]
fn members_with_different_worker_counts_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let same = "1048576";
    members_disagree(
        &hosts,
        [(&["--workers", "2"], same), (&["--workers", "1"], same)],
        "--workers 1",
    );
}

/// Members that would split files differently (one read some lines twice,
/// others never) refuse to start together, naming the setting.
#[test]
fn members_with_different_split_sizes_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    members_disagree(
        &hosts,
        [(&[], "1048576"), (&[], "2097152")],
        "KEYFLOW_SPLIT_BYTES",
    );
}

#[test]
fn members_with_checkpoint_directories_of_their_own_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = two_free_hosts(dir.path());
    let start = |process: &str| {
        let ckpt = dir.path().join(format!("ckpt-{process}"));
        Command::new(KEYFLOW)
            .args(["run", "trending", "--quiet", "--articles", "1000"])
            .args(["--processes", "2", "--process", process])
            .args(["--hostfile", &hosts, "--connect-timeout", "10s"])
            .arg("--checkpoint-dir")
            .arg(&ckpt)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p0, p1) = (start("0"), start("1"));
    for (child, other) in [(p0, "process 1"), (p1, "process 0")] {
        let (out, elapsed) = wait_bounded(child, Duration::from_secs(30));
        assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{other} of the cluster does not use this directory"
            )),
            "{stderr}"
        );
    }
    // Nothing was written that a later run would take for a checkpoint.
    for process in ["0", "1"] {
        let ckpt = dir.path().join(format!("ckpt-{process}"));
        let names: Vec<_> = std::fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&format!("lock-p{process}")), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("epoch-") || n == "FINISHED"),
            "{}: {names:?}",
            ckpt.display()
        );
    }
}

fn anomaly_at(layout: (usize, usize), dir: &Path, baseline: &str) -> Vec<u8> {
    let (processes, workers) = layout;
    let out = dir.join(format!("anomaly-{processes}x{workers}.jsonl"));
    let updated = dir.join(format!("baseline-{processes}x{workers}.txt"));
    let mut args = layout_args(layout, "anomaly");
    args.extend(["--input-format", "dump", "--quiet", "--min-volume", "10"].map(String::from));
    args.extend(["--baseline".into(), baseline.to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(["--baseline-out".into(), updated.display().to_string()]);
    args.push("--input".into());
    args.extend((0..24).map(|h| {
        data(&format!(
            "pagecounts-2016-08/pagecounts-20160802-{h:02}0000.gz"
        ))
        .display()
        .to_string()
    }));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = run(&argv, Duration::from_secs(120));
    assert!(
        result.status.success(),
        "{layout:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let mut bytes = std::fs::read(&out).unwrap();
    bytes.extend(std::fs::read(&updated).unwrap());
    bytes
}

#[test]
fn anomaly_is_identical_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("day1.txt").display().to_string();
    let mut args = vec![
        "baseline".to_string(),
        "--out".into(),
        baseline.clone(),
        "--input".into(),
    ];
    args.extend((0..24).map(|h| {
        data(&format!(
            "pagecounts-2016-08/pagecounts-20160801-{h:02}0000.gz"
        ))
        .display()
        .to_string()
    }));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(run(&argv, Duration::from_secs(60)).status.success());
    let reference = anomaly_at((1, 1), dir.path(), &baseline);
    for layout in [(1, 4), (2, 2), (4, 1)] {
        assert!(
            anomaly_at(layout, dir.path(), &baseline) == reference,
            "layout {layout:?} differs from 1x1"
        );
    }
}
