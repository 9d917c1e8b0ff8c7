"""The traffic Router interface, and the helpers every router shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.routing import RouteMatch

__all__ = ["MATCH_RULE", "Router", "normalise", "revision_of_service", "crd_problem", "get_or_none"]

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


def crd_problem(api: client.ApiClient, crd: str, what: str, instead: str) -> str | None:
    """None when the CRD a router writes is installed; otherwise what a person should do."""
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status == 404:
            return f"the {what} CRD ({crd}) is not installed; {instead}"
        return f"cannot check the {what} CRD: {exc.status} {exc.reason}"
    return None


def get_or_none(
    custom: client.CustomObjectsApi, group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any] | None:
    """A namespaced custom object, or None when it does not exist."""
    try:
        obj = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj if isinstance(obj, dict) else None
