"""All four clients write one partition at the same time, then each reads it back: every
client must see the same log (offsets, keys, values), with each writer's records in order."""

from __future__ import annotations

import asyncio
import threading

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from confluent_clients import consume_n, consumer, create_topic, produce_all, producer
from support import DEFAULT_WAIT_S, wait_until
from test_kcat import KCAT, kcat

RECORDS_PER_WRITER = 100


def test_concurrent_writers_and_identical_reads(broker, topic_name):
    topic = topic_name()
    create_topic(broker, topic)
    values = {w: [f"{w}-{i}" for i in range(RECORDS_PER_WRITER)] for w in "ckat"}

    def write_confluent():
        records = [{"key": b"c", "value": v.encode()} for v in values["c"]]
        produce_all(producer(broker, linger_ms=1), topic, records)

    def write_kafka_python():
        kp = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
        try:
            futures = [kp.send(topic, key=b"k", value=v.encode()) for v in values["k"]]
            kp.flush(DEFAULT_WAIT_S)
            for future in futures:
                future.get(DEFAULT_WAIT_S)
        finally:
            kp.close()

    def write_aiokafka():
        async def run():
            ap = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
            await ap.start()
            try:
                futures = [await ap.send(topic, key=b"a", value=v.encode()) for v in values["a"]]
                await asyncio.gather(*futures)
            finally:
                await ap.stop()

        asyncio.run(asyncio.wait_for(run(), DEFAULT_WAIT_S))

    def write_kcat():
        lines = "".join(f"t:{v}\n" for v in values["t"])
        kcat(broker, "-P", "-t", topic, "-K:", "-X", "linger.ms=1", stdin=lines)

    writers = [write_confluent, write_kafka_python, write_aiokafka]
    if KCAT is not None:
        writers.append(write_kcat)
    else:
        del values["t"]
    failures: list = []

    def guarded(write):
        try:
            write()
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append((write.__name__, error))

    threads = [threading.Thread(target=guarded, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEFAULT_WAIT_S * 2)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert not failures, failures
    total = RECORDS_PER_WRITER * len(values)

    views = {"confluent": read_confluent(broker, topic, total)}
    views["kafka-python"] = read_kafka_python(broker, topic, total)
    views["aiokafka"] = asyncio.run(asyncio.wait_for(read_aiokafka(broker, topic, total), 60))
    if KCAT is not None:
        out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o %k %s\n")
        views["kcat"] = [tuple(line.split(" ")) for line in out.splitlines()]
        views["kcat"] = [(int(o), k, v) for o, k, v in views["kcat"]]

    reference = views["confluent"]
    assert [offset for offset, _, _ in reference] == list(range(total))
    for name, view in views.items():
        assert view == reference, f"{name} sees a different log"
    for writer, expected in values.items():
        assert [v for _, k, v in reference if k == writer] == expected, f"{writer} out of order"


def read_confluent(broker, topic, total):
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return [(m.offset(), m.key().decode(), m.value().decode()) for m in consume_n(c, total)]
    finally:
        c.close()


def read_kafka_python(broker, topic, total):
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = KpTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek_to_beginning()
        got: list = []
        wait_until(
            lambda: got.extend(kc.poll(timeout_ms=200).get(tp, [])) or len(got) >= total,
            DEFAULT_WAIT_S,
            "kafka-python read",
        )
        return [(r.offset, r.key.decode(), r.value.decode()) for r in got]
    finally:
        kc.close()


async def read_aiokafka(broker, topic, total):
    ac = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    await ac.start()
    try:
        tp = AioTopicPartition(topic, 0)
        ac.assign([tp])
        await ac.seek_to_beginning(tp)
        got: list = []
        while len(got) < total:
            batch = await ac.getmany(tp, timeout_ms=200)
            got.extend(batch.get(tp, []))
        return [(r.offset, r.key.decode(), r.value.decode()) for r in got]
    finally:
        await ac.stop()


def test_every_client_reads_from_the_middle_of_a_compressed_batch(broker, topic_name):
    """The broker returns whole batches; a fetch from offset 37 of a 100-record batch must still
    yield exactly records 37 onwards in every client."""
    topic = topic_name()
    create_topic(broker, topic)
    records = [{"key": b"m", "value": f"{i}".encode()} for i in range(100)]
    # One zstd batch: linger long enough that all 100 records share it.
    zstd_producer = producer(broker, compression_type="zstd", linger_ms=500)
    delivered = produce_all(zstd_producer, topic, records)
    assert len(delivered) == 100
    expected = [(i, "m", str(i)) for i in range(37, 100)]

    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, 37)])
        got = [(m.offset(), m.key().decode(), m.value().decode()) for m in consume_n(c, 63)]
    finally:
        c.close()
    assert got == expected, "confluent-kafka"

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = KpTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 37)
        seen: list = []
        wait_until(
            lambda: seen.extend(kc.poll(timeout_ms=200).get(tp, [])) or len(seen) >= 63,
            DEFAULT_WAIT_S,
            "kafka-python read",
        )
        assert [(r.offset, r.key.decode(), r.value.decode()) for r in seen] == expected
    finally:
        kc.close()

    async def aiokafka_read():
        ac = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        await ac.start()
        try:
            tp = AioTopicPartition(topic, 0)
            ac.assign([tp])
            ac.seek(tp, 37)
            seen: list = []
            while len(seen) < 63:
                seen.extend((await ac.getmany(tp, timeout_ms=200)).get(tp, []))
            return [(r.offset, r.key.decode(), r.value.decode()) for r in seen]
        finally:
            await ac.stop()

    assert asyncio.run(asyncio.wait_for(aiokafka_read(), 60)) == expected, "aiokafka"

    if KCAT is not None:
        out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "37", "-e", "-q", "-f", "%o %k %s\n")
        assert [tuple(line.split(" ")) for line in out.splitlines()] == [
            (str(o), k, v) for o, k, v in expected
        ], "kcat"
