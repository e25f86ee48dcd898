"""Where the nodes listen, and the network faults between them.

Two modes:
- `netns` (needs root and iproute2): each node in a network namespace of its own, on a bridge
  in a hub namespace, with one veth from the campaign's own namespace onto the bridge for the
  clients. A cut is a blackhole route inside a node's namespace towards another node: packets
  are dropped silently, as on a real network, and connections stay open. Clients always reach
  every node; only node-to-node traffic is cut.
- `loopback`: every node on 127.0.0.1 with ports of its own; no network faults.

A one-way cut (`block(a, b)`) drops what `a` sends to `b`; a partition is both directions.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid

NODES = (1, 2, 3)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def netns_unusable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


class Network:
    def __init__(self, mode: str):
        self.mode = mode
        self.tag = uuid.uuid4().hex[:5]
        self.subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.hub = f"strom-{self.tag}-hub"
        self.client_link = f"sc{self.tag}"
        self.made: list[str] = []
        self.blocked: set[tuple[int, int]] = set()
        self.base_port = random.randrange(20000, 29000, 100)

    @property
    def faults_possible(self) -> bool:
        return self.mode == "netns"

    def host(self, node: int) -> str:
        return f"{self.subnet}.{node}" if self.mode == "netns" else "127.0.0.1"

    def port(self, node: int) -> int:
        """The node's client port; its controller port is the next one."""
        return 9092 if self.mode == "netns" else self.base_port + 10 * (node - 1)

    def ns(self, node: int) -> str:
        return f"strom-{self.tag}-{node}"

    def prefix(self, node: int) -> list[str]:
        """What runs a command inside the node's namespace."""
        return ["ip", "netns", "exec", self.ns(node)] if self.mode == "netns" else []

    def up(self) -> None:
        if self.mode != "netns":
            return
        _ip("netns", "add", self.hub)
        self.made.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for node in NODES:
            ns = self.ns(node)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"n{node}", "netns", self.hub)
            _ip("-n", self.hub, "link", "set", f"n{node}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.host(node)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("link", "add", self.client_link, "type", "veth", "peer", "name", "client", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "client", "master", "br0", "up")
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.client_link)
        _ip("link", "set", self.client_link, "up")

    def block(self, src: int, dst: int) -> None:
        """Drops every packet `src` sends to `dst`."""
        if (src, dst) not in self.blocked:
            _ip("-n", self.ns(src), "route", "add", "blackhole", f"{self.host(dst)}/32")
            self.blocked.add((src, dst))

    def cut(self, a: int, b: int) -> None:
        self.block(a, b)
        self.block(b, a)

    def heal(self) -> None:
        for src, dst in sorted(self.blocked):
            _ip("-n", self.ns(src), "route", "del", "blackhole", f"{self.host(dst)}/32")
        self.blocked.clear()

    def down(self) -> None:
        if self.mode != "netns":
            return
        subprocess.run(["ip", "link", "del", self.client_link], capture_output=True, timeout=20)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.made.clear()
