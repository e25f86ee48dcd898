"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

POLL_INTERVAL_S = 0.05
# How long a test waits for records to arrive or metadata to settle, in seconds.
DEFAULT_WAIT_S = 30.0

T = TypeVar("T")

# Bound on one run of a Kafka command-line tool (a JVM start included), in seconds.
TOOL_TIMEOUT_S = 120
_KAFKA_SH = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


def kafka_tool(name: str, *args: str, stdin: str | None = None) -> str:
    """Runs one of Kafka 4.4's command-line tools as Kafka ships it (`scripts/kafka.sh tool`);
    its standard output. Fails the test, with the tool's output, if the tool fails."""
    done = subprocess.run([str(_KAFKA_SH), "tool", name, *args], input=stdin,
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def wait_until(condition: Callable[[], T], timeout_s: float, what: str | Callable[[], str]) -> T:
    """Polls `condition` until it returns something truthy; fails after `timeout_s`.

    Exceptions from `condition` count as "not yet"; the last one is reported on timeout.
    `what` may be a function, called on timeout, so the message can show the last state seen.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            description = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {description}{detail}")
        time.sleep(POLL_INTERVAL_S)


def _exchange(host: str, port: int, api_key: int, version: int, body: bytes) -> bytes:
    """One raw request (header v1) to this one broker; the response after its correlation id."""
    client_id = b"strom-pytest"
    header = struct.pack(">hhih", api_key, version, 21, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)

        def exact(count: int) -> bytes:
            data = b""
            while len(data) < count:
                chunk = sock.recv(count - len(data))
                assert chunk, "the broker closed the connection"
                data += chunk
            return data

        (size,) = struct.unpack(">i", exact(4))
        return exact(size)[4:]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def offset_fetch(node, group: str, topic: str, partition: int, version: int = 2) -> tuple[int, int]:
    """(error code, committed offset; -1 without one) of one partition, asked of this one node
    only: a raw OffsetFetch (v1 or v2), so no client library goes looking for the coordinator
    elsewhere. v1 has no group-level error: only the partition's says why."""
    body = _string(group) + struct.pack(">i", 1) + _string(topic) + struct.pack(">ii", 1, partition)
    data = _exchange(node.host, node.port, 9, version, body)
    (topics,) = struct.unpack_from(">i", data, 0)
    at = 4
    offset, error = -1, 0
    for _ in range(topics):
        (name_len,) = struct.unpack_from(">h", data, at)
        at += 2 + name_len
        (partitions,) = struct.unpack_from(">i", data, at)
        at += 4
        for _ in range(partitions):
            _index, offset = struct.unpack_from(">iq", data, at)
            at += 12
            (meta_len,) = struct.unpack_from(">h", data, at)
            at += 2 + max(meta_len, 0)
            (error,) = struct.unpack_from(">h", data, at)
            at += 2
    if version < 2:
        return error, offset
    (top_error,) = struct.unpack_from(">h", data, at)
    return (top_error or error), offset


def heartbeat(node, group: str, generation: int, member_id: str) -> int:
    """The error code of a raw Heartbeat v0 to this one node only."""
    data = _exchange(node.host, node.port, 12, 0, _string(group) + struct.pack(">i", generation) + _string(member_id))
    (error,) = struct.unpack_from(">h", data, 0)
    return error
