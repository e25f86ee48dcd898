#!/usr/bin/env python3
"""Failover of a partition's leader under an acks=all producer, for Strom and Apache Kafka 4.4.

Three combined nodes on loopback (Strom: the release binary; Kafka: scripts/kafka.sh start
--nodes 3), a topic of one partition with replication factor 3 and min.insync.replicas 2, and
an idempotent acks=all producer sending a record every 5 ms. Each trial stops the partition's
leader (SIGKILL, or SIGTERM for a controlled shutdown) and measures the producer's stall: the
longest gap between two acknowledgements around the stop. The node is then started again
and, once it is back in the ISR, the next trial begins.

    scripts/failover.py strom [--trials 20] [--signal kill|term] [--set key=value ...]
    scripts/failover.py kafka [--trials 20] [--signal kill|term]

Prints one line per trial, then the median and the maximum. Needs confluent-kafka (the test
suite's requirements). FAILOVER_KEEP=1 keeps the nodes' data and logs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "failover"
SEND_EVERY_S = 0.005
# Bounds: every wait below has one.
READY_S = 120
TRIAL_S = 60


class Node:
    """One node: how to start it, and the running process."""

    def __init__(self, node_id: int, argv: list[str], log: Path, cwd: Path):
        self.node_id, self.argv, self.log, self.cwd = node_id, argv, log, cwd
        self.pid: int | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            process = subprocess.Popen(
                self.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=self.cwd,
                start_new_session=True,
            )
        self.pid = process.pid

    def stop(self, sig: int) -> None:
        assert self.pid is not None
        os.kill(self.pid, sig)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                finished = self.pid  # not our child (Kafka's nodes): poll its existence
                try:
                    os.kill(self.pid, 0)
                    finished = 0
                except ProcessLookupError:
                    pass
            if finished:
                self.pid = None
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.node_id} did not exit")


def strom_cluster(work: Path, settings: list[str]) -> tuple[str, dict[int, Node]]:
    binary = os.environ.get("STROM_BIN", str(ROOT / "target/release/strom"))
    base = 25092
    voters = ",".join(f"{i}@127.0.0.1:{base + 10 * (i - 1) + 1}" for i in (1, 2, 3))
    nodes = {}
    for i in (1, 2, 3):
        port = base + 10 * (i - 1)
        argv = [
            binary, "server", "--node-id", str(i), "--process-roles", "broker,controller",
            "--listeners", f"127.0.0.1:{port}", "--controller-listener", f"127.0.0.1:{port + 1}",
            "--controller-quorum-voters", voters, "--data-dir", str(work / f"node-{i}"),
        ]  # fmt: skip
        for setting in settings:
            argv += ["--set", setting]
        nodes[i] = Node(i, argv, work / f"node-{i}.log", work)
        nodes[i].start()
    return ",".join(f"127.0.0.1:{base + 10 * (i - 1)}" for i in (1, 2, 3)), nodes


def kafka_cluster(work: Path) -> tuple[str, dict[int, Node]]:
    data = work / "kafka"
    bootstrap = subprocess.run(
        [str(ROOT / "scripts/kafka.sh"), "start", "--nodes", "3", "--data-dir", str(data)],
        check=True, capture_output=True, text=True, timeout=READY_S * 2,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    nodes = {}
    for pid in (data / "kafka.pid").read_text().split():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        argv = [a.decode() for a in argv]
        properties = next(a for a in argv if a.endswith("server.properties"))
        node_id = int(Path(properties).parent.name.split("-")[1])
        node = Node(node_id, argv, Path(properties).parent / "server.log", Path(properties).parent)
        node.pid = int(pid)
        nodes[node_id] = node
    return bootstrap, nodes


def partition_state(admin: AdminClient) -> tuple[int, int]:
    """(leader, ISR size) of the partition, (-1, 0) if unknown."""
    try:
        metadata = admin.list_topics(TOPIC, timeout=2)
        partition = metadata.topics[TOPIC].partitions[0]
        return partition.leader, len(partition.isrs)
    except Exception:  # noqa: BLE001 - a broker being down is expected here
        return -1, 0


def wait_for(condition, what: str, timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("broker", choices=["strom", "kafka"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    args = parser.parse_args()
    sig = signal.SIGKILL if args.signal == "kill" else signal.SIGTERM
    work = Path(tempfile.mkdtemp(prefix=f"failover-{args.broker}-"))
    nodes: dict[int, Node] = {}
    try:
        if args.broker == "strom":
            bootstrap, nodes = strom_cluster(work, args.settings)
        else:
            bootstrap, nodes = kafka_cluster(work)
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def created() -> bool:
            try:
                admin.create_topics(
                    [NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})]
                )[TOPIC].result(10)
            except Exception as error:  # noqa: BLE001
                if "already exists" not in str(error).lower() and "TOPIC_ALREADY" not in str(error):
                    return False
            return partition_state(admin)[1] == 3

        wait_for(created, "the topic with three in-sync replicas")
        acks: list[float] = []
        errors: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            producer = Producer({
                "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                "linger.ms": 0, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200,
            })  # fmt: skip

            def delivered(err, _msg):
                if err:
                    errors.append(str(err))
                else:
                    acks.append(time.monotonic())

            sent = 0
            while not stop.is_set():
                producer.produce(TOPIC, value=str(sent).encode(), partition=0, on_delivery=delivered)
                sent += 1
                producer.poll(SEND_EVERY_S)
            producer.flush(30)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        wait_for(lambda: len(acks) > 200, "the producer's first acknowledgements")
        stalls = []
        for trial in range(1, args.trials + 1):
            leader, _ = partition_state(admin)
            wait_for(lambda: partition_state(admin)[0] > 0, "a leader")
            leader, _ = partition_state(admin)
            stopped_at = time.monotonic()
            nodes[leader].stop(sig)
            wait_for(lambda: acks and acks[-1] > stopped_at + 1.0, "acknowledgements after the stop", TRIAL_S)
            window = [t for t in acks if stopped_at - 1.0 <= t <= stopped_at + TRIAL_S]
            stall = max(b - a for a, b in zip(window, window[1:]))
            stalls.append(stall)
            print(f"trial {trial}: leader {leader} stopped (SIG{args.signal.upper()}); "
                  f"longest gap between acknowledgements {stall * 1000:.0f} ms", flush=True)
            nodes[leader].start()
            wait_for(lambda: partition_state(admin)[1] == 3, "the node back in the ISR")
            time.sleep(1.0)  # steady acknowledgements before the next stop
        stop.set()
        thread.join(60)
        print(f"{args.broker}, SIG{args.signal.upper()}, {len(stalls)} trials: median "
              f"{statistics.median(stalls) * 1000:.0f} ms, max {max(stalls) * 1000:.0f} ms; "
              f"{len(errors)} failed sends")
        return 0
    finally:
        for node in nodes.values():
            if node.pid is not None:
                try:
                    os.killpg(node.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if args.broker == "kafka":
            subprocess.run([str(ROOT / "scripts/kafka.sh"), "stop", "--data-dir", str(work / "kafka")],
                           capture_output=True, timeout=60)
        if os.environ.get("FAILOVER_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
