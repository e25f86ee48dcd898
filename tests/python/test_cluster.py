"""A three-node Strom cluster (combined broker and controller nodes on loopback) with real
clients: topics spread over the brokers, idempotent produce and group consumption with
confluent-kafka, produce and consume with kafka-python and aiokafka over the whole bootstrap
list, a broker SIGKILLed and restarted while a producer keeps writing to the other brokers'
partitions, a replicated topic that keeps every acknowledged record across a leader's
SIGKILL, written by all three clients, a consumer group carrying on when its coordinator dies,
and (on a cluster of its own, with racks) a consumer reading from the replica in its rack.

The cluster is shared by the module: each node is one `strom server` process (conftest's
`Broker` with the cluster arguments), so a test can SIGKILL and restart one node; the test that
does so leaves the cluster whole again. Ports are picked from 20000-30000 (below the ephemeral
range) and checked free first: every node must know every voter's port before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewTopic as KafkaNewTopic

from conftest import Broker, _remove, _scratch_dir
from confluent_clients import consume_n
from support import DEFAULT_WAIT_S, heartbeat, kafka_tool, offset_fetch, wait_until

NODES = (1, 2, 3)
PARTITIONS = 6
# The brief's cluster settings: a SIGKILLed broker is fenced 3 s after its last heartbeat.
SESSION_TIMEOUT_MS = 3000
NODE_SETTINGS = {
    "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "broker.heartbeat.interval.ms": "500",
    # Groups form at once: the initial delay would only slow these tests down.
    "group.initial.rebalance.delay.ms": "0",
}
PORT_RANGE = (20000, 30000)
PORT_ATTEMPTS = 20
# Generous for a debug build on two loaded cores; a healthy cluster settles in about a second.
CLUSTER_READY_TIMEOUT_S = 40.0
ADMIN_TIMEOUT_S = 20.0
# A message the producer cannot deliver fails after this long (the failed broker's partitions).
FAILOVER_MESSAGE_TIMEOUT_MS = 10000


def ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_base_port() -> int:
    """A base B with B, B+1, B+10, B+11, B+20, B+21 free (client and quorum ports)."""
    for _ in range(PORT_ATTEMPTS):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - 10 * len(NODES))
        if ports_free([base + 10 * (i - 1) + d for i in NODES for d in (0, 1)]):
            return base
    raise RuntimeError(f"no free ports for a cluster in {PORT_RANGE} after {PORT_ATTEMPTS} tries")


class Cluster:
    """Three combined nodes; node i serves clients on base + 10 * (i - 1), its quorum one up."""

    def __init__(self, root: Path, base_port: int, extra: dict | None = None):
        self.root = root
        voters = ",".join(f"{i}@127.0.0.1:{base_port + 10 * (i - 1) + 1}" for i in NODES)
        self.nodes: dict[int, Broker] = {}
        for i in NODES:
            port = base_port + 10 * (i - 1)
            node = Broker(
                root / f"node-{i}",
                {**NODE_SETTINGS, **(extra or {}).get(i, {})},
                args=[
                    "--node-id", str(i),
                    "--process-roles", "broker,controller",
                    "--controller-listener", f"127.0.0.1:{port + 1}",
                    "--controller-quorum-voters", voters,
                ],
            )  # fmt: skip
            node.port = port  # fixed: the voter list names every node's ports up front
            self.nodes[i] = node

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def start(self) -> None:
        # A node answers ApiVersions before the quorum forms, so they start one by one.
        for node in self.nodes.values():
            node.start()
        self.wait_whole()

    def wait_whole(self) -> None:
        """Until every node's metadata lists all three brokers (registered and unfenced)."""
        for i, node in self.nodes.items():
            admin = AdminClient({"bootstrap.servers": node.bootstrap})
            wait_until(
                lambda admin=admin: set(admin.list_topics(timeout=2).brokers) == set(NODES),
                CLUSTER_READY_TIMEOUT_S,
                f"node {i}'s metadata to list brokers {NODES}",
            )

    def stop(self) -> list[int | None]:
        # SIGTERM to all at once: each controlled shutdown needs a live quorum to answer it.
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        return [node.stop() for node in self.nodes.values()]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    root = _scratch_dir("strom-pytest-cluster-")
    instance = Cluster(root, pick_base_port())
    Broker.in_use.extend(instance.nodes.values())

    def stop() -> None:
        codes = instance.stop()
        for node in instance.nodes.values():
            Broker.in_use.remove(node)
        if codes == [0] * len(NODES):
            _remove(root)

    # A finalizer, not code after a yield: it also runs when the start fails, and only after
    # that failure's report has taken the nodes' logs.
    request.addfinalizer(stop)
    instance.start()
    return instance


