"""Waiting in tests: for the very condition a test asserts, bounded, never a bare sleep.

    ready = wait_until(lambda: count_workers(log) == 2, "both gunicorn workers booted",
                       details=lambda: log.read_text())

`wait_until` polls `condition` until it returns something truthy and returns that value. When the
deadline passes first it fails the test with an AssertionError that says what never happened,
after how long, and (from `details`) what was seen instead. A process that exits while a test
waits on it makes most conditions impossible: pass `give_up` to stop at once with that reason.

The deadline is a hang guard, not a speed check: generous for a loaded 2-core machine, and the
loop ends as soon as the condition holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
POLL_SECONDS = 0.05


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    details: Callable[[], str] | None = None,
    give_up: Callable[[], str | None] | None = None,
    poll: float = POLL_SECONDS,
) -> T:
    """Return `condition()`'s first truthy value; fail naming `what` if it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        reason = give_up() if give_up else None
        if reason is None and time.monotonic() >= deadline:
            reason = f"not within {timeout:g} s"
        if reason is not None:
            message = f"never happened: {what} ({reason})"
            if details is not None:
                message += f"\n{details()}"
            raise AssertionError(message)
        time.sleep(poll)
