//! The job-writing API: a dataflow handle and a stream that carries it.
//!
//! [`Dataflow`] is what a job's build function receives: it creates sources
//! and knows the worker, the shared [`Context`] and the step ids used so
//! far. [`Events`] is a stream of `(event time, record)` that carries its
//! dataflow along, as differential's `Collection` wraps a timely `Stream`,
//! so no operator takes a context or a scope as an argument.
//!
//! # Step ids
//! Every step that keeps state, reads or writes takes its id as its first
//! argument: `flow.source("clicks", ..)`, `.count("per-page")`,
//! `.sink("out", ..)`. Ids key checkpointed state and per-step metrics, so
//! they must be stable across runs and unique in a dataflow; a second use of
//! an id is an error, reported when the dataflow is built, that names both
//! places. A sub-flow ([`Dataflow::sub`]) prefixes the ids of its steps with
//! its own name and a `/`. Stateless steps (`map`, `filter`, `key_by`) need
//! no id.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::{Concat, Inspect};
use timely::dataflow::Scope;

use crate::error::{Error, Result};
use crate::late::split_late;
use crate::run::Context;
use crate::sink::{sink_partitioned, sink_stream, Sink};
use crate::source::{source_stream, EventStream, Source, SourceConfig};
use crate::time::EventTime;
use crate::window::{Data, Key, Keyed};

/// The step ids of one worker's dataflow, with where each was declared, and
/// the first error found while building it.
#[derive(Default)]
struct Steps {
    seen: BTreeMap<String, &'static Location<'static>>,
    error: Option<Error>,
}

/// A dataflow under construction on one worker: creates sources, checks
/// step ids, and collects errors found while building.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::Captured;
///
/// let out = Captured::new();
/// let into = out.clone();
/// run(&RunConfig::threads(2), move |flow| {
///     let input = IterSource::new("numbers", 2, |p| (0..3u64).map(move |i| (i, i + 10 * p as u64)));
///     flow.source("numbers", input, &SourceConfig::default())?
///         .filter(|n| n % 2 == 0)
///         .capture(&into);
///     Ok(())
/// })
/// .unwrap();
/// assert_eq!(out.sorted(), vec![(0, 0), (0, 10), (2, 2), (2, 12)]);
/// ```
#[derive(Clone)]
pub struct Dataflow<'scope> {
    scope: Scope<'scope, EventTime>,
    ctx: Arc<Context>,
    prefix: String,
    steps: Rc<RefCell<Steps>>,
}

impl<'scope> Dataflow<'scope> {
    /// A handle on `scope` for a job sharing `ctx`. [`crate::run::run`]
    /// makes one for each worker; build one yourself only inside
    /// [`crate::run::run_workers`], and call [`Dataflow::finish`] at the end.
    pub fn new(scope: Scope<'scope, EventTime>, ctx: &Arc<Context>) -> Self {
        Dataflow {
            scope,
            ctx: Arc::clone(ctx),
            prefix: String::new(),
            steps: Rc::default(),
        }
    }

