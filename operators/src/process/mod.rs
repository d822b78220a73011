//! Keyed process functions with event-time timers, as Flink's
//! `KeyedProcessFunction`: per-key state machines whose transitions come
//! from records and from timers.
//!
//! A [`ProcessFunction`] says what happens to a key's state when one of its
//! records arrives ([`ProcessFunction::on_event`]) and when one of its
//! timers fires ([`ProcessFunction::on_timer`]); through the
//! [`ProcessContext`] it sets and deletes the key's timers and emits
//! outputs, each at the event time being handled, so a later windowed step
//! counts them exactly.
//!
//! [`KeyedProcess::process`] runs it: records are routed to the worker
//! owning their key (stable hash) and kept until event-time progress has
//! passed them; then each key's records and timers are applied in
//! event-time order (see [`ProcessState`] for ties). A timer at `t` fires
//! once progress passes `t`, and at the end of a bounded input every
//! pending timer fires.
//!
//! **Late records** (below the time they travel at, decided per source
//! partition) follow a [`Lateness`]: dropped and counted, sent to the
//! `late` output, or, with `Lateness::Allowed(d)`, applied in their place
//! as if on time, for which the operator applies every record and timer
//! `d` later than it could; records later than `d` are dropped and
//! counted. Nothing is re-emitted: with allowed lateness the outputs wait.
//!
//! **Checkpoints.** The state (every key's state and timers, and the
//! records not yet applied) is written at each epoch under the step id, in
//! full, and restored at any number of workers.

mod operator;
mod state;
#[cfg(test)]
mod tests;

use keyflow_dataflow::window::{Keyed, Lateness};
use keyflow_dataflow::{Data, Events, Key};

pub use state::{ProcessContext, ProcessState};

/// A keyed state machine driven by records and event-time timers.
///
/// # Examples
/// Emits how many events each key had in a burst, once it has been quiet
/// for 10 ms.
/// ```
/// use keyflow_dataflow::testing::example;
/// use keyflow_operators::process::{KeyedProcess, ProcessContext, ProcessFunction};
///
/// struct Quiet;
/// impl ProcessFunction for Quiet {
///     type Key = char;
///     type In = ();
///     type State = u64;
///     type Out = (char, u64);
///     fn on_event(&self, _: &char, count: &mut u64, _: (), ctx: &mut ProcessContext<'_, (char, u64)>) {
///         *count += 1;
///         ctx.delete_timers();
///         ctx.set_timer(ctx.time() + 10);
///     }
///     fn on_timer(&self, key: &char, count: &mut u64, ctx: &mut ProcessContext<'_, (char, u64)>) {
///         ctx.emit((*key, std::mem::take(count)));
///     }
/// }
///
/// let clicks = vec![(0, 'a'), (5, 'a'), (7, 'b'), (30, 'a')];
/// let out = example(clicks, |c| Ok(c.key_by(|k| (k, ())).process("quiet", Quiet).output));
/// assert_eq!(out.unwrap(), vec![(15, ('a', 2)), (17, ('b', 1)), (40, ('a', 1))]);
/// ```
pub trait ProcessFunction: 'static {
    /// The key records are grouped by.
    type Key: Key;
    /// The records; their order breaks ties between records of one key at
    /// the same time.
    type In: Data + Ord;
    /// Each key's state; a key whose state is back at the default and that
    /// has no timers is forgotten.
    type State: Data + Default + PartialEq;
    /// What it emits.
    type Out: Data;

    /// Handles one record of `key` at `ctx.time()`.
    fn on_event(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
        event: Self::In,
        ctx: &mut ProcessContext<'_, Self::Out>,
    );

    /// Handles `key`'s timer at `ctx.time()`.
    fn on_timer(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
        ctx: &mut ProcessContext<'_, Self::Out>,
    );
}

/// What [`KeyedProcess::process`] returns.
pub struct ProcessOut<'scope, K, V, O> {
    /// The outputs, each with the event time it was emitted at (a record's
    /// or a timer's). Under `Lateness::Allowed(d)` they travel up to `d`
    /// behind that time, so a windowed step after it sees them as late
    /// unless it shifts their time by `d`.
    pub output: Events<'scope, O>,
    /// Late records not applied, under `Lateness::SideOutput`.
    pub late: Events<'scope, (K, V)>,
}

