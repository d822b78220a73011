//! Redis for real: results under the documented keys with TTLs and nothing
//! else, a stream written by an independent client read like the same
//! events from a file (at 1x1 and 2x2), malformed entries, a server
//! restart in the middle of a run, and a stream restored from checkpoints.

mod checkpoint_support;
mod redis_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use redis_support::Redis;

const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

fn keyflow(args: &[&str]) -> Output {
    let out = Command::new(KEYFLOW).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "keyflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Generated events as JSON lines.
fn events(dir: &Path, minutes: u32) -> std::path::PathBuf {
    let file = dir.join("events.jsonl");
    let duration = format!("{minutes}m");
    keyflow(&[
        "generate",
        "--to",
        p(&file),
        "--articles",
        "500",
        "--rate",
        "30",
        "--duration",
        &duration,
    ]);
    file
}

/// The events of `file` added to `stream` by redis-cli, one XADD each.
fn add_with_redis_cli(redis: &Redis, stream: &str, file: &Path) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let mut script = String::new();
    let mut n = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        script.push_str(&format!(
            "XADD {stream} * project {} title {} ts {} views {}\n",
            v["project"].as_str().unwrap(),
            v["title"].as_str().unwrap(),
            v["ts"],
            v["views"]
        ));
        n += 1;
    }
    redis.cli_script(&script);
    n
}

/// What `run trending --top 0` writes for the events of `file`.
fn file_output(dir: &Path, file: &Path) -> String {
    let want = dir.join("want.jsonl");
    keyflow(&[
        "run",
        "trending",
        "--quiet",
        "--top",
        "0",
        "--input",
        p(file),
        "--out",
        p(&want),
    ]);
    std::fs::read_to_string(&want).unwrap()
}

fn keys(redis: &Redis) -> BTreeSet<String> {
    redis
        .cli(&["--scan", "--pattern", "*"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn trending_from_a_stream_matches_the_file_and_writes_only_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let file = events(dir.path(), 70);
    let n = add_with_redis_cli(&redis, "events", &file);
    assert_eq!(redis.cli(&["XLEN", "events"]).trim(), n.to_string());

    let want = file_output(dir.path(), &file);
    for (layout, group) in [(None, "one"), (Some(("2", "2")), "four")] {
        let out = dir.path().join(format!("{group}.jsonl"));
        let mut args = vec![];
        if let Some((procs, workers)) = layout {
            args.extend(["cluster", "--processes", procs, "--workers", workers, "--"]);
        }
        args.extend(["run", "trending", "--quiet", "--top", "0"]);
        let url = redis.url();
        args.extend([
            "--input-format",
            "redis-stream",
            "--input",
            &url,
            "--stream",
            "events",
        ]);
        args.extend([
            "--group",
            group,
            "--bounded",
            "--out",
            p(&out),
            "--redis",
            &url,
        ]);
        args.extend(["--redis-prefix", group, "--redis-ttl", "1h"]);
        keyflow(&args);
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, want, "{group}: the stream gives the file's output");
        // Every entry was read and acknowledged by the group.
        let pending = redis.cli(&["XPENDING", "events", group]);
        assert_eq!(pending.lines().next(), Some("0"), "{group}: {pending}");

        // The documented keys, each with its minute's line and a TTL.
        let mut expected: BTreeSet<String> = BTreeSet::new();
        let mut last = "";
        for line in want.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = format!("{group}:trending:minute:{}", v["t"]);
            assert_eq!(redis.cli(&["GET", &key]).trim_end(), line, "{key}");
            expected.insert(key);
            last = line;
        }
        let latest = format!("{group}:trending:latest");
        assert_eq!(redis.cli(&["GET", &latest]).trim_end(), last);
        expected.insert(latest);
        let mine: BTreeSet<String> = keys(&redis)
            .into_iter()
            .filter(|k| k.starts_with(&format!("{group}:")))
            .collect();
        assert_eq!(mine, expected, "{group}: nothing but the documented keys");
        for key in &mine {
            let ttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
            assert!(ttl > 0 && ttl <= 3_600_000, "{key} has TTL {ttl}");
        }
    }
    // Nothing else in the database: the stream and the two prefixes.
    let others: Vec<String> = keys(&redis)
        .into_iter()
        .filter(|k| k != "events" && !k.starts_with("one:") && !k.starts_with("four:"))
        .collect();
    assert!(others.is_empty(), "unexpected keys {others:?}");
}

#[test]
fn malformed_entries_follow_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let file = events(dir.path(), 20);
    add_with_redis_cli(&redis, "mixed", &file);
    redis.cli(&[
        "XADD", "mixed", "*", "project", "en", "title", "No_time", "views", "1",
    ]);
    redis.cli(&[
        "XADD", "mixed", "*", "project", "en", "title", "T", "ts", "soon", "views", "1",
    ]);
    let url = redis.url();
    let base = [
        "run",
        "trending",
        "--quiet",
        "--input-format",
        "redis-stream",
        "--input",
        &url,
    ];
    let mut args = base.to_vec();
    args.extend(["--stream", "mixed", "--bounded", "--group", "a"]);
    let out = keyflow(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 bad"), "{err}");
    let mut args = base.to_vec();
    args.extend([
        "--stream",
        "mixed",
        "--bounded",
        "--group",
        "b",
        "--bad-input",
        "fail",
    ]);
    let out = Command::new(KEYFLOW).args(&args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mixed entry") && err.contains("no `ts` field"),
        "{err}"
    );
}

