"""An independent Kafka client (kafka-python) for the tansu tests.

    client.py BOOTSTRAP ready TIMEOUT_S
    client.py BOOTSTRAP create-topic NAME PARTITIONS
    client.py BOOTSTRAP produce TOPIC RECORDS.jsonl
    client.py BOOTSTRAP consume TOPIC read_committed|read_uncommitted TIMEOUT_S QUIET_S

`produce` reads one JSON object a line ({"partition": int|null,
"key": str|null, "value": str}) and fails unless the broker acknowledged
every record. `consume` prints one JSON array a line:
[partition, offset, key, value].

No consumer group is used anywhere: a group join takes tens of seconds on
tansu, and explicit assignment reads every partition without one.
"""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition


def ready(bootstrap, timeout_s):
    # A metadata answer, not only an open port: the broker is then serving
    # Kafka requests.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=5000
            )
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"the broker at {bootstrap} did not answer: {e!r}")
            time.sleep(0.2)


def create_topic(bootstrap, name, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            raise_errors=True,
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def produce(bootstrap, topic, path):
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        sent = [
            producer.send(
                topic,
                value=r["value"].encode("utf-8"),
                key=None if r.get("key") is None else r["key"].encode("utf-8"),
                partition=r.get("partition"),
            )
            for r in records
        ]
        producer.flush(timeout=60)
        for future in sent:
            # Raises the send's error, if any.
            future.get(timeout=60)
    finally:
        producer.close(timeout=10)
    print(len(records))


def consume(bootstrap, topic, isolation, timeout_s, quiet_s):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation,
    )
    deadline = time.monotonic() + timeout_s
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise SystemExit(f"topic {topic} has no partitions")
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out = []
        last_new = time.monotonic()
        while True:
            for tp, batch in consumer.poll(timeout_ms=200).items():
                for r in batch:
                    out.append(
                        [
                            r.partition,
                            r.offset,
                            None if r.key is None else r.key.decode("utf-8"),
                            r.value.decode("utf-8"),
                        ]
                    )
                    last_new = time.monotonic()
            # tansu's end offsets can lag behind what a fetch returns, so
            # reaching them is necessary but not enough: a quiet period
            # must pass as well.
            ends = consumer.end_offsets(tps)
            positions = {tp: consumer.position(tp) for tp in tps}
            reached = all(positions[tp] >= ends[tp] for tp in tps)
            now = time.monotonic()
            if reached and now - last_new >= quiet_s:
                break
            if now > deadline:
                raise SystemExit(
                    f"consuming {topic} ran past {timeout_s}s: {len(out)} records read, "
                    f"positions {sorted((t.partition, o) for t, o in positions.items())}, "
                    f"end offsets {sorted((t.partition, o) for t, o in ends.items())}"
                )
    finally:
        consumer.close()
    for row in out:
        print(json.dumps(row))


def main():
    bootstrap, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if command == "ready":
        ready(bootstrap, float(args[0]))
    elif command == "create-topic":
        create_topic(bootstrap, args[0], int(args[1]))
    elif command == "produce":
        produce(bootstrap, args[0], args[1])
    elif command == "consume":
        if args[1] not in ("read_committed", "read_uncommitted"):
            raise SystemExit(f"unknown isolation level {args[1]}")
        consume(bootstrap, args[0], args[1], float(args[2]), float(args[3]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
