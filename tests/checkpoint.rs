//! Checkpoints and exactly-once recovery, end to end through the CLI: a
//! trending run SIGKILLed at many moments and started again with the same
//! command until it finishes writes the same bytes as an uninterrupted run;
//! so does a 2-process cluster whose members are killed; a checkpoint
//! restores at another worker count; and every kind of damage is an error
//! that names a checkpoint file and leaves the output alone.

mod checkpoint_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use checkpoint_support::*;

struct Layout<'a> {
    dir: &'a Path,
    input: &'a Path,
}

impl Layout<'_> {
    /// The job's flags, writing into `name`'s files and checkpoints.
    fn args(&self, name: &str, extra: &[&str]) -> Vec<String> {
        let d = self.dir;
        let mut a = s(&["run", "trending", "--top", "0", "--quiet", "--input"]);
        a.push(p(self.input));
        a.extend(s(&["--late", "side-output", "--late-out"]));
        a.push(p(&d.join(format!("{name}.late"))));
        a.push("--hourly-out".into());
        a.push(p(&d.join(format!("{name}.hourly"))));
        a.push("--out".into());
        a.push(p(&d.join(format!("{name}.out"))));
        a.extend(s(extra));
        a
    }

    fn ckpt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ckpt"))
    }

    fn outputs(&self, name: &str) -> Vec<(String, Vec<u8>)> {
        let d = self.dir;
        let mut files = vec![
            ("out".to_string(), read(&d.join(format!("{name}.out")))),
            ("late".to_string(), read(&d.join(format!("{name}.late")))),
        ];
        let hourly = d.join(format!("{name}.hourly"));
        let mut names: Vec<_> = std::fs::read_dir(&hourly)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for f in names {
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            files.push((n, read(&f)));
        }
        files
    }
}

fn reference(l: &Layout, name: &str, workers: &str) -> Vec<(String, Vec<u8>)> {
    let (code, err) = finish(&l.args(name, &["--workers", workers]));
    assert_eq!(code, 0, "{err}");
    l.outputs(name)
}

#[test]
fn killed_at_many_moments_the_output_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "2");
    assert!(want[0].1.len() > 1000 && !want[1].1.is_empty() && want.len() > 2);

    // How long one checkpointed run takes here, to kill the others inside
    // it: early, late, and in between (some kills land in a checkpoint
    // write: there is one per minute of event time).
    let timed = l.args(
        "t",
        &["--workers", "2", "--checkpoint-dir", &p(&l.ckpt("t"))],
    );
    let start = Instant::now();
    assert_eq!(finish(&timed).0, 0);
    let full = start.elapsed().as_millis() as u64;
    let delays: Vec<u64> = [8, 14, 10, 16, 12, 14, 9, 12]
        .iter()
        .map(|pct| 150 + full * pct / 100)
        .collect();
    let ck = l.ckpt("k");
    let args = l.args("k", &["--workers", "2", "--checkpoint-dir", &p(&ck)]);
    let killed = kill_and_finish(&args, &delays);
    assert!(
        killed >= 1,
        "only {killed} runs were still running when killed"
    );
    assert_same("killed 1x2", &l.outputs("k"), &want);
    assert!(ck.join("FINISHED").exists());

    // The same command again does nothing and says so.
    let before = std::fs::metadata(dir.path().join("k.out"))
        .unwrap()
        .modified()
        .unwrap();
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already ran to its end"), "{err}");
    let after = std::fs::metadata(dir.path().join("k.out"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a finished job must not write again");
}

#[test]
fn a_checkpoint_restores_at_another_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "1");
    for (name, first, then) in [("a", "2", "3"), ("b", "3", "1")] {
        let ck = l.ckpt(name);
        // Killed once a complete checkpoint exists, whatever the load.
        let args = l.args(name, &["--workers", first, "--checkpoint-dir", &p(&ck)]);
        kill_after_checkpoint(&args, &ck, Duration::ZERO);
        let args = l.args(name, &["--workers", then, "--checkpoint-dir", &p(&ck)]);
        let (code, err) = finish(&args);
        assert_eq!(code, 0, "{err}");
        assert_same(
            &format!("{first} -> {then} workers"),
            &l.outputs(name),
            &want,
        );
    }
}

