//! The behaviour job against an independent recomputation of its rules:
//! random users with disorder, events exactly at a timer's time, events of
//! one user at the same millisecond, sessions over many intervals, and
//! late events under each policy.

mod behaviour_support;
mod trending_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use behaviour_support::*;
use trending_support::{arg, keyflow};

/// A start that is not aligned to the resolution.
const START: u64 = 1_700_000_003_217;

fn run_job(
    dir: &Path,
    inputs: &[PathBuf],
    p: &Params,
    extra: &[&str],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>, String) {
    let (out, alerts) = (dir.join("out.jsonl"), dir.join("alerts.jsonl"));
    let mut args: Vec<String> = ["run", "behaviour", "--quiet"].map(String::from).to_vec();
    args.extend(p.flags());
    args.extend([
        "--out".into(),
        arg(&out),
        "--alerts-out".into(),
        arg(&alerts),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--input".into());
    args.extend(inputs.iter().map(|p| arg(p)));
    let run = keyflow(&args, Duration::from_secs(60));
    run.assert_success("run behaviour");
    (read_lines(&out), read_lines(&alerts), run.stderr)
}

#[test]
fn populations_flows_and_alerts_match_the_rules() {
    let p = small_params();
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let events = random_events(seed, 80, START, &p);
        let files = shuffle_into_files(seed, &events, 3, 4_000);
        let (on_time, late) = split_late(&files, 5_000, 0);
        assert!(
            late.is_empty(),
            "the disorder stays within the out-of-orderness"
        );
        let inputs = write_files(dir.path(), &files);
        let (out, alerts, _) = run_job(dir.path(), &inputs, &p, &["--workers", "2"]);
        let (want_out, want_alerts) = expected(&on_time, &p);
        assert!(
            want_out.len() > 20,
            "seed {seed}: too few lines to mean much"
        );
        assert!(!want_alerts.is_empty(), "seed {seed}: no alert to check");
        assert_lines_eq(&format!("seed {seed} --out"), &out, &want_out);
        assert_lines_eq(&format!("seed {seed} --alerts-out"), &alerts, &want_alerts);
    }
}

#[test]
fn default_timeouts_over_long_sessions() {
    let p = Params {
        landing: "/home".into(),
        bounce: 30_000,
        session: 1_800_000,
        resolution: 10_000,
        window: 600_000,
        rise: 100,
        min: 3,
    };
    let dir = tempfile::tempdir().unwrap();
    let events = random_events(9, 50, START, &p);
    let files = shuffle_into_files(9, &events, 2, 3_000);
    let inputs = write_files(dir.path(), &files);
    let (out, alerts, _) = run_job(dir.path(), &inputs, &p, &[]);
    let (want_out, want_alerts) = expected(&events, &p);
    assert_lines_eq("--out", &out, &want_out);
    assert_lines_eq("--alerts-out", &alerts, &want_alerts);
}

#[test]
fn hand_made_races_and_ties() {
    // Resolution 10 s, bounce 30 s, session 30 min, boundaries at 10 s.
    let base = 1_700_000_000_000u64; // a multiple of 10 s
    let e = |user: &str, ts: u64, from: &str, op: &str, to: &str| Event {
        user: user.into(),
        ts: base + ts,
        from: from.into(),
        op: op.into(),
        to: to.into(),
    };
    let events = vec![
        // a: lands at 0, reloads the landing page exactly at 30 s (no
        // bounce), bounces at 60 s.
        e("a", 0, "", "view", "/"),
        e("a", 30_000, "/", "view", "/"),
        // b: two events at one millisecond: `buy` sorts before `view`, so
        // b ends browsing.
        e("b", 9_999, "/", "view", "/p/1"),
        e("b", 9_999, "/", "buy", "/checkout"),
        // c: lands exactly at a boundary, so it counts from the next one.
        e("c", 20_000, "", "view", "/"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut in_order = events.clone();
    in_order.sort_by_key(|e| e.ts);
    let inputs = write_files(dir.path(), &[in_order]);
    let p = Params {
        landing: "/".into(),
        bounce: 30_000,
        session: 1_800_000,
        resolution: 10_000,
        window: 3_600_000,
        rise: 100,
        min: 10,
    };
    let (out, _, _) = run_job(dir.path(), &inputs, &p, &[]);
    let (want, _) = expected(&events, &p);
    assert_lines_eq("--out", &out, &want);
    let pops = |i: usize| out[i]["populations"].clone();
    assert_eq!(out[0]["t"], base + 10_000);
    assert_eq!(
        pops(0),
        serde_json::json!({"landed": 1, "browsing": 1, "bounced": 0, "buying": 0})
    );
    assert_eq!(
        out[0]["flows"],
        serde_json::json!([
            {"from": "none", "to": "landed", "n": 1},
            {"from": "none", "to": "buying", "n": 1},
            {"from": "buying", "to": "browsing", "n": 1}
        ])
    );
    // c lands at 20 s: not yet in the population at 20 s.
    assert_eq!(out[1]["populations"]["landed"], 1);
    assert_eq!(out[2]["populations"]["landed"], 2);
    // a's reload at exactly 30 s keeps it landed; c bounces at 50 s, a at
    // 60 s (in the interval ending at 70 s).
    assert_eq!(out[5]["populations"]["bounced"], 1);
    assert_eq!(out[6]["populations"]["bounced"], 2);
    // a's last event, at 30 s, is the latest: the last line ends the
    // interval in which a leaves, 30 minutes later.
    let last = out.last().unwrap();
    assert_eq!(last["t"], base + 1_840_000);
    assert_eq!(
        last["populations"],
        serde_json::json!({"landed": 0, "browsing": 0, "bounced": 0, "buying": 0})
    );
    // The exact bytes of a line.
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        format!(
            r#"{{"t":{},"populations":{{"landed":1,"browsing":1,"bounced":0,"buying":0}},"flows":[{{"from":"none","to":"landed","n":1}},{{"from":"none","to":"buying","n":1}},{{"from":"buying","to":"browsing","n":1}}]}}"#,
            base + 10_000
        )
    );
}

#[test]
fn late_events_follow_the_policy() {
    let p = small_params();
    let dir = tempfile::tempdir().unwrap();
    let events = random_events(5, 60, START, &p);
    // Up to 12 s of disorder against 5 s of allowed out-of-orderness.
    let files = shuffle_into_files(5, &events, 2, 12_000);
    let inputs = write_files(dir.path(), &files);

    let (on_time, late) = split_late(&files, 5_000, 0);
    assert!(late.len() > 5, "only {} late events", late.len());
    let stats = dir.path().join("stats.jsonl");
    let (out, alerts, _) = run_job(dir.path(), &inputs, &p, &["--stats-out", &arg(&stats)]);
    let (want_out, want_alerts) = expected(&on_time, &p);
    assert_lines_eq("drop: --out", &out, &want_out);
    assert_lines_eq("drop: --alerts-out", &alerts, &want_alerts);
    let last = read_lines(&stats).pop().unwrap();
    assert_eq!(last["received"], events.len() as u64);
    assert_eq!(last["late"], late.len() as u64);
    assert_eq!(last["dropped"], late.len() as u64);
    assert_eq!(last["counted"], on_time.len() as u64);

    // Side output: the same results, and the late events in a file.
    let late_out = dir.path().join("late.jsonl");
    let extra = ["--late", "side-output", "--late-out", &arg(&late_out)];
    let (side, _, _) = run_job(dir.path(), &inputs, &p, &extra);
    assert_lines_eq("side-output: --out", &side, &want_out);
    let mut got: Vec<String> = read_lines(&late_out)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut want: Vec<String> = late
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.json())
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // Allowed lateness: events up to 4 s later than the watermark count in
    // their place; later ones are dropped.
    let (counted, dropped) = split_late(&files, 5_000, 4_000);
    assert!(!dropped.is_empty() && dropped.len() < late.len());
    let extra = [
        "--late",
        "allowed-lateness",
        "4s",
        "--stats-out",
        &arg(&stats),
        "--workers",
        "3",
    ];
    let (allowed, allowed_alerts, _) = run_job(dir.path(), &inputs, &p, &extra);
    let (want_out, want_alerts) = expected(&counted, &p);
    assert_lines_eq("allowed: --out", &allowed, &want_out);
    assert_lines_eq("allowed: --alerts-out", &allowed_alerts, &want_alerts);
    let last = read_lines(&stats).pop().unwrap();
    assert_eq!(last["dropped"], dropped.len() as u64);
    assert_eq!(last["counted"], counted.len() as u64);
}

#[test]
fn timeouts_that_coincide_or_cross() {
    // Equal timeouts: landed -> bounced -> gone at one time; a bounce
    // timeout past the session timeout never bounces anyone.
    for (bounce, session) in [(5_000, 5_000), (8_000, 5_000)] {
        let p = Params {
            bounce,
            session,
            ..small_params()
        };
        let dir = tempfile::tempdir().unwrap();
        let events = random_events(21, 40, START, &p);
        let files = shuffle_into_files(21, &events, 2, 2_000);
        let inputs = write_files(dir.path(), &files);
        let (out, alerts, _) = run_job(dir.path(), &inputs, &p, &["--workers", "3"]);
        let (want_out, want_alerts) = expected(&events, &p);
        let what = format!("bounce {bounce} session {session}");
        assert_lines_eq(&format!("{what}: --out"), &out, &want_out);
        assert_lines_eq(&format!("{what}: --alerts-out"), &alerts, &want_alerts);
        let bounced = want_out
            .iter()
            .flat_map(|l| l["flows"].as_array().unwrap().clone())
            .any(|f| f["to"] == "bounced");
        assert_eq!(bounced, bounce <= session, "{what}");
    }
}
