"""The operator's process-wide state, built once at startup and kept in kopf's memo."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kanaria.controller.batch import Batcher
from kanaria.controller.informers import Informers
from kanaria.controller.leader import LeaderElector
from kanaria.controller.metrics import OperatorMetrics
from kanaria.controller.notify import Notifier, notifier_from_env
from kanaria.controller.reconcile import ReconcileContext
from kanaria.rollout.types import Decision

__all__ = ["OperatorState", "PriorityPool", "Shard", "build_state", "load_api_client", "WATCHED"]

log = logging.getLogger("kanaria.state")

WATCHED: list[str] = []
"""The namespaces the operator watches (empty: all); set by ``kanaria-operator --namespace``."""
URGENT, ROUTINE = 0, 1


class PriorityPool:
    """A fixed set of worker threads taking the most urgent work first: a cycle woken by a
    change goes ahead of every routine (timed) one, however many are queued."""

    def __init__(self, workers: int, name: str = "reconcile") -> None:
        self._heap: list[tuple[int, int, Callable[[], Any], Future[Any]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        with self._cv:
            if self._stopped:
                raise RuntimeError("the pool is stopped")
            heapq.heappush(self._heap, (priority, next(self._seq), lambda: fn(*args), done))
            self._cv.notify()
        return done

    def queued(self) -> int:
        with self._cv:
            return len(self._heap)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                _, _, call, done = heapq.heappop(self._heap)
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(call())
            except BaseException as exc:
                done.set_exception(exc)

    def shutdown(self) -> None:
        with self._cv:
            self._stopped = True
            for *_, done in self._heap:
                done.cancel()
            self._heap.clear()
            self._cv.notify_all()


@dataclass(frozen=True)
class Shard:
    """This replica set's share of the ModelDeployments: ``index`` of ``count`` by a hash of
    namespace/name (KANARIA_SHARD="1/3"), every object exactly one shard's."""

    index: int = 0
    count: int = 1

    @classmethod
    def from_env(cls, value: str | None) -> Shard:
        if not value:
            return cls()
        try:
            index, count = (int(part) for part in value.split("/", 1))
        except ValueError:
            raise ValueError(f"KANARIA_SHARD={value!r}: expected INDEX/COUNT such as 0/2") from None
        if not 0 <= index < count:
            raise ValueError(f"KANARIA_SHARD={value!r}: the index must be in 0..{count - 1}")
        return cls(index, count)

    def owns(self, namespace: str, name: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def api_message(exc: ApiException) -> str:
    """The message of the API server's Status in an error answer (its reason when there is none),
    at most 300 characters."""
    message = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        message = ""
    return (message or str(exc.reason or ""))[:300]


def namespace_terminating(exc: Exception) -> bool:
    """Whether the API server refused a write because the object's namespace is being deleted
    (403 with a NamespaceTerminating cause)."""
    if not isinstance(exc, ApiException) or exc.status != 403:
        return False
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return False
    details = body.get("details") if isinstance(body, dict) else None
    causes = details.get("causes") if isinstance(details, dict) else None
    if isinstance(causes, list) and any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating"
                                        for c in causes):
        return True
    return "because it is being terminated" in api_message(exc)


