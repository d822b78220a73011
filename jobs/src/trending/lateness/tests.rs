//! Unit tests of the lateness path's state, without timely.

use keyflow_operators::rise::{RiseRule, Rising};
use keyflow_operators::topk::TopKPartial;

use super::ranking::{LocalMinute, Rankings};
use super::state::{KeyedMinutes, LocalRank};
use super::Params;
use crate::pageviews::Article;

/// Three windows of one pane, boundaries every ms, lateness 2 ms.
const PARAMS: Params = Params {
    slide: 1,
    per_window: 1,
    windows: 3,
    lateness: 2,
    rule: RiseRule::NonDecreasing,
    min_first: 1,
    top: 1,
};

fn a(name: &str) -> Article {
    Article::named("en", name)
}

fn keys(rank: &LocalRank) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<_> = rank
        .top
        .iter()
        .map(|r| (r.key.title().into_owned(), r.counts.clone()))
        .collect();
    out.sort();
    out
}

/// "up" rises 1, 2, 3 and "slow" 1, 1, 2 over panes 0..3.
fn two_risers() -> KeyedMinutes {
    let mut s = KeyedMinutes::new(PARAMS);
    for (pane, up, slow) in [(0, 1, 1), (1, 2, 1), (2, 3, 2)] {
        s.add(a("up"), pane, up);
        s.add(a("slow"), pane, slow);
    }
    s
}

#[test]
fn first_evaluations_follow_the_views() {
    let mut s = two_risers();
    assert_eq!(s.next_boundary(), Some(1));
    // Before boundary 3 no article has views in the first window.
    assert_eq!(s.evaluate(1).total, 0);
    assert_eq!(s.evaluate(2).total, 0);
    let at3 = s.evaluate(3);
    assert_eq!(at3.total, 2);
    assert_eq!(keys(&at3), vec![("up".into(), vec![1, 2, 3])]);
    // Boundaries 4 and 5 still hold views; 6 does not.
    assert_eq!(s.evaluate(4).total, 0);
    assert_eq!(s.evaluate(5).total, 0);
    assert_eq!(s.next_boundary(), None);
}

#[test]
fn a_late_event_updates_open_boundaries_only() {
    let mut s = two_risers();
    for b in 1..=4 {
        s.evaluate(b);
    }
    // Read at t = 4: boundaries 3 and 4 are open (T + 2 > 4), 5 is ahead.
    let out = s.apply_late(4, vec![(a("slow"), 2, 5)]);
    assert_eq!(out.dropped, 0);
    let updates: Vec<_> = out.updates.iter().map(|(t, r)| (*t, r.clone())).collect();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].0, 3);
    let at3 = updates[0].1.as_ref().expect("boundary 3 changed");
    assert_eq!(at3.total, 2);
    assert_eq!(keys(at3), vec![("slow".into(), vec![1, 1, 7])]);
    // At 4 "slow" reads [1, 7, 0] before and after: nothing changed.
    assert_eq!(updates[1], (4, None));
    // Boundary 5 was not evaluated yet: the event simply counts there.
    assert_eq!(s.next_boundary(), Some(5));
    let at5 = s.evaluate(5);
    assert_eq!(at5.total, 0);
}

#[test]
fn an_event_past_every_open_boundary_is_dropped() {
    let mut s = two_risers();
    for b in 1..=5 {
        s.evaluate(b);
    }
    // Pane 0 feeds boundaries 1..=3, all closed at t = 10 (T + 2 <= 10).
    let out = s.apply_late(10, vec![(a("up"), 0, 9), (a("new"), 9, 1)]);
    assert_eq!(out.dropped, 1);
    // The second event counts for boundary 10 (open) and 11, 12 (ahead).
    assert_eq!(out.updates.len(), 1);
    assert_eq!(out.updates[0].0, 10);
    assert_eq!(s.next_boundary(), Some(11));
}

#[test]
fn a_late_event_can_evaluate_a_boundary_for_the_first_time() {
    let mut s = KeyedMinutes::new(PARAMS);
    s.add(a("x"), 0, 1);
    for b in 1..=3 {
        s.evaluate(b);
    }
    // Boundary 5 never held views; at t = 6 it is open and now does.
    let out = s.apply_late(6, vec![(a("y"), 4, 1)]);
    assert_eq!(out.updates.len(), 2);
    assert_eq!(out.updates[0], (5, None));
    assert_eq!(out.updates[1], (6, None));
}

#[test]
fn eviction_keeps_what_open_boundaries_need() {
    let mut s = two_risers();
    for b in 1..=5 {
        s.evaluate(b);
    }
    assert_eq!(s.open_boundaries(), 5);
    // At progress 6, boundaries up to 4 are closed; pane 2 still feeds 5.
    s.evict(Some(6));
    assert_eq!(s.open_boundaries(), 1);
    assert_eq!(s.articles(), 2);
    s.evict(Some(7));
    assert_eq!(s.articles(), 0);
    // A freed slot is reused by the next article.
    s.add(a("again"), 9, 1);
    assert_eq!(s.articles(), 1);
    s.evict(None);
    assert_eq!((s.articles(), s.open_boundaries()), (0, 0));
}

fn rank(total: u64, top: &[(&str, Vec<u64>)], t: u64) -> Option<LocalRank> {
    Some(TopKPartial {
        total,
        top: top
            .iter()
            .map(|(k, c)| Rising {
                key: a(k),
                t,
                counts: c.clone(),
            })
            .collect(),
    })
}

fn news(t: u64, worker: usize, update: bool, rank: Option<LocalRank>) -> LocalMinute {
    LocalMinute {
        t,
        worker,
        update,
        rank,
    }
}

#[test]
fn rankings_merge_workers_and_keep_the_latest() {
    let mut r = Rankings::new(Params { top: 2, ..PARAMS });
    let first = r.apply(
        10,
        vec![
            news(10, 1, false, rank(1, &[("b", vec![1, 2, 3])], 10)),
            news(10, 0, false, rank(2, &[("a", vec![1, 1, 2])], 10)),
        ],
    );
    assert_eq!(first.len(), 1);
    assert!(!first[0].update);
    assert_eq!(first[0].trending, 3);
    let titles: Vec<_> = first[0].top.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, vec!["b", "a"]);

    // At time 12 worker 0 re-ranks 10; worker 1's ranking stays.
    let later = r.apply(
        12,
        vec![news(10, 0, true, rank(1, &[("a", vec![1, 1, 9])], 10))],
    );
    assert_eq!(later.len(), 1);
    assert!(later[0].update);
    assert_eq!(later[0].trending, 2);
    assert_eq!(later[0].top[0].title, "a");
    assert_eq!(later[0].top[0].counts, vec![1, 1, 9]);

    // An update naming a boundary only re-emits it.
    let touched = r.apply(13, vec![news(10, 1, true, None)]);
    assert_eq!(touched[0].trending, 2);

    // Same time: the re-evaluation wins over the first evaluation.
    let same = r.apply(
        20,
        vec![
            news(20, 0, true, rank(0, &[], 20)),
            news(20, 0, false, rank(1, &[("c", vec![1, 2, 3])], 20)),
        ],
    );
    assert_eq!((same[0].trending, same[0].update), (0, false));

    assert_eq!(r.open_boundaries(), 2);
    r.evict(Some(12)); // 10 + 2 <= 12
    assert_eq!(r.open_boundaries(), 1);
    r.evict(None);
    assert_eq!(r.open_boundaries(), 0);
}
