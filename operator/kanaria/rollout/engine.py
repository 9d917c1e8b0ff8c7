"""The rollout state machine: ``decide(spec, status, observations, now) -> Decision``.

Pure: no I/O, no clock reads, no randomness. ``decide`` handles a person's action, dispatches
on where the rollout stands (first revision, steady, a new revision under a strategy, the
watch window), applies retention, and derives conditions; each of those lives in its own
module and edits one ``Cycle``; the phase is read from the result (``phase_of``). The
controller carries the decision out and writes the status once.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.api.models import ModelDeploymentSpec, ModelDeploymentStatus, TimelineEntry
from kanaria.rollout.abtest import progress_ab_test
from kanaria.rollout.actions import handle_action
from kanaria.rollout.canary import progress_canary, start_canary
from kanaria.rollout.clock import iso, seconds_since
from kanaria.rollout.conditions import conditions_for
from kanaria.rollout.cycle import HISTORY_LIMIT, Cycle
from kanaria.rollout.endings import end_canary, finish_watch
from kanaria.rollout.lifecycle import follow_jobs, retrain_if_needed, validation_gate
from kanaria.rollout.phase import phase_of
from kanaria.rollout.retention import retention
from kanaria.rollout.shadow import progress_shadow
from kanaria.rollout.steady import first_deploy, steady
from kanaria.rollout.steps import step_metrics
from kanaria.rollout.types import Decision, Observations
from kanaria.rollout.watch import watch

__all__ = ["decide", "step_metrics", "HISTORY_LIMIT", "TIMELINE_LIMIT"]

TIMELINE_LIMIT = 200
IDLE_PHASES = ("Stable", "RolledBack", "Paused")
IDLE_REQUEUE = 3600.0
"""An object at rest (Stable, RolledBack, Paused) with nothing timed (no check of the serving revision, no retention
deadline, no Job running) waits for a change: its workloads, route or spec changing wakes it;
the operator looks again at most this late anyway (and at its own resync, see the daemon)."""


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    obs: Observations,
    now: datetime,
) -> Decision:
    """Decide the next move of one ModelDeployment from its spec, status and observations."""
    c = Cycle(spec, status, obs, now)
    c.st.observed_generation = obs.generation
    if obs.action is not None and obs.action.raw != c.st.last_action:
        handle_action(c, obs.action)
        c.st.last_action = obs.action.raw
    follow_jobs(c)
    if obs.router_error is not None:
        _hold_for_router(c, obs.router_error)
    else:
        _next_move(c)
    retention(c)
    c.st.phase = phase_of(spec, c.st, obs, now)
    if c.st.phase in IDLE_PHASES and c.st.canary_revision is None:
        # At rest: only what was asked for (the analysis interval is not).
        c.d.requeue_after = max(0.2, min(c.asked, IDLE_REQUEUE))
    else:  # a rollout, paused or not: the canary is measured every interval
        _next_measurement(c)
    c.st.conditions = conditions_for(c.st, status.conditions, obs, now)
    _timeline(c)
    return c.d


def _next_measurement(c: Cycle) -> None:
    """Look again when the next measurement is due — an interval after the last one, not an
    interval after this cycle (which would measure every interval plus a cycle's latency, and
    with aligned timers every interval plus a grid slot). Sooner if any part asked for sooner."""
    if c.spec.analysis is None or not c.st.last_analysis_at:
        return
    remaining = c.spec.interval_seconds() - seconds_since(c.st.last_analysis_at, c.now)
    if remaining > 0:
        c.d.requeue_after = max(0.2, min(c.asked, remaining))


def _next_move(c: Cycle) -> None:
    """Where the rollout stands decides what happens next."""
    st, rev = c.st, c.obs.revision
    if st.stable_revision is None:
        first_deploy(c)
    elif st.canary_revision is not None:
        if rev == st.canary_revision or (st.arms and rev == st.arms[0].revision):
            _progress_strategy(c)
        elif rev == st.stable_revision:
            end_canary(c, "superseded", "the spec went back to the stable revision")
            steady(c)
        else:
            end_canary(c, "superseded", f"superseded by revision {rev} ({c.obs.version})")
            _start_if_validated(c)
    elif rev == st.stable_revision:
        if st.watch_until is not None:
            watch(c)
        else:
            steady(c)
            retrain_if_needed(c)
    elif rev == st.rejected_revision:
        steady(c)
        retrain_if_needed(c)
    else:
        if st.watch_until is not None:
            finish_watch(c)  # a newer revision arrived before the watch window ended
        _start_if_validated(c)


def _start_if_validated(c: Cycle) -> None:
    """Start the new revision's rollout once offline validation (if asked for) passed; until
    then, and after a failure, the stable revision serves everything."""
    if validation_gate(c):
        start_canary(c)
        return
    message = c.st.message
    steady(c)
    c.st.message = message
    c.requeue(2.0)


def _progress_strategy(c: Cycle) -> None:
    strategy = c.spec.strategy
    if c.st.arms or strategy.ab_test is not None:
        progress_ab_test(c)
    elif strategy.shadow is not None:
        progress_shadow(c)
    else:
        progress_canary(c)


def _hold_for_router(c: Cycle, error: str) -> None:
    """The router cannot be used: keep every workload, move no traffic, say why."""
    st = c.st
    for rev in (st.stable_revision, st.canary_revision, st.prior_revision):
        if rev is not None:
            c.d.replicas[rev] = c.spec.replicas
    st.message = f"traffic router unavailable, no traffic moved: {error}"
    c.d.weights = None
    c.requeue(30.0)


def _timeline(c: Cycle) -> None:
    """Every Event of this cycle also lands in status.timeline (bounded)."""
    if not c.d.events:
        return
    st = c.st
    entries = [
        TimelineEntry(
            at=iso(c.now),
            reason=e.reason,
            message=e.message,
            revision=st.canary_revision or st.stable_revision,
            weight=st.canary_weight if st.canary_revision else 0,
            step=st.current_step,
        )
        for e in c.d.events
    ]
    st.timeline = [*st.timeline, *entries][-TIMELINE_LIMIT:]
