"""Behaviour at the edges, driven with confluent-kafka (and kafka-python where its handling
differs): empty versus null, record size limits, LogAppendTime, long polling, out-of-range
fetches, retention, topic re-creation, the idempotent producer across a broker restart, and a
transactional producer asking for a timeout above the broker's maximum.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaTimeoutError

from support import DEFAULT_WAIT_S, wait_until
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


def test_empty_and_null_keys_values_headers(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    records = [
        {"key": b"", "value": b""},
        {"key": None, "value": None},
        {"key": b"k", "value": b"", "headers": [("empty", b""), ("null", None)]},
        {"key": bytes(range(256)), "value": bytes(range(255, -1, -1))},
    ]
    produce_all(producer(broker), topic, records)
    got = read_from_beginning(broker, topic, len(records))
    assert (got[0].key(), got[0].value()) == (b"", b"")
    assert (got[1].key(), got[1].value()) == (None, None)
    assert got[2].value() == b""
    assert got[2].headers() == [("empty", b""), ("null", None)]
    assert (got[3].key(), got[3].value()) == (bytes(range(256)), bytes(range(255, -1, -1)))

    # kafka-python decodes the same bytes on its own.
    consumer_kp = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = KpTopicPartition(topic, 0)
        consumer_kp.assign([tp])
        consumer_kp.seek_to_beginning()
        seen: list = []
        wait_until(
            lambda: seen.extend(consumer_kp.poll(timeout_ms=200).get(tp, [])) or len(seen) >= 4,
            DEFAULT_WAIT_S,
            "4 records via kafka-python",
        )
        assert [(r.key, r.value) for r in seen[:2]] == [(b"", b""), (None, None)]
        assert seen[2].headers == [("empty", b""), ("null", None)]
    finally:
        consumer_kp.close()


def test_record_larger_than_topic_max_message_bytes_is_refused(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, config={"max.message.bytes": "2000"})
    p = producer(broker)
    errors: list = []
    p.produce(topic, value=b"x" * 10_000, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(DEFAULT_WAIT_S) == 0
    assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    # A record that fits still goes in, at offset 0: the refused one took no offset.
    delivered = produce_all(p, topic, [{"value": b"small"}])
    assert delivered[0].offset() == 0


def test_max_message_bytes_applies_to_the_compressed_batch(broker, topic_name):
    """Kafka compares max.message.bytes with the batch as sent, so a batch whose records add
    up to ten times the limit is accepted when it compresses below it."""
    topic = topic_name()
    create_topic(broker, topic, config={"max.message.bytes": "10000"})
    records = [{"value": b"x" * 1000} for _ in range(100)]
    produce_all(producer(broker, compression_type="zstd", linger_ms=200), topic, records)
    assert broker.partition_log_bytes(topic, 0) < 10_000
    assert len(read_from_beginning(broker, topic, 100)) == 100


@pytest.mark.parametrize("size", [100_000, 900_000])
def test_large_records_round_trip(broker, topic_name, size):
    topic = topic_name()
    create_topic(broker, topic)
    values = [bytes([i]) * size for i in range(3)]
    produce_all(producer(broker), topic, [{"value": v} for v in values])
    assert [m.value() for m in read_from_beginning(broker, topic, 3)] == values

    kp = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = KpTopicPartition(topic, 0)
        kp.assign([tp])
        kp.seek_to_beginning()
        seen: list = []
        wait_until(
            lambda: seen.extend(kp.poll(timeout_ms=200).get(tp, [])) or len(seen) >= 3,
            DEFAULT_WAIT_S,
            "3 large records via kafka-python",
        )
        assert [r.value for r in seen] == values
    finally:
        kp.close()


def test_fetch_returns_a_record_larger_than_fetch_limits(broker, topic_name):
    """KIP-74: a fetch returns at least one batch even when it exceeds the limits asked for."""
    topic = topic_name()
    create_topic(broker, topic)
    value = b"y" * 200_000
    produce_all(producer(broker), topic, [{"value": value}, {"value": b"after"}])
    limits = {"fetch.max.bytes": 1024, "max.partition.fetch.bytes": 1024, "message.max.bytes": 1000}
    c = consumer(broker, **limits)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = consume_n(c, 2)
    finally:
        c.close()
    assert [m.value() for m in got] == [value, b"after"]


def test_log_append_time_replaces_producer_timestamps(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, config={"message.timestamp.type": "LogAppendTime"})
    old_ms = int(time.time() * 1000) - 3_600_000
    before_ms = int(time.time() * 1000)
    delivered = produce_all(producer(broker), topic, [{"value": b"a", "timestamp": old_ms}])
    after_ms = int(time.time() * 1000)
    [msg] = read_from_beginning(broker, topic, 1)
    kind, timestamp = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before_ms - 1000 <= timestamp <= after_ms + 1000
    # The produce response carries the broker's time too (KIP-32).
    assert delivered[0].timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME


def test_long_poll_wakes_up_when_a_record_arrives(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    c = consumer(broker, **{"fetch.wait.max.ms": 10_000, "fetch.min.bytes": 1})
    p = producer(broker, linger_ms=0)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # Let the consumer get its first (empty) long-poll fetch in flight.
        assert c.consume(num_messages=1, timeout=1.0) == []
        sent_at = time.monotonic()
        produce_all(p, topic, [{"value": b"wake"}])
        [msg] = consume_n(c, 1, timeout_s=DEFAULT_WAIT_S)
        latency_s = time.monotonic() - sent_at
    finally:
        c.close()
    assert msg.value() == b"wake"
    # Far below fetch.wait.max.ms: the fetch was answered when the record arrived.
    assert latency_s < 5.0, f"record took {latency_s:.2f}s to arrive"


def test_fetch_out_of_range_resets_or_errors(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    produce_all(producer(broker), topic, [{"value": str(i).encode()} for i in range(5)])

    c = consumer(broker, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 100)])
        assert [m.offset() for m in consume_n(c, 5)] == [0, 1, 2, 3, 4]
    finally:
        c.close()

    c = consumer(broker, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 100)])

        def out_of_range_error():
            for msg in c.consume(num_messages=10, timeout=0.2):
                assert msg.error(), f"unexpected record at offset {msg.offset()}"
                return msg.error().code() == KafkaError._AUTO_OFFSET_RESET
            return False

        wait_until(out_of_range_error, DEFAULT_WAIT_S, "an offset-out-of-range error")
    finally:
        c.close()


def test_delete_records_beyond_high_watermark_is_refused(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    produce_all(producer(broker), topic, [{"value": b"x"}] * 3)
    a = admin(broker)
    tp = TopicPartition(topic, 0, 10)
    with pytest.raises(KafkaException) as refused:
        a.delete_records([tp], operation_timeout=10)[tp].result(ADMIN_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE


def test_create_topic_validate_only_creates_nothing(broker, topic_name):
    topic = topic_name()
    a = admin(broker)
    futures = a.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1)], validate_only=True
    )
    futures[topic].result(ADMIN_TIMEOUT_S)
    assert topic not in a.list_topics(timeout=10).topics


def test_recreated_topic_starts_empty(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, partitions=3)
    produce_all(producer(broker), topic, [{"value": b"old", "partition": 2}])
    a = admin(broker)
    a.delete_topics([topic], operation_timeout=10)[topic].result(ADMIN_TIMEOUT_S)
    wait_until(lambda: topic not in a.list_topics(timeout=10).topics, DEFAULT_WAIT_S, "deleted")

    create_topic(broker, topic, partitions=1)
    metadata = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(metadata.partitions) == [0]
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    finally:
        c.close()
    delivered = produce_all(producer(broker), topic, [{"value": b"new"}])
    assert delivered[0].offset() == 0


def test_many_partitions(broker, topic_name):
    topic = topic_name()
    partitions = 32
    create_topic(broker, topic, partitions=partitions)
    records = [{"value": f"{p}".encode(), "partition": p} for p in range(partitions)] * 5
    produce_all(producer(broker), topic, records)
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got = consume_n(c, len(records))
    finally:
        c.close()
    for p in range(partitions):
        mine = [m for m in got if m.partition() == p]
        assert [m.offset() for m in mine] == [0, 1, 2, 3, 4]
        assert {m.value() for m in mine} == {f"{p}".encode()}


def wait_for_log_start_above_zero(c, topic: str) -> tuple[int, int]:
    """Polls partition 0's watermarks until retention has moved its log start offset."""
    seen: list = []

    def moved():
        watermarks = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        seen.append(watermarks)
        return watermarks[0] > 0 and watermarks

    return wait_until(
        moved,
        DEFAULT_WAIT_S,
        lambda: f"retention to move the log start offset (last watermarks: {seen[-1:]})",
    )


