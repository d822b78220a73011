//! The Kafka sink. Without a transactional id it is at-least-once: records
//! are produced as they come and flushed when the stream ends. With one
//! (and checkpoints), it is exactly-once, as Flink's two-phase-commit sink:
//!
//! - the records of the times below a checkpoint epoch are kept with the
//!   checkpoint (its pre-commit), and produced in one transaction once that
//!   checkpoint is complete;
//! - the same transaction writes a marker, the epoch, under the
//!   transactional id into the topic `{topic}.keyflow-commits` (one
//!   partition, compacted, made when missing): how far the topic holds the
//!   results, committed atomically with them;
//! - a restore re-commits the checkpoint's batches the marker does not
//!   cover (a crash between completion and commit), and drops results
//!   below the marker, which the topic already holds.
//!
//! So a `read_committed` consumer sees every result once, across crashes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{client_config, kafka_error, KafkaAddress};
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

/// Remembers the first message the broker did not take, and how many:
/// without it a lost message would only be logged.
#[derive(Default)]
struct Delivery {
    failed: std::sync::atomic::AtomicU64,
    first: Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Delivery {}

impl rdkafka::producer::ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

struct Client {
    producer: BaseProducer<Delivery>,
    address: KafkaAddress,
    timeout: Duration,
    /// Exactly-once: the transactional id, and the marker topic.
    marker: Option<(String, String)>,
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
        let producer: BaseProducer<Delivery> = settings
            .create_with_context(Delivery::default())
            .map_err(|e| kafka_error(&brokers, "cannot create a producer", e))?;
        let mut marker = None;
        let mut skip_below = 0;
        let consumer: BaseConsumer = client_config(&brokers, config.connect_timeout)
            // Only read with (assigned, never committed), but librdkafka
            // wants a group for that.
            .set("group.id", "keyflow-sink")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| kafka_error(&brokers, "cannot create a consumer", e))?;
        super::source::topic_partitions(&consumer, &config.address, config.connect_timeout)?;
        if let Some(id) = &config.transactional_id {
            let topic = format!("{}.keyflow-commits", config.address.topic);
            ensure_marker_topic(&brokers, &topic, config.connect_timeout)?;
            // First fence the earlier producer of this id, which aborts its
            // open transaction, so that the marker read next is final.
            producer
                .init_transactions(config.connect_timeout)
                .map_err(|e| kafka_error(&brokers, "cannot start transactions", e))?;
            skip_below = read_marker(&consumer, &brokers, &topic, id, config.connect_timeout)?;
            marker = Some((id.clone(), topic));
        }
        Ok(KafkaSink {
            client: Arc::new(Mutex::new(Client {
                producer,
                address: config.address,
                timeout: config.connect_timeout.max(Duration::from_secs(30)),
                marker,
                pending: Vec::new(),
            })),
            encode,
            buffer: Vec::new(),
            skip_below,
            committer: None,
        })
    }

    fn transactional(&self) -> bool {
        lock(&self.client).marker.is_some()
    }
}

/// Makes the marker topic when it is missing: one partition, compacted (a
/// value per transactional id is all that matters), replicated like the
/// cluster allows.
fn ensure_marker_topic(brokers: &str, topic: &str, timeout: Duration) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, timeout)
        .create()
        .map_err(|e| kafka_error(brokers, "cannot create an admin client", e))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(|e| kafka_error(brokers, "no metadata", e))?;
    if metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none())
    {
        return Ok(());
    }
    let replicas = metadata.brokers().len().clamp(1, 3) as i32;
    let new =
        NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| kafka_error(brokers, &format!("cannot create topic {topic}"), e))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_error(
                    brokers,
                    &format!("cannot create topic {name}"),
                    code,
                ))
            }
        }
    }
    Ok(())
}

