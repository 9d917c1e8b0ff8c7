"""No mesh: one Service selects every revision, and weights become replica ratios.

Weights are approximate by nature (a revision with 1 of 4 ready pods gets about 25% of
connections). The weights asked for are recorded on the shared Service; they are read back
as in force only once every revision has exactly the ready replicas those weights call for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.models import ReplicasTraffic
from kanaria.api.routing import RouteMatch
from kanaria.workloads.kube import apply
from kanaria.workloads.objects import LABEL_DEPLOYMENT, LABEL_REVISION, service_manifest

__all__ = ["ReplicaRouter", "split_replicas"]

ANNOTATION_WEIGHTS = "kanaria.io/weights"


def split_replicas(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Replicas per revision for the weights: every revision with weight > 0 gets at least one."""
    live = {rev: w for rev, w in weights.items() if w > 0}
    out = {rev: 0 for rev in weights}
    if not live or total <= 0:
        return out
    budget = max(total, len(live))
    exact = {rev: budget * w / 100 for rev, w in live.items()}
    counts = {rev: max(1, int(v)) for rev, v in exact.items()}
    while sum(counts.values()) < budget:
        rev = max(exact, key=lambda r: exact[r] - counts[r])
        counts[rev] += 1
    while sum(counts.values()) > budget:
        rev = max((r for r in counts if counts[r] > 1), key=lambda r: counts[r] - exact[r])
        counts[rev] -= 1
    out.update(counts)
    return out


class ReplicaRouter:
    kind = "replicas"

    def __init__(
        self, api: client.ApiClient, name: str, namespace: str, uid: str, cfg: ReplicasTraffic, total: int,
        cache: Any = None,
    ) -> None:
        self.api, self.cache = api, cache
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.name, self.namespace, self.uid, self.cfg, self.total = name, namespace, uid, cfg, total

    def check(self) -> str | None:
        return None

    def apply(
        self, weights: Mapping[str, int], mirror: tuple[str, int] | None = None, match: RouteMatch | None = None
    ) -> None:
        if mirror is not None:
            raise ValueError("the replicas router cannot mirror traffic; use gatewayAPI or istio")
        if match is not None:
            raise ValueError("the replicas router cannot match headers; use gatewayAPI or istio")
        svc = service_manifest(self.name, self.namespace, self.uid, None, self.cfg.port)
        svc["metadata"]["annotations"] = {ANNOTATION_WEIGHTS: json.dumps(dict(sorted(weights.items())))}
        apply(self.api, svc)

    def read(self) -> dict[str, int] | None:
        if self.cache is not None:
            cached = self.cache.get("Service", self.namespace, self.name)
            if cached is None:
                return None
            raw = ((cached.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_WEIGHTS)
        else:
            try:
                svc = self.core.read_namespaced_service(self.name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            raw = ((svc.metadata.annotations if svc.metadata else None) or {}).get(ANNOTATION_WEIGHTS)
        if not raw:
            return None
        weights = {str(k): int(v) for k, v in json.loads(raw).items()}
        want = split_replicas(self.total, weights)
        ready = self._ready()
        if any(ready.get(rev, 0) != n for rev, n in want.items()):
            return None  # not in force yet
        return weights

    def _ready(self) -> dict[str | None, int]:
        """Ready replicas per revision."""
        if self.cache is not None:
            return {
                ((d.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION):
                    int((d.get("status") or {}).get("readyReplicas") or 0)
                for d in self.cache.list("Deployment", self.namespace, {LABEL_DEPLOYMENT: self.name})
            }
        deps = self.apps.list_namespaced_deployment(self.namespace, label_selector=f"{LABEL_DEPLOYMENT}={self.name}")
        return {
            ((d.metadata.labels if d.metadata else None) or {}).get(LABEL_REVISION):
                (d.status.ready_replicas if d.status else None) or 0
            for d in deps.items
        }

    def read_mirror(self) -> tuple[str, int] | None:
        return None

    def read_match(self) -> RouteMatch | None:
        return None

    def unprogrammed(self) -> str | None:
        return None  # nothing reports which generation the data plane has applied

    def observe(self) -> tuple[dict[str, int] | None, tuple[str, int] | None, RouteMatch | None]:
        return self.read(), None, None

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        out = dict(wanted)
        if weights:
            out.update(split_replicas(self.total, weights))
        return out
