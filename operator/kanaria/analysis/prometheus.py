"""The Prometheus metric provider (through prometheus-api-client)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from kanaria.analysis.provider import QueryResult, Sample
from kanaria.api.addresses import resolved_problem

__all__ = ["BatchFailure", "PrometheusProvider"]


@dataclass(frozen=True)
class BatchFailure:
    """A combined query that got no series: ``transport`` when Prometheus was not reached."""

    error: str
    transport: bool


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
        # No redirects: an address that passed the checks must not bounce the operator on to
        # one that would not (the metadata service, the API server).
        session = requests.Session()
        session.max_redirects = 0
        session.verify = False
        self._session = session
        self._client = PrometheusConnect(
            url=self.address, disable_ssl=True, timeout=int(max(1, timeout)), retry=retry, session=session
        )
        self._refused: str | None = None
        self._checked = False

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        if not self._checked:  # where the name resolves, once, before the first request
            self._refused = resolved_problem(self.address)
            self._checked = True
        if self._refused is not None:
            return QueryResult(promql, error=f"refused: prometheus.address {self._refused}")
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

    def query_batch(self, promql: str, at: float) -> list[dict[str, Any]] | BatchFailure:
        """One combined expression (see kanaria.controller.batch), POSTed: its series, or why
        not — ``transport`` when the server could not be asked at all (every query in it then
        fails alike), else the server refused this expression (ask the queries one by one)."""
        if not self._checked:
            self._refused = resolved_problem(self.address)
            self._checked = True
        if self._refused is not None:
            return BatchFailure(f"refused: prometheus.address {self._refused}", transport=True)
        try:
            resp = self._session.post(f"{self.address}/api/v1/query", data={"query": promql, "time": f"{at:.3f}"},
                                      timeout=max(1.0, self.timeout), allow_redirects=False)
        except Exception as exc:
            return BatchFailure(f"{type(exc).__name__}: {_short(exc)}", transport=True)
        if resp.status_code >= 500 or resp.status_code in (301, 302, 303, 307, 308, 429):
            return BatchFailure(f"HTTP status {resp.status_code}{_prometheus_error(resp.text[:2000])}", transport=True)
        try:
            doc = resp.json()
        except ValueError:
            return BatchFailure(f"HTTP status {resp.status_code} (not a Prometheus API answer)", transport=True)
        data = doc.get("data") if isinstance(doc, dict) else None
        if resp.status_code != 200 or not isinstance(data, dict) or data.get("resultType") != "vector":
            return BatchFailure("refused", transport=False)
        result = data.get("result")
        return result if isinstance(result, list) else BatchFailure("refused", transport=False)

    def online(self) -> str | None:
        result = self.query("vector(1)")
        return result.error


_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.S)


def _short(exc: Exception) -> str:
    """The error, without the body of a non-Prometheus answer: whatever the address serves
    must not end up in status (only Prometheus's own error message is kept)."""
    text = str(exc)
    status = _STATUS.match(text)
    if status is not None:
        text = f"HTTP status {status.group(1)}{_prometheus_error(status.group(2))}"
    elif isinstance(exc, requests.TooManyRedirects):
        text = "the address redirects elsewhere; Kanaria does not follow redirects"
    text = " ".join(text.split())
    return text if len(text) < 300 else text[:297] + "..."


def _prometheus_error(body: str) -> str:
    try:
        raw = body[2:-1].encode().decode("unicode_escape") if body[:2] in ("b'", 'b"') else body
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("status") == "error" and isinstance(doc.get("error"), str):
            return f": {doc.get('errorType', 'error')}: {doc['error']}"
    except (ValueError, UnicodeError):
        pass
    return " (not a Prometheus API answer)"
