"""The rollout state machine: ``decide(spec, status, observations, now) -> Decision``.

Pure: no I/O, no clock reads, no randomness. Every transition is a small function that edits
the status copy in ``_Cycle`` and says what traffic, replicas and Events it wants; the
controller carries the decision out and writes the status once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from kanaria.api.durations import parse_duration
from kanaria.api.models import (
    ArmStatus,
    CanaryStep,
    HistoryEntry,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    TimelineEntry,
)
from kanaria.api.observed import SRM_METRIC
from kanaria.api.revision import revision_hash
from kanaria.api.routing import route_match
from kanaria.api.verdict import Verdict
from kanaria.rollout.clock import iso, parse_iso, seconds_since
from kanaria.rollout.conditions import conditions_for
from kanaria.rollout.types import Decision, Event, Observations, UserAction

__all__ = ["decide", "HISTORY_LIMIT", "TIMELINE_LIMIT"]

HISTORY_LIMIT = 50
TIMELINE_LIMIT = 200
_FAST = 1.0  # requeue after a transition, to carry on promptly
_BECAUSE = " — "  # separates a waiting promotion's message from its reason


class _Cycle:
    """One decision in the making: inputs, the status being edited, and the decision."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        obs: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.obs = obs
        self.now = now
        self.st = status.model_copy(deep=True)
        self.d = Decision(status=self.st, requeue_after=spec.interval_seconds())

    # -- small helpers -------------------------------------------------------------------

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.d.events.append(Event("Warning" if warning else "Normal", reason, message))

    def history(self, revision: str, version: str, outcome: str, reason: str) -> None:
        entry = HistoryEntry(
            revision=revision,
            model_version=version,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            at=iso(self.now),
        )
        self.st.history = [*self.st.history, entry][-HISTORY_LIMIT:]

    def requeue(self, seconds: float) -> None:
        self.d.requeue_after = max(0.2, min(self.d.requeue_after, seconds))

    def ready(self, revision: str | None) -> bool:
        if revision is None:
            return False
        state = self.obs.workloads.get(revision)
        want = self.spec.replicas
        return state is not None and state.ready >= want and (want > 0 or state.replicas == 0)

    def weights_match(self, wanted: dict[str, int]) -> bool:
        seen = self.obs.weights
        if seen is None:
            return False
        return all(seen.get(rev, 0) == w for rev, w in wanted.items()) and all(
            w == 0 for rev, w in seen.items() if rev not in wanted
        )

    def retire(self, revision: str | None) -> None:
        if revision is not None and revision not in self.st.retired:
            self.st.retired = {**self.st.retired, revision: iso(self.now)}

    def unretire(self, revision: str) -> None:
        self.st.retired = {k: v for k, v in self.st.retired.items() if k != revision}


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    obs: Observations,
    now: datetime,
) -> Decision:
    """Decide the next move of one ModelDeployment from its spec, status and observations."""
    c = _Cycle(spec, status, obs, now)
    c.st.observed_generation = obs.generation
    if obs.action is not None and obs.action.raw != c.st.last_action:
        _handle_action(c, obs.action)
        c.st.last_action = obs.action.raw
    if obs.router_error is not None:
        _hold_for_router(c, obs.router_error)
    else:
        _route(c)
    _retention(c)
    c.st.conditions = conditions_for(c.st, status.conditions, obs, now)
    if c.d.events:
        entries = [
            TimelineEntry(
                at=iso(now),
                reason=e.reason,
                message=e.message,
                revision=c.st.canary_revision or c.st.stable_revision,
                weight=c.st.canary_weight if c.st.canary_revision else 0,
                step=c.st.current_step,
            )
            for e in c.d.events
        ]
        c.st.timeline = [*c.st.timeline, *entries][-TIMELINE_LIMIT:]
    return c.d


# --------------------------------------------------------------------------- dispatch


def _route(c: _Cycle) -> None:
    st, rev = c.st, c.obs.revision
    if st.stable_revision is None:
        _first_deploy(c)
    elif st.canary_revision is not None:
        if rev == st.canary_revision or (st.arms and rev == st.arms[0].revision):
            _progress_canary(c)
        elif rev == st.stable_revision:
            _end_canary(c, "superseded", "the spec went back to the stable revision")
            _steady(c)
        else:
            _end_canary(c, "superseded", f"superseded by revision {rev} ({c.obs.version})")
            _start_canary(c)
    elif rev == st.stable_revision:
        if st.phase == "Watching":
            _watch(c)
        else:
            _steady(c)
    elif rev == st.rejected_revision:
        _steady(c)
    else:
        if st.phase == "Watching":
            _finish_watch(c, "a newer revision arrived before the watch window ended")
        _start_canary(c)


def _hold_for_router(c: _Cycle, error: str) -> None:
    """The router cannot be used: keep every workload, move no traffic, say why."""
    st = c.st
    for rev in (st.stable_revision, st.canary_revision, st.prior_revision):
        if rev is not None:
            c.d.replicas[rev] = c.spec.replicas
    if st.stable_revision is None:
        st.phase = "Pending"
    st.message = f"traffic router unavailable, no traffic moved: {error}"
    c.d.weights = None
    c.requeue(30.0)


