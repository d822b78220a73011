//! The Kafka sink. Without a transactional id it is at-least-once: records
//! are produced as they come and flushed when the stream ends. With one
//! (and checkpoints), it is exactly-once, as Flink's two-phase-commit sink:
//!
//! - the records of the times below a checkpoint epoch are kept with the
//!   checkpoint (its pre-commit), and produced in one transaction once that
//!   checkpoint is complete;
//! - the same transaction writes a marker (see `marker.rs`) under the
//!   transactional id into the topic `{topic}.keyflow-commits` (one
//!   partition, compacted, made when missing): how far the topic holds the
//!   results, committed atomically with them;
//! - a restore re-commits the checkpoint's batches the marker does not
//!   cover (a crash between completion and commit), less any of their
//!   records a `read_committed` consumer already receives, and drops
//!   results below the marker, which the topic already holds.
//!
//! So a `read_committed` consumer sees every result once, across crashes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};

use super::marker::{self, Marker, Reader};
use super::{client_config, kafka_error, KafkaAddress, ReadToEnd};
use crate::checkpoint::Completed;
use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::time::EventTime;

/// Where a [`KafkaSink`] writes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// Brokers and topic.
    pub address: KafkaAddress,
    /// Exactly-once through transactions under this id (unique to the job
    /// and its checkpoint directory); `None`: at-least-once.
    pub transactional_id: Option<String>,
    /// How long to wait for the broker before giving up.
    pub connect_timeout: Duration,
}

/// Turns a record into its Kafka key and value.
pub type Encode<T> = fn(EventTime, &T) -> (String, String);

/// Records waiting for a checkpoint to complete, by the epoch they are
/// below.
type Batches = Vec<(EventTime, Vec<(String, String)>)>;

/// The marker of a run that ended: every result is in the topic.
const ALL: EventTime = i64::MAX as EventTime;

/// Remembers the first message the broker did not take, and how many
/// (without it a lost message would only be logged), and how far the
/// delivered records reach in each partition of the results topic.
#[derive(Default)]
struct Delivery {
    topic: String,
    failed: std::sync::atomic::AtomicU64,
    first: Mutex<Option<String>>,
    ends: Mutex<BTreeMap<i32, i64>>,
}

impl rdkafka::ClientContext for Delivery {}

impl rdkafka::producer::ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) if m.topic() == self.topic => {
                let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
                let end = ends.entry(m.partition()).or_insert(0);
                *end = (*end).max(m.offset() + 1);
            }
            Ok(_) => {}
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::AcqRel);
                let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// What exactly-once needs besides the producer.
struct Transactions {
    id: String,
    /// `{topic}.keyflow-commits`.
    marker_topic: String,
    /// Reads the marker and results topics, `read_committed`.
    reader: BaseConsumer<ReadToEnd>,
    /// Lists how far they are written, `read_uncommitted`.
    probe: BaseConsumer<ReadToEnd>,
    partitions: usize,
    /// By partition, the offset past which records of this id may stand
    /// uncommitted: as the newest marker says, or without one, the ends
    /// of the topic when the sink started.
    ends: BTreeMap<i32, i64>,
    /// Whether `ends` came from a marker.
    marked: bool,
    /// Records of pending batches a `read_committed` consumer already
    /// receives, found at a restore: not produced again.
    present: HashSet<(EventTime, u32)>,
    /// Why committing failed, once it did: the job stops with it.
    failed: Option<String>,
}

struct Client {
    producer: BaseProducer<Delivery>,
    address: KafkaAddress,
    timeout: Duration,
    /// Exactly-once only.
    transactions: Option<Transactions>,
    /// Records kept for checkpoints not yet complete.
    pending: Batches,
}

