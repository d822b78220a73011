//! The Kafka source: one source partition per Kafka partition, assigned by
//! keyflow (partition `p` to worker `p % peers`, as files are), so that no
//! consumer-group rebalance decides who reads what and the output is the
//! same at any layout. Offsets are the partitions' positions in keyflow's
//! checkpoints; a restore seeks there. Once a checkpoint is complete they
//! are also committed to the consumer group, for monitoring only.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::{client_config, kafka_error, KafkaAddress};
use crate::error::{Error, Result};
use crate::source::{Batch, Partition, PollStatus, Source};
use crate::time::EventTime;

/// Turns a message's payload into a record, or says why it cannot. The
/// second argument is the record's timestamp (epoch ms), when it has one.
pub type ParseMessage<T> =
    fn(&[u8], Option<EventTime>) -> std::result::Result<(EventTime, T), String>;

/// Where a partition starts reading on a fresh start (a restore always
/// resumes from the checkpoint's offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaStart {
    /// The oldest offset still held.
    Earliest,
    /// The end of the partition at start.
    Latest,
    /// The consumer group's committed offset (earliest without one).
    Committed,
    /// The first offset whose record timestamp is at or after this (epoch ms).
    Timestamp(EventTime),
}

impl std::str::FromStr for KafkaStart {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "earliest" => KafkaStart::Earliest,
            "latest" => KafkaStart::Latest,
            "committed" => KafkaStart::Committed,
            ms => KafkaStart::Timestamp(ms.parse().map_err(|_| {
                Error::Config(format!(
                    "--kafka-start `{text}` is not earliest, latest, committed or epoch milliseconds"
                ))
            })?),
        })
    }
}

/// Where a record's event time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaTime {
    /// The payload's own time (the parser's), such as a JSON `ts` field.
    #[default]
    Json,
    /// The Kafka record's timestamp.
    Record,
}

/// What a [`KafkaSource`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// Brokers and topic.
    pub address: KafkaAddress,
    /// The consumer group offsets are committed to (for monitoring, and
    /// for [`KafkaStart::Committed`]).
    pub group: String,
    /// Where a fresh start reads from.
    pub start: KafkaStart,
    /// Where event time comes from.
    pub time: KafkaTime,
    /// Read each partition up to its high watermark at start, then end.
    pub bounded: bool,
    /// How long to wait for the broker before giving up.
    pub connect_timeout: Duration,
}

/// A Kafka topic as a keyflow source; see the module docs.
///
/// ```no_run
/// use keyflow_dataflow::kafka::{KafkaSource, KafkaSourceConfig, KafkaStart, KafkaTime};
/// let config = KafkaSourceConfig {
///     address: "kafka://127.0.0.1:9092/clicks".parse().unwrap(),
///     group: "keyflow".into(),
///     start: KafkaStart::Earliest,
///     time: KafkaTime::Record,
///     bounded: true,
///     connect_timeout: std::time::Duration::from_secs(10),
/// };
/// let clicks = KafkaSource::new(config, |payload, ts| {
///     let ts = ts.ok_or("no record timestamp")?;
///     Ok((ts, String::from_utf8_lossy(payload).into_owned()))
/// })
/// .unwrap();
/// ```
pub struct KafkaSource<T> {
    config: KafkaSourceConfig,
    parse: ParseMessage<T>,
    partitions: usize,
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        KafkaSource {
            config: self.config.clone(),
            parse: self.parse,
            partitions: self.partitions,
        }
    }
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.config)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<T> KafkaSource<T> {
    /// Asks the broker how many partitions the topic has: a broker that
    /// does not answer within the connect timeout, or a missing topic, is
    /// an error now, before any work.
    pub fn new(config: KafkaSourceConfig, parse: ParseMessage<T>) -> Result<Self> {
        if config.group.is_empty() {
            return Err(Error::Config(
                "--kafka-group: the group name is empty".into(),
            ));
        }
        let brokers = &config.address.brokers;
        let consumer: BaseConsumer = consumer_config(&config, false)
            .create()
            .map_err(|e| kafka_error(brokers, "cannot create a consumer", e))?;
        let partitions = topic_partitions(&consumer, &config.address, config.connect_timeout)?;
        Ok(KafkaSource {
            config,
            parse,
            partitions,
        })
    }
}

/// The number of partitions of `address`'s topic.
pub(super) fn topic_partitions<C: ConsumerContext, K: Consumer<C>>(
    client: &K,
    address: &KafkaAddress,
    timeout: Duration,
) -> Result<usize> {
    let brokers = &address.brokers;
    let metadata = client
        .fetch_metadata(Some(&address.topic), timeout)
        .map_err(|e| {
            kafka_error(
                brokers,
                &format!(
                    "no answer within --connect-timeout {}",
                    humantime::format_duration(timeout)
                ),
                e,
            )
        })?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == address.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "{address}: the topic does not exist (or has no partitions)"
            ))
        })?;
    Ok(topic.partitions().len())
}