# --------------------------------------------------------------------------- steady state


def _first_deploy(c: _Cycle) -> None:
    st = c.st
    st.stable_revision, st.stable_version = c.obs.revision, c.obs.version
    c.unretire(c.obs.revision)
    c.history(c.obs.revision, c.obs.version, "deployed", "first revision")
    c.event("Deployed", f"revision {c.obs.revision} ({c.obs.version}) deployed as stable")
    _steady(c)


def _steady(c: _Cycle) -> None:
    st, spec = c.st, c.spec
    stable = st.stable_revision
    assert stable is not None
    c.d.replicas[stable] = spec.replicas
    prior = st.prior_revision
    if prior is not None and not c.ready(stable):
        # A person asked to go back to an older revision: keep serving from the revision in
        # service until the older one is ready again.
        c.d.replicas[prior] = spec.replicas
        c.d.weights = {prior: 100, stable: 0}
        st.message = f"waiting for revision {stable} to become ready before moving traffic"
        c.requeue(2.0)
        return
    if prior is not None:
        c.retire(prior)
        st.prior_revision = st.prior_version = None
    c.d.weights = {stable: 100}
    if st.phase == "RolledBack" and c.obs.revision == st.rejected_revision:
        return
    if c.ready(stable):
        if st.phase != "Stable":
            st.message = f"serving revision {stable} ({st.stable_version})"
        st.phase = "Stable"
    else:
        st.phase = "Progressing"
        state = c.obs.workloads.get(stable)
        ready = state.ready if state else 0
        st.message = f"waiting for revision {stable}: {ready}/{spec.replicas} replicas ready"
        c.requeue(2.0)


# --------------------------------------------------------------------------- canary


def _start_canary(c: _Cycle) -> None:
    st = c.st
    st.canary_revision, st.canary_version = c.obs.revision, c.obs.version
    c.unretire(c.obs.revision)
    st.canary_weight = 0
    st.current_step = 0
    st.step_started_at = st.rollout_started_at = iso(c.now)
    st.last_analysis_at = None
    st.failures = st.inconclusive_streak = 0
    st.paused = False
    st.rejected_revision = None
    st.analysis = []
    ab = c.spec.strategy.ab_test
    st.arms = []
    if ab is not None and ab.challengers:
        st.arms = [ArmStatus(revision=c.obs.revision, version=c.obs.version, weight=ab.weight)] + [
            ArmStatus(revision=revision_hash(s), version=s.model.version, weight=a.weight)
            for a, s in zip(ab.challengers, c.spec.arm_specs(), strict=True)
        ]
        for arm in st.arms:
            c.unretire(arm.revision)
    st.phase = "Progressing"
    st.message = f"starting revision {c.obs.revision} ({c.obs.version}) beside {st.stable_revision}"
    c.event(
        "RolloutStarted",
        f"revision {c.obs.revision} ({c.obs.version}) starts as canary beside "
        f"{st.stable_revision} ({st.stable_version})",
    )
    _canary_traffic(c)
    c.requeue(_FAST)


def _canary_traffic(c: _Cycle) -> dict[str, int]:
    st = c.st
    assert st.stable_revision is not None and st.canary_revision is not None
    c.d.replicas[st.stable_revision] = c.spec.replicas
    c.d.replicas[st.canary_revision] = c.spec.replicas
    weights = {st.stable_revision: 100 - st.canary_weight, st.canary_revision: st.canary_weight}
    c.d.weights = weights
    return weights


def _progress_canary(c: _Cycle) -> None:
    if c.st.arms:
        _progress_ab_arms(c)
        return
    if c.spec.strategy.ab_test is not None:
        _progress_ab_test(c)
        return
    if c.spec.strategy.shadow is not None:
        _progress_shadow(c)
        return
    st, spec = c.st, c.spec
    steps = spec.canary_steps()
    _canary_traffic(c)
    if not c.ready(st.canary_revision):
        _wait_for_canary_ready(c)
        return
    if c.obs.verdicts is not None and _judge(c, c.obs.verdicts):
        return  # rolled back
    if st.paused:
        st.phase = "Paused"
        st.message = f"paused by a person at step {st.current_step + 1}/{len(steps)}"
        return
    if st.current_step >= len(steps):
        _promote(c, "every step passed")
        return
    st.phase = "Progressing"
    step = steps[st.current_step]
    if step.set_weight is not None:
        _set_weight_step(c, step.set_weight, len(steps))
    elif step.pause is not None:
        _pause_step(c, step, len(steps))
    else:
        _analysis_step(c, step, len(steps))


