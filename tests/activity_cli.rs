//! `keyflow run activity` end to end: its `--out` lines and Parquet rows
//! against a brute-force recomputation on random inputs with disorder, late
//! events and bad lines; the late policies; identical outputs at 1x1, 1x4
//! and 2x2; flags refused before any work.

mod activity_support;
mod trending_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use activity_support::{
    bad_lines, events, expected_rows, expected_windows, files, read_lake, read_lines, split_late,
    write_files, Event, File, Shape, ACTIONS,
};
use serde_json::Value;
use trending_support::{arg, keyflow, RunOutput};

const LIMIT: Duration = Duration::from_secs(120);
const OOO: u64 = 5_000;

/// Random inputs over 2.5 hours: 250 sessions of 40 users in 3 files, a
/// little disorder everywhere and one event in 40 delayed (mostly late).
fn inputs(seed: u64) -> (Vec<Event>, Vec<File>) {
    let shape = Shape {
        sessions: 250,
        users: 40,
        span: 150 * 60_000,
    };
    let all = events(seed, shape);
    let split = files(seed, &all, 3, 3_000, 40);
    (all, split)
}

fn run_activity(extra: &[String]) -> RunOutput {
    let mut args: Vec<String> = ["run", "activity", "--quiet"].map(String::from).to_vec();
    args.extend(extra.iter().cloned());
    keyflow(&args, LIMIT)
}

fn input_args(paths: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["--input".to_string()];
    args.extend(paths.iter().map(|p| arg(p)));
    args
}

