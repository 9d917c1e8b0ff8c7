"""Istio router: Kanaria owns the destination weights of one VirtualService's first HTTP route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from kanaria.api.models import IstioTraffic
from kanaria.api.revision import revision_name
from kanaria.traffic.base import crd_problem, get_or_none, normalise, revision_of
from kanaria.workloads.kube import apply
from kanaria.workloads.objects import labels_for, owner_reference

__all__ = ["IstioRouter", "weights_from_virtualservice"]

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"


def weights_from_virtualservice(deployment: str, vs: Mapping[str, Any]) -> dict[str, int] | None:
    http = (vs.get("spec") or {}).get("http") or []
    if not http:
        return None
    raw: dict[str, int] = {}
    for route in http[0].get("route") or []:
        host = str((route.get("destination") or {}).get("host", "")).split(".")[0]
        rev = revision_of(deployment, host)
        if rev is not None:
            raw[rev] = raw.get(rev, 0) + int(route.get("weight", 100 if len(http[0]["route"]) == 1 else 0))
    return normalise(raw) if raw else None


class IstioRouter:
    kind = "istio"

    def __init__(self, api: client.ApiClient, name: str, namespace: str, uid: str, cfg: IstioTraffic) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.name, self.namespace, self.uid, self.cfg = name, namespace, uid, cfg
        self.vs = cfg.virtual_service or name

    def check(self) -> str | None:
        return crd_problem(
            self.api, f"{PLURAL}.{GROUP}", "Istio VirtualService",
            "install Istio or choose spec.traffic.gatewayAPI or replicas",
        )

    def _existing(self) -> dict[str, Any] | None:
        return get_or_none(self.custom, GROUP, VERSION, self.namespace, PLURAL, self.vs)

    def apply(self, weights: Mapping[str, int], mirror: tuple[str, int] | None = None) -> None:
        routes = [
            {
                "destination": {"host": revision_name(self.name, rev), "port": {"number": self.cfg.port}},
                "weight": int(w),
            }
            for rev, w in sorted(weights.items())
        ]
        existing = self._existing()
        old_http = ((existing or {}).get("spec") or {}).get("http") or [{}]
        first = {k: v for k, v in old_http[0].items() if k not in ("route", "mirror", "mirrorPercentage")}
        if mirror is not None:
            first["mirror"] = {"host": revision_name(self.name, mirror[0]), "port": {"number": self.cfg.port}}
            first["mirrorPercentage"] = {"value": float(mirror[1])}
        http = [{**first, "route": routes}, *old_http[1:]]
        metadata: dict[str, Any] = {"name": self.vs, "namespace": self.namespace}
        if existing is None:
            metadata["labels"] = labels_for(self.name)
            metadata["ownerReferences"] = [owner_reference(self.name, self.uid)]
        spec = {"hosts": self.cfg.hosts or [self.name], "http": http}
        apply(self.api, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService", "metadata": metadata, "spec": spec})

    def read(self) -> dict[str, int] | None:
        existing = self._existing()
        return None if existing is None else weights_from_virtualservice(self.name, existing)

    def read_mirror(self) -> tuple[str, int] | None:
        existing = self._existing()
        http = ((existing or {}).get("spec") or {}).get("http") or []
        mirror = http[0].get("mirror") if http else None
        if not mirror:
            return None
        rev = revision_of(self.name, str(mirror.get("host", "")).split(".")[0])
        percent = (http[0].get("mirrorPercentage") or {}).get("value", 100)
        return None if rev is None else (rev, round(float(percent)))

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        return dict(wanted)