def _progress_ab_test(c: _Cycle) -> None:
    """A/B: a fixed split (step 0 sets it), then the primary metric picks a winner (step 1).

    The challenger wins only with significant evidence that it is better on the primary
    metric and every guardrail passing; a failed guardrail or primary metric, or no decision
    within maxDuration, keeps the incumbent (the challenger is retired as "lost").
    """
    st, spec = c.st, c.spec
    ab = spec.strategy.ab_test
    assert ab is not None and spec.analysis is not None
    if st.current_step >= 2:  # the winner is being promoted: wait for the router, then finish
        _, _, why = (st.message or "").partition(_BECAUSE)
        _promote(c, why or "A/B winner")
        return
    if ab.match is not None:
        # By match: the challenger gets the requests that match and no weighted share.
        st.canary_weight = 0
    elif st.current_step == 0:
        st.canary_weight = ab.weight
    _canary_traffic(c)
    if not c.ready(st.canary_revision):
        _wait_for_canary_ready(c)
        return
    split = _ab_split(c)
    if st.current_step == 0:
        if c.weights_match(_canary_traffic(c)) and c.obs.match == c.d.match:
            _advance(c, 2, f"A/B {split} confirmed by the router")
        else:
            st.phase = "Progressing"
            st.message = f"A/B test: setting up {split}"
            c.requeue(_FAST)
        return
    st.phase = "Progressing"
    verdicts = c.obs.verdicts
    if verdicts is not None:
        _record(c, verdicts)
        if _ab_decide(c, verdicts):
            return
    elapsed = seconds_since(st.step_started_at, c.now)
    limit = parse_duration(ab.max_duration)
    if elapsed >= limit:
        _rollback(c, f"no winner within {limit:.0f}s: the incumbent stays", outcome="lost")
        return
    st.message = f"A/B test, {split}: deciding on {ab.primary_metric} ({limit - elapsed:.0f}s left)"


def _ab_split(c: _Cycle) -> str:
    """Ask for the A/B test's route match (if any) and say how traffic is split."""
    ab = c.spec.strategy.ab_test
    assert ab is not None and c.st.canary_revision is not None
    if ab.match is None:
        return f"split {100 - c.st.canary_weight}/{c.st.canary_weight}"
    c.d.match = route_match(c.st.canary_revision, ab.match)
    said = [f"{h.name}: {h.value}" for h in ab.match.headers]
    if ab.match.cookie is not None:
        said.append(f"cookie {ab.match.cookie.name}={ab.match.cookie.value}")
    return "requests with " + " and ".join(said) + " to the challenger"


def _progress_shadow(c: _Cycle) -> None:
    """Shadow: mirror live traffic to the new revision (step 0 sets the mirror up), judge it
    on the copy (step 1), and promote it only when every metric passes (step 2). It serves no
    user before that: its weight stays 0 and its responses are discarded by the router."""
    st, spec = c.st, c.spec
    shadow_cfg = spec.strategy.shadow
    assert shadow_cfg is not None and st.stable_revision and st.canary_revision
    if st.current_step >= 2:
        _promote(c, "every metric passed on mirrored traffic")
        return
    st.canary_weight = 0
    _canary_traffic(c)
    if not c.ready(st.canary_revision):
        _wait_for_canary_ready(c)
        return
    wanted = (st.canary_revision, shadow_cfg.percent)
    c.d.mirror = wanted
    if st.current_step == 0:
        if c.obs.mirror == wanted:
            _advance(c, 3, f"mirroring {shadow_cfg.percent}% of live traffic to {st.canary_revision}")
        else:
            st.phase = "Progressing"
            st.message = f"shadow: mirroring {shadow_cfg.percent}% of live traffic to {st.canary_revision}"
            c.requeue(_FAST)
        return
    verdicts = c.obs.verdicts
    if verdicts is not None and _judge(c, verdicts):
        return  # rolled back: the shadow never served a user
    if st.paused:
        st.phase = "Paused"
        st.message = "shadow paused by a person"
        return
    st.phase = "Progressing"
    names = step_metrics(spec, None)
    if verdicts is not None:
        if all(n in verdicts and verdicts[n].passed for n in names):
            st.current_step = 2
            c.event("ShadowPassed", "every metric passed on mirrored traffic: " + _summary(names, verdicts))
            _promote(c, "shadow passed: " + _summary(names, verdicts))
            return
        st.inconclusive_streak += 1
    limit = parse_duration(shadow_cfg.duration)
    elapsed = seconds_since(st.step_started_at, c.now)
    streak_limit = spec.analysis.inconclusive_limit if spec.analysis else 0
    if elapsed > limit or st.inconclusive_streak > streak_limit:
        detail = _summary(names, verdicts) if verdicts else "no measurement yet"
        _on_inconclusive(c, f"shadow undecided after {elapsed:.0f}s; {detail}")
        return
    latest = {r.metric: r.verdict for r in st.analysis}
    waiting = [n for n in names if latest.get(n) != "pass"]
    st.message = f"shadow: judging mirrored traffic; waiting on {', '.join(waiting)} ({limit - elapsed:.0f}s left)"


