//! One pane's partial aggregates by key, and the merge of a window's panes
//! in key order.
//!
//! A pane fills as a hash map. The first window that needs it sorts it by
//! key, once; windows then merge their sorted panes without hashing, and
//! their results come out in key order, so a sink that sorts each time's
//! records finds them already sorted (a linear check instead of a sort).

use std::cmp::Ordering;
use std::hint::select_unpredictable;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Aggregator, Key};
use crate::hash::StableMap;
use crate::merge::pairwise_until;

/// One pane's accumulators by key.
#[derive(Debug, Clone)]
pub enum Pane<K, A> {
    /// Still filling: partials are merged by hash lookup.
    Filling(StableMap<K, A>),
    /// Sorted by key, each key once; a late partial for a key it holds is
    /// merged in place, found by binary search.
    Sorted(Vec<(K, A)>),
}

impl<K, A> Default for Pane<K, A> {
    fn default() -> Self {
        Pane::Filling(StableMap::default())
    }
}

impl<K: Key, A: Clone> Pane<K, A> {
    /// An empty pane with room for `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        Pane::Filling(StableMap::with_capacity_and_hasher(
            keys,
            Default::default(),
        ))
    }

    /// How many keys the pane holds.
    pub fn len(&self) -> usize {
        match self {
            Pane::Filling(map) => map.len(),
            Pane::Sorted(vec) => vec.len(),
        }
    }

    /// Whether the pane holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The accumulator of `key`.
    pub fn get(&self, key: &K) -> Option<&A> {
        match self {
            Pane::Filling(map) => map.get(key),
            Pane::Sorted(vec) => vec
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &vec[i].1),
        }
    }

    /// Merges `acc` into `key`'s accumulator (or makes it the accumulator).
    pub fn merge<V, G: Aggregator<V, Acc = A>>(&mut self, agg: &G, key: K, acc: A) {
        match self {
            Pane::Filling(map) => match map.get_mut(&key) {
                Some(existing) => agg.merge(existing, &acc),
                None => {
                    map.insert(key, acc);
                }
            },
            Pane::Sorted(vec) => match vec.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => agg.merge(&mut vec[i].1, &acc),
                Err(_) => {
                    // A new key would shift the vector; many late keys would
                    // make that quadratic. The pane fills again instead, and
                    // the next window that needs it sorts it again.
                    let mut map: StableMap<K, A> = std::mem::take(vec).into_iter().collect();
                    map.insert(key, acc);
                    *self = Pane::Filling(map);
                }
            },
        }
    }

    /// Sets `key`'s accumulator to `acc`, replacing any.
    pub fn insert(&mut self, key: K, acc: A) {
        match self {
            Pane::Filling(map) => {
                map.insert(key, acc);
            }
            Pane::Sorted(vec) => match vec.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => vec[i].1 = acc,
                Err(i) => vec.insert(i, (key, acc)),
            },
        }
    }

    /// The entries in key order, sorting them first if the pane is filling.
    pub fn sorted(&mut self) -> &[(K, A)] {
        if let Pane::Filling(map) = self {
            let mut vec: Vec<(K, A)> = std::mem::take(map).into_iter().collect();
            // Keys are unique, so an unstable sort gives one order.
            vec.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            *self = Pane::Sorted(vec);
        }
        match self {
            Pane::Sorted(vec) => vec,
            Pane::Filling(_) => &[],
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&K, &A)> + '_> {
        match self {
            Pane::Filling(map) => Box::new(map.iter()),
            Pane::Sorted(vec) => Box::new(vec.iter().map(|(k, a)| (k, a))),
        }
    }

    /// Every entry, moved out, in no particular order.
    pub fn into_entries(self) -> Box<dyn Iterator<Item = (K, A)>>
    where
        K: 'static,
        A: 'static,
    {
        match self {
            Pane::Filling(map) => Box::new(map.into_iter()),
            Pane::Sorted(vec) => Box::new(vec.into_iter()),
        }
    }
}

/// Written as a map of key to accumulator however the pane is held: the
/// form checkpoints had before panes were sorted, so both forms, and older
/// checkpoints, read back alike.
impl<K: Key, A: Clone + Serialize> Serialize for Pane<K, A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, K: Key, A: Deserialize<'de>> Deserialize<'de> for Pane<K, A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StableMap::<K, A>::deserialize(deserializer).map(Pane::Filling)
    }
}

/// Calls `give` once per key of `runs` (each sorted by key, oldest pane
/// first), in key order, with the merge of its accumulators, oldest first.
pub fn merge_in_key_order<V, K: Key, G: Aggregator<V>>(
    runs: Vec<&[(K, G::Acc)]>,
    agg: &G,
    mut give: impl FnMut(&K, &G::Acc),
) {
    if let [only] = runs.as_slice() {
        only.iter().for_each(|(k, a)| give(k, a));
        return;
    }
    // Adjacent runs are merged pairwise, so an older pane's accumulator is
    // always merged before a newer one's.
    let first: Vec<Vec<(&K, G::Acc)>> = runs
        .chunks(2)
        .map(|pair| match pair {
            [older, newer] => merge_pair(older, newer, agg),
            _ => pair.iter().flat_map(|run| cloned(run)).collect(),
        })
        .collect();
    // The last two runs go to `give` as they merge: the window's whole
    // merge is never built.
    let mut last = pairwise_until(first, 2, |older, newer| {
        let mut out = Vec::with_capacity(older.len() + newer.len());
        merge_moved(older, newer, agg, |entry| out.push(entry));
        out
    });
    let newer = last.pop().unwrap_or_default();
    let older = last.pop().unwrap_or_default();
    merge_moved(older, newer, agg, |(k, a)| give(k, &a));
}

