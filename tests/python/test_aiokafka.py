"""aiokafka (asyncio, protocol code derived from kafka-python's older releases) against Strom:
produce, consume, admin, compression, the idempotent producer and offsets by time.

Consumers here use `group_id=None` and manual assignment; groups are in test_groups.py.
Each test is a plain function running one coroutine under `asyncio.run` with a deadline.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from support import DEFAULT_WAIT_S

TEST_DEADLINE_S = 45.0
# DescribeConfigs config_source values (Kafka protocol).
CONFIG_SOURCE_DYNAMIC_TOPIC = 1
CONFIG_SOURCE_DEFAULT = 5


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TEST_DEADLINE_S))


class Clients:
    """Starts clients on demand and stops all of them on exit."""

    def __init__(self, broker):
        self.bootstrap = broker.bootstrap
        self.started: list = []

    async def __aenter__(self) -> "Clients":
        return self

    async def __aexit__(self, *exc) -> None:
        for client in reversed(self.started):
            if isinstance(client, AIOKafkaAdminClient):
                await client.close()
            else:
                await client.stop()

    async def admin(self) -> AIOKafkaAdminClient:
        client = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=20000)
        await client.start()
        self.started.append(client)
        return client

    async def producer(self, **config) -> AIOKafkaProducer:
        config = {"linger_ms": 5, **config}
        client = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **config)
        await client.start()
        self.started.append(client)
        return client

    async def consumer(self) -> AIOKafkaConsumer:
        client = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await client.start()
        self.started.append(client)
        return client

    async def create_topic(self, name: str, partitions: int = 1, configs=None) -> None:
        admin = await self.admin()
        response = await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=configs or {})]
        )
        assert [(t[0], t[1]) for t in response.topic_errors] == [(name, 0)]

    async def read(self, topic: str, count: int, partitions=(0,)) -> list:
        consumer = await self.consumer()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list = []
        deadline = time.monotonic() + DEFAULT_WAIT_S
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} records arrived"
            batches = await consumer.getmany(timeout_ms=200, max_records=count - len(got))
            for records in batches.values():
                got.extend(records)
        return got


async def send_all(producer: AIOKafkaProducer, topic: str, records: list[dict]) -> list:
    futures = [await producer.send(topic, **record) for record in records]
    return list(await asyncio.gather(*futures))


def test_produce_consume_keys_headers_null_value_in_order(broker, topic_name):
    topic = topic_name()

    async def scenario():
        async with Clients(broker) as clients:
            await clients.create_topic(topic)
            records = [
                {
                    "key": f"k{i}".encode(),
                    "value": f"v{i}".encode(),
                    "headers": [("n", str(i).encode())],
                }
                for i in range(50)
            ]
            records.append({"key": b"tombstone", "value": None})
            records.append({"key": None, "value": b"no key", "headers": [("a", b"1"), ("a", b"2")]})
            metadata = await send_all(await clients.producer(), topic, records)
            assert [m.offset for m in metadata] == list(range(len(records)))

            got = await clients.read(topic, len(records))
            assert [r.offset for r in got] == list(range(len(records)))
            for i, record in enumerate(got[:50]):
                assert (record.key, record.value) == (f"k{i}".encode(), f"v{i}".encode())
                assert list(record.headers) == [("n", str(i).encode())]
            assert got[50].key == b"tombstone" and got[50].value is None
            assert got[51].key is None and got[51].value == b"no key"
            assert list(got[51].headers) == [("a", b"1"), ("a", b"2")]

    run(scenario())


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks_levels(broker, topic_name, acks):
    topic = topic_name()

    async def scenario():
        async with Clients(broker) as clients:
            await clients.create_topic(topic)
            producer = await clients.producer(acks=acks)
            await send_all(producer, topic, [{"value": f"{acks}-{i}".encode()} for i in range(20)])
            got = await clients.read(topic, 20)
            assert [r.value for r in got] == [f"{acks}-{i}".encode() for i in range(20)]

    run(scenario())


def test_describe_broker_configs(broker):
    async def scenario():
        async with Clients(broker) as clients:
            admin = await clients.admin()
            resource = ConfigResource(ConfigResourceType.BROKER, "1")
            [response] = await admin.describe_configs([resource])
            [described] = response.to_object()["resources"]
            assert described["error_code"] == 0
            entries = {e["config_names"]: e["config_value"] for e in described["config_entries"]}
            assert entries["auto.create.topics.enable"] == "true"
            assert "num.partitions" in entries

    run(scenario())


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, topic_name, codec):
    topic = topic_name()
    records = [
        {"key": f"k{i}".encode(), "value": (f"{codec} record {i} " * 20).encode()}
        for i in range(200)
    ]

    async def scenario():
        async with Clients(broker) as clients:
            await clients.create_topic(topic)
            producer = await clients.producer(compression_type=codec, linger_ms=50)
            await send_all(producer, topic, records)
            got = await clients.read(topic, len(records))
            assert [(r.key, r.value) for r in got] == [(x["key"], x["value"]) for x in records]
            assert [r.offset for r in got] == list(range(len(records)))

    run(scenario())
    # The broker stores batches as sent: the bytes on disk show the client compressed.
    raw_bytes = sum(len(x["value"]) for x in records)
    assert broker.partition_log_bytes(topic, 0) < raw_bytes // 4, f"{codec} not applied"


def test_idempotent_producer(broker, topic_name):
    topic = topic_name()

    async def scenario():
        async with Clients(broker) as clients:
            await clients.create_topic(topic, partitions=2)
            producer = await clients.producer(enable_idempotence=True)
            records = [{"value": str(i).encode(), "partition": i % 2} for i in range(200)]
            metadata = await send_all(producer, topic, records)
            for partition in (0, 1):
                offsets = [m.offset for m in metadata if m.partition == partition]
                assert offsets == list(range(100))
            got = await clients.read(topic, 200, partitions=(0, 1))
            assert sorted(int(r.value) for r in got) == list(range(200))

    run(scenario())


def test_offsets_for_times_and_begin_end_offsets(broker, topic_name):
    topic = topic_name()
    base_ms = int(time.time() * 1000) - 60_000

    async def scenario():
        async with Clients(broker) as clients:
            await clients.create_topic(topic)
            records = [
                {"value": str(i).encode(), "timestamp_ms": base_ms + i * 1000} for i in range(10)
            ]
            await send_all(await clients.producer(), topic, records)
            consumer = await clients.consumer()
            tp = TopicPartition(topic, 0)
            assert await consumer.beginning_offsets([tp]) == {tp: 0}
            assert await consumer.end_offsets([tp]) == {tp: 10}
            found = (await consumer.offsets_for_times({tp: base_ms + 2500}))[tp]
            assert (found.offset, found.timestamp) == (3, base_ms + 3000)
            assert (await consumer.offsets_for_times({tp: base_ms + 3_600_000}))[tp] is None

            got = await clients.read(topic, 10)
            assert [r.timestamp for r in got] == [base_ms + i * 1000 for i in range(10)]

    run(scenario())


def test_admin_create_list_describe_alter_partition_delete(broker, topic_name):
    topic = topic_name()

    async def scenario():
        async with Clients(broker) as clients:
            admin = await clients.admin()
            await clients.create_topic(topic, partitions=2, configs={"retention.ms": "3600000"})
            assert topic in await admin.list_topics()

            resource = ConfigResource(ConfigResourceType.TOPIC, topic)

            async def configs() -> dict:
                [response] = await admin.describe_configs([resource])
                [described] = response.to_object()["resources"]
                assert described["error_code"] == 0
                return {
                    entry["config_names"]: (entry["config_value"], entry["config_source"])
                    for entry in described["config_entries"]
                }

            entries = await configs()
            assert entries["retention.ms"] == ("3600000", CONFIG_SOURCE_DYNAMIC_TOPIC)
            assert entries["cleanup.policy"] == ("delete", CONFIG_SOURCE_DEFAULT)

            # aiokafka sends the legacy AlterConfigs, which replaces the topic's whole set.
            [altered] = await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.bytes": "1048576"})]
            )
            assert [r["error_code"] for r in altered.to_object()["resources"]] == [0]
            entries = await configs()
            assert entries["retention.bytes"] == ("1048576", CONFIG_SOURCE_DYNAMIC_TOPIC)
            assert entries["retention.ms"][1] == CONFIG_SOURCE_DEFAULT

            await admin.create_partitions({topic: NewPartitions(3)})
            [described] = await admin.describe_topics([topic])
            assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
            assert all(p["leader"] == 1 for p in described["partitions"])

            # aiokafka returns per-topic errors instead of raising them.
            response = await admin.create_topics([NewTopic(topic, 1, 1)])
            [(_, code, *_)] = response.topic_errors
            assert for_code(code) is TopicAlreadyExistsError

            response = await admin.delete_topics([topic])
            assert list(response.topic_error_codes) == [(topic, 0)]
            assert topic not in await admin.list_topics()

    run(scenario())


def test_admin_delete_records_and_describe_cluster(broker, topic_name):
    topic = topic_name()

    async def scenario():
        async with Clients(broker) as clients:
            admin = await clients.admin()
            await clients.create_topic(topic)
            await send_all(
                await clients.producer(), topic, [{"value": str(i).encode()} for i in range(10)]
            )
            tp = TopicPartition(topic, 0)
            assert await admin.delete_records({tp: RecordsToDelete(7)}) == {tp: 7}
            assert [r.offset for r in await clients.read(topic, 3)] == [7, 8, 9]

            cluster = await admin.describe_cluster()
            assert cluster["controller_id"] == 1
            assert [(b["node_id"], b["port"]) for b in cluster["brokers"]] == [(1, broker.port)]

    run(scenario())