#[test]
fn a_redis_restart_mid_run_loses_no_minute() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let out = dir.path().join("out.jsonl");
    let url = redis.url();
    // Ten seconds of events at real time, a minute line every second.
    let child = Command::new(KEYFLOW)
        .args([
            "run",
            "trending",
            "--quiet",
            "--top",
            "0",
            "--articles",
            "300",
            "--rate",
            "200",
        ])
        .args([
            "--duration",
            "10s",
            "--realtime",
            "--window",
            "2s",
            "--slide",
            "1s",
        ])
        .args(["--idle-timeout", "1s", "--max-out-of-orderness", "0s"])
        .args(["--out", p(&out), "--redis", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    redis.restart(Duration::from_secs(2));
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let want = std::fs::read_to_string(&out).unwrap();
    assert!(want.lines().count() >= 10, "{want}");
    for line in want.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!("keyflow:trending:minute:{}", v["t"]);
        assert_eq!(
            redis.cli(&["GET", &key]).trim_end(),
            line,
            "{key} after the restart"
        );
    }
}

fn day_files(day: u32, hours: std::ops::Range<u32>) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/pagecounts-2016-08");
    hours
        .map(|h| p(&dir.join(format!("pagecounts-201608{day:02}-{h:02}0000.gz"))).to_string())
        .collect()
}

#[test]
fn anomaly_hours_go_under_their_day_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let base = dir.path().join("base.txt");
    let mut args = vec!["baseline", "--out", p(&base), "--input"];
    let day1 = day_files(1, 0..24);
    args.extend(day1.iter().map(String::as_str));
    keyflow(&args);
    let out = dir.path().join("scores.jsonl");
    let url = redis.url();
    let mut args = vec![
        "run",
        "anomaly",
        "--quiet",
        "--baseline",
        p(&base),
        "--out",
        p(&out),
    ];
    args.extend(["--input-format", "dump", "--redis", &url, "--input"]);
    let day2 = day_files(2, 0..3);
    args.extend(day2.iter().map(String::as_str));
    keyflow(&args);
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    let mut expected = BTreeSet::from(["keyflow:anomaly:latest".to_string()]);
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!(
            "keyflow:anomaly:{}:{}",
            v["day"].as_str().unwrap(),
            v["hour"]
        );
        assert_eq!(redis.cli(&["GET", &key]).trim_end(), line, "{key}");
        expected.insert(key);
    }
    let last = lines.lines().last().unwrap();
    assert_eq!(
        redis.cli(&["GET", "keyflow:anomaly:latest"]).trim_end(),
        last
    );
    assert_eq!(keys(&redis), expected);
    for key in &expected {
        let ttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= 2 * 3_600_000, "{key} has TTL {ttl}");
    }
}

/// The group's pending entries: their count and the smallest ID.
fn pending(redis: &Redis, stream: &str, group: &str) -> (u64, String) {
    let summary = redis.cli(&["XPENDING", stream, group]);
    let mut lines = summary.lines();
    let count = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (count, lines.next().unwrap_or("").trim().to_string())
}

/// `args` for trending on `stream` with checkpoints in `ck`.
fn checkpointed(url: &str, group: &str, out: &Path, ck: &Path, bounded: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "trending",
        "--quiet",
        "--top",
        "0",
        "--input-format",
        "redis-stream",
        "--input",
        url,
        "--stream",
        "events",
        "--group",
        group,
        "--out",
        p(out),
        "--checkpoint-dir",
        p(ck),
        "--checkpoint-every",
        "10s",
    ]
    .map(String::from)
    .to_vec();
    if bounded {
        args.push("--bounded".into());
    }
    args
}

/// With checkpoints a stream is read exactly once: a run killed after a
/// complete checkpoint resumes from the stream ID the checkpoint holds, and
/// its output is the file's, byte for byte.
#[test]
fn a_killed_run_resumes_from_the_checkpoints_stream_id() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let file = events(dir.path(), 70);
    let n = add_with_redis_cli(&redis, "events", &file);
    let want = file_output(dir.path(), &file);
    let url = redis.url();
    let out = dir.path().join("out.jsonl");
    let ck = dir.path().join("ck");
    let args = checkpointed(&url, "g", &out, &ck, true);
    checkpoint_support::kill_after_checkpoint(&args, &ck, Duration::from_millis(200));
    let (left, _) = pending(&redis, "events", "g");
    assert!(left > 0, "the run ended before the kill");
    let (code, err) = checkpoint_support::finish(&args);
    assert_eq!(code, 0, "the restarted run failed: {err}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        want,
        "the restored run counts every entry once"
    );
    assert_eq!(pending(&redis, "events", "g").0, 0, "all {n} acknowledged");
}

/// An unbounded run with checkpoints acknowledges what complete checkpoints
/// cover while it goes on, not only when it ends.
#[test]
fn complete_checkpoints_acknowledge_entries_while_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let file = events(dir.path(), 20);
    add_with_redis_cli(&redis, "events", &file);
    let first = redis.cli(&["XRANGE", "events", "-", "+", "COUNT", "1"]);
    let first = first.lines().next().unwrap().trim().to_string();
    let out = dir.path().join("out.jsonl");
    let ck = dir.path().join("ck");
    let args = checkpointed(&redis.url(), "live", &out, &ck, false);
    let mut child = checkpoint_support::cmd(&args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let acknowledged = loop {
        let (count, smallest) = pending(&redis, "events", "live");
        // Read and partly acknowledged: the first entry is no longer pending.
        if count > 0 && smallest != first {
            break true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(120) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "the unbounded run ended by itself");
    assert!(acknowledged, "nothing was acknowledged in 120 s");
}
