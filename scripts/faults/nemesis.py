"""The nemesis: fault kinds, each an injection and the heal that undoes it.

A fault is injected, held for a while (the campaign decides how long), then healed; the
campaign then waits until the cluster is whole again (every node up, every replica in sync)
before the next one. Every kind works the same way against Strom and against Kafka: processes
get signals, files get damaged, the network drops packets, and elections and reassignments go
through the admin APIs both offer.

Kinds:
- `kill`, `kill-leader`, `kill-controller`: SIGKILL of a random node, of the leader of a
  random partition of the workload, of the metadata quorum's leader; healed by a restart.
- `kill-two`: two random nodes at once (beyond the fault budget of three replicas with
  min.insync.replicas 2: writes must stall, never be acknowledged and lost).
- `pause`, `pause-leader`: SIGSTOP, healed by SIGCONT, held longer than the session timeouts.
- `restart-rolling`: each node in turn stopped (SIGTERM) and started, waiting for the
  cluster to be whole between nodes.
- `move-leader`: a partition's replicas reordered by a reassignment, then a preferred leader
  election moves its leadership to the new first replica.
- `corrupt`: a follower of a random partition is killed, bytes near the end of that
  partition's newest segment are flipped (or the segment is cut short), and it is restarted:
  it must notice by CRC and fetch the data again from the leader.
- `disk-full` (root only): node 3 keeps its data on a small tmpfs of its own; the fault fills
  it to the last byte, the heal frees the space (and restarts the node if it stopped). The node
  must refuse writes with a clear error, keep serving reads, and recover once space returns.
- `clock-jump` (needs libfaketime): one node's wall clock jumps 30 to 300 s forward or back,
  and jumps back to the true time at the heal; its monotonic clock runs on. Anything that
  decides by the wall clock (timeouts, sessions, replica lag) meets the jump.
- `isolate`, `isolate-leader` (netns only): a node cut off from the other two, both ways;
  clients still reach it.
- `one-way` (netns only): what one node sends to the others is dropped; it still hears them.
- `bridge` (netns only): two nodes cannot reach each other; each reaches the third.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cluster import NODES, Cluster, strom_binary

NETWORK_KINDS = ("isolate", "isolate-leader", "one-way", "bridge")
ROOT_KINDS = NETWORK_KINDS + ("disk-full",)
SMALL_DISK_NODE = 3
SMALL_DISK_SIZE = "256m"
PROCESS_KINDS = (
    "kill", "kill-leader", "kill-controller", "kill-two", "pause", "pause-leader",
    "restart-rolling", "move-leader", "corrupt", "clock-jump",
)  # fmt: skip
ALL_KINDS = PROCESS_KINDS + ROOT_KINDS


@dataclass
class Fault:
    kind: str
    detail: str
    heal: Callable[[], None]
    nodes: list[int] = field(default_factory=list)


class Nemesis:
    def __init__(
        self, cluster: Cluster, topic_prefix: str, log: Callable[[str], None],
        progress: Callable[[float], bool] | None = None,
    ):  # fmt: skip
        self.cluster, self.prefix, self.log, self.progress = cluster, topic_prefix, log, progress

    def inject(self, kind: str) -> Fault:
        return getattr(self, "_" + kind.replace("-", "_"))()

    # -- processes ----------------------------------------------------------------------------

    def _restart(self, nodes: list[int]) -> Callable[[], None]:
        def heal() -> None:
            for n in nodes:
                self.cluster.nodes[n].kill()  # reaps it if it died by itself meanwhile
                self.cluster.nodes[n].start()

        return heal

    def _kill_nodes(self, kind: str, nodes: list[int], why: str) -> Fault:
        for n in nodes:
            self.cluster.nodes[n].kill()
        return Fault(kind, f"SIGKILL {why}", self._restart(nodes), nodes)

    def _kill(self) -> Fault:
        node = random.choice(NODES)
        return self._kill_nodes("kill", [node], f"node {node}")

    def _kill_leader(self) -> Fault:
        found = self.cluster.leader_of(self.prefix)
        if found is None:
            return self._kill()
        (topic, partition), leader = found
        return self._kill_nodes("kill-leader", [leader], f"node {leader}, leader of {topic}:{partition}")

    def _kill_controller(self) -> Fault:
        controller = self.cluster.controller()
        if controller is None:
            return self._kill()
        return self._kill_nodes("kill-controller", [controller], f"node {controller}, the active controller")

    def _kill_two(self) -> Fault:
        nodes = sorted(random.sample(NODES, 2))
        return self._kill_nodes("kill-two", nodes, f"nodes {nodes[0]} and {nodes[1]} at once")

    def _pause_node(self, kind: str, node: int, why: str) -> Fault:
        self.cluster.nodes[node].signal(signal.SIGSTOP)
        return Fault(kind, f"SIGSTOP {why}", lambda: self.cluster.nodes[node].signal(signal.SIGCONT), [node])

    def _pause(self) -> Fault:
        node = random.choice(NODES)
        return self._pause_node("pause", node, f"node {node}")

    def _pause_leader(self) -> Fault:
        found = self.cluster.leader_of(self.prefix)
        if found is None:
            return self._pause()
        (topic, partition), leader = found
        return self._pause_node("pause-leader", leader, f"node {leader}, leader of {topic}:{partition}")

    def _restart_rolling(self) -> Fault:
        """The whole roll happens during injection; the heal has nothing left to undo."""
        order = list(NODES)
        random.shuffle(order)
        for n in order:
            self.cluster.nodes[n].stop()
            self.cluster.nodes[n].start()
            since = time.time() * 1000
            progress = (lambda: self.progress(since)) if self.progress else None
            if self.cluster.wait_healthy(120, progress) is None:
                self.log(f"restart-rolling: the cluster was not whole 120 s after restarting node {n}")
        return Fault("restart-rolling", f"SIGTERM and restart of nodes {order} in turn", lambda: None, order)

    def _move_leader(self) -> Fault:
        found = self.cluster.leader_of(self.prefix)
        if found is None:
            return self._kill()
        (topic, partition), leader = found
        _, replicas, _ = self.cluster.placement()[(topic, partition)]
        rotated = replicas[1:] + replicas[:1]
        target = f"{topic}:{partition}"
        self._cli("reassign", "--move", f"{target}={','.join(map(str, rotated))}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = self.cluster.placement().get((topic, partition))
            if current and current[1] == rotated:
                break
            time.sleep(0.2)
        self._cli("elect-leaders", "--partition", target)
        return Fault(
            "move-leader", f"{target} replicas {replicas} -> {rotated}, preferred election (leader was {leader})",
            lambda: None, [leader],
        )  # fmt: skip

    def _corrupt(self) -> Fault:
        found = self.cluster.leader_of(self.prefix)
        if found is None:
            return self._kill()
        (topic, partition), leader = found
        _, replicas, _ = self.cluster.placement()[(topic, partition)]
        followers = [r for r in replicas if r != leader] or [n for n in NODES if n != leader]
        node = random.choice(followers)
        self.cluster.nodes[node].kill()
        what = "nothing to damage"
        directory = self.cluster.partition_dir(node, topic, partition)
        segments = sorted(directory.glob("*.log")) if directory else []
        if segments:
            what = damage(segments[-1])
        return Fault(
            "corrupt", f"node {node}, follower of {topic}:{partition}, killed; {what}",
            self._restart([node]), [node],
        )  # fmt: skip

    def _disk_full(self) -> Fault:
        node = SMALL_DISK_NODE
        filler = self.cluster.nodes[node].data / "campaign-filler"
        written = 0
        try:
            with open(filler, "ab") as f:
                chunk = bytes(1 << 20)
                while written < 1 << 40:  # bounded by the tmpfs long before this
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError:
            pass  # ENOSPC: full
        try:
            with open(filler, "ab") as f:  # the last bytes of a partial chunk
                while True:
                    f.write(b"\0" * 512)
                    f.flush()
        except OSError:
            pass

        def heal() -> None:
            filler.unlink(missing_ok=True)
            if not self.cluster.nodes[node].alive:
                self.log(f"disk-full: node {node} had stopped; starting it")
                self.cluster.nodes[node].kill()
                self.cluster.nodes[node].start()

        return Fault("disk-full", f"node {node}'s disk filled ({written >> 20} MiB of filler)", heal, [node])

    def _clock_jump(self) -> Fault:
        node = random.choice(NODES)
        seconds = random.choice((-1, 1)) * random.randint(30, 300)
        self.cluster.nodes[node].shift_clock(seconds)
        return Fault(
            "clock-jump", f"node {node}'s wall clock jumps {seconds:+d} s",
            lambda: self.cluster.nodes[node].shift_clock(0), [node],
        )  # fmt: skip

    def _cli(self, *args: str) -> None:
        result = subprocess.run(
            [str(strom_binary()), "cluster", *args, "-b", self.cluster.bootstrap, "--timeout-ms", "10000"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            self.log(f"strom cluster {' '.join(args)}: {result.stderr.strip()}")

    # -- network ------------------------------------------------------------------------------

    def _isolate_node(self, kind: str, node: int, why: str) -> Fault:
        net = self.cluster.network
        for other in NODES:
            if other != node:
                net.cut(node, other)
        return Fault(kind, f"{why} cut off from the other nodes", net.heal, [node])

    def _isolate(self) -> Fault:
        node = random.choice(NODES)
        return self._isolate_node("isolate", node, f"node {node}")

    def _isolate_leader(self) -> Fault:
        found = self.cluster.leader_of(self.prefix)
        if found is None:
            return self._isolate()
        (topic, partition), leader = found
        return self._isolate_node("isolate-leader", leader, f"node {leader}, leader of {topic}:{partition},")

    def _one_way(self) -> Fault:
        net = self.cluster.network
        node = random.choice(NODES)
        for other in NODES:
            if other != node:
                net.block(node, other)
        return Fault("one-way", f"what node {node} sends to the others is dropped", net.heal, [node])

    def _bridge(self) -> Fault:
        net = self.cluster.network
        middle = random.choice(NODES)
        a, b = (n for n in NODES if n != middle)
        net.cut(a, b)
        return Fault("bridge", f"nodes {a} and {b} cut apart; node {middle} reaches both", net.heal, [a, b])


def damage(segment: Path) -> str:
    """Flips a few bytes in the last quarter of a segment, or cuts its tail off; says which."""
    size = segment.stat().st_size
    if size < 64:
        return f"{segment.name} too small to damage ({size} bytes)"
    if random.random() < 0.5:
        cut = random.randrange(size * 3 // 4, size)
        with open(segment, "r+b") as f:
            f.truncate(cut)
        return f"{segment.name} cut from {size} to {cut} bytes"
    offsets = sorted(random.sample(range(size * 3 // 4, size), 3))
    with open(segment, "r+b") as f:
        for at in offsets:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0xFF]))
    return f"{segment.name} bytes {offsets} flipped (of {size})"
