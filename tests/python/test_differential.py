"""Differential tests: the same scenarios against Apache Kafka 4.4 (started by
`scripts/kafka.sh`) and against Strom, comparing what a client observes.

Each scenario returns a plain value (error codes by name, offsets, config values and sources);
the two must be equal, except where COMPATIBILITY.md lists a difference, which the scenario
then states explicitly (`KNOWN`), so an unlisted difference fails.

Kafka runs as one combined KRaft node on a loopback port, for the whole module; it needs Java
17 and the jars `scripts/kafka.sh fetch` caches (CI fetches them before the tests).
"""

from __future__ import annotations

import json
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from conftest import REPO_ROOT
from support import kafka_tool, wait_until

# Bounds on every wait here, in seconds.
KAFKA_START_TIMEOUT_S = 180
CALL_TIMEOUT_S = 30
PRODUCE_TIMEOUT_S = 30

# Differences COMPATIBILITY.md lists, by scenario and item: (what Kafka answers, what Strom
# answers). Each must still be exactly that; every other item must be equal.
KNOWN: dict[str, dict[str, tuple[object, object]]] = {
    # Kafka 4.4 writes a cluster-wide min.insync.replicas record when it formats a cluster with
    # eligible leader replicas on (KIP-966), so the value's source is the dynamic default;
    # Strom's comes from its static configuration or Kafka's default. ConfigSource 3 is
    # DYNAMIC_DEFAULT_BROKER_CONFIG, 5 DEFAULT_CONFIG.
    "new topic configs": {"min.insync.replicas": (("1", 3), ("1", 5))},
    # The same, as kafka-topics shows it: a topic's "Configs:" list names the configs whose
    # source is not a default, and for Kafka that takes in min.insync.replicas.
    "kafka tools": {
        "topic configs listed": (
            ["cleanup.policy=delete", "min.insync.replicas=1", "retention.ms=1000000", "segment.bytes=1048576"],
            ["cleanup.policy=delete", "retention.ms=1000000", "segment.bytes=1048576"],
        ),
        # Strom finalizes only transaction.version; the other features are Kafka's own
        # (metadata, KRaft, share groups, streams groups) or not reported (COMPATIBILITY.md).
        "features": (
            ["eligible.leader.replicas.version", "group.version", "kraft.version", "metadata.version",
             "share.version", "streams.version", "transaction.version"],
            ["transaction.version"],
        ),
    },
    # DescribeProducers' coordinator epoch of the last marker: Strom keeps none (its markers
    # all carry 0, and its partitions fence markers by producer epoch alone).
    "transaction, verifiable and perf tools": {
        "producers after abort": (
            [{"ProducerId": "-", "ProducerEpoch": "0", "LatestCoordinatorEpoch": "0", "LastSequence": "4",
              "LastTimestamp": "-", "CurrentTransactionStartOffset": "None"}],
            [{"ProducerId": "-", "ProducerEpoch": "0", "LatestCoordinatorEpoch": "-1", "LastSequence": "4",
              "LastTimestamp": "-", "CurrentTransactionStartOffset": "None"}],
        ),
    },
}


