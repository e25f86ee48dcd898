"""A partition leader cut off from the rest of its cluster by a network partition, with
confluent-kafka writing and reading throughout.

Each of three combined nodes runs in a network namespace this test makes (iproute2: `ip netns
add`, veth pairs on a bridge in a hub namespace, one veth into the test's own namespace), so
the test's clients reach every node while the nodes reach each other only as the test allows.
The partition is a blackhole route in each namespace towards the other side: packets are
dropped silently, as on a real network, with connections left open.

Checked: while the old leader is cut off, the other two elect a new leader and carry on; the
old leader acknowledges no acks=all write (a producer that only reaches it gets none); once
the network heals it rejoins the ISR with the new leader's log, so its divergent write is gone;
and every acknowledged record is read back exactly once, in order within its partition.

Needs root (namespaces and routes); anywhere else the test is skipped, saying why.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, _recv_exact, _remove, _scratch_dir
from support import offset_fetch, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from faults.network import Network, netns_unusable  # noqa: E402  (the fault campaign's)

NODES = (1, 2, 3)
PARTITIONS = 3
CLIENT_PORT = 9092
QUORUM_PORT = 9093
SESSION_TIMEOUT_MS = 3000
NODE_SETTINGS = {
    "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "3000",
}
# Generous for a debug build on two loaded cores.
WAIT_S = 60.0


# Run inside a node's namespace: one acks=all write to partition 0; prints whether it was
# acknowledged or the error it got.
STALE_WRITE = """
import sys
from confluent_kafka import Producer
outcome = []
producer = Producer({"bootstrap.servers": sys.argv[1], "acks": "all", "message.timeout.ms": 8000, "retries": 0})
leader = producer.list_topics(sys.argv[2], timeout=10).topics[sys.argv[2]].partitions[0].leader
producer.produce(sys.argv[2], b"divergent", partition=0, on_delivery=lambda err, msg: outcome.append(err))
producer.flush(30)
print(f"leader {leader}:", "acknowledged" if outcome and outcome[0] is None else f"refused: {outcome}")
"""


@pytest.fixture
def netns_cluster():
    why = netns_unusable()
    if why is not None:
        pytest.skip(why)
    network = Network("netns")
    root = _scratch_dir("netns-cluster-")
    nodes: dict[int, Broker] = {}
    try:
        network.up()
        voters = ",".join(f"{i}@{network.host(i)}:{QUORUM_PORT}" for i in NODES)
        for i in NODES:
            node = Broker(
                root / f"node-{i}",
                NODE_SETTINGS,
                args=[
                    "--node-id", str(i),
                    "--process-roles", "broker,controller",
                    "--controller-listener", f"{network.host(i)}:{QUORUM_PORT}",
                    "--controller-quorum-voters", voters,
                ],
                host=network.host(i),
                prefix=["ip", "netns", "exec", network.ns(i)],
            )  # fmt: skip
            node.port = CLIENT_PORT
            nodes[i] = node
            Broker.in_use.append(node)
        for node in nodes.values():
            node.start()
        yield network, nodes
    finally:
        for node in nodes.values():
            node.kill()
            if node in Broker.in_use:
                Broker.in_use.remove(node)
        network.down()
        # A failing test's report already holds the nodes' log tails.
        _remove(root)


def bootstrap(nodes: dict[int, Broker], only: list[int] | None = None) -> str:
    return ",".join(nodes[i].bootstrap for i in (only or NODES))


def layout(node: Broker, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Per partition: (leader, ISR), as this one node sees it. A raw Metadata v1 request: a
    client library would ask whichever broker it likes, and the cut-off one answers stale."""
    name = topic.encode()
    client_id = b"strom-pytest"
    header = struct.pack(">hhih", 3, 1, 11, len(client_id)) + client_id
    body = struct.pack(">ih", 1, len(name)) + name
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    at = 4  # correlation id

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return values

    def string() -> str | None:
        nonlocal at
        (length,) = take(">h")
        if length < 0:
            return None
        at += length
        return data[at - length : at].decode()

    def ints() -> list[int]:
        (count,) = take(">i")
        return list(take(f">{count}i")) if count > 0 else []

    for _ in range(take(">i")[0]):  # brokers
        take(">i"), string(), take(">i"), string()
    take(">i")  # controller
    found: dict[int, tuple[int, list[int]]] = {}
    for _ in range(take(">i")[0]):
        take(">h"), string(), take(">?")
        for _ in range(take(">i")[0]):
            _error, index, leader = take(">hii")
            ints()
            found[index] = (leader, sorted(ints()))
    return found


