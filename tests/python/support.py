"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

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
