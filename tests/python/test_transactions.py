"""Transactions (KIP-98) with confluent-kafka, aiokafka and kafka-python against Strom.

What read_committed and read_uncommitted consumers see after committed, aborted and
interleaved transactions; offsets committed inside transactions; a zombie producer fenced by
a new one with its transactional id; a producer SIGKILLed mid-transaction, whose transaction
holds the last stable offset only until transaction.timeout.ms; transactions open across a
broker SIGKILL; and exactly-once consume-transform-produce over 100,000 records with the
processor SIGKILLed mid-transaction and restarted.

Processes a test kills run `txn_worker.py`. Every wait polls a condition against a deadline.
The few checks that something does not happen (read_committed passing an open transaction,
OffsetFetch answering while offsets are pending) keep polling for a bounded window, shorter
than the transaction timeout where one applies, after first showing that the client is
active (it has received the records before the transaction).
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata as AioOffsetAndMetadata
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata as KpOffsetAndMetadata

from confluent_clients import create_topic
from support import DEFAULT_WAIT_S, wait_until

WORKER = Path(__file__).resolve().parent / "txn_worker.py"
PARTITIONS = 3
# How long a client call that waits on the broker (init, commit, abort, flush) may take, in s.
CALL_TIMEOUT_S = 30.0
# Groups form at once: the initial delay would only slow the group tests down.
GROUP_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
PR_SET_PDEATHSIG = 1


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- confluent-kafka helpers


class TxnProducer:
    """A confluent-kafka transactional producer that records every delivery report."""

    def __init__(self, broker, transactional_id: str, **config):
        settings = {
            "bootstrap.servers": broker.bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
        }
        settings.update(config)
        self.producer = Producer(settings)
        self.errors: list[KafkaError] = []
        self.delivered: list[str] = []

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.delivered.append(msg.value().decode())
        else:
            self.errors.append(err)

    def init(self) -> "TxnProducer":
        self.producer.init_transactions(CALL_TIMEOUT_S)
        return self

    def produce(self, topic: str, partition: int, values: list[str]) -> None:
        for value in values:
            self.producer.produce(
                topic, value=value.encode(), partition=partition, on_delivery=self._on_delivery
            )

    def flush(self) -> None:
        """Waits until every record is in the log (or failed), so the log order is known."""
        assert self.producer.flush(CALL_TIMEOUT_S) == 0, "records not delivered in time"
        assert not self.errors, f"delivery errors: {self.errors}"


def read_to_end(broker, topic: str, partitions: int, isolation_level: str) -> dict[int, list[str]]:
    """Every value a fresh confluent consumer with `isolation_level` reads from each partition,
    from the beginning up to the end offset the broker reports for that isolation level (the
    high watermark, or for read_committed the last stable offset): end of partition must be
    reached at or past that offset in every partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "strom-pytest-unused",
            "enable.auto.commit": False,
            "isolation.level": isolation_level,
            "enable.partition.eof": True,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=CALL_TIMEOUT_S)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        values: dict[int, list[str]] = {p: [] for p in range(partitions)}
        at_end: set[int] = set()

        def reached_end() -> bool:
            for message in consumer.consume(num_messages=10000, timeout=0.2):
                error = message.error()
                if error is None:
                    values[message.partition()].append(message.value().decode())
                elif error.code() == KafkaError._PARTITION_EOF:
                    if message.offset() >= ends[message.partition()]:
                        at_end.add(message.partition())
                else:
                    raise AssertionError(f"consumer error: {error}")
            return len(at_end) == partitions

        wait_until(
            reached_end,
            DEFAULT_WAIT_S,
            lambda: f"{isolation_level} reading {topic} to {ends} (at end: {sorted(at_end)})",
        )
        return values
    finally:
        consumer.close()


def kafka_error_of(call) -> KafkaError:
    """Runs `call`, which must raise a KafkaException, and returns its KafkaError."""
    with pytest.raises(KafkaException) as raised:
        call()
    return raised.value.args[0]


# ---------------------------------------------------------------- confluent-kafka