@contextlib.contextmanager
def own_cluster(prefix: str, extra: dict) -> Iterator[Cluster]:
    """A started cluster of its own, with per-node settings the shared one does not have;
    stopped (and its directory removed if every node stopped cleanly) on leaving."""
    root = _scratch_dir(prefix)
    instance = Cluster(root, pick_base_port(), extra)
    Broker.in_use.extend(instance.nodes.values())
    try:
        instance.start()
        yield instance
    finally:
        codes = instance.stop()
        for node in instance.nodes.values():
            Broker.in_use.remove(node)
        if codes == [0] * len(NODES):
            _remove(root)


def topic_for(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


def leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    """Partition -> leader id (-1 when offline) as one broker's metadata shows it."""
    metadata = admin.list_topics(topic, timeout=3)
    return {p.id: p.leader for p in metadata.topics[topic].partitions.values()}


def create_topic(admin: AdminClient, topic: str, partitions: int = PARTITIONS) -> None:
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    futures[topic].result(ADMIN_TIMEOUT_S)


def spread_leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    """Waits until `admin`'s broker shows every partition of `topic` led by some broker and
    the leaders cover all three; returns partition -> leader."""
    seen: dict[int, int] = {}

    def spread():
        seen.clear()
        seen.update(leaders(admin, topic))
        return len(seen) == PARTITIONS and set(seen.values()) == set(NODES)

    wait_until(spread, DEFAULT_WAIT_S, lambda: f"leaders of {topic} on {NODES} (saw {seen})")
    return dict(seen)


def read_whole_log(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, list]:
    """Every record of `partitions`, from offset 0 to the high watermark, by partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "strom-pytest-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: dict[int, list] = {p: [] for p in partitions}

        def complete() -> bool:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"consumer error: {msg.error()}")
                else:
                    got[msg.partition()].append(msg)
            return all(
                (got[p][-1].offset() + 1 if got[p] else 0) >= ends[p] for p in partitions
            )

        wait_until(
            complete,
            DEFAULT_WAIT_S,
            lambda: f"{topic} read to {ends} (have { {p: len(m) for p, m in got.items()} })",
        )
        return got
    finally:
        consumer.close()


def test_spread_topic_idempotent_produce_and_group_consume(cluster, request):
    topic = topic_for(request)
    group = f"group-{uuid.uuid4().hex[:8]}"
    node1, node2, node3 = (cluster.nodes[i] for i in NODES)
    create_topic(AdminClient({"bootstrap.servers": node2.bootstrap}), topic)
    # Another node learns the topic from the committed metadata, leaders spread over all three.
    spread_leaders(AdminClient({"bootstrap.servers": node3.bootstrap}), topic)

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 30000,
        }
    )
    count, keys = 600, 60
    delivered: dict[str, tuple[int, int]] = {}
    errors: list = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            delivered[msg.value().decode()] = (msg.partition(), msg.offset())

    for i in range(count):
        producer.produce(topic, key=f"key-{i % keys}", value=str(i), on_delivery=on_delivery)
    assert producer.flush(DEFAULT_WAIT_S) == 0, "messages left undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(delivered) == count
    assert {p for p, _ in delivered.values()} == set(range(PARTITIONS)), "keys missed partitions"

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        consumer.subscribe([topic])
        messages = consume_n(consumer, count)
        values = [m.value().decode() for m in messages]
        assert len(values) == len(set(values)) == count, "a message read twice"
        assert set(values) == set(delivered)
        by_partition: dict[int, list] = {}
        for m in messages:
            assert delivered[m.value().decode()] == (m.partition(), m.offset())
            assert m.key().decode() == f"key-{int(m.value()) % keys}"
            by_partition.setdefault(m.partition(), []).append(m)
        key_partitions: dict[bytes, set] = {}
        for p, msgs in by_partition.items():
            assert [m.offset() for m in msgs] == list(range(len(msgs))), f"partition {p} order"
            sequence = [int(m.value()) for m in msgs]
            assert sequence == sorted(sequence), f"partition {p} not in produce order"
            for m in msgs:
                key_partitions.setdefault(m.key(), set()).add(p)
        assert all(len(ps) == 1 for ps in key_partitions.values()), "a key on two partitions"

        # Nothing beyond what was read: each partition's log ends where the reading ended.
        assignment = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        for p, msgs in by_partition.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert (low, high) == (0, len(msgs)), f"partition {p} holds ({low}, {high})"

        consumer.commit(asynchronous=False)
        committed = consumer.committed(assignment, timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == {
            p: len(by_partition.get(p, [])) for p in range(PARTITIONS)
        }
        assert all(tp.error is None for tp in committed)
    finally:
        consumer.close()

    # The group is coordinated by the leader of its __consumer_offsets partition, whichever
    # node is asked.
    admin = AdminClient({"bootstrap.servers": node3.bootstrap})  # alive until the answer
    description = admin.describe_consumer_groups([group])[group].result(ADMIN_TIMEOUT_S)
    offsets_leaders = leaders(admin, "__consumer_offsets")
    assert description.coordinator.id in offsets_leaders.values()
    assert node1.process.poll() is None


def test_kafka_python_produce_and_consume(cluster, request):
    topic = topic_for(request)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=20000)
    try:
        admin.create_topics([KafkaNewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    spread_leaders(AdminClient({"bootstrap.servers": cluster.bootstrap}), topic)

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=5)
    try:
        records = [(f"k{i % 30}".encode(), f"kafka-python-{i}".encode()) for i in range(300)]
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        producer.flush(DEFAULT_WAIT_S)
        sent = {
            (m.partition, m.offset): record
            for m, record in zip((f.get(DEFAULT_WAIT_S) for f in futures), records)
        }
    finally:
        producer.close(timeout=10)
    assert len(sent) == len(records)
    assert {p for p, _ in sent} == set(range(PARTITIONS))

    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        consumer.assign([KafkaTopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got: dict = {}

        def enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                for r in batch:
                    assert (r.partition, r.offset) not in got, "a record read twice"
                    got[(r.partition, r.offset)] = (r.key, r.value)
            return len(got) >= len(sent)

        wait_until(enough, DEFAULT_WAIT_S, lambda: f"{len(sent)} records (have {len(got)})")
    finally:
        consumer.close()
    assert got == sent


def test_aiokafka_produce_and_group_consume(cluster, request):
    topic = topic_for(request)
    create_topic(AdminClient({"bootstrap.servers": cluster.bootstrap}), topic)
    spread_leaders(AdminClient({"bootstrap.servers": cluster.bootstrap}), topic)
    records = [(f"k{i % 30}".encode(), f"aiokafka-{i}".encode()) for i in range(300)]

    async def scenario():
        producer = AIOKafkaProducer(
            bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v) for k, v in records]
            metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        sent = {(m.partition, m.offset): record for m, record in zip(metadata, records)}
        assert len(sent) == len(records)

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=cluster.bootstrap,
            group_id=f"group-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            got: dict = {}
            deadline = time.monotonic() + DEFAULT_WAIT_S
            while len(got) < len(sent):
                assert time.monotonic() < deadline, f"only {len(got)} of {len(sent)} records"
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for r in batch:
                        assert (r.partition, r.offset) not in got, "a record read twice"
                        got[(r.partition, r.offset)] = (r.key, r.value)
            await consumer.commit()
        finally:
            await consumer.stop()
        assert got == sent

    asyncio.run(asyncio.wait_for(scenario(), 45))


# Two tool runs (JVM starts) and a topic: slower than the module's default beside other suites.
@pytest.mark.timeout(240)
def test_kafka_metadata_quorum_and_leader_election_tools_work_against_the_cluster(cluster, request):
    """Kafka 4.4's kafka-metadata-quorum (DescribeQuorum) and kafka-leader-election
    (ElectLeaders), run as Kafka ships them against the three-node cluster."""
    status = kafka_tool("kafka-metadata-quorum", "--bootstrap-server", cluster.bootstrap, "describe", "--status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["LeaderId"]) in NODES, status
    assert int(fields["HighWatermark"]) > 0, status
    voters = re.findall(r'"id": (\d+)', fields["CurrentVoters"])
    assert sorted(int(v) for v in voters) == list(NODES), status
    replication = kafka_tool("kafka-metadata-quorum", "--bootstrap-server", cluster.bootstrap,
                             "describe", "--replication")
    rows = [line.split() for line in replication.splitlines()[1:] if line.strip()]
    assert sorted(int(row[0]) for row in rows) == list(NODES), replication
    assert [row[-1] for row in rows].count("Leader") == 1, replication

    topic = topic_for(request)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(ADMIN_TIMEOUT_S)
    wait_isr(admin, topic, 3, 3)
    elected = kafka_tool("kafka-leader-election", "--bootstrap-server", cluster.bootstrap,
                         "--election-type", "PREFERRED", "--topic", topic, "--partition", "0")
    # Every replica is in sync and the preferred one leads already, as Kafka would say.
    assert "Valid replica already elected for partitions" in elected and f"{topic}-0" in elected, elected

    def preferred_lead() -> bool:
        partitions = admin.list_topics(topic, timeout=3).topics[topic].partitions.values()
        return all(p.leader == p.replicas[0] for p in partitions)

    wait_until(preferred_lead, DEFAULT_WAIT_S, f"every partition of {topic} led by its preferred replica")


def isr_sizes(admin: AdminClient, topic: str) -> dict[int, tuple[int, int]]:
    """Partition -> (leader, ISR size) as one broker's metadata shows it."""
    metadata = admin.list_topics(topic, timeout=3)
    return {p.id: (p.leader, len(p.isrs)) for p in metadata.topics[topic].partitions.values()}


def wait_isr(admin: AdminClient, topic: str, partitions: int, size: int) -> dict[int, int]:
    """Until every partition has a leader and an ISR of `size`; returns partition -> leader."""
    seen: dict = {}

    def settled() -> bool:
        seen.clear()
        seen.update(isr_sizes(admin, topic))
        return len(seen) == partitions and all(l > 0 and n == size for l, n in seen.values())

    wait_until(
        settled, CLUSTER_READY_TIMEOUT_S, lambda: f"{topic} with ISRs of {size} (saw {seen})"
    )
    return {p: leader for p, (leader, _) in seen.items()}


def test_replicated_topic_keeps_every_acknowledged_record_when_a_leader_dies(cluster, request):
    """Replication factor 3, min.insync.replicas 2: confluent-kafka writes with acks=all while
    the leader of a partition is SIGKILLed, kafka-python and aiokafka write after the
    failover, and every acknowledged record is read back once, in order, from the survivors.
    The broker comes back and rejoins every ISR."""
    topic = topic_for(request)
    partitions = 3
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})], operation_timeout=10
    )
    futures[topic].result(ADMIN_TIMEOUT_S)
    leaders_before = wait_isr(admin, topic, partitions, 3)
    # Not node 1: it coordinates the other tests' groups.
    victim = next((l for l in leaders_before.values() if l != 1), 2)

    acked: dict[int, list[str]] = {}
    errors: list = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            acked.setdefault(msg.partition(), []).append(msg.value().decode())

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 30000,
        }
    )
    for i in range(300):
        producer.produce(
            topic, value=f"before-{i}", partition=i % partitions, on_delivery=on_delivery
        )
    assert producer.flush(DEFAULT_WAIT_S) == 0
    for i in range(300):
        producer.produce(
            topic, value=f"during-{i}", partition=i % partitions, on_delivery=on_delivery
        )
        if i == 50:
            cluster.nodes[victim].kill()
        producer.poll(0)
    assert producer.flush(45) == 0, "messages left undelivered"
    assert not errors, f"idempotent acks=all sends failed across the failover: {errors[:3]}"

    survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != victim)
    wait_isr(AdminClient({"bootstrap.servers": survivors}), topic, partitions, 2)
    kafka_python = KafkaProducer(bootstrap_servers=survivors, acks="all", linger_ms=5)
    try:
        values = [(i % partitions, f"kafka-python-{i}") for i in range(60)]
        futures = [
            (p, v, kafka_python.send(topic, value=v.encode(), partition=p)) for p, v in values
        ]
        for partition, value, future in futures:
            assert future.get(DEFAULT_WAIT_S).partition == partition
            acked.setdefault(partition, []).append(value)
    finally:
        kafka_python.close(timeout=10)

    async def aiokafka_writes():
        producer = AIOKafkaProducer(
            bootstrap_servers=survivors, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(60):
                value = f"aiokafka-{i}"
                metadata = await producer.send_and_wait(
                    topic, value.encode(), partition=i % partitions
                )
                acked.setdefault(metadata.partition, []).append(value)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(aiokafka_writes(), 45))

    stored = read_whole_log(survivors, topic, list(range(partitions)))
    for partition in range(partitions):
        values = [m.value().decode() for m in stored[partition]]
        assert len(values) == len(set(values)), f"a record stored twice in partition {partition}"
        position = {v: i for i, v in enumerate(values)}
        missing = [v for v in acked.get(partition, []) if v not in position]
        assert not missing, f"acknowledged records lost from partition {partition}: {missing[:5]}"
        order = [position[v] for v in acked.get(partition, [])]
        assert order == sorted(order), f"partition {partition} out of acknowledgement order"

    # The broker returns, copies what it missed and rejoins every ISR.
    cluster.nodes[victim].restart()
    wait_isr(admin, topic, partitions, 3)
    cluster.wait_whole()