/// A Kafka topic as a sink; see the module docs.
///
/// ```no_run
/// use keyflow_dataflow::kafka::{KafkaSink, KafkaSinkConfig};
/// let config = KafkaSinkConfig {
///     address: "kafka://127.0.0.1:9092/counts".parse().unwrap(),
///     transactional_id: None,
///     connect_timeout: std::time::Duration::from_secs(10),
/// };
/// let sink = KafkaSink::new(config, |ts, n: &u64| (ts.to_string(), format!("{{\"n\":{n}}}"))).unwrap();
/// ```
pub struct KafkaSink<T> {
    client: Arc<Mutex<Client>>,
    encode: Encode<T>,
    /// Set at construction: the sink commits through transactions.
    transactional: bool,
    /// Exactly-once: records not yet below a checkpoint epoch.
    buffer: Vec<(String, String)>,
    /// Exactly-once: results below this are in the topic already.
    skip_below: EventTime,
    committer: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn lock(client: &Mutex<Client>) -> MutexGuard<'_, Client> {
    client.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> KafkaSink<T> {
    /// Connects (checking the topic exists within the connect timeout) and,
    /// with a transactional id, fences any earlier producer of that id and
    /// reads how far the topic holds its results.
    pub fn new(config: KafkaSinkConfig, encode: Encode<T>) -> Result<Self> {
        let brokers = config.address.brokers.clone();
        let mut settings = client_config(&brokers, config.connect_timeout);
        settings.set("enable.idempotence", "true");
        if let Some(id) = &config.transactional_id {
            settings.set("transactional.id", id);
        }
        let delivery = Delivery {
            topic: config.address.topic.clone(),
            ..Delivery::default()
        };
        let producer: BaseProducer<Delivery> = settings
            .create_with_context(delivery)
            .map_err(|e| kafka_error(&brokers, "cannot create a producer", e))?;
        let consumer = |isolation: &str| -> Result<BaseConsumer<ReadToEnd>> {
            client_config(&brokers, config.connect_timeout)
                // Only read with (assigned, never committed), but
                // librdkafka wants a group for that.
                .set("group.id", "keyflow-sink")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true")
                .set("isolation.level", isolation)
                .create_with_context(ReadToEnd)
                .map_err(|e| kafka_error(&brokers, "cannot create a consumer", e))
        };
        let reader = consumer("read_committed")?;
        let partitions =
            super::source::topic_partitions(&reader, &config.address, config.connect_timeout)?;
        let timeout = config.connect_timeout.max(Duration::from_secs(30));
        let mut transactions = None;
        let mut skip_below = 0;
        if let Some(id) = &config.transactional_id {
            let marker_topic = format!("{}.keyflow-commits", config.address.topic);
            marker::ensure_topic(&brokers, &marker_topic, config.connect_timeout)?;
            // First fence the earlier producer of this id, which ends its
            // open transaction, so that what is read next is final.
            producer
                .init_transactions(config.connect_timeout)
                .map_err(|e| kafka_error(&brokers, "cannot start transactions", e))?;
            let probe = consumer("read_uncommitted")?;
            let view = Reader {
                reader: &reader,
                probe: &probe,
                brokers: &brokers,
                timeout,
            };
            let found = view.marker(&marker_topic, id)?;
            // Without a marker, records of this id can only come after
            // what the topic holds now (the checkpoint says otherwise when
            // a restore follows).
            let ends = match &found {
                Some(m) => m.ends.clone(),
                None => view.ends(&config.address.topic, partitions)?,
            };
            let marked = found.is_some();
            skip_below = found.map_or(0, |m| m.epoch);
            transactions = Some(Transactions {
                id: id.clone(),
                marker_topic,
                reader,
                probe,
                partitions,
                ends,
                marked,
                present: HashSet::new(),
                failed: None,
            });
        }
        Ok(KafkaSink {
            client: Arc::new(Mutex::new(Client {
                producer,
                address: config.address,
                timeout,
                transactions,
                pending: Vec::new(),
            })),
            encode,
            transactional: config.transactional_id.is_some(),
            buffer: Vec::new(),
            skip_below,
            committer: None,
        })
    }
}

impl Client {
    /// Waits until every message produced so far is acknowledged; an error
    /// if any was not (at-least-once must not lose one silently).
    fn flush(&self) -> Result<()> {
        let brokers = &self.address.brokers;
        self.producer
            .flush(self.timeout)
            .map_err(|e| kafka_error(brokers, "cannot flush", e))?;
        let delivery = self.producer.context();
        match delivery.failed.load(Ordering::Acquire) {
            0 => Ok(()),
            n => Err(Error::External(format!(
                "kafka {brokers}: {n} messages to {} were not delivered: {}",
                self.address.topic,
                delivery
                    .first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_default()
            ))),
        }
    }

