use super::*;

const GEO: Geometry = Geometry {
    slide: 1,
    per_window: 2,
    windows: 3,
};

/// Four windows of three panes: room for keys that rise, and for gaps.
const GEO4: Geometry = Geometry {
    slide: 1,
    per_window: 3,
    windows: 4,
};

/// Repeatable pseudo-random numbers below `n` (a linear congruential
/// generator), seeded with `seed`.
fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

fn add<K: Key>(state: &mut RiseState<K>, key: K, p: u64, w: u64) {
    state.add(stable_hash(&key), key, p, w).unwrap();
}

fn eval(state: &mut RiseState<u32>, b: u64, min_first: u64) -> Vec<(u32, Vec<u64>)> {
    eval_with(state, b, &GEO, min_first, &|_: &[u64]| true)
}

fn eval_with<K: Key>(
    state: &mut RiseState<K>,
    b: u64,
    geo: &Geometry,
    min_first: u64,
    pred: &dyn Fn(&[u64]) -> bool,
) -> Vec<(K, Vec<u64>)> {
    let mut out = Vec::new();
    let mut counts = Vec::new();
    let n = state.evaluate(b, geo, min_first, pred, &mut counts, |k, c| {
        out.push((k.clone(), c.to_vec()))
    });
    assert_eq!(n as usize, out.len());
    out.sort();
    out
}

/// A key whose stable hash it shares with the two keys next to it
/// (`n / 3`): a 64-bit collision, which real keys never show, so that
/// the paths for keys of one hash are tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Colliding(u32);

impl std::hash::Hash for Colliding {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(self.0 / 3);
    }
}

impl From<u32> for Colliding {
    fn from(n: u32) -> Self {
        Colliding(n)
    }
}

/// The spread index must offer every key that can pass a rule that
/// never falls: random input, out of order, against a full read.
#[test]
fn spread_index_misses_no_rising_key() {
    spread_index_misses_none::<u32>();
}

/// The same, with keys that share their stable hash in threes.
#[test]
fn spread_index_misses_no_key_of_a_shared_hash() {
    assert_eq!(stable_hash(&Colliding(6)), stable_hash(&Colliding(8)));
    spread_index_misses_none::<Colliding>();
}

fn spread_index_misses_none<K: Key + From<u32>>() {
    let geo = GEO4;
    let rule = |c: &[u64]| crate::rise::RiseRule::AllowFlat.holds(c);
    let mut next = numbers(0x9E37_79B9_7F4A_7C15);
    let mut full = RiseState::default();
    let mut fast = [RiseState::new(&geo, 1, true), RiseState::new(&geo, 2, true)];
    let mut passed = [0, 0];
    for b in 20..300u64 {
        if b == 150 {
            // A restored state files every key again, as not read.
            for s in fast.iter_mut() {
                *s = RiseState::restore(s.snapshot()).unwrap();
            }
        }
        for _ in 0..40 {
            // Mostly the newest open pane, sometimes up to 10 panes
            // after it (out of order: a later add may land before); a
            // few busy keys and many rare ones.
            let p = b - 1 + if next(4) == 0 { next(11) } else { 0 };
            let key = K::from(if next(3) == 0 { next(8) } else { 8 + next(400) } as u32);
            let w = 1 + next(3);
            for s in std::iter::once(&mut full).chain(fast.iter_mut()) {
                s.add(stable_hash(&key), key.clone(), p, w).unwrap();
            }
        }
        for (i, s) in fast.iter_mut().enumerate() {
            let min_first = i as u64 + 1;
            let want = eval_with(&mut full, b, &geo, min_first, &rule);
            assert_eq!(
                eval_with(s, b, &geo, min_first, &rule),
                want,
                "boundary {b}"
            );
            passed[i] += want.len();
        }
        for s in std::iter::once(&mut full).chain(fast.iter_mut()) {
            s.finish(b, &geo);
        }
    }
    assert!(
        passed.iter().all(|&n| n > 50),
        "too few keys passed: {passed:?}"
    );
}

