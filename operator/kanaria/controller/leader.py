"""Leader election on a coordination.k8s.io Lease, so two replicas never both act.

kopf's peering freezes every operator when two share a priority, which protects nothing in an
HA pair; a Lease gives one leader and a bounded takeover time instead. The holder renews every
``renew`` seconds; a candidate takes the lease once it has not been renewed for ``duration``
seconds. Every reconcile checks ``is_leader()`` just before acting, and a leader that fails to
renew before its lease would expire stops acting at once.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["LeaderElector"]

log = logging.getLogger("kanaria.leader")


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Holds (or waits for) one Lease in a background thread."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew = duration, renew
        self._valid_until = 0.0  # monotonic time until which we may act
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kanaria-leader", daemon=True)
        self.transitions = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.is_leader():
            self._release()

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def wait_until_leader(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.is_leader():
            self._stop.wait(0.1)
        return self.is_leader()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self._try_acquire_or_renew():
                    if not self.is_leader():
                        self.transitions += 1
                        log.info("became leader (%s)", self.identity)
                    self._valid_until = started + self.duration - self.renew
                elif self.is_leader():
                    log.warning("lost leadership (%s)", self.identity)
                    self._valid_until = 0.0
            except Exception as exc:  # network, API down: keep trying, stop acting when stale
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self._stop.wait(self.renew if self.is_leader() else min(self.renew, 2.0))

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self.coord.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        if lease.spec is None:
            lease.spec = client.V1LeaseSpec()
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or (now - renewed).total_seconds() > (spec.lease_duration_seconds or self.duration)
        if holder != self.identity and holder and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration)
        try:
            # replace carries resourceVersion: a concurrent taker makes this a 409
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _release(self) -> None:
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as exc:  # best effort on shutdown
            log.info("could not release lease: %s", exc)
        self._valid_until = 0.0
