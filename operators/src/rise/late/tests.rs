//! Unit tests of the state under allowed lateness, without timely: first
//! evaluations, late batches, eviction, and checkpoints (snapshots, change
//! logs, and their split over another number of workers).

use super::log::Change;
use super::state::LateState;
use crate::rise::chain::ChangeLog;
use crate::rise::state::Geometry;
use crate::rise::{RiseRule, Rising};

/// Three windows of one pane, boundaries every ms.
const GEO: Geometry = Geometry {
    slide: 1,
    per_window: 1,
    windows: 3,
};

fn rule(c: &[u64]) -> bool {
    RiseRule::NonDecreasing.holds(c)
}

/// Lateness 2 ms, `c1 >= 1`.
fn state() -> LateState<String> {
    LateState::new(GEO, 2, 1)
}

/// Passing keys with their counts, sorted.
type Keys = Vec<(String, Vec<u64>)>;

fn keys(passing: &[Rising<String>]) -> Keys {
    let mut out: Vec<_> = passing
        .iter()
        .map(|r| (r.key.clone(), r.counts.clone()))
        .collect();
    out.sort();
    out
}

fn late(key: &str, pane: u64, w: u64) -> (String, u64, u64) {
    (key.to_string(), pane, w)
}

/// "up" rises 1, 2, 3 and "slow" 1, 1, 2 over panes 0..3.
fn two_risers() -> LateState<String> {
    let mut s = state();
    for (pane, up, slow) in [(0, 1, 1), (1, 2, 1), (2, 3, 2)] {
        s.add("up".into(), pane, up);
        s.add("slow".into(), pane, slow);
    }
    s
}

#[test]
fn first_evaluations_follow_the_weights() {
    let mut s = two_risers();
    assert_eq!(s.next_boundary(), Some(1));
    // Before boundary 3 no key has weight in the first window.
    assert!(s.evaluate(1, &rule).is_empty());
    assert!(s.evaluate(2, &rule).is_empty());
    let at3 = keys(&s.evaluate(3, &rule));
    assert_eq!(
        at3,
        vec![("slow".into(), vec![1, 1, 2]), ("up".into(), vec![1, 2, 3])]
    );
    // Boundaries 4 and 5 still hold weight; 6 does not.
    assert!(s.evaluate(4, &rule).is_empty());
    assert!(s.evaluate(5, &rule).is_empty());
    assert_eq!(s.next_boundary(), None);
}

#[test]
fn a_late_record_updates_open_boundaries_only() {
    let mut s = two_risers();
    for b in 1..=4 {
        s.evaluate(b, &rule);
    }
    // Read at t = 4: boundaries 3 and 4 are open (T + 2 > 4), 5 is ahead.
    let out = s.apply_late(4, vec![late("slow", 2, 5)], &rule);
    assert_eq!(out.dropped, 0);
    assert_eq!(out.updates.len(), 2);
    let (t, at3) = &out.updates[0];
    assert_eq!(*t, 3);
    let at3 = keys(at3.as_ref().expect("boundary 3 changed"));
    assert_eq!(
        at3,
        vec![("slow".into(), vec![1, 1, 7]), ("up".into(), vec![1, 2, 3])]
    );
    // At 4 "slow" reads [1, 7, 0] before and after: nothing changed.
    assert_eq!(out.updates[1].0, 4);
    assert!(out.updates[1].1.is_none());
    // Boundary 5 was not evaluated yet: the record simply counts there.
    assert_eq!(s.next_boundary(), Some(5));
    assert!(s.evaluate(5, &rule).is_empty());
}

#[test]
fn a_record_past_every_open_boundary_is_dropped() {
    let mut s = two_risers();
    for b in 1..=5 {
        s.evaluate(b, &rule);
    }
    // Pane 0 feeds boundaries 1..=3, all closed at t = 10 (T + 2 <= 10).
    let out = s.apply_late(10, vec![late("up", 0, 9), late("new", 9, 1)], &rule);
    assert_eq!(out.dropped, 1);
    // The second record counts for boundary 10 (open) and 11, 12 (ahead).
    assert_eq!(out.updates.len(), 1);
    assert_eq!(out.updates[0].0, 10);
    assert_eq!(s.next_boundary(), Some(11));
}

