"""Admin changes made through clients, and that they survive a restart: incremental config
operations on list configs, config and topic-name validation, partitions added, records
deleted."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from confluent_clients import (
    ADMIN_TIMEOUT_S,
    admin,
    consumer,
    create_topic,
    produce_all,
    producer,
    read_from_beginning,
)


def describe(a, topic: str) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    return {name: entry.value for name, entry in entries.items()}


def alter(a, topic: str, name: str, value: str, operation: AlterConfigOpType) -> None:
    entry = ConfigEntry(name, value, incremental_operation=operation)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    a.incremental_alter_configs([resource])[resource].result(ADMIN_TIMEOUT_S)


def test_incremental_append_and_subtract_on_a_list_config(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    a = admin(broker)
    alter(a, topic, "cleanup.policy", "compact", AlterConfigOpType.APPEND)
    assert set(describe(a, topic)["cleanup.policy"].split(",")) == {"delete", "compact"}
    alter(a, topic, "cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)
    assert describe(a, topic)["cleanup.policy"] == "compact"


@pytest.mark.parametrize(
    "config",
    [{"no.such.config": "1"}, {"retention.ms": "soon"}, {"cleanup.policy": "shred"}],
    ids=["unknown-name", "not-a-number", "bad-enum"],
)
def test_create_topic_with_invalid_config_is_refused(broker, topic_name, config):
    topic = topic_name()
    with pytest.raises(KafkaException) as refused:
        create_topic(broker, topic, config=config)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert topic not in admin(broker).list_topics(timeout=10).topics


def test_alter_with_invalid_value_is_refused_and_changes_nothing(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, config={"retention.ms": "3600000"})
    a = admin(broker)
    with pytest.raises(KafkaException) as refused:
        alter(a, topic, "retention.ms", "soon", AlterConfigOpType.SET)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert describe(a, topic)["retention.ms"] == "3600000"


@pytest.mark.parametrize(
    "name", ["bad/name", "..", "a" * 250, "sp ace"], ids=["slash", "dots", "too-long", "space"]
)
def test_invalid_topic_names_are_refused(broker, name):
    a = admin(broker)
    futures = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as refused:
        futures[name].result(ADMIN_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


def test_replication_factor_above_one_is_refused(broker, topic_name):
    topic = topic_name()
    a = admin(broker)
    futures = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])
    with pytest.raises(KafkaException) as refused:
        futures[topic].result(ADMIN_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR


@pytest.mark.slow
def test_admin_changes_survive_restart(broker_factory, topic_name):
    b = broker_factory()
    topic = topic_name()
    create_topic(b, topic, partitions=1)
    a = admin(b)
    alter(a, topic, "retention.bytes", "5000000", AlterConfigOpType.SET)
    a.create_partitions([NewPartitions(topic, 3)])[topic].result(ADMIN_TIMEOUT_S)
    records = [{"value": str(i).encode(), "partition": 2} for i in range(10)]
    produce_all(producer(b), topic, records)
    tp = TopicPartition(topic, 2, 6)
    a.delete_records([tp], operation_timeout=10)[tp].result(ADMIN_TIMEOUT_S)

    b.restart()

    a = admin(b)
    assert describe(a, topic)["retention.bytes"] == "5000000"
    assert sorted(a.list_topics(topic, timeout=10).topics[topic].partitions) == [0, 1, 2]
    c = consumer(b)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 2), timeout=10) == (6, 10)
    finally:
        c.close()
    got = read_from_beginning(b, topic, 4, partition=2)
    assert [(m.offset(), m.value()) for m in got] == [(i, str(i).encode()) for i in range(6, 10)]


def test_admin_errors_on_unknown_topics_keys_and_partition_counts(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, partitions=3)
    a = admin(broker)

    def error_of(future) -> str:
        with pytest.raises(KafkaException) as failed:
            future.result(ADMIN_TIMEOUT_S)
        return failed.value.args[0].name()

    same_count = a.create_partitions([NewPartitions(topic, 3)])[topic]
    assert error_of(same_count) == "INVALID_PARTITIONS"

    missing = topic_name("missing")
    described = ConfigResource(ResourceType.TOPIC, missing)
    assert error_of(a.describe_configs([described])[described]) == "UNKNOWN_TOPIC_OR_PART"
    entry = ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)
    altered = ConfigResource(ResourceType.TOPIC, missing, incremental_configs=[entry])
    assert error_of(a.incremental_alter_configs([altered])[altered]) == "UNKNOWN_TOPIC_OR_PART"

    entry = ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)
    altered = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    assert error_of(a.incremental_alter_configs([altered])[altered]) == "INVALID_CONFIG"


def test_broker_configs_are_static(broker):
    """Strom refuses dynamic broker config changes (Kafka allows some); it must say so."""
    a = admin(broker)
    entry = ConfigEntry(
        "log.retention.check.interval.ms", "1000", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])
    with pytest.raises(KafkaException) as refused:
        a.incremental_alter_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert refused.value.args[0].name() == "INVALID_REQUEST"


def test_offsets_for_times_after_delete_records_start_at_log_start(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    base_ms = int(time.time() * 1000) - 60_000
    records = [{"value": b"x", "timestamp": base_ms + i * 1000} for i in range(10)]
    produce_all(producer(broker), topic, records)
    a = admin(broker)
    tp = TopicPartition(topic, 0, 4)
    a.delete_records([tp], operation_timeout=10)[tp].result(ADMIN_TIMEOUT_S)
    c = consumer(broker)
    try:
        for query_ms in (base_ms - 1, base_ms + 2000):  # before everything; a deleted record
            [answer] = c.offsets_for_times([TopicPartition(topic, 0, query_ms)], timeout=10)
            assert answer.offset == 4
    finally:
        c.close()


def test_topic_names_colliding_on_dot_and_underscore_are_refused(broker, topic_name):
    """Kafka's metric names map '.' to '_', so 'a.b' and 'a_b' may not both exist."""
    base = topic_name()
    create_topic(broker, f"{base}.x")
    with pytest.raises(KafkaException) as refused:
        create_topic(broker, f"{base}_x")
    assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


def test_hundred_topics_in_one_request(broker, topic_name):
    names = [topic_name(f"bulk{i}") for i in range(100)]
    a = admin(broker)
    futures = a.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names])
    for future in futures.values():
        future.result(ADMIN_TIMEOUT_S)
    listed = a.list_topics(timeout=10).topics
    assert all(len(listed[n].partitions) == 2 for n in names)
    for future in a.delete_topics(names, operation_timeout=10).values():
        future.result(ADMIN_TIMEOUT_S)
    listed = a.list_topics(timeout=10).topics
    assert not any(n in listed for n in names)
