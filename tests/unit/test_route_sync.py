"""The sandbox's one route-sync loop, over a fake API: every follower sees each version of
the route (and its deletion); a follower that fails is tried again and never stops another."""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kanaria.sandbox.route_sync import HTTPRouteSync

SANDBOX = Path(__file__).resolve().parents[2] / "operator" / "kanaria" / "sandbox"


def _route(weight: int) -> dict[str, Any]:
    return {"metadata": {"name": "m", "resourceVersion": str(weight)},
            "spec": {"rules": [{"backendRefs": [{"name": "m-r1", "weight": 100 - weight},
                                                {"name": "m-r2", "weight": weight}]}]}}


class _Events:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def stream(self, *_: object, **__: object) -> Iterator[bytes]:
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"

    def close(self) -> None:
        return None

    def release_conn(self) -> None:
        return None


class _Routes:
    """A list showing the first route, then one watch: MODIFIED to the second, DELETED;
    later lists show no route and later watches nothing."""

    def __init__(self) -> None:
        self.lists = 0
        self.watches = 0

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        assert args == ("gateway.networking.k8s.io", "v1", "models", "httproutes")
        assert kwargs["field_selector"] == "metadata.name=m"
        if not kwargs.get("watch"):
            self.lists += 1
            return {"items": [_route(10)] if self.watches == 0 else [], "metadata": {"resourceVersion": "1"}}
        self.watches += 1
        if self.watches > 1:
            return _Events([])
        return _Events([{"type": "MODIFIED", "object": _route(50)}, {"type": "DELETED", "object": _route(50)}])


class _Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.seen: list[int | None] = []
        self.failures = failures
        self.done = threading.Event()

    def apply(self, route: Mapping[str, Any] | None) -> None:
        if self.failures:
            self.failures -= 1
            raise KeyError("m-r2")  # its process is not up yet
        self.seen.append(None if route is None else int(route["metadata"]["resourceVersion"]))
        if route is None:
            self.done.set()


def test_every_follower_sees_each_version_of_the_route_and_its_deletion() -> None:
    weights, mirror = _Recorder(), _Recorder()
    with HTTPRouteSync("m", "models", [weights, mirror], api=_Routes(), watch_timeout_seconds=1):
        assert weights.done.wait(10) and mirror.done.wait(10)
    assert weights.seen[:3] == [10, 50, None]
    assert mirror.seen[:3] == [10, 50, None]


def test_a_failing_follower_is_tried_again_and_does_not_stop_the_others() -> None:
    weights, mirror = _Recorder(), _Recorder(failures=1)
    routes = _Routes()
    with HTTPRouteSync("m", "models", [mirror, weights], api=routes, watch_timeout_seconds=1,
                       retry_seconds=0.05) as sync:
        assert weights.done.wait(10) and mirror.done.wait(10)
    assert weights.seen[:2] == [10, 10]  # the route again, listed after the failure
    assert mirror.seen[0] == 10 and None in mirror.seen
    assert routes.lists >= 2 and sync.last_error is None


def test_the_sandbox_has_one_route_sync_loop_and_one_free_port() -> None:
    defined: dict[str, list[str]] = {}
    for path in sorted(SANDBOX.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                defined.setdefault(node.name, []).append(path.name)
    assert defined["free_port"] == ["_proc.py"]
    loops = sorted(name for name in defined if name.startswith("HTTPRoute") and name.endswith("Sync"))
    assert loops == ["HTTPRouteSync"]
