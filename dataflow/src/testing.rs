//! The testing kit: a scripted source and a capturing sink, for tests of
//! jobs and operators (keyflow's own and users'), and a check for readers
//! that read ahead.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Inspect;

use crate::error::{Error, Result};
use crate::flow::Events;
use crate::source::{Batch, EventStream, Partition, PollStatus, Source, SourceConfig};
use crate::time::EventTime;

mod ahead;
mod blobs;
pub use ahead::{check_read_ahead, poll_to_end, Polled};
pub use blobs::MemoryBlobs;

/// One step of a scripted partition.
#[derive(Debug, Clone)]
pub enum Step<T> {
    /// A record at an event time.
    Event(EventTime, T),
    /// A malformed record with a reason.
    Bad(String),
    /// Nothing to read for this long (the partition looks idle).
    Pause(Duration),
    /// The partition fails with this message.
    Abort(String),
    /// The partition ends here (also implied after the last step).
    Eof,
}

/// A source that plays fixed scripts, one per partition.
///
/// # Examples
/// ```
/// use keyflow_dataflow::testing::{ScriptedSource, Step};
/// use keyflow_dataflow::source::Source;
/// let src = ScriptedSource::new(vec![
///     vec![Step::Event(1_000, "a"), Step::Eof],
///     vec![Step::Event(2_000, "b")],
/// ]);
/// assert_eq!(src.partitions(), 2);
/// ```
#[derive(Clone)]
pub struct ScriptedSource<T> {
    scripts: Rc<Vec<Vec<Step<T>>>>,
}

impl<T: Clone + 'static> ScriptedSource<T> {
    /// A source with one partition per script.
    pub fn new(scripts: Vec<Vec<Step<T>>>) -> Self {
        ScriptedSource {
            scripts: Rc::new(scripts),
        }
    }
}

struct ScriptedPartition<T> {
    index: usize,
    steps: VecDeque<Step<T>>,
    paused_until: Option<Instant>,
    read: u64,
}

impl<T> Partition<T> for ScriptedPartition<T> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        while !batch.is_full() {
            if let Some(until) = self.paused_until {
                if Instant::now() < until {
                    return Ok(if batch.records.is_empty() {
                        PollStatus::Idle
                    } else {
                        PollStatus::Ready
                    });
                }
                self.paused_until = None;
            }
            match self.steps.pop_front() {
                None | Some(Step::Eof) => return Ok(PollStatus::Done),
                Some(Step::Event(ts, item)) => {
                    self.read += 1;
                    batch.push(ts, item);
                }
                Some(Step::Bad(reason)) => {
                    self.read += 1;
                    batch.bad(
                        format!("partition {} step {}", self.index, self.read),
                        reason,
                    );
                }
                Some(Step::Pause(d)) => self.paused_until = Some(Instant::now() + d),
                Some(Step::Abort(message)) => {
                    return Err(Error::External(format!(
                        "scripted partition {} aborted: {message}",
                        self.index
                    )))
                }
            }
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.read
    }
}

impl<T: Clone + 'static> Source for ScriptedSource<T> {
    type Item = T;

    fn name(&self) -> String {
        "scripted".into()
    }

    fn partitions(&self) -> usize {
        self.scripts.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        Ok(Box::new(ScriptedPartition {
            index,
            steps: self.scripts[index].iter().cloned().collect(),
            paused_until: None,
            read: 0,
        }))
    }
}

/// Records captured from a stream by all workers of this process.
#[derive(Debug)]
pub struct Captured<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Captured<T> {
    fn clone(&self) -> Self {
        Captured(Arc::clone(&self.0))
    }
}

impl<T> Default for Captured<T> {
    fn default() -> Self {
        Captured(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Captured<T> {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record.
    pub fn push(&self, item: T) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(item);
    }

    /// Everything captured, in arrival order.
    pub fn items(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Everything captured, sorted.
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut items = self.items();
        items.sort();
        items
    }
}

/// Captures every `(event time, record)` of a raw timely `stream` into
/// `into`; [`Events::capture`] does the same for a keyflow stream.
pub fn capture<'scope, T: Clone + 'static>(
    stream: EventStream<'scope, T>,
    into: &Captured<(EventTime, T)>,
) {
    let into = into.clone();
    stream.inspect(move |x| into.push(x.clone()));
}

/// Captures `(timely time, event time, record)` triples, to check at which
/// time each record travels (late records travel above their event time).
pub fn capture_timed<'scope, T: Clone + 'static>(
    stream: EventStream<'scope, T>,
    into: &Captured<(EventTime, EventTime, T)>,
) {
    let into = into.clone();
    stream.inspect_core(move |event| {
        if let Ok((stamp, data)) = event {
            let time = stamp.least().copied().unwrap_or(0);
            for (ts, x) in data {
                into.push((time, *ts, x.clone()));
            }
        }
    });
}

/// Runs `build` over `records` on two workers and returns what it produced,
/// sorted by event time and then by record: the harness behind the short
/// examples in keyflow's docs.
///
/// The records come, in the given order, from one partition of a source
/// with id `input` and the default [`SourceConfig`] (5 s of allowed
/// out-of-orderness); keyed steps spread them over both workers.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::example;
///
/// let out = example(vec![(1, 'a'), (2, 'b'), (3, 'a')], |chars| {
///     let counts = chars.key_by(|c| (c, ())).window(WindowSpec::tumbling(10)?).count("counts");
///     Ok(counts.results.map(|r| (r.key, r.value)))
/// });
/// assert_eq!(out.unwrap(), vec![(10, ('a', 2)), (10, ('b', 1))]);
/// ```
pub fn example<T, R, F>(records: Vec<(EventTime, T)>, build: F) -> Result<Vec<(EventTime, R)>>
where
    T: Clone + Send + Sync + 'static,
    R: Clone + Ord + Send + 'static,
    F: for<'s> Fn(Events<'s, T>) -> Result<Events<'s, R>> + Send + Sync + 'static,
{
    let out = Captured::new();
    let into = out.clone();
    let records = Arc::new(records);
    crate::run::run(&crate::run::RunConfig::threads(2), move |flow| {
        let records = Arc::clone(&records);
        let input = crate::source::IterSource::new("input", 1, move |_| {
            records.as_ref().clone().into_iter()
        });
        let events = flow.source("input", input, &SourceConfig::default())?;
        build(events)?.capture(&into);
        Ok(())
    })?;
    Ok(out.sorted())
}