def test_confluent_read_committed_sees_exactly_the_committed_transactions(broker, topic_name):
    """Two transactional producers write the same three partitions with their transactions
    open at the same time, their records interleaved in every partition (each flushes before
    the other writes, so the log order is known). Per round one commits and the other
    aborts, then both commit, both abort, both commit. A read_committed consumer must read
    exactly the committed records, in log order per partition (aborted records between them
    skipped by the broker's aborted-transaction lists); read_uncommitted reads every record,
    the aborted ones too (flushed before abort_transaction, which purges unsent records)."""
    topic = topic_name("interleaved")
    create_topic(broker, topic, partitions=PARTITIONS)
    producers = {
        "a": TxnProducer(broker, unique("txn-a")).init(),
        "b": TxnProducer(broker, unique("txn-b")).init(),
    }
    # Which producers commit in each round; the others abort.
    rounds = [{"a"}, {"b"}, {"a", "b"}, set(), {"a", "b"}]
    expect_all: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    expect_committed: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for number, committers in enumerate(rounds):
        for producer in producers.values():
            producer.producer.begin_transaction()
        round_start = {p: len(expect_all[p]) for p in range(PARTITIONS)}
        for step in range(3):
            for name, producer in producers.items():
                for p in range(PARTITIONS):
                    values = [f"{name}{number}-s{step}-p{p}-{i}" for i in range(4)]
                    producer.produce(topic, p, values)
                    expect_all[p] += values
                producer.flush()
        # The aborting producer ends first in odd rounds, last in even ones.
        order = sorted(producers, reverse=number % 2 == 1)
        for name in order:
            if name in committers:
                producers[name].producer.commit_transaction(CALL_TIMEOUT_S)
            else:
                producers[name].producer.abort_transaction(CALL_TIMEOUT_S)
        # Interleaved in the log; read_committed keeps log order among what it returns.
        for p in range(PARTITIONS):
            expect_committed[p] += [
                v for v in expect_all[p][round_start[p] :] if v[0] in committers
            ]
    for producer in producers.values():
        producer.flush()

    assert read_to_end(broker, topic, PARTITIONS, "read_committed") == expect_committed
    assert read_to_end(broker, topic, PARTITIONS, "read_uncommitted") == expect_all


def test_confluent_open_transaction_holds_back_read_committed(broker, topic_name):
    """While a transaction is open, read_committed stops at its first record (the last stable
    offset) even when later records, committed or not transactional at all, follow it; the
    high watermark is not affected. When the transaction commits, everything is readable, in
    log order."""
    topic = topic_name("lso")
    create_topic(broker, topic)
    early = TxnProducer(broker, unique("early")).init()
    early.producer.begin_transaction()
    early.produce(topic, 0, ["committed-0"])
    early.producer.commit_transaction(CALL_TIMEOUT_S)

    held = TxnProducer(broker, unique("held")).init()
    held.producer.begin_transaction()
    held.produce(topic, 0, ["open-0", "open-1"])
    held.flush()
    plain = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    plain.produce(topic, value=b"plain-after", partition=0)
    assert plain.flush(CALL_TIMEOUT_S) == 0

    committed_reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "strom-pytest-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    # librdkafka's default isolation level is read_committed.
    uncommitted_reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "strom-pytest-unused",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    try:
        tp = TopicPartition(topic, 0)
        # The log: committed-0, its marker, open-0, open-1, plain-after.
        assert committed_reader.get_watermark_offsets(tp, timeout=CALL_TIMEOUT_S) == (0, 2)
        assert uncommitted_reader.get_watermark_offsets(tp, timeout=CALL_TIMEOUT_S) == (0, 5)
        committed_reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got: list[str] = []

        def read() -> list[str]:
            for message in committed_reader.consume(num_messages=100, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message.value().decode())
            return got

        wait_until(
            lambda: read() == ["committed-0"],
            DEFAULT_WAIT_S,
            lambda: f"committed-0 alone, got {got}",
        )
        # The reader keeps fetching (librdkafka fetches at least every fetch.wait.max.ms=500)
        # for a while and must get nothing past the open transaction.
        window_ends = time.monotonic() + 2.0
        while time.monotonic() < window_ends:
            assert read() == ["committed-0"], f"read_committed passed an open transaction: {got}"
        held.producer.commit_transaction(CALL_TIMEOUT_S)
        wait_until(lambda: len(read()) >= 4, DEFAULT_WAIT_S, lambda: f"4 records, got {got}")
        assert got == ["committed-0", "open-0", "open-1", "plain-after"]
        assert committed_reader.get_watermark_offsets(tp, timeout=CALL_TIMEOUT_S) == (0, 6)
    finally:
        committed_reader.close()
        uncommitted_reader.close()