class LimitedApiClient(client.ApiClient):
    """The Kubernetes client with a client-side rate limit (a token bucket: ``qps`` per second,
    bursts of ``burst``), as controller-runtime's clients have, and a count of the requests made.
    The API server's priority and fairness answers 429 with Retry-After when its share is
    spent; such a cycle fails and backs off like any other failure."""

    def __init__(self, configuration: client.Configuration | None = None, qps: float = 200.0, burst: int = 400) -> None:
        super().__init__(configuration)
        self.qps, self.burst = qps, burst
        self.requests = 0
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._bucket = threading.Lock()

    def _take(self) -> None:
        while True:
            with self._bucket:
                now = time.monotonic()
                self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.requests += 1
                    return
                wait = (1 - self._tokens) / self.qps
            time.sleep(wait)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if self.qps > 0:
            self._take()
        else:
            self.requests += 1
        return super().call_api(*args, **kwargs)


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG); rate
    limited by KANARIA_API_QPS and KANARIA_API_BURST (200 and 400 by default; 0 turns it off)."""
    qps, burst = float(os.environ.get("KANARIA_API_QPS", "200")), int(os.environ.get("KANARIA_API_BURST", "400"))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return LimitedApiClient(qps=qps, burst=burst)
    cfg = client.Configuration()
    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)  # type: ignore[no-untyped-call]
    return LimitedApiClient(cfg, qps=qps, burst=burst)


@dataclass
class OperatorState:
    context: ReconcileContext
    leader: LeaderElector | None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    notifier: Notifier = field(default_factory=Notifier)
    pool: PriorityPool = field(default_factory=lambda: PriorityPool(int(os.environ.get("KANARIA_WORKERS", "8"))))
    informers: Informers | None = None
    batcher: Batcher | None = None
    shard: Shard = field(default_factory=Shard)
    grid: float = 5.0
    """Timed wake-ups fall on multiples of this many seconds (see batch.align)."""
    resync: float = 600.0
    """The longest an object goes without a cycle, whatever its timers say."""
    loop: asyncio.AbstractEventLoop | None = None
    _written: dict[tuple[str, str], str] = field(default_factory=dict)
    _wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        """The event that wakes an object's loop (used from the operator's event loop only)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        with self._lock:
            return self._wakeups.setdefault((namespace, name), asyncio.Event())

    def wake_from_thread(self, namespace: str, name: str) -> None:
        """Wake one object's loop from another thread (a watch cache's); unknown objects (not
        this shard's, or not yet started) are left alone."""
        with self._lock:
            event = self._wakeups.get((namespace, name))
        if event is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(event.set)

    def wake_namespace(self, namespace: str | None) -> None:
        with self._lock:
            events = [e for (ns, _), e in self._wakeups.items() if namespace is None or ns == namespace]
        if self.loop is not None:
            for event in events:
                self.loop.call_soon_threadsafe(event.set)

    def status_written(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            self._written[(str(meta.get("namespace")), str(meta.get("name")))] = str(meta.get("resourceVersion"))

    def own_write(self, namespace: str, name: str, version: str | None) -> bool:
        """Whether this version of the object is the one this operator's status write made
        (its watch event must not wake the object for another cycle)."""
        with self._lock:
            return version is not None and self._written.get((namespace, name)) == version

    def on_change(self, kind: str, obj: dict[str, Any], _event: str) -> None:
        """A watched object changed: wake the ModelDeployments it concerns, and only those."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if kind == "ModelDeployment":
            # kopf's watch wakes it too (handlers.wake); whichever watch is first wakes it, and
            # the cycle reads the newer version. The operator's own status write wakes nothing.
            if not self.own_write(namespace, str(meta.get("name")), meta.get("resourceVersion")):
                self.wake_from_thread(namespace, str(meta.get("name")))
            return
        if kind == "CustomResourceDefinition":
            self.wake_namespace(None)
            return
        names = set()
        owner = (meta.get("labels") or {}).get("kanaria.io/deployment")
        if owner:
            names.add(owner)
        if kind in ("HTTPRoute", "VirtualService", "InferenceModelRewrite"):
            names.add(str(meta.get("name")))
            names.update(str(r.get("name")) for r in meta.get("ownerReferences") or []
                         if r.get("kind") == "ModelDeployment")
            adopt = (meta.get("annotations") or {}).get("kanaria.io/adopt")
            if adopt:
                names.add(adopt)
        for name in names:
            self.wake_from_thread(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._wakeups.pop((namespace, name), None)
            self._failures.pop((namespace, name), None)
            self._written.pop((namespace, name), None)

    def reconciled(self, namespace: str, name: str) -> None:
        with self._lock:
            self._failures.pop((namespace, name), None)

    def failed(self, namespace: str, name: str, exc: Exception) -> float:
        """Log a failed cycle and return the back-off before the next one (1 s doubling to 60 s)."""
        with self._lock:
            n = self._failures.get((namespace, name), 0) + 1
            self._failures[(namespace, name)] = n
        delay = min(60.0, 2.0 ** (n - 1))
        if namespace_terminating(exc):  # the object goes with its namespace: nothing is wrong
            log.info("reconcile %s/%s waits: its namespace is being deleted (next look in %.0fs)",
                     namespace, name, delay)
            return delay
        self.metrics.on_reconcile_error(namespace, name)
        if isinstance(exc, ApiException):  # the API server said why: that line, no traceback
            log.warning("reconcile %s/%s failed (%d in a row, next try in %.0fs): the API answered %s: %s",
                        namespace, name, n, delay, exc.status, api_message(exc))
            return delay
        log.warning("reconcile %s/%s failed (%d in a row, next try in %.0fs): %s: %s",
                    namespace, name, n, delay, type(exc).__name__, exc, exc_info=n == 1)
        return delay

    def stop(self) -> None:
        if self.leader is not None:
            self.leader.stop()
        self.metrics.stop()
        self.notifier.close(timeout=5)
        if self.informers is not None:
            self.informers.stop()
        if self.batcher is not None:
            self.batcher.stop()
        self.pool.shutdown()


def build_state() -> OperatorState:
    notifier = notifier_from_env()  # a bad webhook configuration stops startup, loudly
    shard = Shard.from_env(os.environ.get("KANARIA_SHARD"))
    api = load_api_client()
    leader = None
    if os.environ.get("KANARIA_LEADER_ELECTION", "true").lower() != "false":
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        lease = "kanaria-operator" if shard.count == 1 else f"kanaria-operator-shard-{shard.index}-of-{shard.count}"
        leader = LeaderElector(
            api,
            namespace=os.environ.get("KANARIA_NAMESPACE", "kanaria-system"),
            name=os.environ.get("KANARIA_LEASE_NAME", lease),
            identity=identity,
            duration=float(os.environ.get("KANARIA_LEASE_SECONDS", "15")),
            renew=float(os.environ.get("KANARIA_LEASE_RENEW_SECONDS", "5")),
        )
        leader.start()
        started = time.monotonic()
        if leader.wait_until_leader(timeout=1.0):
            log.info("leader after %.1fs", time.monotonic() - started)
    metrics = OperatorMetrics()
    port = int(os.environ.get("KANARIA_METRICS_PORT", "8080"))
    if port > 0:
        metrics.serve(port, addr=os.environ.get("KANARIA_METRICS_ADDRESS", "0.0.0.0"))

    def is_leader() -> bool:
        leading = leader.is_leader() if leader else True
        metrics.leader.set(1 if leading else 0)
        return leading

    def on_decision(obj: dict[str, Any], decision: Decision) -> None:
        metrics.on_decision(obj, decision)
        notifier.on_decision(obj, decision)  # queued; a slow receiver never blocks a rollout

    context = ReconcileContext(
        api=api,
        is_leader=is_leader,
        on_decision=on_decision,
        on_verdicts=metrics.on_verdicts,
    )
    state = OperatorState(context=context, leader=leader, metrics=metrics, notifier=notifier, shard=shard,
                          grid=float(os.environ.get("KANARIA_BATCH_GRID_SECONDS", "5")),
                          resync=float(os.environ.get("KANARIA_RESYNC_SECONDS", "600")))
    context.on_status_written = state.status_written
    if os.environ.get("KANARIA_WATCH_CACHE", "true").lower() != "false":
        informers = Informers(api, WATCHED or None, on_change=state.on_change)
        started = time.monotonic()
        informers.start()
        log.info("watch caches synced in %.1fs", time.monotonic() - started)
        context.cache = state.informers = informers
    if os.environ.get("KANARIA_BATCH_ANALYSIS", "true").lower() != "false":
        state.batcher = Batcher(context.provider, window=float(os.environ.get("KANARIA_BATCH_WINDOW_SECONDS", "0.05")))
        context.grid = state.grid
        state.batcher.start()
    metrics.attach(state)
    return state
