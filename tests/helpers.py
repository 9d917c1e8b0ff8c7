"""Small helpers shared by the tests. Tests poll for a condition with a deadline; they never
sleep a fixed time."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from kanaria.sandbox.cluster import LocalCluster

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises AssertionError after `timeout` seconds, naming `message` and the last value or
    exception seen, so a failing test says what it was waiting for. A callable `message` is
    called then, to describe the state at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - "not yet" can be an API error
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@contextmanager
def fresh_namespace(cluster: LocalCluster, prefix: str = "t") -> Iterator[str]:
    """A namespace of its own in the shared cluster, deleted (without waiting) afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def metric_values(text: str, name: str, **labels: str) -> Iterator[float]:
    """The values of the samples called `name` whose labels include `labels`, in a Prometheus
    exposition `text`."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                yield sample.value


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of those samples; 0 when there is none."""
    return math.fsum(metric_values(text, name, **labels))


def metric_value(text: str, name: str, **labels: str) -> float:
    """The first of those samples; KeyError when there is none."""
    for value in metric_values(text, name, **labels):
        return value
    raise KeyError((name, labels))


class FakeClock:
    """A clock a test moves by hand (``clock.now += 5``), for code that takes a clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rate_allowed(alpha: float, n: int) -> float:
    """Upper end of a one-sided 99% acceptance region for a rate ≤ α over n runs."""
    from scipy import stats

    return float(stats.binom.ppf(0.99, n, alpha)) / n


def power_lower(rate: float, n: int) -> float:
    """Lower end of a one-sided 99% Clopper-Pearson interval for a detection rate over n runs."""
    from scipy import stats

    k = round(rate * n)
    return 0.0 if k == 0 else float(stats.beta.ppf(0.01, k, n - k + 1))


def full_stack_marks(group: str) -> list[Any]:
    """The marks of a module that runs its own full local stack (cluster, Prometheus, proxies,
    model servers, the operator), kept on one xdist worker as ``group``."""
    import pytest

    return [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e, pytest.mark.slow,
            pytest.mark.xdist_group(group)]



def simulated_rollouts(
    runs: int,
    looks: int,
    draw: Callable[[], tuple[Any, Any]],
    judge: Callable[[Any, Any], Any],
    significant: Callable[[Any], bool],
) -> tuple[float, float, float]:
    """(fail share, pass share, share ever significant) of ``runs`` simulated rollouts, each
    adding ``draw()`` = (baseline, canary) increments to its running counts and asking
    ``judge(baseline, canary)`` after every one of ``looks`` looks, stopping at its first
    verdict: how a judge behaves when the operator looks at it again and again."""
    failed = passed = seen = 0
    for _ in range(runs):
        b = c = None
        hit = False
        for _ in range(looks):
            db, dc = draw()
            b, c = (db, dc) if b is None else (b + db, c + dc)
            v = judge(b, c)
            hit = hit or significant(v)
            if v.outcome.value != "inconclusive":
                failed += v.outcome.value == "fail"
                passed += v.outcome.value == "pass"
                break
        seen += hit
    return failed / runs, passed / runs, seen / runs
