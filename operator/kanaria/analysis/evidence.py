"""What every judge's measurement shares: the metric names the model servers export, the
default sample sizes, who is measured, and the query helpers that turn a Prometheus answer
into a count — or into :class:`NoData`, never a guess."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kanaria.analysis.provider import MetricProvider, QueryResult
from kanaria.analysis.windows import cohort_arm
from kanaria.api.llmservers import LLM_LATENCY_KINDS, LLM_RATE_KINDS
from kanaria.api.observed import Arm
from kanaria.api.verdict import Verdict

__all__ = ["DEFAULT_MIN_SAMPLES", "LLM_DEFAULT_MIN_SAMPLES", "METRIC_NAMES", "NoData", "Target", "check_result", "cohort_of", "count_of",
           "cumulative_buckets", "labels_of", "total_of"]

LLM_DEFAULT_MIN_SAMPLES = {
    **dict.fromkeys(LLM_LATENCY_KINDS, 200),
    **dict.fromkeys(LLM_RATE_KINDS, 1000),
}

DEFAULT_MIN_SAMPLES = {
    "accuracy": 500,
    "errorRate": 1000,
    "latency": 200,
    **LLM_DEFAULT_MIN_SAMPLES,
    "drift": 1000,
    "agreement": 200,
    "feedback": 500,
    "rating": 500,
    "custom": 1,
}

METRIC_NAMES = {
    "requests": "kanaria_model_requests_total",
    "errors": "kanaria_model_errors_total",
    "latency": "kanaria_model_request_duration_seconds",
    "labels": "kanaria_model_labels_total",
    "feature": "kanaria_model_feature",
    "prediction": "kanaria_model_prediction",
    "agreement": "kanaria_model_agreement_total",
    "matured": "kanaria_model_matured_total",
    "feedback": "kanaria_model_feedback_total",
    "feedback_matured": "kanaria_model_feedback_matured_total",
    "ratings_matured": "kanaria_model_feedback_ratings_matured_total",
    "rating_sum": "kanaria_model_feedback_rating_sum_matured_total",
    "rating_squares": "kanaria_model_feedback_rating_squares_matured_total",
}


@dataclass(frozen=True)
class Target:
    """Who is being measured: the ModelDeployment and its model."""

    name: str
    namespace: str
    model: str


class NoData(Exception):
    """A query gave no usable evidence (error, empty, NaN or Inf); ``error`` is set when the
    query itself failed (the metrics could not be read)."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error

    def verdict(self, statistic: str) -> Verdict:
        if self.error is not None:
            return Verdict.unavailable_metrics(self.error, statistic=statistic)
        return Verdict.inconclusive(str(self), statistic=statistic)


def labels_of(target: Target, arm: Arm) -> dict[str, str]:
    return {"model": target.model, "revision": arm.revision}


def count_of(provider: MetricProvider, query: str, *, absent: str | None = None) -> int:
    """The query's total; with ``absent``, a result without any series is not 0 but missing
    evidence, and that is the reason given."""
    result = provider.query(query)
    check_result(result)
    if absent is not None and not result.samples:
        raise NoData(absent)
    total = result.total()
    if not math.isfinite(total) or total < 0:
        raise NoData(f"query returned {total}: {query}")
    return int(round(total))


def check_result(result: QueryResult) -> None:
    if result.error is not None:
        raise NoData(f"metrics unavailable: {result.error}", error=result.error)
    for sample in result.samples:
        if not math.isfinite(sample.value):
            raise NoData(f"query returned {sample.value}: {result.query}")


def cumulative_buckets(provider: MetricProvider, query: str) -> tuple[list[float], list[float]]:
    """(upper bounds, cumulative counts) of a ``sum by (le)`` result, sorted, +Inf last."""
    result = provider.query(query)
    check_result(result)
    pairs = sorted((float(s.labels.get("le", "nan")), s.value) for s in result.samples)
    pairs = [(le, v) for le, v in pairs if not math.isnan(le)]
    return [le for le, _ in pairs], [max(0.0, v) for _, v in pairs]


def cohort_of(arm: Arm, horizon: float) -> Arm:
    cohort = cohort_arm(arm, horizon)
    if cohort is None:
        wait = horizon - arm.window - arm.offset + 1.0
        raise NoData(f"the answers of this period mature {horizon:.0f}s after they are served "
                      f"(maturity): the first count in {wait:.0f}s")
    return cohort


def total_of(p: MetricProvider, query: str) -> float:
    result = p.query(query)
    check_result(result)
    return max(0.0, result.total())