/// The operator's walk to the next boundary when `close` left panes
/// behind: evict them, then look again.
fn next_after_close<K: Key>(s: &mut RiseState<K>, geo: &Geometry, upto: u64) -> Option<u64> {
    let mut b = s.next_boundary()?;
    while b <= upto {
        s.evict_before(b.saturating_sub(geo.span()));
        match s.next_boundary() {
            Some(n) if n > b => b = n,
            Some(_) => return Some(b),
            None => return None,
        }
    }
    None
}

/// Leaving the pane that falls out of the span to `evict_some`, in
/// slices between batches of input, gives the boundaries, results and
/// snapshots that evicting it in `finish` gives: random input, with
/// gaps longer than the span.
#[test]
fn eviction_in_slices_matches_eviction_at_finish() {
    let geo = GEO4;
    let rule = |c: &[u64]| crate::rise::RiseRule::AllowFlat.holds(c);
    let mut next = numbers(0x2545_F491_4F6C_DD1D);
    let mut eager = RiseState::new(&geo, 1, true);
    let mut lazy = RiseState::new(&geo, 1, true);
    let (mut now, mut evaluated, mut passed) = (20u64, 0, 0);
    for round in 0..400 {
        let ahead = if next(12) == 0 { 13 + next(20) } else { 0 };
        for _ in 0..4 {
            for _ in 0..10 {
                let p = now + ahead + next(3);
                let key = if next(3) == 0 { next(8) } else { 8 + next(300) } as u32;
                let w = 1 + next(3);
                add(&mut eager, key, p, w);
                add(&mut lazy, key, p, w);
            }
            lazy.evict_some(next(40) as usize);
        }
        // The frontier passes every pane added so far.
        now += ahead + 3;
        loop {
            let want = eager.next_boundary().filter(|&b| b <= now);
            let got = next_after_close(&mut lazy, &geo, now);
            assert_eq!(got, want, "round {round}");
            let Some(b) = want else { break };
            eager.evict_before(b.saturating_sub(geo.span()));
            let results = eval_with(&mut eager, b, &geo, 1, &rule);
            assert_eq!(
                eval_with(&mut lazy, b, &geo, 1, &rule),
                results,
                "boundary {b}"
            );
            evaluated += 1;
            passed += results.len();
            eager.finish(b, &geo);
            lazy.close(b, &geo);
        }
        if round % 50 == 49 {
            lazy.evict_marked();
            assert_eq!(lazy.snapshot(), eager.snapshot(), "round {round}");
        }
    }
    assert!(
        evaluated > 300 && passed > 100,
        "{evaluated} boundaries, {passed} passed"
    );
}

/// Reading the next boundary's candidates ahead of its close, in
/// slices between batches of input (weight still landing in the last
/// pane, in the panes after it, and on keys not read yet), gives the
/// results of reading them all at the close: random input, with gaps.
#[test]
fn reading_ahead_matches_reading_at_the_close() {
    reads_ahead_as_at_the_close::<u32>();
}

/// The same, with keys that share their stable hash in threes: a kept
/// key's hash is read again at the close, with all its keys.
#[test]
fn reading_ahead_matches_reading_at_the_close_for_a_shared_hash() {
    reads_ahead_as_at_the_close::<Colliding>();
}