def test_retention_deletes_old_segments(broker_factory, topic_name):
    b = broker_factory({"log.retention.check.interval.ms": 200})
    topic = topic_name()
    create_topic(
        b, topic, config={"retention.ms": "60000", "segment.bytes": "1024", "segment.ms": "60000"}
    )
    old_ms = int(time.time() * 1000) - 3_600_000
    # Old records across several small segments, then a current one that must stay.
    produce_all(
        producer(b),
        topic,
        [{"value": b"o" * 300, "timestamp": old_ms + i} for i in range(20)],
    )
    produce_all(producer(b), topic, [{"value": b"fresh"}])
    c = consumer(b)
    try:
        low, high = wait_for_log_start_above_zero(c, topic)
    finally:
        c.close()
    assert high == 21 and 0 < low <= 20
    got = read_from_beginning(b, topic, high - low)
    assert got[-1].value() == b"fresh" and got[-1].offset() == 20
    assert got[0].offset() == low


@pytest.mark.slow
def test_idempotent_producer_continues_across_restart(broker_factory, topic_name):
    b = broker_factory()
    topic = topic_name()
    create_topic(b, topic)
    p = producer(b, enable_idempotence=True)
    produce_all(p, topic, [{"value": str(i).encode()} for i in range(100)])
    b.restart()
    # The same producer (same producer id, sequence 100 next) goes on after the restart.
    delivered = produce_all(p, topic, [{"value": str(i).encode()} for i in range(100, 200)])
    assert [m.offset() for m in delivered] == list(range(100, 200))
    got = read_from_beginning(b, topic, 200)
    assert [int(m.value()) for m in got] == list(range(200))