def test_consumer_group_carries_on_when_its_coordinator_dies(cluster, request):
    """A group's coordinator is the leader of its replicated __consumer_offsets partition. It
    is SIGKILLed between two commits: the group finds the new leader, which has loaded the
    committed offsets from its replica, and the consumer carries on from them; nothing is
    skipped."""
    topic = topic_for(request)
    group = f"group-{uuid.uuid4().hex[:8]}"
    partitions = 3
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})], operation_timeout=10
    )
    futures[topic].result(ADMIN_TIMEOUT_S)
    wait_isr(admin, topic, partitions, 3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(300):
        producer.produce(topic, value=f"g-{i}", partition=i % partitions)
    assert producer.flush(DEFAULT_WAIT_S) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "session.timeout.ms": 10000,
        }
    )
    seen: set[str] = set()
    try:
        consumer.subscribe([topic])
        seen.update(m.value().decode() for m in consume_n(consumer, 150))
        consumer.commit(asynchronous=False)
        assignment = [TopicPartition(topic, p) for p in range(partitions)]
        committed_before = {
            tp.partition: tp.offset for tp in consumer.committed(assignment, timeout=10)
        }
        assert sum(o for o in committed_before.values() if o >= 0) == 150, committed_before
        described = admin.describe_consumer_groups([group])[group].result(ADMIN_TIMEOUT_S)
        victim = described.coordinator.id
        wait_isr(admin, "__consumer_offsets", len(leaders(admin, "__consumer_offsets")), 3)
        cluster.nodes[victim].kill()

        survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != victim)
        after = AdminClient({"bootstrap.servers": survivors})

        def moved() -> bool:
            try:
                d = after.describe_consumer_groups([group])[group].result(5)
            except Exception:  # the coordinator is moving: not yet
                return False
            return d.coordinator.id != victim

        wait_until(moved, CLUSTER_READY_TIMEOUT_S, "the group's coordinator to move")
        # The commits acknowledged before the crash are on the new coordinator.
        after_failover = {
            tp.partition: tp.offset for tp in consumer.committed(assignment, timeout=20)
        }
        assert after_failover == committed_before
        deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_S
        while len(seen) < 300:
            assert time.monotonic() < deadline, f"only {len(seen)} of 300 records after failover"
            for m in consumer.consume(num_messages=100, timeout=0.5):
                if not m.error():
                    seen.add(m.value().decode())
        consumer.commit(asynchronous=False)
        committed = consumer.committed(assignment, timeout=10)
        assert sum(tp.offset for tp in committed) == 300, committed
    finally:
        consumer.close()
    assert seen == {f"g-{i}" for i in range(300)}
    cluster.nodes[victim].restart()
    cluster.wait_whole()


