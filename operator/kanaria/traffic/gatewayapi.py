"""Gateway API router: Kanaria owns the backendRefs weights of one HTTPRoute.

With ``inferencePool`` the backends are the Gateway API Inference Extension's InferencePools
(v1.5.0) instead of Services: one pool per revision (created with its Service, see
:mod:`kanaria.workloads`), weighted in the route; or, with ``modelRewrite`` (an adapter
rollout), one pool over every revision's pods and the weights in an InferenceModelRewrite that
sends requests for the client's model name to each revision's adapter.

Written with server-side apply under the field manager ``kanaria``. When the route already
exists (for example it is managed by a GitOps tool), its rules' matches and filters are kept
and only backendRefs are replaced; tell the GitOps tool to ignore ``/spec/rules/*/backendRefs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from kanaria.api.models import GatewayAPITraffic
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
from kanaria.workloads.objects import (
    ANNOTATION_MODEL,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    POOL_GROUP,
    REWRITE_GROUP,
    REWRITE_VERSION,
    labels_for,
    owner_reference,
    pool_manifest,
    rewrite_manifest,
)

__all__ = [
    "GatewayAPIRouter",
    "GROUP",
    "VERSION",
    "ANNOTATION_ADAPTERS",
    "weights_from_route",
    "weights_from_rewrite",
    "mirror_from_route",
    "match_from_route",
    "route_unprogrammed",
]

ANNOTATION_ADAPTERS = "kanaria.io/adapters"
"""On an InferenceModelRewrite Kanaria writes: JSON revision -> adapter, to read weights back
per revision."""

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def _user_rules(route: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The route's rules without the one Kanaria adds for an A/B test by match."""
    return [r for r in (route.get("spec") or {}).get("rules") or [] if r.get("name") != MATCH_RULE]


def route_unprogrammed(route: Mapping[str, Any]) -> str | None:
    """Why the gateways have not yet put the route's current spec in force, from the status
    each one reports under ``status.parents``: an Accepted condition about an older generation,
    or one that is not True. None when every reporting gateway has accepted the current
    generation — and when none reports, or a report carries no observedGeneration (nothing
    says otherwise; the weights read back are then all there is)."""
    meta = route.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    parents = (route.get("status") or {}).get("parents")
    for parent in parents if isinstance(parents, list) else []:
        conditions = parent.get("conditions") if isinstance(parent, dict) else None
        accepted: dict[str, Any] = next(
            (c for c in conditions if isinstance(c, dict) and c.get("type") == "Accepted"), {}
        ) if isinstance(conditions, list) else {}
        seen = accepted.get("observedGeneration")
        if not isinstance(seen, int) or isinstance(seen, bool):
            continue  # no report, or one that is not a generation: it says nothing
        who = str(parent.get("controllerName") or "a gateway")[:253]
        if seen < generation:
            return (f"{who} has not yet programmed generation {generation} of HTTPRoute "
                    f"{meta.get('name', '')} (it reports generation {seen})")
        if accepted.get("status") != "True":
            return (f"{who} does not accept HTTPRoute {meta.get('name', '')}: "
                    f"{accepted.get('reason', '')} {accepted.get('message', '')}".rstrip()[:500])
    return None


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