/// Extension trait: a keyed process function on a keyed stream.
pub trait KeyedProcess<'scope, K: Key, V: Data> {
    /// Runs `f` on every key's records, dropping and counting late ones.
    /// `id` is the step's stable id (it keys its checkpoints).
    ///
    /// # Examples
    /// A key's running total, emitted at each record.
    /// ```
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::process::{KeyedProcess, ProcessContext, ProcessFunction};
    ///
    /// struct Total;
    /// impl ProcessFunction for Total {
    ///     type Key = char;
    ///     type In = u64;
    ///     type State = u64;
    ///     type Out = u64;
    ///     fn on_event(&self, _: &char, sum: &mut u64, n: u64, ctx: &mut ProcessContext<'_, u64>) {
    ///         *sum += n;
    ///         ctx.emit(*sum);
    ///     }
    ///     fn on_timer(&self, _: &char, _: &mut u64, _: &mut ProcessContext<'_, u64>) {}
    /// }
    ///
    /// let out = example(vec![(2, ('a', 5)), (1, ('a', 2))], |n| Ok(n.key_by(|kv| kv).process("total", Total).output));
    /// assert_eq!(out.unwrap(), vec![(1, 2), (2, 7)]);
    /// ```
    fn process<F>(self, id: &str, f: F) -> ProcessOut<'scope, K, V, F::Out>
    where
        F: ProcessFunction<Key = K, In = V>;

    /// [`KeyedProcess::process`] with a late-record policy.
    ///
    /// # Examples
    /// With 5 s of out-of-orderness, `b` at 1 s comes after 8 s: read at
    /// 3 s, it is 2 s late, within the 10 s allowed.
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_operators::process::{KeyedProcess, ProcessContext, ProcessFunction};
    ///
    /// struct Order;
    /// impl ProcessFunction for Order {
    ///     type Key = ();
    ///     type In = char;
    ///     type State = String;
    ///     type Out = String;
    ///     fn on_event(&self, _: &(), seen: &mut String, c: char, ctx: &mut ProcessContext<'_, String>) {
    ///         seen.push(c);
    ///         ctx.emit(seen.clone());
    ///     }
    ///     fn on_timer(&self, _: &(), _: &mut String, _: &mut ProcessContext<'_, String>) {}
    /// }
    ///
    /// let out = example(vec![(0, 'a'), (8_000, 'c'), (1_000, 'b')], |c| {
    ///     let late = Lateness::Allowed(10 * SECOND);
    ///     Ok(c.key_by(|c| ((), c)).process_with("order", Order, late).output)
    /// });
    /// let seen: Vec<_> = out.unwrap().into_iter().map(|(_, s)| s).collect();
    /// assert_eq!(seen, vec!["a", "ab", "abc"]);
    /// ```
    fn process_with<F>(
        self,
        id: &str,
        f: F,
        lateness: Lateness,
    ) -> ProcessOut<'scope, K, V, F::Out>
    where
        F: ProcessFunction<Key = K, In = V>;
}

impl<'scope, K: Key, V: Data + Ord> KeyedProcess<'scope, K, V> for Keyed<'scope, K, V> {
    #[track_caller]
    fn process<F>(self, id: &str, f: F) -> ProcessOut<'scope, K, V, F::Out>
    where
        F: ProcessFunction<Key = K, In = V>,
    {
        self.process_with(id, f, Lateness::Drop)
    }

    #[track_caller]
    fn process_with<F>(self, id: &str, f: F, lateness: Lateness) -> ProcessOut<'scope, K, V, F::Out>
    where
        F: ProcessFunction<Key = K, In = V>,
    {
        let events = self.events();
        let flow = events.flow().clone();
        let step = flow.step(id);
        match operator::process_keyed(events.inner(), flow.context(), &step, f, lateness) {
            Ok((output, late)) => ProcessOut {
                output: flow.wrap(output),
                late: flow.wrap(late),
            },
            Err(e) => {
                flow.fail(e);
                ProcessOut {
                    output: flow.empty(),
                    late: flow.empty(),
                }
            }
        }
    }
}