fn consumer_config(config: &KafkaSourceConfig, stats: bool) -> rdkafka::ClientConfig {
    let mut c = client_config(&config.address.brokers, config.connect_timeout);
    c.set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // An offset the broker no longer holds (retention deleted it while
        // the job was behind or stopped) is an error, never a silent jump
        // to the partition's end.
        .set("auto.offset.reset", "error")
        // Results of a keyflow job upstream are exactly-once only for
        // readers that skip aborted transactions.
        .set("isolation.level", "read_committed");
    if stats {
        // The high watermark of fetch responses, for a bounded read.
        c.set("statistics.interval.ms", "100");
    }
    c
}

impl<T: 'static> Source for KafkaSource<T> {
    type Item = T;

    fn name(&self) -> String {
        self.config.address.to_string()
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        let part = self.connect(index)?;
        let start = part.start_offset(self.config.start)?;
        self.seek(part, start)
    }

    /// Resumes at the checkpoint's offset, which the broker must still
    /// hold: below the oldest offset, retention deleted records the job
    /// never read; past the end, the topic is not the one checkpointed
    /// (recreated, say), and new records below the offset would be taken
    /// for ones already read.
    fn open_at(&self, index: usize, position: u64) -> Result<Box<dyn Partition<T>>> {
        let part = self.connect(index)?;
        let (low, high) = part.watermarks()?;
        let offset = i64::try_from(position).unwrap_or(i64::MAX);
        let why = if offset < low {
            Some(format!(
                "the broker holds offsets from {low} on: records between were deleted \
                 (retention) before the job read them"
            ))
        } else if offset > high {
            Some(format!(
                "the partition ends at {high}: was the topic deleted and made again?"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::External(format!(
                "{} partition {index}: the checkpoint resumes at offset {offset}, but {why}; \
                 start from a new checkpoint directory to read the topic again",
                self.config.address
            )));
        }
        self.seek(part, offset)
    }
}

impl<T: 'static> KafkaSource<T> {
    fn connect(&self, index: usize) -> Result<KafkaPartition<T>> {
        let brokers = &self.config.address.brokers;
        let hwm = Arc::new(AtomicI64::new(-1));
        let context = Watermark {
            partition: index as i32,
            high: Arc::clone(&hwm),
        };
        let consumer: BaseConsumer<Watermark> = consumer_config(&self.config, self.config.bounded)
            .create_with_context(context)
            .map_err(|e| kafka_error(brokers, "cannot create a consumer", e))?;
        Ok(KafkaPartition {
            consumer,
            address: self.config.address.clone(),
            partition: index as i32,
            group: self.config.group.clone(),
            timeout: self.config.connect_timeout,
            parse: self.parse,
            time: self.config.time,
            bounded: self.config.bounded,
            next: 0,
            listed_end: 0,
            fetch_end: hwm,
            end: None,
            caught_up: false,
        })
    }

    fn seek(&self, mut part: KafkaPartition<T>, offset: i64) -> Result<Box<dyn Partition<T>>> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&part.address.topic, part.partition, Offset::Offset(offset))
            .map_err(|e| kafka_error(&part.address.brokers, "bad offset", e))?;
        part.consumer
            .assign(&list)
            .map_err(|e| kafka_error(&part.address.brokers, "cannot assign a partition", e))?;
        part.next = offset;
        if part.bounded {
            part.listed_end = part.watermarks()?.1;
        }
        Ok(Box::new(part))
    }
}

/// Keeps the high watermark of the first statistics report that has one:
/// librdkafka updates it from fetch responses, which some brokers answer
/// more truthfully than a latest-offset query.
struct Watermark {
    partition: i32,
    high: Arc<AtomicI64>,
}

