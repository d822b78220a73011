//! Source behaviour: idle partitions, far-future timestamps, end-of-input
//! flush, malformed input and failures.

use std::sync::Arc;
use std::time::Duration;

use keyflow_dataflow::metrics::MetricsSnapshot;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::testing::{capture_timed, Captured, ScriptedSource, Step};

type Counts = Vec<(u64, WindowResult<String, u64>)>;
type LateWords = Vec<(u64, (String, ()))>;

/// Runs a scripted source through a tumbling 10 s count with side-output
/// lateness; returns results, late records and metrics.
fn count_windows(
    scripts: Vec<Vec<Step<&'static str>>>,
    workers: usize,
    config: SourceConfig,
) -> keyflow_dataflow::Result<(Counts, LateWords, MetricsSnapshot)> {
    let results = Captured::new();
    let late = Captured::new();
    let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
    let (r, l) = (results.clone(), late.clone());
    let scripts = Arc::new(scripts);
    run_with_context(Arc::clone(&ctx), move |flow| {
        let (r, l, scripts) = (r.clone(), l.clone(), scripts.clone());
        let input = ScriptedSource::new(scripts.to_vec());
        let out = flow
            .source("input", input, &config)?
            .key_by(|w: &str| (w.to_string(), ()))
            .window(WindowSpec::tumbling(10_000)?)
            .lateness(Lateness::SideOutput)
            .count("counts");
        out.results.capture(&r);
        out.late.capture(&l);
        Ok(())
    })?;
    Ok((results.sorted(), late.sorted(), ctx.metrics.snapshot()))
}

fn events(from: u64, to: u64, step: u64, word: &'static str) -> Vec<Step<&'static str>> {
    (from..=to)
        .step_by(step as usize)
        .map(|t| Step::Event(t, word))
        .collect()
}

#[test]
fn an_idle_partition_stops_holding_progress_back() {
    // Partition 0 goes quiet after t=1s, then sends t=20s once partition 1
    // has reached t=50s and ended. If its idleness is ignored, t=20s is on
    // time; once the partition counts as idle, progress moves past 20s
    // without it and the record is late.
    let quiet = || {
        vec![
            Step::Event(1_000, "a"),
            Step::Pause(Duration::from_millis(1_500)),
            Step::Event(20_000, "a"),
        ]
    };
    let busy = || events(0, 50_000, 1_000, "b");
    for workers in [1, 2] {
        let config = SourceConfig {
            max_out_of_orderness: 1_000,
            idle_timeout: Some(Duration::from_millis(100)),
            ..SourceConfig::default()
        };
        let (_, late, metrics) = count_windows(vec![quiet(), busy()], workers, config).unwrap();
        assert_eq!(
            late,
            vec![(20_000, ("a".to_string(), ()))],
            "workers={workers}"
        );
        assert_eq!(metrics.late_side, 1);

        let patient = SourceConfig {
            max_out_of_orderness: 1_000,
            idle_timeout: None,
            ..SourceConfig::default()
        };
        let (results, late, _) = count_windows(vec![quiet(), busy()], workers, patient).unwrap();
        assert!(late.is_empty());
        assert!(results
            .iter()
            .any(|(_, r)| r.key == "a" && r.start == 20_000));
    }
}

#[test]
fn far_future_records_are_rejected_and_do_not_close_windows() {
    let mut script = events(0, 10_000, 1_000, "a");
    script.push(Step::Event(10 * DAY, "a"));
    script.extend(events(11_000, 25_000, 1_000, "a"));
    let config = SourceConfig {
        max_future: Some(DAY),
        ..SourceConfig::default()
    };
    let (results, late, metrics) = count_windows(vec![script], 1, config).unwrap();
    assert_eq!(metrics.future, 1);
    assert!(
        late.is_empty(),
        "the future record must not make later ones late"
    );
    let counts: Vec<_> = results.iter().map(|(_, r)| (r.start, r.value)).collect();
    assert_eq!(counts, vec![(0, 10), (10_000, 10), (20_000, 6)]);
}

#[test]
fn a_gap_longer_than_max_future_is_followed_and_loses_nothing() {
    // Ten seconds of records, a gap of three days, then twenty seconds
    // more, one of them a little out of order: with `max_future` a day,
    // the records after the gap are held until five agree, then stand.
    let gap = 3 * DAY;
    let mut script = events(0, 9_000, 1_000, "a");
    script.extend(events(gap, gap + 9_000, 1_000, "b"));
    script.push(Step::Event(gap + 2_500, "b"));
    script.extend(events(gap + 10_000, gap + 19_000, 1_000, "b"));
    // A stray record from a wrong clock, then the stream as before.
    script.push(Step::Event(gap + 5 * DAY, "c"));
    script.extend(events(gap + 20_000, gap + 21_000, 1_000, "b"));
    // The input ends with too few records far ahead to follow.
    script.extend(events(gap + 9 * DAY, gap + 9 * DAY + 2_000, 1_000, "d"));
    let config = SourceConfig {
        max_future: Some(DAY),
        max_out_of_orderness: 1_000,
        jump_after: Some(5),
        ..SourceConfig::default()
    };
    for workers in [1, 2] {
        let (results, late, metrics) =
            count_windows(vec![script.clone()], workers, config.clone()).unwrap();
        assert_eq!(metrics.future, 1 + 3, "workers={workers}");
        // Late under the run's own clock (its watermark had passed 8 s).
        assert_eq!(late, vec![(gap + 2_500, ("b".to_string(), ()))]);
        let counts: Vec<_> = results
            .iter()
            .map(|(_, r)| (r.key.as_str(), r.start, r.value))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("a", 0, 10),
                ("b", gap, 10),
                ("b", gap + 10_000, 10),
                ("b", gap + 20_000, 2)
            ]
        );
    }
    // Without following, everything after the gap is lost, as before.
    let strict = SourceConfig {
        jump_after: None,
        ..config
    };
    let (results, _, metrics) = count_windows(vec![script], 1, strict).unwrap();
    assert_eq!(metrics.future, 27);
    assert_eq!(results.len(), 1);
}