/// The line's top-level keys in the order the rules list them.
fn assert_field_order(line: &str) {
    let keys = [
        "\"start\":",
        "\"end\":",
        "\"events\":",
        "\"top_pages\":",
        "\"browsers\":",
        "\"devices\":",
        "\"conversion\":",
    ];
    let at: Vec<usize> = keys
        .iter()
        .map(|k| {
            line.find(k)
                .unwrap_or_else(|| panic!("{k} missing in {line}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "fields out of order: {line}"
    );
    assert!(line.starts_with("{\"start\":"), "{line}");
}

fn first_difference(got: &[Value], want: &[Value]) -> String {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return format!("line {i}:\n got  {g}\n want {w}");
        }
    }
    format!("{} lines, expected {}", got.len(), want.len())
}

#[test]
fn windows_and_features_match_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (all, split) = inputs(11);
    let paths = write_files(dir.path(), &split);
    let (on_time, late) = split_late(&split, OOO);
    assert!(
        late.len() >= 20,
        "the inputs should hold late events: {}",
        late.len()
    );
    let (out, lake) = (dir.path().join("out.jsonl"), dir.path().join("lake"));
    let mut args = input_args(&paths);
    args.extend(
        [
            "--window",
            "7m",
            "--workers",
            "2",
            "--out",
            &arg(&out),
            "--parquet-out",
            &arg(&lake),
        ]
        .map(String::from),
    );
    let run = run_activity(&args);
    run.assert_success("activity");

    let done = run.done();
    assert_eq!(done.bad, bad_lines().len() as u64, "{}", run.stderr);
    assert_eq!(done.events, all.len() as u64);
    assert_eq!(done.late, late.len() as u64);

    let got = read_lines(&out);
    let want = expected_windows(&on_time, 7 * 60_000, 10);
    assert!(
        got == want,
        "--out differs from the rules: {}",
        first_difference(&got, &want)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    text.lines().for_each(assert_field_order);

    // Windows of 7 minutes straddle hours: each row goes to the hour its
    // window starts in.
    let rows = read_lake(&lake);
    assert_eq!(rows, expected_rows(&on_time, 7 * 60_000));
    let hours = activity_support::lake_files(&lake).len();
    assert!(hours >= 3, "{hours} hour files");
}

#[test]
fn minute_windows_all_pages_and_late_events_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, split) = inputs(12);
    let paths = write_files(dir.path(), &split);
    let (on_time, late) = split_late(&split, OOO);
    let (out, late_out) = (dir.path().join("out.jsonl"), dir.path().join("late.jsonl"));
    let mut args = input_args(&paths);
    args.extend(["--top", "0", "--workers", "3", "--out", &arg(&out)].map(String::from));
    args.extend(["--late", "side-output", "--late-out", &arg(&late_out)].map(String::from));
    run_activity(&args).assert_success("activity");

    let got = read_lines(&out);
    let want = expected_windows(&on_time, 60_000, 0);
    assert!(
        got == want,
        "--out differs from the rules: {}",
        first_difference(&got, &want)
    );

    let key = |user: &str, session: &str, ts: u64, action: &str| {
        (
            user.to_string(),
            session.to_string(),
            ts,
            action.to_string(),
        )
    };
    let mut got: Vec<_> = read_lines(&late_out)
        .iter()
        .map(|v| {
            let user = match &v["user_id"] {
                Value::String(s) => s.clone(),
                other => panic!("user_id {other} is not text"),
            };
            key(
                &user,
                v["session_id"].as_str().unwrap(),
                v["ts"].as_u64().unwrap(),
                v["action_type"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<_> = late
        .iter()
        .map(|e| key(&e.user, &e.session, e.ts, ACTIONS[e.action]))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn allowed_lateness_updates_reach_the_rules_over_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (all, split) = inputs(13);
    let paths = write_files(dir.path(), &split);
    let (out, lake) = (dir.path().join("out.jsonl"), dir.path().join("lake"));
    let mut args = input_args(&paths);
    args.extend(
        [
            "--window",
            "5m",
            "--workers",
            "2",
            "--out",
            &arg(&out),
            "--parquet-out",
            &arg(&lake),
        ]
        .map(String::from),
    );
    // Delays are at most 90 s, so every late event is within 10 minutes.
    args.extend(["--late", "allowed-lateness", "10m"].map(String::from));
    run_activity(&args).assert_success("activity");

    // Each update replaces the window's earlier line.
    let lines = read_lines(&out);
    let updates = lines
        .iter()
        .filter(|v| v["update"] == Value::Bool(true))
        .count();
    assert!(updates > 0, "late events should have updated some windows");
    let mut last: BTreeMap<u64, Value> = BTreeMap::new();
    for mut v in lines {
        let start = v["start"].as_u64().unwrap();
        let is_update = v.as_object_mut().unwrap().remove("update").is_some();
        assert_eq!(is_update, last.contains_key(&start), "window {start}");
        last.insert(start, v);
    }
    let got: Vec<Value> = last.into_values().collect();
    let want = expected_windows(&all, 5 * 60_000, 10);
    assert!(
        got == want,
        "final windows differ: {}",
        first_difference(&got, &want)
    );
    // The Parquet files are written once their hours can no longer change.
    assert_eq!(read_lake(&lake), expected_rows(&all, 5 * 60_000));
}

#[test]
fn bad_input_fail_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, split) = inputs(14);
    let paths = write_files(dir.path(), &split);
    let out = dir.path().join("out.jsonl");
    let mut args = input_args(&paths);
    args.extend(["--bad-input", "fail", "--out", &arg(&out)].map(String::from));
    let run = run_activity(&args);
    assert_ne!(run.code, Some(0));
    let first_bad = split[0].lines.iter().position(|l| l.is_err()).unwrap() + 1;
    let at = format!("events-0.jsonl:{first_bad}");
    assert!(
        run.stderr.contains(&at),
        "stderr should name {at}:\n{}",
        run.stderr
    );
    assert!(
        !out.exists(),
        "a failed run leaves no output that looks complete"
    );
}

#[test]
fn flags_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (_, split) = inputs(15);
    let paths = write_files(dir.path(), &split);
    let input = arg(&paths[0]);
    let full = dir.path().join("full");
    std::fs::create_dir_all(full.join("date=2024-01-01")).unwrap();
    let file = arg(&paths[1]);
    let full = arg(&full);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--input", &input, "--users", "5"],
            "--users 5 is a generator flag",
        ),
        (
            vec!["--window", "500ms"],
            "--window 500ms is outside 1s..7days",
        ),
        (vec!["--window", "8days"], "--window 8days is outside"),
        (vec!["--window", "soon"], "--window"),
        (vec!["--late-out", "x.jsonl"], "needs `--late side-output`"),
        (vec!["--late", "side-output"], "needs --late-out"),
        (
            vec!["--late", "allowed-lateness", "8days"],
            "longer than 7days",
        ),
        (vec!["--parquet-out", &full], "is not empty"),
        (vec!["--parquet-out", &file], "is not a directory"),
        (
            vec!["--parquet-out", "lake", "--out", "lake/w.jsonl"],
            "is inside --parquet-out",
        ),
        (
            vec!["--input", &input, "--out", &input],
            "a run never overwrites what it reads",
        ),
        (vec!["--users", "0"], "users 0"),
        (vec!["--rate", "0"], "rate 0"),
        (
            vec!["--input", "/no/such/file.jsonl"],
            "/no/such/file.jsonl",
        ),
    ];
    for (extra, message) in cases {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let run = run_activity(&args);
        assert_eq!(run.code, Some(2), "{extra:?} should fail:\n{}", run.stderr);
        assert!(
            run.stderr.contains(message),
            "{extra:?}: expected `{message}` in:\n{}",
            run.stderr
        );
    }
    assert!(!Path::new("x.jsonl").exists() && !Path::new("lake").exists());
}

