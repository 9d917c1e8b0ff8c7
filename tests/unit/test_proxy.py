"""HAProxy really splits traffic by weight, changes weights live, and routes feedback home."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.helpers import wait_for

from kanaria.sandbox.httproute import weights_from_httproute
from kanaria.sandbox.modelserver import ModelServerProcess
from kanaria.sandbox.proxy import (
    SERVER_HEADER,
    HAProxyProxy,
    WeightFollower,
    scale_weights,
)
from kanaria.sandbox.route_sync import HTTPRouteSync
from kanaria.sandbox.train import load_split, train_revision

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="needs haproxy")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModelServerProcess]]:
    root = tmp_path_factory.mktemp("proxy")
    art = train_revision("iris", "v1", root / "v1")
    procs: dict[str, ModelServerProcess] = {}

    def launch(rev: str) -> None:
        env = {"KANARIA_MODEL_URI": str(art), "KANARIA_MODEL_NAME": "iris", "KANARIA_REVISION": rev}
        procs[rev] = ModelServerProcess(env)

    try:
        with ThreadPoolExecutor(2) as pool:  # start both at once: each takes seconds to import
            list(pool.map(launch, ("stable", "canary")))
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def _addresses(backends: dict[str, ModelServerProcess]) -> dict[str, tuple[str, int]]:
    return {rev: ("127.0.0.1", proc.port) for rev, proc in backends.items()}


def _binomial_ok(observed: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(observed - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def test_proxy_splits_by_weight_and_feedback_reaches_the_serving_revision(
    backends: dict[str, ModelServerProcess],
) -> None:
    row = list(load_split("iris").X_test[0])
    with HAProxyProxy(_addresses(backends), {"stable": 80, "canary": 20}) as proxy, httpx.Client(
        base_url=proxy.url, timeout=10
    ) as client:
        assert proxy.weights() == {"stable": 80, "canary": 20}
        served: Counter[str] = Counter()
        stickiness: dict[str, str] = {}
        for i in range(400):
            r = client.post("/predict", json={"features": row, "request_id": f"split-{i}"})
            assert r.status_code == 200
            revision = r.json()["revision"]
            assert r.headers[SERVER_HEADER] == revision
            served[revision] += 1
            stickiness[f"split-{i}"] = r.headers[SERVER_HEADER]
        assert _binomial_ok(served["canary"], 400, 0.2)
        counts = proxy.served_counts()
        assert counts == {"stable": served["stable"], "canary": served["canary"]}

        # Live change to 100/0: the canary gets nothing new ...
        assert proxy.set_weights({"stable": 100, "canary": 0}) == {"stable": 100, "canary": 0}
        before = proxy.loadbalanced_counts()["canary"]
        for _ in range(50):
            r = client.post("/predict", json={"features": row})
            assert r.json()["revision"] == "stable"
        assert proxy.loadbalanced_counts()["canary"] == before

        # ... but feedback for its earlier predictions still reaches it, through the proxy.
        accepted: Counter[str] = Counter()
        for rid, server in stickiness.items():
            r = client.post("/feedback", json={"request_id": rid, "label": 0}, headers={SERVER_HEADER: server})
            assert r.json()["accepted"] is True, r.json()
            accepted[r.json()["revision"]] += 1
        assert accepted == served
        assert proxy.loadbalanced_counts()["canary"] == before

        labels = {
            rev: httpx.get(f"{proc.url}/metrics", timeout=10).text for rev, proc in backends.items()
        }
        for rev, text in labels.items():
            credited = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("kanaria_model_labels_total{") and f'revision="{rev}"' in line
            )
            assert credited >= served[rev]
        assert "haproxy_server_http_responses_total" in httpx.get(proxy.metrics_url, timeout=10).text
        pid = proxy.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_proxy_add_and_remove_servers_at_run_time(backends: dict[str, ModelServerProcess]) -> None:
    row = list(load_split("iris").X_test[1])
    with HAProxyProxy() as proxy, httpx.Client(base_url=proxy.url, timeout=10) as client:
        assert client.post("/predict", json={"features": row}).status_code == 503
        proxy.add_server("stable", "127.0.0.1", backends["stable"].port, weight=1)
        proxy.add_server("canary", "127.0.0.1", backends["canary"].port, weight=0)
        revs = Counter(client.post("/predict", json={"features": row}).json()["revision"] for _ in range(20))
        assert revs == {"stable": 20}
        proxy.set_weights({"canary": 3})  # the unnamed stable server goes to 0
        revs = Counter(client.post("/predict", json={"features": row}).json()["revision"] for _ in range(20))
        assert revs == {"canary": 20}
        proxy.remove_server("stable")
        assert set(proxy.weights()) == {"canary"}
        with pytest.raises(KeyError):
            proxy.set_weights({"stable": 1})


def test_proxy_httproute_sync_apply_adds_services_and_weights(
    backends: dict[str, ModelServerProcess],
) -> None:
    ports = {f"iris-{rev}": proc.port for rev, proc in backends.items()}
    route = {
        "spec": {
            "rules": [
                {"backendRefs": [{"name": "iris-stable", "port": 80, "weight": 900_000},
                                 {"name": "iris-canary", "port": 80, "weight": 100_000}]}
            ]
        }
    }
    with HAProxyProxy() as proxy:
        follower = WeightFollower(proxy, lambda svc: ("127.0.0.1", ports[svc]))
        assert follower.apply(route) == {"iris-stable": 900_000, "iris-canary": 100_000}
        assert proxy.weights() == {"iris-stable": 256, "iris-canary": 28}
        route["spec"]["rules"][0]["backendRefs"] = [{"name": "iris-canary", "port": 80, "weight": 1}]
        follower.apply(route)
        assert proxy.weights() == {"iris-stable": 0, "iris-canary": 1}
        assert follower.apply(None) is None  # a deleted route leaves the weights as they are
        assert proxy.weights() == {"iris-stable": 0, "iris-canary": 1}
        # The canary's process starts again elsewhere: the next version of the route moves its
        # server there (here: onto the stable's process), and requests reach it.
        ports["iris-canary"] = ports["iris-stable"]
        follower.apply(route)
        assert proxy.servers()["iris-canary"] == ("127.0.0.1", ports["iris-stable"])
        answer = httpx.post(f"{proxy.url}/predict", json={"features": [0.0] * 30}, timeout=10)
        assert answer.headers.get("x-kanaria-revision") == "stable"


class _FakeResponse:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines

    def stream(self, *_: object, **__: object) -> Iterator[bytes]:
        yield from self._lines

    def close(self) -> None:
        return None

    def release_conn(self) -> None:
        return None


class _FakeCustomObjects:
    """Enough of CustomObjectsApi for one list and one watch with a MODIFIED event."""

    def __init__(self, first: dict[str, object], second: dict[str, object]) -> None:
        self.first, self.second, self.watches = first, second, 0

    def list_namespaced_custom_object(self, *args: object, **kwargs: object) -> object:
        assert args == ("gateway.networking.k8s.io", "v1", "default", "httproutes")
        assert kwargs["field_selector"] == "metadata.name=iris"
        if not kwargs.get("watch"):  # a list shows the latest state
            current = self.second if self.watches else self.first
            return {"items": [current], "metadata": {"resourceVersion": "1"}}
        self.watches += 1
        event = {"type": "MODIFIED", "object": self.second} if self.watches == 1 else None
        return _FakeResponse([json.dumps(event).encode() + b"\n"] if event else [])


def test_proxy_httproute_sync_watch_loop_applies_changes(
    backends: dict[str, ModelServerProcess],
) -> None:
    def route(canary: int) -> dict[str, object]:
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "iris", "namespace": "default", "resourceVersion": str(canary)},
            "spec": {"rules": [{"backendRefs": [{"name": "stable", "port": 80, "weight": 100 - canary},
                                               {"name": "canary", "port": 80, "weight": canary}]}]},
        }

    addresses = _addresses(backends)
    api = _FakeCustomObjects(route(10), route(50))
    with HAProxyProxy() as proxy:
        follower = WeightFollower(proxy, addresses.__getitem__)
        with HTTPRouteSync("iris", "default", [follower], api=api, watch_timeout_seconds=1) as sync:
            wait_for(lambda: follower.applied == {"stable": 50, "canary": 50}, 10, interval=0.02,
                     message=lambda: f"the watched route's weights applied (last error: {sync.last_error})")
        assert follower.applied == {"stable": 50, "canary": 50}, sync.last_error
        assert proxy.weights() == {"stable": 50, "canary": 50}


def test_proxy_weights_from_httproute_picks_the_split_rule() -> None:
    route = {
        "spec": {
            "rules": [
                {"matches": [{"headers": [{"name": "X-Kanaria-Revision", "value": "abc"}]}],
                 "backendRefs": [{"name": "m-abc", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [
                     {"name": "m-old", "port": 80, "weight": 70},
                     {"name": "m-new", "port": 80, "weight": 30},
                     {"name": "m-new", "port": 80, "weight": 5},
                     {"name": "bucket", "group": "example.io", "kind": "Bucket", "weight": 9},
                     {"name": "m-zero", "port": 80, "weight": 0},
                 ],
                 "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m-shadow"}}}]},
            ]
        }
    }
    assert weights_from_httproute(route) == {"m-old": 70, "m-new": 35, "m-zero": 0}
    assert weights_from_httproute({"spec": {"rules": [{"backendRefs": [{"name": "a"}]}]}}) == {"a": 1}
    assert weights_from_httproute({"spec": {}}) == {}
    assert weights_from_httproute({"spec": {"rules": [{"matches": [{"headers": [{"name": "h", "value": "v"}]}],
                                                       "backendRefs": [{"name": "pinned"}]}]}}) == {"pinned": 1}


def test_proxy_scale_weights() -> None:
    assert scale_weights({"a": 80, "b": 20}) == {"a": 80, "b": 20}
    assert scale_weights({"a": 999_999, "b": 1, "c": 0}) == {"a": 256, "b": 1, "c": 0}
    assert scale_weights({}) == {}
    with pytest.raises(ValueError):
        scale_weights({"a": -1})


def test_proxy_leaves_no_process(tmp_path: Path) -> None:
    proxy = HAProxyProxy().start()
    pid = proxy.pid
    sock_dir = proxy.socket_path.parent
    proxy.stop()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not sock_dir.exists()
