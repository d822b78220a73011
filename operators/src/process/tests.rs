//! Unit tests of the keyed process state and operator.

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::testing::{example, Captured};

use super::*;

/// Counts a key's records; emits `(count, "timer")` 10 ms after the last
/// one unless another comes by then, and `(count, "event")` at each record.
struct Counter;

impl ProcessFunction for Counter {
    type Key = u32;
    type In = char;
    type State = u64;
    type Out = (u32, u64, char);

    fn on_event(
        &self,
        key: &u32,
        count: &mut u64,
        c: char,
        ctx: &mut ProcessContext<'_, Self::Out>,
    ) {
        *count += 1;
        ctx.emit((*key, *count, c));
        ctx.delete_timers();
        ctx.set_timer(ctx.time() + 10);
    }

    fn on_timer(&self, key: &u32, count: &mut u64, ctx: &mut ProcessContext<'_, Self::Out>) {
        ctx.emit((*key, *count, '!'));
        *count = 0;
    }
}

fn run_state(records: &[(u64, u32, char)], bounds: &[u64]) -> Vec<(u64, (u32, u64, char))> {
    let mut state = ProcessState::new();
    let mut out = Vec::new();
    for &(ts, k, c) in records {
        state.push(ts, k, c);
    }
    for &b in bounds {
        state.advance(&Counter, b, &mut out);
    }
    out.sort();
    out
}

#[test]
fn a_record_exactly_at_the_timer_cancels_it() {
    let out = run_state(&[(0, 1, 'a'), (10, 1, 'b')], &[u64::MAX]);
    assert_eq!(
        out,
        vec![(0, (1, 1, 'a')), (10, (1, 2, 'b')), (20, (1, 2, '!'))]
    );
    // One millisecond later, the timer fires first.
    let out = run_state(&[(0, 1, 'a'), (11, 1, 'b')], &[u64::MAX]);
    assert_eq!(
        out,
        vec![
            (0, (1, 1, 'a')),
            (10, (1, 1, '!')),
            (11, (1, 1, 'b')),
            (21, (1, 1, '!'))
        ]
    );
}

#[test]
fn same_time_records_apply_in_value_order_whatever_the_arrival() {
    let a = run_state(&[(5, 1, 'z'), (5, 1, 'a'), (5, 1, 'm')], &[u64::MAX]);
    let b = run_state(&[(5, 1, 'm'), (5, 1, 'z'), (5, 1, 'a')], &[u64::MAX]);
    assert_eq!(a, b);
    assert_eq!(
        a,
        vec![
            (5, (1, 1, 'a')),
            (5, (1, 2, 'm')),
            (5, (1, 3, 'z')),
            (15, (1, 3, '!'))
        ]
    );
}

#[test]
fn bounds_split_the_work_without_changing_it() {
    let records: Vec<(u64, u32, char)> = (0..200u64)
        .map(|i| {
            (
                (i * 7919) % 500,
                (i % 5) as u32,
                (b'a' + (i % 26) as u8) as char,
            )
        })
        .collect();
    let once = run_state(&records, &[u64::MAX]);
    let mut bounds: Vec<u64> = (0..60).map(|b| b * 9).collect();
    bounds.push(u64::MAX);
    // Records pushed before any bound are the same work; here some come
    // between bounds too, each at or above the bound passed so far.
    let mut state = ProcessState::new();
    let mut out = Vec::new();
    let mut sorted = records.clone();
    sorted.sort();
    let mut next = 0;
    for b in bounds {
        while next < sorted.len() && sorted[next].0 < b {
            let (ts, k, c) = sorted[next];
            state.push(ts, k, c);
            next += 1;
        }
        state.advance(&Counter, b, &mut out);
    }
    out.sort();
    assert_eq!(once, out);
    assert!(state.is_empty());
}

#[test]
fn timers_wait_for_the_bound_and_idle_keys_are_forgotten() {
    let mut state = ProcessState::new();
    let mut out = Vec::new();
    state.push(3, 7, 'x');
    state.advance(&Counter, 3, &mut out);
    assert!(out.is_empty(), "a record at the bound waits");
    assert_eq!(state.next_time(), Some(3));
    state.advance(&Counter, 4, &mut out);
    assert_eq!(out, vec![(3, (7, 1, 'x'))]);
    assert_eq!(state.next_time(), Some(13));
    assert_eq!(state.state(&7), Some(&1));
    state.advance(&Counter, 13, &mut out);
    assert_eq!(out.len(), 1, "the timer at 13 waits for a bound above it");
    state.advance(&Counter, 14, &mut out);
    assert_eq!(out[1], (13, (7, 1, '!')));
    // Count back at 0 and no timers: the key is gone.
    assert_eq!(state.keys(), 0);
    assert_eq!(state.next_time(), None);
}

