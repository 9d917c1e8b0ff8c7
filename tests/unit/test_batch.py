"""Batched analysis, its pieces one by one: the combined expression and its split, measurements
paused on their queries and resumed together (one request per round, not per object), the
fall-back one by one when the server refuses a combination, a transport failure failing the
batch without a retry storm, the wake-up grid, the priority pool and the shards.

The provider here is a stand-in for one function's unit test; the same batching against a real
Prometheus, compared verdict for verdict with per-object queries, is in
tests/testbed/test_batch_prometheus.py."""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import pytest

from kanaria.analysis.prometheus import BatchFailure
from kanaria.analysis.provider import QueryResult, Sample
from kanaria.controller.batch import (
    Batcher,
    _Pending,
    align,
    combined_query,
    on_grid,
    split_results,
)
from kanaria.controller.reconcile import measurement_instant
from kanaria.controller.state import PriorityPool, Shard

PART = re.compile(r'label_replace\((\w+), "kanaria_batch", "(\d+)", "", ""\)')


class Recording:
    """Answers ``q_<n>`` with the value n; records every request; can refuse or fail."""

    def __init__(self, refuse: bool = False, fail: bool = False) -> None:
        self.single: list[str] = []
        self.combined: list[list[str]] = []
        self.refuse, self.fail = refuse, fail
        self.at: set[float] = set()

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.single.append(promql)
        self.at.add(at or 0.0)
        if promql.startswith("bad"):
            return QueryResult(promql, error="bad_data: parse error")
        return QueryResult(promql, (Sample({"revision": promql}, float(promql.split("_")[1])),))

    def query_batch(self, promql: str, at: float) -> list[dict[str, Any]] | BatchFailure:
        parts = PART.findall(promql)
        self.combined.append([q for q, _ in parts])
        self.at.add(at)
        if self.fail:
            return BatchFailure("ConnectionError: refused", transport=True)
        if self.refuse or any(q.startswith("bad") for q, _ in parts):
            return BatchFailure("refused", transport=False)
        return [{"metric": {"revision": q, "kanaria_batch": i}, "value": [at, q.split("_")[1]]} for q, i in parts]

    def online(self) -> str | None:
        return None


def _job(queries: list[str]) -> Any:
    def job(providers: Any, at: float) -> list[float | None | str]:
        provider = providers("http://prom:9090", 10.0)
        out: list[float | None | str] = []
        for q in queries:
            result = provider.query(q, at=at)
            out.append(result.error if result.error else result.scalar())
        return out
    return job


def _run(batcher: Batcher, jobs: list[Any]) -> list[Any]:
    pending = [_Pending(job, batcher.submit(job)) for job in jobs]
    batcher._queue.clear()  # run them here, not in the batcher's thread
    batcher.run_batch(pending)
    return [p.done.result(timeout=5) for p in pending]


def test_the_combined_expression_splits_back_per_query() -> None:
    queries = ['sum(x{revision="a"})', 'sum(x{revision="b"})', "sum(y)"]
    text = combined_query(queries)
    assert text.count(" or ") == 2 and 'label_replace(sum(x{revision="a"}), "kanaria_batch", "0", "", "")' in text
    series = [{"metric": {"kanaria_batch": "1", "le": "0.1"}, "value": [1, "3"]},
              {"metric": {"kanaria_batch": "0"}, "value": [1, "7"]}]
    a, b, y = split_results(queries, series) or []
    assert a.scalar() == 7 and b.samples == (Sample({"le": "0.1"}, 3.0),) and y.samples == ()
    assert split_results(queries, [{"metric": {}, "value": [1, "1"]}]) is None  # not our shape
    assert split_results(queries, [{"metric": {"kanaria_batch": "9"}, "value": [1, "1"]}]) is None


def test_one_request_per_round_whatever_the_number_of_measurements() -> None:
    provider = Recording()
    batcher = Batcher(lambda _a, _t: provider, clock=lambda: 1000.0)
    jobs = [_job([f"q_{i}", f"q_{100 + i}", f"q_{200 + i}"]) for i in range(40)]
    results = _run(batcher, jobs)
    assert results == [[float(i), float(100 + i), float(200 + i)] for i in range(40)]
    assert len(provider.combined) == 3 and provider.single == []  # three rounds, 120 queries
    assert batcher.stats.requests == 3 and batcher.stats.queries == 120
    assert provider.at == {1000.0}  # every query of the batch at one instant


def test_measurements_of_different_lengths_finish_in_their_own_round() -> None:
    provider = Recording()
    batcher = Batcher(lambda _a, _t: provider, clock=lambda: 5.0)
    results = _run(batcher, [_job(["q_1"]), _job(["q_2", "q_3", "q_4"]), _job([])])
    assert results == [[1.0], [2.0, 3.0, 4.0], []]
    # Round 1 carries q_1 and q_2 together; later rounds only what is still asked.
    assert provider.combined == [["q_1", "q_2"]] and provider.single == ["q_3", "q_4"]


