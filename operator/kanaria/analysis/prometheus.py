"""The Prometheus metric provider (through prometheus-api-client)."""

from __future__ import annotations

from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from kanaria.analysis.provider import QueryResult, Sample

__all__ = ["PrometheusProvider"]


class PrometheusProvider:
    """Instant queries against one Prometheus; every failure becomes QueryResult.error."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        # Retry only failures to connect (a pooled connection to a Prometheus that restarted),
        # at once; never a read timeout or an error status: a failed query is an inconclusive
        # measurement now and the next interval asks again, while retries with back-off would
        # hold the object's loop for several timeouts.
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0)
        self._client = PrometheusConnect(
            url=self.address, disable_ssl=True, timeout=int(max(1, timeout)), retry=retry
        )

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        params = {"time": f"{at:.3f}"} if at is not None else None
        try:
            raw: Any = self._client.custom_query(promql, params=params, timeout=int(max(1, self.timeout)))
        except Exception as exc:  # the client raises many types; all mean "no evidence"
            return QueryResult(promql, error=f"{type(exc).__name__}: {_short(exc)}")
        samples = []
        for item in raw if isinstance(raw, list) else []:
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                return QueryResult(promql, error=f"unexpected result shape: {str(item)[:200]}")
            samples.append(Sample(dict(item.get("metric", {})), value))
        return QueryResult(promql, tuple(samples))

    def online(self) -> str | None:
        result = self.query("vector(1)")
        return result.error


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) < 300 else text[:297] + "..."