#[test]
fn state_survives_encoding_and_splitting_by_key() {
    let mut state = ProcessState::new();
    let mut out = Vec::new();
    for k in 0..10u32 {
        state.push(u64::from(k), k, 'a');
        state.push(100 + u64::from(k), k, 'b');
    }
    state.advance(&Counter, 50, &mut out);
    let bytes = keyflow_dataflow::checkpoint::encode(&state).unwrap();
    let decoded: ProcessState<u32, char, u64> =
        keyflow_dataflow::checkpoint::decode(&bytes, "test").unwrap();
    let mut parts = Vec::new();
    for half in 0..2u32 {
        let mut part = decoded.clone();
        part.retain_keys(|k| k % 2 == half);
        part.rebuild_timers();
        parts.push(part);
    }
    let mut merged = ProcessState::new();
    for part in parts {
        merged.absorb(part);
    }
    let (mut rest_a, mut rest_b) = (Vec::new(), Vec::new());
    state.advance(&Counter, u64::MAX, &mut rest_a);
    merged.advance(&Counter, u64::MAX, &mut rest_b);
    rest_a.sort();
    rest_b.sort();
    assert_eq!(rest_a, rest_b);
    assert_eq!(rest_a.len(), 20);
}

/// Outputs and late records, each with its event time.
type Counted = (Vec<(u64, (u32, u64, char))>, Vec<(u64, (u32, char))>);

fn counts_at(workers: usize, lateness: Lateness) -> Counted {
    let (out, late) = (Captured::new(), Captured::new());
    let (o, l) = (out.clone(), late.clone());
    run(&RunConfig::threads(workers), move |flow| {
        // Partition 1 sends 1 s after 9 s: 3 s late with 5 s of
        // out-of-orderness.
        let input = IterSource::new("keys", 2, |p| {
            let list = if p == 0 {
                (0..40u64)
                    .map(|i| (i * 250, ((i % 3) as u32, 'a')))
                    .collect::<Vec<_>>()
            } else {
                vec![
                    (0, (9, 'b')),
                    (9_000, (9, 'c')),
                    (1_000, (9, 'd')),
                    (9_005, (9, 'e')),
                ]
            };
            list.into_iter()
        });
        let result = flow
            .source("keys", input, &SourceConfig::default())?
            .key_by(|kv| kv)
            .process_with("counter", Counter, lateness);
        result.output.capture(&o);
        result.late.capture(&l);
        Ok(())
    })
    .unwrap();
    (out.sorted(), late.sorted())
}

#[test]
fn late_records_follow_the_policy_at_any_worker_count() {
    let (dropped, none) = counts_at(1, Lateness::Drop);
    assert!(none.is_empty());
    assert!(!dropped.iter().any(|(_, (_, _, c))| *c == 'd'));
    let (side, late) = counts_at(1, Lateness::SideOutput);
    assert_eq!(late, vec![(1_000, (9, 'd'))]);
    assert_eq!(side, dropped);
    let (allowed, none) = counts_at(1, Lateness::Allowed(5 * SECOND));
    assert!(none.is_empty());
    assert!(allowed.contains(&(1_000, (9, 1, 'd'))), "{allowed:?}");
    assert!(allowed.contains(&(9_000, (9, 1, 'c'))), "{allowed:?}");
    for workers in [2, 3] {
        assert_eq!(counts_at(workers, Lateness::Drop).0, dropped);
        assert_eq!(counts_at(workers, Lateness::Allowed(5 * SECOND)).0, allowed);
    }
}

#[test]
fn outputs_travel_on_time_without_allowed_lateness() {
    let out = example(vec![(0, 1u32), (20, 2), (3, 1)], |n| {
        Ok(n.key_by(|k| (k, 'x')).process("counter", Counter).output)
    });
    let out = out.unwrap();
    assert_eq!(
        out,
        vec![
            (0, (1, 1, 'x')),
            (3, (1, 2, 'x')),
            (13, (1, 2, '!')),
            (20, (2, 1, 'x')),
            (30, (2, 1, '!'))
        ]
    );
}