/// `--quiet` may differ between a run and its restore: the table it
/// printed is a step with no state, and a restore without it loses
/// nothing.
#[test]
fn a_run_that_printed_its_table_restores_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "2");
    let ck = l.ckpt("q");
    let quiet = l.args("q", &["--workers", "2", "--checkpoint-dir", &p(&ck)]);
    let loud: Vec<String> = quiet.iter().filter(|a| *a != "--quiet").cloned().collect();
    kill_after_checkpoint(&loud, &ck, Duration::ZERO);
    let (code, err) = finish(&quiet);
    assert_eq!(code, 0, "{err}");
    assert_same("printed, then quiet", &l.outputs("q"), &want);
}

#[test]
fn a_second_run_on_one_directory_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "2");
    let ck = l.ckpt("c");
    let args = l.args("c", &["--checkpoint-dir", &p(&ck)]);
    let first = cmd(&args)
        .arg("--workers")
        .arg("2")
        .spawn()
        .expect("start keyflow");
    // The first run holds the lock from before it reads the directory.
    let lock = ck.join("lock-p0");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&first.id().to_string())) {
        assert!(start.elapsed() < Duration::from_secs(60), "no lock taken");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Neither a plain second run nor one told to start afresh (which
    // would wipe the first one's checkpoints) may touch the directory.
    for extra in [&["--workers", "1"][..], &["--fresh"][..]] {
        let mut again = args.clone();
        again.extend(s(extra));
        let (code, err) = finish(&again);
        assert!(!err.contains("already ran"), "the first run ended too soon");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("in use by another run as process 0"), "{err}");
    }
    let out = wait_bounded(first, Duration::from_secs(240));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same("beside a refused run", &l.outputs("c"), &want);
    assert!(ck.join("FINISHED").exists());
    // The lock went with the first run: the same command now says it is done.
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already ran to its end"), "{err}");
}

fn newest_epoch(ck: &Path) -> PathBuf {
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(ck)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|e| e.join("MANIFEST").exists())
        .collect();
    epochs.sort();
    epochs.pop().expect("a complete epoch")
}

