//! The examples run as a user would run them: `page_counts` alone, on
//! threads and as a two-process cluster with the same output; `sessions`
//! on its sample and on a user's CSV file, checked against sessions
//! computed here; `timely_mix` with its raw timely operators.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The example's binary, built here so that a plain `cargo test` needs
/// nothing built beforehand. Cargo compiles examples during `cargo test`
/// but does not say where, so this asks it (a no-op when up to date).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // The same target directory as this test's own binaries, so the
        // build reuses their artifacts instead of compiling everything again.
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_keyflow")).parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--examples", "--message-format=json"]);
        cargo.arg("--manifest-path");
        cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if let Some(target) = profile_dir.parent() {
            if profile_dir.file_name().is_some_and(|n| n == "debug") {
                cargo.arg("--target-dir").arg(target);
            }
        }
        let out = cargo.stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "cargo build --examples failed");
        let paths: Vec<(String, PathBuf)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter_map(|m| {
                let name = m["target"]["name"].as_str()?.to_string();
                Some((name, PathBuf::from(m["executable"].as_str()?)))
            })
            .collect();
        EXAMPLES.set(paths).unwrap();
    });
    let path = EXAMPLES
        .get()
        .unwrap()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("cargo named no {name} executable"));
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    path
}

static EXAMPLES: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();

