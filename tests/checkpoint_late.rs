//! Checkpoints of the trending job under `--late allowed-lateness`, end to
//! end through the CLI: a run SIGKILLed at several moments and started
//! again until it finishes writes the same bytes, updates included, as an
//! uninterrupted run without checkpoints; so does a run restored at another
//! worker count.

mod checkpoint_support;

use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint_support::*;

/// The job's flags under 40 s of allowed lateness (every 50th input event
/// is read about 15 s behind the watermark, so many minutes are updated),
/// writing into `name`'s files.
fn args(dir: &Path, input: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut a = s(&["run", "trending", "--top", "0", "--quiet"]);
    a.extend(s(&["--late", "allowed-lateness", "40s", "--input"]));
    a.push(p(input));
    a.push("--hourly-out".into());
    a.push(p(&dir.join(format!("{name}.hourly"))));
    a.push("--out".into());
    a.push(p(&dir.join(format!("{name}.out"))));
    a.extend(s(extra));
    a
}

/// `--out` and every hourly file of `name`, by file name.
fn outputs(dir: &Path, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("out".to_string(), read(&dir.join(format!("{name}.out"))))];
    let mut hourly: Vec<_> = std::fs::read_dir(dir.join(format!("{name}.hourly")))
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    hourly.sort();
    for f in hourly {
        let n = f.file_name().unwrap().to_string_lossy().into_owned();
        files.push((n, read(&f)));
    }
    files
}

/// An uninterrupted run at `workers` without checkpoints; checks that it
/// has updates to lose.
fn reference(dir: &Path, input: &Path, workers: &str) -> Vec<(String, Vec<u8>)> {
    let (code, err) = finish(&args(dir, input, "ref", &["--workers", workers]));
    assert_eq!(code, 0, "{err}");
    let want = outputs(dir, "ref");
    let text = String::from_utf8_lossy(&want[0].1);
    let updates = text
        .lines()
        .filter(|l| l.contains("\"update\":true"))
        .count();
    assert!(updates > 100, "only {updates} updated minutes");
    assert!(want.len() > 2, "no hourly files");
    want
}

#[test]
fn killed_under_allowed_lateness_the_output_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (d, input) = (dir.path(), dir.path().join("views.jsonl.gz"));
    gzip_events_n(&input, 120_000);
    let want = reference(d, &input, "2");

    // How long one checkpointed run takes here (its output must match too),
    // to kill the others inside it.
    let timed = args(d, &input, "t", &["--workers", "2", "--checkpoint-dir"]);
    let timed = [timed, vec![p(&d.join("t.ckpt"))]].concat();
    let start = Instant::now();
    let (code, err) = finish(&timed);
    assert_eq!(code, 0, "{err}");
    let full = start.elapsed().as_millis() as u64;
    assert_same("checkpointed", &outputs(d, "t"), &want);

    let ck = d.join("k.ckpt");
    let killed_args = args(d, &input, "k", &["--workers", "2", "--checkpoint-dir"]);
    let killed_args = [killed_args, vec![p(&ck)]].concat();
    let delays: Vec<u64> = [12, 20, 16, 24, 18]
        .iter()
        .map(|pct| 150 + full * pct / 100)
        .collect();
    let killed = kill_and_finish(&killed_args, &delays);
    assert!(
        killed >= 1,
        "only {killed} runs were still running when killed"
    );
    assert_same("killed at 2 workers", &outputs(d, "k"), &want);
    assert!(ck.join("FINISHED").exists());
}

#[test]
fn allowed_lateness_checkpoints_restore_at_another_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let (d, input) = (dir.path(), dir.path().join("views.jsonl.gz"));
    gzip_events_n(&input, 120_000);
    let want = reference(d, &input, "1");
    for (name, first, then) in [("a", "2", "3"), ("b", "2", "1")] {
        let ck = d.join(format!("{name}.ckpt"));
        let with = |workers: &str| {
            let a = args(d, &input, name, &["--workers", workers, "--checkpoint-dir"]);
            [a, vec![p(&ck)]].concat()
        };
        // Killed once a complete checkpoint exists, whatever the load.
        kill_after_checkpoint(&with(first), &ck, Duration::ZERO);
        let (code, err) = finish(&with(then));
        assert_eq!(code, 0, "{err}");
        let what = format!("{first} -> {then} workers");
        assert_same(&what, &outputs(d, name), &want);
    }
}