def _ab_decide(c: _Cycle, verdicts: Mapping[str, Verdict]) -> bool:
    """Act on one measurement of an A/B test; True when the test ended."""
    from kanaria.rollout.winner import ab_winner, thompson_weight

    st, spec = c.st, c.spec
    ab = spec.strategy.ab_test
    assert ab is not None and spec.analysis is not None
    kinds = {m.name: m.kind for m in spec.analysis.metrics}
    failed = [g for g in ab.guardrails if g in verdicts and verdicts[g].failed]
    if failed:
        _rollback(c, "guardrail failed: " + _summary(tuple(failed), verdicts), outcome="lost")
        return True
    primary = verdicts.get(ab.primary_metric)
    winner = ab_winner(kinds[ab.primary_metric], primary) if primary is not None else None
    guards_pass = all(g in verdicts and verdicts[g].passed for g in ab.guardrails)
    detail = _summary((ab.primary_metric, *ab.guardrails), verdicts)
    if winner == "incumbent":
        _rollback(c, f"the incumbent wins: {detail}", outcome="lost")
        return True
    if winner == "challenger" and guards_pass:
        c.st.current_step = 2
        _promote(c, f"A/B winner: {detail}")
        return True
    if ab.bandit and guards_pass and primary is not None:
        weight = thompson_weight(
            primary,
            floor=ab.exploration_floor,
            higher_is_better=kinds[ab.primary_metric] != "errorRate",
        )
        if weight is not None and weight != st.canary_weight:
            c.event("SplitChanged", f"bandit moves the challenger from {st.canary_weight}% to {weight}%")
            st.canary_weight = weight
            _canary_traffic(c)
    return False


def _wait_for_canary_ready(c: _Cycle) -> None:
    st = c.st
    deadline = _progress_deadline(c)
    waited = seconds_since(st.rollout_started_at, c.now)
    state = c.obs.workloads.get(st.canary_revision or "")
    ready = state.ready if state else 0
    if waited > deadline:
        _rollback(
            c,
            f"canary revision {st.canary_revision} did not become ready within "
            f"{deadline:.0f}s ({ready}/{c.spec.replicas} replicas ready)",
        )
        return
    st.phase = "Progressing"
    st.message = (
        f"waiting for canary revision {st.canary_revision}: {ready}/{c.spec.replicas} "
        f"replicas ready ({waited:.0f}s of {deadline:.0f}s)"
    )
    c.requeue(2.0)


def _set_weight_step(c: _Cycle, weight: int, total: int) -> None:
    st = c.st
    st.canary_weight = weight
    wanted = _canary_traffic(c)
    if c.weights_match(wanted):
        _advance(c, total, f"canary weight {weight}% confirmed by the router")
    else:
        st.message = f"step {st.current_step + 1}/{total}: setting canary weight to {weight}%"
        c.requeue(_FAST)


def _pause_step(c: _Cycle, step: CanaryStep, total: int) -> None:
    st = c.st
    assert step.pause is not None
    if step.pause.duration is None:
        st.phase = "Paused"
        st.message = (
            f"step {st.current_step + 1}/{total}: paused at {st.canary_weight}% until promoted "
            "(kubectl kanaria promote)"
        )
        return
    hold = parse_duration(step.pause.duration)
    elapsed = seconds_since(st.step_started_at, c.now)
    if elapsed >= hold:
        _advance(c, total, f"paused {hold:.0f}s at {st.canary_weight}%")
    else:
        st.message = (
            f"step {st.current_step + 1}/{total}: holding {st.canary_weight}% for "
            f"{hold - elapsed:.0f}s more"
        )
        c.requeue(hold - elapsed)


def step_metrics(spec: ModelDeploymentSpec, step: CanaryStep | None) -> tuple[str, ...]:
    """Metrics judged at an analysis step (all metrics when the step names none)."""
    names = [m.name for m in spec.analysis.metrics] if spec.analysis else []
    if step is not None and step.analysis is not None and step.analysis.metrics:
        return tuple(step.analysis.metrics)
    return tuple(names)


def _analysis_step(c: _Cycle, step: CanaryStep, total: int) -> None:
    st, spec = c.st, c.spec
    assert step.analysis is not None
    names = step_metrics(spec, step)
    verdicts = c.obs.verdicts
    if verdicts is not None:
        judged = [verdicts[n] for n in names if n in verdicts]
        if len(judged) == len(names) and all(v.passed for v in judged):
            _advance(c, total, "analysis passed: " + _summary(names, verdicts))
            return
        st.inconclusive_streak += 1
    deadline = (
        parse_duration(step.analysis.deadline) if step.analysis.deadline else _progress_deadline(c)
    )
    elapsed = seconds_since(st.step_started_at, c.now)
    limit = spec.analysis.inconclusive_limit if spec.analysis else 0
    if st.inconclusive_streak > limit or elapsed > deadline:
        why = (
            f"{st.inconclusive_streak} inconclusive measurements in a row (limit {limit})"
            if st.inconclusive_streak > limit
            else f"no decision within {deadline:.0f}s"
        )
        detail = _summary(names, verdicts) if verdicts else "no measurement yet"
        _on_inconclusive(c, f"step {st.current_step + 1}/{total}: {why}; {detail}")
        return
    latest = {r.metric: r.verdict for r in st.analysis}
    waiting = [n for n in names if latest.get(n) != "pass"]
    st.message = (
        f"step {st.current_step + 1}/{total}: judging at {st.canary_weight}%; "
        f"waiting on {', '.join(waiting) or 'the first measurement'}"
    )
    if latest.get(SRM_METRIC) == "fail":
        st.message += f"; note: the observed split differs from the weights ({SRM_METRIC} in status.analysis)"


