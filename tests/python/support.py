"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

POLL_INTERVAL_S = 0.05
# How long a test waits for records to arrive or metadata to settle, in seconds.
DEFAULT_WAIT_S = 30.0

T = TypeVar("T")


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
