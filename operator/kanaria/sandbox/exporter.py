"""A tiny metrics endpoint whose values a test sets by hand, for Prometheus to scrape.

    with MetricsExporter() as exp:
        exp.counter("requests_total", labels={"revision": "a"}).inc(5)
        exp.gauge("accuracy", labels={"revision": "a"}).set(0.93)
        exp.histogram("latency_seconds", [0.1, 0.5, 1], labels={"revision": "a"}).observe(0.3)
        exp.set_histogram("latency_seconds_raw", {0.1: 4, 0.5: 9, float("inf"): 10}, 3.2)
        ... scrape_config([ScrapeTarget(exp.target)]) ...

Each exporter has its own CollectorRegistry: nothing touches prometheus_client's global one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from kanaria.sandbox._proc import Running

Labels = Mapping[str, str]


@dataclass
class _RawHistogram:
    """Cumulative bucket counts (upper bound → count) and sum, set directly by a test."""

    buckets: dict[float, float]
    total: float


class _RawHistograms(Collector):
    """Histograms whose buckets are set, not observed (for exact quantile expectations)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[
            str, tuple[tuple[str, ...], str, dict[tuple[str, ...], _RawHistogram]]
        ] = {}

    def put(
        self,
        name: str,
        labels: Labels,
        buckets: Mapping[float, float],
        total: float,
        documentation: str,
    ) -> None:
        names = tuple(sorted(labels))
        values = tuple(labels[n] for n in names)
        bounds = dict(sorted((float(le), float(c)) for le, c in buckets.items()))
        if math.inf not in bounds:
            raise ValueError(f"{name}: the buckets need a +Inf bound (the total count)")
        counts = list(bounds.values())
        if any(b < a for a, b in zip(counts, counts[1:], strict=False)):
            raise ValueError(f"{name}: bucket counts must be cumulative (non-decreasing)")
        with self._lock:
            known, doc, series = self._families.setdefault(name, (names, documentation, {}))
            if known != names:
                raise ValueError(f"{name} has labels {known}, not {names}")
            series[values] = _RawHistogram(bounds, float(total))

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {k: (v[0], v[1], dict(v[2])) for k, v in self._families.items()}
        for name, (names, doc, series) in snapshot.items():
            family = HistogramMetricFamily(name, doc or name, labels=list(names))
            for values, hist in series.items():
                family.add_metric(
                    list(values),
                    [(_le(b), c) for b, c in hist.buckets.items()],
                    hist.total,
                )
            yield family

    def names(self) -> set[str]:
        with self._lock:
            return set(self._families)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class MetricsExporter(Running):
    """An HTTP /metrics endpoint on a free 127.0.0.1 port, backed by its own registry."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self.registry = CollectorRegistry(auto_describe=True)
        self._raw = _RawHistograms()
        self.registry.register(self._raw)
        self._metrics: dict[str, tuple[str, tuple[str, ...], Any]] = {}
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle


    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the exporter is already serving")
        self._server, self._thread = start_http_server(0, addr=self._host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the exporter is not serving")
        return int(self._server.server_port)

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static target."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def exposition(self) -> str:
        """What a scrape would return right now."""
        return generate_latest(self.registry).decode()

    # ----------------------------------------------------------------- metrics

    def _family(
        self, kind: str, name: str, labels: Labels | None, documentation: str, **extra: Any
    ) -> Any:
        label_names = tuple(sorted(labels or {}))
        with self._lock:
            if name in self._raw.names():
                raise ValueError(f"{name} is already a directly-set histogram")
            known = self._metrics.get(name)
            if known is None:
                cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
                metric = cls(
                    name,
                    documentation or name,
                    labelnames=label_names,
                    registry=self.registry,
                    **extra,
                )
                self._metrics[name] = (kind, label_names, metric)
            else:
                known_kind, known_labels, metric = known
                if (known_kind, known_labels) != (kind, label_names):
                    raise ValueError(
                        f"{name} is a {known_kind} with labels {known_labels}, "
                        f"not a {kind} with labels {label_names}"
                    )
        if labels:
            return metric.labels(**dict(labels))
        return metric

    def counter(self, name: str, labels: Labels | None = None, documentation: str = "") -> Counter:
        """A counter (or its labelled child); ``.inc(n)`` it. A ``_total`` suffix is kept."""
        child: Counter = self._family("counter", name, labels, documentation)
        return child

    def gauge(self, name: str, labels: Labels | None = None, documentation: str = "") -> Gauge:
        child: Gauge = self._family("gauge", name, labels, documentation)
        return child

    def histogram(
        self,
        name: str,
        buckets: Sequence[float],
        labels: Labels | None = None,
        documentation: str = "",
    ) -> Histogram:
        """A histogram with these bucket upper bounds; ``.observe(v)`` it."""
        child: Histogram = self._family(
            "histogram", name, labels, documentation, buckets=tuple(buckets)
        )
        return child

    def set_histogram(
        self,
        name: str,
        buckets: Mapping[float, float],
        total: float,
        labels: Labels | None = None,
        documentation: str = "",
    ) -> None:
        """Set a histogram's cumulative bucket counts directly ({upper bound: count}, which
        must include ``math.inf`` as the total count) and its sum."""
        with self._lock:
            if name in self._metrics:
                raise ValueError(f"{name} is already an observed {self._metrics[name][0]}")
        self._raw.put(name, labels or {}, buckets, total, documentation)
