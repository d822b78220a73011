//! `keyflow run behaviour` from the command line: the same bytes at every
//! layout, the generator, flags checked before any work, bad input, and a
//! run killed and resumed from its checkpoints.

mod behaviour_support;
mod checkpoint_support;
mod trending_support;

use std::path::Path;
use std::time::Duration;

use behaviour_support::*;
use checkpoint_support::{finish, has_complete_epoch, kill_after};
use trending_support::{arg, keyflow};

/// Generator flags for a run of `minutes` of event time with alerts.
fn generator_args(dir: &Path, name: &str, seed: u64, minutes: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "behaviour",
        "--quiet",
        "--users",
        "1000",
        "--alert-window",
        "5m",
        "--alert-min",
        "5",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--seed".into(),
        seed.to_string(),
        "--duration".into(),
        format!("{minutes}m"),
    ]);
    for (flag, file) in [("--out", "out"), ("--alerts-out", "alerts")] {
        args.push(flag.into());
        args.push(arg(&dir.join(format!("{name}.{file}.jsonl"))));
    }
    args
}

fn outputs(dir: &Path, name: &str) -> (String, String) {
    let read = |file| std::fs::read_to_string(dir.join(format!("{name}.{file}.jsonl"))).unwrap();
    (read("out"), read("alerts"))
}

#[test]
fn identical_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = generator_args(dir.path(), "1x1", 7, 20);
    let stats = dir.path().join("stats.jsonl");
    args.extend(["--stats-out".into(), arg(&stats)]);
    keyflow(&args, Duration::from_secs(120)).assert_success("1x1");
    let want = outputs(dir.path(), "1x1");
    assert!(want.0.lines().count() > 100, "{}", want.0.lines().count());
    assert!(!want.1.is_empty(), "no alert in the reference run");
    let stats = read_lines(&stats);
    assert_eq!(stats.len(), want.0.lines().count());
    assert!(stats
        .iter()
        .all(|s| s["coverage"] == 1.0 && s["dropped"] == 0));

    let mut four = generator_args(dir.path(), "1x4", 7, 20);
    four.extend(["--workers".into(), "4".into()]);
    keyflow(&four, Duration::from_secs(120)).assert_success("1x4");
    assert_eq!(outputs(dir.path(), "1x4"), want, "1x4 differs from 1x1");

    let mut cluster: Vec<String> = ["cluster", "--processes", "2", "--workers", "2", "--"]
        .map(String::from)
        .to_vec();
    cluster.extend(generator_args(dir.path(), "2x2", 7, 20));
    keyflow(&cluster, Duration::from_secs(180)).assert_success("2x2");
    assert_eq!(outputs(dir.path(), "2x2"), want, "2x2 differs from 1x1");
}

#[test]
fn the_generator_is_seeded_and_its_reports_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: u64| {
        let mut args = generator_args(dir.path(), name, seed, 20);
        args.extend(["--workers".into(), "2".into()]);
        keyflow(&args, Duration::from_secs(120)).assert_success(name);
        outputs(dir.path(), name)
    };
    let a = run("a", 3);
    assert_eq!(a, run("b", 3), "the same seed gave other reports");
    assert_ne!(a.0, run("c", 4).0, "another seed gave the same reports");

    // Populations are the changes added up, boundaries are consecutive,
    // and everyone has left by the last one.
    let lines: Vec<serde_json::Value> =
        a.0.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut pop = [0i64; 4];
    let mut landed_from_none = 0;
    let mut bounced = 0;
    let mut buying = 0;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            assert_eq!(
                line["t"].as_u64().unwrap(),
                lines[i - 1]["t"].as_u64().unwrap() + 10_000
            );
        }
        for f in line["flows"].as_array().unwrap() {
            let n = f["n"].as_i64().unwrap();
            let (from, to) = (f["from"].as_str().unwrap(), f["to"].as_str().unwrap());
            if let Some(i) = COUNTED.iter().position(|s| *s == from) {
                pop[i] -= n;
            }
            if let Some(i) = COUNTED.iter().position(|s| *s == to) {
                pop[i] += n;
            }
            landed_from_none += if (from, to) == ("none", "landed") {
                n
            } else {
                0
            };
            bounced += if to == "bounced" { n } else { 0 };
            buying += if to == "buying" { n } else { 0 };
        }
        let p = &line["populations"];
        let got = COUNTED.map(|s| p[s].as_i64().unwrap());
        assert_eq!(got, pop, "line {i}");
    }
    assert_eq!(pop, [0; 4]);
    assert_eq!(landed_from_none, 1000, "every user arrives once at first");
    assert!(
        bounced > 0 && buying > 0,
        "bounced {bounced}, buying {buying}"
    );
}