def _on_inconclusive(c: _Cycle, reason: str) -> None:
    st, spec = c.st, c.spec
    policy = spec.analysis.on_inconclusive if spec.analysis else "pause"
    if policy == "rollback":
        _rollback(c, f"not enough evidence: {reason}")
        return
    if not st.paused:
        c.event("Paused", f"waiting for a person: {reason}", warning=True)
    st.paused = True
    st.phase = "Paused"
    st.message = f"paused for a person (resume, promote or abort): {reason}"


def _advance(c: _Cycle, total: int, why: str) -> None:
    st = c.st
    st.current_step += 1
    st.step_started_at = iso(c.now)
    st.inconclusive_streak = 0
    c.event("StepAdvanced", f"step {st.current_step}/{total} done: {why}")
    st.message = f"step {st.current_step}/{total} done: {why}"
    c.requeue(_FAST)


def _progress_deadline(c: _Cycle) -> float:
    if c.spec.analysis is not None:
        return parse_duration(c.spec.analysis.progress_deadline)
    return 600.0


# --------------------------------------------------------------------------- judging


def _record(c: _Cycle, verdicts: Mapping[str, Verdict]) -> None:
    kinds = {m.name: m.kind for m in c.spec.analysis.metrics} if c.spec.analysis else {}
    at = iso(c.now)
    c.st.analysis = [
        MetricResult(
            metric=name,
            kind=kinds.get(name, ""),
            verdict=v.outcome.value,
            value=v.value,
            baseline=v.baseline,
            samples=v.samples,
            baseline_samples=v.baseline_samples,
            statistic=v.statistic,
            score=v.score,
            threshold=v.threshold,
            p_value=v.p_value,
            reason=v.reason,
            error=v.error,
            at=at,
        )
        for name, v in sorted(verdicts.items())
    ]
    c.st.last_analysis_at = at


def _judge(c: _Cycle, verdicts: Mapping[str, Verdict]) -> bool:
    """Record verdicts; roll back (and return True) on a critical failure or too many failures."""
    _record(c, verdicts)
    failed = sorted(name for name, v in verdicts.items() if v.failed and name != SRM_METRIC)
    if not failed:
        return False
    critical = {m.name for m in c.spec.analysis.metrics if m.critical} if c.spec.analysis else set()
    c.st.failures += 1
    limit = c.spec.analysis.failure_limit if c.spec.analysis else 0
    reason = _summary(tuple(failed), verdicts)
    hit_critical = [n for n in failed if n in critical]
    if hit_critical:
        _regressed(c, f"critical metric failed: {reason}")
        return True
    if c.st.failures > limit:
        _regressed(c, f"{c.st.failures} failed measurement(s) (limit {limit}): {reason}")
        return True
    c.event("AnalysisFailed", f"failure {c.st.failures} of {limit} tolerated: {reason}", True)
    return False


def _regressed(c: _Cycle, reason: str) -> None:
    if c.st.canary_revision is not None:
        _rollback(c, reason)
    else:
        _revert(c, reason)


def _summary(names: tuple[str, ...], verdicts: Mapping[str, Verdict]) -> str:
    parts = []
    for name in names:
        v = verdicts.get(name)
        parts.append(f"{name} {v.outcome.value} ({v.reason})" if v else f"{name} not measured")
    return "; ".join(parts)


# --------------------------------------------------------------------------- endings


