"""Fixtures that run the real `strom` binary for the Python client suite.

Layout:
- `Broker`: one `strom server` process on a free loopback port with its own data directory,
  its stderr captured to `broker.log` beside the data. `restart()` keeps port and directory.
- `broker` (session): a broker shared by tests that only need "a broker"; each test uses its
  own topic names (`topic_name`), so tests stay independent and can run under pytest-xdist
  (every xdist worker has its own session and so its own broker).
- `broker_factory` (function): brokers with their own settings, or ones a test restarts.
- Every wait polls a condition against a deadline (here, and `support.wait_until` in the
  tests); nothing synchronises on a fixed sleep.

When a test fails, the tail of every broker log its fixtures own is attached to its report.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Bounds on every wait in this file, in seconds. A loaded CI machine (two cores shared with the
# Rust suite) is slow, so they are generous; a healthy broker answers in milliseconds.
BROKER_READY_TIMEOUT_S = 30.0
BROKER_STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 60
# A port picked by binding to :0 can be taken by someone else before the broker binds it.
START_ATTEMPTS_MAX = 3
PR_SET_PDEATHSIG = 1


def strom_bin() -> Path:
    """The broker binary: $STROM_BIN, else the release build, else the debug build."""
    configured = os.environ.get("STROM_BIN")
    if configured:
        return Path(configured)
    for profile in ("release", "debug"):
        candidate = REPO_ROOT / "target" / profile / "strom"
        if candidate.exists():
            return candidate
    pytest.exit(
        "no strom binary: set STROM_BIN or run `cargo build --release -p strom`", returncode=3
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_versions_ok(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Sends ApiVersions v0 over a raw socket; true when the broker answers with error 0."""
    correlation_id = 7
    client_id = b"strom-pytest"
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    request = struct.pack(">i", len(header)) + header
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(request)
        size_bytes = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", size_bytes)
        body = _recv_exact(sock, size)
    got_correlation_id, error_code = struct.unpack(">ih", body[:6])
    return got_correlation_id == correlation_id and error_code == 0


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