fn finish(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn spawn(args: &[String]) -> std::process::Child {
    spawn_example("page_counts", args)
}

fn spawn_example(name: &str, args: &[String]) -> std::process::Child {
    Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_example_gives_the_same_counts_on_threads_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for f in 0..3u64 {
        let path = dir.path().join(format!("clicks{f}.jsonl"));
        let lines: String = (0..200u64)
            .map(|i| {
                let page = ["/", "/docs", "/blog", "/about"][((i * 7 + f) % 4) as usize];
                format!(
                    "{{\"page\":\"{page}\",\"ts\":{}}}\n",
                    1_700_000_000_000 + i * 1_500 + f * 100
                )
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        files.push(path.display().to_string());
    }
    let alone = finish(spawn(&files));
    assert!(
        alone.status.success(),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    assert!(alone.stdout.len() > 100);

    let mut threaded = files.clone();
    threaded.extend(["--workers".into(), "3".into()]);
    assert_eq!(finish(spawn(&threaded)).stdout, alone.stdout);

    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let member = |process: &str| {
        let mut args = files.clone();
        args.extend(
            [
                "--workers",
                "2",
                "--processes",
                "2",
                "--process",
                process,
                "--hostfile",
            ]
            .map(String::from),
        );
        args.push(hosts.display().to_string());
        spawn(&args)
    };
    let p1 = member("1");
    let p0 = member("0");
    let (out0, out1) = (finish(p0), finish(p1));
    assert!(
        out0.status.success(),
        "{}",
        String::from_utf8_lossy(&out0.stderr)
    );
    assert!(
        out1.status.success(),
        "{}",
        String::from_utf8_lossy(&out1.stderr)
    );
    let results: String = String::from_utf8_lossy(&out0.stdout)
        .lines()
        .filter(|l| !l.starts_with("awaiting connections") && !l.contains("error connecting"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(results, String::from_utf8_lossy(&alone.stdout));
}

fn stdout_of(name: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = finish(spawn_example(name, &args));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sessions computed directly: per user, clicks sorted by time, split where
/// two clicks are more than `gap` apart. `(user, start, clicks, pages)`.
fn naive_sessions(csv: &str, gap: u64) -> Vec<(String, u64, usize, Vec<String>)> {
    let mut by_user: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let ts: u64 = f[1].parse().unwrap();
        by_user
            .entry(f[0].into())
            .or_default()
            .push((ts, f[2].into()));
    }
    let mut out = Vec::new();
    for (user, mut clicks) in by_user {
        clicks.sort();
        let mut session: Vec<(u64, String)> = Vec::new();
        let mut flush = |s: &mut Vec<(u64, String)>| {
            if let Some(first) = s.first() {
                let pages: std::collections::BTreeSet<String> =
                    s.iter().map(|(_, p)| p.clone()).collect();
                out.push((user.clone(), first.0, s.len(), pages.into_iter().collect()));
            }
            s.clear();
        };
        for click in clicks {
            if session.last().is_some_and(|last| click.0 > last.0 + gap) {
                flush(&mut session);
            }
            session.push(click);
        }
        flush(&mut session);
    }
    out.sort();
    out
}

/// Parses the example's lines back into `(user, start, clicks, pages)`.
fn parse_sessions(stdout: &str) -> Vec<(String, String, usize, Vec<String>)> {
    let mut out: Vec<_> = stdout
        .lines()
        .map(|l| {
            let (head, pages) = l.split_once(" clicks  ").unwrap();
            let f: Vec<&str> = head.split_whitespace().collect();
            let start = format!("{} {}", f[1], f[2]);
            let clicks = f[f.len() - 1].parse().unwrap();
            let pages = pages.split(' ').map(String::from).collect();
            (f[0].to_string(), start, clicks, pages)
        })
        .collect();
    out.sort();
    out
}

fn utc(ms: u64) -> String {
    keyflow::dataflow::time::format_utc(ms)
}

#[test]
fn the_sessions_example_matches_sessions_computed_directly() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clicks.csv");
    let expected: Vec<_> = naive_sessions(&std::fs::read_to_string(sample).unwrap(), 30 * 60_000)
        .into_iter()
        .map(|(u, start, n, pages)| (u, utc(start), n, pages))
        .collect();
    assert!(
        expected.len() >= 10,
        "the sample holds {} sessions",
        expected.len()
    );
    let alone = stdout_of("sessions", &[]);
    assert_eq!(parse_sessions(&alone), expected);
    assert_eq!(stdout_of("sessions", &["--workers", "3"]), alone);

    // A user's own file, with a shorter gap that splits more sessions.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.csv");
    let mut csv = String::from("user,ts,page\n");
    let mut ts = 1_700_000_000_000u64;
    for i in 0..120u64 {
        // In time order, as a log is written, with irregular pauses.
        ts += 5_000 + (i % 7) * (i % 5) * 9_000;
        let user = ["u1", "u2", "u3"][(i % 3) as usize];
        csv.push_str(&format!("{user},{ts},/p/{}\n", i % 4));
    }
    std::fs::write(&path, &csv).unwrap();
    let file = path.display().to_string();
    let mine = stdout_of("sessions", &[&file, "--gap", "2m", "--workers", "2"]);
    let expected: Vec<_> = naive_sessions(&csv, 2 * 60_000)
        .into_iter()
        .map(|(u, start, n, pages)| (u, utc(start), n, pages))
        .collect();
    assert!(expected.len() > 3);
    assert_eq!(parse_sessions(&mine), expected);
}

#[test]
fn the_timely_mix_example_drops_bots_in_its_raw_timely_operator() {
    let out = stdout_of("timely_mix", &["--workers", "2"]);
    // Per partition, 90 visits 2 s apart from 22:14:00, one in four by a
    // bot; the pages rotate, shifted by the partition.
    let mut expected: std::collections::BTreeMap<(u64, &str), u64> = Default::default();
    for p in 0..2u64 {
        for i in 0..90u64 {
            if i % 4 == 0 {
                continue;
            }
            let page = ["/", "/docs", "/blog"][((i + p) % 3) as usize];
            let minute = (1_700_000_040_000 + i * 2_000) / 60_000 * 60_000;
            *expected.entry((minute, page)).or_default() += 1;
        }
    }
    let mut got: std::collections::BTreeMap<(u64, &str), u64> = Default::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let minute = expected
            .keys()
            .map(|(m, _)| *m)
            .find(|m| utc(*m) == format!("{} {}", f[0], f[1]))
            .unwrap_or_else(|| panic!("unexpected minute in {line}"));
        got.insert((minute, f[2]), f[3].parse().unwrap());
    }
    assert_eq!(got, expected);
    assert_eq!(stdout_of("timely_mix", &[]), out);

    // The same visits from a user's file give the same counts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.jsonl");
    let mut lines = String::new();
    for i in 0..90u64 {
        for p in 0..2u64 {
            let page = ["/", "/docs", "/blog"][((i + p) % 3) as usize];
            let agent = if i % 4 == 0 {
                "crawler-bot/2.1"
            } else {
                "Mozilla/5.0"
            };
            let ts = 1_700_000_040_000 + i * 2_000;
            lines.push_str(&format!(
                "{{\"page\":\"{page}\",\"agent\":\"{agent}\",\"ts\":{ts}}}\n"
            ));
        }
    }
    std::fs::write(&path, lines).unwrap();
    assert_eq!(stdout_of("timely_mix", &[&path.display().to_string()]), out);
}