def _promote(c: _Cycle, why: str) -> None:
    st, spec = c.st, c.spec
    new, old = st.canary_revision, st.stable_revision
    assert new is not None and old is not None
    st.canary_weight = 100
    wanted = _canary_traffic(c)
    c.d.mirror = None
    c.d.match = None
    if not c.weights_match(wanted):
        st.phase = "Progressing"
        st.message = f"promoting {new}: waiting for the router to confirm 100%{_BECAUSE}{why}"
        c.requeue(_FAST)
        return
    window = parse_duration(spec.rollback.post_promotion_window)
    _end_arms(c, keep=new, outcome="lost", reason=f"{new} ({st.canary_version}) won")
    c.history(new, st.canary_version or "", "promoted", why)
    c.event("Promoted", f"revision {new} ({st.canary_version}) promoted over {old}: {why}")
    st.prior_revision, st.prior_version = old, st.stable_version
    st.stable_revision, st.stable_version = new, st.canary_version
    st.canary_revision = st.canary_version = None
    st.canary_weight = 0
    st.current_step = 0
    st.promoted_at = iso(c.now)
    st.failures = st.inconclusive_streak = 0
    st.last_analysis_at = None
    c.d.weights = {new: 100, old: 0}
    c.d.replicas = {new: spec.replicas, old: spec.replicas}
    if window > 0 and spec.analysis is not None and spec.analysis.metrics:
        st.phase = "Watching"
        st.watch_until = iso(c.now + timedelta(seconds=window))
        st.message = f"promoted {new}; watching it for {window:.0f}s with {old} kept warm"
    else:
        _finish_watch(c, "no watch window")
        st.phase = "Stable"
        st.message = f"promoted {new} ({st.stable_version}); serving it"
    c.requeue(_FAST)


def _rollback(c: _Cycle, reason: str, outcome: str = "rolledBack") -> None:
    st = c.st
    bad, stable = st.canary_revision, st.stable_revision
    assert bad is not None and stable is not None
    c.history(bad, st.canary_version or "", outcome, reason)
    c.event("RolledBack", f"revision {bad} ({st.canary_version}) rolled back: {reason}", True)
    _end_arms(c, keep=None, outcome=outcome, reason=reason)
    _end_canary_fields(c)
    c.d.mirror = None
    c.d.match = None
    st.rejected_revision = bad
    st.phase = "RolledBack"
    st.message = f"rolled back {bad}: {reason}"
    c.d.weights = {stable: 100, bad: 0}
    c.d.replicas = {stable: c.spec.replicas}
    c.retire(bad)


def _end_canary(c: _Cycle, outcome: str, reason: str) -> None:
    st = c.st
    bad = st.canary_revision
    assert bad is not None
    c.history(bad, st.canary_version or "", outcome, reason)
    c.event("Superseded", f"revision {bad} ({st.canary_version}) {outcome}: {reason}")
    _end_arms(c, keep=None, outcome=outcome, reason=reason)
    _end_canary_fields(c)
    c.retire(bad)


def _end_arms(c: _Cycle, *, keep: str | None, outcome: str, reason: str) -> None:
    """An A/B test with several challengers ended: the extra challengers still running get
    ``outcome`` in history (spec.model's own revision is recorded by the caller); every
    challenger but ``keep`` is retired."""
    st = c.st
    for i, arm in enumerate(st.arms):
        if arm.revision == keep:
            continue
        if i > 0 and not arm.outcome:
            c.history(arm.revision, arm.version, outcome, reason)
        c.retire(arm.revision)
    st.arms = []


def _progress_ab_arms(c: _Cycle) -> None:
    """A/B with several challengers: each at its own weight beside the incumbent; each is
    judged against the incumbent like a single challenger; a loser is retired at once (its
    share goes back to the incumbent); the best significant winner is promoted; when all
    have lost, or at maxDuration, the incumbent stays."""
    st, spec = c.st, c.spec
    ab = spec.strategy.ab_test
    assert ab is not None and spec.analysis is not None and st.stable_revision is not None
    if st.current_step >= 2:  # a winner is being promoted: wait for the router, then finish
        _, _, why = (st.message or "").partition(_BECAUSE)
        _promote(c, why or "A/B winner")
        return
    weights = _arms_traffic(c)
    running = [a for a in st.arms if not a.outcome]
    split = "/".join(str(w) for w in weights.values())
    waiting = [a for a in running if not c.ready(a.revision)]
    if waiting:  # no traffic to any challenger until all of them can serve
        c.d.weights = {rev: (w if rev == st.stable_revision else 0) for rev, w in weights.items()}
        c.d.weights[st.stable_revision] = 100
        deadline = _progress_deadline(c)
        if seconds_since(st.rollout_started_at, c.now) > deadline:
            _rollback(c, f"challengers {', '.join(a.revision for a in waiting)} not ready within {deadline:.0f}s")
            return
        st.phase = "Progressing"
        st.message = f"A/B test: waiting for {', '.join(a.revision for a in waiting)} to become ready"
        c.requeue(_FAST)
        return
    if st.current_step == 0:
        if c.weights_match(weights):
            _advance(c, 2, f"A/B split {split} over {len(st.arms)} challengers confirmed by the router")
        else:
            st.phase = "Progressing"
            st.message = f"A/B test: setting the split to {split}"
            c.requeue(_FAST)
        return
    st.phase = "Progressing"
    if c.obs.verdicts is not None:
        _record(c, c.obs.verdicts)
        if _ab_arms_decide(c):
            return
        weights = _arms_traffic(c)  # a loser's share goes back to the incumbent
        running = [a for a in st.arms if not a.outcome]
        split = "/".join(str(w) for w in weights.values())
    elapsed = seconds_since(st.step_started_at, c.now)
    limit = parse_duration(ab.max_duration)
    if elapsed >= limit:
        _rollback(c, f"no winner within {limit:.0f}s: the incumbent stays", outcome="lost")
        return
    st.message = (
        f"A/B test, {len(running)} of {len(st.arms)} challengers running ({split}): deciding on "
        f"{ab.primary_metric} ({limit - elapsed:.0f}s left)"
    )