/// The newest committed marker of `id` in the marker topic (0 without one).
fn read_marker(
    consumer: &BaseConsumer,
    brokers: &str,
    topic: &str,
    id: &str,
    timeout: Duration,
) -> Result<EventTime> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| kafka_error(brokers, "bad offset", e))?;
    consumer
        .assign(&list)
        .map_err(|e| kafka_error(brokers, &format!("cannot read {topic}"), e))?;
    let start = std::time::Instant::now();
    let mut marker = 0;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.key() == Some(id.as_bytes()) => {
                let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                marker = text.trim().parse().map_err(|_| {
                    Error::External(format!("kafka {brokers}: bad marker `{text}` in {topic}"))
                })?;
            }
            Some(Ok(_)) => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(marker),
            Some(Err(e)) => return Err(kafka_error(brokers, &format!("cannot read {topic}"), e)),
            None if start.elapsed() > timeout => {
                return Err(Error::External(format!(
                    "kafka {brokers}: {topic} gave no end within {}",
                    humantime::format_duration(timeout)
                )))
            }
            None => {}
        }
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
    fn produce(&self, records: &[(String, String)]) -> Result<()> {
        for (key, value) in records {
            let mut record = BaseRecord::to(&self.address.topic).key(key).payload(value);
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

    /// Exactly-once: produces the pending batches below `upto` and the
    /// marker `marker` in one transaction.
    fn commit_below(&mut self, upto: EventTime, marker: EventTime) -> Result<()> {
        let Some((group, topic)) = &self.marker else {
            return Ok(());
        };
        let brokers = self.address.brokers.clone();
        let fail = |what: &str, e: rdkafka::error::KafkaError| kafka_error(&brokers, what, e);
        let cut = self.pending.partition_point(|(e, _)| *e <= upto);
        if cut == 0 && marker != ALL {
            return Ok(());
        }
        let batches: Batches = self.pending.drain(..cut).collect();
        self.producer
            .begin_transaction()
            .map_err(|e| fail("cannot begin a transaction", e))?;
        for (_, records) in &batches {
            self.produce(records)?;
        }
        let (id, topic) = (group.clone(), topic.clone());
        let value = marker.to_string();
        let record = BaseRecord::to(&topic).partition(0).key(&id).payload(&value);
        self.producer
            .send(record)
            .map_err(|(e, _)| fail("cannot write the marker", e))?;
        self.producer
            .commit_transaction(self.timeout)
            .map_err(|e| fail("cannot commit the transaction", e))
    }
}

impl<T: 'static> Sink<T> for KafkaSink<T> {
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        if time < self.skip_below {
            return Ok(());
        }
        let encoded = records.iter().map(|(ts, r)| (self.encode)(*ts, r));
        if self.transactional() {
            self.buffer.extend(encoded);
            Ok(())
        } else {
            lock(&self.client).produce(&encoded.collect::<Vec<_>>())
        }
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        let client = lock(&self.client);
        if client.marker.is_none() {
            client.flush()?;
            return Ok(Vec::new());
        }
        crate::checkpoint::encode(&Point {
            pending: client.pending.clone(),
        })
    }

    fn pre_commit(&mut self, epoch: EventTime) {
        if self.transactional() {
            let batch = std::mem::take(&mut self.buffer);
            lock(&self.client).pending.push((epoch, batch));
        }
    }

    fn restore(&mut self, point: &[u8]) -> Result<()> {
        let point: Point = crate::checkpoint::decode(point, "kafka sink")?;
        let mut client = lock(&self.client);
        if client.marker.is_none() {
            return Ok(());
        }
        client.pending = point.pending;
        let covered = self.skip_below;
        client.pending.retain(|(e, _)| *e > covered);
        // The restored checkpoint is complete: what it holds goes out now.
        if let Some(&(last, _)) = client.pending.last() {
            client.commit_below(last, last)?;
            self.skip_below = self.skip_below.max(last);
        }
        Ok(())
    }

    fn watch_completions(&mut self, completed: Completed) {
        if !self.transactional() {
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
                            tracing::error!("{e}");
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
        if client.marker.is_none() {
            return client.flush();
        }
        // The stream ended: everything goes out, with the marker that says so.
        let rest = std::mem::take(&mut self.buffer);
        client.pending.push((ALL, rest));
        client.commit_below(ALL, ALL)
    }
}

/// A checkpoint's pre-commit: the batches not known to be in the topic.
#[derive(Debug, Serialize, Deserialize)]
struct Point {
    pending: Batches,
}