def test_a_refused_combination_is_asked_one_by_one_and_only_the_bad_query_fails() -> None:
    provider = Recording()
    batcher = Batcher(lambda _a, _t: provider, clock=lambda: 5.0)
    results = _run(batcher, [_job(["q_1"]), _job(["bad_2"]), _job(["q_3"])])
    assert results == [[1.0], ["bad_data: parse error"], [3.0]]
    assert batcher.stats.fallbacks == 1 and sorted(provider.single) == ["bad_2", "q_1", "q_3"]


def test_a_transport_failure_fails_the_batch_once_and_backs_off() -> None:
    provider = Recording(fail=True)
    batcher = Batcher(lambda _a, _t: provider, clock=lambda: 5.0)
    first = _run(batcher, [_job(["q_1"]), _job(["q_2"])])
    assert first == [["ConnectionError: refused"], ["ConnectionError: refused"]]
    assert provider.single == [] and len(provider.combined) == 1  # no retry, no one-by-one storm
    second = _run(batcher, [_job(["q_3"]), _job(["q_4"])])
    assert second == [["ConnectionError: refused (backing off)"]] * 2
    assert len(provider.combined) == 1  # Prometheus was not asked again during the back-off


def test_an_exception_in_one_measurement_reaches_only_its_caller() -> None:
    provider = Recording()
    batcher = Batcher(lambda _a, _t: provider, clock=lambda: 5.0)

    def broken(providers: Any, at: float) -> None:
        providers("http://prom:9090", 10.0).query("q_1", at=at)
        raise ZeroDivisionError("judge failed")

    pending = [_Pending(j, batcher.submit(j)) for j in (broken, _job(["q_2", "q_5"]))]
    batcher._queue.clear()
    batcher.run_batch(pending)
    with pytest.raises(ZeroDivisionError):
        pending[0].done.result(timeout=1)
    assert pending[1].done.result(timeout=1) == [2.0, 5.0]


def test_the_batcher_thread_serves_submissions() -> None:
    provider = Recording()
    batcher = Batcher(lambda _a, _t: provider, window=0.01)
    batcher.start()
    try:
        futures = [batcher.submit(_job([f"q_{i}"])) for i in range(5)]
        assert [f.result(timeout=10) for f in futures] == [[float(i)] for i in range(5)]
    finally:
        batcher.stop()


def test_timed_wakeups_fall_on_the_grid_and_short_ones_are_left_alone() -> None:
    assert align(30.0, 5.0, 1000.2) == pytest.approx(34.8)  # 1035 is on the grid
    assert align(30.0, 5.0, 1000.0) == pytest.approx(30.0)
    assert align(1.0, 5.0, 1000.2) == 1.0  # a rollout step waiting for readiness: as asked
    assert align(30.0, 0.0, 1000.2) == 30.0
    wakes = {round(1000.0 + t + align(60.0, 5.0, 1000.0 + t)) for t in (0.3, 1.1, 2.7, 4.9)}
    assert wakes == {1065}  # four objects due within one slot wake together
    # Due exactly on a grid point (a measurement made on the grid, an interval later): that
    # point, even when the sum carries a rounding error, not the next slot.
    assert 1000.3 + align(9.7 + 1e-9, 5.0, 1000.3) == pytest.approx(1010.0)


def test_a_measurement_just_after_a_grid_point_is_made_at_that_point() -> None:
    assert measurement_instant(1010.4, 10.0, 5.0) == 1010.0
    assert measurement_instant(1011.2, 10.0, 5.0) == 1011.2  # more than a second late
    # An interval shorter than a slot is never moved back: at 1 s, a measurement at 1011.0 must
    # not be recorded at 1010.0 again (it would be due again at once).
    assert measurement_instant(1011.0, 1.0, 5.0) == 1011.0
    assert measurement_instant(1010.4, 10.0, 0.0) == 1010.4  # not batched: no grid


def test_on_grid_moves_back_at_most_a_fifth_of_a_slot() -> None:
    assert on_grid(1010.4, 5.0) == 1010.0
    assert on_grid(1011.2, 5.0) == 1011.2  # more than a second late: its own instant
    assert on_grid(1010.4, 0.0) == 1010.4


def test_the_pool_runs_woken_cycles_before_queued_routine_ones() -> None:
    pool = PriorityPool(1, name="test")
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = pool.submit(1, gate.wait, 5)
        routine = [pool.submit(1, order.append, f"routine-{i}") for i in range(3)]
        urgent = pool.submit(0, order.append, "woken")
        gate.set()
        for f in [blocker, *routine, urgent]:
            f.result(timeout=5)
    finally:
        pool.shutdown()
    assert order == ["woken", "routine-0", "routine-1", "routine-2"]


def test_shards_split_every_object_to_exactly_one() -> None:
    shards = [Shard(i, 3) for i in range(3)]
    names = [(f"ns-{i % 7}", f"model-{i}") for i in range(3000)]
    owners = Counter(sum(1 for s in shards if s.owns(ns, n)) for ns, n in names)
    assert owners == {1: 3000}
    per_shard = [sum(1 for ns, n in names if s.owns(ns, n)) for s in shards]
    assert min(per_shard) > 900  # about a third each
    assert all(Shard().owns(ns, n) for ns, n in names[:10])
    assert Shard.from_env("1/3") == Shard(1, 3) and Shard.from_env("") == Shard()
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(ValueError, match="KANARIA_SHARD"):
            Shard.from_env(bad)