def _arms_traffic(c: _Cycle) -> dict[str, int]:
    """Weights of the incumbent and every challenger (0 for those that lost)."""
    st = c.st
    assert st.stable_revision is not None
    st.canary_weight = sum(a.weight for a in st.arms if not a.outcome)
    weights = {st.stable_revision: 100 - st.canary_weight}
    c.d.replicas[st.stable_revision] = c.spec.replicas
    for arm in st.arms:
        weights[arm.revision] = 0 if arm.outcome else arm.weight
        c.d.replicas[arm.revision] = c.spec.replicas
    c.d.weights = weights
    return weights


def _ab_arms_decide(c: _Cycle) -> bool:
    """Judge every running challenger; True when the test ended."""
    from kanaria.rollout.winner import ab_winner

    st, spec = c.st, c.spec
    ab = spec.strategy.ab_test
    assert ab is not None and spec.analysis is not None
    kinds = {m.name: m.kind for m in spec.analysis.metrics}
    names = (ab.primary_metric, *ab.guardrails)
    winners: list[tuple[ArmStatus, Verdict, str]] = []
    for i, arm in enumerate(st.arms):
        if arm.outcome:
            continue
        verdicts = c.obs.verdicts if i == 0 else (c.obs.arm_verdicts or {}).get(arm.revision)
        if verdicts is None:
            continue
        detail = _summary(names, verdicts)
        failed = [g for g in ab.guardrails if g in verdicts and verdicts[g].failed]
        primary = verdicts.get(ab.primary_metric)
        winner = ab_winner(kinds[ab.primary_metric], primary) if primary is not None else None
        if failed or winner == "incumbent":
            arm.outcome = "lost"
            arm.reason = ("guardrail failed: " + _summary(tuple(failed), verdicts)) if failed else (
                f"the incumbent wins: {detail}")
            c.event("ChallengerLost", f"revision {arm.revision} ({arm.version}) lost: {arm.reason}", True)
            if i > 0:
                c.history(arm.revision, arm.version, "lost", arm.reason)
            continue
        guards_pass = all(g in verdicts and verdicts[g].passed for g in ab.guardrails)
        if winner == "challenger" and guards_pass and primary is not None:
            winners.append((arm, primary, detail))
    if winners:
        lower_is_better = kinds[ab.primary_metric] in ("errorRate", "latency")
        arm, _, detail = sorted(
            winners, key=lambda w: (w[1].value if w[1].value is not None else 0.0) * (1 if lower_is_better else -1)
        )[0]
        arm.outcome = "won"
        main = st.arms[0]
        if arm.revision != main.revision:
            # Another version than spec.model won: spec.model's revision lost, and is not
            # retried while the spec stays (it is the rejected revision).
            if not main.outcome:
                main.outcome, main.reason = "lost", f"{arm.revision} ({arm.version}) won"
            c.history(main.revision, main.version, "lost", main.reason)
            st.rejected_revision = main.revision
            st.canary_revision, st.canary_version = arm.revision, arm.version
        st.current_step = 2
        _promote(c, f"A/B winner among {len(st.arms)} challengers: {detail}")
        return True
    if not any(not a.outcome for a in st.arms):
        st.canary_revision, st.canary_version = st.arms[0].revision, st.arms[0].version
        _rollback(c, "every challenger lost: the incumbent stays", outcome="lost")
        return True
    return False


def _end_canary_fields(c: _Cycle) -> None:
    st = c.st
    st.canary_revision = st.canary_version = None
    st.canary_weight = 0
    st.current_step = 0
    st.paused = False
    st.inconclusive_streak = 0


def _watch(c: _Cycle) -> None:
    st, spec = c.st, c.spec
    stable, prior = st.stable_revision, st.prior_revision
    assert stable is not None
    c.d.replicas[stable] = spec.replicas
    if prior is not None:
        c.d.replicas[prior] = spec.replicas
    c.d.weights = {stable: 100}
    if c.obs.verdicts is not None and _judge(c, c.obs.verdicts):
        return
    until = parse_iso(st.watch_until)
    if until is None or c.now >= until:
        _finish_watch(c, "watch window passed")
        st.phase = "Stable"
        st.message = f"serving revision {stable} ({st.stable_version}); watch window passed"
        return
    left = (until - c.now).total_seconds()
    st.message = f"watching {stable} for {left:.0f}s more with {prior} kept warm"
    c.requeue(left)


def _finish_watch(c: _Cycle, why: str) -> None:
    st = c.st
    if st.prior_revision is not None:
        c.retire(st.prior_revision)
    st.prior_revision = st.prior_version = None
    st.watch_until = None
    del why


