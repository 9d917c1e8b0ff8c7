"""Batched analysis: the measurements of every object that is due, run together, so that one
round of their queries to one Prometheus is one request.

Each due measurement (``measure`` of a canary, a serving check, an A/B arm: the same code as
when measured alone) runs as a greenlet in the batcher's thread. When it asks its provider for a
query, it pauses; once every running measurement has paused on a query or finished, the
queries of that round are sent together — per Prometheus address, one POST whose expression is
``label_replace(q0, "kanaria_batch", "0", "", "") or label_replace(q1, ...) or ...`` — and the
series that come back are split by that label and handed back, each measurement resuming with
exactly the samples its own query would have returned. The number of requests to a Prometheus
per batch is the number of rounds (the queries one measurement makes one after another), not the
number of objects; timers are aligned (``grid``) so that objects due in the same slot share a
batch.

Why the ``or`` of label_replace and not a ``sum by (revision)``: the same expression text is
evaluated for every object (built-in kinds and user templates alike), so the verdicts are those
of the per-object queries — tests run both ways on the same Prometheus and compare. A combined
request the server refuses (a query that is not an instant vector, a syntax error in one
template) is retried query by query, so one bad query never costs another its evidence;
a combined request that fails in transport (timeout, unreachable, 5xx) fails every query in it
(no retry storm) and the address backs off (0.5 s doubling to 10 s) before the next request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import greenlet

from kanaria.analysis.provider import MetricProvider, QueryResult, Sample

__all__ = ["Batcher", "BatchStats", "combined_query", "split_results", "BATCH_LABEL"]

log = logging.getLogger("kanaria.batch")

T = TypeVar("T")
BATCH_LABEL = "kanaria_batch"
MAX_QUERIES = 500
"""At most this many queries in one request (a request stays well under Prometheus' limits)."""
MAX_CHARS = 400_000

ProviderFactory = Callable[[str, float], MetricProvider]
Job = Callable[[ProviderFactory, float], Any]


def combined_query(queries: list[str]) -> str:
    """One expression whose series carry ``kanaria_batch=i`` for the i-th query's series."""
    return " or ".join(f'label_replace({q}, "{BATCH_LABEL}", "{i}", "", "")' for i, q in enumerate(queries))


def split_results(queries: list[str], series: list[dict[str, Any]]) -> list[QueryResult] | None:
    """The combined answer, split back into one result per query (None when its shape is not
    what ``combined_query`` makes)."""
    found: list[list[Sample]] = [[] for _ in queries]
    for item in series:
        labels = dict(item.get("metric") or {})
        try:
            index = int(labels.pop(BATCH_LABEL))
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if not 0 <= index < len(queries):
            return None
        found[index].append(Sample(labels, value))
    return [QueryResult(q, tuple(s)) for q, s in zip(queries, found, strict=True)]


@dataclass
class BatchStats:
    """What the batcher did (exported as the operator's metrics)."""

    requests: int = 0
    """HTTP requests to Prometheus (combined or single)."""
    queries: int = 0
    """Queries answered (what the requests would have been one by one)."""
    fallbacks: int = 0
    batches: int = 0
    measurements: int = 0


@dataclass
class _Address:
    provider: Any
    failures: int = 0
    resume_at: float = 0.0
    last_error: str = ""


@dataclass
class _Pending:
    job: Job
    done: Future[Any]


class _Deferred:
    """The provider a measurement sees inside the batcher: each query pauses it until the
    round's combined request has been answered."""

    def __init__(self, key: tuple[str, float], real: MetricProvider) -> None:
        self.key, self.real = key, real

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        me = greenlet.getcurrent()
        assert me.parent is not None, "a deferred provider is only used inside the batcher"
        result = me.parent.switch(("query", self.key, promql, at))
        assert isinstance(result, QueryResult)
        return result

    def online(self) -> str | None:
        return self.real.online()


@dataclass
class Batcher:
    """Runs measurements in batches in one thread (see the module)."""

    providers: ProviderFactory
    window: float = 0.05
    """How long a batch waits for more measurements after the first arrives."""
    clock: Callable[[], float] = time.time
    stats: BatchStats = field(default_factory=BatchStats)
    _queue: list[_Pending] = field(default_factory=list)
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _addresses: dict[tuple[str, float], _Address] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _stopped: bool = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="analysis-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def submit(self, job: Job) -> Future[Any]:
        """Run ``job(providers, at)`` in the next batch; ``at`` is the batch's instant."""
        done: Future[Any] = Future()
        with self._cv:
            self._queue.append(_Pending(job, done))
            self._cv.notify()
        return done

    async def run(self, job: Job) -> Any:
        return await asyncio.wrap_future(self.submit(job))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    for p in self._queue:
                        p.done.cancel()
                    return
            time.sleep(self.window)  # let the rest of this slot's measurements arrive
            with self._cv:
                batch, self._queue = self._queue, []
            try:
                self.run_batch(batch)
            except Exception:  # never lose the thread: fail this batch's measurements
                log.exception("analysis batch failed")
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(RuntimeError("analysis batch failed"))

    def run_batch(self, batch: list[_Pending]) -> None:
        at = self.clock()
        self.stats.batches += 1
        self.stats.measurements += len(batch)

        def factory(address: str, timeout: float) -> MetricProvider:
            return _Deferred((address, timeout), self._address(address, timeout).provider)

        running: dict[int, tuple[greenlet.greenlet, _Pending]] = {}
        answers: dict[int, Any] = {}
        for i, pending in enumerate(batch):
            job = pending.job
            running[i] = (greenlet.greenlet(lambda job=job: job(factory, at)), pending)
            answers[i] = None
        while running:
            asked: dict[tuple[tuple[str, float], float], list[tuple[int, str]]] = {}
            for i, (glet, pending) in list(running.items()):
                try:
                    out = glet.switch() if answers[i] is None else glet.switch(answers[i])
                except BaseException as exc:  # the measurement raised: its caller gets it
                    del running[i]
                    pending.done.set_exception(exc)
                    continue
                if glet.dead:
                    del running[i]
                    pending.done.set_result(out)
                    continue
                _, key, promql, when = out
                asked.setdefault((key, at if when is None else when), []).append((i, promql))
            answers = {}
            for (key, when), wanted in asked.items():
                results = self._answer(key, [q for _, q in wanted], when)
                for (i, _), result in zip(wanted, results, strict=True):
                    answers[i] = result

    def _address(self, address: str, timeout: float) -> _Address:
        key = (address, timeout)
        if key not in self._addresses:
            self._addresses[key] = _Address(self.providers(address, timeout))
        return self._addresses[key]

    def _answer(self, key: tuple[str, float], queries: list[str], at: float) -> list[QueryResult]:
        state = self._address(*key)
        self.stats.queries += len(queries)
        if state.resume_at > time.monotonic():
            return [QueryResult(q, error=f"{state.last_error} (backing off)") for q in queries]
        unique = list(dict.fromkeys(queries))
        answered: dict[str, QueryResult] = {}
        for chunk in _chunks(unique):
            answered.update(zip(chunk, self._send(state, chunk, at), strict=True))
        return [answered[q] for q in queries]

    def _send(self, state: _Address, queries: list[str], at: float) -> list[QueryResult]:
        provider = state.provider
        batch = getattr(provider, "query_batch", None)
        if len(queries) == 1 or batch is None:
            self.stats.requests += len(queries)
            return [provider.query(q, at=at) for q in queries]
        self.stats.requests += 1
        outcome = batch(combined_query(queries), at)
        if isinstance(outcome, list):
            results = split_results(queries, outcome)
            if results is not None:
                state.failures = 0
                return results
        elif outcome.transport:
            state.failures += 1
            state.last_error = outcome.error
            state.resume_at = time.monotonic() + min(10.0, 0.5 * 2 ** (state.failures - 1))
            return [QueryResult(q, error=outcome.error) for q in queries]
        # The server refused the combination (or answered in another shape): one by one, so
        # each query gets its own answer or its own error.
        self.stats.fallbacks += 1
        self.stats.requests += len(queries)
        return [provider.query(q, at=at) for q in queries]


def _chunks(queries: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for q in queries:
        if out[-1] and (len(out[-1]) >= MAX_QUERIES or size + len(q) > MAX_CHARS):
            out.append([])
            size = 0
        out[-1].append(q)
        size += len(q) + 40
    return out


def align(delay: float, grid: float, now: float) -> float:
    """``delay`` stretched so the wake-up falls on the next multiple of ``grid`` (Unix time):
    objects due in the same slot wake together and their measurements share a batch. Delays
    shorter than the grid (a rollout step waiting for readiness) are left alone."""
    if grid <= 0 or delay < grid:
        return delay
    wake = math.ceil((now + delay - 1e-3) / grid) * grid  # a due time on the grid stays on it
    return wake - now


def on_grid(at: float, grid: float) -> float:
    """``at``, moved back to the grid point before it when that point is at most a fifth of a
    slot (and at most a second) earlier; else ``at`` itself."""
    if grid <= 0:
        return at
    point = math.floor(at / grid) * grid
    return point if at - point <= min(1.0, grid / 5) else at