def test_a_restarted_coordinator_answers_for_its_groups_only_once_its_session_is_confirmed(request):
    """Found by the fault campaign (kill-two): a group coordinator SIGKILLed and restarted
    before the controller ended its old session came back leading what its old metadata said it
    led, and completed a rebalance before it had registered again; registering, it was fenced
    and its partitions moved, and the OffsetFetch of the assignment it had just handed out was
    refused NOT_COORDINATOR. librdkafka never asks again for such an assignment's offsets
    (librdkafka issue 5586): the transactional consumers stopped for good. Now a broker without
    a confirmed session refuses group requests (NOT_COORDINATOR) and defers offset reads
    (COORDINATOR_LOAD_IN_PROGRESS, which clients retry), and serves the group again once it is
    registered and unfenced, wherever the group then is."""
    # A long session, so the restarted node is back well before the old one ends.
    session = {i: {"broker.session.timeout.ms": "20000"} for i in NODES}
    with own_cluster("strom-pytest-restart-coordinator-", session) as slow:
        topic, group = topic_for(request), f"restart-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": slow.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=10)[topic].result(ADMIN_TIMEOUT_S)
        consumer = Consumer({"bootstrap.servers": slow.bootstrap, "group.id": group})
        try:
            wait_until(
                lambda: consumer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False) is not None,
                DEFAULT_WAIT_S,
                "the first commit",
            )
        finally:
            consumer.close()
        coordinator = admin.describe_consumer_groups([group])[group].result(ADMIN_TIMEOUT_S).coordinator.id
        wait_isr(admin, "__consumer_offsets", len(leaders(admin, "__consumer_offsets")), 3)
        victim = slow.nodes[coordinator]
        assert offset_fetch(victim, group, topic, 0) == (0, 5)
        registrations = victim.log_text().count("registered with the controller")
        victim.kill()
        victim.start()
        # Back, and not registered: its old session holds the node id for 20 s.
        assert heartbeat(victim, group, 1, "no-such-member") == 16
        assert offset_fetch(victim, group, topic, 0) == (14, -1)
        assert offset_fetch(victim, group, topic, 0, version=1) == (14, -1)
        assert victim.log_text().count("registered with the controller") == registrations, (
            "the node registered again before it was asked: the test proved nothing"
        )
        slow.wait_whole()
        later = Consumer({"bootstrap.servers": slow.bootstrap, "group.id": group})
        try:
            wait_until(
                lambda: later.committed([TopicPartition(topic, 0)], timeout=5)[0].offset == 5,
                DEFAULT_WAIT_S,
                "the committed offset, from wherever the group is coordinated now",
            )
        finally:
            later.close()


