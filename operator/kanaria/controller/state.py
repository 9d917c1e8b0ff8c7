"""The operator's process-wide state, built once at startup and kept in kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from kanaria.controller.leader import LeaderElector
from kanaria.controller.metrics import OperatorMetrics
from kanaria.controller.notify import Notifier, notifier_from_env
from kanaria.controller.reconcile import ReconcileContext
from kanaria.rollout.types import Decision

__all__ = ["OperatorState", "build_state", "load_api_client"]

log = logging.getLogger("kanaria.state")


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    cfg = client.Configuration()
    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)  # type: ignore[no-untyped-call]
    return client.ApiClient(cfg)


@dataclass
class OperatorState:
    context: ReconcileContext
    leader: LeaderElector | None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    notifier: Notifier = field(default_factory=Notifier)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=int(os.environ.get("KANARIA_WORKERS", "8")), thread_name_prefix="reconcile"
        )
    )
    _wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        """The event that wakes an object's loop (used from the operator's event loop only)."""
        with self._lock:
            return self._wakeups.setdefault((namespace, name), asyncio.Event())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._wakeups.pop((namespace, name), None)
            self._failures.pop((namespace, name), None)

    def reconciled(self, namespace: str, name: str) -> None:
        with self._lock:
            self._failures.pop((namespace, name), None)

    def failed(self, namespace: str, name: str, exc: Exception) -> float:
        """Log a failed cycle and return the back-off before the next one (1 s doubling to 60 s)."""
        with self._lock:
            n = self._failures.get((namespace, name), 0) + 1
            self._failures[(namespace, name)] = n
        delay = min(60.0, 2.0 ** (n - 1))
        self.metrics.on_reconcile_error(namespace, name)
        log.warning("reconcile %s/%s failed (%d in a row, next try in %.0fs): %s: %s",
                    namespace, name, n, delay, type(exc).__name__, exc, exc_info=n == 1)
        return delay

    def stop(self) -> None:
        if self.leader is not None:
            self.leader.stop()
        self.metrics.stop()
        self.notifier.close(timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)


def build_state() -> OperatorState:
    notifier = notifier_from_env()  # a bad webhook configuration stops startup, loudly
    api = load_api_client()
    leader = None
    if os.environ.get("KANARIA_LEADER_ELECTION", "true").lower() != "false":
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        leader = LeaderElector(
            api,
            namespace=os.environ.get("KANARIA_NAMESPACE", "kanaria-system"),
            name=os.environ.get("KANARIA_LEASE_NAME", "kanaria-operator"),
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
    return OperatorState(context=context, leader=leader, metrics=metrics, notifier=notifier)
