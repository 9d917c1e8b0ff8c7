"""Helpers for the reliability tests: a watch-based recorder that sees every write (not just
what a poller happens to catch), a misbehaving Prometheus, and a concurrent writer.

Nothing here sleeps to "let things happen": threads wait on events with timeouts, and the
tests poll with deadlines (tests/helpers.py wait_for).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kanaria.sandbox._proc import free_port
from kanaria.traffic.gatewayapi import weights_from_route

__all__ = [
    "Annotator",
    "FakePrometheus",
    "Record",
    "WatchRecorder",
    "is_step_subsequence",
    "lease_holder",
    "route_weights",
    "step_times",
]


@dataclass(frozen=True)
class Record:
    t: float  # time.monotonic()
    name: str
    obj: dict[str, Any]


class WatchRecorder:
    """Lists, then watches, one namespaced custom resource kind; records every object version
    it sees, resuming from the last resourceVersion after a cut stream (API server restart).
    ``relists`` counts the times it had to list again (a gap where writes could be missed)."""

    def __init__(self, api: client.ApiClient, namespace: str, group: str, version: str, plural: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.args = (group, version, namespace, plural)
        self.records: list[Record] = []
        self.relists = 0
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{plural}")
        self._watch: watch.Watch | None = None

    def __enter__(self) -> WatchRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=70)

    def snapshot(self, name: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self.records if name is None or r.name == name]

    def _add(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(Record(time.monotonic(), obj["metadata"]["name"], obj))

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = self.custom.list_namespaced_custom_object(*self.args)
                    for item in listing.get("items", []):
                        self._add(item)
                    rv = listing["metadata"]["resourceVersion"]
                    self.relists += 1
                self._watch = watch.Watch()
                for ev in self._watch.stream(
                    self.custom.list_namespaced_custom_object, *self.args,
                    resource_version=rv, timeout_seconds=30, allow_watch_bookmarks=True,
                ):
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._add(obj)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                self.reconnects += 1
                self._stop.wait(0.2)
            except Exception:  # noqa: BLE001 - the API server may be restarting
                self.reconnects += 1
                self._stop.wait(0.2)


def route_weights(records: list[Record], route: str, revision: str,
                  since: float = 0.0, until: float = float("inf")) -> list[int]:
    """Distinct successive weights the HTTPRoute gave ``revision`` between two times (every
    write the watch saw, in order)."""
    seen: list[int] = []
    for r in records:
        if r.name != route or not since <= r.t < until:
            continue
        w = (weights_from_route(route, r.obj) or {}).get(revision, 0)
        if not seen or seen[-1] != w:
            seen.append(w)
    return seen


def is_step_subsequence(seen: list[int], ladder: list[int]) -> bool:
    """True when ``seen`` walks up ``ladder`` (0, step weights…, 100) in order, possibly
    stopping early, with no backward move and no skipped rung."""
    if not seen:
        return True
    start = ladder.index(seen[0]) if seen[0] in ladder else -1
    if start < 0:
        return False
    return seen == ladder[start:start + len(seen)]


def lease_holder(api: client.ApiClient, namespace: str, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException:
        return None
    return lease.spec.holder_identity


class FakePrometheus:
    """A Prometheus impostor on 127.0.0.1: ``hang`` never answers in time, ``500`` answers
    with a server error, ``garbage`` answers 200 with malformed JSON. Counts requests."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests += 1
                if outer.mode == "hang":
                    outer._release.wait(30)
                    body, code = b'{"status":"success","data":{"resultType":"vector","result":[]}}', 200
                elif outer.mode == "500":
                    body, code = b'{"status":"error","errorType":"internal","error":"boom"}', 500
                else:
                    body, code = b'{"status":"success","data":{"resultType":"vec', 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up waiting, as it should

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class Annotator:
    """Changes an object's metadata every ``every`` seconds so its resourceVersion moves under
    the operator's feet: each status write of a cycle that read the old version gets a 409."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, every: float = 0.3) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name, self.every = namespace, name, every
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="annotator")

    def __enter__(self) -> Annotator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            body = {"metadata": {"annotations": {"chaos.kanaria.io/tick": str(self.writes)}}}
            try:
                self.custom.patch_namespaced_custom_object(
                    "kanaria.io", "v1alpha1", self.namespace, "modeldeployments", self.name, body
                )
                self.writes += 1
            except Exception:  # noqa: BLE001 - keep poking
                pass


@contextmanager
def recording(api: client.ApiClient, namespace: str) -> Iterator[tuple[WatchRecorder, WatchRecorder]]:
    """Watch ModelDeployments and HTTPRoutes of a namespace for the duration of a block."""
    with WatchRecorder(api, namespace, "kanaria.io", "v1alpha1", "modeldeployments") as mds, \
            WatchRecorder(api, namespace, "gateway.networking.k8s.io", "v1", "httproutes") as routes:
        yield mds, routes


def status_of(r: Record) -> dict[str, Any]:
    st: dict[str, Any] = r.obj.get("status") or {}
    return st


def first(records: list[Record], pred: Callable[[Record], bool]) -> Record | None:
    return next((r for r in records if pred(r)), None)


def step_times(st: dict[str, Any], revision: str) -> dict[int, list[datetime]]:
    """When each step was reached, from status.timeline (StepAdvanced entries of one revision)."""
    out: dict[int, list[datetime]] = {}
    for e in st.get("timeline") or []:
        if e.get("reason") == "StepAdvanced" and e.get("revision") == revision:
            out.setdefault(int(e["step"]), []).append(datetime.fromisoformat(e["at"]))
    return out