def test_confluent_send_offsets_to_transaction_and_require_stable_offset_fetch(broker, topic_name):
    """Offsets sent with send_offsets_to_transaction become the group's committed offsets only
    when the transaction commits; an aborted transaction's offsets never do. While a
    transaction holding offsets is open, a read_committed consumer asking for its committed
    offsets (OffsetFetch with require_stable) waits (the broker answers
    UNSTABLE_OFFSET_COMMIT, which librdkafka retries) until the transaction ends and then
    gets the new offset, whereas a read_uncommitted consumer is answered at once with the
    last stable one."""
    topic, group = topic_name("offsets"), unique("g")
    create_topic(broker, topic)
    member = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    producer = TxnProducer(broker, unique("offsets")).init()

    def committed(isolation_level: str, timeout_s: float = CALL_TIMEOUT_S) -> int:
        reader = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "isolation.level": isolation_level,
                "enable.auto.commit": False,
            }
        )
        try:
            return reader.committed([TopicPartition(topic, 0)], timeout=timeout_s)[0].offset
        finally:
            reader.close()

    def transaction(offset: int, commit: bool) -> None:
        producer.producer.begin_transaction()
        producer.produce(topic, 0, [f"with-offset-{offset}"])
        producer.producer.send_offsets_to_transaction(
            [TopicPartition(topic, 0, offset)], member.consumer_group_metadata(), CALL_TIMEOUT_S
        )
        if commit:
            producer.producer.commit_transaction(CALL_TIMEOUT_S)
        else:
            producer.flush()
            producer.producer.abort_transaction(CALL_TIMEOUT_S)

    try:
        transaction(5, commit=True)
        assert committed("read_committed") == 5
        transaction(9, commit=False)
        assert committed("read_committed") == 5
        assert committed("read_uncommitted") == 5

        producer.producer.begin_transaction()
        producer.produce(topic, 0, ["pending"])
        producer.producer.send_offsets_to_transaction(
            [TopicPartition(topic, 0, 12)], member.consumer_group_metadata(), CALL_TIMEOUT_S
        )
        # The offset 12 is written to __consumer_offsets but pending until the marker.
        assert committed("read_uncommitted") == 5
        answer: list[object] = []
        waiter = threading.Thread(
            target=lambda: answer.append(committed("read_committed", 60.0)), daemon=True
        )
        started = time.monotonic()
        waiter.start()
        # Not sleep as synchronisation: the waiter must still be waiting after this window;
        # a broker that answered with the stable offset would have let it return in ms.
        window_s = 3.0
        while time.monotonic() - started < window_s:
            assert not answer, f"require_stable OffsetFetch answered while pending: {answer}"
            time.sleep(0.05)
        producer.producer.commit_transaction(CALL_TIMEOUT_S)
        wait_until(lambda: answer, DEFAULT_WAIT_S, "the read_committed OffsetFetch to return")
        assert answer == [12]
        waiter.join(CALL_TIMEOUT_S)
    finally:
        member.close()


