"""Three combined nodes (broker and controller) of Strom or of Apache Kafka 4.4, each a process
the campaign can kill, pause, restart and cut off, and what the campaign asks a cluster: where
a partition's leader is, which node is the active controller, whether every replica is back.

Both systems get the same layout: node i listens for clients on `network.host(i):client_port(i)`
and for its controller quorum on the next port; data in `WORK/node-i`. They run with their
defaults, apart from the replication factors of their internal topics (3, min ISR 2) and the
settings a campaign passes to both (`--set`).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable

from confluent_kafka.admin import AdminClient

from .network import Network

ROOT = Path(__file__).resolve().parent.parent.parent
NODES = (1, 2, 3)
KAFKA_HOME = Path(os.environ.get("KAFKA_REF_HOME", Path.home() / ".cache/strom/kafka-4.4.0"))


class Node:
    """One node's process: its command line, and the running pid (None when stopped)."""

    def __init__(self, node_id: int, argv: list[str], log: Path, data: Path):
        self.node_id, self.argv, self.log, self.data = node_id, argv, log, data
        self.process: subprocess.Popen | None = None
        self.paused = False
        self.env: dict[str, str] = {}

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert not self.alive, f"node {self.node_id} is already running"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.env},
            )  # fmt: skip
        self.paused = False

    def fake_clock(self, library: Path) -> None:
        """From its next start the node's wall clock (CLOCK_REALTIME, not the monotonic one)
        is the real one shifted by what `clock_file` says (libfaketime, re-read every second)."""
        self.clock_file.write_text("+0\n")
        self.env.update({
            "LD_PRELOAD": str(library),
            "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_DONT_RESET": "1",
        })  # fmt: skip

    def shift_clock(self, seconds: int) -> None:
        self.clock_file.write_text(f"{seconds:+d}\n")

    @property
    def clock_file(self) -> Path:
        return self.log.with_suffix(".faketime")

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, sig)
        self.paused = sig == signal.SIGSTOP or (self.paused and sig != signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, and waits until the process is gone (bounded)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)
        self.process = None
        self.paused = False

    def stop(self, timeout: float = 60) -> None:
        """A controlled shutdown (SIGTERM), SIGKILL if it takes longer than `timeout`."""
        if self.process is None:
            return
        if self.paused:
            self.signal(signal.SIGCONT)
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class Cluster:
    """What both systems share: nodes, bootstrap servers, and questions asked over Kafka's
    protocol (so the answers mean the same for Strom and for Kafka)."""

    name = "cluster"

    def __init__(self, work: Path, network: Network, settings: list[str]):
        self.work, self.network, self.settings = work, network, settings
        self.nodes: dict[int, Node] = {}
        self._admin: AdminClient | None = None
        self.small_disks: list[Path] = []
        # Nodes whose process ended by itself and was started again, in order.
        self.exits: list[int] = []

    def client_port(self, node: int) -> int:
        return self.network.port(node)

    def controller_port(self, node: int) -> int:
        return self.network.port(node) + 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.network.host(i)}:{self.client_port(i)}" for i in NODES)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()

    def close(self) -> None:
        for node in self.nodes.values():
            node.kill()
        for mount in self.small_disks:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)

    def give_small_disk(self, node: int, size: str) -> None:
        """Puts the node's data on a tmpfs of its own of `size` bytes (root only), so the
        campaign can fill it. Before the node first starts."""
        mount = self.nodes[node].data
        mount.mkdir(parents=True, exist_ok=True)
        keep = [(p, p.read_bytes()) for p in mount.rglob("*") if p.is_file()]  # Kafka's formatted dir
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True, timeout=30)
        self.small_disks.append(mount)
        for path, data in keep:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def admin(self) -> AdminClient:
        """One admin client for the cluster's life; its connection errors are expected while
        nodes are down, so it logs nothing."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000, "log_level": 0})
        return self._admin

    def placement(self, timeout: float = 3) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
        """(topic, partition) -> (leader, replicas, ISR), as some live node sees it; empty if
        no node answered."""
        try:
            metadata = self.admin().list_topics(timeout=timeout)
        except Exception:  # noqa: BLE001 - nodes down or cut off are this module's normal
            return {}
        return {
            (t.topic, p.id): (p.leader, list(p.replicas), list(p.isrs))
            for t in metadata.topics.values()
            for p in t.partitions.values()
        }

    def brokers_registered(self) -> bool:
        """Every node is in the cluster's metadata as a broker."""
        try:
            return len(self.admin().list_topics(timeout=3).brokers) == len(self.nodes)
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def leader_of(self, topic_prefix: str) -> tuple[tuple[str, int], int] | None:
        """A random partition of the workload's topics and its leader."""
        candidates = [
            (tp, leader)
            for tp, (leader, _, _) in self.placement().items()
            if tp[0].startswith(topic_prefix) and leader in self.nodes
        ]
        return random.choice(candidates) if candidates else None

    def controller(self) -> int | None:
        """The metadata quorum's leader (DescribeQuorum through `strom cluster quorum`)."""
        try:
            out = subprocess.run(
                [str(strom_binary()), "cluster", "quorum", "-b", self.bootstrap, "--timeout-ms", "3000"],
                capture_output=True, text=True, timeout=15,
            ).stdout  # fmt: skip
        except subprocess.TimeoutExpired:
            return None
        for line in out.splitlines():
            if line.startswith("leader "):
                leader = int(line.split()[1])
                return leader if leader in self.nodes else None
        return None

    def coordinator_views(self, group: str) -> str:
        """Which node each node names as `group`'s coordinator (FindCoordinator, asked of it
        alone), and what each node named answers to an OffsetFetch for the group: for saying
        why transactions or a group do not come back."""
        views, named = [], set()
        for i in self.nodes:
            try:
                data = self._ask(i, 10, 1, _string(group) + b"\x00")
                _throttle, error = struct.unpack_from(">ih", data, 0)
                (message_len,) = struct.unpack_from(">h", data, 6)
                (coordinator,) = struct.unpack_from(">i", data, 8 + max(message_len, 0))
                views.append(f"node {i} names {coordinator}" + (f" (error {error})" if error else ""))
                if not error and coordinator in self.nodes:
                    named.add(coordinator)
            except (OSError, struct.error) as e:
                views.append(f"node {i}: {e}")
        for i in sorted(named):
            try:
                # OffsetFetch v2 for every partition with a commit (a null topic list).
                data = self._ask(i, 9, 2, _string(group) + struct.pack(">i", -1))
                (topics,) = struct.unpack_from(">i", data, 0)
                at = 4
                for _ in range(topics):
                    (name_len,) = struct.unpack_from(">h", data, at)
                    at += 2 + name_len
                    (partitions,) = struct.unpack_from(">i", data, at)
                    at += 4
                    for _ in range(partitions):
                        (meta_len,) = struct.unpack_from(">h", data, at + 12)
                        at += 12 + 2 + max(meta_len, 0) + 2
                (error,) = struct.unpack_from(">h", data, at)
                views.append(f"OffsetFetch at {i}: error {error}")
            except (OSError, struct.error) as e:
                views.append(f"OffsetFetch at {i}: {e}")
        return f"{group}: " + ", ".join(views)

    def _ask(self, node: int, api_key: int, version: int, body: bytes) -> bytes:
        """One raw request to one node; the response after its correlation id."""
        header = struct.pack(">hhih", api_key, version, 1, 8) + b"campaign"
        with socket.create_connection((self.network.host(node), self.client_port(node)), timeout=3) as sock:
            sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
            wanted, data = None, b""
            while wanted is None or len(data) < wanted + 4:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("connection closed")
                data += chunk
                if wanted is None and len(data) >= 4:
                    (wanted,) = struct.unpack(">i", data[:4])
            return data[8 : 4 + wanted]

    def node_whole(self, node: int) -> bool:
        """The node answers, knows every broker, and sees no partition without a leader or
        with a replica out of sync (`strom cluster describe`, asked of this node only)."""
        try:
            out = subprocess.run(
                [str(strom_binary()), "cluster", "describe", "--timeout-ms", "2000",
                 "-b", f"{self.network.host(node)}:{self.client_port(node)}"],
                capture_output=True, text=True, timeout=15,
            ).stdout  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return f"brokers: {len(self.nodes)}\n" in out and ", under-replicated or offline: 0\n" in out

    def healthy(self, progress: Callable[[], bool] | None = None) -> bool:
        """Every node runs and, asked on its own, sees every partition led and in sync; and
        `progress` (the workload acknowledging on every partition) holds."""
        if not all(n.alive and not n.paused for n in self.nodes.values()):
            return False
        if not all(self.node_whole(i) for i in self.nodes):
            return False
        return progress is None or progress()

    def restart_exited(self) -> list[int]:
        """Starts again every node whose process ended by itself (not killed or paused by the
        nemesis), as a service manager would; the ids restarted (also kept in `exits`)."""
        exited = [i for i, n in self.nodes.items() if n.process is not None and n.process.poll() is not None]
        for i in exited:
            self.nodes[i].process = None
            self.nodes[i].start()
        self.exits += exited
        return exited

    def wait_healthy(self, timeout: float, progress: Callable[[], bool] | None = None) -> float | None:
        """Seconds until healthy, or None if it was not within `timeout`. A node that exits
        meanwhile is started again (`restart_exited`)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.restart_exited()
            if self.healthy(progress):
                return time.monotonic() - started
            time.sleep(0.25)
        return None

    def partition_dir(self, node: int, topic: str, partition: int) -> Path | None:
        """Where `node` keeps this partition's log (Kafka's layout: `<log dir>/<topic>-<p>`)."""
        for candidate in self.log_dirs(node):
            path = candidate / f"{topic}-{partition}"
            if path.is_dir():
                return path
        return None

    def log_dirs(self, node: int) -> list[Path]:
        raise NotImplementedError


def faketime_library() -> Path | None:
    """libfaketime, if installed (Debian's `faketime` package)."""
    for candidate in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                      "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                      "/usr/lib/faketime/libfaketime.so.1"):  # fmt: skip
        if Path(candidate).exists():
            return Path(candidate)
    return None


def strom_binary() -> Path:
    return Path(os.environ.get("STROM_BIN", ROOT / "target/release/strom"))


class StromCluster(Cluster):
    name = "strom"

    def __init__(self, work: Path, network: Network, settings: list[str]):
        super().__init__(work, network, settings)
        voters = ",".join(f"{i}@{network.host(i)}:{self.controller_port(i)}" for i in NODES)
        for i in NODES:
            data = work / f"node-{i}"
            argv = network.prefix(i) + [
                str(strom_binary()), "server", "--node-id", str(i),
                "--process-roles", "broker,controller",
                "--listeners", f"{network.host(i)}:{self.client_port(i)}",
                "--controller-listener", f"{network.host(i)}:{self.controller_port(i)}",
                "--controller-quorum-voters", voters, "--data-dir", str(data),
            ]  # fmt: skip
            for setting in settings:
                argv += ["--set", setting]
            self.nodes[i] = Node(i, argv, work / f"node-{i}.log", data)

    def log_dirs(self, node: int) -> list[Path]:
        return [self.nodes[node].data]


class KafkaCluster(Cluster):
    """Kafka 4.4 from the jars `scripts/kafka.sh fetch` caches, one JVM per node."""

    name = "kafka"

    def __init__(self, work: Path, network: Network, settings: list[str]):
        super().__init__(work, network, settings)
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "fetch"], check=True, timeout=1800)
        libs = KAFKA_HOME / "libs"
        tools_log4j = KAFKA_HOME / "config/tools-log4j2.properties"
        quorum = ",".join(f"{network.host(i)}:{self.controller_port(i)}" for i in NODES)
        initial = ",".join(
            f"{i}@{network.host(i)}:{self.controller_port(i)}:{_kafka_uuid()}" for i in NODES
        )
        cluster_id = _kafka_uuid()
        log4j = work / "log4j2.properties"
        log4j.write_text(
            "status = warn\nappender.out.type = Console\nappender.out.name = STDOUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.out.ref = STDOUT\n"
            "logger.requests.name = kafka.request.logger\nlogger.requests.level = warn\n"
        )
        formats = []
        for i in NODES:
            data = work / f"node-{i}"
            (data / "logs").mkdir(parents=True, exist_ok=True)
            host = network.host(i)
            properties = data / "server.properties"
            lines = [
                "process.roles=broker,controller",
                f"node.id={i}",
                f"listeners=PLAINTEXT://{host}:{self.client_port(i)},CONTROLLER://{host}:{self.controller_port(i)}",
                f"advertised.listeners=PLAINTEXT://{host}:{self.client_port(i)},CONTROLLER://{host}:{self.controller_port(i)}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                f"controller.quorum.bootstrap.servers={quorum}",
                f"log.dirs={data / 'logs'}",
                "offsets.topic.replication.factor=3",
                "transaction.state.log.replication.factor=3",
                "transaction.state.log.min.isr=2",
                *settings,
            ]
            properties.write_text("\n".join(lines) + "\n")
            formats.append(subprocess.Popen(
                ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                 f"-Dlog4j2.configurationFile={tools_log4j}", "-cp", f"{libs}/*",
                 "kafka.tools.StorageTool", "format", "--config", str(properties),
                 "--cluster-id", cluster_id, "--initial-controllers", initial],
                stdout=subprocess.DEVNULL, stderr=open(data / "format.log", "wb"),
            ))  # fmt: skip
            heap = os.environ.get("KAFKA_REF_HEAP_OPTS", "-Xms512m -Xmx512m").split()
            argv = network.prefix(i) + [
                "java", *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", "kafka.Kafka",
                str(properties),
            ]  # fmt: skip
            self.nodes[i] = Node(i, argv, data / "server.log", data)
        for i, process in zip(NODES, formats):
            if process.wait(timeout=180) != 0:
                raise RuntimeError(f"formatting Kafka node {i} failed: {work / f'node-{i}/format.log'}")

    def log_dirs(self, node: int) -> list[Path]:
        return [self.nodes[node].data / "logs"]


def _kafka_uuid() -> str:
    """A random Kafka Uuid in its text form (URL-safe base64 of 16 bytes, no padding)."""
    import base64

    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def make_cluster(system: str, work: Path, network: Network, settings: list[str]) -> Cluster:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return {"strom": StromCluster, "kafka": KafkaCluster}[system](work, network, settings)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data
