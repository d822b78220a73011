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
mod pane;
mod panes;
mod pre;
mod session;
mod spec;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::generic::Operator;

pub use aggregate::{Aggregator, Count, Fold, Reduce, Sum, SumValue};
pub use spec::{WindowSpec, MAX_WINDOWS_PER_RECORD};

pub use crate::{Data, Key};

use crate::flow::Events;
use crate::hash::stable_hash;
use crate::metrics::Metrics;
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
    /// Keep window state until the watermark passes `end + ms`; late records
    /// inside that bound are applied once the time they were read at is
    /// complete, and each window (or session) they changed is re-emitted
    /// once for that time, as an update.
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
    pub results: Events<'scope, WindowResult<K, O>>,
    /// Late records, at the time they were read.
    pub late: LateRecords<'scope, K, V>,
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

    /// Whether it is the combined records of a key in the pane at `start`.
    fn in_pane(&self, start: EventTime) -> bool {
        matches!(self, Partial::Agg { start: s, .. } if *s == start)
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

/// Late records that a windowed step sent to its side output.
pub(crate) type LateRecords<'scope, K, V> = Events<'scope, (K, V)>;

/// A stream of `(key, value)` records, not yet exchanged; made by
/// [`Events::key_by`].
pub struct Keyed<'scope, K, V> {
    events: Events<'scope, (K, V)>,
    name: String,
}

impl<'scope, K: Key, V: Data> Keyed<'scope, K, V> {
    pub(crate) fn new(events: Events<'scope, (K, V)>, name: &str) -> Self {
        Keyed {
            events,
            name: name.to_string(),
        }
    }

    /// The `(key, value)` records as a plain event stream.
    pub fn events(self) -> Events<'scope, (K, V)> {
        self.events
    }

    /// Routes every record to the worker that owns its key (stable hash), for
    /// custom keyed operators.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, ("a", 1u64)), (2, ("b", 2))], |pairs| {
    ///     Ok(pairs.key_by(|(k, v)| (k.to_string(), v)).exchange())
    /// });
    /// assert_eq!(out.unwrap(), vec![(1, ("a".into(), 1)), (2, ("b".into(), 2))]);
    /// ```
    pub fn exchange(self) -> Events<'scope, (K, V)> {
        let name = format!("Exchange({})", self.name);
        self.events.apply(|stream| {
            stream.unary(
                Exchange::new(|(_, (k, _)): &(EventTime, (K, V))| stable_hash(k)),
                &name,
                |_, _| {
                    move |input, output| {
                        input.for_each(|cap, data| {
                            output.session(&cap).give_container(data);
                        });
                    }
                },
            )
        })
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
///
/// # Examples
/// Session windows: one per burst of a key's records, closed by 10 s
/// without any.
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::example;
///
/// let clicks = vec![(0, "ann"), (2_000, "bob"), (4_000, "ann"), (30_000, "ann")];
/// let out = example(clicks, |c| {
///     let sessions = c.key_by(|u| (u.to_string(), ())).window(WindowSpec::session(10 * SECOND)?).count("sessions");
///     Ok(sessions.results.map(|s| (s.key, s.start, s.value)))
/// });
/// let got: Vec<_> = out.unwrap().into_iter().map(|(_, s)| s).collect();
/// // Sorted by session end: 12 s, 14 s, 40 s.
/// assert_eq!(got, vec![("bob".into(), 2_000, 1), ("ann".into(), 0, 2), ("ann".into(), 30_000, 1)]);
/// ```
pub struct Windowed<'scope, K, V> {
    keyed: Keyed<'scope, K, V>,
    spec: WindowSpec,
    lateness: Lateness,
}

impl<'scope, K: Key, V: Data> Windowed<'scope, K, V> {
    /// Sets the late-record policy (default: drop and count).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// // 5 s of allowed out-of-orderness: `b` at 2 s arrives after 20 s
    /// // moved the watermark to 15 s, so it is late: to the side output.
    /// let out = example(vec![(1_000, 'a'), (20_000, 'c'), (2_000, 'b')], |chars| {
    ///     let counts = chars
    ///         .key_by(|c| (c, ()))
    ///         .window(WindowSpec::tumbling(10 * SECOND)?)
    ///         .lateness(Lateness::SideOutput)
    ///         .count("counts");
    ///     Ok(counts.late.map(|(c, ())| c))
    /// });
    /// assert_eq!(out.unwrap(), vec![(2_000, 'b')]);
    /// ```
    pub fn lateness(mut self, lateness: Lateness) -> Self {
        self.lateness = lateness;
        self
    }

