"""confluent-kafka helpers shared by the test modules: clients configured for Strom (manual
assignment, no commits) and produce/consume loops that wait on conditions with deadlines."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import DEFAULT_WAIT_S, wait_until

ADMIN_TIMEOUT_S = 20.0


def producer(broker, **config) -> Producer:
    base = {"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "message.timeout.ms": 20000}
    base.update({k.replace("_", "."): v for k, v in config.items()})
    return Producer(base)


def consumer(broker, **config) -> Consumer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        # librdkafka needs a group.id for Consumer, but nothing here joins or commits.
        "group.id": "strom-pytest-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    base.update(config)
    return Consumer(base)


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def produce_all(p: Producer, topic: str, records: list[dict]) -> list:
    """Produces `records` (kwargs for Producer.produce) and returns their delivered messages."""
    delivered: list = []
    errors: list = []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    for record in records:
        p.produce(topic, on_delivery=on_delivery, **record)
    remaining = p.flush(DEFAULT_WAIT_S)
    assert remaining == 0, f"{remaining} messages not delivered within {DEFAULT_WAIT_S}s"
    assert not errors, f"delivery errors: {errors}"
    assert len(delivered) == len(records)
    return delivered


def consume_n(c: Consumer, count: int, timeout_s: float = DEFAULT_WAIT_S) -> list:
    got: list = []

    def enough() -> bool:
        for msg in c.consume(num_messages=count - len(got), timeout=0.2):
            if msg.error():
                # End-of-partition is information, not an error.
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consumer error: {msg.error()}")
            else:
                got.append(msg)
        return len(got) >= count

    wait_until(enough, timeout_s, f"{count} messages (have {len(got)})")
    return got


def read_from_beginning(broker, topic: str, count: int, partition: int = 0) -> list:
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        return consume_n(c, count)
    finally:
        c.close()


def create_topic(broker, name: str, partitions: int = 1, config: dict | None = None) -> None:
    a = admin(broker)  # keep the client alive until the future resolves
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
    )
    futures[name].result(ADMIN_TIMEOUT_S)