def assert_same(scenario: str, on_kafka: dict, on_strom: dict) -> None:
    """Equal answers, but for the differences KNOWN lists for `scenario`, which must be as
    listed (a difference that went away is a stale entry to remove)."""
    for item, (kafka_answer, strom_answer) in KNOWN.get(scenario, {}).items():
        assert (on_kafka.get(item), on_strom.get(item)) == (kafka_answer, strom_answer), (
            f"{scenario}: {item} differs otherwise than COMPATIBILITY.md says"
        )
    known = KNOWN.get(scenario, {})
    assert {k: v for k, v in on_strom.items() if k not in known} == {
        k: v for k, v in on_kafka.items() if k not in known
    }


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    """Apache Kafka 4.4, one node: its bootstrap address."""
    data = Path(tempfile.mkdtemp(prefix="strom-kafka-ref-"))
    script = REPO_ROOT / "scripts" / "kafka.sh"
    started = subprocess.run(
        [str(script), "start", "--data-dir", str(data / "kafka"),
         "--set", "group.initial.rebalance.delay.ms=0"],
        capture_output=True, text=True, timeout=KAFKA_START_TIMEOUT_S,
    )
    if started.returncode != 0:
        pytest.fail(f"Kafka 4.4 did not start:\n{started.stderr[-4000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", "--data-dir", str(data / "kafka")],
                       capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def strom(tmp_path_factory) -> Iterator[str]:
    """A Strom broker of its own (standalone), with Kafka's initial rebalance delay of 0."""
    from conftest import Broker

    instance = Broker(tmp_path_factory.mktemp("strom-diff"), {"group.initial.rebalance.delay.ms": "0"})
    Broker.in_use.append(instance)
    instance.start()
    yield instance.bootstrap
    Broker.in_use.remove(instance)
    instance.stop()


def both(kafka: str, strom: str, scenario: Callable[[str], object]) -> tuple[object, object]:
    return scenario(kafka), scenario(strom)


def unique(label: str) -> str:
    return f"diff-{label}-{uuid.uuid4().hex[:8]}"


def new_topic(bootstrap: str, label: str) -> str:
    """A new one-partition topic; its name."""
    topic = unique(label)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the answer is in
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(CALL_TIMEOUT_S)
    return topic