    /// Aggregates each key's values per window with `agg`. `id` is the
    /// step's stable id (it names the step in logs and metrics and keys its
    /// checkpoints).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, 3u64), (2, 4), (12, 5)], |n| {
    ///     let sums = n.key_by(|n| ((), n)).window(WindowSpec::tumbling(10)?).aggregate("sums", Sum::new());
    ///     Ok(sums.results.map(|r| r.value))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, 7), (20, 5)]);
    /// ```
    #[track_caller]
    pub fn aggregate<A: Aggregator<V>>(
        self,
        id: &str,
        agg: A,
    ) -> WindowOut<'scope, K, A::Output, V> {
        let flow = self.keyed.events.flow().clone();
        let step = flow.step(id);
        let ctx = Arc::clone(flow.context());
        if let Err(e) = self.spec.validate() {
            flow.fail(e);
        }
        let (partials, late) = pre::pre_aggregate(
            self.keyed.events.inner(),
            &ctx,
            &step,
            self.spec,
            self.lateness,
            agg.clone(),
        );
        let results = match self.spec.grid() {
            Some(grid) => panes::pane_windows(partials, &ctx, &step, grid, self.lateness, agg),
            None => {
                let WindowSpec::Session { gap } = self.spec else {
                    unreachable!("a spec without a grid is a session spec: {:?}", self.spec)
                };
                session::session_windows(partials, &ctx, &step, gap, self.lateness, agg)
            }
        };
        let results = results.unwrap_or_else(|e| {
            flow.fail(e);
            empty(flow.scope())
        });
        let counters = ctx.metrics.step(&step);
        // Named after the step, so that explain shows it as part of it.
        let results = results.unary(Pipeline, &format!("WindowOut({step})"), |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    Metrics::add(&counters.records_out, data.len() as u64);
                    output.session(&cap).give_container(data);
                });
            }
        });
        WindowOut {
            results: flow.wrap(results),
            late: flow.wrap(late),
        }
    }

    /// Counts records per key and window.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, 'a'), (2, 'a'), (3, 'b')], |w| {
    ///     let counts = w.key_by(|w| (w, ())).window(WindowSpec::sliding(4, 2)?).count("counts");
    ///     Ok(counts.results.map(|r| (r.start, r.key, r.value)))
    /// });
    /// assert_eq!(
    ///     out.unwrap(),
    ///     vec![(2, (0, 'a', 1)), (4, (0, 'a', 2)), (4, (0, 'b', 1)), (6, (2, 'a', 1)), (6, (2, 'b', 1))]
    /// );
    /// ```
    #[track_caller]
    pub fn count(self, id: &str) -> WindowOut<'scope, K, u64, V> {
        self.aggregate(id, Count)
    }

    /// Sums values per key and window. An integer sum that reaches its
    /// type's limit fails the step, naming the key and window (see
    /// [`Sum`]).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, ('a', 2u64)), (2, ('a', 3))], |v| {
    ///     let sums = v.key_by(|kv| kv).window(WindowSpec::tumbling(MINUTE)?).sum("sums");
    ///     Ok(sums.results.map(|r| (r.key, r.value)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(MINUTE, ('a', 5))]);
    /// ```
    #[track_caller]
    pub fn sum(self, id: &str) -> WindowOut<'scope, K, V, V>
    where
        V: SumValue,
    {
        self.aggregate(id, Sum::new())
    }

    /// Combines values with an associative, commutative `f`.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, 4u64), (2, 9), (3, 1)], |n| {
    ///     let max = n.key_by(|n| ((), n)).window(WindowSpec::tumbling(10)?).reduce("max", |a, b| *a.max(b));
    ///     Ok(max.results.map(|r| r.value))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, 9)]);
    /// ```
    #[track_caller]
    pub fn reduce<F>(self, id: &str, f: F) -> WindowOut<'scope, K, V, V>
    where
        F: Fn(&V, &V) -> V + Clone + 'static,
    {
        self.aggregate(id, Reduce(f))
    }

    /// Folds values, in sorted order, from `init`.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(2, 'b'), (1, 'a'), (3, 'c')], |c| {
    ///     let text = c.key_by(|c| ((), c)).window(WindowSpec::tumbling(10)?)
    ///         .fold("text", String::new(), |s, c| s + &c.to_string());
    ///     Ok(text.results.map(|r| r.value))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, "abc".to_string())]);
    /// ```
    #[track_caller]
    pub fn fold<R, F>(self, id: &str, init: R, f: F) -> WindowOut<'scope, K, R, V>
    where
        V: Ord,
        R: Data,
        F: Fn(R, &V) -> R + Clone + 'static,
    {
        self.aggregate(id, Fold::new(init, f))
    }
}
