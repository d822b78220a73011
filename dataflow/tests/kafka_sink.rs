//! The transactional Kafka sink's marker, on librdkafka's mock cluster: what
//! one producer committed, the next one with the same transactional id
//! finds, and does not write again.
#![cfg(feature = "kafka")]

use std::time::Duration;

use keyflow_dataflow::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use keyflow_dataflow::kafka::rdkafka::error::KafkaError;
use keyflow_dataflow::kafka::rdkafka::mocking::MockCluster;
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

#[test]
fn a_restarted_sink_finds_what_was_committed_and_skips_it() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    // The mock cluster cannot create topics on request.
    cluster.create_topic("out.keyflow-commits", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let config = KafkaSinkConfig {
        address: format!("kafka://{brokers}/out").parse().unwrap(),
        transactional_id: Some("keyflow-test-1".into()),
        connect_timeout: Duration::from_secs(10),
    };
    let encode = |ts: u64, n: &u64| (ts.to_string(), format!("{ts}:{n}"));
    // A checkpoint at epoch 60,000 held the results below it, not yet in
    // the topic: the restore commits them.
    let point = keyflow_dataflow::checkpoint::encode(&vec![(
        60_000u64,
        vec![("1000".to_string(), "1000:7".to_string())],
    )])
    .unwrap();
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
