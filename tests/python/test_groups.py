"""Consumer groups with confluent-kafka, kafka-python and aiokafka against Strom.

Members of one group split a topic's partitions and together read every record once with
manual commits; a member that closes, or whose process is SIGKILLed, has its partitions taken
over within the session timeout and the survivor resumes from the committed offsets; commits
survive broker restarts; the admin APIs list, describe and delete groups.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from support import DEFAULT_WAIT_S, wait_until

PARTITIONS = 4
SESSION_TIMEOUT_MS = 6000
# Groups form at once: the initial delay would only slow these tests down.
GROUP_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(GROUP_SETTINGS)


def create_topic(broker, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(20)


def produce(broker, topic: str, prefix: str, count: int) -> list[str]:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    values = [f"{prefix}-{i}" for i in range(count)]
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % PARTITIONS)
    assert producer.flush(20) == 0
    return values


def confluent_member(broker, group: str, topic: str, **extra) -> Consumer:
    config = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        **extra,
    }
    consumer = Consumer(config)
    consumer.subscribe([topic])
    return consumer


def poll_members(members, until, timeout_s: float, what: str) -> list[list[tuple[int, str]]]:
    """Polls every confluent member until `until(read, assignments)`; returns what each read."""
    read: list[list[tuple[int, str]]] = [[] for _ in members]

    def done():
        for index, member in enumerate(members):
            message = member.poll(0.05)
            if message is not None and message.error() is None:
                read[index].append((message.partition(), message.value().decode()))
        assignments = [{tp.partition for tp in member.assignment()} for member in members]
        return until(read, assignments)

    wait_until(done, timeout_s, what)
    return read


def split(assignments) -> bool:
    union = set().union(*assignments)
    total = sum(len(a) for a in assignments)
    return all(assignments) and total == PARTITIONS and len(union) == PARTITIONS


def test_confluent_members_split_read_once_and_resume_from_commits(group_broker, topic_name):
    topic, group = topic_name("split"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    a = confluent_member(group_broker, group, topic)
    b = confluent_member(group_broker, group, topic)
    poll_members([a, b], lambda _, assigned: split(assigned), DEFAULT_WAIT_S, "a split")
    sent = produce(group_broker, topic, "first", 200)
    read = poll_members(
        [a, b], lambda r, _: sum(map(len, r)) >= len(sent), DEFAULT_WAIT_S, "every record"
    )
    for member, records in zip([a, b], read):
        owned = {tp.partition for tp in member.assignment()}
        assert {partition for partition, _ in records} <= owned
    assert sorted(v for records in read for _, v in records) == sorted(sent)
    for member in (a, b):
        member.commit(asynchronous=False)
        member.close()
    later = produce(group_broker, topic, "second", 12)
    c = confluent_member(group_broker, group, topic)
    read = poll_members([c], lambda r, _: len(r[0]) >= len(later), DEFAULT_WAIT_S, "the rest")
    assert sorted(v for _, v in read[0]) == sorted(later)
    c.close()


MEMBER_SCRIPT = """
import sys
from confluent_kafka import Consumer
bootstrap, group, topic = sys.argv[1:4]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": %d, "heartbeat.interval.ms": 500})
consumer.subscribe([topic])
reported = None
while True:
    message = consumer.poll(0.1)
    if message is not None and message.error() is None:
        consumer.commit(message=message, asynchronous=False)
        print("committed", message.value().decode(), flush=True)
    assigned = sorted(tp.partition for tp in consumer.assignment())
    if assigned != reported:
        print("assigned", *assigned, flush=True)
        reported = assigned
