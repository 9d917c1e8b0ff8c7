"""Istio router: Kanaria owns the destination weights of one VirtualService's first HTTP route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from kanaria.api.models import IstioTraffic
from kanaria.api.revision import revision_name
from kanaria.api.routing import HeaderCondition, RouteMatch
from kanaria.traffic.base import (
    MATCH_RULE,
    crd_problem,
    foreign_route_problem,
    get_or_none,
    normalise,
    revision_of_service,
)
from kanaria.workloads.kube import apply
from kanaria.workloads.objects import labels_for, owner_reference

__all__ = ["IstioRouter", "weights_from_virtualservice", "match_from_virtualservice"]

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"


def _user_http(vs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The http routes without the one Kanaria adds for an A/B test by match."""
    return [h for h in (vs.get("spec") or {}).get("http") or [] if h.get("name") != MATCH_RULE]


def weights_from_virtualservice(deployment: str, vs: Mapping[str, Any]) -> dict[str, int] | None:
    http = _user_http(vs)
    if not http:
        return None
    raw: dict[str, int] = {}
    for route in http[0].get("route") or []:
        host = str((route.get("destination") or {}).get("host", "")).split(".")[0]
        rev = revision_of_service(deployment, host)
        if rev is not None:
            raw[rev] = raw.get(rev, 0) + int(route.get("weight", 100 if len(http[0]["route"]) == 1 else 0))
    return normalise(raw) if raw else None


def match_from_virtualservice(deployment: str, vs: Mapping[str, Any]) -> RouteMatch | None:
    """The A/B match route Kanaria added: its destination's revision and the headers it added
    to the user's first match."""
    ours = next((h for h in (vs.get("spec") or {}).get("http") or [] if h.get("name") == MATCH_RULE), None)
    if ours is None:
        return None
    routes = ours.get("route") or []
    host = str((routes[0].get("destination") or {}).get("host", "")).split(".")[0] if routes else ""
    rev = revision_of_service(deployment, host)
    if rev is None:
        return None
    users = _user_http(vs)
    base = set(((users[0].get("match") or [{}])[0].get("headers") or {}).keys()) if users else set()
    found = ((ours.get("match") or [{}])[0].get("headers")) or {}
    conditions = []
    for name, cond in found.items():
        if name in base:
            continue
        regex = "regex" in cond
        conditions.append(HeaderCondition(str(name).lower(), str(cond["regex"] if regex else cond.get("exact", "")), regex))
    return RouteMatch(rev, tuple(conditions))


class IstioRouter:
    kind = "istio"

    def __init__(self, api: client.ApiClient, name: str, namespace: str, uid: str, cfg: IstioTraffic,
                 cache: Any = None) -> None:
        self.api, self.cache = api, cache
        self.custom = client.CustomObjectsApi(api)
        self.name, self.namespace, self.uid, self.cfg = name, namespace, uid, cfg
        self.vs = cfg.virtual_service or name

    def check(self) -> str | None:
        problem = crd_problem(
            self.api, f"{PLURAL}.{GROUP}", "Istio VirtualService",
            "install Istio or choose spec.traffic.gatewayAPI or replicas", self.cache,
        )
        if problem is None:
            existing = self._existing()
            if existing is not None:
                hosts = [str(((r.get("destination") or {}).get("host")) or "").split(".")[0]
                         for http in (existing.get("spec") or {}).get("http") or [] for r in http.get("route") or []]
                problem = foreign_route_problem("VirtualService", existing, self.name, self.uid, hosts)
        return problem

    def _existing(self) -> dict[str, Any] | None:
        return get_or_none(self.custom, GROUP, VERSION, self.namespace, PLURAL, self.vs, self.cache, "VirtualService")

    def apply(
        self, weights: Mapping[str, int], mirror: tuple[str, int] | None = None, match: RouteMatch | None = None
    ) -> None:
        routes = [
            {
                "destination": {"host": revision_name(self.name, rev), "port": {"number": self.cfg.port}},
                "weight": int(w),
            }
            for rev, w in sorted(weights.items())
        ]
        existing = self._existing()
        old_http = _user_http(existing or {}) or [{}]
        first = {k: v for k, v in old_http[0].items() if k not in ("route", "mirror", "mirrorPercentage")}
        if mirror is not None:
            first["mirror"] = {"host": revision_name(self.name, mirror[0]), "port": {"number": self.cfg.port}}
            first["mirrorPercentage"] = {"value": float(mirror[1])}
        http = [{**first, "route": routes}, *old_http[1:]]
        if match is not None:  # routes are tried in order: the match goes first
            headers = {h.name: ({"regex": h.value} if h.regex else {"exact": h.value}) for h in match.headers}
            bases = first.get("match") or [{}]
            http.insert(0, {
                "name": MATCH_RULE,
                "match": [{**m, "headers": {**(m.get("headers") or {}), **headers}} for m in bases],
                "route": [{
                    "destination": {"host": revision_name(self.name, match.revision), "port": {"number": self.cfg.port}},
                    "weight": 100,
                }],
            })
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
        return self._mirror_of(self._existing())

    def _mirror_of(self, existing: Mapping[str, Any] | None) -> tuple[str, int] | None:
        http = _user_http(existing or {})
        mirror = http[0].get("mirror") if http else None
        if not mirror:
            return None
        rev = revision_of_service(self.name, str(mirror.get("host", "")).split(".")[0])
        percent = (http[0].get("mirrorPercentage") or {}).get("value", 100)
        return None if rev is None else (rev, round(float(percent)))

    def read_match(self) -> RouteMatch | None:
        existing = self._existing()
        return None if existing is None else match_from_virtualservice(self.name, existing)

    def unprogrammed(self) -> str | None:
        return None  # nothing reports which generation the data plane has applied

    def observe(self) -> tuple[dict[str, int] | None, tuple[str, int] | None, RouteMatch | None]:
        existing = self._existing()
        if existing is None:
            return None, None, None
        return (weights_from_virtualservice(self.name, existing), self._mirror_of(existing),
                match_from_virtualservice(self.name, existing))

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        return dict(wanted)