def produce_at(bootstrap: str, topic: str, timestamps: list[int]) -> None:
    """One record per timestamp into partition 0, each acknowledged before the next."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i, ts in enumerate(timestamps):
        producer.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=ts)
        producer.flush(PRODUCE_TIMEOUT_S)


def error_name(future) -> str:
    """The Kafka error name a client future ends with, or "NONE"."""
    try:
        future.result(CALL_TIMEOUT_S)
        return "NONE"
    except KafkaException as e:
        return e.args[0].name()


def test_create_topics_answers_bad_requests_as_kafka_does(kafka, strom):
    def scenario(bootstrap: str) -> dict[str, str]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        good = unique("good")
        cases = {
            "good": NewTopic(good, 2, 1),
            "bad character": NewTopic("bad name!", 1, 1),
            "dot": NewTopic(".", 1, 1),
            "too long": NewTopic("x" * 250, 1, 1),
            "no partitions": NewTopic(unique("zero"), 0, 1),
            "replicas beyond the brokers": NewTopic(unique("rf"), 1, 3),
            "bad config value": NewTopic(unique("cfg"), 1, 1, config={"retention.ms": "soon"}),
            "unknown config": NewTopic(unique("unknown"), 1, 1, config={"no.such.config": "1"}),
        }
        answers = {label: error_name(f) for label, f in
                   zip(cases, admin.create_topics(list(cases.values()), operation_timeout=20).values())}
        # The name again: it exists now.
        answers["exists"] = error_name(admin.create_topics([NewTopic(good, 1, 1)])[good])
        # Growing it: to fewer partitions than it has, then properly.
        answers["fewer partitions"] = error_name(admin.create_partitions([NewPartitions(good, 1)])[good])
        answers["more partitions"] = error_name(admin.create_partitions([NewPartitions(good, 4)])[good])
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("create topics", on_kafka, on_strom)


def test_new_topic_configs_and_sources_match_kafka(kafka, strom):
    keys = ["cleanup.policy", "compression.type", "max.message.bytes", "min.insync.replicas",
            "retention.bytes", "retention.ms", "segment.bytes", "segment.ms",
            "message.timestamp.type", "delete.retention.ms", "min.compaction.lag.ms"]

    def scenario(bootstrap: str) -> dict[str, tuple[str, str]]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = unique("configs")
        admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "123456"})])[topic].result(
            CALL_TIMEOUT_S)
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        # Kafka answers CreateTopics once the controller has the topic; the broker asked next
        # may not know it yet (UNKNOWN_TOPIC_OR_PARTITION for a moment under load).
        described = wait_until(lambda: admin.describe_configs([resource])[resource].result(CALL_TIMEOUT_S),
                               CALL_TIMEOUT_S, f"the configs of {topic}")
        return {k: (described[k].value, described[k].source) for k in keys if k in described}

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert set(on_kafka) == set(keys), "Kafka describes every key asked about"
    assert_same("new topic configs", on_kafka, on_strom)


def test_offsets_for_times_and_watermarks_match_kafka(kafka, strom):
    base = 1_700_000_000_000

    def scenario(bootstrap: str) -> dict[str, object]:
        topic = new_topic(bootstrap, "times")
        produce_at(bootstrap, topic, [base, base + 1000, base + 1000, base + 5000])
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g")})
        asked = {"before": base - 1, "first": base, "between": base + 500, "tie": base + 1000,
                 "last": base + 5000, "after": base + 9000}
        found = consumer.offsets_for_times(
            [TopicPartition(topic, 0, ts) for ts in asked.values()], timeout=CALL_TIMEOUT_S)
        answers: dict[str, object] = {label: tp.offset for label, tp in zip(asked, found)}
        answers["watermarks"] = consumer.get_watermark_offsets(TopicPartition(topic, 0),
                                                               timeout=CALL_TIMEOUT_S)
        consumer.close()
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("offsets for times", on_kafka, on_strom)


def test_produce_errors_match_kafka(kafka, strom):
    def scenario(bootstrap: str) -> dict[str, str]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        small, compacted = unique("small"), unique("compacted")
        futures = admin.create_topics([
            NewTopic(small, 1, 1, config={"max.message.bytes": "2000"}),
            NewTopic(compacted, 1, 1, config={"cleanup.policy": "compact"}),
        ])
        for f in futures.values():
            f.result(CALL_TIMEOUT_S)
        outcomes: dict[str, str] = {}

        def send(label: str, topic: str, **record) -> None:
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                                 "message.max.bytes": 1_000_000, "retries": 0,
                                 "enable.idempotence": False, "message.timeout.ms": 20000})

            def delivered(err, _msg):
                outcomes[label] = "NONE" if err is None else err.name()

            producer.produce(topic, on_delivery=delivered, **record)
            producer.flush(PRODUCE_TIMEOUT_S)

        send("fits", small, value=b"x" * 100)
        send("too large for the topic", small, value=b"x" * 5000)
        send("keyless into a compacted topic", compacted, value=b"v")
        send("keyed into a compacted topic", compacted, key=b"k", value=b"v")
        return outcomes

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("produce errors", on_kafka, on_strom)


def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 over a raw socket: {api key: (min, max)}."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"strom-diff"
    body = struct.pack(">hhih", 18, 0, 11, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        payload = _read(sock, size)
    correlation_id, error, count = struct.unpack(">ihi", payload[:10])
    assert (correlation_id, error) == (11, 0)
    versions = {}
    for i in range(count):
        key, low, high = struct.unpack(">hhh", payload[10 + 6 * i: 16 + 6 * i])
        versions[key] = (low, high)
    return versions


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while len(data) < n:
        assert time.monotonic() < deadline, "ApiVersions answer incomplete"
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_api_versions_offered_are_within_kafkas(kafka, strom):
    """Strom may offer fewer APIs and versions than Kafka 4.4, never one Kafka lacks."""
    on_kafka, on_strom = api_versions(kafka), api_versions(strom)
    beyond = {key: (versions, on_kafka.get(key)) for key, versions in on_strom.items()
              if key not in on_kafka or versions[0] < on_kafka[key][0] or versions[1] > on_kafka[key][1]}
    assert beyond == {}, "APIs or versions Strom offers beyond Kafka 4.4's (key: strom, kafka)"


def test_delete_records_and_list_offsets_match_kafka(kafka, strom):
    from confluent_kafka.admin import OffsetSpec

    base = 1_700_000_000_000

    def scenario(bootstrap: str) -> dict[str, object]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = new_topic(bootstrap, "delete")
        produce_at(bootstrap, topic, [base + 3000, base + 1000, base + 9000, base + 2000, base + 5000])
        answers: dict[str, object] = {}

        def offsets(label: str) -> None:
            specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
                     "max timestamp": OffsetSpec.max_timestamp(),
                     "for time": OffsetSpec.for_timestamp(base + 2500)}
            for name, spec in specs.items():
                result = admin.list_offsets({TopicPartition(topic, 0): spec})[TopicPartition(topic, 0)]
                found = result.result(CALL_TIMEOUT_S)
                answers[f"{label}: {name}"] = (found.offset, found.timestamp)

        offsets("before")

        def delete(label: str, offset: int) -> None:
            future = admin.delete_records([TopicPartition(topic, 0, offset)])[TopicPartition(topic, 0)]
            try:
                answers[label] = ("NONE", future.result(CALL_TIMEOUT_S).low_watermark)
            except KafkaException as e:
                answers[label] = (e.args[0].name(), None)

        delete("delete up to 2", 2)
        delete("delete beyond the end", 9)
        delete("delete backwards", 1)
        offsets("after")
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("delete records and list offsets", on_kafka, on_strom)


def test_transactional_visibility_matches_kafka(kafka, strom):
    def scenario(bootstrap: str) -> dict[str, object]:
        topic = new_topic(bootstrap, "txn")
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("tid"),
                             "linger.ms": 0})
        producer.init_transactions(CALL_TIMEOUT_S)
        for outcome in ["committed-1", "aborted", "committed-2"]:
            producer.begin_transaction()
            for i in range(3):
                producer.produce(topic, value=f"{outcome}-{i}".encode(), partition=0)
            producer.flush(PRODUCE_TIMEOUT_S)
            if outcome == "aborted":
                producer.abort_transaction(CALL_TIMEOUT_S)
            else:
                producer.commit_transaction(CALL_TIMEOUT_S)
        answers: dict[str, object] = {}
        for isolation in ["read_committed", "read_uncommitted"]:
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                                 "isolation.level": isolation, "enable.partition.eof": True,
                                 "auto.offset.reset": "earliest"})
            consumer.assign([TopicPartition(topic, 0, 0)])
            read: list[tuple[int, str]] = []
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == -191:  # partition EOF
                        break
                    raise KafkaException(message.error())
                read.append((message.offset(), message.value().decode()))
            else:
                pytest.fail(f"{isolation}: no end of partition within {CALL_TIMEOUT_S} s")
            answers[isolation] = read
            answers[f"{isolation} watermarks"] = consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=CALL_TIMEOUT_S)
            consumer.close()
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("transactional visibility", on_kafka, on_strom)


def test_consumer_group_administration_matches_kafka(kafka, strom):
    def scenario(bootstrap: str) -> dict[str, object]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = new_topic(bootstrap, "groups")
        group = unique("group")
        member = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "enable.auto.commit": False, "session.timeout.ms": 10000})
        member.subscribe([topic])
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not member.assignment():
            assert time.monotonic() < deadline, "no assignment"
            member.poll(0.2)
        member.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        answers: dict[str, object] = {}

        def describe(label: str, name: str) -> None:
            described = admin.describe_consumer_groups([name])[name].result(CALL_TIMEOUT_S)
            answers[label] = (described.state.name, described.type.name, described.is_simple_consumer_group,
                              len(described.members), described.partition_assignor)

        describe("with a member", group)
        answers["delete with a member"] = error_name(admin.delete_consumer_groups([group])[group])
        member.close()
        describe("after the member left", group)
        listed = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])[group].result(CALL_TIMEOUT_S)
        answers["committed"] = [(tp.partition, tp.offset) for tp in listed.topic_partitions]
        answers["delete when empty"] = error_name(admin.delete_consumer_groups([group])[group])
        describe("unknown group", unique("nobody"))
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("consumer group administration", on_kafka, on_strom)


def test_topic_config_changes_match_kafka(kafka, strom):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    def scenario(bootstrap: str) -> dict[str, object]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = new_topic(bootstrap, "alter")
        resource = lambda name: ConfigResource(ConfigResource.Type.TOPIC, name)  # noqa: E731
        answers: dict[str, object] = {}

        def alter(label: str, name: str, *entries: ConfigEntry) -> None:
            target = resource(name)
            target.incremental_configs = list(entries)
            answers[label] = error_name(admin.incremental_alter_configs([target])[target])

        def show(label: str) -> None:
            described = admin.describe_configs([resource(topic)])[resource(topic)].result(CALL_TIMEOUT_S)
            answers[label] = {k: (described[k].value, described[k].source)
                              for k in ["retention.ms", "cleanup.policy", "segment.bytes"]}

        set_op, delete_op = AlterConfigOpType.SET, AlterConfigOpType.DELETE
        alter("set two", topic, ConfigEntry("retention.ms", "7777", incremental_operation=set_op),
              ConfigEntry("cleanup.policy", "compact", incremental_operation=set_op))
        show("after set")
        alter("delete one", topic, ConfigEntry("retention.ms", None, incremental_operation=delete_op))
        show("after delete")
        alter("bad value", topic, ConfigEntry("segment.bytes", "tiny", incremental_operation=set_op))
        alter("unknown topic", unique("missing"), ConfigEntry("retention.ms", "1", incremental_operation=set_op))
        show("at the end")
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("topic config changes", on_kafka, on_strom)


# 17 tool runs per broker, each a JVM start: about 40 s on an idle machine, several times that
# beside the other suites on two cores.
@pytest.mark.timeout(300)
def test_kafka_command_line_tools_give_the_same_answers(kafka, strom, tmp_path):
    """kafka-topics, kafka-configs, the console producer and consumer, kafka-get-offsets,
    kafka-consumer-groups, kafka-delete-records, kafka-verifiable-producer and kafka-features,
    run as Kafka ships them; their output, with names and ids normalized, is compared."""

    def scenario(bootstrap: str) -> dict[str, object]:
        topic, group = unique("tools"), unique("tools-group")
        b = ("--bootstrap-server", bootstrap)

        def run(name: str, *args: str, stdin: str | None = None) -> str:
            return kafka_tool(name, *b, *args, stdin=stdin).replace(topic, "T").replace(group, "G")

        def lines(text: str) -> list[str]:
            return sorted(line for line in text.splitlines() if line and "deprecated" not in line)

        answers: dict[str, object] = {}
        topic_config = ("--entity-type", "topics", "--entity-name", topic)
        answers["create"] = run("kafka-topics", "--create", "--topic", topic, "--partitions", "2",
                                "--replication-factor", "1", "--config", "retention.ms=1000000")
        answers["alter configs"] = run("kafka-configs", "--alter", *topic_config,
                                       "--add-config", "segment.bytes=1048576,cleanup.policy=compact")
        answers["describe configs"] = run("kafka-configs", "--describe", *topic_config)
        run("kafka-console-producer", "--topic", topic, "--property", "parse.key=true",
            "--property", "key.separator=:", stdin="a:1\nb:2\na:3\nc:4\n")
        answers["consumed"] = lines(run(
            "kafka-console-consumer", "--topic", topic, "--from-beginning", "--max-messages", "4",
            "--property", "print.key=true", "--property", "print.partition=true", "--group", group))
        answers["latest offsets"] = lines(run("kafka-get-offsets", "--topic", topic))
        # Table rows in any order (Kafka's follows a hash map).
        answers["group"] = lines(run("kafka-consumer-groups", "--describe", "--group", group))
        answers["reset to earliest"] = lines(run("kafka-consumer-groups", "--reset-offsets", "--group", group,
                                                 "--topic", topic, "--to-earliest", "--execute"))
        offsets = tmp_path / f"delete-{uuid.uuid4().hex[:8]}.json"
        offsets.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": 1}], "version": 1}))
        # A compacted topic keeps every key's latest record: no DeleteRecords (POLICY_VIOLATION).
        answers["delete records, compacted"] = run("kafka-delete-records", "--offset-json-file", str(offsets))
        run("kafka-configs", "--alter", *topic_config, "--add-config", "cleanup.policy=delete")
        answers["delete records"] = run("kafka-delete-records", "--offset-json-file", str(offsets))
        answers["earliest offsets"] = lines(run("kafka-get-offsets", "--topic", topic, "--time", "-2"))
        produced = run("kafka-verifiable-producer", "--topic", topic, "--max-messages", "20")
        answers["verifiable producer acknowledged"] = produced.count('"name":"producer_send_success"')
        answers["add partitions"] = run("kafka-topics", "--alter", "--topic", topic, "--partitions", "3")
        described = run("kafka-topics", "--describe", "--topic", topic)
        listed = re.search(r"Configs: (\S*)", described)
        answers["topic configs listed"] = sorted(listed.group(1).split(",")) if listed else []
        answers["describe"] = re.sub(r"TopicId: \S+|Configs: \S*", "-", described)
        answers["features"] = sorted(re.findall(r"Feature: (\S+)", run("kafka-features", "describe")))
        answers["group listed"] = "G" in run("kafka-consumer-groups", "--list").split()
        answers["delete group"] = run("kafka-consumer-groups", "--delete", "--group", group)
        answers["delete topic"] = run("kafka-topics", "--delete", "--topic", topic)
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("kafka tools", on_kafka, on_strom)


def tool_table(text: str, hide: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a tab-separated table a Kafka tool prints, as dicts, with the columns in
    `hide` (ids and times, which differ between any two runs) replaced by "-"."""
    lines = [line for line in text.splitlines() if "\t" in line]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].split("\t")]
    rows = []
    for line in lines[1:]:
        row = dict(zip(header, (cell.strip() for cell in line.split("\t"))))
        rows.append({k: ("-" if k in hide else v) for k, v in row.items() if k})
    return rows