#[test]
fn bad_flags_fail_before_any_work_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cases: &[(&[&str], &str)] = &[
        (&["--resolution", "0s"], "--resolution 0s"),
        (&["--alert-window", "25s"], "--alert-window 25s"),
        (&["--bounce-timeout", "0ms"], "--bounce-timeout 0ms"),
        (&["--users", "10"], "--users 10"),
        (&["--alert-rise", "lots"], "lots"),
        (&["--late", "side-output"], "--late-out"),
        (&["--late", "allowed-lateness", "30days"], "30days"),
        (&["--landing", ""], "--landing"),
        (&["--rate", "0"], "--rate 0"),
    ];
    for (flags, needle) in cases {
        let mut args = vec![
            "run".to_string(),
            "behaviour".into(),
            "--out".into(),
            arg(&out),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let run = keyflow(&args, Duration::from_secs(30));
        assert_eq!(run.code, Some(2), "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{flags:?}: {}", run.stderr);
        assert!(!out.exists(), "{flags:?} wrote output");
    }
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let args = [
        "run",
        "behaviour",
        "--input",
        &arg(&input),
        "--users",
        "2000",
    ];
    let run = keyflow(args, Duration::from_secs(30));
    assert!(
        run.stderr.contains("--users 2000 is a generator flag"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_lines_are_counted_or_fail_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_params();
    let mut events = random_events(11, 20, 1_700_000_000_000, &p);
    events.sort_by_key(|e| e.ts);
    let mut text: String = events.iter().map(|e| e.json() + "\n").collect();
    text.insert_str(
        0,
        "{\"user\":\"x\",\"ts\":5,\"from\":\"/\",\"op\":\"jump\",\"to\":\"/\"}\nnot json\n",
    );
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out.jsonl");
    let mut args: Vec<String> = ["run", "behaviour", "--quiet"].map(String::from).to_vec();
    args.extend(p.flags());
    args.extend(["--input".into(), arg(&input), "--out".into(), arg(&out)]);
    let run = keyflow(&args, Duration::from_secs(60));
    run.assert_success("drop");
    assert_eq!(run.done().bad, 2);
    assert_lines_eq("--out", &read_lines(&out), &expected(&events, &p).0);

    args.extend(["--bad-input".into(), "fail".into()]);
    let run = keyflow(&args, Duration::from_secs(60));
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("in.jsonl:1"), "{}", run.stderr);
}

#[test]
fn jobs_and_explain_list_the_cascade() {
    let jobs = keyflow(["jobs"], Duration::from_secs(30));
    assert!(jobs.stdout.contains("behaviour"), "{}", jobs.stdout);
    let explain = keyflow(["explain", "behaviour"], Duration::from_secs(30));
    explain.assert_success("explain");
    for part in [
        "KeyedProcess(behaviour-users)",
        "PreAggregate(behaviour-tally)",
        "Window(behaviour-tally)",
        "Series(behaviour-series)",
        "mapper",
        "rereducer",
    ] {
        assert!(explain.stdout.contains(part), "{part}: {}", explain.stdout);
    }
}

#[test]
fn killed_and_resumed_at_another_worker_count_writes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    // Paced, so that a run lasts a few seconds and can be killed inside.
    let paced = |name: &str, extra: &[&str]| {
        let mut args = generator_args(dir.path(), name, 7, 40);
        args.extend(["--rate", "25000"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let (code, err) = finish(&paced("ref", &[]));
    assert_eq!(code, 0, "{err}");
    let want = outputs(dir.path(), "ref");
    let ck = dir.path().join("ckpt");
    let ck_flags = ["--checkpoint-dir", &arg(&ck), "--checkpoint-every", "2m"];
    let mut first = ck_flags.to_vec();
    first.extend(["--workers", "2"]);
    let mut resumed = false;
    for delay in [1_000, 1_500, 2_200, 3_000, 4_000] {
        let killed = kill_after(&paced("k", &first), Duration::from_millis(delay));
        assert!(killed, "the run ended within {delay} ms: nothing to resume");
        if has_complete_epoch(&ck) {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "no checkpoint was completed to restore from");
    let mut then = ck_flags.to_vec();
    then.extend(["--workers", "3"]);
    let (code, err) = finish(&paced("k", &then));
    assert_eq!(code, 0, "{err}");
    assert_eq!(outputs(dir.path(), "k"), want, "the resumed run differs");
}
