//! The job-writing API: step ids, sub-flows, deferred build errors, and
//! per-step metrics.

use std::sync::Arc;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::testing::Captured;

/// `0..n`, each at event time equal to itself.
fn numbers(n: u64) -> impl Source<Item = u64> {
    IterSource::new("numbers", 1, move |_| (0..n).map(|i| (i, i)))
}

#[test]
fn a_duplicate_step_id_fails_the_build_naming_both_places() {
    let err = run(&RunConfig::threads(2), |flow| {
        let events = flow.source("numbers", numbers(10), &SourceConfig::default())?;
        let keyed = || events.clone().key_by(|n| (n % 2, ()));
        let _first = keyed().window(WindowSpec::tumbling(5)?).count("counts");
        let _second = keyed().window(WindowSpec::tumbling(7)?).count("counts");
        Ok(())
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("step id `counts` is used twice"), "{text}");
    // Both places, by file and line.
    let places = text.matches("dataflow/tests/flow.rs:").count();
    assert_eq!(places, 2, "{text}");
    let first = line_of("let _first");
    let second = line_of("let _second");
    assert!(text.contains(&format!("flow.rs:{first}:")), "{text}");
    assert!(text.contains(&format!("flow.rs:{second}:")), "{text}");
}

/// The line in this file where `marker` first appears.
fn line_of(marker: &str) -> usize {
    let source = include_str!("flow.rs");
    source
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .unwrap()
        + 1
}

#[test]
fn a_source_and_a_sink_may_not_share_an_id() {
    let err = run(&RunConfig::threads(1), |flow| {
        flow.source("numbers", numbers(3), &SourceConfig::default())?
            .sink("numbers", || Ok(StdoutSink(|_, n: &u64| n.to_string())))
    })
    .unwrap_err();
    assert!(err.to_string().contains("`numbers` is used twice"), "{err}");
}

#[test]
fn sub_flows_prefix_their_step_ids() {
    let ctx = Arc::new(Context::new(RunConfig::threads(2)));
    let out = Captured::new();
    let into = out.clone();
    run_with_context(Arc::clone(&ctx), move |flow| {
        let events = flow.source("numbers", numbers(20), &SourceConfig::default())?;
        // The same step id in two sub-flows is two steps.
        for name in ["even", "odd"] {
            let sub = flow.sub(name);
            let parity = u64::from(name == "odd");
            events
                .clone()
                .within(&sub)
                .filter(move |n| n % 2 == parity)
                .key_by(|_| ((), ()))
                .window(WindowSpec::tumbling(10)?)
                .count("counts")
                .results
                .map(move |r| (name, r.end, r.value))
                .capture(&into);
        }
        Ok(())
    })
    .unwrap();
    let mut got: Vec<_> = out.items().into_iter().map(|(_, r)| r).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("even", 10, 5),
            ("even", 20, 5),
            ("odd", 10, 5),
            ("odd", 20, 5)
        ]
    );
    let steps: Vec<String> = ctx.metrics.steps().into_iter().map(|(id, _)| id).collect();
    assert_eq!(steps, vec!["even/counts", "numbers", "odd/counts"]);
}

#[test]
fn metrics_are_kept_per_step() {
    let ctx = Arc::new(Context::new(RunConfig::threads(2)));
    run_with_context(Arc::clone(&ctx), |flow| {
        // Two windowed steps over the same input: one sees every record,
        // the other only the even ones; 3 s arrives late (5 s of allowed
        // out-of-orderness after 10 s) and each of them drops it.
        let input = IterSource::new("t", 1, |_| {
            vec![(1_000, 1u64), (2_000, 2), (10_000, 10), (3_000, 3)].into_iter()
        });
        let events = flow.source("t", input, &SourceConfig::default())?;
        let _all = events
            .clone()
            .key_by(|n| ((), n))
            .window(WindowSpec::tumbling(SECOND)?)
            .count("all");
        let _even = events
            .filter(|n| n % 2 == 0)
            .key_by(|n| ((), n))
            .window(WindowSpec::tumbling(SECOND)?)
            .count("even");
        Ok(())
    })
    .unwrap();
    let steps: std::collections::BTreeMap<_, _> = ctx.metrics.steps().into_iter().collect();
    assert_eq!(steps["t"].records_out, 4);
    let (all, even) = (steps["all"], steps["even"]);
    assert_eq!(
        (all.records_in, all.records_out, all.late, all.dropped),
        (4, 3, 1, 1)
    );
    assert_eq!(
        (even.records_in, even.records_out, even.late, even.dropped),
        (2, 2, 0, 0)
    );
    let text = ctx.metrics.prometheus();
    assert!(
        text.contains("keyflow_late_events_total{step=\"all\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyflow_step_records_in_total{step=\"even\"} 2"),
        "{text}"
    );
}

/// A sink that fails on its first write.
struct Broken;

impl Sink<u64> for Broken {
    fn write(&mut self, _: EventTime, _: &[(EventTime, u64)]) -> keyflow_dataflow::Result<()> {
        Err(Error::External("disk full".into()))
    }
}

#[test]
fn an_error_inside_a_step_names_the_step() {
    let err = run(&RunConfig::threads(2), |flow| {
        flow.sub("report")
            .source("numbers", numbers(3), &SourceConfig::default())?
            .sink("archive", || Ok(Broken))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "step `report/archive`: disk full");
}

/// A sink that panics on its first write.
struct Panicking;

impl Sink<u64> for Panicking {
    fn write(&mut self, _: EventTime, _: &[(EventTime, u64)]) -> keyflow_dataflow::Result<()> {
        panic!("a bug in the sink")
    }
}

#[test]
fn a_panicking_sink_stops_the_job_with_its_message() {
    // The sink runs on a thread of its own: its panic must still reach
    // `run` as an error naming the step, not hang or pass unseen.
    for workers in [1, 2] {
        let err = run(&RunConfig::threads(workers), |flow| {
            flow.source("numbers", numbers(3), &SourceConfig::default())?
                .sink("archive", || Ok(Panicking))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `archive`: the writer panicked: a bug in the sink"
        );
    }
}

#[test]
fn a_bad_window_fails_where_it_is_made() {
    let err = WindowSpec::sliding(MINUTE, 0).unwrap_err();
    assert!(err.to_string().contains("slide 0 ms"), "{err}");
}