# A transactional producer that opens a transaction, writes 5 records to partition 0, says
# "open" and waits (on its stdin, which the test never closes) to be killed: a hanging transaction for kafka-transactions to find and abort.
# Its timeout outlasts the tools run before the abort (JVM starts, slow beside other suites), so
# no coordinator ends it first.
HANGING_PRODUCER = """
import sys
from confluent_kafka import Producer
producer = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": sys.argv[2], "linger.ms": 0,
                     "transaction.timeout.ms": 600000})
producer.init_transactions(30)
producer.begin_transaction()
for i in range(5):
    producer.produce(sys.argv[3], value=b"hanging-%d" % i, partition=0)
producer.flush(30)
print("open", flush=True)
sys.stdin.read()
"""


def read_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The next line a child prints, waiting at most `timeout_s`."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"no line from the child within {timeout_s} s"
    return process.stdout.readline().strip()


# 11 tool runs per broker, each a JVM start.
@pytest.mark.timeout(300)
def test_transaction_verifiable_and_perf_tools_give_the_same_answers(kafka, strom):
    """kafka-transactions (list, describe, describe-producers, find-hanging, and abort of a
    transaction whose producer died), kafka-verifiable-consumer, and the producer and consumer
    perf tests, run as Kafka ships them against both brokers."""

    def scenario(bootstrap: str) -> dict[str, object]:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        broker_id = admin.describe_cluster().result(CALL_TIMEOUT_S).nodes[0].id
        b = ("--bootstrap-server", bootstrap)
        answers: dict[str, object] = {}

        # A transaction left open by a producer that then died.
        topic, tid = new_topic(bootstrap, "hanging"), unique("tid")
        child = subprocess.Popen([sys.executable, "-c", HANGING_PRODUCER, bootstrap, tid, topic],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert read_line(child, PRODUCE_TIMEOUT_S) == "open"
        finally:
            child.kill()
            child.wait(timeout=CALL_TIMEOUT_S)

        def transactions(*args: str, hide: tuple[str, ...] = ()) -> list[dict[str, str]]:
            out = kafka_tool("kafka-transactions", *b, *args).replace(topic, "T").replace(tid, "TID")
            return tool_table(out, hide)

        ids = ("ProducerId", "Coordinator", "CoordinatorId")
        times = ("LastTimestamp", "CurrentTransactionStartTimeMs", "TransactionDurationMs")
        answers["list"] = [row for row in transactions("list", hide=ids) if row["TransactionalId"] == "TID"]
        answers["describe"] = transactions("describe", "--transactional-id", tid, hide=ids + times)
        producers = ("describe-producers", "--topic", topic, "--partition", "0")
        answers["producers"] = transactions(*producers, hide=ids + times)
        answers["hanging"] = transactions("find-hanging", "--broker-id", str(broker_id), hide=ids + times)
        answers["abort"] = kafka_tool("kafka-transactions", *b, "abort", "--topic", topic, "--partition", "0",
                                      "--start-offset", "0").replace(topic, "T").strip()
        answers["producers after abort"] = transactions(*producers, hide=ids + times)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                             "isolation.level": "read_committed"})
        # The abort marker ends the transaction: the last stable offset passes it.
        answers["committed watermarks after abort"] = consumer.get_watermark_offsets(
            TopicPartition(topic, 0), timeout=CALL_TIMEOUT_S)
        consumer.close()

        # kafka-verifiable-consumer reads what kafka-verifiable-producer wrote, in a group.
        topic = unique("verifiable")
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(CALL_TIMEOUT_S)
        produced = kafka_tool("kafka-verifiable-producer", *b, "--topic", topic, "--max-messages", "40")
        answers["verifiable producer acknowledged"] = produced.count('"name":"producer_send_success"')
        events = [json.loads(line) for line in kafka_tool(
            "kafka-verifiable-consumer", *b, "--topic", topic, "--group-id", unique("vgroup"),
            "--max-messages", "40", "--reset-policy", "earliest").splitlines() if line.startswith("{")]
        answers["verifiable consumer consumed"] = sum(
            e["count"] for e in events if e["name"] == "records_consumed")
        committed: dict[int, int] = {}
        for event in events:
            if event["name"] == "offsets_committed":
                assert event["success"], event
                for offset in event["offsets"]:
                    committed[offset["partition"]] = max(committed.get(offset["partition"], 0), offset["offset"])
        answers["verifiable consumer committed in all"] = sum(committed.values())

        # The perf tools, counting what went through.
        topic = new_topic(bootstrap, "perf")
        sent = kafka_tool("kafka-producer-perf-test", "--topic", topic, "--num-records", "2000",
                          "--record-size", "100", "--throughput", "-1",
                          "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all")
        answers["perf test sent"] = re.findall(r"^(\d+) records sent", sent, re.MULTILINE)[-1:]
        consumed = kafka_tool("kafka-consumer-perf-test", *b, "--topic", topic, "--messages", "2000",
                              "--timeout", "60000").strip().splitlines()
        columns = dict(zip([c.strip() for c in consumed[0].split(",")], [c.strip() for c in consumed[-1].split(",")]))
        answers["perf test consumed"] = columns.get("data.consumed.in.nMsg")
        return answers

    on_kafka, on_strom = both(kafka, strom, scenario)
    assert_same("transaction, verifiable and perf tools", on_kafka, on_strom)
