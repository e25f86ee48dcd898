"""Transactional client processes for test_transactions.py, run as `python3 txn_worker.py MODE ...`
so a test can SIGKILL them at a point it chooses. Each prints one line per step it reaches
(flushed at once), which the test waits for; nothing here decides whether a test passes.

Modes:
- `dangle BOOTSTRAP TOPIC TRANSACTIONAL_ID TIMEOUT_MS COUNT`: opens a transaction with
  transaction.timeout.ms=TIMEOUT_MS, writes COUNT records ("dead-<i>") to partition 0,
  flushes them into the log, prints "flushed", and then waits to be killed without ever ending
  the transaction.
- `eos BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID STALL_AFTER`: consume-transform-produce
  with exactly-once semantics: a read_committed group member reads INPUT in batches; each
  batch becomes one transaction holding a record "out-<value>" per input record (same key,
  same partition number in OUTPUT) and the consumer's next offsets (send_offsets_to_transaction).
  With STALL_AFTER > 0, once at least that many records are committed, the next transaction
  is left open after its records are flushed and its offsets sent, and the process prints
  "stalled" and waits to be killed.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

# Bounds on the client calls that wait for the broker, in seconds.
CALL_TIMEOUT_S = 30.0
BATCH_RECORDS_MAX = 2000


def say(*words) -> None:
    print(*words, flush=True)


def wait_forever() -> None:
    # The parent kills this process; reading stdin (a pipe nobody writes) also ends if the
    # parent dies first and its end of the pipe closes.
    sys.stdin.read()
    sys.exit(3)


def dangle(bootstrap: str, topic: str, transactional_id: str, timeout_ms: str, count: str) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": int(timeout_ms),
            "linger.ms": 5,
        }
    )
    producer.init_transactions(CALL_TIMEOUT_S)
    # Wall-clock time (shared with the parent) before the transaction can have started on the
    # broker: it starts with the AddPartitionsToTxn sent for the first record below.
    say("begin", repr(time.time()))
    producer.begin_transaction()
    for i in range(int(count)):
        producer.produce(topic, value=f"dead-{i}".encode(), partition=0)
    remaining = producer.flush(CALL_TIMEOUT_S)
    if remaining:
        say("unflushed", remaining)
        sys.exit(2)
    say("flushed")
    wait_forever()


def eos(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    group: str,
    transactional_id: str,
    stall_after: str,
) -> None:
    stall_after_records = int(stall_after)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 20,
            "batch.num.messages": BATCH_RECORDS_MAX,
        }
    )
    # Fences any earlier process with this transactional id and aborts its open transaction
    # (records and offsets) before this one reads committed offsets.
    producer.init_transactions(CALL_TIMEOUT_S)
    say("initialised")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([input_topic])
    committed = 0
    while True:
        messages = consumer.consume(num_messages=BATCH_RECORDS_MAX, timeout=0.5)
        batch = []
        for message in messages:
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                say("consumer-error", message.error())
                sys.exit(2)
            batch.append(message)
        if not batch:
            continue
        stall = 0 < stall_after_records <= committed
        try:
            transact(producer, consumer, output_topic, batch, stall)
        except KafkaException as error:
            kafka_error = error.args[0]
            if kafka_error.txn_requires_abort():
                # librdkafka's advice: abort, then rewind the consumer to its committed
                # offsets so the batch is processed again in a new transaction.
                say("aborting", kafka_error)
                producer.abort_transaction(CALL_TIMEOUT_S)
                rewind(consumer)
                continue
            say("fatal", kafka_error)
            sys.exit(2)
        committed += len(batch)
        say("committed", committed)


def transact(
    producer: Producer, consumer: Consumer, output_topic: str, batch: list, stall: bool
) -> None:
    producer.begin_transaction()
    next_offsets: dict[tuple[str, int], int] = {}
    for message in batch:
        produce(producer, output_topic, message)
        next_offsets[(message.topic(), message.partition())] = message.offset() + 1
    offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(next_offsets.items())]
    if stall:
        if producer.flush(CALL_TIMEOUT_S):
            say("unflushed")
            sys.exit(2)
    producer.send_offsets_to_transaction(
        offsets, consumer.consumer_group_metadata(), CALL_TIMEOUT_S
    )
    if stall:
        say("stalled")
        wait_forever()
    commit(producer)


def produce(producer: Producer, topic: str, message) -> None:
    value = b"out-" + message.value()
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while True:
        try:
            producer.produce(topic, key=message.key(), value=value, partition=message.partition())
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise
            producer.poll(0.05)


def commit(producer: Producer) -> None:
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while True:
        try:
            producer.commit_transaction(CALL_TIMEOUT_S)
            return
        except KafkaException as error:
            if not error.args[0].retriable() or time.monotonic() > deadline:
                raise


def rewind(consumer: Consumer) -> None:
    assignment = consumer.assignment()
    for position in consumer.committed(assignment, CALL_TIMEOUT_S):
        if position.offset < 0:
            # Nothing committed yet: start from the beginning, as auto.offset.reset says.
            position.offset = -2
        consumer.seek(position)


if __name__ == "__main__":
    mode, arguments = sys.argv[1], sys.argv[2:]
    {"dangle": dangle, "eos": eos}[mode](*arguments)
