"""Gateway API router: Kanaria owns the backendRefs weights of one HTTPRoute.

Written with server-side apply under the field manager ``kanaria``. When the route already
exists (for example it is managed by a GitOps tool), its rules' matches and filters are kept
and only backendRefs are replaced; tell the GitOps tool to ignore ``/spec/rules/*/backendRefs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from kanaria.api.models import GatewayAPITraffic
from kanaria.api.revision import revision_name
from kanaria.api.routing import HeaderCondition, RouteMatch
from kanaria.traffic.base import (
    MATCH_RULE,
    crd_problem,
    get_or_none,
    normalise,
    revision_of_service,
)
from kanaria.workloads.kube import apply
from kanaria.workloads.objects import labels_for, owner_reference

__all__ = ["GatewayAPIRouter", "GROUP", "VERSION", "weights_from_route", "mirror_from_route", "match_from_route"]

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def _user_rules(route: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The route's rules without the one Kanaria adds for an A/B test by match."""
    return [r for r in (route.get("spec") or {}).get("rules") or [] if r.get("name") != MATCH_RULE]


def weights_from_route(deployment: str, route: Mapping[str, Any]) -> dict[str, int] | None:
    """Percent per revision from the first rule's backendRefs (weight defaults to 1)."""
    rules = _user_rules(route)
    if not rules:
        return None
    raw: dict[str, int] = {}
    for ref in rules[0].get("backendRefs") or []:
        rev = revision_of_service(deployment, str(ref.get("name", "")))
        if rev is not None:
            raw[rev] = raw.get(rev, 0) + int(ref.get("weight", 1))
    return normalise(raw) if raw else None


def mirror_from_route(deployment: str, route: Mapping[str, Any]) -> tuple[str, int] | None:
    """(revision, percent) of the first rule's RequestMirror filter, if it mirrors a revision."""
    rules = _user_rules(route)
    for f in (rules[0].get("filters") or []) if rules else []:
        if f.get("type") != "RequestMirror":
            continue
        mirror = f.get("requestMirror") or {}
        rev = revision_of_service(deployment, str((mirror.get("backendRef") or {}).get("name", "")))
        if rev is None:
            continue
        if "percent" in mirror:
            return rev, int(mirror["percent"])
        fraction = mirror.get("fraction")
        if fraction:
            return rev, round(100 * int(fraction["numerator"]) / int(fraction.get("denominator", 100)))
        return rev, 100
    return None


def match_from_route(deployment: str, route: Mapping[str, Any]) -> RouteMatch | None:
    """The A/B match rule Kanaria added: its backend's revision and the headers it added to
    the user's first match."""
    ours = next((r for r in (route.get("spec") or {}).get("rules") or [] if r.get("name") == MATCH_RULE), None)
    if ours is None:
        return None
    refs = ours.get("backendRefs") or []
    rev = revision_of_service(deployment, str(refs[0].get("name", ""))) if refs else None
    if rev is None:
        return None
    users = _user_rules(route)
    base = {(h.get("name", "").lower(), h.get("value"), h.get("type", "Exact"))
            for h in ((users[0].get("matches") or [{}])[0].get("headers") or [])} if users else set()
    found = ((ours.get("matches") or [{}])[0].get("headers")) or []
    conditions = tuple(
        HeaderCondition(str(h["name"]).lower(), str(h["value"]), h.get("type", "Exact") == "RegularExpression")
        for h in found
        if (str(h.get("name", "")).lower(), h.get("value"), h.get("type", "Exact")) not in base
    )
    return RouteMatch(rev, conditions)


def _match_rule(name: str, port: int, match: RouteMatch, user_rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A rule sending requests that match the user's first rule *and* the headers to the
    challenger. More header matches make it more specific, so it takes precedence."""
    ours = [
        {"name": h.name, "value": h.value, "type": "RegularExpression" if h.regex else "Exact"}
        for h in match.headers
    ]
    bases = (user_rules[0].get("matches") if user_rules else None) or [{}]
    matches = [{**m, "headers": [*(m.get("headers") or []), *ours]} for m in bases]
    return {
        "name": MATCH_RULE,
        "matches": matches,
        "backendRefs": [{"name": revision_name(name, match.revision), "port": port, "weight": 1}],
    }


class GatewayAPIRouter:
    kind = "gatewayAPI"

    def __init__(
        self, api: client.ApiClient, name: str, namespace: str, uid: str, cfg: GatewayAPITraffic
    ) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.name, self.namespace, self.uid, self.cfg = name, namespace, uid, cfg
        self.route = cfg.http_route or name

    def check(self) -> str | None:
        return crd_problem(
            self.api, f"{PLURAL}.{GROUP}", "Gateway API HTTPRoute",
            "install Gateway API or choose spec.traffic.istio or replicas",
        )

    def _existing(self) -> dict[str, Any] | None:
        return get_or_none(self.custom, GROUP, VERSION, self.namespace, PLURAL, self.route)

    def apply(
        self, weights: Mapping[str, int], mirror: tuple[str, int] | None = None, match: RouteMatch | None = None
    ) -> None:
        refs = [
            {"name": revision_name(self.name, rev), "port": self.cfg.port, "weight": int(w)}
            for rev, w in sorted(weights.items())
        ]
        existing = self._existing()
        old_rules = _user_rules(existing or {}) or [{}]
        rules = []
        for rule in old_rules:
            kept = [f for f in rule.get("filters") or [] if not self._ours(f)]
            if mirror is not None:
                kept.append({
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": revision_name(self.name, mirror[0]), "port": self.cfg.port},
                        "percent": int(mirror[1]),
                    },
                })
            body = {k: v for k, v in rule.items() if k not in ("backendRefs", "filters")}
            rules.append({**body, **({"filters": kept} if kept else {}), "backendRefs": refs})
        if match is not None:
            rules.insert(0, _match_rule(self.name, self.cfg.port, match, rules))
        spec: dict[str, Any] = {"rules": rules}
        if self.cfg.parent_refs:
            spec["parentRefs"] = [
                {k: v for k, v in p.model_dump(by_alias=True).items() if v is not None}
                for p in self.cfg.parent_refs
            ]
        metadata: dict[str, Any] = {"name": self.route, "namespace": self.namespace}
        if existing is None:  # Kanaria created it: Kanaria owns it
            metadata["labels"] = labels_for(self.name)
            metadata["ownerReferences"] = [owner_reference(self.name, self.uid)]
        apply(self.api, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute", "metadata": metadata, "spec": spec})

    def _ours(self, f: Mapping[str, Any]) -> bool:
        """A RequestMirror filter that points at one of this deployment's revisions."""
        ref = ((f.get("requestMirror") or {}).get("backendRef") or {}).get("name", "")
        return f.get("type") == "RequestMirror" and revision_of_service(self.name, str(ref)) is not None

    def read(self) -> dict[str, int] | None:
        existing = self._existing()
        return None if existing is None else weights_from_route(self.name, existing)

    def read_mirror(self) -> tuple[str, int] | None:
        existing = self._existing()
        return None if existing is None else mirror_from_route(self.name, existing)

    def read_match(self) -> RouteMatch | None:
        existing = self._existing()
        return None if existing is None else match_from_route(self.name, existing)

    def observe(self) -> tuple[dict[str, int] | None, tuple[str, int] | None, RouteMatch | None]:
        existing = self._existing()
        if existing is None:
            return None, None, None
        return (weights_from_route(self.name, existing), mirror_from_route(self.name, existing),
                match_from_route(self.name, existing))

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        return dict(wanted)