@pytest.mark.slow
def test_sigkilled_broker_other_partitions_keep_taking_writes(cluster, request):
    """SIGKILL a broker leading some partitions (not node 1, the group coordinator): the
    others keep acknowledging writes; after a restart its partitions return with their data,
    and every acknowledged message is in the log exactly once, in order per partition."""
    topic = topic_for(request)
    admin = AdminClient({"bootstrap.servers": cluster.nodes[1].bootstrap})
    create_topic(admin, topic)
    placement = spread_leaders(admin, topic)
    victim_id = max(placement.values())
    assert victim_id != 1
    victim = cluster.nodes[victim_id]
    victim_parts = sorted(p for p, leader in placement.items() if leader == victim_id)
    other_parts = sorted(p for p, leader in placement.items() if leader != victim_id)

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": FAILOVER_MESSAGE_TIMEOUT_MS,
            # Reconnects to the restarted broker at once, not after a backoff grown to 10 s.
            "reconnect.backoff.max.ms": 500,
        }
    )
    acked: dict[str, tuple[int, int]] = {}
    failed: dict[str, KafkaError] = {}
    sequence = iter(range(1_000_000))

    def on_delivery(err, msg):
        if err:
            failed[msg.value().decode()] = err
        else:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())

    def send(phase: str, partitions: list[int], per_partition: int) -> list[str]:
        values = []
        for _ in range(per_partition):
            for p in partitions:
                value = f"{next(sequence)}-{phase}-p{p}"
                producer.produce(topic, value=value, partition=p, on_delivery=on_delivery)
                values.append(value)
        return values

    def wait_resolved(values: list[str], what: str) -> None:
        def resolved() -> bool:
            producer.poll(0.1)
            return all(v in acked or v in failed for v in values)

        wait_until(resolved, DEFAULT_WAIT_S, what)

    before = send("before", list(range(PARTITIONS)), 20)
    assert producer.flush(DEFAULT_WAIT_S) == 0
    assert not failed, f"delivery failed before the kill: {failed}"

    victim.kill()
    try:
        # Straight after the kill, and again once the controller has fenced the victim (its
        # partitions offline in a survivor's metadata): the other partitions take writes.
        during = send("during", other_parts, 10)
        to_victim = send("during-to-victim", victim_parts, 5)
        wait_resolved(during, "writes to the live brokers' partitions right after the kill")

        def victim_partitions_offline() -> bool:
            now = leaders(admin, topic)
            return all(now[p] == -1 for p in victim_parts) and all(
                now[p] == placement[p] for p in other_parts
            )

        wait_until(
            victim_partitions_offline,
            DEFAULT_WAIT_S,
            f"partitions {victim_parts} of fenced node {victim_id} to show no leader",
        )
        during += send("during-fenced", other_parts, 10)
        wait_resolved(during, "writes to the live brokers' partitions while one is fenced")
        assert not {v: failed[v] for v in during if v in failed}, "live partitions failed"
    finally:
        victim.start()

    # Back with its data: the restarted node leads its partitions again.
    wait_until(
        lambda: leaders(admin, topic) == placement,
        DEFAULT_WAIT_S,
        f"node {victim_id} to lead {victim_parts} again",
    )
    after = send("after", list(range(PARTITIONS)), 20)
    assert producer.flush(DEFAULT_WAIT_S) == 0, "messages left undelivered after the restart"
    for v in to_victim:  # queued for the dead broker: delivered, or timed out
        assert v in acked or failed[v].code() == KafkaError._MSG_TIMED_OUT, (v, failed.get(v))
    must_have = before + during + after + [v for v in to_victim if v in acked]
    unacked = {v: failed[v] for v in must_have if v not in acked}
    assert not unacked, f"{len(unacked)} not acknowledged, e.g. {list(unacked.items())[:3]}"

    log = read_whole_log(cluster.bootstrap, topic, list(range(PARTITIONS)))
    seen: set[str] = set()
    for p, messages in log.items():
        values = [m.value().decode() for m in messages]
        assert len(values) == len(set(values)), f"partition {p} holds duplicates"
        assert all(v.endswith(f"-p{p}") for v in values), f"partition {p} holds strays"
        order = [int(v.split("-")[0]) for v in values]
        assert order == sorted(order), f"partition {p} out of produce order: {values}"
        seen.update(values)
        for m in messages:
            value = m.value().decode()
            if value in acked:
                assert acked[value] == (p, m.offset()), f"{value} acknowledged elsewhere"
    missing = [v for v in must_have if v not in seen]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    # Anything else in the log was an unacknowledged message to the dead broker.
    assert seen - set(must_have) <= set(to_victim)


