"""A bounded store of predictions waiting for their ground-truth label and their maturity.

A prediction *matures* at each horizon H when its age reaches H: its outcome for that horizon
is the label's (correct / incorrect) if the label arrived within H of the prediction, else
unlabelled. So the predictions maturing in any window are exactly the cohort served H earlier,
whatever their labels' delays.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DropReason", "Outcome", "PendingPrediction", "PendingStore"]


class DropReason(StrEnum):
    """Why a prediction or label was lost (the ``reason`` label of the drop counter)."""

    EXPIRED = "expired"  # no label within the entry's time to live
    EVICTED = "evicted"  # the store was full and the entry was pushed out (see PendingStore)
    REPLACED = "replaced"  # a later prediction came with the same request id
    SHUTDOWN = "shutdown"  # the store was closed before the prediction matured everywhere
    UNKNOWN = "unknown"  # no such request id (never seen, already labelled, or dropped long ago)


class Outcome(StrEnum):
    """A prediction's outcome at one maturity horizon (the ``outcome`` label)."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class PendingPrediction:
    """What a label is checked against, and the revision it is credited to.

    ``label_delay`` (seconds from the prediction to its label) and ``correct`` are set once
    the label has arrived.
    """

    revision: str
    predicted_class: str
    at: float
    label_delay: float | None = None
    correct: bool | None = None
    value: float | None = None
    """A number the label carried (a rating), when it did."""


class _Entry:
    """The mutable record behind a :class:`PendingPrediction` (slots: it is kept by the
    hundred thousand)."""

    __slots__ = (
        "at", "correct", "delay", "gone", "matured", "predicted_class", "request_id", "revision", "value",
    )

    def __init__(self, request_id: str, revision: str, predicted_class: str, at: float) -> None:
        self.request_id = request_id
        self.revision = revision
        self.predicted_class = predicted_class
        self.at = at
        self.delay: float | None = None  # label delay, once labelled
        self.correct = False
        self.matured = 0  # how many horizons (the smallest first) it has matured at
        self.gone = False  # evicted, replaced or shut down: it matures at no further horizon
        self.value: float | None = None  # a number the label carried (a rating)

    def public(self) -> PendingPrediction:
        correct = None if self.delay is None else self.correct
        return PendingPrediction(self.revision, self.predicted_class, self.at, self.delay, correct, self.value)


def validate_horizons(horizons: Sequence[float], ttl_seconds: float) -> tuple[float, ...]:
    """``horizons`` sorted, checked: whole positive seconds, distinct, none beyond the TTL."""
    checked = tuple(sorted(float(h) for h in horizons))
    for h in checked:
        if not math.isfinite(h) or h <= 0 or h != int(h):
            raise ValueError(f"a maturity horizon must be a whole positive number of seconds, not {h!r}")
    if len(set(checked)) != len(checked):
        raise ValueError(f"maturity horizons must be distinct, not {list(checked)}")
    if checked and checked[-1] > ttl_seconds:
        raise ValueError(
            f"the pending time to live ({ttl_seconds:g} s) must be at least the largest "
            f"maturity horizon ({checked[-1]:g} s): a prediction must be kept until it matures"
        )
    return checked