    /// Produces `records`, waiting while the producer's queue is full.
    /// With `tag` (the transactional id and the batch's epoch) each record
    /// carries its place in the batch, and those already present are left
    /// out.
    fn produce(&self, records: &[(String, String)], tag: Option<(&str, EventTime)>) -> Result<()> {
        let present = self.transactions.as_ref().map(|t| &t.present);
        for (index, (key, value)) in records.iter().enumerate() {
            let mut record = BaseRecord::to(&self.address.topic).key(key).payload(value);
            if let Some((id, epoch)) = tag {
                let index = index as u32;
                if present.is_some_and(|p| p.contains(&(epoch, index))) {
                    continue;
                }
                let text = marker::tag(id, epoch, index);
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: marker::TAG,
                    value: Some(&text),
                }));
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        return Err(kafka_error(&self.address.brokers, "cannot produce", e))
                    }
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    /// Exactly-once: produces the pending batches up to `upto` and the
    /// marker `epoch` in one transaction. They leave `pending` only once it
    /// is committed; a failed transaction is aborted.
    fn commit_below(&mut self, upto: EventTime, epoch: EventTime) -> Result<()> {
        let Some(tx) = &self.transactions else {
            return Ok(());
        };
        let cut = self.pending.partition_point(|(e, _)| *e <= upto);
        if cut == 0 && epoch != ALL {
            return Ok(());
        }
        let brokers = &self.address.brokers;
        let fail = |what: &str, e: rdkafka::error::KafkaError| kafka_error(brokers, what, e);
        self.producer
            .begin_transaction()
            .map_err(|e| fail("cannot begin a transaction", e))?;
        let committed = (|| {
            for (batch, records) in &self.pending[..cut] {
                self.produce(records, Some((&tx.id, *batch)))?;
            }
            // The marker says where this transaction's records end: they
            // must all be acknowledged before it is written.
            self.flush()?;
            let mut ends = tx.ends.clone();
            for (&p, &end) in self
                .producer
                .context()
                .ends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                let at = ends.entry(p).or_insert(end);
                *at = (*at).max(end);
            }
            let marker = Marker { epoch, ends };
            let value = marker.encode();
            let record = BaseRecord::to(&tx.marker_topic)
                .partition(0)
                .key(&tx.id)
                .payload(&value);
            self.producer
                .send(record)
                .map_err(|(e, _)| fail("cannot write the marker", e))?;
            self.producer
                .commit_transaction(self.timeout)
                .map_err(|e| fail("cannot commit the transaction", e))?;
            Ok(marker.ends)
        })();
        match committed {
            Ok(ends) => {
                self.pending.drain(..cut);
                if let Some(tx) = &mut self.transactions {
                    tx.ends = ends;
                    tx.marked = true;
                    if self.pending.is_empty() {
                        tx.present.clear();
                    }
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.producer.abort_transaction(self.timeout);
                Err(e)
            }
        }
    }

    /// The error that stopped the committer, if one did.
    fn failed(&self) -> Result<()> {
        match self.transactions.as_ref().and_then(|t| t.failed.clone()) {
            Some(why) => Err(Error::External(why)),
            None => Ok(()),
        }
    }
}

