//! `keyflow baseline` and `keyflow run anomaly` on the real 2016 sample, as
//! a user runs them, checked against a direct computation from the raw
//! files; and `keyflow run pageviews` producing both outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

type Counts = BTreeMap<(String, String), [f64; 24]>;

fn day_files(day: u32) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/pagecounts-2016-08");
    assert!(dir.exists(), "test data {} is missing", dir.display());
    (0..24)
        .map(|h| {
            dir.join(format!("pagecounts-201608{day:02}-{h:02}0000.gz"))
                .display()
                .to_string()
        })
        .collect()
}

/// Hourly views per article of one day, read straight from the files.
fn raw_day(day: u32) -> Counts {
    let mut counts = Counts::new();
    for (hour, file) in day_files(day).iter().enumerate() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let views: f64 = f[3].parse().unwrap();
            counts
                .entry((f[1].to_string(), f[2].to_string()))
                .or_insert([0.0; 24])[hour] += views;
        }
    }
    counts
}

fn keyflow(args: &[&str]) {
    let out = Command::new(KEYFLOW).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "keyflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn expected(
    history: &Counts,
    today: &Counts,
    hour: usize,
    bray: bool,
) -> Vec<(String, String, f64)> {
    let keys: BTreeSet<_> = history.keys().chain(today.keys()).collect();
    let mut scored = Vec::new();
    for key in keys {
        let a = history.get(key).copied().unwrap_or([0.0; 24]);
        let c = today.get(key).copied().unwrap_or([0.0; 24]);
        let volume: f64 = (0..=hour).map(|j| c[j] + a[j]).sum();
        if volume < 10.0 {
            continue;
        }
        let score = if bray {
            (0..=hour).map(|j| (c[j] - a[j]).abs()).sum::<f64>() / volume
        } else {
            (0..=hour)
                .map(|j| {
                    if c[j] + a[j] == 0.0 {
                        0.0
                    } else {
                        (c[j] - a[j]).abs() / (c[j] + a[j])
                    }
                })
                .sum()
        };
        scored.push((key.0.clone(), key.1.clone(), score));
    }
    scored.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
    scored.truncate(5);
    scored
}

fn check(out: &Path, history: &Counts, today: &Counts, bray: bool) {
    let text = std::fs::read_to_string(out).unwrap();
    let hours: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hours.len(), 24);
    for (h, line) in hours.iter().enumerate() {
        assert_eq!(line["day"], "2016-08-02");
        assert_eq!(line["hour"], h);
        let want = expected(history, today, h, bray);
        let got = line["top"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "hour {h}");
        for (rank, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g["rank"], rank + 1);
            assert_eq!(
                (g["project"].as_str().unwrap(), g["title"].as_str().unwrap()),
                (w.0.as_str(), w.1.as_str()),
                "hour {h}"
            );
            assert!(
                (g["score"].as_f64().unwrap() - w.2).abs() < 1e-9,
                "hour {h}: {g} vs {}",
                w.2
            );
        }
    }
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn day_two_is_scored_against_day_one_and_folded_into_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (day1, day2) = (raw_day(1), raw_day(2));
    let base = path(dir.path(), "base.txt");
    let base_s = base.display().to_string();
    let mut args = vec!["baseline", "--input"];
    let files1 = day_files(1);
    args.extend(files1.iter().map(String::as_str));
    args.extend(["--out", &base_s]);
    keyflow(&args);

    let files2 = day_files(2);
    for (metric, bray) in [("canberra", false), ("bray-curtis", true)] {
        let out = path(dir.path(), &format!("{metric}.jsonl"));
        let updated = path(dir.path(), &format!("{metric}-base.txt"));
        let (out_s, updated_s) = (out.display().to_string(), updated.display().to_string());
        let mut args = vec![
            "run",
            "anomaly",
            "--baseline",
            &base_s,
            "--input-format",
            "dump",
        ];
        args.extend([
            "--top",
            "5",
            "--min-volume",
            "10",
            "--metric",
            metric,
            "--quiet",
        ]);
        args.extend([
            "--out",
            &out_s,
            "--baseline-out",
            &updated_s,
            "--workers",
            "2",
            "--input",
        ]);
        args.extend(files2.iter().map(String::as_str));
        keyflow(&args);
        check(&out, &day1, &day2, bray);

        // The daily update makes the baseline of both days.
        let both = path(dir.path(), "both.txt");
        let both_s = both.display().to_string();
        let mut args = vec!["baseline", "--out", &both_s, "--input"];
        args.extend(files1.iter().chain(&files2).map(String::as_str));
        keyflow(&args);
        assert_eq!(
            std::fs::read_to_string(&updated).unwrap(),
            std::fs::read_to_string(&both).unwrap()
        );
    }
}

