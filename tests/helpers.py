"""Small helpers shared by the tests. Tests poll for a condition with a deadline; they never
sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises AssertionError after `timeout` seconds, naming `message` and the last value or
    exception seen, so a failing test says what it was waiting for. A callable `message` is
    called then, to describe the state at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - "not yet" can be an API error
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
