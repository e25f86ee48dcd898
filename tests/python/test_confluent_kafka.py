"""confluent-kafka (librdkafka 2.x) against Strom: produce, consume, admin, compression,
the idempotent producer, offsets by timestamp, and data surviving a restart.

Consumers here use manual assignment and never commit; groups are in test_groups.py.
"""

from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    OffsetSpec,
    ResourceType,
)

from confluent_clients import (
    ADMIN_TIMEOUT_S,
    admin,
    consume_n,
    consumer,
    create_topic,
    produce_all,
    producer,
    read_from_beginning,
)
from support import DEFAULT_WAIT_S, wait_until

# ---- produce and consume ----------------------------------------------------------------


def test_produce_consume_keys_headers_null_value_in_order(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    records = [
        {"key": f"k{i}".encode(), "value": f"v{i}".encode(), "headers": [("n", str(i).encode())]}
        for i in range(50)
    ]
    records.append({"key": b"tombstone", "value": None})
    records.append({"key": None, "value": b"no key", "headers": [("a", b"1"), ("a", b"2")]})
    delivered = produce_all(producer(broker), topic, records)
    assert [m.offset() for m in delivered] == list(range(len(records)))

    got = read_from_beginning(broker, topic, len(records))
    assert [m.offset() for m in got] == list(range(len(records)))
    for i, msg in enumerate(got[:50]):
        assert msg.key() == f"k{i}".encode()
        assert msg.value() == f"v{i}".encode()
        assert msg.headers() == [("n", str(i).encode())]
    assert got[50].key() == b"tombstone" and got[50].value() is None
    assert got[51].key() is None and got[51].value() == b"no key"
    assert got[51].headers() == [("a", b"1"), ("a", b"2")]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_levels(broker, topic_name, acks):
    topic = topic_name()
    create_topic(broker, topic)
    records = [{"value": f"acks-{acks}-{i}".encode()} for i in range(20)]
    produce_all(producer(broker, acks=acks), topic, records)
    got = read_from_beginning(broker, topic, len(records))
    assert [m.value() for m in got] == [r["value"] for r in records]


def test_keyed_records_spread_over_partitions_keep_per_partition_order(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, partitions=3)
    records = [{"key": f"key-{i % 7}".encode(), "value": str(i).encode()} for i in range(140)]
    delivered = produce_all(producer(broker), topic, records)
    by_partition: dict[int, list[bytes]] = {}
    for msg in delivered:
        by_partition.setdefault(msg.partition(), []).append(msg.value())
    assert len(by_partition) > 1, "the default partitioner should use several partitions"

    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        got = consume_n(c, len(records))
    finally:
        c.close()
    seen: dict[int, list[bytes]] = {}
    for msg in got:
        seen.setdefault(msg.partition(), []).append(msg.value())
    assert seen == by_partition


def test_consume_from_end_sees_only_new_records(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    p = producer(broker)
    produce_all(p, topic, [{"value": b"old"}])
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        # The consumer resolves OFFSET_END some time after assign(); keep producing until it
        # sees a record, which must be a new one.
        sent = iter(range(1_000_000))

        def first_new():
            produce_all(p, topic, [{"value": f"new-{next(sent)}".encode()}])
            return c.consume(num_messages=1, timeout=0.3)

        got = wait_until(first_new, DEFAULT_WAIT_S, "a record after OFFSET_END")
        assert not got[0].error(), got[0].error()
        assert got[0].value().startswith(b"new-") and got[0].offset() >= 1
    finally:
        c.close()


@pytest.mark.parametrize(
    "codec",
    [
        "gzip",
        "snappy",
        "lz4",
        "zstd",
    ],
)
def test_compression(broker, topic_name, codec):
    topic = topic_name()
    create_topic(broker, topic)
    records = [
        {"key": f"k{i}".encode(), "value": (f"{codec} record {i} " * 20).encode()}
        for i in range(200)
    ]
    produce_all(producer(broker, compression_type=codec, linger_ms=50), topic, records)
    got = read_from_beginning(broker, topic, len(records))
    assert [(m.key(), m.value()) for m in got] == [(r["key"], r["value"]) for r in records]
    assert [m.offset() for m in got] == list(range(len(records)))
    # The broker stores batches as sent, so the bytes on disk show whether the client
    # compressed; librdkafka silently sends uncompressed when it thinks the broker lacks
    # the codec.
    raw_bytes = sum(len(r["value"]) for r in records)
    assert broker.partition_log_bytes(topic, 0) < raw_bytes // 4, f"{codec} not applied"


def test_idempotent_producer(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, partitions=2)
    p = producer(broker, enable_idempotence=True, max_in_flight_requests_per_connection=5)
    records = [{"key": str(i % 2).encode(), "value": str(i).encode()} for i in range(500)]
    delivered = produce_all(p, topic, records)
    for partition in (0, 1):
        offsets = [m.offset() for m in delivered if m.partition() == partition]
        assert offsets == list(range(len(offsets))), "gaps or duplicates in offsets"
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in (0, 1)])
        got = consume_n(c, len(records))
    finally:
        c.close()
    assert sorted(int(m.value()) for m in got) == list(range(len(records)))


