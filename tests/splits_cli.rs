//! One JSON-lines file read in byte-range splits: the same results at every
//! layout, and the same as reading it whole when its events are in order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod cluster_support;

use cluster_support::{wait_bounded, KEYFLOW};

/// Small splits, so that a file of a few megabytes has a dozen of them.
const SPLIT_BYTES: &str = "262144";

/// Writes the generator's events, in event-time order, to `path`.
fn generate(path: &Path) {
    let out = Command::new(KEYFLOW)
        .args(["generate", "--articles", "300", "--rate", "40"])
        .args(["--duration", "25m", "--to"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `keyflow run trending` over `input` on `processes x workers`, with the
/// split size of the test; returns its per-minute output.
fn trending(input: &Path, (processes, workers): (usize, usize), dir: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "{}-{processes}x{workers}.jsonl",
        input.file_name().unwrap().to_string_lossy()
    ));
    let mut command = Command::new(KEYFLOW);
    if processes > 1 {
        command.args(["cluster", "--processes", &processes.to_string()]);
        command.args(["--workers", &workers.to_string(), "--", "run", "trending"]);
    } else {
        command.args(["run", "trending", "--workers", &workers.to_string()]);
    }
    command
        .args(["--top", "0", "--quiet", "--out"])
        .arg(&out)
        .arg("--input")
        .arg(input)
        .env("KEYFLOW_SPLIT_BYTES", SPLIT_BYTES)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (result, elapsed) = wait_bounded(command.spawn().unwrap(), Duration::from_secs(300));
    assert!(
        result.status.success(),
        "{processes}x{workers} after {elapsed:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(out).unwrap()
}

fn gzip(from: &Path, to: &Path) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&std::fs::read(from).unwrap()).unwrap();
    gz.finish().unwrap();
}

/// Asserts the same output at 1, 4 and 2x2 workers; returns it.
fn same_at_every_layout(input: &Path, dir: &Path) -> Vec<u8> {
    let one = trending(input, (1, 1), dir);
    assert!(one.len() > 1000, "the run produced almost nothing");
    for layout in [(1, 4), (2, 2)] {
        assert!(
            trending(input, layout, dir) == one,
            "{}: layout {layout:?} differs from 1x1",
            input.display()
        );
    }
    one
}

fn size(path: &PathBuf) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_split_file_gives_the_same_results_as_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("events.jsonl");
    generate(&plain);
    let splits = size(&plain).div_ceil(SPLIT_BYTES.parse().unwrap());
    assert!(splits >= 8, "only {splits} splits");
    let split = same_at_every_layout(&plain, dir.path());
    // A gzip file is one partition, read whole: with events in order, no
    // split boundary changes which events are late.
    let gz = dir.path().join("events.jsonl.gz");
    gzip(&plain, &gz);
    assert!(
        trending(&gz, (1, 1), dir.path()) == split,
        "the split file's results differ from the whole file's"
    );
}

#[test]
fn disordered_events_give_the_same_results_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let ordered = dir.path().join("ordered.jsonl");
    generate(&ordered);
    // Every 97th line moves 2000 lines (about 50 s of event time) later in
    // the file, so that it arrives late, some of them across a split
    // boundary: which ones are late depends on the splits, not the layout.
    let text = std::fs::read_to_string(&ordered).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i + 2000 < lines.len() {
        let moved = lines.remove(i);
        lines.insert(i + 2000, moved);
        i += 97;
    }
    let disordered = dir.path().join("disordered.jsonl");
    std::fs::write(&disordered, lines.join("\n") + "\n").unwrap();
    same_at_every_layout(&disordered, dir.path());
}
