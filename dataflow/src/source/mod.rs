//! Sources: partitioned inputs that turn records into an event-time stream.
//!
//! A [`Source`] splits its input into a fixed number of partitions (files,
//! seed streams, broker partitions). The number does not depend on the
//! number of workers, and each partition decides on its own which of its
//! records are late, so results are the same at any worker count. Partition
//! `p` is read by worker `p % peers`, over all workers of all processes.

mod iter;
mod jsonl;
mod operator;
mod watermark;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;

use crate::error::{Error, Result};
use crate::time::EventTime;

pub use iter::IterSource;
pub use jsonl::{open_lines, JsonLinesSource, LineReader};
pub use operator::source;
pub use watermark::PartitionClock;

/// A stream of `(event time, data)` records. Each record travels at a timely
/// time that is at most its event time unless the record is late.
pub type EventStream<'scope, D> = Stream<'scope, EventTime, Vec<(EventTime, D)>>;

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BadInputPolicy {
    /// Count it, log a rate-limited sample, and go on.
    #[default]
    Drop,
    /// Stop the job with an error that names where the record was.
    Fail,
}

impl std::str::FromStr for BadInputPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "drop" | "skip" => Ok(BadInputPolicy::Drop),
            "fail" => Ok(BadInputPolicy::Fail),
            other => Err(Error::Config(format!(
                "bad-input policy `{other}` is not one of: drop, fail"
            ))),
        }
    }
}

/// How a source turns partition reads into watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Allowed out-of-orderness: a partition's watermark is the largest event
    /// time it has seen minus this (milliseconds).
    pub max_out_of_orderness: u64,
    /// A partition that has had nothing to read for this long stops holding
    /// progress back. `None` waits for it forever.
    pub idle_timeout: Option<Duration>,
    /// Records more than this far (milliseconds) ahead of their partition's
    /// watermark are rejected and counted. `None` accepts any timestamp.
    pub max_future: Option<u64>,
    /// What to do with malformed records.
    pub bad_input: BadInputPolicy,
    /// Most records read from one partition per activation.
    pub batch: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            max_out_of_orderness: 5_000,
            idle_timeout: Some(Duration::from_secs(5)),
            max_future: Some(7 * crate::time::DAY),
            bad_input: BadInputPolicy::Drop,
            batch: 4096,
        }
    }
}

impl SourceConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::Config(
                "source batch size 0 must be at least 1".into(),
            ));
        }
        if self.max_future == Some(0) {
            return Err(Error::Config(
                "max-future 0 would reject every record ahead of the watermark".into(),
            ));
        }
        Ok(())
    }
}

/// A malformed record: where it was and why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// File and line, or partition and offset.
    pub location: String,
    /// What was wrong with it.
    pub reason: String,
}

/// What a partition read produced, besides records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    /// There may be more to read right away.
    Ready,
    /// Nothing to read now; try again later.
    Idle,
    /// The partition is exhausted (a bounded input came to its end).
    Done,
}

/// A buffer a partition fills on each poll.
#[derive(Debug)]
pub struct Batch<T> {
    /// Good records with their event times.
    pub records: Vec<(EventTime, T)>,
    /// Malformed records.
    pub bad: Vec<BadRecord>,
    pub(crate) limit: usize,
}

impl<T> Batch<T> {
    /// An empty batch that wants at most `limit` records.
    pub fn new(limit: usize) -> Self {
        Batch {
            records: Vec::with_capacity(limit.min(1 << 16)),
            bad: Vec::new(),
            limit,
        }
    }

    /// Adds a good record.
    #[inline]
    pub fn push(&mut self, ts: EventTime, item: T) {
        self.records.push((ts, item));
    }

    /// Adds a malformed record.
    pub fn bad(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.bad.push(BadRecord {
            location: location.into(),
            reason: reason.into(),
        });
    }

    /// Whether the poll should return now.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.records.len() + self.bad.len() >= self.limit
    }

    /// Empties the batch, keeping its allocation.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bad.clear();
    }
}

/// One partition of a source, read by one worker.
pub trait Partition<T> {
    /// Reads up to the batch's limit into `batch`.
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus>;

    /// How far the partition has read (records or bytes), for progress
    /// reports.
    fn offset(&self) -> u64 {
        0
    }

    /// Skips the first `n` items (records and bad records, as `poll` returns
    /// them) of a freshly opened partition, to resume from a checkpoint.
    /// Returns how many were skipped: fewer only when the input ended first.
    /// The default reads and discards; a partition that can seek should.
    fn skip(&mut self, n: u64) -> Result<u64> {
        let mut skipped = 0;
        let mut batch = Batch::new(4096);
        while skipped < n {
            batch.clear();
            batch.limit = (n - skipped).min(4096) as usize;
            let status = self.poll(&mut batch)?;
            skipped += (batch.records.len() + batch.bad.len()) as u64;
            if status == PollStatus::Done {
                break;
            }
        }
        Ok(skipped)
    }
}

/// A partitioned input.
pub trait Source: 'static {
    /// The records it produces.
    type Item: 'static;

    /// A short name for logs and errors.
    fn name(&self) -> String;

    /// How many partitions the input has. Must not depend on the number of
    /// workers.
    fn partitions(&self) -> usize;

    /// Opens partition `index` (`0..partitions()`).
    fn open(&self, index: usize) -> Result<Box<dyn Partition<Self::Item>>>;
}