#[test]
fn pageviews_runs_trending_and_anomaly_in_one_dataflow() {
    let dir = tempfile::tempdir().unwrap();
    let base = path(dir.path(), "base.txt").display().to_string();
    let mut args = vec!["baseline", "--out", &base, "--input"];
    let files1 = day_files(1);
    args.extend(files1.iter().map(String::as_str));
    keyflow(&args);
    let (t, a) = (path(dir.path(), "t.jsonl"), path(dir.path(), "a.jsonl"));
    let (t_s, a_s) = (t.display().to_string(), a.display().to_string());
    let files2 = day_files(2);
    let mut args = vec![
        "run",
        "pageviews",
        "--baseline",
        &base,
        "--input-format",
        "dump",
        "--quiet",
    ];
    args.extend([
        "--min-volume",
        "10",
        "--trending-out",
        &t_s,
        "--anomaly-out",
        &a_s,
        "--input",
    ]);
    args.extend(files2.iter().map(String::as_str));
    keyflow(&args);
    let minutes = std::fs::read_to_string(&t).unwrap().lines().count();
    let hours = std::fs::read_to_string(&a).unwrap().lines().count();
    assert_eq!(hours, 24);
    assert!(minutes >= 24 * 60, "{minutes} minutes");
    check(&a, &raw_day(1), &raw_day(2), false);
}

