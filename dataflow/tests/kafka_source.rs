//! The Kafka source's restore on librdkafka's mock cluster: an offset the
//! broker no longer holds, or never held, is an error naming it, never a
//! silent jump.
#![cfg(feature = "kafka")]

use std::time::Duration;

use keyflow_dataflow::kafka::rdkafka::mocking::MockCluster;
use keyflow_dataflow::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use keyflow_dataflow::kafka::rdkafka::ClientConfig;
use keyflow_dataflow::kafka::{KafkaSource, KafkaSourceConfig, KafkaStart, KafkaTime};
use keyflow_dataflow::source::Source;

#[test]
fn a_restore_past_the_partition_s_end_is_refused() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..3 {
        let payload = i.to_string();
        producer
            .send(BaseRecord::<(), _>::to("in").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let config = KafkaSourceConfig {
        address: format!("kafka://{brokers}/in").parse().unwrap(),
        group: "keyflow-test".into(),
        start: KafkaStart::Earliest,
        time: KafkaTime::Json,
        bounded: true,
        connect_timeout: Duration::from_secs(10),
    };
    let source = KafkaSource::new(config, |payload, _| {
        let n: u64 = String::from_utf8_lossy(payload)
            .parse()
            .map_err(|_| "not a number".to_string())?;
        Ok((n, n))
    })
    .unwrap();
    // Within the partition, and at its end: resumed.
    assert!(source.open_at(0, 1).is_ok());
    assert!(source.open_at(0, 3).is_ok());
    // Past its end (the topic made again since the checkpoint): refused.
    let err = source.open_at(0, 10).err().unwrap().to_string();
    assert!(
        err.contains("offset 10") && err.contains("ends at 3") && err.contains("partition 0"),
        "{err}"
    );
}
