//! Sources: partitioned inputs that turn records into an event-time stream.
//!
//! A [`Source`] splits its input into a fixed number of partitions (files,
//! byte-range splits of large plain files, seed streams, broker
//! partitions). The number does not depend on the number of workers, and
//! each partition decides on its own which of its records are late, so
//! results are the same at any worker count. Partition `p` is read by
//! worker `p % peers`, over all workers of all processes.
//!
//! A gzip file, or a plain file of at most [`split_bytes`], is one
//! partition; a larger plain file is cut into splits at line boundaries
//! ([`plan_splits`]; for CSV, at row starts found by a scan for quotes,
//! since a quoted field may hold a line break), whose partitions go round
//! the files so that every
//! worker gets splits spread over each file. Lateness is judged per split.
//! A worker reads its splits of one file one after another (see
//! [`Source::split_of`]), so that it does not read hours ahead in event
//! time of its own progress and hold all of it in windows.

mod ahead;
#[cfg(test)]
mod ahead_tests;
mod csv;
mod csv_partition;
mod csv_split;
mod gzip;
mod inputs;
mod iter;
mod jsonl;
mod line_ends;
mod lines;
mod long_line;
mod operator;
#[cfg(feature = "redis")]
mod redis_stream;
mod split;
#[cfg(test)]
mod test_file;
mod watermark;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;

use crate::error::{Error, Result};
use crate::time::EventTime;

