//! Shared by the dashboard tests: a `keyflow run ... --serve` process that
//! is killed when dropped, a plain HTTP GET, a strict Prometheus text
//! parser, headless Chromium, and an input with a known trending answer.

// Each test uses a different part of this module.
#![allow(dead_code)]

pub mod prometheus;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

/// One minute in ms.
pub const MINUTE: u64 = 60_000;

/// A `keyflow` process with a dashboard; killed (and reaped) when dropped,
/// on every path out of a test.
pub struct Served {
    child: Option<Child>,
    stderr: PathBuf,
    /// `host:port` the dashboard listens on.
    pub addr: String,
}

impl Served {
    /// Starts `keyflow ARGS --serve 127.0.0.1:0` (stdout to `dir/stdout`,
    /// stderr to `dir/stderr`) and waits up to 30 s for its dashboard line.
    pub fn start(dir: &Path, args: &[String]) -> Served {
        Self::start_with(dir, args, &["--serve", "127.0.0.1:0"])
    }

    /// Starts `keyflow ARGS TAIL`, where `TAIL` has the `--serve` flag
    /// (after `--` for a cluster), and waits for the dashboard line.
    pub fn start_with(dir: &Path, args: &[String], tail: &[&str]) -> Served {
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        let child = Command::new(KEYFLOW)
            .args(args)
            .args(tail)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {KEYFLOW}: {e}"));
        let mut served = Served {
            child: Some(child),
            stderr,
            addr: String::new(),
        };
        let line = served.wait_for("dashboard at http://", Duration::from_secs(30));
        let rest = line.split("dashboard at http://").nth(1).unwrap();
        served.addr = rest.trim_end().trim_end_matches('/').to_string();
        served
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until a line of stderr contains `text`, and returns it;
    /// panics (with stderr) if the process exits first or `limit` passes.
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let err = self.stderr();
            if let Some(line) = err.lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("keyflow exited ({status}) before saying {text:?}\n--- stderr ---\n{err}");
            }
            assert!(
                start.elapsed() < limit,
                "keyflow did not say {text:?} within {limit:?}\n--- stderr ---\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the input has ended and the final state is served.
    pub fn wait_until_finished(&mut self) {
        self.wait_for("serving the final state", Duration::from_secs(45));
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and returns the exit status and how long the process
    /// took to exit; panics if it is still running after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let child = self.child.as_mut().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "keyflow still runs {limit:?} after SIGTERM\n--- stderr ---\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the dashboard: `(status, content type, body)`.
    pub fn get(&self, path: &str) -> (u16, String, String) {
        get(&self.addr, path)
    }

    /// `GET path`, asserting a 200 answer; the body.
    pub fn get_ok(&self, path: &str) -> String {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.0 GET of `path` on `addr`, read to the end:
/// `(status, content type, body)`.
pub fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Escapes text as a browser's DOM serializer does in text content.
pub fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `chromium` command, installed with `scripts/install-deps.sh` when
/// missing (once, bounded in time).
pub fn chromium() -> &'static str {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let ready = READY.get_or_init(|| {
        let found = |_: ()| {
            Command::new("chromium")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if found(()) {
            return Ok(());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
        let mut install = Command::new("timeout")
            .args(["900", "bash"])
            .arg(&script)
            .arg("chromium")
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let status = install.wait().map_err(|e| e.to_string())?;
        if found(()) {
            Ok(())
        } else {
            Err(format!(
                "chromium is missing and `bash scripts/install-deps.sh chromium` did not \
                 install it ({status})"
            ))
        }
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
    "chromium"
}

/// Runs headless Chromium with `args` then `url`, in a profile of its own
/// under `dir`, killed after 60 s: its stdout.
pub fn headless(dir: &Path, args: &[String], url: &str) -> String {
    let profile = dir.join("chromium-profile");
    let out = dir.join("chromium.out");
    let err = dir.join("chromium.err");
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--no-first-run", "--disable-dev-shm-usage"])
        .args(args)
        .arg(url)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("cannot start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran past 60 s\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed ({status})\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(&out).unwrap()
}

/// One event of a test input.
#[derive(Clone)]
pub struct Event {
    /// Wikimedia domain code.
    pub project: &'static str,
    /// Page title.
    pub title: String,
    /// Event time, ms.
    pub ts: u64,
}

/// An input with a known answer: over 70 minutes from `start`, three
/// articles whose views grow every ten minutes (titles that need escaping
/// among them), one whose views fall, and steady background traffic.
/// Views come as one event per view, so the event count is the line count.
pub fn rising_input(start: u64) -> Vec<Event> {
    let rising = [
        ("en", "Rising_Star"),
        ("de", "Käse_&_Brot"),
        ("fr", "L'<Été>_(film)"),
    ];
    let mut events = Vec::new();
    for minute in 0..70u64 {
        let window = minute / 10;
        let ts = start + minute * MINUTE;
        for (i, (project, title)) in rising.iter().enumerate() {
            // Window w gets (w + 1) * (i + 1) views a minute, rising
            // through the six windows of the last hour.
            for v in 0..(window + 1) * (i as u64 + 1) {
                events.push(Event {
                    project,
                    title: title.to_string(),
                    ts: ts + v * 100 + i as u64,
                });
            }
        }
        for v in 0..(8u64.saturating_sub(window)) {
            events.push(Event {
                project: "en",
                title: "Falling".into(),
                ts: ts + 50 + v,
            });
        }
        events.push(Event {
            project: "en",
            title: "Steady".into(),
            ts: ts + 30_000,
        });
    }
    events.sort_by_key(|e| e.ts);
    events
}

/// Writes `events` as JSON lines to `path`, with `bad` malformed lines
/// spread among them.
pub fn write_jsonl(path: &Path, events: &[Event], bad: usize) {
    let mut text = String::new();
    let every = (events.len() / (bad + 1)).max(1);
    let mut written_bad = 0;
    for (i, e) in events.iter().enumerate() {
        if written_bad < bad && i > 0 && i % every == 0 {
            text.push_str("{\"project\": \"en\", \"title\": 7}\n");
            written_bad += 1;
        }
        let line = serde_json::json!({"project": e.project, "title": e.title, "ts": e.ts});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The last line of a `--out` file whose minute had trending articles.
pub fn latest_trending(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["trending"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("no minute had trending articles in:\n{text}"))
}

/// Where tests keep what a person may want to look at after a run.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
