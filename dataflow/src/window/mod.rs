//! Keyed, windowed aggregation.
//!
//! `events.key_by(..).window(spec).aggregate(id, agg)` runs in two steps, the
//! shape of timely's `wordcount` example:
//! 1. a pre-aggregation on each worker, before the exchange, that combines
//!    the records of one key and pane (or session) into one partial result;
//! 2. after an exchange on the stable hash of the key, a stateful operator
//!    that merges partials, holds a capability for every pending window end,
//!    and emits a window's result once the frontier passes its end.
//!
//! Results travel at time `end` and carry event time `end`, so a later
//! windowed operator sees them as on time.

mod aggregate;
mod panes;
mod pre;
mod session;
mod spec;

use std::hash::Hash;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map as _;

pub use aggregate::{Aggregator, Count, Data, Fold, Reduce, Sum};
pub use spec::WindowSpec;

use crate::error::Result;
use crate::hash::stable_hash;
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use std::sync::Arc;

/// What a windowed operator does with late records (those older than their
/// partition's watermark). Nothing is dropped without a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lateness {
    /// Drop them and count them in `late_dropped`.
    #[default]
    Drop,
    /// Send them, unaggregated, to the operator's `late` output.
    SideOutput,
    /// Keep window state until the watermark passes `end + ms`; each late
    /// record inside that bound re-emits its windows' results as updates.
    Allowed(u64),
}

/// One window's result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowResult<K, O> {
    /// The key.
    pub key: K,
    /// First millisecond of the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
    /// The aggregate.
    pub value: O,
    /// `true` when this re-emits an earlier result because of a late record.
    pub update: bool,
}

/// What a windowed aggregation returns: its results and its late records
/// (empty unless [`Lateness::SideOutput`] is chosen).
pub struct WindowOut<'scope, K, O, V> {
    /// Window results at time `end`, with event time `end`.
    pub results: EventStream<'scope, WindowResult<K, O>>,
    /// Late records, at the time they were read.
    pub late: EventStream<'scope, (K, V)>,
}

/// Partial aggregates crossing the exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Partial<K, V, A> {
    /// The combined records of one key in one pane (`start` is the pane) or
    /// one session piece (`start..=last` are its first and last records).
    Agg {
        key: K,
        start: EventTime,
        last: EventTime,
        acc: A,
    },
    /// One late record, kept whole for allowed lateness.
    Late { ts: EventTime, key: K, value: V },
}

impl<K, V, A> Partial<K, V, A> {
    fn key(&self) -> &K {
        match self {
            Partial::Agg { key, .. } | Partial::Late { key, .. } => key,
        }
    }
}

/// The output handle of an operator emitting window results.
pub(crate) type ResultOutput<'a, K, O> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    EventTime,
    timely::container::CapacityContainerBuilder<Vec<(EventTime, WindowResult<K, O>)>>,
>;

/// Late records waiting for their time to complete, by that time.
///
/// Both windowed operators apply late records only once the time they were
/// read at is complete (no more messages at it), in time order: that is what
/// keeps their updates independent of scheduling.
pub(crate) struct LateStash<K, V> {
    by_time: std::collections::BTreeMap<EventTime, LateBatch<K, V>>,
}

/// The records read late at one time, with a capability for that time.
type LateBatch<K, V> = (
    timely::dataflow::operators::Capability<EventTime>,
    Vec<(EventTime, K, V)>,
);

impl<K, V> LateStash<K, V> {
    pub(crate) fn new() -> Self {
        LateStash {
            by_time: std::collections::BTreeMap::new(),
        }
    }

    /// Keeps a late record read at `time`, holding a capability for it.
    pub(crate) fn stash(
        &mut self,
        cap: &timely::dataflow::operators::Capability<EventTime>,
        time: EventTime,
        record: (EventTime, K, V),
    ) {
        self.by_time
            .entry(time)
            .or_insert_with(|| (cap.delayed(&time), Vec::new()))
            .1
            .push(record);
    }

    /// The earliest stashed time that `frontier` has passed, with its
    /// capability and records.
    pub(crate) fn next_complete(
        &mut self,
        frontier: &timely::progress::frontier::MutableAntichain<EventTime>,
    ) -> Option<(EventTime, LateBatch<K, V>)> {
        let t = *self.by_time.first_key_value()?.0;
        if frontier.less_equal(&t) {
            return None;
        }
        self.next_below(t + 1)
    }

    /// The earliest stashed time below `bound`, with its capability and
    /// records.
    pub(crate) fn next_below(&mut self, bound: EventTime) -> Option<(EventTime, LateBatch<K, V>)> {
        let entry = self.by_time.first_entry()?;
        let t = *entry.key();
        if t >= bound {
            return None;
        }
        Some((t, entry.remove()))
    }
}

/// Key types: hashable (stably), comparable, and able to cross processes.
pub trait Key: Data + Hash + Eq + Ord {}
impl<T: Data + Hash + Eq + Ord> Key for T {}

