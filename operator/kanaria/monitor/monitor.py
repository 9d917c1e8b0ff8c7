"""ModelMonitor: the metrics a model server exports for Kanaria's analysis.

The names are a contract with the operator's query templates; see ``kanaria.monitor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kanaria.monitor.histogram import FixedBinCollector
from kanaria.monitor.pending import DropReason, PendingPrediction, PendingStore
from kanaria.monitor.profile import ReferenceProfile

__all__ = ["LATENCY_BUCKETS", "ModelMonitor"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip

_BASE = ("model", "revision")


class ModelMonitor:
    """Counts requests, errors, latency, inputs, predictions and labelled outcomes.

    One instance per served revision. Thread-safe. ``registry`` is the monitor's own
    ``CollectorRegistry`` (a fresh one unless given); expose it with
    ``prometheus_client.generate_latest(monitor.registry)`` or :meth:`exposition`.

    Predictions with a request id wait in a bounded store (``pending_max`` entries, each for
    ``pending_ttl_seconds`` on ``clock``) for :meth:`feedback`; the label is credited to the
    revision that served the prediction.
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
    ) -> None:
        self.model = model
        self.revision = revision
        self.version = version
        self.profile = profile
        self.registry = registry if registry is not None else CollectorRegistry()
        self._labels = (model, revision)
        reg = self.registry

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

        # Create every series up front so rates and increases start from an explicit zero.
        self._requests.labels(*self._labels)
        self._errors.labels(*self._labels)
        self._duration.labels(*self._labels)
        for cls in profile.classes:
            self._predictions.labels(*self._labels, cls)
        for outcome in ("correct", "incorrect"):
            self._outcomes.labels(*self._labels, outcome)
        for outcome in ("agree", "disagree"):
            self._agreement.labels(*self._labels, outcome)
        for reason in DropReason:
            self._dropped.labels(*self._labels, reason.value)

        self._pending = PendingStore(pending_max, pending_ttl_seconds, clock, self._on_drop)

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
        and, with a ``request_id``, waits for its label.
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
        found = self._pending.take(str(request_id))
        if isinstance(found, PendingPrediction):
            outcome = "correct" if str(true_label) == found.predicted_class else "incorrect"
            self._outcomes.labels(self.model, found.revision, outcome).inc()
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
        """How many predictions are waiting for a label."""
        return len(self._pending)

    def sweep(self) -> None:
        """Drop expired pending predictions now (otherwise done lazily)."""
        self._pending.sweep()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _on_drop(self, entry: PendingPrediction, reason: DropReason) -> None:
        self._dropped.labels(self.model, entry.revision, reason.value).inc()