#[test]
fn a_late_record_can_evaluate_a_boundary_for_the_first_time() {
    let mut s = state();
    s.add("x".into(), 0, 1);
    for b in 1..=3 {
        s.evaluate(b, &rule);
    }
    // Boundary 5 never held weight; at t = 6 it is open and now does.
    let out = s.apply_late(6, vec![late("y", 4, 1)], &rule);
    let times: Vec<_> = out.updates.iter().map(|(t, p)| (*t, p.is_some())).collect();
    assert_eq!(times, vec![(5, false), (6, false)]);
}

#[test]
fn eviction_keeps_what_open_boundaries_need() {
    let mut s = two_risers();
    for b in 1..=5 {
        s.evaluate(b, &rule);
    }
    assert_eq!(s.open_boundaries(), 5);
    // At progress 6, boundaries up to 4 are closed; pane 2 still feeds 5.
    s.evict(Some(6));
    assert_eq!(s.open_boundaries(), 1);
    assert_eq!(s.keys(), 2);
    s.evict(Some(7));
    assert_eq!(s.keys(), 0);
    // A freed slot is reused by the next key.
    s.add("again".into(), 9, 1);
    assert_eq!(s.keys(), 1);
    s.evict(None);
    assert_eq!((s.keys(), s.open_boundaries()), (0, 0));
}

/// A deterministic run over boundaries `from..to`: on-time weight, late
/// batches, evictions, and every result, as the operator would do them.
fn drive(s: &mut LateState<String>, from: u64, to: u64) -> Vec<(u64, Keys)> {
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ from;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut out = Vec::new();
    for t in from..to {
        for _ in 0..6 {
            let key = format!("k{}", next(12));
            s.add(key, t, 1 + next(3));
        }
        while let Some(b) = s.next_boundary().filter(|b| *b <= t) {
            out.push((b, keys(&s.evaluate(b, &rule))));
        }
        let batch = (0..3)
            .map(|_| late(&format!("k{}", next(12)), t.saturating_sub(1 + next(5)), 2))
            .collect();
        for (b, passing) in s.apply_late(t, batch, &rule).updates {
            out.push((b, passing.map(|p| keys(&p)).unwrap_or_default()));
        }
        s.evict(Some(t));
    }
    out
}

#[test]
fn a_snapshot_and_its_change_log_rebuild_the_state() {
    let geo = Geometry {
        slide: 1,
        per_window: 2,
        windows: 3,
    };
    let fresh = || LateState::<String>::new(geo, 4, 1);
    let mut live = fresh();
    drive(&mut live, 0, 20);
    let full = live.full();
    live.track_changes();
    drive(&mut live, 20, 35);
    let changes: Vec<Change<String>> = live.take_changes();
    assert!(changes.iter().any(|c| matches!(c, Change::Fail(..))));

    // One worker, and the same keys split over two.
    let mut whole = fresh().load(full.clone()).unwrap();
    whole.replay(changes.clone(), |_| true).unwrap();
    assert_eq!(whole.snapshot(), live.snapshot());
    let mut merged = fresh().snapshot();
    for index in 0..2u64 {
        let mine = move |h: u64| h % 2 == index;
        let mut part = full.clone();
        part.retain(mine);
        let mut s = fresh().load(part).unwrap();
        s.replay(changes.clone(), mine).unwrap();
        assert!(s.keys() > 0 && s.keys() < live.keys(), "worker {index}");
        merged.absorb(s.snapshot());
    }
    let mut rebuilt = fresh().load(merged).unwrap();
    assert_eq!(rebuilt.snapshot(), live.snapshot());
    // And they go on alike.
    assert_eq!(drive(&mut rebuilt, 35, 50), drive(&mut live, 35, 50));
}