fn reads_ahead_as_at_the_close<K: Key + From<u32>>() {
    let geo = GEO4;
    let rule = |c: &[u64]| crate::rise::RiseRule::AllowFlat.holds(c);
    let mut next = numbers(0x5851_F42D_4C95_7F2D);
    // `plain` reads every candidate of the index at each close, `fast`
    // the spread index and the plan at the close, `early` ahead.
    let mut plain = RiseState::default();
    let mut fast = RiseState::new(&geo, 1, true);
    let mut early = RiseState::new(&geo, 1, true);
    let (mut now, mut evaluated, mut passed, mut read) = (20u64, 0, 0, 0);
    for round in 0..1500 {
        // Every later weight lands at or after pane `now`.
        let gap = if next(40) == 0 { 13 + next(20) } else { 0 };
        for _ in 0..3 {
            for _ in 0..8 {
                let p = now + gap + if next(3) == 0 { next(3) } else { 0 };
                let key = K::from(if next(3) == 0 { next(8) } else { 8 + next(200) } as u32);
                let w = 1 + next(3);
                for s in [&mut plain, &mut fast, &mut early] {
                    add(s, key.clone(), p, w);
                }
            }
            let budget = next(12) as usize;
            if !early.evict_some(budget) {
                early.read_ahead(&geo, 1, budget);
            }
        }
        now += gap + 1;
        loop {
            let want = plain.next_boundary().filter(|&b| b <= now);
            let got = next_after_close(&mut early, &geo, now);
            assert_eq!(got, want, "round {round}");
            let Some(b) = want else { break };
            plain.evict_before(b.saturating_sub(geo.span()));
            fast.evict_before(b.saturating_sub(geo.span()));
            let results = eval_with(&mut plain, b, &geo, 1, &rule);
            assert_eq!(eval_with(&mut fast, b, &geo, 1, &rule), results);
            read += early.ahead.as_ref().is_some_and(|a| a.b == b) as usize;
            let mut got = Vec::new();
            let mut counts = Vec::new();
            let n = early.evaluate_close(b, &geo, 1, &rule, &mut counts, |k, c| {
                got.push((k.clone(), c.to_vec()))
            });
            got.sort();
            assert_eq!(n as usize, got.len());
            assert_eq!(got, results, "boundary {b}");
            evaluated += 1;
            passed += results.len();
            plain.finish(b, &geo);
            fast.finish(b, &geo);
            early.close(b, &geo);
        }
        if round % 100 == 99 {
            early.evict_marked();
            assert_eq!(early.snapshot(), fast.snapshot(), "round {round}");
        }
    }
    assert!(
        evaluated > 1000 && passed > 300 && read > 500,
        "{evaluated} boundaries, {passed} passed, {read} read ahead"
    );
}

/// A weight below the span (which progress rules out once the
/// boundary before is closed) drops what was read ahead instead of
/// making it wrong.
#[test]
fn a_weight_below_the_span_drops_the_read_ahead() {
    let geo = GEO4;
    let rule = |c: &[u64]| crate::rise::RiseRule::AllowFlat.holds(c);
    let mut s = RiseState::new(&geo, 1, true);
    for p in 0..13 {
        add(&mut s, 1, p, 1);
        add(&mut s, 2, p, 13 - p);
    }
    s.finish(12, &geo);
    assert!(!s.read_ahead(&geo, 1, 100));
    assert!(s.ahead.is_some());
    add(&mut s, 3, 0, 1);
    assert!(s.ahead.is_none());
    s.evict_before(1);
    let want = eval_with(&mut s.clone(), 13, &geo, 1, &rule);
    let mut got = Vec::new();
    s.evaluate_close(13, &geo, 1, &rule, &mut Vec::new(), |k, c| {
        got.push((*k, c.to_vec()))
    });
    assert_eq!(got, want);
    assert_eq!(got.len(), 1, "{got:?}");
}

