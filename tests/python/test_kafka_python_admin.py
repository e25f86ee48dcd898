"""kafka-python 3.0.12's KafkaAdminClient against Strom, call by call as a new user meets it:
topics (create and its errors, list, describe, configs, partitions, records, delete), the
cluster, and consumer groups (list, describe, offsets, delete).

kafka-python asks for authorized operations in Metadata, DescribeCluster and DescribeGroups and
turns the bit field into operation names (`authorized_operations`); the "not provided" answer
(i32::MIN) becomes None. Strom has no authorizer, so like Kafka without one it answers every
operation the resource type supports.

`describe_log_dirs` (DescribeLogDirs v4) lists the broker's one data directory with every hosted
partition's log size and the volume's total and usable bytes.
"""

from __future__ import annotations

import os
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from support import DEFAULT_WAIT_S, wait_until

# Kafka's AclEntry.supportedOperations, which a broker without an authorizer grants.
TOPIC_OPERATIONS = {
    "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
}
GROUP_OPERATIONS = {"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPERATIONS = {
    "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
}
SEND_TIMEOUT_S = 20


@pytest.fixture
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    yield client
    client.close()


def produce(broker, topic: str, count: int, partitions: int = 1) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        futures = [
            producer.send(topic, value=f"v{i}".encode(), partition=i % partitions)
            for i in range(count)
        ]
        producer.flush(SEND_TIMEOUT_S)
        for future in futures:
            future.get(SEND_TIMEOUT_S)
    finally:
        producer.close()


def partition_count(admin: KafkaAdminClient, topic: str) -> int:
    [described] = admin.describe_topics([topic])
    return len(described["partitions"])


def test_cluster_and_topics_lifecycle(broker, admin, topic_name):
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [
        (1, broker.host, broker.port)
    ]
    assert cluster["cluster_id"]
    assert set(cluster["authorized_operations"]) == CLUSTER_OPERATIONS

    topic, defaulted = topic_name("admin"), topic_name("defaulted")
    configs = {"retention.ms": "60000"}
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1, "configs": configs}})
    # A plain name takes the broker's defaults (num.partitions 1).
    admin.create_topics([defaulted])
    listed = admin.list_topics()
    assert {topic, defaulted} <= set(listed)

    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({topic_name("two"): {"num_partitions": 1, "replication_factor": 2}})
    with pytest.raises(InvalidReplicationAssignmentError):
        admin.create_topics({topic_name("node-two"): {"assignments": {0: [2]}}})
    # validate_only checks and creates nothing.
    dry = topic_name("dry")
    admin.create_topics({dry: {"num_partitions": 2, "replication_factor": 1}}, validate_only=True)
    assert dry not in admin.list_topics()

    described = {t["name"]: t for t in admin.describe_topics([topic, defaulted])}
    assert described[topic]["error_code"] == 0
    assert sorted(p["partition_index"] for p in described[topic]["partitions"]) == [0, 1, 2]
    assert all(
        (p["leader_id"], p["replica_nodes"], p["isr_nodes"]) == (1, [1], [1])
        for p in described[topic]["partitions"]
    )
    assert set(described[topic]["authorized_operations"]) == TOPIC_OPERATIONS
    assert len(described[defaulted]["partitions"]) == 1
    every = {t["name"] for t in admin.describe_topics()}
    assert {topic, defaulted} <= every

    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    modified = admin.describe_configs([resource])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {"retention.ms": "60000"}
    change = ConfigResource(
        ConfigResourceType.TOPIC,
        topic,
        configs={"cleanup.policy": "compact", "retention.ms": (AlterConfigOp.DELETE, None)},
    )
    assert admin.alter_configs([change]) == {"topic": {topic: "OK"}}
    modified = admin.describe_configs([resource])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {"cleanup.policy": "compact"}
    everything = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    assert everything["retention.ms"]["config_source"] == "DEFAULT_CONFIG"

    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: 3})
    admin.create_partitions({topic: 5}, validate_only=True)
    assert partition_count(admin, topic) == 3
    admin.create_partitions({topic: 4})
    # A manual assignment names one replica list per new partition, on this broker only.
    admin.create_partitions({topic: {"count": 6, "assignments": [[1], [1]]}})
    wait_until(lambda: partition_count(admin, topic) == 6, DEFAULT_WAIT_S, "6 partitions")
    with pytest.raises(InvalidReplicationAssignmentError):
        admin.create_partitions({topic: {"count": 7, "assignments": [[1], [1]]}})
    with pytest.raises(InvalidReplicationAssignmentError):
        admin.create_partitions({topic: {"count": 7, "assignments": [[2]]}})
    assert partition_count(admin, topic) == 6

    admin.delete_topics([topic, defaulted])
    wait_until(
        lambda: not {topic, defaulted} & set(admin.list_topics()),
        DEFAULT_WAIT_S,
        "topics deleted",
    )
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic])


