"""The reference LLM server's scheduler: a bounded number of sequences decode at once (vLLM's
running batch), the rest wait in a queue of bounded length (its waiting queue)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["QueueFull", "Scheduler", "Ticket"]


class QueueFull(Exception):
    """More requests wait than the server queues."""


@dataclass(eq=False)
class Ticket:
    admitted: bool = False
    cancelled: bool = False


class Scheduler:
    """At most ``max_running`` requests run; the others wait, first come first served.

    ``on_change(running, waiting)`` is called (under the scheduler's lock) whenever either
    number changes.
    """

    def __init__(self, max_running: int, max_waiting: int, on_change: Any = None) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self._on_change = on_change
        self._cond = threading.Condition()
        self._queue: deque[Ticket] = deque()
        self._running = 0

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._running, len(self._queue))

    def enqueue(self) -> Ticket:
        """Join the queue (raises :class:`QueueFull` when it is full)."""
        with self._cond:
            if len(self._queue) >= self.max_waiting and self._running >= self.max_running:
                raise QueueFull(f"{len(self._queue)} requests are waiting already")
            ticket = Ticket()
            self._queue.append(ticket)
            self._admit()
            self._changed()
            return ticket

    def _admit(self) -> None:
        while self._queue and self._running < self.max_running:
            ticket = self._queue.popleft()
            ticket.admitted = True
            self._running += 1
        self._cond.notify_all()

    def wait(self, ticket: Ticket) -> None:
        """Block until ``ticket`` may run."""
        with self._cond:
            while not ticket.admitted:
                self._cond.wait()

    def release(self, ticket: Ticket) -> None:
        """A running request is done, or a waiting one gives up; either way it leaves."""
        with self._cond:
            if ticket.cancelled:
                return
            ticket.cancelled = True
            if ticket.admitted:
                self._running -= 1
            else:
                self._queue.remove(ticket)
            self._admit()
            self._changed()

    @property
    def state(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._cond:
            return self._running, len(self._queue)


# -- requests ---------------------------------------------------------------------------------