#[test]
fn damage_is_an_error_naming_the_file_and_the_output_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let ck = l.ckpt("d");
    let args = l.args("d", &["--checkpoint-dir", &p(&ck), "--workers", "2"]);
    kill_after_checkpoint(&args, &ck, Duration::ZERO);
    let epoch = newest_epoch(&ck);
    // Only the newest complete epoch is read; damage it in turn.
    let part = epoch.join("p0-w0.part");
    let manifest = epoch.join("MANIFEST");
    let good_part = read(&part);
    let good_manifest = read(&manifest);
    let out = dir.path().join("d.out");
    std::fs::write(&out, "an earlier complete output\n").unwrap();
    let mut flipped = good_part.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x40;
    let mut version = good_part.clone();
    version[8] = 9;
    let cases: Vec<(&str, &Path, Vec<u8>, &str)> = vec![
        (
            "truncated part",
            &part,
            good_part[..good_part.len() / 2].to_vec(),
            "truncated",
        ),
        ("flipped bit", &part, flipped, "checksum"),
        ("wrong version", &part, version, "version 9"),
        (
            "foreign file",
            &part,
            b"hello".to_vec(),
            "not a keyflow checkpoint",
        ),
        (
            "another worker's part, sound in itself",
            &part,
            read(&epoch.join("p0-w1.part")),
            "not the part this epoch's manifest recorded",
        ),
        (
            "damaged manifest",
            &manifest,
            good_manifest[..good_manifest.len() - 3].to_vec(),
            "MANIFEST",
        ),
    ];
    for (what, file, bytes, says) in cases {
        std::fs::write(file, &bytes).unwrap();
        let (code, err) = finish(&args);
        assert_ne!(code, 0, "{what}: a damaged checkpoint must not run");
        assert!(
            err.contains(&p(file)) && err.contains(says),
            "{what}: {err}"
        );
        assert_eq!(
            read(&out),
            b"an earlier complete output\n",
            "{what}: --out was touched"
        );
        std::fs::write(&part, &good_part).unwrap();
        std::fs::write(&manifest, &good_manifest).unwrap();
    }
    // The rise state lives in blobs the parts refer to: damage them all.
    // (Not the temporary file a killed writer may have left: `.NAME.tmp-PID`.)
    let blobs: Vec<PathBuf> = std::fs::read_dir(ck.join("blobs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    assert!(!blobs.is_empty(), "the rise state is kept in blobs");
    let saved: Vec<Vec<u8>> = blobs.iter().map(|b| read(b)).collect();
    for (b, bytes) in blobs.iter().zip(&saved) {
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        std::fs::write(b, bad).unwrap();
    }
    let (code, err) = finish(&args);
    assert_ne!(code, 0, "a damaged blob must not run");
    assert!(
        err.contains("blobs") && err.contains("checksum"),
        "damaged blob: {err}"
    );
    assert_eq!(read(&out), b"an earlier complete output\n");
    for (b, bytes) in blobs.iter().zip(&saved) {
        std::fs::write(b, bytes).unwrap();
    }
    // Another configuration with the same directory is refused too.
    let other = l.args("d", &["--checkpoint-dir", &p(&ck), "--min-views", "3"]);
    let (code, err) = finish(&other);
    assert_ne!(code, 0);
    assert!(err.contains("different job or configuration"), "{err}");
    assert!(
        err.contains("min_views: 1") && err.contains("min_views: 3"),
        "{err}"
    );
    // The undamaged checkpoint still resumes, and --fresh starts over.
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    let (code, err) = finish(&[args.clone(), s(&["--fresh"])].concat());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_killed_run_without_checkpoints_leaves_no_output_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minutes.jsonl");
    std::fs::write(&out, "the previous complete output\n").unwrap();
    let args = |duration: &str| {
        let mut a = s(&["run", "trending", "--articles", "5000", "--rate", "400"]);
        a.extend(s(&[
            "--duration",
            duration,
            "--top",
            "0",
            "--quiet",
            "--out",
        ]));
        a.push(p(&out));
        a
    };
    assert!(
        kill_after(&args("600m"), Duration::from_millis(1500)),
        "the run ended too soon"
    );
    assert_eq!(read(&out), b"the previous complete output\n");
    // The killed run's file in progress is left beside it, until a run
    // that finishes writing the same output clears it.
    let beside = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(beside(), 2, "the killed run left its file in progress");
    let (code, err) = finish(&args("2m"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(beside(), 1, "the orphan is gone, the new output in place");
}

#[test]
fn cluster_members_killed_and_restarted_give_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "1");
    let ck = l.ckpt("c");
    let job = l.args("c", &["--checkpoint-dir", &p(&ck)]);
    let mut args = s(&[
        "cluster",
        "--processes",
        "2",
        "--workers",
        "1",
        "--restart",
        "6",
        "--",
    ]);
    args.extend(job);
    let (killed, out) = run_cluster_killing_members(&args, &ck, &[2, 1, 5]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The third kill waits for five new checkpoints; a run that finishes
    // first (a loaded machine starves this poll) leaves it at two, and a
    // kill that lands as the members finish restarts nothing.
    let restarts = (1..=killed)
        .filter(|n| err.contains(&format!("restart {n} of 6")))
        .count();
    assert!(killed >= 2 && restarts >= 2, "{killed} kills: {err}");
    assert_same("2-process cluster with kills", &l.outputs("c"), &want);
}

#[test]
fn a_stopped_member_is_noticed_and_the_cluster_resumes_from_its_checkpoint() {
    // SIGSTOP leaves a member's sockets open, as a partition does: only the
    // heartbeat notices. The launcher then restarts both from the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl.gz");
    gzip_events(&input);
    let l = Layout {
        dir: dir.path(),
        input: &input,
    };
    let want = reference(&l, "ref", "1");
    let ck = l.ckpt("s");
    let job = l.args("s", &["--checkpoint-dir", &p(&ck), "--peer-timeout", "2s"]);
    let mut args = s(&["cluster", "--processes", "2", "--restart", "3", "--"]);
    args.extend(job);
    let mut child = cmd(&args).spawn().expect("start the cluster");
    // Stopped once it has checkpointed, so that there is a checkpoint to
    // resume from whatever the machine's speed.
    let start = Instant::now();
    let members = loop {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended too soon"
        );
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no checkpoint in 240 s"
        );
        let members = children_of(child.id());
        if members.len() == 2 && !complete_epochs(&ck).is_empty() {
            break members;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = Command::new("kill")
        .args(["-STOP", &members[1].to_string()])
        .status();
    let out = wait_bounded(child, Duration::from_secs(400));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("lost process 1") && err.contains("restart 1 of 3"),
        "{err}"
    );
    assert_same("a stopped member", &l.outputs("s"), &want);
}

#[test]
fn the_pageviews_job_killed_and_restarted_writes_every_output_the_same() {
    // Trending and anomaly in one dataflow: the minutes, the hourly files,
    // the scores and the folded baseline all survive kills and rescaling.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (day1, day2, base) = (
        d.join("day1.jsonl"),
        d.join("day2.jsonl"),
        d.join("day1.baseline"),
    );
    days_of_events(&day1, BASE, 1, 20_000);
    days_of_events(&day2, BASE + 86_400_000, 1, 60_000);
    let built = finish(
        &[
            s(&["baseline", "--input-format", "jsonl", "--input"]),
            vec![p(&day1), "--out".into(), p(&base)],
        ]
        .concat(),
    );
    assert_eq!(built.0, 0, "{}", built.1);
    let job = |name: &str, extra: &[&str]| {
        let mut a = s(&["run", "pageviews", "--quiet", "--min-volume", "10"]);
        a.extend(["--baseline".into(), p(&base), "--input".into(), p(&day2)]);
        for (flag, ext) in [
            ("--trending-out", "minutes"),
            ("--anomaly-out", "scores"),
            ("--baseline-out", "baseline"),
        ] {
            a.extend([flag.into(), p(&d.join(format!("{name}.{ext}")))]);
        }
        let hourly = d.join(format!("{name}.hourly"));
        std::fs::create_dir_all(&hourly).unwrap();
        a.extend(["--hourly-out".into(), p(&hourly)]);
        a.extend(s(extra));
        a
    };
    let outputs = |name: &str| -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<(String, Vec<u8>)> = ["minutes", "scores", "baseline"]
            .iter()
            .map(|ext| (ext.to_string(), read(&d.join(format!("{name}.{ext}")))))
            .collect();
        let mut hours: Vec<_> = std::fs::read_dir(d.join(format!("{name}.hourly")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        hours.sort();
        for h in hours {
            all.push((h.file_name().unwrap().to_string_lossy().into(), read(&h)));
        }
        all
    };
    let (code, err) = finish(&job("ref", &["--workers", "2"]));
    assert_eq!(code, 0, "{err}");
    let want = outputs("ref");
    assert!(want.len() > 3 && want.iter().all(|(_, b)| !b.is_empty()));
    let start = Instant::now();
    let timed = job(
        "t",
        &["--workers", "2", "--checkpoint-dir", &p(&d.join("t.ckpt"))],
    );
    assert_eq!(finish(&timed).0, 0);
    let full = start.elapsed().as_millis() as u64;
    let ck = d.join("a.ckpt");
    // The first run is killed once it has completed a checkpoint, so that
    // one kill lands however loaded the machine is (timed kills alone all
    // came too late once, when the timed run had been the slow one); the
    // others fall at moments of the timed run, if it still runs then.
    let first = job("a", &["--workers", "3", "--checkpoint-dir", &p(&ck)]);
    kill_after_checkpoint(&first, &ck, Duration::ZERO);
    for (workers, pct) in [("2", 30), ("3", 20)] {
        let args = job("a", &["--workers", workers, "--checkpoint-dir", &p(&ck)]);
        kill_after(&args, Duration::from_millis(150 + full * pct / 100));
    }
    let (code, err) = finish(&job("a", &["--workers", "1", "--checkpoint-dir", &p(&ck)]));
    assert_eq!(code, 0, "{err}");
    assert_same("pageviews outputs", &outputs("a"), &want);
}

/// Starts `keyflow cluster` with `args` and SIGKILLs one member (they
/// alternate) once per entry of `gaps`, as crashes would, each after that
/// many new checkpoints in `ck`; returns how many kills were sent and the
/// launcher's output once it ends.
fn run_cluster_killing_members(
    args: &[String],
    ck: &Path,
    gaps: &[usize],
) -> (usize, std::process::Output) {
    // Each kill waits until `gaps[k]` checkpoints newer than the last kill
    // have been seen, so every restart has made progress and every kill
    // lands while the cluster runs, however fast or loaded the machine is.
    // Seen epochs are remembered: the store keeps only the two newest.
    let mut child = cmd(args).spawn().expect("start the cluster");
    let launcher = child.id();
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    let mut last_kill = None;
    let mut killed = 0;
    while killed < gaps.len() && start.elapsed() < Duration::from_secs(240) {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        seen.extend(complete_epochs(ck));
        let ahead = seen.iter().filter(|e| last_kill < Some(**e)).count();
        let members = children_of(launcher);
        if ahead >= gaps[killed] && members.len() == 2 {
            let _ = Command::new("kill")
                .args(["-9", &members[killed % 2].to_string()])
                .status();
            killed += 1;
            last_kill = seen.last().copied();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (killed, wait_bounded(child, Duration::from_secs(400)))
}

/// Pids of the direct children of `pid` (Linux /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// JSON lines of skewed pageviews, `per_day` events a day from `day`.
fn days_of_events(path: &Path, day: u64, days: u64, per_day: u64) {
    let mut text = String::new();
    let mut x: u64 = 11;
    for i in 0..days * per_day {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = day + i * (86_400_000 / per_day);
        let title = (x % 3000).min((x >> 20) % 3000);
        text.push_str(&format!(
            "{{\"project\":\"en\",\"title\":\"T{title}\",\"ts\":{ts},\"views\":{}}}\n",
            1 + (x >> 40) % 3
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Writes a day of events and its baseline, and a second day to score;
/// returns the `run anomaly` arguments for outputs named `name`.
fn anomaly_job(
    d: &Path,
    day1_events: u64,
    day2_events: u64,
) -> impl Fn(&str, &[&str]) -> Vec<String> {
    let (day1, day2, base) = (
        d.join("day1.jsonl"),
        d.join("day2.jsonl"),
        d.join("day1.baseline"),
    );
    days_of_events(&day1, BASE, 1, day1_events);
    days_of_events(&day2, BASE + 86_400_000, 1, day2_events);
    let built = finish(
        &[
            s(&["baseline", "--input-format", "jsonl", "--input"]),
            vec![p(&day1), "--out".into(), p(&base)],
        ]
        .concat(),
    );
    assert_eq!(built.0, 0, "{}", built.1);
    let d = d.to_path_buf();
    move |name: &str, extra: &[&str]| {
        let mut a = s(&[
            "run",
            "anomaly",
            "--top",
            "5",
            "--min-volume",
            "10",
            "--quiet",
        ]);
        a.extend(["--baseline".into(), p(&base), "--input".into(), p(&day2)]);
        a.extend(["--out".into(), p(&d.join(format!("{name}.out")))]);
        a.extend([
            "--baseline-out".into(),
            p(&d.join(format!("{name}.baseline"))),
        ]);
        a.extend(s(extra));
        a
    }
}

#[test]
fn the_anomaly_job_in_a_cluster_with_members_killed_writes_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = anomaly_job(d, 40_000, 120_000);
    let (code, err) = finish(&job("ref", &["--workers", "1"]));
    assert_eq!(code, 0, "{err}");
    let ck = d.join("c.ckpt");
    let mut args = s(&[
        "cluster",
        "--processes",
        "2",
        "--workers",
        "1",
        "--restart",
        "6",
        "--",
    ]);
    args.extend(job("c", &["--checkpoint-dir", &p(&ck)]));
    let (killed, out) = run_cluster_killing_members(&args, &ck, &[1, 1]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(killed >= 1 && err.contains("restart 1 of 6"), "{err}");
    for ext in ["out", "baseline"] {
        let (got, want) = (
            read(&d.join(format!("c.{ext}"))),
            read(&d.join(format!("ref.{ext}"))),
        );
        assert!(
            !want.is_empty() && got == want,
            "--{ext} differs after kills in a cluster"
        );
    }
}

#[test]
fn the_anomaly_job_killed_and_restarted_writes_the_same_scores_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = anomaly_job(d, 60_000, 150_000);
    let (code, err) = finish(&job("ref", &["--workers", "2"]));
    assert_eq!(code, 0, "{err}");
    let ck = d.join("a.ckpt");
    let timed = job(
        "t",
        &["--workers", "2", "--checkpoint-dir", &p(&d.join("t.ckpt"))],
    );
    let start = Instant::now();
    assert_eq!(finish(&timed).0, 0);
    let mut full = start.elapsed().as_millis() as u64;
    let mut killed = 0;
    for (i, pct) in [10, 18, 14, 22, 16].iter().enumerate() {
        // Alternate the layout: each restore re-routes the state.
        let workers = if i % 2 == 0 { "2" } else { "3" };
        let args = job("a", &["--workers", workers, "--checkpoint-dir", &p(&ck)]);
        // Under load the timed run can be many times slower than this one,
        // and a first run that ends before its kill leaves every later run
        // nothing to do: start it again from nothing, killed sooner.
        for retry in 0..4 {
            if kill_after(&args, Duration::from_millis(150 + full * pct / 100)) {
                killed += 1;
                break;
            }
            if i > 0 || retry == 3 {
                break;
            }
            let _ = std::fs::remove_dir_all(&ck);
            full /= 2;
        }
    }
    let (code, err) = finish(&job("a", &["--workers", "1", "--checkpoint-dir", &p(&ck)]));
    assert_eq!(code, 0, "{err}");
    assert!(
        killed >= 1,
        "only {killed} runs were still running when killed"
    );
    for ext in ["out", "baseline"] {
        let (got, want) = (
            read(&d.join(format!("a.{ext}"))),
            read(&d.join(format!("ref.{ext}"))),
        );
        assert!(
            !want.is_empty() && got == want,
            "--{ext} differs after kills"
        );
    }
}