def test_offsets_for_times_and_watermarks(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    base_ms = int(time.time() * 1000) - 60_000
    records = [{"value": str(i).encode(), "timestamp": base_ms + i * 1000} for i in range(10)]
    produce_all(producer(broker), topic, records)

    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
        # One query per call: librdkafka merges duplicate partitions in one request.
        for query_ms, expected in (
            (base_ms - 5000, 0),  # before everything: the first offset
            (base_ms + 3000, 3),  # an exact match
            (base_ms + 4500, 5),  # between two records: the later one
        ):
            answer = c.offsets_for_times([TopicPartition(topic, 0, query_ms)], timeout=10)
            assert answer[0].offset == expected, f"time {query_ms - base_ms} ms after base"
        later = c.offsets_for_times([TopicPartition(topic, 0, base_ms + 3_600_000)], timeout=10)
        assert later[0].offset == -1, "a time after every record has no offset"

        got = read_from_beginning(broker, topic, 10)
        assert [m.timestamp()[1] for m in got] == [r["timestamp"] for r in records]
    finally:
        c.close()


def test_admin_list_offsets(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    base_ms = int(time.time() * 1000) - 60_000
    produce_all(
        producer(broker),
        topic,
        [{"value": b"x", "timestamp": base_ms + i * 10} for i in range(5)],
    )
    tp = TopicPartition(topic, 0)
    a = admin(broker)
    for spec, expected in (
        (OffsetSpec.earliest(), 0),
        (OffsetSpec.latest(), 5),
        (OffsetSpec.max_timestamp(), 4),
        (OffsetSpec.for_timestamp(base_ms + 15), 2),
    ):
        result = a.list_offsets({tp: spec}, request_timeout=10)[tp].result(ADMIN_TIMEOUT_S)
        assert result.offset == expected, f"{spec}: got {result.offset}"


# ---- admin ------------------------------------------------------------------------------


def test_admin_create_list_describe_alter_partition_delete(broker, topic_name):
    topic = topic_name()
    a = admin(broker)
    create_topic(
        broker,
        topic,
        partitions=2,
        config={"retention.ms": "3600000", "cleanup.policy": "compact"},
    )
    metadata = wait_until(
        lambda: a.list_topics(timeout=10).topics.get(topic), DEFAULT_WAIT_S, "topic listed"
    )
    assert sorted(metadata.partitions) == [0, 1]
    for partition in metadata.partitions.values():
        assert partition.leader == 1 and partition.replicas == [1] and partition.isrs == [1]

    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert entries["retention.ms"].value == "3600000"
    assert not entries["retention.ms"].is_default
    assert entries["cleanup.policy"].value == "compact"
    assert "segment.bytes" in entries

    alter = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    a.incremental_alter_configs([alter])[alter].result(ADMIN_TIMEOUT_S)
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert entries["retention.ms"].value == "7200000"
    assert entries["cleanup.policy"].value == "delete"

    a.create_partitions([NewPartitions(topic, 4)])[topic].result(ADMIN_TIMEOUT_S)
    wait_until(
        lambda: len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 4,
        DEFAULT_WAIT_S,
        "4 partitions in metadata",
    )
    produce_all(producer(broker), topic, [{"value": b"p3", "partition": 3}])
    assert read_from_beginning(broker, topic, 1, partition=3)[0].value() == b"p3"

    a.delete_topics([topic], operation_timeout=10)[topic].result(ADMIN_TIMEOUT_S)
    wait_until(
        lambda: topic not in a.list_topics(timeout=10).topics, DEFAULT_WAIT_S, "topic gone"
    )


def test_admin_errors(broker, topic_name):
    topic = topic_name()
    a = admin(broker)
    create_topic(broker, topic)
    with pytest.raises(KafkaException) as exists:
        create_topic(broker, topic)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    with pytest.raises(KafkaException) as fewer:
        a.create_partitions([NewPartitions(topic, 1)])[topic].result(ADMIN_TIMEOUT_S)
    assert fewer.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    missing = topic_name("missing")
    with pytest.raises(KafkaException) as unknown:
        a.delete_topics([missing], operation_timeout=10)[missing].result(ADMIN_TIMEOUT_S)
    assert unknown.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    bad = topic_name("bad")
    with pytest.raises(KafkaException) as invalid:
        create_topic(broker, bad, config={"retention.ms": "not-a-number"})
    assert invalid.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_admin_alter_configs_legacy(broker, topic_name):
    topic = topic_name()
    a = admin(broker)
    create_topic(broker, topic, config={"retention.ms": "3600000"})
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    with pytest.warns(DeprecationWarning):
        futures = a.alter_configs([resource])
    futures[resource].result(ADMIN_TIMEOUT_S)
    describe = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([describe])[describe].result(ADMIN_TIMEOUT_S)
    assert entries["retention.bytes"].value == "1048576"
    # AlterConfigs replaces the whole set: retention.ms falls back to its default.
    assert entries["retention.ms"].is_default


def test_admin_describe_broker_configs_and_cluster(broker):
    a = admin(broker)
    resource = ConfigResource(ResourceType.BROKER, "1")
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert entries["auto.create.topics.enable"].value == "true"
    assert "num.partitions" in entries

    cluster = a.describe_cluster(request_timeout=10).result(ADMIN_TIMEOUT_S)
    assert [node.id for node in cluster.nodes] == [1]
    assert cluster.controller.id == 1
    assert cluster.cluster_id


def test_admin_delete_records(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    produce_all(producer(broker), topic, [{"value": str(i).encode()} for i in range(10)])
    a = admin(broker)
    tp = TopicPartition(topic, 0, 4)
    deleted = a.delete_records([tp], operation_timeout=10)[tp].result(ADMIN_TIMEOUT_S)
    assert deleted.low_watermark == 4
    got = read_from_beginning(broker, topic, 6)
    assert [m.offset() for m in got] == list(range(4, 10))


def describe_topic(a, topic: str):
    return a.describe_topics(TopicCollection([topic]))[topic].result(ADMIN_TIMEOUT_S)


def test_admin_describe_topics(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, partitions=3)
    described = describe_topic(admin(broker), topic)
    assert described.name == topic and not described.is_internal
    assert described.topic_id is not None
    assert [(p.id, p.leader.id, [r.id for r in p.replicas]) for p in described.partitions] == [
        (0, 1, [1]),
        (1, 1, [1]),
        (2, 1, [1]),
    ]


# ---- broker settings and restarts -------------------------------------------------------


def test_auto_created_topics_use_num_partitions(broker_factory, topic_name):
    b = broker_factory({"num.partitions": 3})
    topic = topic_name()
    p = producer(b)
    # A producer's metadata request for a missing topic creates it (auto-creation is on).
    metadata = wait_until(
        lambda: p.list_topics(topic, timeout=10).topics[topic].error is None
        and p.list_topics(topic, timeout=10).topics[topic],
        DEFAULT_WAIT_S,
        "auto-created topic",
    )
    assert sorted(metadata.partitions) == [0, 1, 2]


def test_auto_creation_disabled(broker_factory, topic_name):
    b = broker_factory({"auto.create.topics.enable": "false"})
    topic = topic_name()
    metadata = producer(b).list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is not None
    assert metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic not in admin(b).list_topics(timeout=10).topics


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_records_and_topics_survive_restart(broker_factory, topic_name, stop_signal):
    b = broker_factory()
    topic = topic_name()
    create_topic(b, topic, partitions=2, config={"retention.ms": "86400000"})
    records = [{"key": b"k", "value": str(i).encode(), "partition": i % 2} for i in range(100)]
    produce_all(producer(b, acks="all"), topic, records)
    topic_id = str(describe_topic(admin(b), topic).topic_id)

    b.restart(stop_signal)

    a = admin(b)
    assert str(describe_topic(a, topic).topic_id) == topic_id, "topic ids are permanent"
    metadata = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(metadata.partitions) == [0, 1]
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert entries["retention.ms"].value == "86400000"
    for partition in (0, 1):
        got = read_from_beginning(b, topic, 50, partition=partition)
        assert [m.value() for m in got] == [str(i).encode() for i in range(partition, 100, 2)]
    # And the log continues at the right offset after the restart.
    delivered = produce_all(producer(b), topic, [{"value": b"after", "partition": 0}])
    assert delivered[0].offset() == 50


def test_graceful_shutdown_exit_code(broker_factory):
    b = broker_factory()
    assert b.stop() == 0