def test_a_consumer_reads_from_the_replica_in_its_rack(request):
    """KIP-392 with librdkafka: brokers in racks r1, r2, r3 and the rack-aware replica
    selector; a consumer with client.rack=r2 reading a partition led elsewhere is sent to
    broker 2's replica and reads every record from it (as librdkafka's fetch log says)."""
    selector = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
    racks = {i: {"broker.rack": f"r{i}", "replica.selector.class": selector} for i in NODES}
    with own_cluster("strom-pytest-racks-", racks) as racked:
        topic = topic_for(request)
        admin = AdminClient({"bootstrap.servers": racked.bootstrap})
        # Replicas [1, 2, 3] in that order: broker 1 leads, broker 2 follows.
        futures = admin.create_topics(
            [NewTopic(topic, 1, replica_assignment=[[1, 2, 3]])], operation_timeout=10
        )
        futures[topic].result(ADMIN_TIMEOUT_S)
        wait_isr(admin, topic, 1, 3)
        producer = Producer({"bootstrap.servers": racked.bootstrap, "acks": "all"})
        for i in range(50):
            producer.produce(topic, value=f"r-{i}", partition=0)
        assert producer.flush(DEFAULT_WAIT_S) == 0
        lines: list[str] = []

        class Lines(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        librdkafka_log = logging.getLogger(f"librdkafka-{topic}")
        librdkafka_log.setLevel(logging.DEBUG)
        librdkafka_log.addHandler(Lines())
        consumer = Consumer(
            {
                "bootstrap.servers": racked.bootstrap,
                "group.id": f"racks-{uuid.uuid4().hex[:8]}",
                "client.rack": "r2",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "debug": "fetch",
                "logger": librdkafka_log,
            }
        )
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            got: list[str] = []
            deadline = time.monotonic() + DEFAULT_WAIT_S
            while len(got) < 50:
                assert time.monotonic() < deadline, f"only {len(got)} of 50 records"
                for m in consumer.consume(num_messages=100, timeout=0.5):
                    if not m.error():
                        got.append(m.value().decode())
            assert got == [f"r-{i}" for i in range(50)]
        finally:
            consumer.close()
        # librdkafka's own account: the leader sent it to broker 2, whose thread got the records.
        assert any(
            "migrating from broker 1 to 2" in line and "preferred replica" in line for line in lines
        )
        follower_thread = f"{racked.nodes[2].bootstrap}/2]"
        assert any("Enqueue" in line and follower_thread in line for line in lines), lines[-20:]
