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


class _StatusWrites:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        assert args[:5] == ("gateway.networking.k8s.io", "v1", "models", "httproutes", "m")
        self.bodies.append(args[5])
        return args[5]


def test_a_sync_with_a_controller_name_reports_what_it_applied_in_the_routes_status_once() -> None:
    """Like a gateway controller: Accepted and ResolvedRefs for the generation every follower
    applied, one entry per parentRef, other controllers' entries kept; a route whose status
    already says so is not written again (its own watch event must not loop); a version a
    follower failed on is not reported."""
    api = _StatusWrites()
    failing = _Recorder(failures=1)
    sync = HTTPRouteSync("m", "models", [failing], api=api, controller="kanaria.io/sandbox-gateway")
    route = _route(20)
    route["metadata"]["generation"] = 3
    route["spec"]["parentRefs"] = [{"name": "gw"}, {"name": "gw", "sectionName": "http"}]
    other = {"parentRef": {"name": "gw"}, "controllerName": "example.com/other", "conditions": []}
    route["status"] = {"parents": [other]}
    assert not sync.apply(route) and api.bodies == [] and sync.programmed_generation is None
    assert sync.apply(route)
    assert sync.programmed_generation == 3
    (body,) = api.bodies
    assert body["metadata"]["resourceVersion"] == "20", "written over the version applied, or refused"
    parents = body["status"]["parents"]
    assert parents[0] == other
    assert [p["parentRef"] for p in parents[1:]] == route["spec"]["parentRefs"]
    assert all(p["controllerName"] == "kanaria.io/sandbox-gateway" for p in parents[1:])
    assert {(c["type"], c["status"], c["observedGeneration"]) for p in parents[1:] for c in p["conditions"]} == {
        ("Accepted", "True", 3), ("ResolvedRefs", "True", 3)}
    route["status"] = body["status"]
    assert sync.apply(route) and len(api.bodies) == 1, "its own status write is not written again"
    route["metadata"]["generation"] = 4
    assert sync.apply(route) and len(api.bodies) == 2
    silent = HTTPRouteSync("m", "models", [_Recorder()], api=api)
    assert silent.apply(route) and len(api.bodies) == 2, "without a controller name nothing is written"
    orphan = _route(30)
    assert sync.apply(orphan) and len(api.bodies) == 3
    assert [p["parentRef"]["name"] for p in api.bodies[-1]["status"]["parents"]] == ["kanaria-sandbox"], \
        "a route naming no parent is reported for the sandbox's own"
