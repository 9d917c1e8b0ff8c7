"""The sandbox's one route-sync loop: local proxies follow the HTTPRoute the operator writes.

In a cluster the gateway reads the route; here :class:`HTTPRouteSync` watches one HTTPRoute
(list, then watch from the list's resourceVersion, listing again when the watch expires) and
hands every version of it to its followers — HAProxy's weights
(:class:`~kanaria.sandbox.proxy.WeightFollower`) and nginx's mirror and pin
(:class:`~kanaria.sandbox.mirror.MirrorFollower`). A deleted route is handed on as None. A
follower that fails (a Service whose process is not up yet) is retried by listing again
after ``retry_seconds``, and never stops the others.

Given a ``controller`` name, the sync reports like a gateway controller: once every follower
has applied a version of the route, it writes the route's ``status.parents`` — for each of its
``parentRefs``, Accepted and ResolvedRefs True with the ``observedGeneration`` it applied
(entries of other controllers kept; a route without parentRefs gets one for SANDBOX_PARENT,
as the sandbox proxy follows routes by name). A client can then tell when the data plane carries a
version of the route (``programmed``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["HTTPRouteSync", "RouteFollower"]

_log = logging.getLogger(__name__)


SANDBOX_PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "kanaria-sandbox"}
"""The parent reported for a route that names none (the sandbox proxy follows routes by name)."""


class RouteFollower(Protocol):
    def apply(self, route: Mapping[str, Any] | None) -> object:
        """Make a local proxy match the route (None: the route is gone)."""
        ...


class HTTPRouteSync:
    """Keep ``followers`` equal to the HTTPRoute ``name`` (in a daemon thread, from ``start()``)."""

    GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"

    def __init__(
        self,
        name: str,
        namespace: str,
        followers: Sequence[RouteFollower],
        *,
        kubeconfig: str | None = None,
        api: Any = None,
        watch_timeout_seconds: int = 5,
        retry_seconds: float = 0.5,
        controller: str | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.followers = list(followers)
        self._kubeconfig = kubeconfig
        self._api = api
        self._watch_timeout = watch_timeout_seconds
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied_count = 0
        self.last_error: str | None = None
        self.controller = controller
        self.programmed_generation: int | None = None
        """The generation of the route every follower applied last (None before the first)."""

    def apply(self, route: Mapping[str, Any] | None) -> bool:
        """Hand one version of the route to every follower; False when any of them failed
        (the error is kept in ``last_error``)."""
        ok = True
        for follower in self.followers:
            try:
                follower.apply(route)
            except Exception as exc:  # keep following: one proxy must not stop the others
                if repr(exc) != self.last_error:
                    _log.warning("HTTPRoute sync %s/%s: %r", self.namespace, self.name, exc)
                self.last_error = repr(exc)
                ok = False
        if ok:
            self.last_error = None
            if route is not None:
                self.programmed_generation = int((route.get("metadata") or {}).get("generation") or 0)
                if self.controller is not None:
                    self._report(route)
        self.applied_count += 1
        return ok

    def _report(self, route: Mapping[str, Any]) -> None:
        """Write Accepted/ResolvedRefs for this generation into the route's status.parents,
        unless they are there already (the status write's own watch event then changes nothing)."""
        from datetime import UTC, datetime

        from kubernetes.client.exceptions import ApiException

        meta = route.get("metadata") or {}
        generation = int(meta.get("generation") or 0)
        parents = [p for p in ((route.get("status") or {}).get("parents") or []) if isinstance(p, dict)]
        mine = [p for p in parents if p.get("controllerName") == self.controller]
        refs = [r for r in ((route.get("spec") or {}).get("parentRefs") or []) if isinstance(r, dict)]
        refs = refs or [dict(SANDBOX_PARENT)]  # the sandbox's proxy follows a route by name
        if (len(mine) == len(refs) and all(
                c.get("observedGeneration") == generation for p in mine for c in p.get("conditions") or [])):
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "True", "reason": kind, "message": "applied to the sandbox proxy",
             "observedGeneration": generation, "lastTransitionTime": now}
            for kind in ("Accepted", "ResolvedRefs")
        ]
        others = [p for p in parents if p.get("controllerName") != self.controller]
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                "status": {"parents": [*others, *({"parentRef": ref, "controllerName": self.controller,
                                                  "conditions": conditions} for ref in refs)]}}
        try:
            self._custom_objects().patch_namespaced_custom_object_status(
                self.GROUP, self.VERSION, self.namespace, self.PLURAL, self.name, body)
        except ApiException as exc:  # 409: a newer version is on its way; it is reported then
            if exc.status not in (404, 409):
                _log.warning("HTTPRoute status %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)

    def _custom_objects(self) -> Any:
        if self._api is None:
            import kubernetes

            k8s: Any = kubernetes  # the client is untyped
            api_client = k8s.config.new_client_from_config(config_file=self._kubeconfig)
            self._api = k8s.client.CustomObjectsApi(api_client)
        return self._api

    def start(self) -> HTTPRouteSync:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"httproute-sync-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self._watch_timeout + 5)

    def __enter__(self) -> HTTPRouteSync:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        import kubernetes
        from kubernetes.client.exceptions import ApiException

        k8s: Any = kubernetes  # the client is untyped
        selector = f"metadata.name={self.name}"
        args = (self.GROUP, self.VERSION, self.namespace, self.PLURAL)
        while not self._stop.is_set():
            try:
                api = self._custom_objects()
                listing = api.list_namespaced_custom_object(*args, field_selector=selector)
                items = listing.get("items") or []
                if not self.apply(items[0] if items else None):
                    self._stop.wait(self._retry)
                    continue
                started = time.monotonic()
                stream = k8s.watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    *args,
                    field_selector=selector,
                    resource_version=listing.get("metadata", {}).get("resourceVersion"),
                    timeout_seconds=self._watch_timeout,
                )
                for event in stream:
                    if self._stop.is_set():
                        break
                    route = None if event["type"] == "DELETED" else event["object"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED") and not self.apply(route):
                        break  # list again after retry_seconds
                if time.monotonic() - started < self._retry:  # a watch that ends at once: do not spin
                    self._stop.wait(self._retry)
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the watch expired, list again
                    self.last_error = f"{exc.status} {exc.reason}"
                    self._stop.wait(1.0)
            except Exception as exc:  # keep watching: the proxies must not lose their sync
                self.last_error = repr(exc)
                _log.warning("HTTPRoute sync %s/%s: %r", self.namespace, self.name, exc)
                self._stop.wait(1.0)