#[test]
fn a_first_record_from_a_wrong_clock_does_not_make_the_rest_late() {
    // Stamped in the year 9999, far past the wall clock: it would set the
    // partition's watermark, and every record after it would be late.
    let year_9999 = keyflow_dataflow::time::MAX_EVENT_TIME - DAY;
    let mut script = vec![Step::Event(year_9999, "a")];
    script.extend(events(0, 25_000, 1_000, "a"));
    let (results, late, metrics) = count_windows(vec![script], 1, SourceConfig::default()).unwrap();
    assert_eq!(metrics.future, 1);
    assert!(late.is_empty(), "{late:?}");
    let counts: Vec<_> = results.iter().map(|(_, r)| (r.start, r.value)).collect();
    assert_eq!(counts, vec![(0, 10), (10_000, 10), (20_000, 6)]);
    // A partition wholly in the future stands, as it did.
    let ahead = events(year_9999, year_9999 + 3_000, 1_000, "b");
    let (results, _, metrics) = count_windows(vec![ahead], 2, SourceConfig::default()).unwrap();
    assert_eq!(metrics.future, 0);
    assert_eq!(results.iter().map(|(_, r)| r.value).sum::<u64>(), 4);
}

#[test]
fn a_bounded_input_fires_every_window_at_its_end() {
    // The last window ends long after the last record's watermark; the
    // exhausted input must still close it.
    let script = vec![Step::Event(5_000, "a"), Step::Event(95_000, "a"), Step::Eof];
    let (results, _, _) = count_windows(vec![script], 1, SourceConfig::default()).unwrap();
    let windows: Vec<_> = results
        .iter()
        .map(|(_, r)| (r.start, r.end, r.value))
        .collect();
    assert_eq!(windows, vec![(0, 10_000, 1), (90_000, 100_000, 1)]);
}

#[test]
fn results_travel_at_window_end() {
    let timed = Captured::new();
    let t = timed.clone();
    run(&RunConfig::threads(2), move |flow| {
        let t = t.clone();
        let input = ScriptedSource::new(vec![events(0, 30_000, 500, "x")]);
        let out = flow
            .source("input", input, &SourceConfig::default())?
            .key_by(|w: &str| (w.to_string(), ()))
            .window(WindowSpec::tumbling(10_000)?)
            .count("c");
        capture_timed(out.results.inner(), &t);
        Ok(())
    })
    .unwrap();
    for (time, ts, r) in timed.sorted() {
        assert_eq!((time, ts), (r.end, r.end));
    }
}

