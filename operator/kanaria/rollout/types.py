"""What the engine sees (observations) and what it asks for (a decision)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from kanaria.analysis.verdict import Verdict
from kanaria.api.models import ModelDeploymentStatus, TrafficMatch

__all__ = [
    "ACTIONS",
    "UserAction",
    "WorkloadState",
    "Observations",
    "Arm",
    "AnalysisPlan",
    "Event",
    "Decision",
    "HeaderCondition",
    "SRM_METRIC",
    "RouteMatch",
    "route_match",
]

@dataclass(frozen=True)
class HeaderCondition:
    """One header a request must carry: ``name`` (lower case) equal to ``value``, or matching
    it as a regular expression."""

    name: str
    value: str
    regex: bool = False


@dataclass(frozen=True)
class RouteMatch:
    """Requests whose headers all match go to ``revision``; all others follow the weights."""

    revision: str
    headers: tuple[HeaderCondition, ...]


def cookie_pattern(name: str, value: str) -> str:
    """An anchored regular expression on the Cookie header for ``name=value`` (cookie tokens
    are validated by the API; regex metacharacters among them are escaped)."""
    return rf"^(.*;\s*)?{re.escape(name)}={re.escape(value)}(\s*;.*)?$"


def route_match(revision: str, match: TrafficMatch) -> RouteMatch:
    """The router-level form of an A/B test's match: the cookie becomes a Cookie header regex."""
    conditions = [
        HeaderCondition(h.name.lower(), h.value, h.type == "RegularExpression") for h in match.headers
    ]
    if match.cookie is not None:
        conditions.append(HeaderCondition("cookie", cookie_pattern(match.cookie.name, match.cookie.value), True))
    return RouteMatch(revision, tuple(conditions))


SRM_METRIC = "sample-ratio"
"""The verdict under which a weighted split's sample-ratio check appears in status; a name
no user metric may take. It informs, it never acts: a mismatch since the step started is
usually the proxy taking a moment to follow the weights (revisions compare per request, so
the judges stay valid); a lasting one says the split is not what Kanaria set."""

ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume", "rollback")


@dataclass(frozen=True)
class UserAction:
    """A request from a person, read from the ``kanaria.io/action`` annotation.

    The annotation's value is ``VERB[:ARG]@ID``; ``ID`` makes each request distinct, so the same
    verb can be asked for twice, and the handled value is kept in status.lastAction so that a
    restart never performs it again.
    """

    verb: str
    arg: str | None
    raw: str

    @staticmethod
    def parse(raw: str | None) -> UserAction | None:
        """None for no annotation; a verb of "invalid" when it cannot be read."""
        if not raw:
            return None
        body = raw.split("@", 1)[0].strip()
        verb, _, arg = body.partition(":")
        verb = verb.strip().lower()
        if verb not in ACTIONS or (verb == "rollback" and not arg.strip()):
            return UserAction("invalid", body, raw)
        return UserAction(verb, arg.strip() or None, raw)


@dataclass(frozen=True)
class WorkloadState:
    """A revision's Deployment as observed."""

    replicas: int
    ready: int


@dataclass(frozen=True)
class Observations:
    """Everything ``decide`` may know about the world, gathered by the controller."""

    revision: str
    """Revision hash of the spec as it is now."""
    version: str
    """spec.model.version as it is now."""
    generation: int = 0
    workloads: Mapping[str, WorkloadState] = field(default_factory=dict)
    weights: Mapping[str, int] | None = None
    """Weights read back from the router; None when they could not be read."""
    verdicts: Mapping[str, Verdict] | None = None
    """Verdicts measured this cycle for the plan ``analysis_plan`` returned; None if none."""
    action: UserAction | None = None
    mirror: tuple[str, int] | None = None
    """The mirror in force (revision, percent), read back from the router."""
    match: RouteMatch | None = None
    """The challenger's header match in force, read back from the router."""
    arm_verdicts: Mapping[str, Mapping[str, Verdict]] | None = None
    """A/B with several challengers: verdicts of each extra challenger (by revision) against
    the incumbent, measured with the same plan as ``verdicts``."""
    router_error: str | None = None
    """Why the router cannot be used (for example its CRD is missing); blocks traffic moves."""


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a revision, measured over ``window`` seconds ending
    ``offset`` seconds ago (0: ending now)."""

    revision: str
    window: float
    offset: float = 0.0


@dataclass(frozen=True)
class AnalysisPlan:
    """What to measure this cycle: the candidate arm against the baseline arm."""

    metrics: tuple[str, ...]
    candidate: Arm
    baseline: Arm
    others: tuple[Arm, ...] = ()
    """A/B with several challengers: the other running challengers, each judged against the
    same baseline as the candidate."""
    expected_split: tuple[int, int] | None = None
    """The configured weights (candidate, baseline) when traffic is split by weight: the
    observed request counts are checked against them (sample-ratio mismatch)."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    """What the controller must do this cycle, and the status to write."""

    status: ModelDeploymentStatus
    replicas: dict[str, int] = field(default_factory=dict)
    """Desired replicas per revision that must exist (0 = keep, scaled down)."""
    delete: list[str] = field(default_factory=list)
    """Revisions whose Deployment and Service go away."""
    weights: dict[str, int] | None = None
    """Desired traffic weights per revision (sum 100); None leaves traffic untouched."""
    mirror: tuple[str, int] | None = None
    """Desired mirror (revision, percent) of live traffic; None: no mirroring."""
    match: RouteMatch | None = None
    """Desired header match sending requests to a challenger; None: none (with weights)."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float = 10.0
