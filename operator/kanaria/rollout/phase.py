"""The phase, from a pure function of spec, status and observations (as conditions are).

No part of the engine sets the phase: each edits the facts (which revisions run, whether a
person or missing evidence paused the rollout, the watch window, the last outcome) and
``phase_of`` reads them at the end of the cycle.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.api.models import ModelDeploymentSpec, ModelDeploymentStatus, Phase
from kanaria.rollout.clock import seconds_since
from kanaria.rollout.types import Observations

__all__ = ["phase_of", "rolled_back", "serving_ready"]


def serving_ready(spec: ModelDeploymentSpec, obs: Observations, revision: str | None) -> bool:
    """``revision`` has every replica the spec asks for ready (or is scaled to 0 as asked)."""
    if revision is None:
        return False
    state = obs.workloads.get(revision)
    want = spec.replicas
    return state is not None and state.ready >= want and (want > 0 or state.replicas == 0)


def rolled_back(status: ModelDeploymentStatus, revision: str) -> bool:
    """The spec still names the revision that was rolled back (or reverted, or lost). Not so
    when another A/B challenger won over it and was promoted: that revision is refused too
    (it is not retried), but the rollout ended well."""
    return (
        status.rejected_revision is not None
        and revision == status.rejected_revision
        and not (status.history and status.history[-1].outcome == "promoted")
    )


def phase_of(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, obs: Observations, now: datetime
) -> Phase:
    """Pending before the first revision is in place; during a rollout Paused (by a person,
    for missing evidence, or at an indefinite pause step) or Progressing; Watching in the
    window after promotion; RolledBack while the spec names a refused revision; otherwise
    Stable once the serving revision is ready, Progressing until then."""
    st = status
    if st.stable_revision is None:
        return "Pending"
    if st.canary_revision is not None:
        if st.paused or _at_indefinite_pause(spec, st, obs, now):
            return "Paused"
        return "Progressing"
    if st.watch_until is not None:
        return "Watching"
    if rolled_back(st, obs.revision):
        return "RolledBack"
    v = st.validation
    if v is not None and v.revision == obs.revision and v.verdict == "pending" and obs.revision != st.stable_revision:
        return "Validating"
    return "Stable" if serving_ready(spec, obs, st.stable_revision) else "Progressing"


def _at_indefinite_pause(
    spec: ModelDeploymentSpec, st: ModelDeploymentStatus, obs: Observations, now: datetime
) -> bool:
    """A canary step ``pause: {}`` holds until a person promotes, once the canary can serve and
    the step has begun (the cycle that completes the step before it still says so)."""
    if spec.strategy.ab_test is not None or spec.strategy.shadow is not None or st.arms:
        return False
    steps = spec.canary_steps()
    if st.current_step >= len(steps):
        return False
    step = steps[st.current_step]
    return (
        step.pause is not None
        and step.pause.duration is None
        and serving_ready(spec, obs, st.canary_revision)
        and seconds_since(st.step_started_at, now) > 0
    )
