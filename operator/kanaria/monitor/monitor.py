"""ModelMonitor: the metrics a model server exports for Kanaria's analysis.

The names are a contract with the operator's query templates; see ``kanaria.monitor``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kanaria.monitor.feedback import UserFeedback
from kanaria.monitor.histogram import FixedBinCollector, cumulative_buckets
from kanaria.monitor.pending import DropReason, Outcome, PendingPrediction, PendingStore
from kanaria.monitor.profile import ReferenceProfile

__all__ = [
    "DEFAULT_MATURITY_HORIZONS",
    "LABEL_DELAY_BUCKETS",
    "LATENCY_BUCKETS",
    "MATURITY_HORIZONS_ENV",
    "ModelMonitor",
    "horizons_from_env",
    "parse_horizons",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip

LABEL_DELAY_BUCKETS: tuple[float, ...] = (
    0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400,
)  # fmt: skip
"""Label delay, 0.5 s to 24 h, roughly log-spaced: enough to read a horizon off its tail."""

MATURITY_HORIZONS_ENV = "KANARIA_MATURITY_HORIZONS"
DEFAULT_MATURITY_HORIZONS: tuple[float, ...] = (300.0,)

_BASE = ("model", "revision")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")


def parse_horizons(text: str) -> tuple[float, ...]:
    """Comma-separated durations (``10s,5m,1h``, or plain seconds) -> seconds, sorted."""
    horizons: set[float] = set()
    for part in text.split(","):
        match = _DURATION.fullmatch(part.strip().lower())
        if match is None:
            raise ValueError(
                f"{MATURITY_HORIZONS_ENV}: {part.strip()!r} is not a duration; give a "
                "comma-separated list like 10s,5m,1h (or plain seconds)"
            )
        horizons.add(float(match.group(1)) * _UNITS[match.group(2)])
    return tuple(sorted(horizons))


def horizons_from_env(env: Mapping[str, str]) -> tuple[float, ...]:
    """The horizons ``KANARIA_MATURITY_HORIZONS`` asks for, else the default (300 s)."""
    raw = env.get(MATURITY_HORIZONS_ENV, "").strip()
    return parse_horizons(raw) if raw else DEFAULT_MATURITY_HORIZONS


def _horizon_label(horizon: float) -> str:
    return str(int(horizon))


class ModelMonitor:
    """Counts requests, errors, latency, inputs, predictions and labelled outcomes.

    One instance per served revision. Thread-safe. ``registry`` is the monitor's own
    ``CollectorRegistry`` (a fresh one unless given); expose it with
    ``prometheus_client.generate_latest(monitor.registry)`` or :meth:`exposition`.

    Predictions with a request id wait in a bounded store (``pending_max`` entries, each for
    ``pending_ttl_seconds`` on ``clock``) for :meth:`feedback`; the label is credited to the
    revision that served the prediction. Each such prediction also matures once per
    ``maturity_horizons`` entry H (seconds; default from ``KANARIA_MATURITY_HORIZONS``, else
    300) when its age reaches H, counted in ``kanaria_model_matured_total{horizon, outcome}``:
    correct / incorrect if its label arrived within H, else unlabelled. Maturing is done
    lazily, on every scrape and :meth:`sweep`. Call :meth:`close` on shutdown.
    """

    def __init__(
        self,
        model: str,
        revision: str,
        profile: ReferenceProfile,
        registry: CollectorRegistry | None = None,
        pending_max: int = 100_000,
        pending_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        version: str = "",
        maturity_horizons: Sequence[float] | None = None,
        feedback_signals: Sequence[str] = (),
        rating_scales: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        if maturity_horizons is None:
            maturity_horizons = horizons_from_env(os.environ)
        self.model = model
        self.revision = revision
        self.version = version
        self.profile = profile
        self.registry = registry if registry is not None else CollectorRegistry()
        self._labels = (model, revision)
        reg = self.registry
        self._pending = PendingStore(
            pending_max,
            pending_ttl_seconds,
            clock,
            self._on_drop,
            horizons=maturity_horizons,
            on_mature=self._on_mature,
        )
        self.maturity_horizons = self._pending.horizons
        self._matured = Counter(
            "kanaria_model_matured",
            "Predictions matured at a horizon, by outcome (a label within the horizon, or none).",
            (*_BASE, "horizon", "outcome"),
            registry=None,  # exported by the _Maturity collector, after it has swept
        )
        # Registered first, so a scrape matures and expires what is due before anything else
        # (the drop counter among them) is read.
        reg.register(_Maturity(self._pending, self._matured, self._labels))

        self._requests = Counter(
            "kanaria_model_requests", "Prediction requests received.", _BASE, registry=reg
        )
        self._errors = Counter(
            "kanaria_model_errors", "Prediction requests that failed (5xx).", _BASE, registry=reg
        )
        self._duration = Histogram(
            "kanaria_model_request_duration_seconds",
            "Time to answer a prediction request.",
            _BASE,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._predictions = Counter(
            "kanaria_model_predictions",
            "Predictions made, by predicted class.",
            (*_BASE, "class"),
            registry=reg,
        )
        self._outcomes = Counter(
            "kanaria_model_labels",
            "Predictions whose ground-truth label arrived, by outcome.",
            (*_BASE, "outcome"),
            registry=reg,
        )
        self._agreement = Counter(
            "kanaria_model_agreement",
            "Labelled predictions compared with the prediction served to the user, by outcome.",
            (*_BASE, "outcome"),
            registry=reg,
        )
        self._label_delay = Histogram(
            "kanaria_model_label_delay_seconds",
            "Time from a prediction to its ground-truth label, by the label's outcome.",
            (*_BASE, "outcome"),
            buckets=LABEL_DELAY_BUCKETS,
            registry=reg,
        )
        self._dropped = Counter(
            "kanaria_model_feedback_dropped",
            "Predictions or labels that could not be matched, by reason.",
            (*_BASE, "reason"),
            registry=reg,
        )
        info = Gauge(
            "kanaria_model_info", "The served model version.", (*_BASE, "version"), registry=reg
        )
        info.labels(model, revision, version).set(1)

        self._features = FixedBinCollector(
            "kanaria_model_feature",
            "Input feature values on the reference profile's bins.",
            (*_BASE, "feature"),
        )
        for name, edges in zip(profile.feature_names, profile.feature_edges, strict=True):
            self._features.add_series((*self._labels, name), edges)
        self._scores = FixedBinCollector(
            "kanaria_model_prediction",
            "Prediction score (probability of the predicted class) on the profile's bins.",
            _BASE,
        )
        self._scores.add_series(self._labels, profile.score_edges)
        reg.register(self._features)
        reg.register(self._scores)
        reg.register(_Reference(profile, self._labels))
        self.user_feedback: UserFeedback | None = None
        """User feedback on the answers (``feedback_signals``: thumbs, task success;
        ``rating_scales``: ratings with their ranges), in cohorts like the labels; see
        :mod:`kanaria.monitor.feedback`. Every request with an id waits for it."""
        if feedback_signals or rating_scales:
            self.user_feedback = UserFeedback(
                model, revision, signals=feedback_signals, ratings=rating_scales, registry=reg,
                pending_max=pending_max, pending_ttl_seconds=pending_ttl_seconds, clock=clock,
                maturity_horizons=self.maturity_horizons,
            )  # fmt: skip

        # Create every series up front so rates and increases start from an explicit zero.
        self._requests.labels(*self._labels)
        self._errors.labels(*self._labels)
        self._duration.labels(*self._labels)
        for cls in profile.classes:
            self._predictions.labels(*self._labels, cls)
        for outcome in ("correct", "incorrect"):
            self._outcomes.labels(*self._labels, outcome)
            self._label_delay.labels(*self._labels, outcome)
        for horizon in self.maturity_horizons:
            for matured in Outcome:
                self._matured.labels(*self._labels, _horizon_label(horizon), matured.value)
        for outcome in ("agree", "disagree"):
            self._agreement.labels(*self._labels, outcome)
        for reason in DropReason:
            self._dropped.labels(*self._labels, reason.value)

    def observe_request(
        self,
        request_id: str | None,
        features: Sequence[float] | None,
        predicted_class: str | None,
        score: float | None,
        latency_s: float,
        error: bool = False,
    ) -> None:
        """Record one prediction request.

        ``features`` (in profile order) are binned even for a failed request: they describe
        the input. A successful request with a ``predicted_class`` is counted as a prediction
        and, with a ``request_id``, waits for its label. ``score`` is the probability the
        model gives ``predicted_class``: then ``kanaria_model_prediction``'s ``_sum / _count``
        is the mean confidence, for calibrated predictions the expected accuracy.
        """
        values: list[float] | None = None
        if features is not None:
            values = [float(v) for v in features]
            if len(values) != self.profile.n_features:
                raise ValueError(
                    f"expected {self.profile.n_features} features, got {len(values)}"
                )
        self._requests.labels(*self._labels).inc()
        self._duration.labels(*self._labels).observe(latency_s)
        if error:
            self._errors.labels(*self._labels).inc()
        if values is not None:
            self._features.observe_many(
                [
                    ((*self._labels, name), value)
                    for name, value in zip(self.profile.feature_names, values, strict=True)
                ]
            )
        if request_id and not error and self.user_feedback is not None:
            self.user_feedback.answered(str(request_id))
        if error or predicted_class is None:
            return
        self._predictions.labels(*self._labels, str(predicted_class)).inc()
        if score is not None:
            self._scores.observe(self._labels, float(score))
        if request_id:
            self._pending.put(str(request_id), self.revision, str(predicted_class))

    def feedback(
        self, request_id: str, true_label: object, served_prediction: object | None = None
    ) -> bool:
        """Credit a ground-truth label to the prediction it belongs to; False if dropped.

        ``served_prediction`` is the class the user was actually given for this request (by
        whichever revision served it). When present, this revision's own prediction is
        compared with it: always "agree" on the revision that served it, the real agreement
        rate on a shadow that only saw a mirrored copy.
        """
        found = self._pending.label(str(request_id), str(true_label))
        if isinstance(found, PendingPrediction):
            outcome = "correct" if found.correct else "incorrect"
            self._outcomes.labels(self.model, found.revision, outcome).inc()
            if found.label_delay is not None:
                self._label_delay.labels(self.model, found.revision, outcome).observe(
                    found.label_delay
                )
            if served_prediction is not None:
                agreed = str(served_prediction) == found.predicted_class
                self._agreement.labels(
                    self.model, found.revision, "agree" if agreed else "disagree"
                ).inc()
            return True
        if found is DropReason.UNKNOWN:
            self._dropped.labels(*self._labels, DropReason.UNKNOWN.value).inc()
        return False

    @property
    def pending(self) -> int:
        """Predictions not yet matured at every horizon (``kanaria_model_pending_predictions``:
        what a crash now would lose from the matured counts)."""
        return self._pending.unmatured

    def sweep(self) -> None:
        """Mature and expire pending predictions now (otherwise done on scrape and use)."""
        self._pending.sweep()

    def close(self) -> int:
        """On shutdown: mature what is due and count every prediction still waiting to mature
        as dropped (``reason="shutdown"``); returns how many. The monitor stays usable. Answers
        still waiting for user feedback are counted as ``shutdown`` in
        ``kanaria_model_feedback_unmatched_total``."""
        if self.user_feedback is not None:
            self.user_feedback.close()
        return self._pending.close()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _on_drop(self, entry: PendingPrediction, reason: DropReason) -> None:
        self._dropped.labels(self.model, entry.revision, reason.value).inc()

    def _on_mature(self, entry: PendingPrediction, horizon: float, outcome: Outcome) -> None:
        self._matured.labels(self.model, entry.revision, _horizon_label(horizon), outcome.value).inc()


class _Maturity(Collector):
    """Matures what is due, then exports the matured counter and the pending gauge."""

    def __init__(self, store: PendingStore, matured: Counter, labels: tuple[str, str]) -> None:
        self._store = store
        self._matured = matured
        self._labels = labels

    def _pending(self, value: float) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "kanaria_model_pending_predictions",
            "Predictions not yet matured at every horizon (lost if the server stops now).",
            labels=_BASE,
        )
        gauge.add_metric(list(self._labels), value)
        return gauge

    def describe(self) -> list[Metric]:
        return [*self._matured.describe(), self._pending(0)]

    def collect(self) -> Iterator[Metric]:
        self._store.sweep()
        yield from self._matured.collect()
        yield self._pending(self._store.unmatured)


class _Reference(Collector):
    """The profile's reference counts and accuracy as gauges; only the parts it has.

    The counts are cumulative per ``le``, on the same ``le`` strings as the live
    ``kanaria_model_feature`` and ``kanaria_model_prediction`` buckets.
    """

    def __init__(self, profile: ReferenceProfile, labels: tuple[str, str]) -> None:
        self._profile = profile
        self._labels = list(labels)

    def _families(self) -> list[Metric]:
        profile, labels = self._profile, self._labels
        families: list[Metric] = []
        if profile.feature_counts is not None:
            features = GaugeMetricFamily(
                "kanaria_model_reference_feature",
                "Reference rows (training data) per feature at or below le, cumulative.",
                labels=(*_BASE, "feature", "le"),
            )
            for name, edges, counts in zip(
                profile.feature_names, profile.feature_edges, profile.feature_counts, strict=True
            ):
                for le, value in cumulative_buckets(edges, counts):
                    features.add_metric([*labels, name, le], value)
            families.append(features)
        if profile.score_counts is not None:
            scores = GaugeMetricFamily(
                "kanaria_model_reference_prediction",
                "Reference prediction scores (probability of the predicted class) at or below "
                "le, cumulative.",
                labels=(*_BASE, "le"),
            )
            for le, value in cumulative_buckets(profile.score_edges, profile.score_counts):
                scores.add_metric([*labels, le], value)
            families.append(scores)
        if profile.accuracy is not None and profile.accuracy_samples is not None:
            accuracy = GaugeMetricFamily(
                "kanaria_model_reference_accuracy",
                "Offline accuracy of this revision on held-out rows.",
                labels=_BASE,
            )
            accuracy.add_metric(labels, profile.accuracy)
            samples = GaugeMetricFamily(
                "kanaria_model_reference_accuracy_samples",
                "Held-out rows the offline accuracy was measured on.",
                labels=_BASE,
            )
            samples.add_metric(labels, profile.accuracy_samples)
            families += [accuracy, samples]
        return families

    def describe(self) -> list[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families()
