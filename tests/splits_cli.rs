//! One JSON-lines file read in byte-range splits: the same results at every
//! layout, the same as reading it whole when its events are in order, and
//! the same after a restore from a checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod checkpoint_support;
mod cluster_support;

use checkpoint_support::{assert_same, finish, gzip_events_n, has_complete_epoch, kill_after};
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

// A restore from an early epoch, taken while one worker was still in its
// first split and another had run ahead, at another worker count.
#[test]
fn a_split_file_restores_from_a_checkpoint_at_another_worker_count() {
    // Larger splits than the other tests', so that a split takes several
    // source batches and checkpoints are taken while one is read. The
    // other tests set the size on each command, so setting it for the
    // whole test process is safe; the runs below inherit it.
    const CHECKPOINT_SPLIT: u64 = 2 << 20;
    std::env::set_var("KEYFLOW_SPLIT_BYTES", CHECKPOINT_SPLIT.to_string());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Out-of-order and late events, so that a restore must also send again
    // the late records of the epoch it resumes from.
    let gz = d.join("views.jsonl.gz");
    gzip_events_n(&gz, 240_000);
    let plain = d.join("views.jsonl");
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut text,
    )
    .unwrap();
    std::fs::write(&plain, text).unwrap();
    assert!(size(&plain) > 6 * CHECKPOINT_SPLIT);
    let args = |name: &str, workers: &str, checkpoint: bool| -> Vec<String> {
        let mut a: Vec<String> = ["run", "trending", "--top", "0", "--quiet"]
            .map(String::from)
            .to_vec();
        a.extend(["--workers".into(), workers.into(), "--input".into()]);
        a.push(plain.display().to_string());
        a.extend(["--late".into(), "side-output".into(), "--late-out".into()]);
        a.push(d.join(format!("{name}.late")).display().to_string());
        a.push("--out".into());
        a.push(d.join(format!("{name}.out")).display().to_string());
        if checkpoint {
            a.push("--checkpoint-dir".into());
            a.push(d.join(format!("{name}.ckpt")).display().to_string());
        }
        a
    };
    let outputs = |name: &str| -> Vec<(String, Vec<u8>)> {
        ["out", "late"]
            .iter()
            .map(|ext| {
                let path = d.join(format!("{name}.{ext}"));
                (ext.to_string(), std::fs::read(path).unwrap())
            })
            .collect()
    };
    let (code, err) = finish(&args("ref", "1", false));
    assert_eq!(code, 0, "{err}");
    let want = outputs("ref");
    assert!(want[0].1.len() > 1000 && !want[1].1.is_empty());

    // How long a checkpointed run takes here, to kill the others inside it.
    let start = std::time::Instant::now();
    assert_eq!(finish(&args("t", "2", true)).0, 0);
    let full = start.elapsed().as_millis() as u64;
    // Kill at growing delays until a complete checkpoint exists, then
    // finish at another worker count.
    let ckpt = d.join("k.ckpt");
    let mut resumed = false;
    for pct in [15, 25, 35, 45, 60, 75] {
        let delay = 100 + full * pct / 100;
        kill_after(&args("k", "2", true), Duration::from_millis(delay));
        if has_complete_epoch(&ckpt) && !ckpt.join("FINISHED").exists() {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "no checkpoint was completed to restore from");
    let (code, err) = finish(&args("k", "3", true));
    assert_eq!(code, 0, "{err}");
    assert_same("2 -> 3 workers", &outputs("k"), &want);
}

/// A split size below the least one is refused before any work, naming the
/// value (a byte per split would plan a partition per byte).
#[test]
fn a_split_size_below_the_least_is_refused() {
    for value in ["1", "65535", "ten"] {
        let out = Command::new(KEYFLOW)
            .args(["run", "trending", "--quiet", "--duration", "1m"])
            .env("KEYFLOW_SPLIT_BYTES", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("KEYFLOW_SPLIT_BYTES={value}")) && stderr.contains("65536"),
            "{stderr}"
        );
    }
}
