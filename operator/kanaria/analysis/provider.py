"""Metric providers: one small interface, one module per backend, a factory that refuses
unknown names. A failed query is a measurement carrying an error, never an exception."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Sample", "QueryResult", "MetricProvider", "Pinned", "provider_for", "UnknownProvider"]


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class QueryResult:
    """The outcome of one query: samples, or an error saying why there are none."""

    query: str
    samples: tuple[Sample, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def scalar(self) -> float | None:
        """The single value of the result; None when empty, ambiguous or not finite."""
        if self.error is not None or len(self.samples) != 1:
            return None
        value = self.samples[0].value
        return value if math.isfinite(value) else None

    def total(self) -> float:
        """Sum of all finite sample values (0 for an empty result)."""
        return sum(s.value for s in self.samples if math.isfinite(s.value))


class MetricProvider(Protocol):
    """A place metrics can be read from."""

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Run an instant query, evaluated at ``at`` (Unix seconds; now when None); errors come
        back inside the result."""
        ...

    def online(self) -> str | None:
        """None when reachable, otherwise why not."""
        ...


class Pinned:
    """A provider whose queries are all evaluated at one instant (one measurement's numbers
    must not straddle a scrape)."""

    def __init__(self, inner: MetricProvider, at: float) -> None:
        self._inner, self.at = inner, at

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        return self._inner.query(promql, at=self.at if at is None else at)

    def online(self) -> str | None:
        return self._inner.online()


class UnknownProvider(ValueError):
    """The spec names a metric provider Kanaria does not have."""


def provider_for(kind: str, address: str, timeout: float) -> MetricProvider:
    """The provider for a backend name; refuses unknown names with a clear message."""
    if kind == "prometheus":
        from kanaria.analysis.prometheus import PrometheusProvider

        return PrometheusProvider(address, timeout)
    raise UnknownProvider(f"unknown metric provider {kind!r}; known: prometheus")
