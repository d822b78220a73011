//! The README's custom job (`examples/page_counts.rs`) runs alone, on
//! threads, and as a two-process cluster, with the same output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The example's binary, built here so that a plain `cargo test` needs
/// nothing built beforehand. Cargo compiles examples during `cargo test`
/// but does not say where, so this asks it (a no-op when up to date).
fn example() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // The same target directory as this test's own binaries, so the
        // build reuses their artifacts instead of compiling everything again.
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_keyflow")).parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--example", "page_counts", "--message-format=json"]);
        cargo.arg("--manifest-path");
        cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if let Some(target) = profile_dir.parent() {
            if profile_dir.file_name().is_some_and(|n| n == "debug") {
                cargo.arg("--target-dir").arg(target);
            }
        }
        let out = cargo.stderr(Stdio::inherit()).output().unwrap();
        assert!(
            out.status.success(),
            "cargo build --example page_counts failed"
        );
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "page_counts")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo named no page_counts executable");
        assert!(
            path.exists(),
            "{} is missing after the build",
            path.display()
        );
        path
    })
    .clone()
}

fn finish(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn spawn(args: &[String]) -> std::process::Child {
    Command::new(example())
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
