//! The state of a keyed process function on one worker, apart from timely:
//! each key's state and timers, and the records not yet applied.

use std::collections::{BTreeMap, BTreeSet};

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{Data, Key};
use serde::{Deserialize, Serialize};

use super::ProcessFunction;

/// What a [`ProcessFunction`] may do while it handles one record or timer:
/// read the time, set and delete the key's timers, and emit outputs at the
/// current time.
pub struct ProcessContext<'a, O> {
    time: EventTime,
    timers: &'a mut Vec<EventTime>,
    changes: &'a mut Vec<(EventTime, bool)>,
    out: &'a mut Vec<(EventTime, O)>,
}

impl<O> ProcessContext<'_, O> {
    /// The event time being handled: the record's, or the timer's.
    pub fn time(&self) -> EventTime {
        self.time
    }

    /// The key's pending timers, earliest first.
    pub fn timers(&self) -> &[EventTime] {
        self.timers
    }

    /// Sets a timer of the key at `at`; one already set there is kept once.
    /// A time before the current one is taken as the current time: the
    /// timer fires right after the records of that time.
    pub fn set_timer(&mut self, at: EventTime) {
        let at = at.max(self.time);
        if let Err(i) = self.timers.binary_search(&at) {
            self.timers.insert(i, at);
            self.changes.push((at, true));
        }
    }

    /// Deletes the key's timer at `at`, if there is one.
    pub fn delete_timer(&mut self, at: EventTime) {
        if let Ok(i) = self.timers.binary_search(&at) {
            self.timers.remove(i);
            self.changes.push((at, false));
        }
    }

    /// Deletes every timer of the key.
    pub fn delete_timers(&mut self) {
        for at in self.timers.drain(..) {
            self.changes.push((at, false));
        }
    }

    /// Emits `out` with the current event time.
    pub fn emit(&mut self, out: O) {
        self.out.push((self.time, out));
    }
}

/// One key's state and its timers (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<S> {
    state: S,
    timers: Vec<EventTime>,
}

impl<S: Default + PartialEq> Entry<S> {
    /// Whether the key can be forgotten: default state, no timers.
    fn is_empty(&self) -> bool {
        self.timers.is_empty() && self.state == S::default()
    }
}

/// The timer index by time, with the timer changes of the callback
/// running now.
struct Index<'a, K> {
    timers: &'a mut BTreeSet<(EventTime, K)>,
    changes: &'a mut Vec<(EventTime, bool)>,
}

impl<K: Key> Index<'_, K> {
    /// Fires `key`'s timers below `t`, then applies its record at `t`.
    fn apply<F>(
        &mut self,
        f: &F,
        key: &K,
        entry: &mut Entry<F::State>,
        t: EventTime,
        value: F::In,
        out: &mut Vec<(EventTime, F::Out)>,
    ) where
        F: ProcessFunction<Key = K>,
    {
        while let Some(&at) = entry.timers.first() {
            if at >= t {
                break;
            }
            entry.timers.remove(0);
            self.timers.remove(&(at, key.clone()));
            self.fire(f, key, entry, at, out);
        }
        let mut ctx = ProcessContext {
            time: t,
            timers: &mut entry.timers,
            changes: self.changes,
            out,
        };
        f.on_event(key, &mut entry.state, value, &mut ctx);
        self.sync(key);
    }

    /// Runs `key`'s timer at `t` (already taken off its lists).
    fn fire<F>(
        &mut self,
        f: &F,
        key: &K,
        entry: &mut Entry<F::State>,
        t: EventTime,
        out: &mut Vec<(EventTime, F::Out)>,
    ) where
        F: ProcessFunction<Key = K>,
    {
        let mut ctx = ProcessContext {
            time: t,
            timers: &mut entry.timers,
            changes: self.changes,
            out,
        };
        f.on_timer(key, &mut entry.state, &mut ctx);
        self.sync(key);
    }

    /// Mirrors the callback's timer changes in the index by time.
    fn sync(&mut self, key: &K) {
        for (at, set) in self.changes.drain(..) {
            if set {
                self.timers.insert((at, key.clone()));
            } else {
                self.timers.remove(&(at, key.clone()));
            }
        }
    }
}

/// The per-key states, timers and pending records of one keyed process
/// function on one worker. Serializable, so a checkpoint can store it; the
/// operator behind [`super::KeyedProcess`] keeps one per worker, and it
/// can drive a [`ProcessFunction`] without a dataflow too (for tests).
///
/// # Order
/// [`ProcessState::advance`] applies, for each key, its records and timers
/// below a bound in event-time order. Records of one key at the same time
/// are applied in the order of their values (`In: Ord`), and all of them
/// before a timer at that time: a record exactly at a timer's time can
/// still cancel it. Keys do not see each other, so the order across keys
/// is left open.
///
/// A key whose state is back at `State::default()` with no timers is
/// forgotten.
///
/// # Examples
/// ```
/// use keyflow_operators::process::{ProcessContext, ProcessFunction, ProcessState};
///
/// /// Emits a key's event count once it has been quiet for 10 ms.
/// struct Quiet;
/// impl ProcessFunction for Quiet {
///     type Key = char;
///     type In = ();
///     type State = u64;
///     type Out = u64;
///     fn on_event(&self, _: &char, count: &mut u64, _: (), ctx: &mut ProcessContext<'_, u64>) {
///         *count += 1;
///         ctx.delete_timers();
///         ctx.set_timer(ctx.time() + 10);
///     }
///     fn on_timer(&self, _: &char, count: &mut u64, ctx: &mut ProcessContext<'_, u64>) {
///         ctx.emit(std::mem::take(count));
///     }
/// }
///
/// let mut state = ProcessState::new();
/// for ts in [0, 5, 15] {
///     state.push(ts, 'a', ());
/// }
/// let mut out = Vec::new();
/// state.advance(&Quiet, 100, &mut out);
/// // 15 is exactly 10 after 5: it cancels the timer at 15.
/// assert_eq!(out, vec![(25, 3)]);
/// assert!(state.is_empty());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Key, V: Data, S: Data")]
pub struct ProcessState<K, V, S> {
    keys: StableMap<K, Entry<S>>,
    pending: BTreeMap<EventTime, Vec<(K, V)>>,
    /// Every key's timers, by time; rebuilt from `keys` after a restore.
    #[serde(skip)]
    timers: BTreeSet<(EventTime, K)>,
    /// Timer changes of the callback running now.
    #[serde(skip)]
    changes: Vec<(EventTime, bool)>,
}

