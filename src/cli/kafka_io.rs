//! Kafka on the command line: `--input-format kafka --input kafka://HOST:PORT/TOPIC`
//! and `--out kafka://HOST:PORT/TOPIC`. The flags exist in every build, so
//! that a build without the `kafka` feature can say how to get it.

use std::path::{Path, PathBuf};

use clap::Args;

/// What a build without Kafka says when asked for it.
#[cfg(not(feature = "kafka"))]
const NOT_BUILT: &str = "this keyflow was built without Kafka: install it with \
     `cargo install --path . --features kafka` (needs cmake and a C compiler)";

/// Kafka source flags (with `--input-format kafka`).
#[derive(Debug, Clone, Args)]
pub struct KafkaSourceArgs {
    /// With --input-format kafka: where a fresh start reads each partition
    /// from: earliest, latest, committed (the group's offsets) or epoch
    /// milliseconds [default: earliest]
    #[arg(long, value_name = "WHERE")]
    pub kafka_start: Option<String>,
    /// With --input-format kafka: the consumer group offsets are committed
    /// to after each complete checkpoint (for monitoring; keyflow assigns
    /// partitions itself) [default: keyflow]
    #[arg(long, value_name = "NAME")]
    pub kafka_group: Option<String>,
    /// With --input-format kafka: event time from the JSON `ts` field
    /// (json) or the record's timestamp (record) [default: json]
    #[arg(long, value_name = "FROM")]
    pub kafka_time: Option<String>,
}

impl KafkaSourceArgs {
    /// Refuses Kafka flags without a Kafka input, naming the first.
    pub fn refuse_unless(&self, kafka: bool) -> anyhow::Result<()> {
        if kafka {
            return Ok(());
        }
        for (flag, given) in [
            ("--kafka-start", self.kafka_start.is_some()),
            ("--kafka-group", self.kafka_group.is_some()),
            ("--kafka-time", self.kafka_time.is_some()),
        ] {
            if given {
                anyhow::bail!("{flag} needs --input-format kafka");
            }
        }
        Ok(())
    }

    /// The source configuration for `input`, checked.
    #[cfg(feature = "kafka")]
    pub fn config(
        &self,
        input: &Path,
        bounded: bool,
        connect_timeout: std::time::Duration,
    ) -> anyhow::Result<keyflow::dataflow::kafka::KafkaSourceConfig> {
        use keyflow::dataflow::kafka::{KafkaSourceConfig, KafkaStart, KafkaTime};
        let address = input.to_string_lossy().parse()?;
        let start: KafkaStart = self.kafka_start.as_deref().unwrap_or("earliest").parse()?;
        let time = match self.kafka_time.as_deref().unwrap_or("json") {
            "json" => KafkaTime::Json,
            "record" => KafkaTime::Record,
            other => anyhow::bail!("--kafka-time `{other}` is not one of: json, record"),
        };
        let group = self.kafka_group.clone().unwrap_or_else(|| "keyflow".into());
        if group.trim().is_empty() {
            anyhow::bail!("--kafka-group: the group name is empty");
        }
        Ok(KafkaSourceConfig {
            address,
            group,
            start,
            time,
            bounded,
            connect_timeout,
        })
    }

    /// The source configuration: not in this build.
    #[cfg(not(feature = "kafka"))]
    pub fn config(
        &self,
        _input: &Path,
        _bounded: bool,
        _connect_timeout: std::time::Duration,
    ) -> anyhow::Result<std::convert::Infallible> {
        anyhow::bail!("--input-format kafka: {NOT_BUILT}")
    }
}

/// Whether an output flag names a Kafka topic rather than a file.
pub fn is_kafka(path: &Path) -> bool {
    path.to_string_lossy().starts_with("kafka://")
}

/// `--out` as a file, when it is not a Kafka topic.
pub fn file_out(out: &Option<PathBuf>) -> Option<&PathBuf> {
    out.as_ref().filter(|p| !is_kafka(p))
}

/// `--out` as a Kafka topic, checked (and refused in a build without Kafka).
pub fn kafka_out(out: &Option<PathBuf>) -> anyhow::Result<Option<KafkaOut>> {
    let Some(path) = out.as_ref().filter(|p| is_kafka(p)) else {
        return Ok(None);
    };
    #[cfg(feature = "kafka")]
    {
        Ok(Some(KafkaOut {
            address: path.to_string_lossy().parse()?,
            transactional_id: None,
        }))
    }
    #[cfg(not(feature = "kafka"))]
    {
        anyhow::bail!("--out {}: {NOT_BUILT}", path.display())
    }
}

/// Where `--out kafka://` writes.
#[derive(Debug, Clone)]
pub struct KafkaOut {
    #[cfg(feature = "kafka")]
    address: keyflow::dataflow::kafka::KafkaAddress,
    /// Set with checkpoints: exactly-once through transactions.
    transactional_id: Option<String>,
}

impl KafkaOut {
    /// With checkpoints in `dir`: exactly-once, under a transactional id
    /// kept in the directory, so that a restart fences the crashed run's
    /// producer, and a new directory (or `--fresh`) starts a new history.
    pub fn exactly_once(&mut self, dir: &Path, job: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let id = keyflow::dataflow::checkpoint::identity(dir, "kafka-sink")?;
        self.transactional_id = Some(format!("keyflow-{job}-{id}"));
        Ok(())
    }

    /// The sink, writing each record as `encode` gives its key and line.
    #[cfg(feature = "kafka")]
    pub fn sink<T>(
        &self,
        connect_timeout: std::time::Duration,
        encode: keyflow::dataflow::kafka::Encode<T>,
    ) -> keyflow::dataflow::Result<keyflow::dataflow::kafka::KafkaSink<T>> {
        keyflow::dataflow::kafka::KafkaSink::new(
            keyflow::dataflow::kafka::KafkaSinkConfig {
                address: self.address.clone(),
                transactional_id: self.transactional_id.clone(),
                connect_timeout,
            },
            encode,
        )
    }
}

/// A trending minute as `--out` writes it, keyed by its minute.
#[cfg(feature = "kafka")]
pub fn trending_record(
    _: keyflow::dataflow::time::EventTime,
    minute: &keyflow::jobs::trending::TrendingMinute,
) -> (String, String) {
    (
        minute.t.to_string(),
        serde_json::to_string(minute).unwrap_or_default(),
    )
}

/// An anomaly hour as `--out` writes it, keyed by its day and hour.
#[cfg(feature = "kafka")]
pub fn anomaly_record(
    _: keyflow::dataflow::time::EventTime,
    hour: &keyflow::jobs::anomaly::AnomalyHour,
) -> (String, String) {
    (
        format!("{}:{}", hour.day, hour.hour),
        serde_json::to_string(hour).unwrap_or_default(),
    )
}
