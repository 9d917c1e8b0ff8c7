"""A real Prometheus scrapes the exporter fixture; PromQL gives back what the test set."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget, scrape_config

pytestmark = pytest.mark.prometheus

Factory = Callable[..., LocalPrometheus]


def _one_value(result: Any) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_counter_and_gauge_values_come_back_exactly(
    exporter: MetricsExporter, prometheus_factory: Factory
) -> None:
    exporter.counter("model_requests_total", labels={"revision": "a"}).inc(5)
    exporter.counter("model_requests_total", labels={"revision": "b"}).inc(2)
    exporter.gauge("model_accuracy", labels={"revision": "a"}).set(0.9375)
    prom = prometheus_factory([ScrapeTarget(exporter.target, {"deployment": "iris"})])

    result = prom.wait_for('model_requests_total{revision="a"}', lambda r: len(r) == 1)
    assert result[0]["value"][1] == "5"
    assert result[0]["metric"]["deployment"] == "iris"
    assert prom.scalar('sum(model_requests_total{deployment="iris"})') == 7
    assert prom.scalar('model_accuracy{revision="a"}') == 0.9375

    exporter.counter("model_requests_total", labels={"revision": "a"}).inc(3)
    prom.wait_for('model_requests_total{revision="a"}', lambda r: _one_value(r) == 8)


def test_histogram_quantile_and_buckets(
    exporter: MetricsExporter, prometheus_factory: Factory
) -> None:
    # Set directly: 4 requests ≤ 0.1 s, 9 ≤ 0.5 s, 10 in total.
    exporter.set_histogram(
        "latency_seconds", {0.1: 4, 0.5: 9, math.inf: 10}, total=2.5, labels={"revision": "b"}
    )
    observed = exporter.histogram("observed_seconds", [0.1, 0.5, 1.0], labels={"revision": "a"})
    for value in (0.05, 0.3, 0.3, 0.7):
        observed.observe(value)
    prom = prometheus_factory([ScrapeTarget(exporter.target)])

    # Median: rank 5 falls in (0.1, 0.5] holding ranks 5..9 → 0.1 + 0.4 * (5-4)/(9-4) = 0.18
    median = prom.wait_for(
        "histogram_quantile(0.5, sum by (le) (latency_seconds_bucket))", lambda r: len(r) == 1
    )
    assert float(median[0]["value"][1]) == pytest.approx(0.18)
    assert prom.scalar('observed_seconds_bucket{le="0.5"}') == 3
    assert prom.scalar("observed_seconds_count") == 4
    assert prom.scalar("observed_seconds_sum") == pytest.approx(1.35)


def test_reload_and_outage(exporter: MetricsExporter, prometheus_factory: Factory) -> None:
    exporter.gauge("drift_score").set(0.25)
    prom = prometheus_factory(scrape_config([]))
    assert prom.query("drift_score") == []

    prom.reload(scrape_config([ScrapeTarget(exporter.target, {"phase": "reloaded"})]))
    prom.wait_for('drift_score{phase="reloaded"}', lambda r: _one_value(r) == 0.25)

    url = prom.url
    prom.stop()
    assert not prom.running()
    prom.start()
    assert prom.url == url
    # Same TSDB: the sample scraped before the outage is still there.
    assert prom.scalar('max_over_time(drift_score{phase="reloaded"}[5m])') == 0.25


def test_file_sd_paths_are_absolute_whatever_the_callers_directory() -> None:
    """Prometheus runs in its own directory: a relative targets file would never be found
    (``make demo`` passes a relative output directory)."""
    from pathlib import Path

    cfg = scrape_config([], file_sd=[Path("artifacts/demo/stack/models.targets.json")])
    files = cfg["scrape_configs"][-1]["file_sd_configs"][0]["files"]
    assert files == [str(Path.cwd() / "artifacts/demo/stack/models.targets.json")]


def test_counter_growth_counts_what_a_new_series_counted_before_its_first_scrape(
    exporter: MetricsExporter, prometheus_factory: Factory
) -> None:
    """A revision's server counts 50 requests before Prometheus first scrapes it (discovery
    lags), then 10 more. increase() over a window holding the whole series sees only the 10
    (and some extrapolation); counter_growth, which the sample-ratio check uses, sees all 60 —
    and a series that existed before the window is measured from its value when it began."""
    import time

    from kanaria.analysis.templates import counter_growth

    old = exporter.counter("kanaria_model_requests_total", labels={"revision": "stable"})
    old.inc(1000)
    prom = prometheus_factory([ScrapeTarget(exporter.target)])
    # The stable series has been scraped for a while (every second) when the window begins.
    prom.wait_for('count_over_time(kanaria_model_requests_total{revision="stable"}[1m])',
                  lambda r: (_one_value(r) or 0) >= 4)
    began = time.time() - 1.0
    new = exporter.counter("kanaria_model_requests_total", labels={"revision": "canary"})
    new.inc(50)  # served before the first scrape of its series
    prom.wait_for('kanaria_model_requests_total{revision="canary"}', lambda r: _one_value(r) == 50)
    new.inc(10)
    old.inc(30)
    prom.wait_for('kanaria_model_requests_total{revision="canary"}', lambda r: _one_value(r) == 60)
    prom.wait_for('kanaria_model_requests_total{revision="stable"}', lambda r: _one_value(r) == 1030)
    window = time.time() - began
    grown = _one_value(prom.query(counter_growth("kanaria_model_requests_total", {"revision": "canary"}, window)))
    assert grown == 60
    assert _one_value(prom.query(counter_growth("kanaria_model_requests_total", {"revision": "stable"}, window))) == 30
    increased = _one_value(prom.query(
        f'sum(increase(kanaria_model_requests_total{{revision="canary"}}[{max(1, round(window))}s]))'))
    assert increased is not None and increased < 50, "increase() misses what came before the first scrape"
