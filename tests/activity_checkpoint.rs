//! Checkpoints of `keyflow run activity`, end to end: runs SIGKILLed at
//! many moments and started again with the same command until they finish
//! write the same `--out`, `--late-out` and Parquet files (byte for byte,
//! and the same rows read back) as an uninterrupted run, also when the
//! restart has another worker count; the generator resumes too.

mod activity_support;
mod checkpoint_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use activity_support::{events, files, read_lake, write_files, Shape};
use checkpoint_support::*;

/// The job's flags for a run named `name` in `dir`, over `source` (input
/// or generator flags), with `policy` (late flags).
struct Layout<'a> {
    dir: &'a Path,
    source: Vec<String>,
    policy: &'a [&'a str],
}

impl Layout<'_> {
    fn args(&self, name: &str, workers: &str, extra: &[&str]) -> Vec<String> {
        let d = self.dir;
        let mut a = s(&["run", "activity", "--quiet", "--window", "5m"]);
        a.extend(self.source.iter().cloned());
        a.extend(s(self.policy));
        if self.policy.contains(&"side-output") {
            a.push("--late-out".into());
            a.push(p(&d.join(format!("{name}.late"))));
        }
        a.extend(s(&["--workers", workers, "--out"]));
        a.push(p(&d.join(format!("{name}.out"))));
        a.push("--parquet-out".into());
        a.push(p(&self.lake(name)));
        a.extend(s(extra));
        a
    }

    fn checkpointed(&self, name: &str, workers: &str) -> Vec<String> {
        let ck = p(&self.ckpt(name));
        // Off the hour, so that hours are written between checkpoints.
        self.args(
            name,
            workers,
            &["--checkpoint-dir", &ck, "--checkpoint-every", "7m"],
        )
    }

    fn ckpt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ckpt"))
    }

    fn lake(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lake"))
    }

    /// Every output file with its bytes: `--out`, `--late-out`, then the
    /// Parquet files by path (checked for their layout, with no temporary
    /// file left).
    fn outputs(&self, name: &str) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![(
            "out".to_string(),
            read(&self.dir.join(format!("{name}.out"))),
        )];
        let late = self.dir.join(format!("{name}.late"));
        if late.exists() {
            files.push(("late".to_string(), read(&late)));
        }
        let lake = self.lake(name);
        for f in activity_support::lake_files(&lake) {
            let rel = f.strip_prefix(&lake).unwrap().display().to_string();
            files.push((rel, read(&f)));
        }
        files
    }

    fn reference(&self, workers: &str) -> Vec<(String, Vec<u8>)> {
        let (code, err) = finish(&self.args("ref", workers, &[]));
        assert_eq!(code, 0, "{err}");
        let want = self.outputs("ref");
        assert!(
            want.len() > 4 && want[0].1.len() > 10_000,
            "the reference run produced almost nothing"
        );
        want
    }

    /// The resumed run's outputs equal the reference's, and so do the
    /// Parquet rows read back.
    fn assert_resumed(&self, what: &str, name: &str, want: &[(String, Vec<u8>)]) {
        assert_same(what, &self.outputs(name), want);
        assert_eq!(
            read_lake(&self.lake(name)),
            read_lake(&self.lake("ref")),
            "{what}: Parquet rows"
        );
        assert!(self.ckpt(name).join("FINISHED").exists(), "{what}");
    }
}

/// JSON-lines inputs over 5 hours: about 160,000 events in 3 files, with
/// disorder and late events.
fn input_files(dir: &Path) -> Vec<String> {
    let shape = Shape {
        sessions: 10_000,
        users: 300,
        span: 5 * 60 * 60_000,
    };
    let all = events(11, shape);
    let paths = write_files(dir, &files(11, &all, 3, 3_000, 40));
    let mut a = vec!["--input".to_string()];
    a.extend(paths.iter().map(|f| p(f)));
    a
}

#[test]
fn killed_at_many_moments_every_output_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout {
        dir: dir.path(),
        source: input_files(dir.path()),
        policy: &["--late", "side-output"],
    };
    let want = l.reference("2");

    // How long one checkpointed run takes here, to kill the others inside
    // it: early, late and in between.
    let start = Instant::now();
    assert_eq!(finish(&l.checkpointed("t", "2")).0, 0);
    let full = start.elapsed().as_millis() as u64;
    l.assert_resumed("uninterrupted", "t", &want);
    let delays: Vec<u64> = [15, 30, 20, 35, 25, 30]
        .iter()
        .map(|pct| 150 + full * pct / 100)
        .collect();
    let args = l.checkpointed("k", "2");
    let killed = kill_and_finish(&args, &delays);
    assert!(killed >= 1, "no run was still running when killed");
    l.assert_resumed("killed", "k", &want);

    // The same command again does nothing and says so.
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already ran to its end"), "{err}");
    assert_same("after finishing", &l.outputs("k"), &want);
}

#[test]
fn a_checkpoint_restores_at_another_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout {
        dir: dir.path(),
        source: input_files(dir.path()),
        policy: &["--late", "allowed-lateness", "3m"],
    };
    let want = l.reference("1");
    for (name, first, then) in [("a", "2", "3"), ("b", "3", "1")] {
        // Killed a while after its first complete checkpoint.
        let ck = l.ckpt(name);
        kill_after_checkpoint(
            &l.checkpointed(name, first),
            &ck,
            Duration::from_millis(700),
        );
        let (code, err) = finish(&l.checkpointed(name, then));
        assert_eq!(code, 0, "{err}");
        l.assert_resumed(&format!("{first} then {then} workers"), name, &want);
    }
}

#[test]
fn the_generator_resumes_where_the_checkpoint_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout {
        dir: dir.path(),
        source: s(&["--duration", "4h", "--rate", "15", "--users", "2000"]),
        policy: &[],
    };
    let want = l.reference("2");
    let args = l.checkpointed("g", "2");
    kill_after_checkpoint(&args, &l.ckpt("g"), Duration::from_millis(1500));
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    l.assert_resumed("generator", "g", &want);
}

#[test]
fn a_restart_with_no_checkpoint_to_resume_clears_only_its_own_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout {
        dir: dir.path(),
        source: s(&["--duration", "4h", "--rate", "5", "--users", "200"]),
        policy: &[],
    };
    let want = l.reference("1");
    let args = l.checkpointed("c", "1");
    assert_eq!(finish(&args).0, 0);
    // As if killed after writing hours but before its first checkpoint was
    // complete: the restart starts over, into the files it wrote.
    std::fs::remove_file(l.ckpt("c").join("FINISHED")).unwrap();
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    l.assert_resumed("started over", "c", &want);

    // Another configuration did not write them: they stay, and it stops.
    std::fs::remove_file(l.ckpt("c").join("FINISHED")).unwrap();
    let mut other = l.checkpointed("c", "1");
    other.extend(s(&["--top", "3"]));
    let (code, err) = finish(&other);
    assert_ne!(code, 0);
    assert!(err.contains("is not empty"), "{err}");
    assert_same("refused", &l.outputs("c"), &want);
}
