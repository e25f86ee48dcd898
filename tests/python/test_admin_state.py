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
    ConfigSource,
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


def broker_config(a, name: str, resource_name: str = "1"):
    resource = ConfigResource(ResourceType.BROKER, resource_name)
    entries = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    return entries.get(name)


def set_broker_config(a, name: str, value: str | None, resource_name: str = "1") -> None:
    operation = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry(name, value or "", incremental_operation=operation)
    resource = ConfigResource(ResourceType.BROKER, resource_name, incremental_configs=[entry])
    a.incremental_alter_configs([resource])[resource].result(ADMIN_TIMEOUT_S)


def test_dynamic_broker_configs_take_effect_at_once_and_survive_a_restart(broker, topic_name):
    """A broker's topic defaults change at run time; DescribeConfigs says where each value comes
    from; properties that only apply at start-up are refused as in Kafka."""
    topic = topic_name()
    create_topic(broker, topic)
    a = admin(broker)
    static = broker_config(a, "message.max.bytes")
    assert static.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert not static.is_read_only

    # (confluent-kafka cannot name the cluster-wide default, the empty broker name: the Rust
    # suite covers that layer.)
    set_broker_config(a, "message.max.bytes", "1000")
    entry = broker_config(a, "message.max.bytes")
    assert (entry.value, entry.source) == ("1000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    topic_entry = a.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)[
        "max.message.bytes"
    ]
    assert (topic_entry.value, topic_entry.source) == (
        "1000",
        ConfigSource.DYNAMIC_BROKER_CONFIG.value,
    )

    # It applies to the topic at once: a 1,500-byte record is now too large.
    p = producer(broker, message_timeout_ms=5000, retries=0)
    failures: list = []
    p.produce(topic, value=b"x" * 1500, on_delivery=lambda err, msg: failures.append(err))
    p.flush(10)
    assert failures and failures[0] is not None
    assert failures[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, failures

    # It is kept across a restart, and deleting it brings the default layer back.
    broker.restart()
    a = admin(broker)
    assert broker_config(a, "message.max.bytes").value == "1000"
    set_broker_config(a, "message.max.bytes", None)
    entry = broker_config(a, "message.max.bytes")
    assert (entry.value, entry.source) == (static.value, ConfigSource.STATIC_BROKER_CONFIG.value)

    # Start-up-only properties are refused, with nothing changed.
    with pytest.raises(KafkaException) as refused:
        set_broker_config(a, "log.retention.check.interval.ms", "1000")
    assert refused.value.args[0].name() == "INVALID_REQUEST"
    assert broker_config(a, "log.retention.check.interval.ms").is_read_only


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
