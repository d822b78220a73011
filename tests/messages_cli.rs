//! How the CLI reports: exit statuses on signals, error text without colour
//! codes, doubled OS errors or a "line 0", and the closing count under
//! `--quiet`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

fn keyflow(args: &[&str]) -> Output {
    Command::new(KEYFLOW).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts a long generator run writing `--out` into `dir`, sends it
/// `signal` once it runs, and returns its exit code.
fn stopped_by(signal: &str, dir: &Path) -> Option<i32> {
    let out = dir.join("minutes.jsonl");
    let mut child = Command::new(KEYFLOW)
        .args([
            "run",
            "trending",
            "--quiet",
            "--realtime",
            "--top",
            "0",
            "--out",
            s(&out),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("keyflow did not stop on {signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = stderr(&out);
    assert!(text.contains("stopped by SIG"), "{text}");
    out.status.code()
}

#[test]
fn sigterm_exits_143_and_sigint_130_leaving_no_file_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(stopped_by("-TERM", dir.path()), Some(143));
    assert_eq!(stopped_by("-INT", dir.path()), Some(130));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a stopped run left {left:?}");
}

#[test]
fn errors_have_no_colour_codes_and_no_doubled_os_text() {
    let out = keyflow(&["baseline", "--input", "/no/such/file.gz", "--out", "x"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let os = "No such file or directory";
    assert_eq!(text.matches(os).count(), 1, "{text}");
    assert!(text.contains("/no/such/file.gz"), "{text}");

    // Warnings go through the log, without colour when stderr is a pipe.
    let out = keyflow(&[
        "run",
        "trending",
        "--log",
        "trace",
        "--quiet",
        "--duration",
        "1m",
    ]);
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));

    // A log filter that does not parse is refused, not half applied.
    let out = keyflow(&["--log", "nonsense[[[", "jobs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--log `nonsense[[[`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_level_error_names_no_line_0_and_bad_text_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = keyflow(&["run", "anomaly", "--quiet", "--baseline", s(&empty)]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("empty file") && !text.contains("line 0"),
        "{text}"
    );

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "keyflow-baseline\u{1b}[2J\u{7} 1\n").unwrap();
    let out = keyflow(&["run", "anomaly", "--quiet", "--baseline", s(&bad)]);
    let text = stderr(&out);
    assert!(
        text.contains("line 1") && text.contains("\\u{1b}[2J\\u{7}"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
}

#[test]
fn quiet_runs_keep_the_closing_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl");
    std::fs::write(
        &input,
        "{\"project\":\"en\",\"title\":\"A\",\"ts\":1470009600000,\"views\":1}\nnot json\n",
    )
    .unwrap();
    let out = keyflow(&["run", "trending", "--quiet", "--input", s(&input)]);
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    let done: Vec<&str> = text.lines().filter(|l| l.starts_with("done:")).collect();
    assert_eq!(done.len(), 1, "{text}");
    assert!(done[0].contains("1 bad"), "{text}");
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Output to a pipe whose reader is gone (`keyflow jobs | head -1`, or
/// a launcher killed before its member's closing count) is no panic: what
/// could not be written is dropped, and the command exits 0.
#[test]
fn a_closed_pipe_on_stdout_or_stderr_is_no_panic() {
    let run: &[&str] = &[
        "run",
        "trending",
        "--quiet",
        "--articles",
        "1000",
        "--rate",
        "10",
        "--duration",
        "2m",
    ];
    for (args, stdout_closed) in [
        (&["jobs"][..], true),
        (&["explain", "trending"][..], true),
        (run, false),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = Command::new(KEYFLOW);
        command.args(args);
        let status = if stdout_closed {
            let (mut err_reader, err_writer) = std::io::pipe().unwrap();
            let status = command.stdout(writer).stderr(err_writer).status().unwrap();
            drop(command);
            let mut text = String::new();
            std::io::Read::read_to_string(&mut err_reader, &mut text).unwrap();
            assert!(!text.contains("panicked"), "{args:?}: {text}");
            status
        } else {
            command
                .stdout(Stdio::null())
                .stderr(writer)
                .status()
                .unwrap()
        };
        assert!(status.success(), "{args:?}: {status}");
    }
}
