//! Kafka: a source whose offsets live in keyflow's checkpoints, and a sink
//! that is exactly-once with them, through a transactional producer that
//! commits when a checkpoint completes (Flink's two-phase-commit sink).
//!
//! Both name their broker and topic as `kafka://HOST:PORT[,HOST:PORT]/TOPIC`.
//!
//! ```
//! use keyflow_dataflow::kafka::KafkaAddress;
//! let at: KafkaAddress = "kafka://127.0.0.1:9092,127.0.0.1:9093/events".parse().unwrap();
//! assert_eq!((at.brokers.as_str(), at.topic.as_str()), ("127.0.0.1:9092,127.0.0.1:9093", "events"));
//! assert!("kafka://127.0.0.1:9092".parse::<KafkaAddress>().is_err());
//! ```

mod marker;
mod sink;
mod source;

use std::time::Duration;

pub use rdkafka;
pub use sink::{Encode, KafkaSink, KafkaSinkConfig};
pub use source::{KafkaSource, KafkaSourceConfig, KafkaStart, KafkaTime, ParseMessage};

use crate::error::{Error, Result};

/// A broker list and a topic, from `kafka://HOST:PORT[,HOST:PORT]/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAddress {
    /// `HOST:PORT[,HOST:PORT]`, as `bootstrap.servers` takes it.
    pub brokers: String,
    /// The topic.
    pub topic: String,
}

impl std::str::FromStr for KafkaAddress {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("`{text}` {why}: use kafka://HOST:PORT/TOPIC"));
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("is not a kafka:// address"))?;
        let (brokers, topic) = rest.split_once('/').ok_or_else(|| bad("names no topic"))?;
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            return Err(bad("needs HOST:PORT for every broker"));
        }
        // Kafka's own rule for topic names.
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
            return Err(bad("has a topic that is not 1-249 of [a-zA-Z0-9._-]"));
        }
        Ok(KafkaAddress {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }
}

impl std::fmt::Display for KafkaAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic)
    }
}

/// The settings every keyflow client starts from.
fn client_config(brokers: &str, connect_timeout: Duration) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    let ms = connect_timeout
        .as_millis()
        .clamp(1_000, 3_600_000)
        .to_string();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "keyflow")
        .set("socket.connection.setup.timeout.ms", &ms)
        // librdkafka logs through its own callback: keep it to errors.
        .set("log_level", "3");
    config
}

/// An error from the Kafka client, naming the broker list.
fn kafka_error(brokers: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::External(format!("kafka {brokers}: {what}: {e}"))
}

/// Logs a client's error, but not the end of a partition: that is news for
/// `poll`, which librdkafka can also report globally.
fn log_error(error: rdkafka::error::KafkaError, reason: &str) {
    let eof = rdkafka::types::RDKafkaErrorCode::PartitionEOF;
    if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_))
        && error.rdkafka_error_code() != Some(eof)
    {
        tracing::error!("kafka: {error}: {reason}");
    }
}

/// The context of a consumer that reads to the ends of partitions.
struct ReadToEnd;

impl rdkafka::ClientContext for ReadToEnd {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        log_error(error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ReadToEnd {}