#[test]
fn malformed_records_are_counted_or_fail_with_their_location() {
    let script = || {
        vec![
            Step::Event(1_000, "a"),
            Step::Bad("not json".into()),
            Step::Event(2_000, "a"),
        ]
    };
    let (results, _, metrics) = count_windows(vec![script()], 1, SourceConfig::default()).unwrap();
    assert_eq!(metrics.bad, 1);
    assert_eq!(results[0].1.value, 2);

    let strict = SourceConfig {
        bad_input: BadInputPolicy::Fail,
        ..SourceConfig::default()
    };
    let err = count_windows(vec![script()], 2, strict).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("partition 0 step 2") && text.contains("not json"),
        "{text}"
    );
}

#[test]
fn a_failing_partition_stops_the_job_with_its_error() {
    let script = vec![Step::Event(1_000, "a"), Step::Abort("disk on fire".into())];
    let forever = vec![Step::Event(0, "b"), Step::Pause(Duration::from_secs(3600))];
    let err = count_windows(vec![script, forever], 2, SourceConfig::default()).unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn missing_json_file_fails_before_any_work() {
    let err = run(&RunConfig::threads(1), |flow| {
        let input = JsonLinesSource::new(
            "j",
            vec!["/nonexistent/x.jsonl".into()],
            |v: &serde_json::Value| v["ts"].as_u64(),
        );
        flow.source("input", input, &SourceConfig::default())?;
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
}

/// A directory stands for its visible files, in name order, for JSON
/// lines and CSV alike; one without files is an error naming it.
#[test]
fn a_directory_of_inputs_is_read_as_its_files() {
    let dir = std::env::temp_dir().join(format!("keyflow-dir-inputs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (jsonl, csv, empty) = (dir.join("jsonl"), dir.join("csv"), dir.join("empty"));
    for d in [&jsonl, &csv, &empty] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(jsonl.join("b.jsonl"), "{\"ts\":2}\n").unwrap();
    std::fs::write(jsonl.join("a.jsonl"), "{\"ts\":1}\n").unwrap();
    std::fs::write(jsonl.join(".c.jsonl.inprogress"), "{\"ts\":3}\n").unwrap();
    std::fs::write(csv.join("a.csv"), "ts\n4\n").unwrap();
    std::fs::write(csv.join("b.csv"), "ts\n5\n").unwrap();
    let out = Captured::new();
    let (into, j, c) = (out.clone(), jsonl.clone(), csv.clone());
    run(&RunConfig::threads(2), move |flow| {
        let lines = JsonLinesSource::new("j", vec![j.clone()], |v: &serde_json::Value| {
            v["ts"].as_u64()
        });
        let rows = CsvSource::<(u64,)>::new("c", vec![c.clone()], "ts");
        let a = flow
            .source("j", lines, &SourceConfig::default())?
            .map(|v| v["ts"].as_u64().unwrap());
        let b = flow
            .source("c", rows, &SourceConfig::default())?
            .map(|r| r.0);
        a.union(b).capture(&into);
        Ok(())
    })
    .unwrap();
    let mut got = out.items();
    got.sort();
    assert_eq!(got, vec![(1, 1), (2, 2), (4, 4), (5, 5)]);
    let e = empty.clone();
    let err = run(&RunConfig::threads(1), move |flow| {
        let lines = JsonLinesSource::new("j", vec![e.clone()], |v: &serde_json::Value| {
            v["ts"].as_u64()
        });
        flow.source("j", lines, &SourceConfig::default())?;
        Ok(())
    })
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "input directory {} holds no files",
            empty.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn contradicting_source_settings_are_refused_naming_the_values() {
    let refused = |config: SourceConfig, want: &str| {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    };
    refused(
        SourceConfig {
            batch: 0,
            ..SourceConfig::default()
        },
        "batch size 0",
    );
    refused(
        SourceConfig {
            max_out_of_orderness: DAY,
            max_future: Some(DAY),
            ..SourceConfig::default()
        },
        "max-out-of-orderness 86400000 ms is not below max-future 86400000 ms",
    );
    refused(
        SourceConfig {
            jump_after: Some(0),
            ..SourceConfig::default()
        },
        "jump-after 0",
    );
    let unbounded = SourceConfig {
        max_out_of_orderness: DAY,
        max_future: None,
        jump_after: None,
        ..SourceConfig::default()
    };
    unbounded.validate().unwrap();
}
