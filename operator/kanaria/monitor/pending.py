"""A bounded store of predictions waiting for their ground-truth label."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DropReason", "PendingPrediction", "PendingStore"]


class DropReason(StrEnum):
    """Why a label could not be credited (the ``reason`` label of the drop counter)."""

    EXPIRED = "expired"  # the label came after the entry's time to live
    EVICTED = "evicted"  # the store was full and the entry was pushed out, unlabelled
    UNKNOWN = "unknown"  # no such request id (never seen, already labelled, or dropped long ago)


@dataclass(frozen=True)
class PendingPrediction:
    """What a label is checked against, and the revision it is credited to."""

    revision: str
    predicted_class: str
    at: float


class PendingStore:
    """Request id -> prediction, at most ``max_size`` entries, each living ``ttl_seconds``.

    Thread-safe. Entries leave in insertion order, which is also expiry order, so both the
    size bound and the expiry are O(1) amortised. ``on_drop`` is called (under the lock) for
    every entry that leaves without a label: expired ones with ``EXPIRED`` (swept, or found
    expired when its label arrives), ones pushed out by a full store with ``EVICTED``. So every
    prediction is reported at most once; a label for an id no longer held is ``UNKNOWN`` and
    reported only by the return value of :meth:`take`.
    """

    def __init__(
        self,
        max_size: int,
        ttl_seconds: float,
        clock: Callable[[], float],
        on_drop: Callable[[PendingPrediction, DropReason], None],
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._max_size = max_size
        self._ttl = ttl_seconds
        self._clock = clock
        self._on_drop = on_drop
        self._entries: OrderedDict[str, PendingPrediction] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.at < self._ttl:
                return
            del self._entries[key]
            self._on_drop(entry, DropReason.EXPIRED)

    def put(self, request_id: str, revision: str, predicted_class: str) -> None:
        """Remember a prediction; a repeated id replaces the older entry."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            self._entries.pop(request_id, None)
            self._entries[request_id] = PendingPrediction(revision, predicted_class, now)
            while len(self._entries) > self._max_size:
                _, evicted = self._entries.popitem(last=False)
                self._on_drop(evicted, DropReason.EVICTED)

    def take(self, request_id: str) -> PendingPrediction | DropReason:
        """Remove and return the entry, or why there is none usable."""
        now = self._clock()
        with self._lock:
            entry = self._entries.pop(request_id, None)
            if entry is None:
                self._expire(now)
                return DropReason.UNKNOWN
            if now - entry.at >= self._ttl:
                self._on_drop(entry, DropReason.EXPIRED)
                self._expire(now)
                return DropReason.EXPIRED
            self._expire(now)
            return entry

    def sweep(self) -> None:
        """Drop what has expired (also done on every put and take)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