pub use self::csv::CsvSource;
pub use ahead::{AheadPartition, ChunkRead, ReadAheadWhen, Stopped};
pub use inputs::input_files;
pub use iter::IterSource;
pub use jsonl::{
    check_exists, line_text, open_lines, open_split, split_of, FileLines, InputFile,
    JsonLinesSource, LineReader, NextLine, MAX_OPEN_INPUTS, SKIP_CHUNK,
};
pub use lines::{ParseLine, ParsedLines};
pub use long_line::{read_line_within, MAX_LINE_BYTES};
pub(crate) use operator::source_stream;
#[cfg(feature = "redis")]
pub use redis_stream::{
    pack_id, unpack_id, ParseEntry, RedisStreamConfig, RedisStreamSource, CONSUMER,
};
pub use split::{
    check_split_bytes, plan_splits, plan_splits_at, split_bytes, FileSplit, DEFAULT_SPLIT_BYTES,
    MAX_SPLITS, MIN_SPLITS, MIN_SPLIT_BYTES, SPLIT_BYTES_ENV,
};
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
    /// A partition that moved on: this many records in a row, all too far
    /// ahead of the watermark (`max_future`) but in step with each other,
    /// stand, and its watermark moves on to them. They are held until
    /// then; a record that is not far ahead, or the end of the input,
    /// rejects (and counts) them. So a gap in a partition's event time
    /// longer than `max_future` loses nothing, while a few records from a
    /// wrong clock are still rejected. A partition's first records, before
    /// it has a watermark, are judged so against the wall clock (a first
    /// record of the year 9999 no longer makes all after it late; records
    /// that are all the partition has stand at its end). `None` rejects
    /// every record too far ahead, and judges nothing by the wall clock.
    pub jump_after: Option<usize>,
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
            jump_after: Some(100),
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
        if let Some(future) = self.max_future.filter(|f| *f <= self.max_out_of_orderness) {
            return Err(Error::Config(format!(
                "max-out-of-orderness {} ms is not below max-future {future} ms: nearly every \
                 record would be too far ahead of the watermark",
                self.max_out_of_orderness
            )));
        }
        if self.jump_after == Some(0) {
            return Err(Error::Config(
                "jump-after 0 would follow a run of no records: use 1 or more, or none".into(),
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

impl BadRecord {
    /// The record at `location`, rejected for `reason`; a long reason is
    /// cut (see [`shorten`]).
    ///
    /// ```
    /// use keyflow_dataflow::source::BadRecord;
    /// let bad = BadRecord::new("f:3", "x".repeat(1000));
    /// assert!(bad.reason.ends_with("…(1000 bytes)"));
    /// ```
    pub fn new(location: impl Into<String>, reason: impl Into<String>) -> Self {
        BadRecord {
            location: location.into(),
            reason: shorten(&reason.into(), MAX_REASON),
        }
    }
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

/// Longest reason a bad record keeps, in characters: a malformed line can
/// be megabytes long, and its reason is logged and may end the run.
const MAX_REASON: usize = 400;

/// `text` made safe to quote in a message: control characters escaped, and
/// cut after `max` characters with a `…(N bytes)` marker giving the full
/// length.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::shorten;
/// assert_eq!(shorten("a\tb\0", 10), "a\\tb\\u{0}");
/// assert_eq!(shorten(&"x".repeat(1000), 3), "xxx…(1000 bytes)");
/// ```
pub fn shorten(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push_str(&format!("…({} bytes)", text.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A buffer a partition fills on each poll.
#[derive(Debug)]
pub struct Batch<T> {
    /// Good records with their event times.
    pub records: Vec<(EventTime, T)>,
    /// Malformed records.
    pub bad: Vec<BadRecord>,
    /// Well-formed records with nothing to count, such as a dump line of 0
    /// views: counted apart from the bad ones.
    pub skipped: u64,
    pub(crate) limit: usize,
}

impl<T> Batch<T> {
    /// An empty batch that wants at most `limit` records.
    pub fn new(limit: usize) -> Self {
        Batch {
            records: Vec::with_capacity(limit.min(1 << 16)),
            bad: Vec::new(),
            skipped: 0,
            limit,
        }
    }

    /// Adds a good record.
    #[inline]
    pub fn push(&mut self, ts: EventTime, item: T) {
        self.records.push((ts, item));
    }

    /// Adds a malformed record; a long reason is cut (see [`shorten`]).
    pub fn bad(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.bad.push(BadRecord::new(location, reason));
    }

    /// Counts a well-formed record that holds nothing to count.
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// How many more records (good or bad) the poll may add.
    #[inline]
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.records.len() + self.bad.len())
    }

    /// Whether the poll should return now.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.room() == 0
    }

    /// Empties the batch, keeping its allocation.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bad.clear();
        self.skipped = 0;
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

    /// Skips up to `n` items (records and bad records, as `poll` returns
    /// them), to resume a fresh partition from a checkpoint. Returns how
    /// many it skipped, which may be fewer (call again), and the status as
    /// `poll` would. The default reads and discards one batch; a partition
    /// that can seek should.
    fn skip(&mut self, n: u64) -> Result<(u64, PollStatus)> {
        let mut batch = Batch::new(n.min(4096) as usize);
        let status = self.poll(&mut batch)?;
        Ok(((batch.records.len() + batch.bad.len()) as u64, status))
    }

    /// The partition will not be polled for a while (a split waiting for
    /// an earlier split of its file): it may give back what it can take
    /// again, such as an open file and its place among the
    /// [`MAX_OPEN_INPUTS`]. The default keeps everything.
    fn pause(&mut self) {}

    /// Where the next poll reads, for an input that can seek there again
    /// (a broker offset): a checkpoint keeps it, and a restore opens the
    /// partition there with [`Source::open_at`] instead of skipping from
    /// the start. `None` (the default): restore by skipping.
    fn position(&self) -> Option<u64> {
        None
    }

    /// A checkpoint holding `position` (as [`Partition::position`] gave it)
    /// is complete. An input may record it where others can see it (Kafka
    /// commits it to the consumer group, for monitoring); it must not rely
    /// on being told, since a crash can come first.
    fn committed(&mut self, position: u64) -> Result<()> {
        let _ = position;
        Ok(())
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

    /// For a partition that is a split of a file (see [`FileSplit`]): the
    /// file's number and the split's place in it. A worker reads the
    /// splits of one file that it holds one after another, in that order,
    /// past the first few records of each that set its watermark, so that
    /// it does not read far ahead in event time and hold what it read
    /// until the earlier splits catch up. `None` (the default): the partition is
    /// read alongside the others.
    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        let _ = index;
        None
    }

    /// Opens partition `index` to read from `position`, as its
    /// [`Partition::position`] returned it. Only called for partitions that
    /// return positions.
    fn open_at(&self, index: usize, position: u64) -> Result<Box<dyn Partition<Self::Item>>> {
        let _ = position;
        Err(Error::Checkpoint {
            path: format!("source {} partition {index}", self.name()).into(),
            reason: "the checkpoint holds a read position, but this input cannot seek".into(),
        })
    }
}