def weights_from_rewrite(rewrite: Mapping[str, Any]) -> dict[str, int] | None:
    """Percent per revision from an InferenceModelRewrite Kanaria wrote: its first rule's
    targets' weights, attributed through the revision -> adapter annotation."""
    try:
        adapters = json.loads(((rewrite.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ADAPTERS, ""))
    except ValueError:
        return None
    rules = (rewrite.get("spec") or {}).get("rules") or []
    if not isinstance(adapters, dict) or not adapters or not rules:
        return None
    by_model: dict[str, int] = {}
    for target in rules[0].get("targets") or []:
        model = str(target.get("modelRewrite", ""))
        by_model[model] = by_model.get(model, 0) + int(target.get("weight", 1))
    raw: dict[str, int] = {}
    for rev, model in sorted(adapters.items()):
        raw[str(rev)] = by_model.pop(str(model), 0)  # an adapter two revisions share counts once
    return normalise(raw)


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


def _match_rule(
    name: str, port: int, match: RouteMatch, user_rules: Sequence[Mapping[str, Any]],
    ref: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
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
        "backendRefs": [dict(ref) if ref is not None else
                        {"name": revision_name(name, match.revision), "port": port, "weight": 1}],
    }


class GatewayAPIRouter:
    kind = "gatewayAPI"

    def __init__(
        self, api: client.ApiClient, name: str, namespace: str, uid: str, cfg: GatewayAPITraffic, cache: Any = None
    ) -> None:
        self.api, self.cache = api, cache
        self.custom = client.CustomObjectsApi(api)
        self.name, self.namespace, self.uid, self.cfg = name, namespace, uid, cfg
        self.route = cfg.http_route or name

    def check(self) -> str | None:
        problem = crd_problem(
            self.api, f"{PLURAL}.{GROUP}", "Gateway API HTTPRoute",
            "install Gateway API or choose spec.traffic.istio or replicas", self.cache,
        )
        if problem is None and self.cfg.inference_pool is not None:
            problem = crd_problem(
                self.api, f"inferencepools.{POOL_GROUP}", "Gateway API Inference Extension InferencePool",
                "install the Inference Extension (v1.5.0) or remove spec.traffic.gatewayAPI.inferencePool",
                self.cache,
            )
        if problem is None and self._rewrite_model is not None:
            problem = crd_problem(
                self.api, f"inferencemodelrewrites.{REWRITE_GROUP}", "InferenceModelRewrite",
                "install the Inference Extension's InferenceModelRewrite CRD (v1.5.0) or remove modelRewrite",
                self.cache,
            )
        if problem is None:
            existing = self._existing()
            if existing is not None:
                backends = [str(ref.get("name", "")) for rule in (existing.get("spec") or {}).get("rules") or []
                            for ref in rule.get("backendRefs") or []]
                problem = foreign_route_problem("HTTPRoute", existing, self.name, self.uid, backends)
        return problem

    def _existing(self) -> dict[str, Any] | None:
        return get_or_none(self.custom, GROUP, VERSION, self.namespace, PLURAL, self.route, self.cache, "HTTPRoute")

    @property
    def _rewrite_model(self) -> str | None:
        pool = self.cfg.inference_pool
        return pool.model_rewrite.model_name if pool is not None and pool.model_rewrite is not None else None

    def _ref(self, revision: str, weight: int) -> dict[str, Any]:
        """The backendRef of one revision: its Service, or its InferencePool."""
        if self.cfg.inference_pool is not None:
            return {"group": POOL_GROUP, "kind": "InferencePool", "name": revision_name(self.name, revision),
                    "weight": weight}
        return {"name": revision_name(self.name, revision), "port": self.cfg.port, "weight": weight}

    def _adapters(self) -> dict[str, str]:
        """Revision -> the adapter its Deployment serves (recorded in its model annotation);
        a revision without one serves the client's model name as it is."""
        if self.cache is not None:
            metas = [d.get("metadata") or {} for d in self.cache.list("Deployment", self.namespace,
                                                                      {LABEL_DEPLOYMENT: self.name})]
        else:
            found = client.AppsV1Api(self.api).list_namespaced_deployment(
                self.namespace, label_selector=f"{LABEL_DEPLOYMENT}={self.name}"
            )
            metas = [{"labels": d.metadata.labels, "annotations": d.metadata.annotations}
                     for d in found.items if d.metadata]
        default = self._rewrite_model or ""
        adapters: dict[str, str] = {}
        for meta in metas:
            rev = (meta.get("labels") or {}).get(LABEL_REVISION)
            if not rev:
                continue
            try:
                model = json.loads((meta.get("annotations") or {}).get(ANNOTATION_MODEL, "{}"))
            except ValueError:
                model = {}
            adapters[rev] = str(model.get("adapter") or default) if isinstance(model, dict) else default
        return adapters

    def _apply_rewrite(self, weights: Mapping[str, int]) -> None:
        """The shared pool, and the rewrite's weights between the revisions' adapters."""
        pool, model = self.cfg.inference_pool, self._rewrite_model
        assert pool is not None and model is not None
        apply(self.api, pool_manifest(self.name, self.namespace, self.uid, None, pool))
        known = self._adapters()
        adapters = {rev: known.get(rev, model) for rev in weights}
        targets: dict[str, int] = {}
        for rev, w in weights.items():
            targets[adapters[rev]] = targets.get(adapters[rev], 0) + int(w)
        manifest = rewrite_manifest(self.name, self.namespace, self.uid, model, targets)
        manifest["metadata"]["annotations"] = {ANNOTATION_ADAPTERS: json.dumps(adapters, sort_keys=True)}
        apply(self.api, manifest)

    def _rewrite(self) -> dict[str, Any] | None:
        return get_or_none(self.custom, REWRITE_GROUP, REWRITE_VERSION, self.namespace, "inferencemodelrewrites",
                           self.name, self.cache, "InferenceModelRewrite")

    def apply(
        self, weights: Mapping[str, int], mirror: tuple[str, int] | None = None, match: RouteMatch | None = None
    ) -> None:
        if self._rewrite_model is not None:
            self._apply_rewrite(weights)
            refs = [{"group": POOL_GROUP, "kind": "InferencePool", "name": self.name, "weight": 1}]
        else:
            refs = [self._ref(rev, int(w)) for rev, w in sorted(weights.items())]
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
            rules.insert(0, _match_rule(self.name, self.cfg.port, match, rules, self._ref(match.revision, 1)))
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

    def _weights(self, route: Mapping[str, Any]) -> dict[str, int] | None:
        """The weights in force; None when the route's backends are not of the kind the spec
        asks for (so the next apply rewrites them)."""
        rules = _user_rules(route)
        refs = (rules[0].get("backendRefs") or []) if rules else []
        kind = "InferencePool" if self.cfg.inference_pool is not None else "Service"
        if any((r.get("kind") or "Service") != kind for r in refs):
            return None
        if self._rewrite_model is not None:
            if [r.get("name") for r in refs] != [self.name]:
                return None
            rewrite = self._rewrite()
            return None if rewrite is None else weights_from_rewrite(rewrite)
        return weights_from_route(self.name, route)

    def read(self) -> dict[str, int] | None:
        existing = self._existing()
        return None if existing is None else self._weights(existing)

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
        return (self._weights(existing), mirror_from_route(self.name, existing),
                match_from_route(self.name, existing))

    def unprogrammed(self) -> str | None:
        existing = self._existing()
        return None if existing is None else route_unprogrammed(existing)

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        return dict(wanted)