def _revert(c: _Cycle, reason: str, outcome: str = "reverted") -> None:
    """Put the prior revision back after a regression inside the watch window."""
    st, spec = c.st, c.spec
    bad, prior = st.stable_revision, st.prior_revision
    assert bad is not None
    if prior is None:
        c.event("RegressionWithoutPrior", f"{bad} regressed but no prior revision is kept: {reason}", True)
        return
    c.history(bad, st.stable_version or "", outcome, reason)
    c.event("Reverted", f"revision {bad} ({st.stable_version}) reverted to {prior}: {reason}", True)
    st.stable_revision, st.stable_version = prior, st.prior_version
    st.prior_revision = st.prior_version = None
    st.watch_until = None
    st.rejected_revision = bad
    st.phase = "RolledBack"
    st.message = f"reverted {bad} to {prior}: {reason}"
    c.d.weights = {prior: 100, bad: 0}
    c.d.replicas = {prior: spec.replicas}
    c.retire(bad)


# --------------------------------------------------------------------------- user actions


def _handle_action(c: _Cycle, action: UserAction) -> None:
    st = c.st
    verb = action.verb
    in_canary = st.canary_revision is not None
    if verb == "invalid":
        c.event("ActionRejected", f"unknown action {action.arg!r}", warning=True)
    elif verb == "pause" and in_canary:
        st.paused = True
        c.event("Paused", "paused by a person")
    elif verb == "resume" and in_canary:
        st.paused = False
        st.inconclusive_streak = 0
        st.step_started_at = iso(c.now)
        c.event("Resumed", "resumed by a person")
    elif verb == "promote" and in_canary:
        st.paused = False
        _advance(c, len(c.spec.canary_steps()), "promoted by a person")
    elif verb == "promote-full" and in_canary:
        st.paused = False
        st.current_step = len(c.spec.canary_steps())
        c.event("PromoteRequested", "full promotion requested by a person")
    elif verb == "abort" and in_canary:
        _rollback(c, "aborted by a person", outcome="aborted")
    elif verb == "abort" and st.phase == "Watching":
        _revert(c, "aborted by a person during the watch window")
    elif verb == "retry" and st.rejected_revision is not None:
        c.event("Retry", f"retrying revision {st.rejected_revision}")
        st.rejected_revision = None
    elif verb == "rollback" and action.arg is not None:
        _rollback_to(c, action.arg)
    else:
        c.event("ActionIgnored", f"{verb} does not apply in phase {st.phase}", warning=True)


def _rollback_to(c: _Cycle, target: str) -> None:
    st = c.st
    known = set(st.retired) | {st.prior_revision}
    if target == st.stable_revision or target not in known or target not in c.obs.workloads:
        c.event(
            "ActionRejected",
            f"cannot roll back to {target!r}: not a kept revision "
            f"(kept: {', '.join(sorted(r for r in known if r)) or 'none'})",
            warning=True,
        )
        return
    if st.canary_revision is not None:
        _rollback(c, f"rolled back by a person to {target}", outcome="aborted")
    current = st.stable_revision
    assert current is not None
    version = next((h.model_version for h in reversed(st.history) if h.revision == target), "")
    c.history(current, st.stable_version or "", "reverted", f"rolled back by a person to {target}")
    c.event("RolledBack", f"rolled back by a person from {current} to {target}", warning=True)
    c.unretire(target)
    st.prior_revision, st.prior_version = current, st.stable_version
    st.stable_revision, st.stable_version = target, version
    st.watch_until = None
    st.rejected_revision = c.obs.revision if c.obs.revision != target else None
    st.phase = "RolledBack" if st.rejected_revision else "Stable"
    st.message = f"rolled back by a person to {target}"


# --------------------------------------------------------------------------- retention


def _retention(c: _Cycle) -> None:
    """Scale retired revisions down after the delay; delete the oldest beyond the limit."""
    st, spec = c.st, c.spec
    serving = {st.stable_revision, st.canary_revision, st.prior_revision, *(a.revision for a in st.arms)} - {None}
    for rev in c.obs.workloads:
        if rev not in serving and rev not in st.retired:
            c.retire(rev)  # found without a record (for example after a crash): retire it
    delay = parse_duration(spec.rollback.scale_down_delay)
    for rev, at in st.retired.items():
        if rev in serving:
            continue
        if seconds_since(at, c.now) < delay and rev in c.obs.workloads:
            c.d.replicas.setdefault(rev, spec.replicas)
            c.requeue(delay - seconds_since(at, c.now))
        else:
            c.d.replicas[rev] = 0
    kept = sorted(
        (r for r in st.retired if r not in serving),
        key=lambda r: st.retired[r],
        reverse=True,
    )
    for rev in kept[spec.rollback.revision_history_limit :]:
        c.d.delete.append(rev)
        c.d.replicas.pop(rev, None)
    if c.d.delete:
        st.retired = {k: v for k, v in st.retired.items() if k not in c.d.delete}