impl<T: 'static> Sink<T> for KafkaSink<T> {
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        if time < self.skip_below {
            return Ok(());
        }
        let encoded = records.iter().map(|(ts, r)| (self.encode)(*ts, r));
        if self.transactional {
            self.buffer.extend(encoded);
            Ok(())
        } else {
            lock(&self.client).produce(&encoded.collect::<Vec<_>>(), None)
        }
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        let client = lock(&self.client);
        let Some(tx) = &client.transactions else {
            client.flush()?;
            return Ok(Vec::new());
        };
        client.failed()?;
        crate::checkpoint::encode(&Point {
            pending: client.pending.clone(),
            ends: tx.ends.clone(),
        })
    }

    fn pre_commit(&mut self, epoch: EventTime) {
        if self.transactional {
            let batch = std::mem::take(&mut self.buffer);
            lock(&self.client).pending.push((epoch, batch));
        }
    }

    fn restore(&mut self, point: &[u8]) -> Result<()> {
        let point: Point = crate::checkpoint::decode(point, "kafka sink")?;
        let mut guard = lock(&self.client);
        let client = &mut *guard;
        let Some(tx) = &mut client.transactions else {
            return Ok(());
        };
        let covered = self.skip_below;
        client.pending = point.pending;
        client.pending.retain(|(e, _)| *e > covered);
        // The marker's ends are the newest. Without one (no transaction
        // committed yet) the checkpoint's are: the topic's ends now may
        // already be past records of a transaction the crash cut short.
        let (mut older, mut newer) = (point.ends, std::mem::take(&mut tx.ends));
        if !tx.marked {
            std::mem::swap(&mut older, &mut newer);
        }
        older.extend(newer);
        tx.ends = older;
        let Some(&(last, _)) = client.pending.last() else {
            return Ok(());
        };
        // A transaction the crash cut short: Apache Kafka hides its records
        // from `read_committed` consumers, a broker that does not must not
        // get them twice.
        tx.present = Reader {
            reader: &tx.reader,
            probe: &tx.probe,
            brokers: &client.address.brokers,
            timeout: client.timeout,
        }
        .tagged(&client.address.topic, tx.partitions, &tx.id, &tx.ends)?;
        if !tx.present.is_empty() {
            tracing::info!(
                "kafka {}: {} records of a transaction cut short are visible in {}: not \
                 written again",
                client.address.brokers,
                tx.present.len(),
                client.address.topic
            );
        }
        // The restored checkpoint is complete: what it holds goes out now.
        client.commit_below(last, last)?;
        self.skip_below = self.skip_below.max(last);
        Ok(())
    }

    fn watch_completions(&mut self, completed: Completed) {
        if !self.transactional {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (client, halt) = (Arc::clone(&self.client), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("keyflow-kafka-commit".into())
            .spawn(move || {
                while !halt.load(Ordering::Acquire) {
                    if let Some(newest) = completed.newest() {
                        let mut client = lock(&client);
                        if let Err(e) = client.commit_below(newest, newest) {
                            // The checkpoint keeps the batches: the job
                            // stops, and its restart commits them.
                            tracing::error!("{e}");
                            if let Some(tx) = &mut client.transactions {
                                tx.failed = Some(e.to_string());
                            }
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        if let Ok(thread) = thread {
            self.committer = Some((stop, thread));
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some((stop, thread)) = self.committer.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
        let mut client = lock(&self.client);
        if client.transactions.is_none() {
            return client.flush();
        }
        client.failed()?;
        // The stream ended: everything goes out, with the marker that says so.
        let rest = std::mem::take(&mut self.buffer);
        client.pending.push((ALL, rest));
        client.commit_below(ALL, ALL)
    }
}

/// A checkpoint's pre-commit: the batches not known to be in the topic, and
/// where records of this id may stand uncommitted.
#[derive(Debug, Serialize, Deserialize)]
struct Point {
    pending: Batches,
    ends: BTreeMap<i32, i64>,
}