/// `run activity ARGS` on `processes x workers`, through `keyflow cluster`
/// when there are several processes; returns `--out` and every Parquet
/// file, with its path, as bytes.
fn outputs_at((processes, workers): (usize, usize), extra: &[String], dir: &Path) -> Vec<u8> {
    let tag = format!("{processes}x{workers}");
    let (out, lake) = (
        dir.join(format!("out-{tag}.jsonl")),
        dir.join(format!("lake-{tag}")),
    );
    let mut args: Vec<String> = if processes > 1 {
        let (p, w) = (processes.to_string(), workers.to_string());
        [
            "cluster",
            "--processes",
            &p,
            "--workers",
            &w,
            "--",
            "run",
            "activity",
        ]
        .map(String::from)
        .to_vec()
    } else {
        ["run", "activity", "--workers", &workers.to_string()]
            .map(String::from)
            .to_vec()
    };
    args.extend(["--quiet", "--out", &arg(&out), "--parquet-out", &arg(&lake)].map(String::from));
    args.extend(extra.iter().cloned());
    let run = keyflow(&args, LIMIT);
    run.assert_success(&tag);
    let mut bytes = std::fs::read(&out).unwrap();
    for file in activity_support::lake_files(&lake) {
        bytes.extend(
            file.strip_prefix(&lake)
                .unwrap()
                .to_str()
                .unwrap()
                .as_bytes(),
        );
        bytes.extend(std::fs::read(&file).unwrap());
    }
    bytes
}

#[test]
fn identical_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (_, split) = inputs(16);
    let paths = write_files(dir.path(), &split);
    let mut from_files = input_args(&paths);
    from_files.extend(["--window", "7m"].map(String::from));
    let mut updated = input_args(&paths);
    updated.extend(["--window", "5m", "--late", "allowed-lateness", "10m"].map(String::from));
    let generated: Vec<String> = ["--duration", "4m", "--rate", "300", "--users", "500"]
        .map(String::from)
        .to_vec();
    let runs = [
        ("files", from_files),
        ("updates", updated),
        ("generator", generated),
    ];
    for (name, extra) in runs {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let reference = outputs_at((1, 1), &extra, &sub);
        assert!(
            reference.len() > 5_000,
            "{name}: the run produced almost nothing"
        );
        for layout in [(1, 4), (2, 2)] {
            let other = outputs_at(layout, &extra, &sub);
            assert!(other == reference, "{name}: {layout:?} differs from 1x1");
        }
    }
}

#[test]
fn generator_output_matches_the_rules() {
    use keyflow::jobs::activity::{ActivityGenerator, ActivityGeneratorConfig};
    let config = ActivityGeneratorConfig {
        users: 300,
        rate: 200,
        duration_ms: 5 * 60_000,
        ..ActivityGeneratorConfig::default()
    };
    let generator = ActivityGenerator::new(config).unwrap();
    let all: Vec<Event> = (0..generator.total_events())
        .map(|i| {
            let (ts, e) = generator.event(i);
            Event {
                id: i,
                user: e.user.to_string(),
                session: e.session.to_string(),
                page: e.page.to_string(),
                ts,
                action: e.action.index(),
                browser: e.browser.to_string(),
                device: e.device.to_string(),
                click: e.click.map(|(x, y)| (x.0, y.0)),
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (out, lake) = (dir.path().join("out.jsonl"), dir.path().join("lake"));
    let args = [
        "--users",
        "300",
        "--rate",
        "200",
        "--duration",
        "5m",
        "--workers",
        "2",
    ];
    let mut args: Vec<String> = args.map(String::from).to_vec();
    args.extend([
        "--out".into(),
        arg(&out),
        "--parquet-out".into(),
        arg(&lake),
    ]);
    let run = run_activity(&args);
    run.assert_success("activity");
    assert_eq!(run.done().events, all.len() as u64);
    let got = read_lines(&out);
    let want = expected_windows(&all, 60_000, 10);
    assert_eq!(got.len(), 5);
    assert!(
        got == want,
        "--out differs from the rules: {}",
        first_difference(&got, &want)
    );
    assert_eq!(read_lake(&lake), expected_rows(&all, 60_000));
}