def test_confluent_new_producer_with_the_same_transactional_id_fences_the_old(broker, topic_name):
    """A second producer with the same transactional.id calling init_transactions fences the
    first: the first's open transaction is aborted (its flushed records are in the log, never
    visible to read_committed), its next produce is refused by the partition and its commit
    fails with a fatal fencing error. The second producer's commits are visible."""
    topic = topic_name("fenced")
    create_topic(broker, topic, partitions=2)
    transactional_id = unique("shared")
    zombie = TxnProducer(broker, transactional_id).init()
    zombie.producer.begin_transaction()
    zombie.produce(topic, 0, [f"zombie-{i}" for i in range(5)])
    zombie.flush()

    successor = TxnProducer(broker, transactional_id).init()
    successor.producer.begin_transaction()
    successor.produce(topic, 0, ["successor-0", "successor-1"])
    successor.produce(topic, 1, ["successor-2"])
    successor.producer.commit_transaction(CALL_TIMEOUT_S)

    # Partition 0 is in the zombie's transaction (as far as it knows), partition 1 is not:
    # the first write goes straight to the partition, the second asks the coordinator first.
    zombie.produce(topic, 0, ["zombie-late-0"])
    zombie.produce(topic, 1, ["zombie-late-1"])
    error = kafka_error_of(lambda: zombie.producer.commit_transaction(CALL_TIMEOUT_S))
    assert error.fatal(), error
    assert error.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ), error
    # Neither late record is acknowledged (and the logs below do not hold them). Once the
    # fatal error is raised, confluent-kafka may raise it again from flush() (as a SystemError
    # when it interrupts a delivery callback), depending on which refusal librdkafka saw first.
    try:
        zombie.producer.flush(CALL_TIMEOUT_S)
    except (KafkaException, SystemError) as raised:
        cause = raised if isinstance(raised, KafkaException) else raised.__cause__
        assert isinstance(cause, KafkaException) and cause.args[0].fatal(), raised
    assert not [v for v in zombie.delivered if v.startswith("zombie-late")], zombie.delivered

    assert read_to_end(broker, topic, 2, "read_committed") == {
        0: ["successor-0", "successor-1"],
        1: ["successor-2"],
    }
    assert read_to_end(broker, topic, 2, "read_uncommitted") == {
        0: [f"zombie-{i}" for i in range(5)] + ["successor-0", "successor-1"],
        1: ["successor-2"],
    }

    # The successor goes on committing after the zombie's attempts.
    successor.producer.begin_transaction()
    successor.produce(topic, 1, ["successor-3"])
    successor.producer.commit_transaction(CALL_TIMEOUT_S)
    assert read_to_end(broker, topic, 2, "read_committed")[1] == ["successor-2", "successor-3"]


# ---------------------------------------------------------------- aiokafka


