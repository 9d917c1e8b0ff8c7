"""What the engine sees (observations) and what it asks for (a decision).

The types it shares with other packages (route matches, workload state, analysis plans,
verdicts) live in ``kanaria.api``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kanaria.api.models import ModelDeploymentStatus
from kanaria.api.observed import JobState, ServingReading, WorkloadState
from kanaria.api.routing import RouteMatch
from kanaria.api.verdict import Verdict

__all__ = ["ACTIONS", "UserAction", "Observations", "Event", "Decision", "JobRequest"]

ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume", "rollback", "retrain", "adopt")


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
    measured_at: datetime | None = None
    """The instant the verdicts' queries were evaluated at (the batch's, on the timers' grid);
    the cycle's own time when None."""
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
    route_pending: str | None = None
    """Why the gateway has not yet applied the route as it stands (its status reports an older
    generation): weights read back are not yet in force, and nothing it may still send
    traffic to is scaled down."""
    serving: ServingReading | None = None
    """A check of the serving revision between rollouts, when one was due."""
    jobs: Mapping[str, JobState] = field(default_factory=dict)
    """The Jobs status.jobs records as running, as they stand now."""
    stable_uri: str | None = None
    """The model URI the stable revision's Deployment serves."""
    name: str = ""
    """The ModelDeployment's name (Jobs are named after it)."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class JobRequest:
    """A Job to create: its name, purpose, pod template, environment and deadline."""

    name: str
    purpose: str
    template: Mapping[str, object]
    env: Mapping[str, str]
    deadline_seconds: int


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
    jobs: list[JobRequest] = field(default_factory=list)
    """Retraining or validation Jobs to create."""
    adopt: tuple[str, str] | None = None
    """A candidate (version, URI) to write into spec.model."""