class PendingStore:
    """Request id -> prediction, at most ``max_size`` entries, each kept ``ttl_seconds``.

    Thread-safe; every callback is called under the store's lock. Work is done lazily on
    ``put``, ``label`` and ``sweep``, on ``clock``:

    - each prediction matures once per horizon (``horizons``, seconds, each at most
      ``ttl_seconds``) when its age reaches it: ``on_mature(prediction, horizon, outcome)``;
    - an entry without a label is kept ``ttl_seconds`` (so a late label is still counted on
      arrival), then leaves with ``on_drop(..., EXPIRED)``; a labelled one leaves when it has
      matured at every horizon;
    - a full store pushes out its oldest entry: ``EVICTED`` (counted if the entry still had a
      label or a horizon to wait for); it matures at no further horizon;
    - a prediction whose request id comes again is replaced: ``REPLACED``, same rule;
    - :meth:`close` reports every prediction not yet matured at every horizon: ``SHUTDOWN``.

    Every prediction is reported at most once. Entries leave in insertion order, which is also
    maturity and expiry order, so the work is O(1) amortised per prediction and horizon. The
    memory held is bounded by ``max_size`` entries plus, per horizon, at most
    ``2 * max_size`` references.
    """

    def __init__(
        self,
        max_size: int,
        ttl_seconds: float,
        clock: Callable[[], float],
        on_drop: Callable[[PendingPrediction, DropReason], None],
        horizons: Sequence[float] = (),
        on_mature: Callable[[PendingPrediction, float, Outcome], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.horizons = validate_horizons(horizons, ttl_seconds)
        self._max_size = max_size
        self._ttl = ttl_seconds
        self._clock = clock
        self._on_drop = on_drop
        self._on_mature = on_mature
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Per horizon, the entries not yet matured at it, oldest first (some may be gone).
        self._due: list[deque[_Entry]] = [deque() for _ in self.horizons]
        self._unmatured = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Entries held: waiting for a label, or labelled and waiting to mature."""
        with self._lock:
            return len(self._entries)

    @property
    def unmatured(self) -> int:
        """Predictions not yet matured at every horizon: what a crash now would lose."""
        with self._lock:
            return self._unmatured

    # -- the lazy work, under the lock ------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Mature what is due (smallest horizon first), then expire what is old."""
        last = len(self.horizons)
        for horizon, due in zip(self.horizons, self._due, strict=True):
            while due and now - due[0].at >= horizon:
                entry = due.popleft()
                if entry.gone:
                    continue
                entry.matured += 1
                if entry.delay is None or entry.delay > horizon:
                    outcome = Outcome.UNLABELLED
                else:
                    outcome = Outcome.CORRECT if entry.correct else Outcome.INCORRECT
                if self._on_mature is not None:
                    self._on_mature(entry.public(), horizon, outcome)
                if entry.matured == last:
                    self._unmatured -= 1
                    if entry.delay is not None:
                        self._entries.pop(entry.request_id, None)
        while self._entries:
            entry = next(iter(self._entries.values()))
            if now - entry.at < self._ttl:
                return
            del self._entries[entry.request_id]
            self._drop(entry, DropReason.EXPIRED)

    def _drop(self, entry: _Entry, reason: DropReason) -> None:
        """Take ``entry`` out of the maturing; report it if it still had something to wait for."""
        entry.gone = True
        waiting = entry.matured < len(self.horizons)
        if waiting:
            self._unmatured -= 1
        if waiting or entry.delay is None:
            self._on_drop(entry.public(), reason)

    def _tidy(self) -> None:
        """Forget gone entries: at the front of each queue (evicted ones are the oldest), or
        everywhere once a queue holds twice as many as the store may."""
        for index, due in enumerate(self._due):
            while due and due[0].gone:
                due.popleft()
            if len(due) > 2 * self._max_size:
                self._due[index] = deque(e for e in due if not e.gone)

    # -- the interface ----------------------------------------------------------------------

    def put(self, request_id: str, revision: str, predicted_class: str) -> None:
        """Remember a prediction; a repeated id replaces the older entry."""
        now = self._clock()
        with self._lock:
            self._advance(now)
            older = self._entries.pop(request_id, None)
            if older is not None:
                self._drop(older, DropReason.REPLACED)
            entry = _Entry(request_id, revision, predicted_class, now)
            self._entries[request_id] = entry
            for due in self._due:
                due.append(entry)
            if self._due:
                self._unmatured += 1
            while len(self._entries) > self._max_size:
                _, evicted = self._entries.popitem(last=False)
                self._drop(evicted, DropReason.EVICTED)
            self._tidy()

    def label(self, request_id: str, true_label: str, value: float | None = None) -> PendingPrediction | DropReason:
        """Record the label of a prediction and return it (with its delay and outcome), or
        why it cannot be credited. ``value``: a number the label carries (a rating), kept
        with it until it matures."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(request_id)
            if entry is None or entry.delay is not None:
                self._advance(now)
                return DropReason.UNKNOWN
            if now - entry.at >= self._ttl:
                self._advance(now)  # matures it where due, then expires (reports) it
                return DropReason.EXPIRED
            # Labelled before maturing: a label exactly H after its prediction is within H.
            entry.delay = now - entry.at
            entry.correct = str(true_label) == entry.predicted_class
            entry.value = value
            self._advance(now)
            if entry.matured == len(self.horizons):
                self._entries.pop(request_id, None)
            return entry.public()

    def sweep(self) -> None:
        """Mature and expire what is due (also done on every put and label)."""
        now = self._clock()
        with self._lock:
            self._advance(now)

    def close(self) -> int:
        """Mature what is due, report the rest as ``SHUTDOWN``, forget everything; returns
        how many predictions were reported. The store stays usable."""
        now = self._clock()
        with self._lock:
            self._advance(now)
            lost = self._unmatured
            for entry in self._entries.values():
                if not entry.gone and entry.matured < len(self.horizons):
                    self._drop(entry, DropReason.SHUTDOWN)
            self._entries.clear()
            for due in self._due:
                due.clear()
            self._unmatured = 0
            return lost