async def aio_read_to_end(
    broker, topic: str, partitions: int, isolation_level: str
) -> dict[int, list[str]]:
    """What an aiokafka consumer with `isolation_level` reads from the beginning until its
    position in every partition reaches the end offset for that isolation level."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation_level)
    await consumer.start()
    try:
        tps = [AioTopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: dict[int, list[str]] = {p: [] for p in range(partitions)}

        async def read() -> None:
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    values[tp.partition] += [r.value.decode() for r in records]
                if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    return

        await asyncio.wait_for(read(), DEFAULT_WAIT_S)
        return values
    finally:
        await consumer.stop()


class Abandon(Exception):
    """Raised inside `async with producer.transaction()` to make it abort."""


def test_aiokafka_transactions_commit_abort_and_isolation_levels(broker, topic_name):
    """aiokafka's transactional producer: transactions committed with `async with
    producer.transaction()`, one aborted by an exception raised inside it, one by
    abort_transaction(), and non-transactional records in between. Every record is awaited
    before the transaction ends, so the aborted ones are in the log. An aiokafka read_committed
    consumer reads exactly the committed and non-transactional records in order;
    read_uncommitted reads all of them. A confluent read_committed consumer agrees."""
    topic = topic_name("aio")
    create_topic(broker, topic, partitions=2)
    expect_all: dict[int, list[str]] = {0: [], 1: []}
    expect_committed: dict[int, list[str]] = {0: [], 1: []}

    async def write(producer: AIOKafkaProducer, label: str, visible: bool) -> None:
        for i in range(6):
            value = f"{label}-{i}"
            await producer.send_and_wait(topic, value.encode(), partition=i % 2)
            expect_all[i % 2].append(value)
            if visible:
                expect_committed[i % 2].append(value)

    async def scenario() -> tuple[dict, dict]:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id=unique("aio")
        )
        plain = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await plain.start()
        try:
            async with producer.transaction():
                await write(producer, "committed-1", visible=True)
            with pytest.raises(Abandon):
                async with producer.transaction():
                    await write(producer, "raised", visible=False)
                    raise Abandon()
            await write(plain, "plain", visible=True)
            await producer.begin_transaction()
            await write(producer, "aborted", visible=False)
            await producer.abort_transaction()
            async with producer.transaction():
                await write(producer, "committed-2", visible=True)
        finally:
            await producer.stop()
            await plain.stop()
        return (
            await aio_read_to_end(broker, topic, 2, "read_committed"),
            await aio_read_to_end(broker, topic, 2, "read_uncommitted"),
        )

    committed, everything = asyncio.run(asyncio.wait_for(scenario(), 50))
    assert committed == expect_committed
    assert everything == expect_all
    assert read_to_end(broker, topic, 2, "read_committed") == expect_committed


def test_aiokafka_send_offsets_to_transaction(broker_factory, topic_name):
    """aiokafka consume-transform-produce: a read_committed group member reads input records
    in batches; each batch is written to the output in a transaction with its next offset
    (send_offsets_to_transaction). A committed transaction's offset becomes the group's
    committed offset; an aborted one's does not, and its outputs never reach read_committed.
    The aborted batch is processed again from the committed offset, so the committed output
    is every input record up to the last committed offset, once and in order."""
    broker = broker_factory(GROUP_SETTINGS)
    source, sink, group = topic_name("in"), topic_name("out"), unique("g")
    create_topic(broker, source)
    create_topic(broker, sink)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(20):
        plain.produce(source, value=f"in-{i}".encode(), partition=0)
    assert plain.flush(CALL_TIMEOUT_S) == 0
    tp = AioTopicPartition(source, 0)

    async def scenario() -> tuple[list[int], list[int], list[str]]:
        consumer = AIOKafkaConsumer(
            source,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id=unique("aio-eos")
        )
        await producer.start()
        await consumer.start()
        # After each transaction: the offset the group should have committed, and what it has.
        expected: list[int] = []
        committed: list[int] = []
        try:
            for commit in (True, False, True):
                records = []
                while not records:
                    records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                await producer.begin_transaction()
                for record in records:
                    await producer.send_and_wait(sink, b"out-" + record.value, partition=0)
                next_offset = records[-1].offset + 1
                await producer.send_offsets_to_transaction(
                    {tp: AioOffsetAndMetadata(next_offset, "")}, group
                )
                if commit:
                    await producer.commit_transaction()
                    expected.append(next_offset)
                else:
                    await producer.abort_transaction()
                    expected.append(expected[-1])
                    # An exactly-once application processes the batch again from the
                    # committed offset.
                    consumer.seek(tp, expected[-1])
                committed.append(await consumer.committed(tp))
        finally:
            await consumer.stop()
            await producer.stop()
        output = await aio_read_to_end(broker, sink, 1, "read_committed")
        return expected, committed, output[0]

    expected, committed, output = asyncio.run(asyncio.wait_for(scenario(), 50))
    assert committed == expected
    assert 0 < expected[0] < expected[2] <= 20
    # The aborted batch's outputs are gone; its records were processed again, once.
    assert output == [f"out-in-{i}" for i in range(expected[2])]


# ---------------------------------------------------------------- kafka-python


def kp_read_to_end(
    broker, topic: str, partitions: int, isolation_level: str
) -> dict[int, list[str]]:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, isolation_level=isolation_level
    )
    try:
        tps = [KpTopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        values: dict[int, list[str]] = {p: [] for p in range(partitions)}

        def at_end() -> bool:
            for tp, records in consumer.poll(timeout_ms=200).items():
                values[tp.partition] += [r.value.decode() for r in records]
            return all(consumer.position(tp) >= ends[tp] for tp in tps)

        wait_until(at_end, DEFAULT_WAIT_S, f"kafka-python {isolation_level} at {ends}")
        return values
    finally:
        consumer.close()


def test_kafka_python_transactions_commit_abort_and_isolation_levels(broker, topic_name):
    """kafka-python 3.0's transactional producer (init_transactions, begin, commit, abort,
    send_offsets_to_transaction): a kafka-python read_committed consumer reads exactly the
    committed records in order, read_uncommitted every record; offsets sent in the committed
    transaction are the group's committed offsets, those of the aborted one are not."""
    topic, group = topic_name("kp"), unique("g")
    create_topic(broker, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("kp"))
    expect_all: dict[int, list[str]] = {0: [], 1: []}
    expect_committed: dict[int, list[str]] = {0: [], 1: []}
    try:
        producer.init_transactions()
        for label, commit, offset in (
            ("c1", True, 3),
            ("a1", False, 7),
            ("c2", True, 4),
            ("a2", False, 9),
        ):
            producer.begin_transaction()
            for i in range(6):
                value = f"{label}-{i}"
                producer.send(topic, value.encode(), partition=i % 2).get(CALL_TIMEOUT_S)
                expect_all[i % 2].append(value)
                if commit:
                    expect_committed[i % 2].append(value)
            producer.send_offsets_to_transaction(
                {KpTopicPartition(topic, 0): KpOffsetAndMetadata(offset, "", -1)}, group
            )
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    assert kp_read_to_end(broker, topic, 2, "read_committed") == expect_committed
    assert kp_read_to_end(broker, topic, 2, "read_uncommitted") == expect_all
    reader = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        assert reader.committed(KpTopicPartition(topic, 0)) == 4
    finally:
        reader.close()


# ---------------------------------------------------------------- worker processes


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if pytest dies first (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the tests kill their workers on every normal exit


class Worker:
    """A `txn_worker.py` process; its output lines are collected as they come."""

    def __init__(self, *arguments: str):
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines[-30:])

    def wait_for(self, word: str, timeout_s: float) -> list[str]:
        """Waits for a line starting with `word`; returns its words. Fails at once if the
        process exits first."""

        def found():
            for line in list(self.lines):
                words = line.split()
                if words and words[0] == word:
                    return words
            if self.process.poll() is not None:
                return ["exited"]
            return None

        words = wait_until(
            found, timeout_s, lambda: f"worker line {word!r}; output:\n{self.output()}"
        )
        if words == ["exited"] and word != "exited":
            self._reader.join(5)
            raise AssertionError(
                f"worker exited ({self.process.returncode}) before {word!r}:\n{self.output()}"
            )
        return words

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)


# ---------------------------------------------------------------- a producer dies


@pytest.mark.timeout(90)
def test_a_sigkilled_producers_transaction_is_aborted_after_its_timeout(broker, topic_name):
    """A producer process opens a transaction (transaction.timeout.ms=10 s), flushes records
    into partition 0 and is SIGKILLed. A plain producer then writes after it. Until the
    timeout, read_committed stops at the dead transaction (it does read the committed
    records before it, so it is fetching); once the coordinator aborts the transaction, it
    reads the later records, within the timeout plus 15 s, and never the dead ones.
    read_uncommitted reads both. The transactional id is usable again afterwards."""
    timeout_s = 10.0
    topic, transactional_id = topic_name("dead"), unique("dead")
    create_topic(broker, topic)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(3):
        plain.produce(topic, value=f"before-{i}".encode(), partition=0)
    assert plain.flush(CALL_TIMEOUT_S) == 0

    worker = Worker(
        "dangle", broker.bootstrap, topic, transactional_id, str(int(timeout_s * 1000)), "20"
    )
    try:
        # The transaction cannot have started on the broker before this wall-clock time.
        began_at = float(worker.wait_for("begin", DEFAULT_WAIT_S)[1])
        worker.wait_for("flushed", DEFAULT_WAIT_S)
    finally:
        worker.kill()
    for i in range(5):
        plain.produce(topic, value=f"after-{i}".encode(), partition=0)
    assert plain.flush(CALL_TIMEOUT_S) == 0

    reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "strom-pytest-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got: list[str] = []

        def read() -> list[str]:
            for message in reader.consume(num_messages=100, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message.value().decode())
            return got

        before = [f"before-{i}" for i in range(3)]
        # Until shortly before the earliest moment the transaction can time out, the reader
        # gets the records before it and nothing else.
        held_until = began_at + timeout_s - 1.0
        wait_until(lambda: len(read()) >= 3, DEFAULT_WAIT_S, "the records before the dead ones")
        assert time.time() < held_until, "too slow to watch the transaction hold the reader back"
        while time.time() < held_until:
            assert read() == before, f"read_committed passed an open transaction: {got}"
        assert got == before

        after = [f"after-{i}" for i in range(5)]
        wait_until(
            lambda: len(read()) >= len(before) + len(after),
            max(began_at + timeout_s + 15.0 - time.time(), 1.0),
            lambda: f"the later records within timeout + 15 s; got {got}",
        )
        assert got == before + after
    finally:
        reader.close()
    assert (
        read_to_end(broker, topic, 1, "read_uncommitted")[0]
        == before + [f"dead-{i}" for i in range(20)] + after
    )

    successor = TxnProducer(broker, transactional_id).init()
    successor.producer.begin_transaction()
    successor.produce(topic, 0, ["successor"])
    successor.producer.commit_transaction(CALL_TIMEOUT_S)
    assert read_to_end(broker, topic, 1, "read_committed")[0] == before + after + ["successor"]


# ---------------------------------------------------------------- broker restarts


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_transactions_open_across_a_broker_sigkill(broker_factory, topic_name):
    """Transaction state survives a broker SIGKILL (replayed from __transaction_state and the
    partitions' producer state). Before the kill: one transaction committed; a producer
    process SIGKILLed with its transaction open in partition 0 (transaction.timeout.ms=6 s);
    two more producers with transactions open in both partitions, their records flushed.
    After the restart read_committed still stops at the open transactions; the two live
    producers finish theirs, one committing and one aborting; the dead producer's transaction
    is aborted by the restarted coordinator when it times out, within its timeout plus 20 s
    of its start. read_committed then reads exactly the committed records."""
    timeout_s = 6.0
    broker = broker_factory()
    topic = topic_name("restart")
    create_topic(broker, topic, partitions=2)
    done = TxnProducer(broker, unique("done")).init()
    done.producer.begin_transaction()
    done.produce(topic, 0, ["done-0", "done-1"])
    done.producer.commit_transaction(CALL_TIMEOUT_S)

    worker = Worker(
        "dangle", broker.bootstrap, topic, unique("dead"), str(int(timeout_s * 1000)), "3"
    )
    try:
        began_at = float(worker.wait_for("begin", DEFAULT_WAIT_S)[1])
        worker.wait_for("flushed", DEFAULT_WAIT_S)
    finally:
        worker.kill()
    keep = TxnProducer(broker, unique("keep")).init()
    drop = TxnProducer(broker, unique("drop")).init()
    for name, producer in (("keep", keep), ("drop", drop)):
        producer.producer.begin_transaction()
        producer.produce(topic, 0, [f"{name}-0"])
        producer.produce(topic, 1, [f"{name}-1"])
        producer.flush()

    broker.restart(signal.SIGKILL)

    # The live producers' transactions (60 s timeouts) still hold read_committed back.
    assert read_to_end(broker, topic, 2, "read_committed") == {0: ["done-0", "done-1"], 1: []}
    keep.producer.commit_transaction(CALL_TIMEOUT_S)
    drop.producer.abort_transaction(CALL_TIMEOUT_S)
    assert read_to_end(broker, topic, 2, "read_committed")[1] == ["keep-1"]

    # Partition 0 is held until the dead producer's transaction times out.
    def partition_0_committed() -> list[str]:
        return read_to_end(broker, topic, 1, "read_committed")[0]

    wait_until(
        lambda: "keep-0" in partition_0_committed(),
        max(began_at + timeout_s + 20.0 - time.time(), 1.0),
        "the dead transaction aborted after the restart",
    )
    assert read_to_end(broker, topic, 2, "read_committed") == {
        0: ["done-0", "done-1", "keep-0"],
        1: ["keep-1"],
    }
    assert read_to_end(broker, topic, 2, "read_uncommitted") == {
        0: ["done-0", "done-1", "dead-0", "dead-1", "dead-2", "keep-0", "drop-0"],
        1: ["keep-1", "drop-1"],
    }


# ---------------------------------------------------------------- exactly once


EOS_RECORDS = 100_000
EOS_PARTITIONS = 4
EOS_KILL_AFTER = 30_000
# Until the output must be complete, in seconds from the start (under the test's timeout).
EOS_BUDGET_S = 130.0


def describe_difference(partition: int, got: list[str], expected: list[str]) -> str:
    """A short account of how one output partition differs from what exactly once means."""
    seen: set[str] = set()
    duplicates = [v for v in got if v in seen or seen.add(v)]
    missing = sorted(set(expected) - set(got), key=lambda v: int(v[4:]))
    out_of_order = next(
        (f"{a} before {b}" for a, b in zip(got, got[1:]) if int(a[4:]) > int(b[4:])),
        None,
    )
    return (
        f"partition {partition}: {len(got)} records, expected {len(expected)}; "
        f"duplicates {len(duplicates)} {duplicates[:5]}; missing {len(missing)} {missing[:5]}; "
        f"first out of order: {out_of_order}"
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_exactly_once_processing_survives_a_sigkill_mid_transaction(broker_factory, topic_name):
    """Exactly-once consume-transform-produce with confluent-kafka over 100,000 records in 4
    partitions. A worker process (read_committed group member, transactional producer, one
    transaction per batch of up to 2000 records holding the output and the input offsets)
    processes at least 30,000 records, then flushes the output of its next batch and sends its
    offsets but is SIGKILLed before committing. A new worker with the same transactional.id and
    group.id fences the old one (aborting its transaction: records and offsets), resumes from
    the committed offsets and finishes. read_committed output holds every input value exactly
    once, in input order per partition, and the group's committed offsets are at the end of
    the input; read_uncommitted also sees the aborted duplicates."""
    broker = broker_factory(GROUP_SETTINGS)
    source, sink, group = topic_name("in"), topic_name("out"), unique("g")
    create_topic(broker, source, partitions=EOS_PARTITIONS)
    create_topic(broker, sink, partitions=EOS_PARTITIONS)
    started = time.monotonic()

    prefill = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2 * EOS_RECORDS,
        }
    )
    for n in range(EOS_RECORDS):
        prefill.produce(source, value=str(n).encode(), partition=n % EOS_PARTITIONS)
    assert prefill.flush(60) == 0
    prefilled_s = time.monotonic() - started

    reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "strom-pytest-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    reader.assign([TopicPartition(sink, p, OFFSET_BEGINNING) for p in range(EOS_PARTITIONS)])
    output: dict[int, list[str]] = {p: [] for p in range(EOS_PARTITIONS)}

    def read_output() -> int:
        for message in reader.consume(num_messages=10000, timeout=0.2):
            assert message.error() is None, message.error()
            output[message.partition()].append(message.value().decode())
        return sum(map(len, output.values()))

    transactional_id = unique("eos")
    arguments = ("eos", broker.bootstrap, source, sink, group, transactional_id)
    first = Worker(*arguments, str(EOS_KILL_AFTER))
    second = None
    try:
        first.wait_for("stalled", EOS_BUDGET_S / 2)
        # The reader gets exactly what the worker committed: the open transaction holds it.
        last_commit = int(
            [line for line in first.lines if line.startswith("committed ")][-1].split()[1]
        )
        assert last_commit >= EOS_KILL_AFTER
        wait_until(
            lambda: read_output() >= last_commit, DEFAULT_WAIT_S, f"{last_commit} committed outputs"
        )
        assert read_output() == last_commit
        first.kill()
        killed_s = time.monotonic() - started

        second = Worker(*arguments, "0")
        wait_until(
            lambda: read_output() >= EOS_RECORDS,
            max(EOS_BUDGET_S - (time.monotonic() - started), 10),
            lambda: f"{EOS_RECORDS} outputs, have {sum(map(len, output.values()))}; "
            f"second worker:\n{second.output()}",
        )
        finished_s = time.monotonic() - started
        # Idle: no input is left, so it has no transaction open when killed.
        second.kill()
    finally:
        reader.close()
        first.kill()
        if second is not None:
            second.kill()

    print(f"prefilled {prefilled_s:.1f}s, killed {killed_s:.1f}s, finished {finished_s:.1f}s")
    for p in range(EOS_PARTITIONS):
        expected = [f"out-{n}" for n in range(p, EOS_RECORDS, EOS_PARTITIONS)]
        assert output[p] == expected, describe_difference(p, output[p], expected)
    # A fresh reader agrees, reading up to the last stable offset.
    assert read_to_end(broker, sink, EOS_PARTITIONS, "read_committed") == output
    # The aborted transaction's records are in the log, and read_uncommitted sees them.
    everything = read_to_end(broker, sink, EOS_PARTITIONS, "read_uncommitted")
    assert sum(map(len, everything.values())) > EOS_RECORDS
    offsets = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
        }
    )
    try:
        committed = offsets.committed(
            [TopicPartition(source, p) for p in range(EOS_PARTITIONS)], timeout=CALL_TIMEOUT_S
        )
    finally:
        offsets.close()
    assert [tp.offset for tp in committed] == [EOS_RECORDS // EOS_PARTITIONS] * EOS_PARTITIONS