class Broker:
    """One `strom server` process. Not thread-safe; one owner per instance."""

    # Brokers owned by live fixtures, running or stopped; a failing test shows their logs.
    in_use: list["Broker"] = []

    def __init__(
        self,
        root: Path,
        settings: dict[str, str] | None = None,
        args: list[str] | None = None,
        host: str = "127.0.0.1",
        prefix: list[str] | None = None,
        extra_log_dirs: int = 0,
    ):
        self.root = root
        # Where it listens, and what its command runs under (`ip netns exec NS` puts it in a
        # network namespace a test made).
        self._host = host
        self.prefix = list(prefix or [])
        self.data_dir = root / "data"
        # `log.dirs` after the data directory.
        self.extra_log_dirs = [root / f"logs-{i}" for i in range(1, extra_log_dirs + 1)]
        self.log_path = root / "broker.log"
        self.settings = dict(settings or {})
        # More `strom server` arguments, e.g. a cluster node's id, roles and quorum voters.
        self.args = list(args or [])
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def host(self) -> str:
        return self._host

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Broker":
        """Starts on a fresh free port the first time, on the same port afterwards."""
        assert self.process is None, "broker already running"
        keep_port = self.port != 0
        for attempt in range(START_ATTEMPTS_MAX):
            if not keep_port:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except Exception:
                exited = self.process.poll() is not None
                self._terminate()
                if not exited or keep_port or attempt + 1 == START_ATTEMPTS_MAX:
                    raise RuntimeError(
                        f"strom did not become ready on {self.bootstrap}\n{self.log_tail()}"
                    ) from None
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *self.prefix,
            str(strom_bin()),
            "server",
            "--listeners",
            self.bootstrap,
            "--data-dir",
            ",".join(str(d) for d in [self.data_dir, *self.extra_log_dirs]),
            *self.args,
        ]
        for key, value in self.settings.items():
            # "{port}" in a value stands for the broker's port, known only at start.
            command += ["--set", f"{key}={value.replace('{port}', str(self.port))}"]
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        log.write(f"==== start #{self.starts}: {' '.join(command)}\n".encode())
        log.flush()
        # The broker reads STROM_* variables as broker properties; the tests set properties
        # only with --set, so none leak in from the caller's environment (STROM_LOG stays).
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("STROM_") or k == "STROM_LOG"
        }
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise _BrokerExited(f"strom exited with {self.process.returncode}")
            return api_versions_ok(self.host, self.port)

        deadline = time.monotonic() + BROKER_READY_TIMEOUT_S
        while True:
            try:
                if ready():
                    return
            except _BrokerExited:
                raise
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"strom not ready after {BROKER_READY_TIMEOUT_S}s")
            time.sleep(POLL_INTERVAL_S)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Sends `sig` (SIGTERM: graceful), kills after a deadline; returns the exit code."""
        return self._terminate(sig)

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def _terminate(self, sig: int = signal.SIGTERM) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=BROKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=BROKER_STOP_TIMEOUT_S)
                with open(self.log_path, "ab") as log:
                    log.write(b"==== pytest: broker ignored the signal; killed\n")
        return process.returncode

    def restart(self, sig: int = signal.SIGTERM) -> "Broker":
        """Stops the broker (gracefully by default) and starts it on the same port and dir."""
        self.stop(sig)
        return self.start()

    def partition_log_bytes(self, topic: str, partition: int) -> int:
        """Bytes of record data the broker holds for one partition: the sizes of the segment
        files (`<data dir>/<topic>-<partition>/*.log`, Kafka's layout). Tests use it to see
        whether a client really compressed, since the broker stores batches as sent."""
        directory = self.data_dir / f"{topic}-{partition}"
        segments = list(directory.glob("*.log"))
        assert segments, f"no segment files in {directory}"
        return sum(segment.stat().st_size for segment in segments)

    def log_text(self) -> str:
        try:
            raw = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return re.sub(r"\x1b\[[0-9;]*m", "", raw)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"---- {self.log_path} (last {len(tail)} lines) ----\n" + "\n".join(tail)


class _BrokerExited(Exception):
    pass


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the broker if pytest dies without stopping it, so
    a killed test run leaves no brokers behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: teardown still stops brokers on every normal exit


# PYTEST_STROM_KEEP=1 keeps every broker's directory (data and broker.log) for inspection.
KEEP_DIRS = os.environ.get("PYTEST_STROM_KEEP") == "1"


def _remove(root: Path) -> None:
    if not KEEP_DIRS:
        shutil.rmtree(root, ignore_errors=True)


def _scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A broker shared by the session (auto-creation on, one partition by default)."""
    root = _scratch_dir("strom-pytest-")
    instance = Broker(root)
    Broker.in_use.append(instance)
    instance.start()
    yield instance
    Broker.in_use.remove(instance)
    code = instance.stop()
    if code == 0:
        _remove(root)


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., Broker]]:
    """Starts brokers with given `--set` settings; stops them after the test."""
    created: list[Broker] = []
    roots: list[Path] = []

    def start(settings: dict[str, object] | None = None) -> Broker:
        """`settings` are broker properties by Kafka name, e.g. {"num.partitions": 3};
        "{port}" in a value is replaced by the broker's port."""
        root = _scratch_dir("strom-pytest-")
        roots.append(root)
        instance = Broker(root, {k: str(v) for k, v in (settings or {}).items()})
        created.append(instance)
        Broker.in_use.append(instance)
        return instance.start()

    yield start
    for instance in created:
        Broker.in_use.remove(instance)
        instance.stop()
    for root in roots:
        _remove(root)


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes topic names unique to this test: `topic_name("orders")`."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:80]

    def make(label: str = "t") -> str:
        return f"{base}-{label}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed and Broker.in_use:
        tails = "\n\n".join(b.log_tail() for b in Broker.in_use)
        report.sections.append(("strom broker log", tails))
