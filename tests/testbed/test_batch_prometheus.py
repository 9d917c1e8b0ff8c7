"""Batched analysis against a real Prometheus: the verdicts of many objects measured in one
batch are exactly those each gets measured alone, from a fraction of the requests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from kanaria.analysis.measure import Target, measure
from kanaria.analysis.prometheus import PrometheusProvider
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm
from kanaria.controller.batch import Batcher, _Pending
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget

pytestmark = pytest.mark.prometheus

OBJECTS = 8
BUCKETS = (0.05, 0.1, 0.25, 0.5, math.inf)


def _latency(exporter: MetricsExporter, revision: str, model: str, slow: float) -> None:
    # 1000 requests: the share above 0.1 s grows with ``slow``.
    above = int(200 * slow)
    counts = {0.05: 500 - above, 0.1: 800 - above, 0.25: 950, 0.5: 990, math.inf: 1000}
    exporter.set_histogram("kanaria_model_request_duration_seconds", {b: counts[b] for b in BUCKETS},
                           total=100.0, labels={"revision": revision, "model": model})


def _traffic(exporter: MetricsExporter, scale: int) -> None:
    for i in range(OBJECTS):
        model = f"m{i}"
        for revision, errors in ((f"s{i}", 10), (f"c{i}", 10 + 15 * i)):
            labels = {"revision": revision, "model": model}
            exporter.counter("kanaria_model_requests_total", labels=labels).inc(2000 * scale)
            exporter.counter("kanaria_model_errors_total", labels=labels).inc(errors * scale)


def test_batched_verdicts_equal_the_per_object_ones_from_a_fraction_of_the_requests(
    exporter: MetricsExporter, prometheus_factory: Callable[..., LocalPrometheus]
) -> None:
    for i in range(OBJECTS):  # every series exists at zero before the traffic
        for revision in (f"s{i}", f"c{i}"):
            labels = {"revision": revision, "model": f"m{i}"}
            exporter.counter("kanaria_model_requests_total", labels=labels).inc(0)
            exporter.counter("kanaria_model_errors_total", labels=labels).inc(0)
        _latency(exporter, f"s{i}", f"m{i}", 0.0)
    prom = prometheus_factory([ScrapeTarget(exporter.target)])
    prom.wait_for("kanaria_model_requests_total", lambda r: len(r) == 2 * OBJECTS)
    started = time.time()
    _traffic(exporter, 1)
    for i in range(OBJECTS):
        _latency(exporter, f"c{i}", f"m{i}", i / OBJECTS)
    prom.wait_for(f'kanaria_model_requests_total{{revision="c{OBJECTS - 1}"}}',
                  lambda r: len(r) == 1 and float(r[0]["value"][1]) == 2000)
    prom.wait_for(f'kanaria_model_request_duration_seconds_count{{revision="c{OBJECTS - 1}"}}',
                  lambda r: len(r) == 1)
    at = time.time()
    window = at - started + 30
    metrics = [
        Metric(name="errors", kind="errorRate", min_samples=100),
        Metric(name="latency", kind="latency", min_samples=100),
        Metric(name="served", kind="custom", query='sum(kanaria_model_requests_total{revision="{{revision}}"})',
               condition="> 100"),
    ]

    def job(i: int) -> Callable[[Any, float], Any]:
        plan = AnalysisPlan(("errors", "latency", "served"), Arm(f"c{i}", window), Arm(f"s{i}", window))

        def run(providers: Any, when: float) -> Any:
            return measure(metrics, plan, providers(prom.url, 10.0), Target(f"d{i}", "ns", f"m{i}"), at=when)
        return run

    alone = [job(i)(lambda _a, _t: PrometheusProvider(prom.url), at) for i in range(OBJECTS)]
    counting = _Counting(PrometheusProvider(prom.url))
    batcher = Batcher(lambda _a, _t: counting, clock=lambda: at)
    pending = [_Pending(job(i), batcher.submit(job(i))) for i in range(OBJECTS)]
    batcher._queue.clear()
    batcher.run_batch(pending)
    batched = [p.done.result(timeout=30) for p in pending]

    assert batched == alone
    outcomes = {v["errors"].outcome.value for v in alone}
    assert "fail" in outcomes and len(outcomes) >= 2  # the objects really differ
    assert all(v["served"].outcome.value == "pass" for v in alone)
    # Every object asks the same number of queries, one after another: one request per round.
    assert batcher.stats.queries == OBJECTS * counting.rounds_per_object(OBJECTS)
    assert counting.requests == batcher.stats.requests == batcher.stats.queries // OBJECTS
    assert batcher.stats.fallbacks == 0


class _Counting:
    """The real provider, counting the requests that reach Prometheus."""

    def __init__(self, inner: PrometheusProvider) -> None:
        self.inner, self.requests, self.asked = inner, 0, 0

    def query(self, promql: str, at: float | None = None) -> Any:
        self.requests += 1
        self.asked += 1
        return self.inner.query(promql, at=at)

    def query_batch(self, promql: str, at: float) -> Any:
        self.requests += 1
        self.asked += promql.count("label_replace(")
        return self.inner.query_batch(promql, at)

    def online(self) -> str | None:
        return self.inner.online()

    def rounds_per_object(self, objects: int) -> int:
        return self.asked // objects