/// A run's entries with their accumulators cloned.
fn cloned<K, A: Clone>(run: &[(K, A)]) -> impl ExactSizeIterator<Item = (&K, A)> {
    run.iter().map(|(k, a)| (k, a.clone()))
}

// How two runs are merged depends on the key. The keys of two panes
// interleave at random, so a branch on their order is mispredicted about
// every other entry. Keys that own no heap memory (numbers, tuples of
// them) are compared where the panes hold them, which the merges read in
// order: for them the entry to take is picked without a branch, and that
// made a sliding count by `u64` keys about 12% faster. Keys that own heap
// memory (strings, shared names) are compared through their pointers, at
// scattered addresses, and a comparison may miss the cache: the branch lets
// the processor start the next comparison's loads before this one's are
// done, which a pick without a branch makes wait (a count by `String`
// keys ran 40% slower so). `needs_drop` tells the two apart.

/// The merge of two panes' sorted entries, accumulators cloned; a key in
/// both gets the older pane's accumulator merged with the newer one's.
fn merge_pair<'k, V, K: Key, G: Aggregator<V>>(
    older: &'k [(K, G::Acc)],
    newer: &'k [(K, G::Acc)],
    agg: &G,
) -> Vec<(&'k K, G::Acc)> {
    if !std::mem::needs_drop::<K>() {
        return merge_panes(older, newer, agg);
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    merge_two(cloned(older), cloned(newer), agg, |entry| out.push(entry));
    out
}

/// Hands `out` the merge of two merged runs in key order, accumulators
/// moved; a key in both gets the older run's accumulator merged with the
/// newer one's.
fn merge_moved<'k, V, K: Key, G: Aggregator<V>>(
    older: Vec<(&'k K, G::Acc)>,
    newer: Vec<(&'k K, G::Acc)>,
    agg: &G,
    out: impl FnMut((&'k K, G::Acc)),
) {
    if std::mem::needs_drop::<K>() {
        merge_two(older.into_iter(), newer.into_iter(), agg, out);
    } else {
        merge_merged(older, newer, agg, out);
    }
}

/// [`merge_pair`] for keys that own no heap memory: the entry to take is
/// picked without a branch.
fn merge_panes<'k, V, K: Key, G: Aggregator<V>>(
    older: &'k [(K, G::Acc)],
    newer: &'k [(K, G::Acc)],
    agg: &G,
) -> Vec<(&'k K, G::Acc)> {
    // Room for both: the merge is never longer, and never grows.
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(p), Some(q)) = (older.get(i), newer.get(j)) {
        let order = p.0.cmp(&q.0);
        let (k, a) = select_unpredictable(order == Ordering::Greater, q, p);
        let mut acc = a.clone();
        if order == Ordering::Equal {
            agg.merge(&mut acc, &q.1);
        }
        out.push((k, acc));
        i += usize::from(order != Ordering::Greater);
        j += usize::from(order != Ordering::Less);
    }
    let rest = older[i..].iter().chain(&newer[j..]);
    out.extend(rest.map(|(k, a)| (k, a.clone())));
    out
}

/// [`merge_moved`] for keys that own no heap memory: the entry to take is
/// picked without a branch.
fn merge_merged<'k, V, K: Key, G: Aggregator<V>>(
    older: Vec<(&'k K, G::Acc)>,
    newer: Vec<(&'k K, G::Acc)>,
    agg: &G,
    mut out: impl FnMut((&'k K, G::Acc)),
) {
    let mut runs = [older.into_iter(), newer.into_iter()];
    loop {
        let [a, b] = &runs;
        let (Some(p), Some(q)) = (a.as_slice().first(), b.as_slice().first()) else {
            break;
        };
        let order = p.0.cmp(q.0);
        let take = select_unpredictable(order == Ordering::Greater, 1, 0);
        let Some(mut entry) = runs[take].next() else {
            break;
        };
        if order == Ordering::Equal {
            if let Some((_, acc)) = runs[1].next() {
                agg.merge(&mut entry.1, &acc);
            }
        }
        out(entry);
    }
    let [a, b] = runs;
    a.chain(b).for_each(out);
}

/// The merge of two key-sorted runs, with a branch on the order of their
/// keys (for keys that own heap memory); a key in both gets the first
/// run's (the older pane's) accumulator merged with the second's.
fn merge_two<'k, V, K: Key, G: Aggregator<V>>(
    mut a: impl Iterator<Item = (&'k K, G::Acc)>,
    mut b: impl Iterator<Item = (&'k K, G::Acc)>,
    agg: &G,
    mut out: impl FnMut((&'k K, G::Acc)),
) {
    let (mut x, mut y) = (a.next(), b.next());
    loop {
        match (x.take(), y.take()) {
            (Some(p), Some(q)) => match p.0.cmp(q.0) {
                Ordering::Less => {
                    out(p);
                    (x, y) = (a.next(), Some(q));
                }
                Ordering::Greater => {
                    out(q);
                    (x, y) = (Some(p), b.next());
                }
                Ordering::Equal => {
                    let (k, mut acc) = p;
                    agg.merge(&mut acc, &q.1);
                    out((k, acc));
                    (x, y) = (a.next(), b.next());
                }
            },
            (p, q) => {
                p.into_iter().chain(a).for_each(&mut out);
                q.into_iter().chain(b).for_each(out);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Keeps values in the order merged, so a merge out of pane order shows.
    #[derive(Clone)]
    struct Concat;

    impl Aggregator<u32> for Concat {
        type Acc = Vec<u32>;
        type Output = Vec<u32>;
        fn init(&self) -> Vec<u32> {
            Vec::new()
        }
        fn add(&self, acc: &mut Vec<u32>, value: u32) {
            acc.push(value);
        }
        fn merge(&self, acc: &mut Vec<u32>, other: &Vec<u32>) {
            acc.extend_from_slice(other);
        }
        fn finish(&self, acc: &Vec<u32>) -> Vec<u32> {
            acc.clone()
        }
    }

    fn collect() -> Concat {
        Concat
    }

    /// The merge of random panes, keyed by `key` of a number below 40, as
    /// merging their maps in pane order gives it.
    fn check_merge<K: Key>(key: impl Fn(u16) -> K) {
        let agg = collect();
        let mut rng = StdRng::seed_from_u64(11);
        for panes in 1..12 {
            let mut filled: Vec<Pane<K, Vec<u32>>> = Vec::new();
            let mut want: std::collections::BTreeMap<K, Vec<u32>> = Default::default();
            for p in 0..panes {
                let mut pane = Pane::default();
                for _ in 0..rng.gen_range(0..60) {
                    let k = key(rng.gen_range(0..40u16));
                    let value = p * 1000 + rng.gen_range(0..1000);
                    pane.merge(&agg, k, vec![value]);
                }
                for (k, a) in pane.iter() {
                    want.entry(k.clone()).or_default().extend(a.iter().copied());
                }
                filled.push(pane);
            }
            let runs: Vec<&[(K, Vec<u32>)]> = filled.iter_mut().map(|p| p.sorted()).collect();
            let mut got = Vec::new();
            merge_in_key_order(runs, &agg, |k, a| got.push((k.clone(), a.clone())));
            let want: Vec<_> = want.into_iter().collect();
            assert_eq!(got, want, "{panes} panes");
        }
    }

    /// Plain keys are merged without a branch, keys that own heap memory
    /// with one: both agree with merging maps.
    #[test]
    fn merging_sorted_panes_agrees_with_merging_maps_in_pane_order() {
        check_merge(|k| k);
        check_merge(|k| format!("key {k}"));
    }

    #[test]
    fn a_sorted_pane_takes_late_partials() {
        let agg = collect();
        let mut pane: Pane<u16, Vec<u32>> = Pane::default();
        for k in [5, 1, 9] {
            pane.merge(&agg, k, vec![u32::from(k)]);
        }
        pane.sorted();
        pane.merge(&agg, 9, vec![90]);
        assert!(
            matches!(pane, Pane::Sorted(_)),
            "a known key merges in place"
        );
        pane.merge(&agg, 4, vec![40]);
        assert!(matches!(pane, Pane::Filling(_)), "a new key fills again");
        assert_eq!(pane.get(&9), Some(&vec![9, 90]));
        assert_eq!(pane.get(&2), None);
        let keys: Vec<u16> = pane.sorted().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 4, 5, 9]);
        assert_eq!(pane.get(&4), Some(&vec![40]));
    }

    #[test]
    fn a_pane_reads_back_the_same_sorted_or_not() {
        let agg = collect();
        let mut pane: Pane<u16, Vec<u32>> = Pane::default();
        for k in [30, 3, 17, 8] {
            pane.merge(&agg, k, vec![u32::from(k) * 2]);
        }
        let filling = crate::checkpoint::encode(&pane).unwrap();
        // What a checkpoint held before panes could be sorted.
        let map: StableMap<u16, Vec<u32>> = pane.iter().map(|(k, a)| (*k, a.clone())).collect();
        assert_eq!(crate::checkpoint::encode(&map).unwrap(), filling);
        pane.sorted();
        let sorted = crate::checkpoint::encode(&pane).unwrap();
        for bytes in [filling, sorted] {
            let mut back: Pane<u16, Vec<u32>> = crate::checkpoint::decode(&bytes, "pane").unwrap();
            let entries = back.sorted().to_vec();
            assert_eq!(
                entries,
                [(3, vec![6]), (8, vec![16]), (17, vec![34]), (30, vec![60])]
            );
        }
    }
}