impl ClientContext for Watermark {
    fn error(&self, error: KafkaError, reason: &str) {
        super::log_error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let high = statistics
            .topics
            .values()
            .filter_map(|t| t.partitions.get(&self.partition))
            .map(|p| p.hi_offset)
            .max()
            .unwrap_or(-1);
        if high >= 0 {
            let _ = self
                .high
                .compare_exchange(-1, high, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

impl ConsumerContext for Watermark {}

struct KafkaPartition<T> {
    consumer: BaseConsumer<Watermark>,
    address: KafkaAddress,
    partition: i32,
    group: String,
    timeout: Duration,
    parse: ParseMessage<T>,
    time: KafkaTime,
    bounded: bool,
    /// The offset after the last message handed out.
    next: i64,
    /// For a bounded read: the high watermark a latest-offset query gave
    /// at start.
    listed_end: i64,
    /// For a bounded read: the high watermark of the first fetch response
    /// seen (-1 until then).
    fetch_end: Arc<AtomicI64>,
    /// For a bounded read: where it ends, once known.
    end: Option<i64>,
    /// Whether the broker said the partition has nothing more (end of
    /// partition) since the last message: only then is it idle. A fetch
    /// still on its way is not idleness, or a slow start would let the
    /// other partitions' progress make this one's records late.
    caught_up: bool,
}

impl<T> KafkaPartition<T> {
    fn watermarks(&self) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.address.topic, self.partition, self.timeout)
            .map_err(|e| {
                kafka_error(
                    &self.address.brokers,
                    "cannot read the partition's offsets",
                    e,
                )
            })
    }

    fn start_offset(&self, start: KafkaStart) -> Result<i64> {
        let brokers = &self.address.brokers;
        let (low, high) = self.watermarks()?;
        Ok(match start {
            KafkaStart::Earliest => low,
            KafkaStart::Latest => high,
            KafkaStart::Committed => {
                let mut list = TopicPartitionList::new();
                list.add_partition(&self.address.topic, self.partition);
                let committed = self
                    .consumer
                    .committed_offsets(list, self.timeout)
                    .map_err(|e| kafka_error(brokers, "cannot read the group's offsets", e))?;
                match committed
                    .find_partition(&self.address.topic, self.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(at)) => at.clamp(low, high),
                    _ => low,
                }
            }
            KafkaStart::Timestamp(ms) => {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(
                    &self.address.topic,
                    self.partition,
                    Offset::Offset(ms as i64),
                )
                .map_err(|e| kafka_error(brokers, "bad timestamp", e))?;
                let found = self
                    .consumer
                    .offsets_for_times(list, self.timeout)
                    .map_err(|e| kafka_error(brokers, "cannot look up offsets by time", e))?;
                match found
                    .find_partition(&self.address.topic, self.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(at)) => at,
                    _ => high,
                }
            }
        })
    }

    /// Fixes where a bounded read ends once a fetch response told the high
    /// watermark (the larger of it and the listed one).
    fn learn_end(&mut self) {
        let fetched = self.fetch_end.load(Ordering::Acquire);
        if self.end.is_none() && fetched >= 0 {
            self.end = Some(fetched.max(self.listed_end));
        }
    }
}

impl<T> Partition<T> for KafkaPartition<T> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        let mut waited = false;
        while !batch.is_full() {
            if self.end.is_some_and(|end| self.next >= end) {
                break;
            }
            // Nothing read yet and not caught up: wait a moment for the
            // fetch in flight rather than spin.
            let wait =
                if batch.records.is_empty() && batch.bad.is_empty() && !self.caught_up && !waited {
                    waited = true;
                    Duration::from_millis(2)
                } else {
                    Duration::ZERO
                };
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    // Everything up to the high watermark of a fetch made
                    // after the start is here: a bounded read is complete
                    // even if transaction markers follow its last message.
                    self.caught_up = true;
                    if self.bounded {
                        self.end = Some(self.next);
                    }
                    break;
                }
                Some(Err(e)) => {
                    return Err(kafka_error(&self.address.brokers, "cannot read", e));
                }
                Some(Ok(message)) => message,
            };
            self.caught_up = false;
            let offset = message.offset();
            if offset < self.next {
                // A re-delivery after a reconnect: already handed out.
                continue;
            }
            self.next = offset + 1;
            let stamp = message.timestamp().to_millis().filter(|t| *t >= 0);
            let stamp = stamp.map(|t| t as EventTime);
            let parsed = (self.parse)(message.payload().unwrap_or_default(), stamp);
            let location = || format!("{}/{}@{offset}", self.address, self.partition);
            match (parsed, self.time) {
                (Ok((ts, item)), KafkaTime::Json) => batch.push(ts, item),
                (Ok((_, item)), KafkaTime::Record) => match stamp {
                    Some(ts) => batch.push(ts, item),
                    None => batch.bad(location(), "the record has no timestamp"),
                },
                (Err(reason), _) => batch.bad(location(), reason),
            }
        }
        if self.bounded {
            self.learn_end();
            if self.end.is_some_and(|end| self.next >= end) {
                return Ok(PollStatus::Done);
            }
        }
        let empty = batch.records.is_empty() && batch.bad.is_empty();
        Ok(if empty && self.caught_up {
            PollStatus::Idle
        } else {
            PollStatus::Ready
        })
    }

    fn offset(&self) -> u64 {
        self.next.max(0) as u64
    }

    fn position(&self) -> Option<u64> {
        Some(self.next.max(0) as u64)
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.address.topic,
            self.partition,
            Offset::Offset(position as i64),
        )
        .map_err(|e| kafka_error(&self.address.brokers, "bad offset", e))?;
        self.consumer
            // Synchronous: once per complete checkpoint, and an asynchronous
            // one would be lost when the run ends right after.
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .map_err(|e| {
                kafka_error(
                    &self.address.brokers,
                    &format!("cannot commit offsets to group {}", self.group),
                    e,
                )
            })
    }
}
