#!/usr/bin/env python3
"""Writes crates/strom/tests/fixtures/single-node-data.tar.gz: a data directory of the
single-node broker Strom was before `strom server` became a one-node cluster (commit 35451bc),
which the adoption test opens with today's binary.

Usage: build that commit's binary (`git worktree add /tmp/single 35451bc && cd /tmp/single &&
cargo build -p strom`), then `scripts/make-single-node-fixture.py /tmp/single/target/debug/strom`.

What it holds: topic `kept` (3 partitions, retention.ms=123456789) with five idempotent
records per partition (`plain-P-I`), one committed transaction (`committed-P` in every
partition) and one aborted one (`aborted-P`) of transactional id `kept-txn`, and group
`kept-readers` with offsets 3, 4, 5 committed for partitions 0, 1, 2.
"""
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC, PARTITIONS, GROUP, TXN = "kept", 3, "kept-readers", "kept-txn"
DEADLINE_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(binary: str) -> None:
    out = os.path.join(os.path.dirname(__file__), "..", "crates/strom/tests/fixtures/single-node-data.tar.gz")
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "data")
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
        broker = subprocess.Popen([binary, "server", "--listeners", bootstrap, "--data-dir", data])
        try:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            admin = AdminClient({"bootstrap.servers": bootstrap})
            created = admin.create_topics(
                [NewTopic(TOPIC, PARTITIONS, 1, config={"retention.ms": "123456789"})]
            )
            created[TOPIC].result(DEADLINE_S)
            plain = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
            for p in range(PARTITIONS):
                for i in range(5):
                    plain.produce(TOPIC, value=f"plain-{p}-{i}", partition=p)
            assert plain.flush(DEADLINE_S) == 0
            txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": TXN})
            txn.init_transactions(DEADLINE_S)
            for outcome, commit in (("committed", True), ("aborted", False)):
                txn.begin_transaction()
                for p in range(PARTITIONS):
                    txn.produce(TOPIC, value=f"{outcome}-{p}", partition=p)
                txn.flush(DEADLINE_S)
                if commit:
                    txn.commit_transaction(DEADLINE_S)
                else:
                    txn.abort_transaction(DEADLINE_S)
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
            consumer.commit(
                offsets=[TopicPartition(TOPIC, p, 3 + p) for p in range(PARTITIONS)], asynchronous=False
            )
            committed = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], DEADLINE_S)
            assert [tp.offset for tp in committed] == [3, 4, 5], committed
            consumer.close()
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(DEADLINE_S)
        os.remove(os.path.join(data, ".lock"))
        with tarfile.open(out, "w:gz") as tar:
            tar.add(data, arcname="data")
    print(f"wrote {os.path.normpath(out)}")


if __name__ == "__main__":
    main(sys.argv[1])