impl<K: Key, V: Data, S: Data + Default + PartialEq> Default for ProcessState<K, V, S> {
    fn default() -> Self {
        ProcessState {
            keys: StableMap::default(),
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            changes: Vec::new(),
        }
    }
}

impl<K: Key, V: Data, S: Data + Default + PartialEq> ProcessState<K, V, S> {
    /// No keys, no records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a record of `key` at `ts` until [`ProcessState::advance`]
    /// passes it.
    pub fn push(&mut self, ts: EventTime, key: K, value: V) {
        self.pending.entry(ts).or_default().push((key, value));
    }

    /// The earliest time of a pending record or timer: nothing below it
    /// is left to apply.
    pub fn next_time(&self) -> Option<EventTime> {
        let record = self.pending.first_key_value().map(|(t, _)| *t);
        let timer = self.timers.first().map(|(t, _)| *t);
        match (record, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether no key has state or timers and no record is pending.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.pending.is_empty()
    }

    /// How many keys have state or timers.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// How many records wait to be applied.
    pub fn pending(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// The state of `key`, if it has any.
    pub fn state(&self, key: &K) -> Option<&S> {
        self.keys.get(key).map(|e| &e.state)
    }

    /// Applies every pending record and fires every timer below `bound`
    /// (see the order above), appending the outputs to `out`. Returns how
    /// many records it applied.
    pub fn advance<F>(&mut self, f: &F, bound: EventTime, out: &mut Vec<(EventTime, F::Out)>) -> u64
    where
        F: ProcessFunction<Key = K, In = V, State = S>,
        V: Ord,
    {
        let rest = self.pending.split_off(&bound);
        let ready = std::mem::replace(&mut self.pending, rest);
        let mut index = Index {
            timers: &mut self.timers,
            changes: &mut self.changes,
        };
        let mut applied = 0;
        // In time order; keys do not see each other, so only the records
        // of one time need sorting, for the ties of one key.
        for (t, mut list) in ready {
            if list.len() > 1 {
                list.sort_unstable();
            }
            for (key, value) in list {
                applied += 1;
                let mut fresh = None;
                let entry = match self.keys.get_mut(&key) {
                    Some(entry) => entry,
                    None => fresh.insert(Entry::default()),
                };
                index.apply(f, &key, entry, t, value, out);
                let empty = entry.is_empty();
                match fresh {
                    Some(entry) if !empty => {
                        self.keys.insert(key, entry);
                    }
                    None if empty => {
                        self.keys.remove(&key);
                    }
                    _ => {}
                }
            }
        }
        // The timers left below the bound belong to keys without records
        // after them here.
        while let Some((t, _)) = index.timers.first() {
            if *t >= bound {
                break;
            }
            let Some((t, key)) = index.timers.pop_first() else {
                break;
            };
            let Some(entry) = self.keys.get_mut(&key) else {
                debug_assert!(false, "a timer of a key without state");
                continue;
            };
            entry.timers.retain(|x| *x != t);
            index.fire(f, &key, entry, t, out);
            if entry.is_empty() {
                self.keys.remove(&key);
            }
        }
        applied
    }

    /// Keeps only the keys (with their records) for which `keep` holds, as
    /// a restore does for the keys a worker owns.
    pub fn retain_keys(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.keys.retain(|k, _| keep(k));
        self.timers.retain(|(_, k)| keep(k));
        self.pending.retain(|_, list| {
            list.retain(|(k, _)| keep(k));
            !list.is_empty()
        });
    }

    /// Moves every key and record of `other` into this state (their keys
    /// must be disjoint, as the parts of a checkpoint are).
    pub fn absorb(&mut self, other: ProcessState<K, V, S>) {
        for (key, entry) in other.keys {
            for t in &entry.timers {
                self.timers.insert((*t, key.clone()));
            }
            self.keys.insert(key, entry);
        }
        for (t, list) in other.pending {
            self.pending.entry(t).or_default().extend(list);
        }
    }

    /// Rebuilds the timer index from the keys, after decoding.
    pub(crate) fn rebuild_timers(&mut self) {
        self.timers = self
            .keys
            .iter()
            .flat_map(|(k, e)| e.timers.iter().map(move |t| (*t, k.clone())))
            .collect();
    }
}
