"""The traffic Router interface, and the helpers every router shares."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.routing import RouteMatch

__all__ = [
    "ADOPT_ANNOTATION", "MATCH_RULE", "Router", "crd_problem", "foreign_route_problem", "get_or_none", "normalise",
    "revision_of_service",
]

MATCH_RULE = "kanaria-match"
"""Name of the route rule (HTTPRoute rule, VirtualService http route) Kanaria adds for an A/B
test by match; every other rule is the user's."""


class Router(Protocol):
    """Moves traffic between a ModelDeployment's revisions."""

    kind: str

    def check(self) -> str | None:
        """None when the router can be used; otherwise a message a person can act on."""
        ...

    def apply(
        self,
        weights: Mapping[str, int],
        mirror: tuple[str, int] | None = None,
        match: RouteMatch | None = None,
    ) -> None:
        """Make traffic follow these weights (percent per revision, summing to 100), mirror
        ``percent`` of it to a revision (responses discarded) when ``mirror`` is given, and send
        the requests whose headers match to ``match.revision`` when ``match`` is given."""
        ...

    def read_match(self) -> RouteMatch | None:
        """The header match in force, read back; None when there is none."""
        ...

    def observe(self) -> tuple[dict[str, int] | None, tuple[str, int] | None, RouteMatch | None]:
        """(weights, mirror, match) in force, from one read of the route."""
        ...

    def read(self) -> dict[str, int] | None:
        """The weights in force, read back from the cluster; None when unknown."""
        ...

    def unprogrammed(self) -> str | None:
        """Why the data plane has not yet put the route's current spec in force (a gateway's
        status about an older generation); None when it has or cannot tell."""
        ...

    def read_mirror(self) -> tuple[str, int] | None:
        """The mirror in force (revision, percent), read back; None when there is none."""
        ...

    def replicas(self, wanted: Mapping[str, int], weights: Mapping[str, int] | None) -> dict[str, int]:
        """Replicas per revision given the engine's wishes (routers by replica ratio adjust)."""
        ...


def normalise(raw: Mapping[str, int]) -> dict[str, int]:
    """Relative weights to percents summing to 100 (largest remainder)."""
    total = sum(max(0, w) for w in raw.values())
    if total <= 0:
        return {k: 0 for k in raw}
    exact = {k: max(0, w) * 100 / total for k, w in raw.items()}
    floors = {k: int(v) for k, v in exact.items()}
    short = 100 - sum(floors.values())
    for k in sorted(exact, key=lambda k: exact[k] - floors[k], reverse=True)[:short]:
        floors[k] += 1
    return floors


def revision_of_service(deployment: str, service: str) -> str | None:
    """The revision a per-revision Service name belongs to (``NAME-REVISION``)."""
    prefix = f"{deployment}-"
    return service[len(prefix) :] if service.startswith(prefix) else None


ADOPT_ANNOTATION = "kanaria.io/adopt"
"""Set to a ModelDeployment's name on a route it did not create to let it manage the route's
backends (an explicit opt-in by whoever owns the route)."""
_REVISION = re.compile(r"^[0-9a-f]{10}$")


def foreign_route_problem(kind: str, obj: Mapping[str, Any], deployment: str, uid: str,
                          backends: list[str]) -> str | None:
    """Why an existing route must not be taken over by ``deployment``; None when it may: it is
    Kanaria's for this object (owner reference), its owner opted in (``kanaria.io/adopt``), or
    its backends are all this deployment's revisions already (or it has none)."""
    meta = obj.get("metadata") or {}
    if any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or []):
        return None
    if (meta.get("annotations") or {}).get(ADOPT_ANNOTATION) == deployment:
        return None
    prefix = f"{deployment}-"
    foreign = sorted({b for b in backends if not (b == deployment or (
        b.startswith(prefix) and _REVISION.match(b[len(prefix):])))})
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    return (f"{kind} {meta.get('name')} exists and sends traffic to {shown}, not to this ModelDeployment's "
            f"revisions: Kanaria does not take over another application's route; its owner may hand it over "
            f"with the annotation {ADOPT_ANNOTATION}={deployment}, or choose another route name")


def crd_problem(api: client.ApiClient, crd: str, what: str, instead: str, cache: Any = None) -> str | None:
    """None when the CRD a router writes is installed; otherwise what a person should do.
    With the operator's watch caches (``cache``) this reads the CRD cache, never the API."""
    if cache is not None:
        return None if cache.crd_established(crd) else f"the {what} CRD ({crd}) is not installed; {instead}"
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status == 404:
            return f"the {what} CRD ({crd}) is not installed; {instead}"
        return f"cannot check the {what} CRD: {exc.status} {exc.reason}"
    return None


def get_or_none(
    custom: client.CustomObjectsApi, group: str, version: str, namespace: str, plural: str, name: str,
    cache: Any = None, kind: str = "",
) -> dict[str, Any] | None:
    """A namespaced custom object, or None when it does not exist; from the watch cache of
    ``kind`` when the operator runs one (a copy: callers may edit it)."""
    if cache is not None and cache.has(kind):
        found = cache.get(kind, namespace, name)
        return copy.deepcopy(found) if found is not None else None
    try:
        obj = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj if isinstance(obj, dict) else None
