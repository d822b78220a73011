//! A sum that reaches its type's limit fails its step, naming the key and
//! the window, at any worker count and for every kind of window, instead
//! of wrapping around (release) or panicking (debug).

use keyflow_dataflow::prelude::*;

/// Sums `records` (event time, key, value) per key in `spec`'s windows on
/// `workers` workers; returns the results or the error.
fn sums<V>(
    spec: WindowSpec,
    workers: usize,
    records: Vec<(u64, char, V)>,
) -> keyflow_dataflow::Result<Vec<(char, V)>>
where
    V: SumValue + Ord + Send + Sync,
{
    let out = keyflow_dataflow::testing::Captured::new();
    let into = out.clone();
    run(&RunConfig::threads(workers), move |flow| {
        let records = records.clone();
        let input = IterSource::new("values", 2, move |p| {
            let mine: Vec<_> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == p)
                .map(|(_, (ts, k, v))| (*ts, (*k, v.clone())))
                .collect();
            mine.into_iter()
        });
        flow.source("values", input, &SourceConfig::default())?
            .key_by(|kv| kv)
            .window(spec)
            .sum("sums")
            .results
            .map(|r| (r.key, r.value))
            .capture(&into);
        Ok(())
    })?;
    let mut got: Vec<(char, V)> = out.items().into_iter().map(|(_, kv)| kv).collect();
    got.sort();
    Ok(got)
}

fn refused(err: keyflow_dataflow::Error, limit: &str) {
    let text = err.to_string();
    assert!(
        text.starts_with("step `sums`: bad input at key 'a', window "),
        "{text}"
    );
    assert!(
        text.contains(&format!("the sum reached {limit}, the most its type holds")),
        "{text}"
    );
}

#[test]
fn a_tumbling_sum_past_the_limit_fails_the_step() {
    for workers in [1, 2] {
        let records = vec![(1, 'a', u32::MAX - 1), (2, 'a', 5), (3, 'b', 7)];
        let err = sums(WindowSpec::tumbling(MINUTE).unwrap(), workers, records).unwrap_err();
        refused(err, "u32::MAX");
    }
    // Below the limit, nothing changes.
    let records = vec![(1, 'a', u32::MAX - 5), (2, 'a', 4), (3, 'b', 7)];
    let got = sums(WindowSpec::tumbling(MINUTE).unwrap(), 2, records).unwrap();
    assert_eq!(got, vec![('a', u32::MAX - 1), ('b', 7)]);
}

#[test]
fn a_sliding_window_whose_panes_sum_past_the_limit_fails_the_step() {
    // Each pane fits; the window over both does not.
    let half = u16::MAX / 2 + 1;
    let records = vec![(1, 'a', half), (MINUTE + 1, 'a', half)];
    let spec = WindowSpec::sliding(2 * MINUTE, MINUTE).unwrap();
    for workers in [1, 2] {
        let err = sums(spec, workers, records.clone()).unwrap_err();
        refused(err, "u16::MAX");
    }
}

#[test]
fn a_session_or_a_signed_sum_past_the_limit_fails_the_step() {
    let records = vec![(1, 'a', i64::MIN + 1), (2, 'a', -2)];
    let err = sums(WindowSpec::session(MINUTE).unwrap(), 2, records).unwrap_err();
    refused(err, "i64::MIN");
}
