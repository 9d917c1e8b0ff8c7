"""Record a rollout's timeline (phase, step, weights, verdicts) by polling the API.

Used by the demo for its report and by the end-to-end tests, which keep the timeline as an
artifact and assert on it rather than only on the final phase.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.models import GROUP, PLURAL, VERSION
from kanaria.traffic.gatewayapi import GROUP as GW_GROUP
from kanaria.traffic.gatewayapi import VERSION as GW_VERSION
from kanaria.traffic.gatewayapi import weights_from_route

__all__ = ["Point", "TimelineRecorder"]


@dataclass(frozen=True)
class Point:
    t: float
    phase: str
    step: int
    canary_weight: int
    stable: str | None
    canary: str | None
    route: dict[str, int] | None
    analysis: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    """status.monitoring: the serving revision's accuracy, estimate and findings."""


class TimelineRecorder:
    """Polls one ModelDeployment (and its HTTPRoute) every ``interval`` seconds in a thread."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, *, route: str | None = None,
        interval: float = 0.25,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name, self.route = namespace, name, route or name
        self.interval = interval
        self.points: list[Point] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"timeline-{name}")
        self._lock = threading.Lock()
        self.probes: dict[str, Any] = {}

    def start(self) -> TimelineRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> TimelineRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Point]:
        with self._lock:
            return list(self.points)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the API may be briefly away: a gap
                self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        try:
            obj = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            ))
        except ApiException:
            return
        try:
            route_obj = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                GW_GROUP, GW_VERSION, self.namespace, "httproutes", self.route
            ))
            route = weights_from_route(self.name, route_obj)
        except ApiException:
            route = None
        st = obj.get("status") or {}
        extra = {k: float(f()) for k, f in self.probes.items()}
        point = Point(
            t=round(time.monotonic() - self.started, 3),
            phase=st.get("phase", ""),
            step=int(st.get("currentStep", 0)),
            canary_weight=int(st.get("canaryWeight", 0)),
            stable=st.get("stableRevision"),
            canary=st.get("canaryRevision"),
            route=route,
            analysis=list(st.get("analysis") or []),
            message=st.get("message", ""),
            extra=extra,
            monitoring=dict(st.get("monitoring") or {}),
        )
        with self._lock:
            last = self.points[-1] if self.points else None
            if last is None or _differs(last, point):
                self.points.append(point)

    def route_weights_seen(self, revision: str) -> list[int]:
        """The distinct successive weights the route gave ``revision``."""
        seen: list[int] = []
        for p in self.snapshot():
            if p.route is not None:
                w = p.route.get(revision, 0)
                if not seen or seen[-1] != w:
                    seen.append(w)
        return seen

    def dump(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(p) for p in self.snapshot()], indent=1))
        return path


def _differs(a: Point, b: Point) -> bool:
    keys = ("phase", "step", "canary_weight", "stable", "canary", "route", "message")
    return (any(getattr(a, k) != getattr(b, k) for k in keys) or a.analysis != b.analysis or a.extra != b.extra
            or a.monitoring != b.monitoring)
