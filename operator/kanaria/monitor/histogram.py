"""Histograms on fixed, per-series bin edges, exported through a custom collector.

prometheus_client's ``Histogram`` takes one bucket layout per metric; the feature histogram
needs a different layout per ``feature`` label value (each feature's own training deciles),
so the counts are kept here and yielded as ``HistogramMetricFamily`` samples.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["FixedBinCollector", "FixedBinHistogram", "cumulative_buckets"]


def cumulative_buckets(edges: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """``(le, cumulative count)`` pairs ending with ``+Inf``, as exposition wants them.

    ``counts`` has one entry per bin: ``len(edges) + 1``, the last being the overflow above
    the last edge. The ``le`` strings are the ones every fixed-bin series of the monitor uses.
    """
    if len(counts) != len(edges) + 1:
        raise ValueError(f"{len(edges)} edges need {len(edges) + 1} bin counts, not {len(counts)}")
    running = 0
    buckets: list[tuple[str, float]] = []
    for edge, count in zip((*edges, math.inf), counts, strict=True):
        running += count
        buckets.append(("+Inf" if math.isinf(edge) else repr(edge), float(running)))
    return buckets


@dataclass
class FixedBinHistogram:
    """Counts per bin for finite upper bounds ``edges`` plus the ``+Inf`` overflow bin.

    Not locked by itself: :class:`FixedBinCollector` guards it.
    """

    edges: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.edges) + 1)

    def observe(self, value: float) -> bool:
        """Count ``value`` in its bin (``le`` semantics); non-finite values are ignored."""
        if not math.isfinite(value):
            return False
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.total += value
        return True

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, as exposition wants them."""
        return cumulative_buckets(self.edges, self.counts)


class FixedBinCollector(Collector):
    """One histogram metric family whose series each have their own fixed bins. Thread-safe."""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str]) -> None:
        self._name = name
        self._documentation = documentation
        self._label_names = tuple(label_names)
        self._series: dict[tuple[str, ...], FixedBinHistogram] = {}
        self._lock = threading.Lock()

    def add_series(self, label_values: Sequence[str], edges: Sequence[float]) -> None:
        """Declare a series and its bins (it is exported with zero counts until observed)."""
        key = self._key(label_values)
        with self._lock:
            if key not in self._series:
                self._series[key] = FixedBinHistogram(tuple(edges))

    def observe(self, label_values: Sequence[str], value: float) -> None:
        key = self._key(label_values)
        with self._lock:
            self._series[key].observe(value)

    def observe_many(self, items: Sequence[tuple[Sequence[str], float]]) -> None:
        """Observe several series under one lock acquisition."""
        keyed = [(self._key(labels), value) for labels, value in items]
        with self._lock:
            for key, value in keyed:
                self._series[key].observe(value)

    def _key(self, label_values: Sequence[str]) -> tuple[str, ...]:
        key = tuple(str(v) for v in label_values)
        if len(key) != len(self._label_names):
            raise ValueError(f"{self._name}: expected labels {self._label_names}, got {key}")
        return key

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._label_names)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._label_names)
        with self._lock:
            snapshot = [(key, hist.cumulative(), hist.total) for key, hist in self._series.items()]
        for key, buckets, total in snapshot:
            family.add_metric(list(key), buckets, total)
        yield family
