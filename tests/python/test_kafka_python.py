"""kafka-python (a pure-Python client with its own protocol code) against Strom: produce,
consume, admin, every compression codec, offsets by time and ListOffsets.

Consumers here run with `group_id=None` and manual assignment; groups are in test_groups.py.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, OffsetSpec
from kafka.errors import (
    InvalidPartitionsError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from support import DEFAULT_WAIT_S, wait_until

SEND_TIMEOUT_S = 20


@pytest.fixture
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    yield client
    client.close()


def make_producer(broker, **config) -> KafkaProducer:
    config = {"linger_ms": 5, **config}
    return KafkaProducer(bootstrap_servers=broker.bootstrap, **config)


def make_consumer(broker) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def send_all(producer: KafkaProducer, topic: str, records: list[dict]) -> list:
    futures = [producer.send(topic, **record) for record in records]
    producer.flush(SEND_TIMEOUT_S)
    return [future.get(SEND_TIMEOUT_S) for future in futures]


def read(broker, topic: str, count: int, partitions=(0,)) -> list:
    """Reads `count` records from the start of `partitions`, in poll order."""
    consumer = make_consumer(broker)
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        got: list = []

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=200, max_records=count).values():
                got.extend(records)
            return len(got) >= count

        wait_until(enough, DEFAULT_WAIT_S, f"{count} records (have {len(got)})")
        return got
    finally:
        consumer.close()


def create_topic(admin: KafkaAdminClient, name: str, partitions: int = 1, configs=None):
    admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}}
    )


def test_produce_consume_keys_headers_null_value_in_order(broker, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic)
    records = [
        {"key": f"k{i}".encode(), "value": f"v{i}".encode(), "headers": [("n", str(i).encode())]}
        for i in range(50)
    ]
    records.append({"key": b"tombstone", "value": None})
    records.append({"key": None, "value": b"no key", "headers": [("a", b"1"), ("a", b"2")]})
    producer = make_producer(broker)
    try:
        metadata = send_all(producer, topic, records)
    finally:
        producer.close()
    assert [m.offset for m in metadata] == list(range(len(records)))

    got = read(broker, topic, len(records))
    assert [r.offset for r in got] == list(range(len(records)))
    assert [(r.key, r.value) for r in got[:50]] == [(x["key"], x["value"]) for x in records[:50]]
    assert [r.headers for r in got[:50]] == [x["headers"] for x in records[:50]]
    assert got[50].key == b"tombstone" and got[50].value is None
    assert got[51].key is None and got[51].value == b"no key"
    assert got[51].headers == [("a", b"1"), ("a", b"2")]


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks_levels(broker, admin, topic_name, acks):
    topic = topic_name()
    create_topic(admin, topic)
    producer = make_producer(broker, acks=acks)
    try:
        send_all(producer, topic, [{"value": f"{acks}-{i}".encode()} for i in range(20)])
    finally:
        producer.close()
    got = read(broker, topic, 20)
    assert [r.value for r in got] == [f"{acks}-{i}".encode() for i in range(20)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, admin, topic_name, codec):
    topic = topic_name()
    create_topic(admin, topic)
    records = [
        {"key": f"k{i}".encode(), "value": (f"{codec} record {i} " * 20).encode()}
        for i in range(200)
    ]
    producer = make_producer(broker, compression_type=codec, linger_ms=50)
    try:
        send_all(producer, topic, records)
    finally:
        producer.close()
    got = read(broker, topic, len(records))
    assert [(r.key, r.value) for r in got] == [(x["key"], x["value"]) for x in records]
    assert [r.offset for r in got] == list(range(len(records)))
    # The broker stores batches as sent: the bytes on disk show the client compressed.
    raw_bytes = sum(len(x["value"]) for x in records)
    assert broker.partition_log_bytes(topic, 0) < raw_bytes // 4, f"{codec} not applied"


def test_partitions_keep_their_own_order(broker, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic, partitions=3)
    records = [{"value": str(i).encode(), "partition": i % 3} for i in range(90)]
    producer = make_producer(broker)
    try:
        send_all(producer, topic, records)
    finally:
        producer.close()
    got = read(broker, topic, 90, partitions=(0, 1, 2))
    for partition in range(3):
        values = [r.value for r in got if r.partition == partition]
        assert values == [str(i).encode() for i in range(partition, 90, 3)]


def test_offsets_for_times_and_begin_end_offsets(broker, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic)
    base_ms = int(time.time() * 1000) - 60_000
    producer = make_producer(broker)
    try:
        send_all(
            producer,
            topic,
            [{"value": str(i).encode(), "timestamp_ms": base_ms + i * 1000} for i in range(10)],
        )
    finally:
        producer.close()
    tp = TopicPartition(topic, 0)
    consumer = make_consumer(broker)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 10}
        found = consumer.offsets_for_times({tp: base_ms + 4500})[tp]
        assert (found.offset, found.timestamp) == (5, base_ms + 5000)
        assert consumer.offsets_for_times({tp: base_ms + 3_600_000})[tp] is None
    finally:
        consumer.close()

    listed = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp]
    assert listed.offset == 0
    listed = admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp]
    assert listed.offset == 10
    listed = admin.list_partition_offsets({tp: OffsetSpec.MAX_TIMESTAMP})[tp]
    assert (listed.offset, listed.timestamp) == (9, base_ms + 9000)


def test_admin_create_list_describe_alter_partition_delete(broker, admin, topic_name):
    topic = topic_name()
    create_topic(
        admin, topic, partitions=2, configs={"retention.ms": "3600000", "cleanup.policy": "compact"}
    )
    assert topic in admin.list_topics()
    [described] = admin.describe_topics([topic])
    assert described["name"] == topic
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1]

    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    modified = admin.describe_configs([resource])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {
        "retention.ms": "3600000",
        "cleanup.policy": "compact",
    }
    everything = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    assert everything["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"

    change = ConfigResource(
        ConfigResourceType.TOPIC,
        topic,
        configs={"retention.ms": "7200000", "cleanup.policy": (AlterConfigOp.DELETE, None)},
    )
    assert admin.alter_configs([change]) == {"topic": {topic: "OK"}}
    modified = admin.describe_configs([resource])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {"retention.ms": "7200000"}

    admin.create_partitions({topic: 4})
    wait_until(
        lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 4,
        DEFAULT_WAIT_S,
        "4 partitions",
    )

    admin.delete_topics([topic])
    wait_until(lambda: topic not in admin.list_topics(), DEFAULT_WAIT_S, "topic deleted")


def test_admin_errors(admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic)
    with pytest.raises(TopicAlreadyExistsError):
        create_topic(admin, topic)
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: 1})
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic_name("missing")])


def test_admin_delete_records_and_describe_cluster(broker, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic)
    producer = make_producer(broker)
    try:
        send_all(producer, topic, [{"value": str(i).encode()} for i in range(10)])
    finally:
        producer.close()
    tp = TopicPartition(topic, 0)
    result = admin.delete_records({tp: 6})[tp]
    assert (result["error_code"], result["low_watermark"]) == (0, 6)
    assert [r.offset for r in read(broker, topic, 4)] == [6, 7, 8, 9]

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(1, broker.port)]


@pytest.mark.parametrize("api_version", [(0, 11), (1, 0), (2, 0), (2, 4), (3, 0)])
def test_pinned_older_protocol_versions(broker, admin, topic_name, api_version):
    """kafka-python pinned to an older broker version uses the oldest request versions Strom
    still accepts (Produce v3, Fetch v4, ListOffsets v1/v2, Metadata v1...)."""
    topic = topic_name()
    create_topic(admin, topic)
    producer = make_producer(broker, api_version=api_version, compression_type="gzip")
    try:
        [metadata] = send_all(
            producer, topic, [{"key": b"k", "value": b"v", "headers": [("h", b"1")]}]
        )
    finally:
        producer.close()
    assert metadata.offset == 0

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, api_version=api_version
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning()
        got: list = []
        wait_until(
            lambda: got.extend(consumer.poll(timeout_ms=200).get(tp, [])) or got,
            DEFAULT_WAIT_S,
            "the record",
        )
        assert [(r.key, r.value, r.headers) for r in got] == [(b"k", b"v", [("h", b"1")])]
        assert consumer.offsets_for_times({tp: 0})[tp].offset == 0
        assert consumer.end_offsets([tp]) == {tp: 1}
    finally:
        consumer.close()


def test_idempotent_producer(broker, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    producer = make_producer(broker, enable_idempotence=True, acks="all")
    try:
        records = [{"value": str(i).encode(), "partition": i % 2} for i in range(200)]
        metadata = send_all(producer, topic, records)
    finally:
        producer.close()
    for partition in (0, 1):
        assert [m.offset for m in metadata if m.partition == partition] == list(range(100))
    got = read(broker, topic, 200, partitions=(0, 1))
    assert sorted(int(r.value) for r in got) == list(range(200))


def test_describe_broker_configs(admin):
    resource = ConfigResource(ConfigResourceType.BROKER, "1")
    entries = admin.describe_configs([resource], config_filter="all")["broker"]["1"]
    assert entries["auto.create.topics.enable"]["value"] == "true"
    assert "num.partitions" in entries


def test_describe_features_shows_the_transaction_version(broker, admin, broker_factory):
    """KIP-584 feature levels as kafka-python's admin reads them: `transaction.version` is
    supported up to 2 and finalized at 2 (so clients that know transactions v2 use it), or at
    the level the broker is told."""
    features = admin.describe_features()
    txn = features["transaction.version"]
    assert txn["supported"] == (0, 2), features
    assert txn["finalized"] == (2, 2), features
    assert txn["finalized_epoch"] is not None and txn["finalized_epoch"] > 0, features

    pinned = broker_factory({"transaction.version": 1})
    client = KafkaAdminClient(bootstrap_servers=pinned.bootstrap, request_timeout_ms=20000)
    try:
        assert client.describe_features()["transaction.version"]["finalized"] == (1, 1)
    finally:
        client.close()
