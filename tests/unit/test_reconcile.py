"""One reconcile cycle against fakes of the Kubernetes API, the router and the workloads:
what a follower writes (nothing), how often the cycle writes status (once), how often it
plans the analysis (once), and that metric-provider clients are shared safely by threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

import kanaria.controller.reconcile as reconcile_module
from kanaria.controller.reconcile import Runtime

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "model": {"name": "iris", "version": "v2", "uri": "file:///models/v2"},
    "replicas": 2,
    "traffic": {"gatewayAPI": {}},
    "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}]}},
    "analysis": {
        "prometheus": {"address": "http://prom:9090"},
        "interval": "30s",
        "metrics": [{"name": "accuracy", "kind": "accuracy"}, {"name": "latency", "kind": "latency"}],
    },
}
STABLE = {"phase": "Stable", "stableRevision": "r1", "stableVersion": "v1", "observedGeneration": 1}


# --------------------------------------------------------------------------- providers


def test_threads_asking_for_providers_at_once_share_one_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    entered = threading.Event()

    def slow_factory(_kind: str, address: str, _timeout: float) -> object:
        made.append(address)
        entered.set()
        # Hold the first creation open long enough for every other thread to arrive.
        threading.Event().wait(0.05)
        return object()

    monkeypatch.setattr(reconcile_module, "provider_for", slow_factory)
    runtime = Runtime(api=object())  # type: ignore[arg-type]
    addresses = ["http://a:9090", "http://b:9090"] * 8
    start = threading.Barrier(len(addresses))
    got: list[tuple[str, object]] = []
    lock = threading.Lock()

    def ask(address: str) -> None:
        start.wait()
        provider = runtime.provider(address, 10.0)
        with lock:
            got.append((address, provider))

    threads = [threading.Thread(target=ask, args=(a,)) for a in addresses]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert entered.is_set()
    assert sorted(made) == ["http://a:9090", "http://b:9090"]
    assert len({id(p) for a, p in got if a == "http://a:9090"}) == 1
    assert len({id(p) for a, p in got if a == "http://b:9090"}) == 1