def test_kafka_python_producer_to_missing_topic_with_auto_create_off(broker_factory, topic_name):
    b = broker_factory({"auto.create.topics.enable": "false"})
    topic = topic_name()
    kp = KafkaProducer(bootstrap_servers=b.bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            kp.send(topic, b"x").get(10)
    finally:
        kp.close(timeout=5)
    assert topic not in admin(b).list_topics(timeout=10).topics


def test_consumer_assigned_at_end_reads_nothing_old(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    produce_all(producer(broker), topic, [{"value": b"old"}] * 3)
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        assert [m for m in c.consume(num_messages=10, timeout=1.0) if not m.error()] == []
    finally:
        c.close()


def test_sigterm_with_clients_connected_and_long_polling(broker_factory, topic_name):
    """Graceful shutdown does not wait for clients to hang up or for long polls to expire."""
    b = broker_factory()
    topic = topic_name()
    create_topic(b, topic)
    p = producer(b)
    produce_all(p, topic, [{"value": b"x"}])
    c = consumer(b, **{"fetch.wait.max.ms": 30_000})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        consume_n(c, 1)  # now the consumer long-polls at the end of the log
        assert c.consume(num_messages=1, timeout=0.5) == []
        started = time.monotonic()
        code = b.stop()
        elapsed_s = time.monotonic() - started
    finally:
        c.close()
    assert code == 0, f"exit code {code} (negative: killed after ignoring SIGTERM)"
    # Well under the broker's 10 s drain limit: parked fetches end at shutdown.
    assert elapsed_s < 5.0, f"shutdown took {elapsed_s:.1f}s"


def test_advertised_listeners_property_is_what_metadata_returns(broker_factory):
    b = broker_factory({"advertised.listeners": "PLAINTEXT://localhost:{port}"})
    brokers = admin(b).list_topics(timeout=10).brokers
    assert [(m.id, m.host, m.port) for m in brokers.values()] == [(1, "localhost", b.port)]


@pytest.mark.slow
def test_clients_ride_through_a_restart(broker_factory, topic_name):
    """A consumer and a producer that stay open across a broker restart carry on: the
    consumer neither skips nor repeats records."""
    b = broker_factory()
    topic = topic_name()
    create_topic(b, topic)
    p = producer(b, acks="all")
    c = consumer(b)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        produce_all(p, topic, [{"value": str(i).encode()} for i in range(50)])
        first = consume_n(c, 50)
        b.restart()
        produce_all(p, topic, [{"value": str(i).encode()} for i in range(50, 100)])
        second = consume_n(c, 50)
    finally:
        c.close()
    offsets = [m.offset() for m in first + second]
    assert offsets == list(range(100))
    assert [int(m.value()) for m in first + second] == list(range(100))


def test_compaction_keeps_latest_value_per_key(broker_factory, topic_name):
    b = broker_factory({"log.cleaner.backoff.ms": 200})
    topic = topic_name()
    create_topic(
        b,
        topic,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "2048",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    keys = [f"key{k}".encode() for k in range(5)]
    records = [
        {"key": keys[i % 5], "value": f"{i:04d}".encode() + b"." * 200} for i in range(200)
    ]
    records.append({"key": keys[0], "value": None})  # a tombstone for key0
    p = producer(b, linger_ms=0, batch_num_messages=1)
    produce_all(p, topic, records)
    written_bytes = b.partition_log_bytes(topic, 0)
    wait_until(
        lambda: b.partition_log_bytes(topic, 0) < written_bytes // 2,
        DEFAULT_WAIT_S,
        "the cleaner to shrink the log",
    )
    c = consumer(b)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    assert high == len(records), "compaction never changes the end offset"
    c = consumer(b, **{"enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got: list = []

        def at_end() -> bool:
            for msg in c.consume(num_messages=500, timeout=0.2):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        return True
                    raise AssertionError(msg.error())
                got.append(msg)
            return False

        wait_until(at_end, DEFAULT_WAIT_S, "the end of the compacted log")
    finally:
        c.close()
    offsets = [m.offset() for m in got]
    assert offsets == sorted(set(offsets)), "offsets must stay strictly increasing"
    assert len(got) < len(records)
    latest = {}
    for m in got:
        latest[m.key()] = m.value()
    for k in range(1, 5):
        expected = max(i for i in range(200) if i % 5 == k)
        assert latest[keys[k]].startswith(f"{expected:04d}".encode()), f"key{k}"
    # key0's last write is a tombstone (kept until delete.retention.ms passes).
    assert latest.get(keys[0]) is None


def test_acks_all_refused_below_min_insync_replicas(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic, config={"min.insync.replicas": "2"})
    # acks=1 does not consult min.insync.replicas.
    assert produce_all(producer(broker, acks="1"), topic, [{"value": b"one"}])[0].offset() == 0
    # NOT_ENOUGH_REPLICAS is retriable: without retries=0 librdkafka would retry until the
    # message times out and report that instead.
    p = producer(broker, acks="all", message_timeout_ms=5000, retries=0, enable_idempotence=False)
    errors: list = []
    p.produce(topic, value=b"all", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(DEFAULT_WAIT_S) == 0
    assert [e.code() if e else None for e in errors] == [KafkaError.NOT_ENOUGH_REPLICAS]


def test_retention_bytes_deletes_oldest_segments(broker_factory, topic_name):
    b = broker_factory({"log.retention.check.interval.ms": 200})
    topic = topic_name()
    create_topic(b, topic, config={"retention.bytes": "4096", "segment.bytes": "1024"})
    produce_all(
        producer(b, linger_ms=0, batch_num_messages=1),
        topic,
        [{"value": str(i).encode() + b"." * 300} for i in range(40)],
    )
    c = consumer(b)
    try:
        low, high = wait_for_log_start_above_zero(c, topic)
    finally:
        c.close()
    assert high == 40
    # Retention runs every 200 ms, and a pass during the produce leaves more for the next one,
    # so the log start may move again before this read: read from wherever it is then.
    c = consumer(b)
    got: list = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

        def at_end() -> bool:
            for msg in c.consume(num_messages=high, timeout=0.2):
                if not msg.error():
                    got.append(msg)
            return bool(got) and got[-1].offset() == high - 1

        wait_until(at_end, DEFAULT_WAIT_S, lambda: f"the last record (have {len(got)})")
    finally:
        c.close()
    offsets = [m.offset() for m in got]
    assert offsets[0] >= low, offsets
    assert offsets == list(range(offsets[0], 40))
    # What is left fits the limit give or take the active segment.
    assert b.partition_log_bytes(topic, 0) <= 4096 + 2048


def test_transactional_producer_with_a_timeout_above_the_maximum_fails_fast(broker_factory):
    """A transaction.timeout.ms above the broker's transaction.max.timeout.ms: librdkafka's
    init_transactions must fail quickly and cleanly with INVALID_TRANSACTION_TIMEOUT, a fatal
    error, not hang retrying; a producer asking for exactly the maximum is accepted."""
    limited = broker_factory({"transaction.max.timeout.ms": 20000})

    def transactional(timeout_ms: int) -> Producer:
        return Producer(
            {
                "bootstrap.servers": limited.bootstrap,
                "transactional.id": f"strom-pytest-{timeout_ms}",
                "transaction.timeout.ms": timeout_ms,
            }
        )

    started = time.monotonic()
    with pytest.raises(KafkaException) as failed:
        transactional(20001).init_transactions(20)
    assert failed.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT
    assert failed.value.args[0].fatal()
    assert time.monotonic() - started < 10
    transactional(20000).init_transactions(20)


def test_many_acks_zero_produces_interleaved_with_other_requests(broker, topic_name):
    """acks=0 produce requests get no response; a broker that answered them anyway would
    desynchronise the client's correlation ids on the same connection."""
    topic = topic_name()
    create_topic(broker, topic, partitions=2)
    p = producer(broker, acks="0", linger_ms=0, batch_num_messages=10)
    records = [{"value": str(i).encode(), "partition": i % 2} for i in range(3000)]
    for start in range(0, len(records), 500):
        produce_all(p, topic, records[start : start + 500])
        # A request that does get a response, on the same producer connection.
        assert topic in p.list_topics(topic, timeout=10).topics
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in (0, 1)])
        got = consume_n(c, len(records))
    finally:
        c.close()
    assert sorted(int(m.value()) for m in got) == list(range(3000))
