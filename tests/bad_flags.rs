//! Flags that contradict each other, would exhaust memory, or do nothing in
//! the combination given are refused up front, naming the value as typed.

mod trending_support;

use std::path::Path;
use std::time::Duration;

use trending_support::*;

const FAST: Duration = Duration::from_secs(60);

/// 2016-08-01T00:00:00Z.
const BASE: u64 = 1_470_009_600_000;

fn views_jsonl(dir: &Path) -> String {
    let path = dir.join("views.jsonl");
    let lines: String = (0..20)
        .map(|i| Event::new("en", "A", BASE + i * MINUTE, 1).json_line(false) + "\n")
        .collect();
    std::fs::write(&path, lines).unwrap();
    arg(&path)
}

#[test]
fn contradicting_exploding_and_idle_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = views_jsonl(dir.path());
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1:2101\n").unwrap();
    let hosts = arg(&hosts);
    let late = arg(&dir.path().join("late.jsonl"));
    // Each case: flags, and what the message must name. The generator would
    // run for minutes at this rate if a case got past the checks.
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--max-out-of-orderness", "8days"],
            vec!["--max-out-of-orderness 8days", "--max-future 7days"],
        ),
        (
            vec!["--max-out-of-orderness", "1h", "--max-future", "60m"],
            vec!["1h", "60m"],
        ),
        (
            vec!["--window", "365days"],
            vec!["--window 365days", "7days"],
        ),
        (
            vec!["--window", "7days", "--slide", "30s"],
            vec!["--window 7days", "--slide 30s", "10000"],
        ),
        (
            vec!["--window", "100ms", "--slide", "10ms"],
            vec!["--slide 10ms", "1s"],
        ),
        (
            vec!["--late", "allowed-lateness", "30days"],
            vec!["30days", "7days"],
        ),
        (vec!["--late", "side-output"], vec!["--late-out"]),
        (vec!["--late-out", &late], vec![&late, "--late side-output"]),
        (vec!["--hostfile", &hosts], vec![&hosts, "--processes 1"]),
        (
            vec!["--dump-time", "end"],
            vec!["--dump-time end", "--input"],
        ),
        (vec!["--input-format", "dump"], vec!["--input-format dump"]),
        (vec!["--input", &input, "--rate", "5"], vec!["--rate 5"]),
        (vec!["--input", &input, "--seed", "7"], vec!["--seed 7"]),
        (
            vec!["--input", &input, "--articles", "9"],
            vec!["--articles 9"],
        ),
        (
            vec!["--input", &input, "--duration", "2hours"],
            vec!["--duration 2hours"],
        ),
        (vec!["--input", &input, "--realtime"], vec!["--realtime"]),
        (
            vec!["--input", &input, "--dump-time", "end"],
            vec!["--dump-time end", "JSON"],
        ),
        (
            vec!["--checkpoint-dir", &input],
            vec![&input, "is a file, not a directory"],
        ),
        (
            vec!["--window", "10m 999us"],
            vec!["10m 999us", "whole number of milliseconds"],
        ),
        (
            vec!["--articles", "5"],
            vec!["articles 5", "--articles", "20"],
        ),
    ];
    for (flags, names) in cases {
        let mut args = trending_args(&flags);
        if !flags.contains(&"--input") {
            args.extend(["--rate".to_string(), "1000000".to_string()]);
        }
        args.push("--quiet".into());
        let run = keyflow(&args, FAST);
        assert_eq!(
            run.code,
            Some(2),
            "{flags:?} must be refused:\n{}",
            run.stderr
        );
        for name in names {
            assert!(
                run.stderr.contains(name),
                "{flags:?}: the message names {name}:\n{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(run.elapsed < Duration::from_secs(30), "{flags:?} was slow");
    }
}

#[test]
fn the_limits_are_in_help() {
    let run = keyflow(["run", "trending", "--help"], FAST);
    run.assert_success("--help");
    for text in ["at most 7 days", "10000", "at least 1s", "not with --input"] {
        assert!(
            run.stdout.contains(text),
            "--help names {text}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn flags_within_the_limits_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = views_jsonl(dir.path());
    let out = dir.path().join("out.jsonl");
    let run = keyflow(
        trending_args(&[
            "--input",
            &input,
            "--input-format",
            "jsonl",
            "--window",
            "7days",
            "--slide",
            "1h",
            "--max-out-of-orderness",
            "1h",
            "--max-future",
            "2h",
            "--late",
            "allowed-lateness",
            "7days",
            "--out",
            &arg(&out),
            "--quiet",
        ]),
        Duration::from_secs(120),
    );
    run.assert_success("limits");
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    // One process from `keyflow cluster` takes no host file.
    let run = keyflow(
        [
            "cluster",
            "--processes",
            "1",
            "--workers",
            "2",
            "--",
            "run",
            "trending",
            "--input",
            &input,
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    run.assert_success("cluster of one process");
}

/// `keyflow cluster` starts at most so many processes on one machine.
#[test]
fn a_local_cluster_of_too_many_processes_is_refused() {
    let run = keyflow(
        ["cluster", "--processes", "100000", "--", "run", "trending"],
        FAST,
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("--processes 100000") && run.stderr.contains("256"),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}
