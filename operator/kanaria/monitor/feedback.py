"""User feedback as delayed labels: thumbs, task success and ratings, credited to the revision
that served the answer and counted in cohorts, like ground-truth labels.

A server calls :meth:`UserFeedback.answered` with the request id of every answer it gives,
then :meth:`UserFeedback.feedback` (a proportion: thumbs up/down, task success) or
:meth:`UserFeedback.rating` (a bounded mean: a rating in a declared range) when the user
reacts. Each answer *matures* once per maturity horizon H (``KANARIA_MATURITY_HORIZONS``, as
for labels) when its age reaches H, with the feedback it got within H — or none: any window of
the matured counters is exactly the cohort of answers served H earlier, so a revision's
feedback is never judged on a different mix of answers than its rival's.

Metrics (labels ``model``, ``revision``, ``signal`` — the name of the feedback signal, for
example ``thumbs``, ``task_success`` or ``stars`` — and ``horizon`` in whole seconds where
matured):

- ``kanaria_model_feedback_total{signal, outcome="positive"|"negative"}``: proportion
  feedback, counted when it arrives;
- ``kanaria_model_feedback_matured_total{signal, horizon, outcome="positive"|"negative"|"none"}``:
  each answer once per horizon, with the feedback it got within H (``none``: no feedback by
  then) — what Kanaria's ``feedback`` metric kind judges;
- ``kanaria_model_feedback_ratings_total{signal}``: ratings, counted when they arrive;
- ``kanaria_model_feedback_ratings_matured_total{signal, horizon, outcome="rated"|"none"}``,
  ``kanaria_model_feedback_rating_sum_matured_total{signal, horizon}`` and
  ``kanaria_model_feedback_rating_squares_matured_total{signal, horizon}``: per horizon, how
  many answers matured rated, and the sum and the sum of squares of their ratings *shifted to
  start at 0* (rating − low: counters never decrease, even for a range like −2..2); a mean is
  low + sum/count, a variance squares/count − (sum/count)² — what the ``rating`` kind judges;
- ``kanaria_model_feedback_rating_range{signal, bound="low"|"high"}``: the declared range;
- ``kanaria_model_feedback_unmatched_total{signal, reason}``: feedback that could not be
  credited (``unknown``: an id never answered here, already rated or forgotten; ``expired``:
  feedback later than the time to live) and answers forgotten before they matured
  (``evicted``, ``replaced``, ``shutdown``). An answer that simply got no feedback is not
  counted here: it matures as ``none``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from kanaria.monitor.pending import DropReason, Outcome, PendingPrediction, PendingStore

__all__ = ["UserFeedback", "DEFAULT_SIGNAL", "DEFAULT_RATING"]

DEFAULT_SIGNAL = "thumbs"
DEFAULT_RATING = "rating"
_BASE = ("model", "revision", "signal")
_SIGNAL_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
_POSITIVE, _NEGATIVE = "positive", "negative"


def _horizon_label(horizon: float) -> str:
    return str(int(horizon))


def _check_signal(name: str) -> str:
    if not name or len(name) > 63 or not set(name) <= _SIGNAL_NAME:
        raise ValueError(f"a feedback signal needs a short name of letters, digits and -_.: (not {name!r})")
    return name


class UserFeedback:
    """Feedback on the answers of one served revision. Thread-safe.

    ``signals``: the proportion signals recorded (default ``("thumbs",)``); ``ratings``: the
    rating signals, each with its range ``(low, high)``. Every answer given with a request id
    (:meth:`answered`) waits ``pending_ttl_seconds`` (at most ``pending_max`` answers) for one
    piece of feedback per signal. ``maturity_horizons`` default to
    ``KANARIA_MATURITY_HORIZONS`` (else 300 s), the horizons the operator asks for. Metrics go
    to ``registry`` (a fresh one unless given), so a server can add them to the registry it
    already exports. Maturing is done lazily, on every scrape and call.
    """

    def __init__(
        self,
        model: str,
        revision: str,
        *,
        signals: Sequence[str] = (DEFAULT_SIGNAL,),
        ratings: Mapping[str, tuple[float, float]] | None = None,
        registry: CollectorRegistry | None = None,
        pending_max: int = 100_000,
        pending_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        maturity_horizons: Sequence[float] | None = None,
    ) -> None:
        from kanaria.monitor.monitor import horizons_from_env  # the env rule lives there

        if maturity_horizons is None:
            maturity_horizons = horizons_from_env(os.environ)
        ratings = dict(ratings or {})
        names = [_check_signal(s) for s in (*signals, *ratings)]
        if len(set(names)) != len(names):
            raise ValueError(f"feedback signals must have distinct names, not {names}")
        for name, (low, high) in ratings.items():
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"rating {name!r}: the range must be finite with low < high, not {(low, high)}")
        self.model = model
        self.revision = revision
        self.signals = tuple(signals)
        self.ratings = {k: (float(lo), float(hi)) for k, (lo, hi) in ratings.items()}
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = (model, revision)
        self._labels = labels
        self._stores: dict[str, PendingStore] = {}
        for name in names:
            self._stores[name] = PendingStore(
                pending_max, pending_ttl_seconds, clock,
                self._dropper(name), horizons=maturity_horizons, on_mature=self._maturer(name),
            )  # fmt: skip
        self.maturity_horizons = next(iter(self._stores.values())).horizons if self._stores else ()

        # Matured counters: exported by the collector below, after it has matured what is due.
        self._matured = Counter(
            "kanaria_model_feedback_matured",
            "Answers matured at a horizon, by the proportion feedback they got within it (none: no feedback).",
            (*_BASE, "horizon", "outcome"), registry=None,
        )  # fmt: skip
        self._rated = Counter(
            "kanaria_model_feedback_ratings_matured",
            "Answers matured at a horizon, rated within it or not (none).",
            (*_BASE, "horizon", "outcome"), registry=None,
        )  # fmt: skip
        self._sum = Counter(
            "kanaria_model_feedback_rating_sum_matured",
            "Sum of (rating - low) over the answers matured rated at a horizon.",
            (*_BASE, "horizon"), registry=None,
        )  # fmt: skip
        self._squares = Counter(
            "kanaria_model_feedback_rating_squares_matured",
            "Sum of (rating - low)^2 over the answers matured rated at a horizon.",
            (*_BASE, "horizon"), registry=None,
        )  # fmt: skip
        self._unmatched = Counter(
            "kanaria_model_feedback_unmatched",
            "Feedback that could not be credited, and answers forgotten before they matured, by reason.",
            (*_BASE, "reason"), registry=None,
        )  # fmt: skip
        self.registry.register(_Maturing(self))
        self._arrived = Counter(
            "kanaria_model_feedback", "Proportion feedback on answers, counted on arrival.",
            (*_BASE, "outcome"), registry=self.registry,
        )  # fmt: skip
        self._ratings = Counter(
            "kanaria_model_feedback_ratings", "Ratings of answers, counted on arrival.",
            _BASE, registry=self.registry,
        )  # fmt: skip
        if self.ratings:
            scale = Gauge(
                "kanaria_model_feedback_rating_range", "The declared range of a rating signal.",
                (*_BASE, "bound"), registry=self.registry,
            )  # fmt: skip
            for name, (low, high) in self.ratings.items():
                scale.labels(*labels, name, "low").set(low)
                scale.labels(*labels, name, "high").set(high)

        # Every series from the start, so increases begin at an explicit zero.
        for name in self.signals:
            for outcome in (_POSITIVE, _NEGATIVE):
                self._arrived.labels(*labels, name, outcome)
            for horizon in self.maturity_horizons:
                for outcome in (_POSITIVE, _NEGATIVE, "none"):
                    self._matured.labels(*labels, name, _horizon_label(horizon), outcome)
        for name in self.ratings:
            self._ratings.labels(*labels, name)
            for horizon in self.maturity_horizons:
                h = _horizon_label(horizon)
                for outcome in ("rated", "none"):
                    self._rated.labels(*labels, name, h, outcome)
                self._sum.labels(*labels, name, h)
                self._squares.labels(*labels, name, h)
        for name in names:
            for reason in DropReason:
                self._unmatched.labels(*labels, name, reason.value)

    # -- recording ---------------------------------------------------------------------------

    def answered(self, request_id: str) -> None:
        """An answer was given for ``request_id``: feedback on it may come (once per signal)."""
        for store in self._stores.values():
            store.put(str(request_id), self.revision, _POSITIVE)

    def feedback(self, request_id: str, positive: bool, signal: str = DEFAULT_SIGNAL) -> bool:
        """Proportion feedback (thumbs up = positive) on the answer to ``request_id``; False if
        it cannot be credited (unknown or expired id, rated already)."""
        if signal not in self.signals:
            raise ValueError(f"unknown feedback signal {signal!r}; declared: {list(self.signals)}")
        outcome = _POSITIVE if positive else _NEGATIVE
        found = self._label(signal, request_id, outcome, None)
        if found is None:
            return False
        self._arrived.labels(self.model, found.revision, signal, outcome).inc()
        return True

    def rating(self, request_id: str, value: float, signal: str = DEFAULT_RATING) -> bool:
        """A rating of the answer to ``request_id``, within the signal's declared range (else
        ValueError); False if it cannot be credited."""
        if signal not in self.ratings:
            raise ValueError(f"unknown rating signal {signal!r}; declared: {list(self.ratings)}")
        low, high = self.ratings[signal]
        number = float(value)
        if not (math.isfinite(number) and low <= number <= high):
            raise ValueError(f"rating {signal!r} must lie within [{low:g}, {high:g}], not {value!r}")
        found = self._label(signal, request_id, _POSITIVE, number - low)
        if found is None:
            return False
        self._ratings.labels(self.model, found.revision, signal).inc()
        return True

    def _label(self, signal: str, request_id: str, outcome: str, value: float | None) -> PendingPrediction | None:
        found = self._stores[signal].label(str(request_id), outcome, value)
        if isinstance(found, PendingPrediction):
            return found
        if found in (DropReason.UNKNOWN, DropReason.EXPIRED):
            self._unmatched.labels(*self._labels, signal, found.value).inc()
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Answers not yet matured at every horizon (the largest over the signals)."""
        return max((s.unmatured for s in self._stores.values()), default=0)

    def sweep(self) -> None:
        """Mature what is due now (otherwise done on scrape and on every call)."""
        for store in self._stores.values():
            store.sweep()

    def close(self) -> int:
        """On shutdown: count every answer still waiting to mature as ``shutdown``; returns
        how many answers (the largest over the signals)."""
        return max((s.close() for s in self._stores.values()), default=0)

    # -- callbacks, under a store's lock --------------------------------------------------------

    def _dropper(self, signal: str) -> Callable[[PendingPrediction, DropReason], None]:
        def drop(entry: PendingPrediction, reason: DropReason) -> None:
            if reason is not DropReason.EXPIRED:  # no feedback within the TTL: simply none
                self._unmatched.labels(self.model, entry.revision, signal, reason.value).inc()

        return drop

    def _maturer(self, signal: str) -> Callable[[PendingPrediction, float, Outcome], None]:
        rating = signal in self.ratings

        def mature(entry: PendingPrediction, horizon: float, outcome: Outcome) -> None:
            labels = (self.model, entry.revision, signal, _horizon_label(horizon))
            if not rating:
                shown = {Outcome.CORRECT: _POSITIVE, Outcome.INCORRECT: _NEGATIVE}.get(outcome, "none")
                self._matured.labels(*labels, shown).inc()
            elif outcome is Outcome.UNLABELLED or entry.value is None:
                self._rated.labels(*labels, "none").inc()
            else:
                self._rated.labels(*labels, "rated").inc()
                self._sum.labels(*labels).inc(entry.value)
                self._squares.labels(*labels).inc(entry.value * entry.value)

        return mature


class _Maturing(Collector):
    """Matures what is due, then exports the matured and unmatched counters."""

    def __init__(self, owner: UserFeedback) -> None:
        self._owner = owner

    def _families(self) -> list[Counter]:
        o = self._owner
        return [o._matured, o._rated, o._sum, o._squares, o._unmatched]

    def describe(self) -> list[Metric]:
        return [m for c in self._families() for m in c.describe()]

    def collect(self) -> Iterator[Metric]:
        self._owner.sweep()
        for counter in self._families():
            yield from counter.collect()