""" % SESSION_TIMEOUT_MS


def test_a_sigkilled_member_is_replaced_within_the_session_timeout(group_broker, topic_name):
    """The child commits each record before reading the next, so after it is killed the
    survivor re-reads at most the one uncommitted record per partition (at-least-once)."""
    topic, group = topic_name("killed"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    sent = produce(group_broker, topic, "before", 40)
    child = subprocess.Popen(
        [sys.executable, "-c", MEMBER_SCRIPT, group_broker.bootstrap, group, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        survivor = confluent_member(group_broker, group, topic)
        read = poll_members(
            [survivor],
            lambda _, assigned: 0 < len(assigned[0]) < PARTITIONS,
            DEFAULT_WAIT_S,
            "the survivor sharing the partitions with the child",
        )[0]
        child_partitions = PARTITIONS - len(survivor.assignment())
        child.kill()
        child.wait(10)
        killed_at = time.monotonic()
        read += poll_members(
            [survivor],
            lambda _, assigned: len(assigned[0]) == PARTITIONS,
            DEFAULT_WAIT_S,
            "the survivor owning every partition",
        )[0]
        took = time.monotonic() - killed_at
        # The session runs out 6 s after the last heartbeat; then one rebalance round.
        assert took < SESSION_TIMEOUT_MS / 1000 + 5, f"takeover took {took:.1f}s"
        child_read = [
            line.split(" ", 1)[1].strip()
            for line in child.stdout.read().splitlines()
            if line.startswith("committed ")
        ]

        def everything_read():
            message = survivor.poll(0.05)
            if message is not None and message.error() is None:
                read.append((message.partition(), message.value().decode()))
            return {v for _, v in read} | set(child_read) >= set(sent)

        wait_until(everything_read, DEFAULT_WAIT_S, "every record read by one member or the other")
        twice = [v for _, v in read if v in set(child_read)]
        assert len(twice) <= child_partitions, f"re-read beyond at-least-once: {twice}"
        survivor.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_confluent_commits_survive_a_broker_sigkill(broker_factory, topic_name):
    broker = broker_factory(GROUP_SETTINGS)
    topic, group = topic_name("durable"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    member = confluent_member(broker, group, topic)
    # Committed once the member holds its partitions: a commit while its join is still in
    # progress is refused (UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION), as by Kafka.
    poll_members([member], lambda _, a: len(a[0]) == PARTITIONS, DEFAULT_WAIT_S, "assignment")
    offsets = [TopicPartition(topic, p, 5 + p) for p in range(PARTITIONS)]
    member.commit(offsets=offsets, asynchronous=False)
    member.close()
    broker.restart(signal.SIGKILL)
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
    assert [tp.offset for tp in committed] == [5, 6, 7, 8]
    reader.close()


def test_confluent_admin_lists_describes_and_deletes_groups(group_broker, topic_name):
    topic, group = topic_name("admin"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    member = confluent_member(group_broker, group, topic)
    poll_members([member], lambda _, a: len(a[0]) == PARTITIONS, DEFAULT_WAIT_S, "assignment")
    admin = AdminClient({"bootstrap.servers": group_broker.bootstrap})
    listed = admin.list_consumer_groups().result(20)
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group])[group].result(20)
    assert described.state.name == "STABLE"
    assert len(described.members) == 1
    assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == set(
        range(PARTITIONS)
    )
    # A group with members cannot be deleted; once empty it can.
    with pytest.raises(Exception, match="NON_EMPTY_GROUP"):
        admin.delete_consumer_groups([group])[group].result(20)
    member.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    member.close()
    admin.delete_consumer_groups([group])[group].result(20)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(20).valid}


def test_kafka_python_group_reads_commits_and_resumes(group_broker, topic_name):
    topic, group = topic_name("kp"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    sent = produce(group_broker, topic, "kp", 40)

    def member() -> KafkaConsumer:
        return KafkaConsumer(
            topic,
            bootstrap_servers=group_broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
        )

    consumer = member()
    got: list[str] = []

    def read_until(count: int):
        # kafka-python 3.0.12 can leave a group join unfinished for good when a poll's timeout
        # runs out while its JoinGroup/SyncGroup round is in flight (seen with 200 ms polls on
        # a group that forms at once); polls long enough to cover the round avoid it.
        def enough():
            for records in consumer.poll(timeout_ms=2000).values():
                got.extend(r.value.decode() for r in records)
            return len(got) >= count

        wait_until(enough, DEFAULT_WAIT_S, lambda: f"{count} records, have {len(got)}")

    read_until(len(sent))
    assert sorted(got) == sorted(sent)
    consumer.commit()
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap)
    offsets = admin.list_group_offsets({group: None})[group]
    assert sum(meta.offset for meta in offsets.values()) == len(sent)
    assert {"group_id": group, "protocol_type": "consumer", "group_state": "Empty"}.items() <= next(
        listing for listing in admin.list_groups() if listing["group_id"] == group
    ).items()
    admin.close()
    later = produce(group_broker, topic, "kp-later", 8)
    consumer = member()
    got.clear()
    read_until(len(later))
    assert sorted(got) == sorted(later)
    assert consumer.committed(KafkaTopicPartition(topic, 0)) == 10
    consumer.close()


def test_aiokafka_group_reads_commits_and_resumes(group_broker, topic_name):
    topic, group = topic_name("aio"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    sent = produce(group_broker, topic, "aio", 40)

    async def consume(count: int) -> list[str]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=group_broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            got: list[str] = []
            while len(got) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    got.extend(r.value.decode() for r in records)
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    got = asyncio.run(asyncio.wait_for(consume(len(sent)), DEFAULT_WAIT_S))
    assert sorted(got) == sorted(sent)
    later = produce(group_broker, topic, "aio-later", 8)
    got = asyncio.run(asyncio.wait_for(consume(len(later)), DEFAULT_WAIT_S))
    assert sorted(got) == sorted(later)


def kip848_member(broker, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.subscribe([topic])
    return consumer


def test_confluent_kip848_members_split_leave_and_describe(group_broker, topic_name):
    """group.protocol=consumer: the broker assigns; a leaving member's partitions move to the
    other on its next heartbeats; the admin client describes the group with its epochs."""
    topic, group = topic_name("kip848"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    a = kip848_member(group_broker, group, topic)
    b = kip848_member(group_broker, group, topic)
    poll_members([a, b], lambda _, assigned: split(assigned), DEFAULT_WAIT_S, "a split")
    sent = produce(group_broker, topic, "kip848", 60)
    read = poll_members(
        [a, b], lambda r, _: sum(map(len, r)) >= len(sent), DEFAULT_WAIT_S, "every record"
    )
    assert sorted(v for records in read for _, v in records) == sorted(sent)
    admin = AdminClient({"bootstrap.servers": group_broker.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(20)
    assert described.state.name == "STABLE"
    assert described.type.name == "CONSUMER"
    assert len(described.members) == 2
    b.commit(asynchronous=False)
    b.close()
    poll_members([a], lambda _, assigned: len(assigned[0]) == PARTITIONS, DEFAULT_WAIT_S, "takeover")
    a.commit(asynchronous=False)
    committed = a.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
    assert sum(tp.offset for tp in committed) == len(sent)
    a.close()


def test_kafka_python_two_members_split_and_read_once(group_broker, topic_name):
    topic, group = topic_name("kp2"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)
    members = [
        KafkaConsumer(
            topic,
            bootstrap_servers=group_broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=300,
        )
        for _ in range(2)
    ]
    try:
        # Poll long enough for a join round to finish (see the kafka-python note above).
        def split_reached():
            for member in members:
                member.poll(timeout_ms=1000)
            return split([{tp.partition for tp in m.assignment()} for m in members])

        wait_until(split_reached, DEFAULT_WAIT_S, "two kafka-python members sharing the partitions")
        sent = produce(group_broker, topic, "kp2", 40)
        got: list[list[str]] = [[], []]

        def all_read():
            for index, member in enumerate(members):
                for records in member.poll(timeout_ms=500).values():
                    got[index].extend(r.value.decode() for r in records)
            return sum(map(len, got)) >= len(sent)

        wait_until(all_read, DEFAULT_WAIT_S, "every record")
        assert got[0] and got[1], "both members read"
        assert sorted(got[0] + got[1]) == sorted(sent)
    finally:
        for member in members:
            member.close()


def test_aiokafka_two_members_split_and_read_once(group_broker, topic_name):
    topic, group = topic_name("aio2"), f"g-{uuid.uuid4().hex[:8]}"
    create_topic(group_broker, topic)

    async def scenario():
        members = [
            AIOKafkaConsumer(
                topic,
                bootstrap_servers=group_broker.bootstrap,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=300,
            )
            for _ in range(2)
        ]
        for member in members:
            await member.start()
        try:
            while not split([{tp.partition for tp in m.assignment()} for m in members]):
                await asyncio.sleep(0.05)  # polled condition, bounded by the wait_for below
            sent = produce(group_broker, topic, "aio2", 40)
            got: list[list[str]] = [[], []]
            while sum(map(len, got)) < len(sent):
                for index, member in enumerate(members):
                    for records in (await member.getmany(timeout_ms=200)).values():
                        got[index].extend(r.value.decode() for r in records)
            return sent, got
        finally:
            for member in members:
                await member.stop()

    sent, got = asyncio.run(asyncio.wait_for(scenario(), DEFAULT_WAIT_S))
    assert got[0] and got[1], "both members read"
    assert sorted(got[0] + got[1]) == sorted(sent)
