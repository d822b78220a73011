//! The Kafka source and sink, end to end through the CLI, against
//! librdkafka's mock cluster (in this process, listening on loopback):
//! events written by `keyflow generate --to kafka://` give the same trending
//! output as the same events from a file, at 1x4 and 2x2; a checkpointed run
//! SIGKILLed and restarted neither loses nor repeats an event; and with
//! `--out kafka://` and checkpoints, a `read_committed` consumer sees every
//! result exactly once after kills.
#![cfg(feature = "kafka")]

mod checkpoint_support;

use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint_support::*;
use keyflow::dataflow::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use keyflow::dataflow::kafka::rdkafka::error::KafkaError;
use keyflow::dataflow::kafka::rdkafka::mocking::MockCluster;
use keyflow::dataflow::kafka::rdkafka::producer::DefaultProducerContext;
use keyflow::dataflow::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The generator's flags: 80 minutes of events at 20/s over 200 articles
/// (enough history for the six-window rule to find trending articles).
const EVENTS: &[&str] = &[
    "--articles",
    "200",
    "--rate",
    "20",
    "--duration",
    "80m",
    "--seed",
    "7",
];

fn generate_into(to: &str) {
    let mut args = s(&["generate", "--to", to]);
    args.extend(s(EVENTS));
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "generate --to {to}: {err}");
}

/// A mock cluster with topic `events` (4 partitions) filled by the
/// generator, and the same events in `dir/events.jsonl`.
fn cluster_with_events(dir: &Path) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("events", 4, 1).expect("topic");
    cluster.create_topic("results", 3, 1).expect("topic");
    // The mock cluster cannot create topics on request: the sink's marker
    // topic is made here, as an operator may make it ahead on a real one.
    cluster
        .create_topic("results.keyflow-commits", 1, 1)
        .expect("topic");
    let brokers = cluster.bootstrap_servers();
    generate_into(&format!("kafka://{brokers}/events"));
    generate_into(&p(&dir.join("events.jsonl")));
    (cluster, brokers)
}

fn trending(input: &[String], out: &str, extra: &[&str]) -> Vec<String> {
    let mut a = s(&["run", "trending", "--top", "0", "--quiet"]);
    a.extend(input.iter().cloned());
    a.extend(s(&["--out", out]));
    a.extend(s(extra));
    a
}

fn kafka_input(brokers: &str) -> Vec<String> {
    s(&[
        "--input-format",
        "kafka",
        "--input",
        &format!("kafka://{brokers}/events"),
        "--bounded",
    ])
}

fn file_reference(dir: &Path) -> Vec<u8> {
    let out = dir.join("ref.jsonl");
    let input = s(&["--input", &p(&dir.join("events.jsonl"))]);
    let (code, err) = finish(&trending(&input, &p(&out), &[]));
    assert_eq!(code, 0, "{err}");
    let want = read(&out);
    let text = String::from_utf8_lossy(&want);
    assert!(
        text.lines().count() > 60 && text.lines().any(|l| !l.contains("\"trending\":0")),
        "nothing trends in the reference: it would prove little"
    );
    want
}

/// Every message of `topic`, as a `read_committed` consumer sees them.
fn consume(brokers: &str, topic: &str, partitions: i32) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let (mut got, mut ended) = (Vec::new(), std::collections::BTreeSet::new());
    let start = Instant::now();
    while ended.len() < partitions as usize {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{topic} did not end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {}
        }
    }
    got
}

/// The group's committed offsets on `events`, per partition.
fn committed(brokers: &str, group: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition("events", p);
    }
    let found = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    found
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => -1,
        })
        .collect()
}

/// Fails naming the first line that differs.
fn same_lines(what: &str, got: &[u8], want: &[u8]) {
    let (got, want) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    let (g, w): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    if let Some(i) = (0..g.len().max(w.len())).find(|i| g.get(*i) != w.get(*i)) {
        panic!(
            "{what} differs at line {} of {} (want {}):\n got: {:?}\nwant: {:?}",
            i + 1,
            g.len(),
            w.len(),
            g.get(i),
            w.get(i)
        );
    }
}

#[test]
fn a_topic_gives_the_files_output_at_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, brokers) = cluster_with_events(dir.path());
    let want = file_reference(dir.path());
    let input = kafka_input(&brokers);
    let one = dir.path().join("1x4.jsonl");
    let (code, err) = finish(&trending(&input, &p(&one), &["--workers", "4"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        read(&one) == want,
        "1x4 from Kafka differs from the file's output"
    );

    let two = dir.path().join("2x2.jsonl");
    let mut args = s(&["cluster", "--processes", "2", "--workers", "2", "--"]);
    args.extend(trending(&input, &p(&two), &[]));
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        read(&two) == want,
        "2x2 from Kafka differs from the file's output"
    );

    // A missing topic is refused before any work, naming it.
    let gone = s(&[
        "--input-format",
        "kafka",
        "--input",
        &format!("kafka://{brokers}/no-such-topic"),
        "--bounded",
    ]);
    let (code, err) = finish(&trending(&gone, &p(&dir.path().join("x")), &[]));
    assert_ne!(code, 0);
    assert!(err.contains("no-such-topic"), "{err}");
}