/// New keys that make the table grow (which moves every key to a new
/// bucket) drop what was read ahead, which names kept keys by bucket;
/// the close then reads at the close and finds what a full read finds.
#[test]
fn a_growing_table_drops_the_read_ahead() {
    let geo = GEO4;
    let rule = |c: &[u64]| crate::rise::RiseRule::AllowFlat.holds(c);
    let mut s = RiseState::new(&geo, 1, true);
    for p in 0..13 {
        for key in 1..=3 {
            add(&mut s, key, p, 1);
        }
    }
    s.finish(12, &geo);
    assert!(!s.read_ahead(&geo, 1, 100));
    assert!(s.ahead.as_ref().is_some_and(|a| a.buckets.len() == 3));
    let buckets = s.table.num_buckets();
    for key in 100..2100 {
        add(&mut s, key, 12, 1);
    }
    assert!(s.table.num_buckets() > buckets);
    // Weight on a kept key after the table grew.
    add(&mut s, 2, 12, 40);
    let want = eval_with(&mut s.clone(), 13, &geo, 1, &rule);
    let mut got = Vec::new();
    s.evaluate_close(13, &geo, 1, &rule, &mut Vec::new(), |k, c| {
        got.push((*k, c.to_vec()))
    });
    got.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn panes_stay_small() {
    assert_eq!(std::mem::size_of::<Panes>(), 16);
}

#[test]
fn counts_per_window_and_candidates() {
    let mut s = RiseState::default();
    add(&mut s, 1, 10, 1);
    add(&mut s, 1, 12, 2);
    add(&mut s, 1, 15, 3);
    add(&mut s, 2, 13, 5); // oldest pane not in the first window of 16
    add(&mut s, 1, 10, 1);
    assert_eq!(s.next_boundary(), Some(11));
    // Boundary 16: windows [10,12) [12,14) [14,16).
    assert_eq!(eval(&mut s, 16, 1), vec![(1, vec![2, 2, 3])]);
    assert_eq!(
        eval(&mut s, 16, 0),
        vec![(1, vec![2, 2, 3]), (2, vec![0, 5, 0])]
    );
    s.evict_before(11);
    s.finish(16, &GEO);
    // Boundary 17: windows [11,13) [13,15) [15,17).
    assert_eq!(eval(&mut s, 17, 1), vec![(1, vec![2, 0, 3])]);
    s.finish(17, &GEO);
    assert_eq!(s.len(), 2);
    s.finish(19, &GEO); // evicts below 14: key 1 keeps pane 15, key 2 goes
    assert_eq!(s.len(), 1);
    assert_eq!(s.next_boundary(), Some(20));
    s.finish(21, &GEO); // evicts below 16
    assert!(s.is_empty());
    assert_eq!(s.next_boundary(), None);
}

#[test]
fn out_of_order_panes_refile_the_key_once() {
    let mut s = RiseState::default();
    add(&mut s, 7, 20, 1);
    add(&mut s, 7, 18, 1); // older: stale entry left under 20
    assert_eq!(s.next_boundary(), Some(19));
    s.evict_before(19); // drops 18, refiles under 20 (twice listed now)
    assert_eq!(s.len(), 1);
    assert_eq!(eval(&mut s, 22, 0), vec![(7, vec![0, 0, 1])]);
    assert_eq!(eval(&mut s, 26, 1), vec![(7, vec![1, 0, 0])]);
    s.evict_before(21);
    assert!(s.is_empty());
}

#[test]
fn rejects_overflow_and_far_panes() {
    let mut s = RiseState::default();
    add(&mut s, 1, 5, u32::MAX as u64);
    assert_eq!(s.add(stable_hash(&1u32), 1, 5, 1), Err(AddError::Overflow));
    assert_eq!(
        s.add(stable_hash(&2u32), 2, 5 + (1 << 32), 1),
        Err(AddError::OutOfRange)
    );
    assert!(s.add(stable_hash(&3u32), 3, 1 << 40, 1).is_err());
}

#[test]
fn small_keys_cost_well_under_100_bytes() {
    let mut s = RiseState::default();
    let keys = 100_000u32;
    for k in 0..keys {
        add(&mut s, k, 1_000 + (k % 60) as u64, 1);
        if k % 10 == 0 {
            // A tenth of the keys are active in several panes.
            for p in 1..6 {
                add(&mut s, k, 1_000 + (k % 60) as u64 + p, 2);
            }
        }
    }
    let per_key = s.approx_bytes() / keys as usize;
    assert!(per_key < 64, "{per_key} bytes per key");
}

#[test]
fn snapshot_round_trips() {
    let mut s = RiseState::default();
    for k in 0..50u32 {
        add(&mut s, k, 100 + (k % 7) as u64, k as u64 + 1);
        add(&mut s, k, 103, 2);
    }
    s.finish(99, &GEO);
    let json = serde_json::to_string(&s).unwrap();
    let mut back: RiseState<u32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.snapshot(), s.snapshot());
    assert_eq!(back.next_boundary(), Some(101));
    assert_eq!(eval(&mut back, 106, 1), eval(&mut s, 106, 1));
}
