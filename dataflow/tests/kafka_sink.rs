//! The transactional Kafka sink's marker, on librdkafka's mock cluster: what
//! one producer committed, the next one with the same transactional id
//! finds, and does not write again.
#![cfg(feature = "kafka")]

use std::collections::BTreeMap;
use std::time::Duration;

use keyflow_dataflow::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use keyflow_dataflow::kafka::rdkafka::error::KafkaError;
use keyflow_dataflow::kafka::rdkafka::mocking::MockCluster;
use keyflow_dataflow::kafka::rdkafka::producer::DefaultProducerContext;
use keyflow_dataflow::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use keyflow_dataflow::kafka::{KafkaSink, KafkaSinkConfig};
use keyflow_dataflow::sink::Sink;

fn values(brokers: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "reader")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("out", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut got = Vec::new();
    for _ in 0..600 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(String::from_utf8_lossy(m.payload().unwrap()).into_owned()),
            Some(Err(KafkaError::PartitionEOF(_))) => return got,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    panic!("no end of partition");
}

/// A checkpoint's part for the sink: one batch below epoch 60,000 not yet
/// in the topic, whose records of this id, if any, start at offset 0.
fn point(records: &[(&str, &str)]) -> Vec<u8> {
    let batch: Vec<(String, String)> = records
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ends: BTreeMap<i32, i64> = [(0, 0)].into();
    keyflow_dataflow::checkpoint::encode(&(vec![(60_000u64, batch)], ends)).unwrap()
}

fn config(brokers: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        address: format!("kafka://{brokers}/out").parse().unwrap(),
        transactional_id: Some("keyflow-test-1".into()),
        connect_timeout: Duration::from_secs(10),
    }
}

fn cluster() -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    // The mock cluster cannot create topics on request.
    cluster.create_topic("out.keyflow-commits", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

#[test]
fn a_restarted_sink_finds_what_was_committed_and_skips_it() {
    let (_cluster, brokers) = cluster();
    let config = config(&brokers);
    let encode = |ts: u64, n: &u64| (ts.to_string(), format!("{ts}:{n}"));
    // A checkpoint at epoch 60,000 held the results below it, not yet in
    // the topic: the restore commits them.
    let point = point(&[("1000", "1000:7")]);
    let mut first = KafkaSink::new(config.clone(), encode).unwrap();
    first.restore(&point).unwrap();
    assert_eq!(values(&brokers), ["1000:7"]);

    // A second restore of the same checkpoint (a crash after the commit)
    // finds the marker and commits nothing again; results below the marker
    // are skipped, later ones go out when the stream ends.
    let mut second = KafkaSink::new(config, encode).unwrap();
    second.restore(&point).unwrap();
    second.write(1000, &[(1000, 7)]).unwrap();
    second.write(61_000, &[(61_000, 8)]).unwrap();
    second.close().unwrap();
    assert_eq!(values(&brokers), ["1000:7", "61000:8"]);
}

// librdkafka's mock cluster, like some Kafka-compatible brokers, shows the
// records of an aborted transaction to `read_committed` consumers. A crash
// in the middle of a transaction leaves some of a batch there; the restart
// finds them by their tags and produces only the rest.
#[test]
fn records_of_a_transaction_cut_short_are_not_written_twice() {
    use keyflow_dataflow::kafka::rdkafka::message::{Header, OwnedHeaders};
    use keyflow_dataflow::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (_cluster, brokers) = cluster();
    let encode = |ts: u64, n: &u64| (ts.to_string(), format!("{ts}:{n}"));
    let point = point(&[("1000", "1000:7"), ("2000", "2000:8")]);
    // What the crashed run had produced: the batch's first record, tagged
    // `{id} {epoch} {index}`, in a transaction never committed.
    let crashed: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", "keyflow-test-1")
        .create()
        .unwrap();
    crashed.init_transactions(Duration::from_secs(10)).unwrap();
    crashed.begin_transaction().unwrap();
    let tag = OwnedHeaders::new().insert(Header {
        key: "keyflow-batch",
        value: Some("keyflow-test-1 60000 0"),
    });
    let record = BaseRecord::to("out")
        .key("1000")
        .payload("1000:7")
        .headers(tag);
    crashed.send(record).map_err(|(e, _)| e).unwrap();
    crashed.flush(Duration::from_secs(10)).unwrap();
    std::mem::forget(crashed);

    let mut restarted = KafkaSink::new(config(&brokers), encode).unwrap();
    restarted.restore(&point).unwrap();
    restarted.close().unwrap();
    assert_eq!(values(&brokers), ["1000:7", "2000:8"]);
}