#[test]
fn killed_and_restarted_from_checkpoints_nothing_is_lost_or_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, brokers) = cluster_with_events(dir.path());
    let want = file_reference(dir.path());
    let input = kafka_input(&brokers);
    let (out, ck) = (dir.path().join("k.jsonl"), dir.path().join("k.ckpt"));
    let args = trending(
        &input,
        &p(&out),
        &["--workers", "2", "--checkpoint-dir", &p(&ck)],
    );
    let timed = trending(
        &input,
        &p(&dir.path().join("t.jsonl")),
        &[
            "--workers",
            "2",
            "--checkpoint-dir",
            &p(&dir.path().join("t.ckpt")),
        ],
    );
    let start = Instant::now();
    assert_eq!(finish(&timed).0, 0);
    let full = start.elapsed().as_millis() as u64;
    let delays: Vec<u64> = [30, 50, 70].iter().map(|pct| full * pct / 100).collect();
    let killed = kill_and_finish(&args, &delays);
    assert!(killed >= 1, "no run was still running when killed");
    same_lines("the restarted run's output", &read(&out), &want);
    // Offsets go to the group after complete checkpoints, for monitoring
    // only: a run may end before one completes while its partitions are
    // read, so none may be there; those that are lie within the topic.
    let offsets = committed(&brokers, "keyflow");
    assert!(
        offsets.iter().all(|o| (-1..=30_000).contains(o)),
        "{offsets:?}"
    );
}

// librdkafka's mock cluster shows the records of aborted transactions to
// `read_committed` consumers, as some Kafka-compatible brokers do: a kill in
// the middle of a transaction leaves them there, and the restart must not
// write them again.
#[test]
fn the_transactional_sink_delivers_each_result_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, brokers) = cluster_with_events(dir.path());
    let want = file_reference(dir.path());
    let want: Vec<String> = String::from_utf8(want)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let input = kafka_input(&brokers);
    let ck = dir.path().join("tx.ckpt");
    let topic = format!("kafka://{brokers}/results");
    let args = trending(
        &input,
        &topic,
        &[
            "--workers",
            "2",
            "--checkpoint-dir",
            &p(&ck),
            // Many checkpoints, so many transactions for a kill to cut.
            "--checkpoint-every",
            "10s",
        ],
    );
    // Kill once a checkpoint is complete (so that some results are in
    // committed transactions), then again soon after the restart.
    let mut killed = 0;
    for wait_for_epoch in [true, false] {
        let mut child = cmd(&args).spawn().expect("start");
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let ready = if wait_for_epoch {
                has_complete_epoch(&ck)
            } else {
                start.elapsed() > Duration::from_millis(500)
            };
            if ready || start.elapsed() > Duration::from_secs(120) {
                if child.kill().is_ok() {
                    killed += 1;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.wait();
    }
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert!(killed >= 1);
    let mut got = consume(&brokers, "results", 3);
    // Keyed by minute: each minute's line once, whatever the partition.
    got.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
    let lines: Vec<String> = got.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(lines.len(), want.len(), "results lost or repeated");
    assert!(
        lines == want,
        "the committed results differ from the file's"
    );
}

#[test]
fn bad_messages_follow_bad_input_and_a_missing_broker_is_a_clear_error() {
    use keyflow::dataflow::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mixed", 1, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let good = |m: u64| {
        format!(
            r#"{{"project":"en","title":"A","ts":{}}}"#,
            1_704_067_200_000 + m
        )
    };
    for value in [
        good(0),
        "not json".into(),
        good(1000),
        r#"{"project":"en"}"#.into(),
    ] {
        producer
            .send(BaseRecord::<(), _>::to("mixed").payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let input = s(&[
        "--input-format",
        "kafka",
        "--input",
        &format!("kafka://{brokers}/mixed"),
        "--bounded",
    ]);
    let out = p(&dir.path().join("out.jsonl"));
    let (code, err) = finish(&trending(&input, &out, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 events") && err.contains("2 bad"), "{err}");
    let (code, err) = finish(&trending(&input, &out, &["--bad-input", "fail"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("/mixed/0@1"),
        "the error names the message: {err}"
    );

    // Nothing listens on port 9: refused after --connect-timeout.
    let nowhere = s(&[
        "--input-format",
        "kafka",
        "--input",
        "kafka://127.0.0.1:9/events",
    ]);
    let start = Instant::now();
    let (code, err) = finish(&trending(&nowhere, &out, &["--connect-timeout", "2s"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("127.0.0.1:9") && err.contains("--connect-timeout"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}