/// Extension trait that keys an event stream.
pub trait KeyBy<'scope, D> {
    /// Splits each record into `(key, value)`. The exchange that routes keys
    /// to workers happens later, after local pre-aggregation.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::{capture, Captured};
    ///
    /// let out = Captured::new();
    /// let sink = out.clone();
    /// run(&RunConfig::threads(2), move |worker, ctx| {
    ///     let sink = sink.clone();
    ///     worker.dataflow(|scope| {
    ///         let words = IterSource::new("words", 1, |_| {
    ///             vec![(1, "a"), (2, "b"), (3, "a")].into_iter()
    ///         });
    ///         let counts = source(scope, ctx, words, &SourceConfig::default())?
    ///             .key_by("by-word", |w| (w.to_string(), ()))
    ///             .window(WindowSpec::tumbling(10))
    ///             .count(ctx, "word-counts")?;
    ///         capture(counts.results, &sink);
    ///         Ok(())
    ///     })
    /// })
    /// .unwrap();
    /// let values: Vec<_> = out.sorted().into_iter().map(|(_, r)| (r.key, r.value)).collect();
    /// assert_eq!(values, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    /// ```
    fn key_by<K, V, F>(self, name: &str, f: F) -> Keyed<'scope, K, V>
    where
        K: Key,
        V: Data,
        F: FnMut(D) -> (K, V) + 'static;
}

impl<'scope, D: 'static> KeyBy<'scope, D> for EventStream<'scope, D> {
    fn key_by<K, V, F>(self, name: &str, mut f: F) -> Keyed<'scope, K, V>
    where
        K: Key,
        V: Data,
        F: FnMut(D) -> (K, V) + 'static,
    {
        let stream = self.map(move |(ts, d)| (ts, f(d))).container::<Vec<_>>();
        Keyed {
            stream,
            name: name.to_string(),
        }
    }
}

/// A stream of `(key, value)` records, not yet exchanged.
pub struct Keyed<'scope, K, V> {
    stream: EventStream<'scope, (K, V)>,
    name: String,
}

impl<'scope, K: Key, V: Data> Keyed<'scope, K, V> {
    /// The underlying event stream, for raw timely operators.
    pub fn stream(self) -> EventStream<'scope, (K, V)> {
        self.stream
    }

    /// Routes every record to the worker that owns its key (stable hash), for
    /// custom keyed operators.
    pub fn exchange(self) -> EventStream<'scope, (K, V)> {
        self.stream.unary(
            Exchange::new(|(_, (k, _)): &(EventTime, (K, V))| stable_hash(k)),
            &format!("Exchange({})", self.name),
            |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        output.session(&cap).give_container(data);
                    });
                }
            },
        )
    }

    /// Groups the records into windows.
    pub fn window(self, spec: WindowSpec) -> Windowed<'scope, K, V> {
        Windowed {
            keyed: self,
            spec,
            lateness: Lateness::Drop,
        }
    }
}

/// A keyed stream with a window spec, ready to aggregate.
pub struct Windowed<'scope, K, V> {
    keyed: Keyed<'scope, K, V>,
    spec: WindowSpec,
    lateness: Lateness,
}

impl<'scope, K: Key, V: Data> Windowed<'scope, K, V> {
    /// Sets the late-record policy (default: drop and count).
    pub fn lateness(mut self, lateness: Lateness) -> Self {
        self.lateness = lateness;
        self
    }

    /// Aggregates each key's values per window with `agg`. `id` is the
    /// operator's stable id (names it in logs and keys its checkpoints).
    pub fn aggregate<A: Aggregator<V>>(
        self,
        ctx: &Arc<Context>,
        id: &str,
        agg: A,
    ) -> Result<WindowOut<'scope, K, A::Output, V>> {
        self.spec.validate()?;
        let (partials, late) = pre::pre_aggregate(
            self.keyed.stream,
            ctx,
            id,
            self.spec,
            self.lateness,
            agg.clone(),
        );
        let results = match self.spec.grid() {
            Some(grid) => panes::pane_windows(partials, ctx, id, grid, self.lateness, agg)?,
            None => {
                let WindowSpec::Session { gap } = self.spec else {
                    unreachable!("a spec without a grid is a session spec: {:?}", self.spec)
                };
                ctx.refuse_checkpoints(&format!("session window `{id}`"))?;
                session::session_windows(partials, ctx, id, gap, self.lateness, agg)
            }
        };
        Ok(WindowOut { results, late })
    }

    /// Counts records per key and window.
    pub fn count(self, ctx: &Arc<Context>, id: &str) -> Result<WindowOut<'scope, K, u64, V>> {
        self.aggregate(ctx, id, Count)
    }

    /// Sums values per key and window.
    pub fn sum(self, ctx: &Arc<Context>, id: &str) -> Result<WindowOut<'scope, K, V, V>>
    where
        V: Default + std::ops::AddAssign,
        for<'a> V: std::ops::AddAssign<&'a V>,
    {
        self.aggregate(ctx, id, Sum::new())
    }

    /// Combines values with an associative, commutative `f`.
    pub fn reduce<F>(self, ctx: &Arc<Context>, id: &str, f: F) -> Result<WindowOut<'scope, K, V, V>>
    where
        F: Fn(&V, &V) -> V + Clone + 'static,
    {
        self.aggregate(ctx, id, Reduce(f))
    }

    /// Folds values, in sorted order, from `init`.
    pub fn fold<R, F>(
        self,
        ctx: &Arc<Context>,
        id: &str,
        init: R,
        f: F,
    ) -> Result<WindowOut<'scope, K, R, V>>
    where
        V: Ord,
        R: Data,
        F: Fn(R, &V) -> R + Clone + 'static,
    {
        self.aggregate(ctx, id, Fold::new(init, f))
    }
}
