//! A small run of the benchmark command, so that it cannot rot. It checks
//! that the job and the reference loop agree; it asserts no speed.

use std::process::Command;

/// Runs `keyflow bench ARGS` and returns the JSON it prints.
fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keyflow"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_trending_runs_and_agrees_with_its_reference() {
    let report = bench(&[
        "trending",
        "--articles",
        "2000",
        "--events",
        "60000",
        "--workers",
        "2",
    ]);
    assert_eq!(report["results_match_reference"], true, "{report}");
    assert_eq!(report["events"], 60_000, "{report}");
    assert!(report["job"]["minutes"].as_u64().unwrap() > 60, "{report}");
    for field in ["events_per_s", "peak_rss_bytes", "seconds"] {
        assert!(
            report["job"][field].as_f64().unwrap() > 0.0,
            "{field}: {report}"
        );
        assert!(
            report["reference"][field].as_f64().unwrap() > 0.0,
            "{field}: {report}"
        );
    }
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
    assert!(report["state_bytes_per_active_article"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_sliding_writes_what_its_reference_writes() {
    let report = bench(&[
        "sliding",
        "--events",
        "50000",
        "--keys",
        "3000",
        "--minutes",
        "30",
        "--workers",
        "2",
    ]);
    assert_eq!(report["results_match_reference"], true, "{report}");
    assert_eq!(report["events"], 50_000, "{report}");
    // 39 windows of 10 minutes slide over 30 minutes of events.
    assert!(report["results"].as_u64().unwrap() > 39 * 100, "{report}");
    assert!(report["ratio"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn bench_sliding_runs_a_curve_as_processes_into_part_files() {
    let report = bench(&[
        "sliding",
        "--events",
        "40000",
        "--keys",
        "2000",
        "--minutes",
        "30",
        "--workers",
        "1,2",
        "--processes",
        "2",
        "--rounds",
        "2",
        "--partitioned",
    ]);
    // Every run was checked against the reference, or the bench failed.
    assert_eq!(report["results_match_reference"], true, "{report}");
    assert_eq!(report["sink"], "sink_partitioned", "{report}");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    for (run, workers) in runs.iter().zip([1, 2]) {
        assert_eq!(run["workers"], workers, "{report}");
        assert_eq!(run["processes"], 2, "{report}");
        assert_eq!(run["seconds"].as_array().unwrap().len(), 2, "{report}");
        assert!(run["peak_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    }
}

#[test]
fn bench_sliding_orders_times_cut_across_processes() {
    // 2 processes of 2 workers, each worker with thousands of results a
    // minute: the ordered sink cuts them into ranges across processes.
    let report = bench(&[
        "sliding",
        "--events",
        "200000",
        "--keys",
        "20000",
        "--minutes",
        "30",
        "--workers",
        "2",
        "--processes",
        "2",
    ]);
    assert_eq!(report["results_match_reference"], true, "{report}");
    assert_eq!(report["sink"], "sink", "{report}");
    // Over 4 workers and 39 windows, well past 1,024 results a worker.
    assert!(
        report["results"].as_u64().unwrap() > 39 * 4 * 2_000,
        "{report}"
    );
}

#[test]
fn bench_latency_runs_and_reports_its_samples() {
    let report = bench(&[
        "latency",
        "--rate",
        "6000",
        "--speedup",
        "60",
        "--duration",
        "5s",
        "--articles",
        "1000",
        "--workers",
        "2",
    ]);
    // Five minutes of event time at 100 events a second. The run starts
    // 5 s before a minute boundary, so minutes close at 10 s, 70 s, ...
    // 250 s of event time: five of them inside the run.
    assert_eq!(report["minutes"], 5, "{report}");
    assert_eq!(report["events"], 30_000, "{report}");
    let samples = report["samples_ms"].as_array().unwrap();
    assert_eq!(samples.len(), 5, "{report}");
    let median = report["latency_ms"]["median"].as_f64().unwrap();
    assert!(median >= 0.0, "{report}");
    assert!(report["latency_ms"]["max"].as_f64().unwrap() >= median);
}

#[test]
fn bench_behaviour_runs_and_reports_every_boundary() {
    let report = bench(&[
        "behaviour",
        "--users",
        "1000",
        "--duration",
        "5m",
        "--workers",
        "2",
    ]);
    assert!(report["events"].as_u64().unwrap() > 5_000, "{report}");
    // 5 minutes of 10 s boundaries, then 30 minutes until the last user
    // leaves.
    assert!(report["reports"].as_u64().unwrap() > 200, "{report}");
    for field in ["events_per_s", "peak_rss_bytes", "seconds"] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {report}");
    }
}

#[cfg(feature = "kafka")]
#[test]
fn bench_kafka_reads_every_event_from_the_topic() {
    let report = bench(&[
        "kafka",
        "--events",
        "20000",
        "--articles",
        "1000",
        "--partitions",
        "4",
        "--workers",
        "2",
    ]);
    assert!(report["events"].as_u64().unwrap() >= 19_000, "{report}");
    for round in ["kafka", "file", "generator", "produce"] {
        assert!(
            report[round]["events_per_s"].as_f64().unwrap() > 0.0,
            "{round}: {report}"
        );
    }
}

#[test]
fn bench_jsonl_finds_the_same_minutes_in_the_file_as_in_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let small = |more: &[&str]| {
        let mut args = vec!["jsonl", "--articles", "2000", "--events", "60000"];
        args.extend(["--workers", "2", "--dir", kept.to_str().unwrap()]);
        args.extend(more);
        bench(&args)
    };
    let report = small(&["--rounds", "2"]);
    assert_eq!(report["results_match"], true, "{report}");
    assert_eq!(report["events"], 60_000, "{report}");
    assert!(report["minutes"].as_u64().unwrap() > 60, "{report}");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{report}");
    assert_eq!(rounds[0]["first"], "file", "{report}");
    assert_eq!(rounds[1]["first"], "generator", "{report}");
    assert!(report["file_vs_generator"].as_f64().unwrap() > 0.0);
    // The file holds every event, one line each, and stays in --dir.
    let lines = std::fs::read_to_string(kept.join("events.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 60_000);
    assert_eq!(
        report["input_bytes"].as_u64().unwrap(),
        lines.len() as u64,
        "{report}"
    );

    // Each run a process of its own: the file's output file holds the
    // same bytes as the generator's.
    let cold = small(&["--rounds", "1", "--cold"]);
    assert_eq!(cold["results_match"], true, "{cold}");
    assert_eq!(cold["cold"], true, "{cold}");
    let written = std::fs::read(kept.join("file.out")).unwrap();
    assert_eq!(written, std::fs::read(kept.join("generator.out")).unwrap());
    assert!(!written.is_empty());
    assert!(cold["minutes"].as_u64().unwrap() > 0, "{cold}");

    // A --dir with someone else's file is refused before any work.
    std::fs::write(kept.join("notes.txt"), "mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyflow"))
        .args(["bench", "jsonl", "--events", "1000", "--dir"])
        .arg(&kept)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds notes.txt"), "{stderr}");
}
