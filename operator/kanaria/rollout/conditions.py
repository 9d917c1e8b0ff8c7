"""Kubernetes conditions, derived from status and observations by a pure function."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kanaria.api.models import Condition, ModelDeploymentStatus
from kanaria.rollout.clock import iso
from kanaria.rollout.monitoring import DEGRADING, alarms
from kanaria.rollout.types import Observations

__all__ = ["conditions_for", "invalid_spec_condition"]


def _cond(type_: str, ok: bool, reason: str, message: str) -> tuple[str, str, str, str]:
    return (type_, "True" if ok else "False", reason, message)


def conditions_for(
    status: ModelDeploymentStatus,
    previous: Sequence[Condition],
    obs: Observations,
    now: datetime,
) -> list[Condition]:
    """Available, Progressing, Degraded and InvalidSpec=False; transition times kept."""
    stable = status.stable_revision
    state = obs.workloads.get(stable) if stable else None
    available = state is not None and state.ready > 0
    in_rollout = status.canary_revision is not None
    metrics_down = next(
        (r.reason for r in status.analysis if r.error is not None), None
    )
    wanted = [
        _cond(
            "Available",
            available,
            "StableServing" if available else "StableNotReady",
            f"revision {stable} has {state.ready if state else 0} ready replicas",
        ),
        _cond(
            "Progressing",
            in_rollout or status.phase == "Watching",
            {"Paused": "Paused", "Watching": "Watching"}.get(
                status.phase, "RolloutInProgress" if in_rollout else "NoRollout"
            ),
            status.message,
        ),
        _degraded(status, obs, metrics_down),
        _drifting(status),
        _retraining(status),
        _cond("InvalidSpec", False, "SpecValid", ""),
    ]
    return merge_conditions(previous, wanted, status.observed_generation, now)


def _degraded(
    status: ModelDeploymentStatus, obs: Observations, metrics_down: str | None
) -> tuple[str, str, str, str]:
    if obs.router_error is not None:
        return _cond("Degraded", True, "RouterUnavailable", obs.router_error)
    if status.phase == "RolledBack":
        return _cond("Degraded", True, "RolledBack", status.message)
    if metrics_down is not None:
        return _cond("Degraded", True, "MetricsUnavailable", metrics_down + " (holding)")
    found = alarms(status, DEGRADING)
    if found:
        reason = {"accuracy": "AccuracyDecay", "validated": "BelowValidation", "latency": "LatencyRegression",
                  "errors": "ErrorRegression"}[found[0].kind]
        return _cond("Degraded", True, reason, "; ".join(f"{f.kind}: {f.detail}" for f in found))
    return _cond("Degraded", False, "Healthy", "")


def _retraining(status: ModelDeploymentStatus) -> tuple[str, str, str, str]:
    """The last retraining Job: running, failed (and why) or what it produced."""
    last = next((j for j in reversed(status.jobs) if j.purpose == "retrain"), None)
    if last is None:
        return _cond("Retraining", False, "NoJob", "")
    if last.state == "Running":
        return _cond("Retraining", True, "JobRunning", f"Job {last.name} started for {last.trigger}")
    if last.state == "Failed":
        return _cond("Retraining", False, "RetrainingFailed",
                     f"Job {last.name} failed: {last.reason}; the serving revision is unchanged")
    return _cond("Retraining", False, "CandidateReady", f"Job {last.name}: {last.reason}")


def _drifting(status: ModelDeploymentStatus) -> tuple[str, str, str, str]:
    """The serving revision's inputs or predictions moved away from its reference profile."""
    found = alarms(status, ("drift",))
    if found:
        return _cond("Drifting", True, "InputDrift", found[0].detail)
    watched = status.monitoring is not None and status.monitoring.revision == status.stable_revision
    return _cond("Drifting", False, "NoDrift" if watched else "NotMonitored", "")


def merge_conditions(
    previous: Sequence[Condition],
    wanted: Sequence[tuple[str, str, str, str]],
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Build conditions, keeping lastTransitionTime when a condition's status did not change."""
    before = {c.type: c for c in previous}
    out = []
    for type_, state, reason, message in wanted:
        old = before.get(type_)
        changed = old is None or old.status != state
        out.append(
            Condition(
                type=type_,
                status=state,  # type: ignore[arg-type]
                reason=reason,
                message=message,
                last_transition_time=iso(now) if changed else old.last_transition_time,  # type: ignore[union-attr]
                observed_generation=generation,
            )
        )
    return out


def invalid_spec_condition(
    previous: Sequence[Condition], message: str, generation: int | None, now: datetime
) -> list[Condition]:
    """Conditions for a spec that cannot work: InvalidSpec=True with the reason."""
    keep = [c for c in previous if c.type not in ("InvalidSpec", "Degraded")]
    wanted = [
        ("InvalidSpec", "True", "InvalidSpec", message),
        ("Degraded", "True", "InvalidSpec", message),
    ]
    return [*keep, *merge_conditions(previous, wanted, generation, now)]