    /// The timely scope, for raw timely operators.
    pub fn scope(&self) -> Scope<'scope, EventTime> {
        self.scope
    }

    /// What the workers of this process share: configuration, metrics,
    /// checkpoints.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// This worker's index over all workers of all processes.
    pub fn index(&self) -> usize {
        self.scope.index()
    }

    /// How many workers the job has, over all processes.
    pub fn peers(&self) -> usize {
        self.scope.peers()
    }

    /// A sub-flow whose step ids are prefixed with `name/`. Its sources
    /// produce streams that carry the sub-flow; [`Events::within`] moves
    /// another stream into it.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let ids = run(&RunConfig::threads(1), |flow| {
    ///     let clicks = flow.sub("clicks");
    ///     Ok(clicks.step("count"))
    /// })
    /// .unwrap();
    /// assert_eq!(ids, vec!["clicks/count".to_string()]);
    /// ```
    pub fn sub(&self, name: &str) -> Dataflow<'scope> {
        Dataflow {
            scope: self.scope,
            ctx: Arc::clone(&self.ctx),
            prefix: format!("{}{name}/", self.prefix),
            steps: Rc::clone(&self.steps),
        }
    }

    /// Declares a step and returns its full id (with the sub-flow prefix).
    /// A second declaration of the same id is recorded as an error naming
    /// both places, returned by [`Dataflow::finish`] (and so by `run`).
    /// Operators call this; jobs rarely need to.
    #[track_caller]
    pub fn step(&self, id: &str) -> String {
        let full = format!("{}{id}", self.prefix);
        let here = Location::caller();
        let mut steps = self.steps.borrow_mut();
        if let Some(first) = steps.seen.get(&full) {
            let error = Error::Config(format!(
                "step id `{full}` is used twice: at {first} and at {here}; \
                 give every stateful step its own id"
            ));
            steps.error.get_or_insert(error);
        } else {
            steps.seen.insert(full.clone(), here);
        }
        full
    }

    /// Every step id declared so far (with sub-flow prefixes), sorted.
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.borrow().seen.keys().cloned().collect()
    }

    /// Records an error found while building (the first one wins); the
    /// dataflow does not run, and `run` returns it.
    pub fn fail(&self, error: Error) {
        self.steps.borrow_mut().error.get_or_insert(error);
    }

    /// The first error recorded while building, if any.
    pub fn finish(&self) -> Result<()> {
        match self.steps.borrow_mut().error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Reads `src` as an event stream. `id` names the step (it keys the
    /// source's checkpointed positions); `config` sets watermarks, idleness
    /// and the bad-input policy.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::Captured;
    ///
    /// let out = Captured::new();
    /// let into = out.clone();
    /// run(&RunConfig::threads(1), move |flow| {
    ///     let input = IterSource::new("numbers", 1, |_| (0..3u64).map(|i| (i * SECOND, i)));
    ///     flow.source("numbers", input, &SourceConfig::default())?.capture(&into);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// assert_eq!(out.sorted(), vec![(0, 0), (1_000, 1), (2_000, 2)]);
    /// ```
    #[track_caller]
    pub fn source<S: Source>(
        &self,
        id: &str,
        src: S,
        config: &SourceConfig,
    ) -> Result<Events<'scope, S::Item>> {
        let step = self.step(id);
        self.finish()?;
        let stream = source_stream(self.scope, &self.ctx, &step, src, config)?;
        Ok(self.wrap(stream))
    }

    /// Wraps a raw timely stream of `(event time, record)` so keyflow
    /// operators apply to it again.
    pub fn wrap<D>(&self, stream: EventStream<'scope, D>) -> Events<'scope, D> {
        Events {
            stream,
            flow: self.clone(),
        }
    }

    /// A stream with no records.
    pub fn empty<D: 'static>(&self) -> Events<'scope, D> {
        self.wrap(empty(self.scope))
    }
}

/// A stream of `(event time, record)` pairs that carries its [`Dataflow`].
///
/// Each record travels at a timely time at most its event time, unless the
/// record is late (its partition's watermark had passed it when it was
/// read). The stateless methods here keep each record's event time.
pub struct Events<'scope, D> {
    stream: EventStream<'scope, D>,
    flow: Dataflow<'scope>,
}

impl<D: Clone + 'static> Clone for Events<'_, D> {
    fn clone(&self) -> Self {
        Events {
            stream: self.stream.clone(),
            flow: self.flow.clone(),
        }
    }
}