@pytest.mark.timeout(300)
def test_a_leader_cut_off_by_a_network_partition_acknowledges_nothing_and_loses_nothing(netns_cluster):
    network, nodes = netns_cluster
    topic = "partitioned"
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    wait_until(
        lambda: set(admin.list_topics(timeout=2).brokers) == set(NODES),
        WAIT_S,
        "all three brokers registered and unfenced",
    )
    futures = admin.create_topics(
        [NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})], operation_timeout=20
    )
    futures[topic].result(timeout=30)
    # No client outlives the namespaces (a leftover one would reconnect to their addresses).
    del admin, futures
    def settled() -> dict[int, tuple[int, list[int]]] | None:
        now = layout(nodes[1], topic)
        in_sync = len(now) == PARTITIONS and all(len(isr) == 3 and leader > 0 for leader, isr in now.values())
        return now if in_sync else None

    before = wait_until(settled, WAIT_S, "every partition led, with all three replicas in sync")
    old_leader = before[0][0]
    majority = [n for n in NODES if n != old_leader]

    # A steady acks=all writer over every partition, recording what is acknowledged.
    acked: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    lock = threading.Lock()
    stop = threading.Event()
    undelivered: list[int] = []

    def delivered(err, msg):
        if err is None:
            with lock:
                acked[msg.partition()].append(msg.value().decode())

    def write() -> None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap(nodes),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # A request the cut-off leader never answers is given up (and retried with
                # fresh metadata) after 5 s rather than 30.
                "request.timeout.ms": 5000,
                "message.timeout.ms": 60000,
            }
        )
        seq = 0
        while not stop.is_set() and seq < 100_000:
            for p in range(PARTITIONS):
                producer.produce(topic, f"p{p}-{seq:06d}".encode(), partition=p, on_delivery=delivered)
            seq += 1
            producer.poll(0.01)
        undelivered.append(producer.flush(60))
        del producer

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    wait_until(lambda: all(len(v) >= 20 for v in acked.values()), WAIT_S, "steady acknowledgements")

    for other in majority:
        network.cut(old_leader, other)
    witness = nodes[majority[0]]
    wait_until(
        lambda: layout(witness, topic)[0][0] in majority,
        WAIT_S,
        f"a new leader for partition 0 on the majority side (was {old_leader})",
    )
    # Writes carry on through the majority side's leaders while the old one is cut off. (The
    # client's writes to the old leader's partitions resume only once librdkafka stops asking
    # it, which still answers as their leader, for metadata: checked by the final read.)
    counts = {p: len(v) for p, v in acked.items()}
    elsewhere = [p for p, (leader, _) in before.items() if leader != old_leader]
    assert elsewhere, f"every partition led by node {old_leader}: {before}"
    wait_until(
        lambda: all(len(acked[p]) >= counts[p] + 20 for p in elsewhere),
        WAIT_S,
        f"acknowledgements from partitions {elsewhere}, led on the majority side",
    )
    # A producer inside the old leader's namespace, which reaches only it (it still thinks it
    # leads), gets nothing acknowledged: its followers fetch from the new leader now.
    outcome = subprocess.run(
        ["ip", "netns", "exec", network.ns(old_leader), sys.executable, "-c", STALE_WRITE,
         nodes[old_leader].bootstrap, topic],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    said = outcome.stdout.strip()
    # It reached the old leader, which named itself leader, and had the write refused or
    # timed out.
    assert said.startswith(f"leader {old_leader}: refused"), f"the cut-off leader's answer: {said}"

    network.heal()
    wait_until(
        lambda: all(old_leader in isr for _, isr in layout(witness, topic).values()),
        WAIT_S,
        f"node {old_leader} back in the ISR of every partition",
    )
    stop.set()
    writer.join(timeout=120)
    assert not writer.is_alive(), "the writer did not finish"
    assert undelivered == [0], f"records undelivered after the network healed: {undelivered}"

    # Everything acknowledged, exactly once and in order; nothing of the divergent write.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(nodes),
            "group.id": f"check-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    read: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    ended: set[int] = set()
    errors: list[str] = []

    def read_to_end() -> bool:
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error() is None:
                read[msg.partition()].append(msg.value().decode())
                ended.discard(msg.partition())
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                ended.add(msg.partition())
            else:
                errors.append(str(msg.error()))
        return len(ended) == PARTITIONS

    wait_until(
        read_to_end,
        WAIT_S,
        lambda: f"reading every partition to its end (ended: {ended}, read: "
        f"{ {p: len(v) for p, v in read.items()} }, acknowledged: { {p: len(v) for p, v in acked.items()} }, "
        f"errors: {errors[-3:]})",
    )
    consumer.close()
    for p in range(PARTITIONS):
        assert "divergent" not in read[p], f"partition {p} kept the cut-off leader's write"
        assert read[p] == sorted(read[p]), f"partition {p} out of order"
        assert len(read[p]) == len(set(read[p])), f"partition {p} has duplicates"
        missing = set(acked[p]) - set(read[p])
        assert not missing, f"partition {p} lost {len(missing)} acknowledged records, e.g. {sorted(missing)[:3]}"


@pytest.mark.timeout(300)
def test_a_cut_off_group_coordinator_does_not_answer_with_offsets_it_no_longer_owns(netns_cluster):
    """Found by the fault campaign (scripts/campaign.py, kind isolate): a group coordinator cut
    off from the cluster for longer than its session kept answering OffsetFetch from memory
    after its partition had moved and newer offsets were committed at the new coordinator; a
    consumer still talking to it went back to the old offsets and processed records twice.
    Now a broker that may have been fenced answers COORDINATOR_LOAD_IN_PROGRESS (which clients
    retry; librdkafka strands an assignment whose OffsetFetch was refused NOT_COORDINATOR)."""
    network, nodes = netns_cluster
    topic, group = "positions", "cut-off-coordinator"
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    wait_until(lambda: set(admin.list_topics(timeout=2).brokers) == set(NODES), WAIT_S, "three brokers")
    admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=20)[topic].result(timeout=30)

    def commit(offset: int, through: list[int]) -> bool:
        consumer = Consumer({"bootstrap.servers": bootstrap(nodes, through), "group.id": group, "socket.timeout.ms": 3000})
        try:
            consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
            return True
        except Exception:  # noqa: BLE001 - the coordinator is moving; the caller retries
            return False
        finally:
            consumer.close()

    wait_until(lambda: commit(5, list(NODES)), WAIT_S, "the first commit")
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = described.coordinator.id
    others = [n for n in NODES if n != coordinator]
    assert offset_fetch(nodes[coordinator], group, topic, 0) == (0, 5)
    del admin

    for other in others:
        network.cut(coordinator, other)
    try:
        # The other two fence it and take its partition; the new coordinator commits 9.
        wait_until(lambda: commit(9, others), WAIT_S, "a commit at the new coordinator")
        error, offset = offset_fetch(nodes[coordinator], group, topic, 0)
        assert (error, offset) != (0, 5), "the cut-off node answered with the offset it no longer owns"
        assert error == 14, f"expected COORDINATOR_LOAD_IN_PROGRESS, got error {error} offset {offset}"
    finally:
        network.heal()
    # Healed, the group's offset is the new coordinator's, wherever it is asked.
    wait_until(
        lambda: all(offset_fetch(nodes[n], group, topic, 0) in ((0, 9), (16, -1)) for n in NODES)
        and any(offset_fetch(nodes[n], group, topic, 0) == (0, 9) for n in NODES),
        WAIT_S,
        "the committed offset 9, from whichever node coordinates",
    )