#[test]
fn a_damaged_baseline_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = path(dir.path(), "base.txt");
    std::fs::write(&base, "keyflow-baseline 1\ndays 1\n").unwrap();
    let base_s = base.display().to_string();
    let out = Command::new(KEYFLOW)
        .args(["run", "anomaly", "--baseline", &base_s, "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&base_s), "{stderr}");
}

fn keyflow_output(args: &[&str]) -> std::process::Output {
    Command::new(KEYFLOW).args(args).output().unwrap()
}

/// `keyflow baseline` of day 1 into `dir/base.txt`.
fn day_one_baseline(dir: &Path) -> String {
    let base = path(dir, "base.txt").display().to_string();
    let mut args = vec!["baseline", "--out", &base, "--input"];
    let files1 = day_files(1);
    args.extend(files1.iter().map(String::as_str));
    keyflow(&args);
    base
}

#[test]
fn baselines_go_to_devices_and_fifos() {
    let files1 = day_files(1);
    let mut args = vec!["baseline", "--out", "/dev/stdout", "--input"];
    args.extend(files1.iter().map(String::as_str));
    let out = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("keyflow-baseline 1\n"), "{text:.200}");
    assert!(text.contains("\nend "), "the whole baseline: {text:.200}");

    let dir = tempfile::tempdir().unwrap();
    let fifo = path(dir.path(), "fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let fifo_s = fifo.display().to_string();
    args[2] = &fifo_s;
    let out = keyflow_output(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reader.join().unwrap(), text);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file beside the FIFO");

    // The daily update, to a device.
    let base = day_one_baseline(dir.path());
    let files2 = day_files(2);
    let mut args = vec!["run", "anomaly", "--baseline", &base, "--quiet"];
    args.extend(["--input-format", "dump", "--baseline-out", "/dev/null"]);
    args.push("--input");
    args.extend(files2.iter().map(String::as_str));
    let out = keyflow_output(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn folding_a_day_the_baseline_has_is_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let base = day_one_baseline(dir.path());
    let (out, updated) = (path(dir.path(), "out.jsonl"), path(dir.path(), "b2.txt"));
    let (out_s, updated_s) = (out.display().to_string(), updated.display().to_string());
    let files1 = day_files(1);
    let mut args = vec!["run", "anomaly", "--baseline", &base, "--quiet"];
    args.extend(["--input-format", "dump", "--out", &out_s]);
    args.extend(["--baseline-out", &updated_s, "--input"]);
    args.extend(files1.iter().map(String::as_str));
    let run = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("2016-08-01") && stderr.contains("--refold-days"),
        "{stderr}"
    );
    assert!(!out.exists() && !updated.exists(), "nothing is written");

    // The flag folds it in as one more day.
    args.insert(4, "--refold-days");
    let run = keyflow_output(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&updated).unwrap();
    assert!(text.contains("\ndays 2\n"), "{text:.200}");
}

#[test]
fn folding_a_day_the_baseline_has_is_refused_at_the_day_end_without_file_names() {
    // JSON lines carry no day in their names: the job checks at the day end.
    let dir = tempfile::tempdir().unwrap();
    let base = day_one_baseline(dir.path());
    let input = path(dir.path(), "views.jsonl");
    let lines: String = (0..24u64)
        .map(|h| {
            format!(
                "{{\"project\":\"en\",\"title\":\"Simon\",\"ts\":{},\"views\":5}}\n",
                1_470_009_600_000 + h * 3_600_000
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let updated = path(dir.path(), "b2.txt");
    let (input_s, updated_s) = (input.display().to_string(), updated.display().to_string());
    let args = [
        "run",
        "anomaly",
        "--baseline",
        &base,
        "--quiet",
        "--input",
        &input_s,
        "--baseline-out",
        &updated_s,
    ];
    let run = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("day 2016-08-01 is the baseline's last day")
            && stderr.contains("--refold-days"),
        "{stderr}"
    );
    assert!(!updated.exists(), "no baseline is written");
}

#[test]
fn an_input_that_ends_mid_day_says_nothing_was_folded() {
    let dir = tempfile::tempdir().unwrap();
    let base = day_one_baseline(dir.path());
    let updated = path(dir.path(), "b2.txt");
    let updated_s = updated.display().to_string();
    let files2 = day_files(2);
    let mut args = vec!["run", "anomaly", "--baseline", &base, "--quiet"];
    args.extend(["--input-format", "dump", "--baseline-out", &updated_s]);
    args.push("--input");
    args.extend(files2[..12].iter().map(String::as_str));
    let run = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("mid-day") && stderr.contains("not folded"),
        "{stderr}"
    );
    assert!(!updated.exists());
}

/// A JSON-lines line whose time lies past the year 9999 (microseconds
/// taken for milliseconds) is a counted bad line: the baseline of the
/// others is written, and `run anomaly` reads it back.
#[test]
fn a_baseline_skips_times_past_the_end_of_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = path(dir.path(), "views.jsonl");
    let mut lines = String::new();
    for hour in 0..48u64 {
        let ts = 1_470_009_600_000 + hour * 3_600_000;
        lines.push_str(&format!(
            "{{\"project\":\"en\",\"title\":\"A\",\"ts\":{ts},\"views\":2}}\n"
        ));
    }
    lines.push_str("{\"project\":\"en\",\"title\":\"A\",\"ts\":1470009600000000,\"views\":2}\n");
    std::fs::write(&input, &lines).unwrap();
    let base = path(dir.path(), "base.txt").display().to_string();
    let input_s = input.display().to_string();
    let out = keyflow_output(&[
        "baseline",
        "--input-format",
        "jsonl",
        "--out",
        &base,
        "--input",
        &input_s,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("end of event time"), "{stderr}");
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(
        text.contains("\ndays 2\nfirst-day 2016-08-01\nlast-day 2016-08-02\n"),
        "{text:.300}"
    );
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        lines,
        "input kept"
    );

    // The baseline reads back, to score a later day.
    let later = path(dir.path(), "later.jsonl");
    std::fs::write(
        &later,
        "{\"project\":\"en\",\"title\":\"A\",\"ts\":1470182400000,\"views\":2}\n",
    )
    .unwrap();
    let input_s = later.display().to_string();
    let scores = path(dir.path(), "scores").display().to_string();
    let out = keyflow_output(&[
        "run",
        "anomaly",
        "--baseline",
        &base,
        "--input-format",
        "jsonl",
        "--input",
        &input_s,
        "--out",
        &scores,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A baseline run whose every line is malformed fails and leaves an
/// earlier baseline at `--out` as it was; a directory at `--out` is
/// refused before any line is read.
#[test]
fn a_baseline_of_only_bad_lines_keeps_the_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = day_one_baseline(dir.path());
    let before = std::fs::read(&base).unwrap();
    let bad = path(dir.path(), "pagecounts-20160802-000000");
    std::fs::write(&bad, "20160802-000099 en Simon 60 100\n").unwrap();
    let bad_s = bad.display().to_string();
    let out = keyflow_output(&["baseline", "--out", &base, "--input", &bad_s]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("malformed"), "{stderr}");
    assert!(!stderr.contains("written to"), "{stderr}");
    assert_eq!(
        std::fs::read(&base).unwrap(),
        before,
        "the earlier baseline stays"
    );

    let a_dir = dir.path().display().to_string();
    let files1 = day_files(1);
    let mut args = vec!["baseline", "--out", &a_dir, "--input"];
    args.extend(files1.iter().map(String::as_str));
    let out = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(stderr.contains(&a_dir), "{stderr}");
}

/// A dump file whose name puts it two years after the others would have
/// every hour in between scored; the run fails instead, naming the gap.
#[test]
fn a_gap_of_over_a_year_without_views_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = day_one_baseline(dir.path());
    let files2 = day_files(2);
    let stale = path(dir.path(), "pagecounts-20180802-010000.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&files2[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let text = text.replace("20160802-000000 ", "20180802-010000 ");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&stale).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    gz.finish().unwrap();
    let stale_s = stale.display().to_string();
    let mut args = vec!["run", "anomaly", "--baseline", &base, "--quiet"];
    args.extend(["--input-format", "dump", "--input", &files2[0], &stale_s]);
    let start = std::time::Instant::now();
    let run = keyflow_output(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("no views anywhere for 730 days, from 2016-08-02 to 2018-08-02"),
        "{stderr}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}