impl<'scope, D: 'static> Events<'scope, D> {
    /// The dataflow the stream belongs to.
    pub fn flow(&self) -> &Dataflow<'scope> {
        &self.flow
    }

    /// The raw timely stream, for timely and differential operators; bring
    /// the result back with [`Dataflow::wrap`] or [`Events::apply`].
    pub fn inner(self) -> EventStream<'scope, D> {
        self.stream
    }

    /// Applies a raw timely function to the stream and wraps its result.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    /// use keyflow_dataflow::timely::dataflow::operators::vec::Filter;
    ///
    /// let out = example(vec![(1, 1u64), (2, 2), (3, 3)], |n| {
    ///     Ok(n.apply(|stream| stream.filter(|(ts, _)| *ts != 2)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(1, 1), (3, 3)]);
    /// ```
    pub fn apply<E, F>(self, f: F) -> Events<'scope, E>
    where
        F: FnOnce(EventStream<'scope, D>) -> EventStream<'scope, E>,
    {
        let stream = f(self.stream);
        Events {
            stream,
            flow: self.flow,
        }
    }

    /// Moves the stream into `flow` (a sub-flow), so later steps take its
    /// id prefix.
    pub fn within(self, flow: &Dataflow<'scope>) -> Events<'scope, D> {
        flow.wrap(self.stream)
    }

    /// Transforms each record, keeping its event time.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(5, "a"), (7, "bc")], |words| Ok(words.map(|w| w.len())));
    /// assert_eq!(out.unwrap(), vec![(5, 1), (7, 2)]);
    /// ```
    pub fn map<E: 'static, F>(self, f: F) -> Events<'scope, E>
    where
        F: FnMut(D) -> E + 'static,
    {
        self.map_named("Map", f)
    }

    /// [`Events::map`], with a name for the step in `explain` output and the
    /// dashboard's job graph.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::explain::explain;
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let text = explain(|flow| {
    ///     let input = IterSource::new("words", 1, |_| vec![(1, "a")].into_iter());
    ///     flow.source("words", input, &SourceConfig::default())?
    ///         .map_named("Length", |w| w.len());
    ///     Ok(())
    /// })
    /// .unwrap();
    /// assert!(text.contains("words -> Length"), "{text}");
    /// ```
    pub fn map_named<E: 'static, F>(self, name: &str, mut f: F) -> Events<'scope, E>
    where
        F: FnMut(D) -> E + 'static,
    {
        type Out<E> = CapacityContainerBuilder<Vec<(EventTime, E)>>;
        self.apply(|s| {
            s.unary::<Out<E>, _, _, _>(Pipeline, name, move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for batch in data {
                            session.give_iterator(batch.drain(..).map(|(ts, d)| (ts, f(d))));
                        }
                    });
                }
            })
        })
    }

    /// Keeps the records for which `keep` holds.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, 1u64), (2, 2), (3, 3)], |n| Ok(n.filter(|n| n % 2 == 1)));
    /// assert_eq!(out.unwrap(), vec![(1, 1), (3, 3)]);
    /// ```
    pub fn filter<F>(self, mut keep: F) -> Events<'scope, D>
    where
        F: FnMut(&D) -> bool + 'static,
    {
        self.apply(|s| s.filter(move |(_, d)| keep(d)))
    }

    /// Turns each record into any number of records at its event time.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, "a b"), (2, "c")], |lines| {
    ///     Ok(lines.flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>()))
    /// });
    /// assert_eq!(out.unwrap(), vec![(1, "a".into()), (1, "b".into()), (2, "c".into())]);
    /// ```
    pub fn flat_map<E: 'static, I, F>(self, mut f: F) -> Events<'scope, E>
    where
        I: IntoIterator<Item = E>,
        I::IntoIter: 'static,
        F: FnMut(D) -> I + 'static,
    {
        self.apply(|s| s.flat_map(move |(ts, d)| f(d).into_iter().map(move |e| (ts, e))))
    }

    /// Calls `f` on every record with its event time, and passes the stream
    /// on unchanged.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let count = Arc::clone(&seen);
    /// example(vec![(1, 'a'), (2, 'b')], move |c| {
    ///     let count = Arc::clone(&count);
    ///     Ok(c.inspect(move |_, _| { count.fetch_add(1, Ordering::Relaxed); }))
    /// })
    /// .unwrap();
    /// assert_eq!(seen.load(Ordering::Relaxed), 2);
    /// ```
    pub fn inspect<F>(self, mut f: F) -> Events<'scope, D>
    where
        D: Clone,
        F: FnMut(EventTime, &D) + 'static,
    {
        self.apply(|s| s.inspect(move |(ts, d)| f(*ts, d)))
    }

    /// Merges two streams of the same dataflow.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, 1u64), (2, 2)], |n| {
    ///     Ok(n.clone().union(n.map(|x| x * 10)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(1, 1), (1, 10), (2, 2), (2, 20)]);
    /// ```
    pub fn union(self, other: Events<'scope, D>) -> Events<'scope, D>
    where
        D: Clone,
    {
        self.apply(|s| s.concat(other.stream))
    }

    /// Splits off late records: `(on_time, late)`.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::Captured;
    ///
    /// let (on_time, late) = (Captured::new(), Captured::new());
    /// let (o, l) = (on_time.clone(), late.clone());
    /// run(&RunConfig::threads(1), move |flow| {
    ///     // With 1 s of allowed out-of-orderness, 3 s arrives after 5 s has
    ///     // moved the watermark to 4 s: it is late.
    ///     let input = IterSource::new("t", 1, |_| vec![(5_000, 'a'), (3_000, 'b'), (4_500, 'c')].into_iter());
    ///     let config = SourceConfig { max_out_of_orderness: SECOND, ..SourceConfig::default() };
    ///     let (ok, bad) = flow.source("t", input, &config)?.split_late();
    ///     ok.capture(&o);
    ///     bad.capture(&l);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// assert_eq!(on_time.sorted(), vec![(4_500, 'c'), (5_000, 'a')]);
    /// assert_eq!(late.sorted(), vec![(3_000, 'b')]);
    /// ```
    pub fn split_late(self) -> (Events<'scope, D>, Events<'scope, D>) {
        let (on_time, late) = split_late(self.stream);
        (self.flow.wrap(on_time), self.flow.wrap(late))
    }

    /// Splits each record into `(key, value)` for keyed, windowed steps.
    /// Records are routed to the worker owning their key later, after local
    /// pre-aggregation.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::testing::example;
    ///
    /// let out = example(vec![(1, "a"), (2, "b"), (3, "a")], |words| {
    ///     let counts = words
    ///         .key_by(|w| (w.to_string(), ()))
    ///         .window(WindowSpec::tumbling(10)?)
    ///         .count("word-counts");
    ///     Ok(counts.results.map(|r| (r.key, r.value)))
    /// });
    /// assert_eq!(out.unwrap(), vec![(10, ("a".into(), 2)), (10, ("b".into(), 1))]);
    /// ```
    pub fn key_by<K, V, F>(self, f: F) -> Keyed<'scope, K, V>
    where
        K: Key,
        V: Data,
        F: FnMut(D) -> (K, V) + 'static,
    {
        self.key_by_named("KeyBy", f)
    }

    /// [`Events::key_by`], with a name for the step in `explain` output.
    pub fn key_by_named<K, V, F>(self, name: &str, f: F) -> Keyed<'scope, K, V>
    where
        K: Key,
        V: Data,
        F: FnMut(D) -> (K, V) + 'static,
    {
        Keyed::new(self.map_named(name, f), name)
    }

    /// Writes the stream to the sink that `make` builds, one complete event
    /// time at a time, sorted, by a single writer (worker 0 of the cluster,
    /// which alone calls `make`), so the output is the same at any number of
    /// workers and processes. `id` keys the sink's commit point in
    /// checkpoints. The sink runs on a thread of its own, beside worker 0:
    /// there the workers' runs are merged and written while worker 0
    /// computes, and worker 0 waits only when the writer falls a few times
    /// behind. From 4 workers on, the workers merge the runs themselves,
    /// each a range of the record order, and the writer only joins the
    /// ranges.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let dir = std::env::temp_dir().join(format!("keyflow-sink-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("out.jsonl");
    /// let target = path.clone();
    /// run(&RunConfig::threads(2), move |flow| {
    ///     let input = IterSource::new("n", 2, |p| (0..2u64).map(move |i| (i, i + 10 * p as u64)));
    ///     let target = target.clone();
    ///     flow.source("n", input, &SourceConfig::default())?
    ///         .sink("numbers", move || JsonLinesSink::create(&target))
    /// })
    /// .unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n10\n1\n11\n");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[track_caller]
    pub fn sink<S, F>(self, id: &str, make: F) -> Result<()>
    where
        D: Data + Ord,
        S: Sink<D> + Send,
        F: FnOnce() -> Result<S>,
    {
        let step = self.flow.step(id);
        self.flow.finish()?;
        sink_stream(self.stream, &self.flow.ctx, &step, make)
    }

    /// [`Events::sink`] for outputs made of bytes, such as the lines of a
    /// file: every worker encodes its own records with `encode` (event
    /// time, record, the bytes to append to), so the work of formatting is
    /// shared by all workers, and worker 0's writer merges the sorted runs by record
    /// and hands the sink each complete time's bytes as one [`Encoded`](crate::sink::Encoded).
    /// The file is the same, byte for byte, at any number of workers and
    /// processes as long as `encode` depends only on its arguments.
    /// [`JsonLinesSink`](crate::sink::JsonLinesSink) writes the bytes as
    /// they are, with its commit points and restores. `id` keys the sink's
    /// commit point in checkpoints.
    ///
    /// # Examples
    /// ```
    /// use std::io::Write;
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let dir = std::env::temp_dir().join(format!("keyflow-encoded-doc-{}", std::process::id()));
    /// let path = dir.join("out.csv");
    /// let target = path.clone();
    /// run(&RunConfig::threads(2), move |flow| {
    ///     let input = IterSource::new("n", 2, |p| (0..2u64).map(move |i| (i, i + 10 * p as u64)));
    ///     let target = target.clone();
    ///     flow.source("n", input, &SourceConfig::default())?.sink_encoded(
    ///         "numbers",
    ///         |ts, n: &u64, out: &mut Vec<u8>| writeln!(out, "{ts},{n}").unwrap(),
    ///         move || JsonLinesSink::create(&target),
    ///     )
    /// })
    /// .unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "0,0\n0,10\n1,1\n1,11\n");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[track_caller]
    pub fn sink_encoded<E, S, F>(self, id: &str, encode: E, make: F) -> Result<()>
    where
        D: Data + Ord,
        E: FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
        S: Sink<crate::sink::Encoded> + Send,
        F: FnOnce() -> Result<S>,
    {
        let step = self.flow.step(id);
        self.flow.finish()?;
        crate::sink::sink_encoded_stream(self.stream, &self.flow.ctx, &step, encode, make)
    }

    /// Writes the stream as one part per worker, as Flink's file sink
    /// writes part files: every worker `W` (global index) calls `make(W)`
    /// and writes its own records to that sink, one complete event time at
    /// a time, sorted within the time. Nothing crosses workers, so this
    /// scales with the workers where [`Events::sink`] has one writer; which
    /// records land in which part depends on the layout, but the parts
    /// together always hold the same records.
    /// [`JsonLinesSink::part`](crate::sink::JsonLinesSink::part) writes
    /// `DIR/part-W.jsonl`.
    ///
    /// `id` keys each part's commit point in checkpoints: a restore cuts
    /// every part back to it, so the parts of a restored run hold what an
    /// uninterrupted run's hold, each record once.
    ///
    /// # Restoring at another worker count
    /// Worker `W` resumes part `W` if the checkpoint has it, and starts it
    /// afresh otherwise (at more workers). Parts numbered at or above the
    /// new worker count (at fewer workers) are finished by worker 0 at
    /// build time as they were committed: `make(W)` is called for each,
    /// the sink is restored and closed, so a JSON-lines part is cut back to
    /// the checkpoint and renamed into place. The records that the old
    /// worker would have written after the checkpoint go to the new
    /// workers' parts. Worker 0 keeps the commit points of the parts it
    /// finished in its own checkpoints, so that a later restore at more
    /// workers again resumes them. All parts must therefore be reachable
    /// from every process (one shared file system, as for checkpoints).
    ///
    /// The sink deletes no file it did not write: a fresh run at fewer
    /// workers into a directory that holds the parts of an earlier run
    /// leaves that run's higher-numbered parts in place. Write each job to
    /// its own directory.
    ///
    /// # Examples
    /// Partition `p` of a source is read by worker `p % workers`, so here
    /// each part holds one partition, sorted within each time.
    /// ```
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let dir = std::env::temp_dir().join(format!("keyflow-parts-doc-{}", std::process::id()));
    /// let target = dir.clone();
    /// run(&RunConfig::threads(2), move |flow| {
    ///     let input = IterSource::new("n", 2, |p| {
    ///         let p = 10 * p as u64;
    ///         vec![(1, p + 5), (1, p + 3), (2, p + 4)].into_iter()
    ///     });
    ///     let target = target.clone();
    ///     flow.source("n", input, &SourceConfig::default())?
    ///         .sink_partitioned("numbers", move |part| JsonLinesSink::part(&target, part))
    /// })
    /// .unwrap();
    /// let part = |w| std::fs::read_to_string(JsonLinesSink::part_path(&dir, w)).unwrap();
    /// assert_eq!(part(0), "3\n5\n4\n");
    /// assert_eq!(part(1), "13\n15\n14\n");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[track_caller]
    pub fn sink_partitioned<S, F>(self, id: &str, make: F) -> Result<()>
    where
        D: Data + Ord,
        S: Sink<D> + Send,
        F: FnMut(usize) -> Result<S>,
    {
        let step = self.flow.step(id);
        self.flow.finish()?;
        sink_partitioned(self.stream, &self.flow.ctx, &step, make)
    }

    /// Copies every `(event time, record)` into `into` (for tests).
    pub fn capture(self, into: &crate::testing::Captured<(EventTime, D)>)
    where
        D: Clone,
    {
        crate::testing::capture(self.stream, into);
    }
}
