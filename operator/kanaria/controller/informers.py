"""Watch caches ("informers"): what the operator reads about the cluster, kept current by one
list-then-watch per kind instead of a request per object per cycle.

A reconcile of an object whose spec, status, workloads and route have not changed reads all
of them here and makes no API request. Each cache lists its kind once, then follows a watch
from that list's resourceVersion (with bookmarks, so a reconnect resumes where it stopped), and
lists again only when the API server says the version is too old (410). Responses are decoded
as plain JSON (depth-safely, see :mod:`kanaria.controller.safejson`), never as the client's
typed objects: a 250 KB CRD costs one decode when it changes, not one per cycle.

Every change calls ``on_change(kind, obj, event_type)`` from the cache's thread; the operator
uses it to wake only the ModelDeployments the change concerns. A write the operator itself
made can be put into the cache at once (``put``) so the next cycle does not act on the version
before it; a put never replaces a newer version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from kanaria.controller import safejson

__all__ = ["Informer", "Informers", "Kind", "KINDS", "newer"]

log = logging.getLogger("kanaria.informers")

OnChange = Callable[[str, dict[str, Any], str], None]


@dataclass(frozen=True)
class Kind:
    """One kind the operator follows: where to list it, and with which label selector."""

    name: str
    group: str  # "" for the core group
    version: str
    plural: str
    label_selector: str = ""
    cluster_scoped: bool = False
    crd: str | None = None
    """The CRD that must exist before this kind can be listed (None: always there)."""

    def path(self, namespace: str | None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None and not self.cluster_scoped:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


OWNED = "kanaria.io/deployment"
"""Label selector (exists) of every revision's Deployment and Service; a Deployment someone
else labelled so is seen too, which is how a revision-name collision is noticed."""
KINDS = {
    "ModelDeployment": Kind("ModelDeployment", "kanaria.io", "v1alpha1", "modeldeployments"),
    "Deployment": Kind("Deployment", "apps", "v1", "deployments", label_selector=OWNED),
    "Service": Kind("Service", "", "v1", "services"),
    "CustomResourceDefinition": Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1",
                                     "customresourcedefinitions", cluster_scoped=True),
    "HTTPRoute": Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes",
                      crd="httproutes.gateway.networking.k8s.io"),
    "VirtualService": Kind("VirtualService", "networking.istio.io", "v1", "virtualservices",
                           crd="virtualservices.networking.istio.io"),
    "InferenceModelRewrite": Kind("InferenceModelRewrite", "inference.networking.x-k8s.io", "v1alpha2",
                                  "inferencemodelrewrites", crd="inferencemodelrewrites.inference.networking.x-k8s.io"),
}


def _version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except (TypeError, ValueError):
        return None


def newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` may replace ``current``: resourceVersions are etcd revisions here
    (compared as numbers); when either is not a number, the latest arrival wins."""
    if current is None:
        return True
    a, b = _version(candidate), _version(current)
    return a is None or b is None or a >= b


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass
class Informer:
    """List-then-watch of one kind (in all namespaces, or one), in a thread of its own."""

    api: client.ApiClient
    kind: Kind
    namespace: str | None = None
    on_change: OnChange | None = None
    watch_timeout: int = 300
    _items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _by_owner: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)
    """(namespace, kanaria.io/deployment label) -> keys: a cycle's reads do not walk the kind."""
    _by_namespace: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _synced: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _version: str = ""
    requests: int = 0
    """List and watch requests made (for the operator's metrics and the tests)."""

    # ------------------------------------------------------------------ reading

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get((namespace, name))

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects in a namespace (all with None) whose labels include ``labels``."""
        with self._lock:
            owner = (labels or {}).get(OWNED)
            if namespace is not None and owner is not None:
                keys: Iterable[tuple[str, str]] = self._by_owner.get((namespace, owner), set())
            elif namespace is not None:
                keys = self._by_namespace.get(namespace, set())
            else:
                keys = self._items.keys()
            items = [self._items[k] for k in keys if k in self._items]
        out = []
        for obj in items:
            meta = obj.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                continue
            have = meta.get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            out.append(obj)
        return out

    def put(self, obj: Mapping[str, Any]) -> None:
        """A version the operator just wrote (the API server's answer): cached unless the cache
        already holds a newer one."""
        if not isinstance(obj, dict) or "metadata" not in obj:
            return
        with self._lock:
            key = _key(obj)
            if newer(obj, self._items.get(key)):
                self._store(key, obj)

    def forget(self, namespace: str, name: str) -> None:
        """The operator deleted it: drop it now rather than at the watch's event."""
        with self._lock:
            self._drop((namespace, name))

    def _store(self, key: tuple[str, str], obj: dict[str, Any]) -> None:
        """Keep ``obj`` under ``key`` and in the indexes (the lock is held)."""
        self._drop(key)
        self._items[key] = obj
        self._by_namespace.setdefault(key[0], set()).add(key)
        owner = ((obj.get("metadata") or {}).get("labels") or {}).get(OWNED)
        if owner is not None:
            self._by_owner.setdefault((key[0], str(owner)), set()).add(key)

    def _drop(self, key: tuple[str, str]) -> None:
        old = self._items.pop(key, None)
        if old is None:
            return
        self._by_namespace.get(key[0], set()).discard(key)
        owner = ((old.get("metadata") or {}).get("labels") or {}).get(OWNED)
        if owner is not None:
            self._by_owner.get((key[0], str(owner)), set()).discard(key)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self._version:
                    self._list()
                self._watch()
                failures = 0
            except _Gone:
                self._version = ""  # too old: list again
            except Exception as exc:  # never let a cache die: back off and list again
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("watch of %s failed (%s: %s); listing again in %.1fs", self.kind.name,
                            type(exc).__name__, exc, delay)
                self._version = ""
                self._stop.wait(delay)

    def _call(self, params: dict[str, Any], stream: bool) -> Any:
        """One GET of the kind's collection (a list page, or a watch); the raw urllib3 response."""
        self.requests += 1
        query = [(k, v) for k, v in params.items() if v not in (None, "")]
        method, url, headers, body, post = self.api.param_serialize(
            "GET", self.kind.path(self.namespace), query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
        )
        timeout = (10, self.watch_timeout + 30) if stream else (10, 60)
        resp = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                 _request_timeout=timeout).response
        if resp.status == 410:
            resp.release_conn()
            raise _Gone()
        if resp.status != 200:
            text = resp.data[:300] if not stream else b""
            resp.release_conn()
            raise RuntimeError(f"GET {self.kind.path(self.namespace)}: HTTP {resp.status} {text!r}")
        return resp

    def _list(self) -> None:
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        cont = ""
        while True:
            resp = self._call({"labelSelector": self.kind.label_selector, "limit": 500, "continue": cont}, False)
            try:
                body = safejson.loads(resp.data)
            finally:
                resp.release_conn()
            for obj in body.get("items") or []:
                fresh[_key(obj)] = obj
            meta = body.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                self._version = str(meta.get("resourceVersion") or "")
                break
        with self._lock:
            old = self._items
            self._items, self._by_owner, self._by_namespace = {}, {}, {}
            for key, obj in fresh.items():
                self._store(key, obj)
        self._synced.set()
        if self.on_change is not None:  # what changed while nobody watched
            for key, obj in fresh.items():
                if old.get(key, {}).get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    self.on_change(self.kind.name, obj, "MODIFIED")
            for key, obj in old.items():
                if key not in fresh:
                    self.on_change(self.kind.name, obj, "DELETED")

    def _watch(self) -> None:
        resp = self._call({
            "watch": "true", "allowWatchBookmarks": "true", "resourceVersion": self._version,
            "labelSelector": self.kind.label_selector, "timeoutSeconds": self.watch_timeout,
        }, True)
        try:
            for line in _lines(resp.stream(65536)):
                if self._stop.is_set():
                    return
                event = safejson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._version = str(version)
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    if kind == "DELETED":
                        self._drop(_key(obj))
                    else:
                        self._store(_key(obj), obj)
                if self.on_change is not None:
                    self.on_change(self.kind.name, obj, str(kind))
        finally:
            resp.release_conn()


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def _lines(chunks: Iterable[bytes]) -> Iterable[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


class Informers:
    """The caches of every kind the operator reads, per watched namespace (or cluster-wide).

    Kinds that need a CRD start when the CRD appears (the CRD cache follows them); until then
    a read of them says "absent"."""

    def __init__(self, api: client.ApiClient, namespaces: list[str] | None = None,
                 on_change: OnChange | None = None) -> None:
        self.api = api
        self.namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self.on_change = on_change
        self._caches: dict[str, list[Informer]] = {}
        self._lock = threading.Lock()

    def start(self, timeout: float = 60.0) -> None:
        for kind in ("ModelDeployment", "Deployment", "Service"):
            self._start_kind(kind)
        self._start_kind("CustomResourceDefinition", cluster=True)
        deadline = time.monotonic() + timeout
        for caches in list(self._caches.values()):
            for cache in caches:
                cache.wait_synced(max(0.0, deadline - time.monotonic()))
        self._start_router_kinds()

    def _start_kind(self, kind: str, cluster: bool = False) -> None:
        with self._lock:
            if kind in self._caches:
                return
            spaces = [None] if cluster else self.namespaces
            caches = [Informer(self.api, KINDS[kind], ns, self._changed) for ns in spaces]
            self._caches[kind] = caches
        for cache in caches:
            cache.start()

    def _start_router_kinds(self) -> None:
        for kind in KINDS.values():
            if kind.crd is not None and self.crd_established(kind.crd):
                self._start_kind(kind.name)  # once; a later call waits for the same caches
                for cache in self._caches[kind.name]:
                    cache.wait_synced(30.0)

    def _changed(self, kind: str, obj: dict[str, Any], event: str) -> None:
        if kind == "CustomResourceDefinition":
            self._start_router_kinds_async()
        if self.on_change is not None:
            self.on_change(kind, obj, event)

    def _start_router_kinds_async(self) -> None:
        threading.Thread(target=self._start_router_kinds, name="informer-start", daemon=True).start()

    def stop(self) -> None:
        for caches in self._caches.values():
            for cache in caches:
                cache.stop()

    # ------------------------------------------------------------------ reading

    def has(self, kind: str) -> bool:
        caches = self._caches.get(kind) or []
        return bool(caches) and all(c.synced for c in caches)

    def _for(self, kind: str, namespace: str) -> Informer | None:
        caches = self._caches.get(kind) or []
        for cache in caches:
            if cache.namespace is None or cache.namespace == namespace:
                return cache
        return None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        cache = self._for(kind, namespace) if KINDS[kind].cluster_scoped is False else self._for(kind, "")
        return None if cache is None else cache.get("" if KINDS[kind].cluster_scoped else namespace, name)

    def list(self, kind: str, namespace: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        cache = self._for(kind, namespace)
        return [] if cache is None else cache.list(namespace, labels)

    def put(self, kind: str, obj: Mapping[str, Any]) -> None:
        cache = self._for(kind, str((obj.get("metadata") or {}).get("namespace") or ""))
        if cache is not None:
            cache.put(obj)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        cache = self._for(kind, namespace)
        if cache is not None:
            cache.forget(namespace, name)

    def crd_established(self, name: str) -> bool:
        crd = self.get("CustomResourceDefinition", "", name)
        if crd is None:
            return False
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def requests(self, kind: str | None = None) -> int:
        """List and watch requests made so far (of one kind, or of all)."""
        return sum(c.requests for k, caches in self._caches.items() if kind in (None, k) for c in caches)