def test_delete_records_moves_the_log_start(broker, admin, topic_name):
    topic = topic_name("records")
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    produce(broker, topic, 20, partitions=2)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    results = admin.delete_records({first: 4, second: -1})
    assert (results[first]["error_code"], results[first]["low_watermark"]) == (0, 4)
    # -1 means the high watermark: everything.
    assert (results[second]["error_code"], results[second]["low_watermark"]) == (0, 10)

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        assert consumer.beginning_offsets([first, second]) == {first: 4, second: 10}
        assert consumer.end_offsets([first, second]) == {first: 10, second: 10}
    finally:
        consumer.close()


def test_consumer_group_list_describe_offsets_delete(broker, admin, topic_name):
    topic, group = topic_name("grouped"), f"g-{uuid.uuid4().hex[:8]}"
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    produce(broker, topic, 10, partitions=2)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        client_id="admin-test-member",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        got: list = []

        # Polls cover a whole join round (see test_groups.py on kafka-python 3.0.12).
        def read_all() -> bool:
            for records in consumer.poll(timeout_ms=2000).values():
                got.extend(records)
            return len(got) >= 10

        wait_until(read_all, DEFAULT_WAIT_S, lambda: f"10 records, have {len(got)}")
        consumer.commit()

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Stable"

        described = admin.describe_groups([group])[group]
        assert described["error"] is None
        assert (described["group_state"], described["protocol_type"]) == ("Stable", "consumer")
        assert set(described["authorized_operations"]) == GROUP_OPERATIONS
        [member] = described["members"]
        assert member["client_id"] == "admin-test-member"
        # The member's subscription and assignment, decoded from the consumer protocol.
        assert member["member_metadata"]["topics"] == [topic], member
        assert [
            (t["topic"], sorted(t["partitions"]))
            for t in member["member_assignment"]["assigned_partitions"]
        ] == [(topic, [0, 1])], member

        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp: meta.offset for tp, meta in offsets.items()} == {
            TopicPartition(topic, 0): 5,
            TopicPartition(topic, 1): 5,
        }

        # A group with a member cannot be deleted.
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
    finally:
        consumer.close()

    wait_until(
        lambda: admin.describe_groups([group])[group]["group_state"] == "Empty",
        DEFAULT_WAIT_S,
        "the group empty after its member left",
    )
    assert admin.delete_groups([group]) == {group: "OK"}
    assert group not in {g["group_id"] for g in admin.list_groups()}
    # Kafka describes a group it does not know as Dead, without members or an error.
    gone = admin.describe_groups([group])[group]
    assert (gone["group_state"], gone["members"], gone["error"]) == ("Dead", [], None)
    assert admin.delete_groups([group]) == {group: "GroupIdNotFoundError"}


def test_describe_log_dirs_lists_the_data_dir_and_partition_sizes(broker, admin, topic_name):
    topic, empty = topic_name("sized"), topic_name("empty")
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    admin.create_topics({empty: {"num_partitions": 1, "replication_factor": 1}})
    produce(broker, topic, 10, partitions=2)

    def segment_bytes(partition: int) -> int:
        directory = broker.data_dir / f"{topic}-{partition}"
        return sum(p.stat().st_size for p in directory.glob("*.log"))

    [answer] = admin.describe_log_dirs()
    assert answer["broker"] == 1
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == os.path.abspath(broker.data_dir)
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    sizes = {
        (t["name"], p["partition_index"]): (p["partition_size"], p["offset_lag"], p["is_future_key"])
        for t in log_dir["topics"]
        for p in t["partitions"]
    }
    assert sizes[(topic, 0)] == (segment_bytes(0), 0, False)
    assert sizes[(topic, 1)] == (segment_bytes(1), 0, False)
    assert segment_bytes(0) > 0 and segment_bytes(1) > 0
    assert sizes[(empty, 0)] == (0, 0, False)

    # Named partitions: only those asked for.
    [answer] = admin.describe_log_dirs({topic: [1]})
    [log_dir] = answer["log_dirs"]
    assert [
        (t["name"], [(p["partition_index"], p["partition_size"]) for p in t["partitions"]])
        for t in log_dir["topics"]
    ] == [(topic, [(1, segment_bytes(1))])]
