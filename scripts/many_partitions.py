#!/usr/bin/env python3
"""1,000 partitions with replication factor 3 on three Strom nodes (the cluster issue's line):

- CreateTopics to every broker serving them: from the request until every broker's Metadata
  shows all partitions with a leader and three in-sync replicas, and a record produced to
  every partition with acks=all is acknowledged;
- a restarted broker (SIGTERM, start again) back in the ISR of all its partitions: from its
  start until no partition lacks it;
- each broker's peak RSS;
- for scale, what this filesystem takes to create as many directories, each with one empty
  file, as the three brokers did (one process, after the brokers stopped). On ext4 this grows
  while recently deleted inodes pile up (back-to-back runs), and so does CreateTopics.

    scripts/many_partitions.py [--partitions 1000]

Uses the release binary (STROM_BIN to override) and confluent-kafka.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BASE = 26092
LIMIT_S = 300


def start(binary: str, work: Path, node: int, voters: str) -> subprocess.Popen:
    port = BASE + 10 * (node - 1)
    log = open(work / f"node-{node}.log", "ab")
    return subprocess.Popen(
        [binary, "server", "--node-id", str(node), "--process-roles", "broker,controller",
         "--listeners", f"127.0.0.1:{port}", "--controller-listener", f"127.0.0.1:{port + 1}",
         "--controller-quorum-voters", voters, "--data-dir", str(work / f"node-{node}")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def settled(node_bootstrap: str, topic: str, partitions: int) -> bool:
    try:
        metadata = AdminClient({"bootstrap.servers": node_bootstrap}).list_topics(topic, timeout=5)
        parts = metadata.topics[topic].partitions
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return len(parts) == partitions and all(p.leader > 0 and len(p.isrs) == 3 for p in parts.values())


def wait(condition, what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=1000)
    args = parser.parse_args()
    binary = os.environ.get("STROM_BIN", str(ROOT / "target/release/strom"))
    work = Path(tempfile.mkdtemp(prefix="many-partitions-"))
    voters = ",".join(f"{i}@127.0.0.1:{BASE + 10 * (i - 1) + 1}" for i in (1, 2, 3))
    nodes = {i: start(binary, work, i, voters) for i in (1, 2, 3)}
    addresses = {i: f"127.0.0.1:{BASE + 10 * (i - 1)}" for i in (1, 2, 3)}
    bootstrap = ",".join(addresses.values())
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        def three_brokers() -> bool:
            try:
                return len(admin.list_topics(timeout=5).brokers) == 3
            except Exception:  # noqa: BLE001 - the cluster is still forming
                return False

        wait(three_brokers, "three brokers")
        topic = "many"
        began = time.monotonic()
        admin.create_topics([NewTopic(topic, args.partitions, 3)])[topic].result(60)
        answered = time.monotonic() - began
        for node in (1, 2, 3):
            wait(lambda node=node: settled(addresses[node], topic, args.partitions), f"node {node}'s metadata")
        in_sync = time.monotonic() - began
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        failures: list = []
        acked: list[float] = []

        def delivered(err, _msg):
            if err:
                failures.append(err)
            else:
                acked.append(time.monotonic() - began)

        for p in range(args.partitions):
            producer.produce(topic, value=b"x", partition=p, on_delivery=delivered)
        assert producer.flush(LIMIT_S) == 0 and not failures, failures[:3]
        serving = time.monotonic() - began
        print(f"first acknowledgement after {min(acked) * 1000:.0f} ms, half after "
              f"{sorted(acked)[len(acked) // 2] * 1000:.0f} ms")
        print(f"{args.partitions} partitions, RF 3: CreateTopics answered in {answered * 1000:.0f} ms; "
              f"all in sync on every broker's metadata after {in_sync * 1000:.0f} ms; "
              f"a record acknowledged (acks=all) by every partition after {serving * 1000:.0f} ms")

        nodes[3].send_signal(signal.SIGTERM)
        nodes[3].wait(LIMIT_S)
        restarted = time.monotonic()
        nodes[3] = start(binary, work, 3, voters)
        wait(lambda: settled(addresses[1], topic, args.partitions), "node 3 back in every ISR")
        print(f"node 3 restarted: back in the ISR of all its partitions {(time.monotonic() - restarted) * 1000:.0f} ms "
              f"after it was started")
        rss = {i: peak_rss_mib(p.pid) for i, p in nodes.items()}
        print("peak RSS: " + ", ".join(f"node {i} {mib} MiB" for i, mib in rss.items()) + " (node 3 since its restart)")
        for process in nodes.values():
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        baseline = work / "filesystem-baseline"
        baseline.mkdir()
        began = time.monotonic()
        for i in range(3 * args.partitions):
            (baseline / str(i)).mkdir()
            (baseline / str(i) / "00000000000000000000.log").touch()
        print(f"this filesystem: {3 * args.partitions} directories with one file each created in "
              f"{(time.monotonic() - began) * 1000:.0f} ms by one process")
        return 0
    finally:
        for process in nodes.values():
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        if os.environ.get("KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
