"""The canary strategy: the new revision beside the stable one, walked through
``strategy.canary.steps`` (set a weight, pause, analyse), promoted after the last step."""

from __future__ import annotations

from datetime import timedelta

from kanaria.api.durations import parse_duration
from kanaria.api.models import ArmStatus, CanaryStep
from kanaria.api.observed import SRM_METRIC
from kanaria.api.revision import revision_hash
from kanaria.rollout.assess import Assessment
from kanaria.rollout.clock import iso, seconds_since, until_text
from kanaria.rollout.cycle import FAST, Cycle, summary
from kanaria.rollout.endings import judge, promote
from kanaria.rollout.steps import (
    advance,
    on_inconclusive,
    pace,
    show_pause,
    step_metrics,
    wait_for_canary_ready,
    warn_if_too_slow,
)

__all__ = ["start_canary", "progress_canary"]


def start_canary(c: Cycle) -> None:
    """A new revision starts beside the stable one (every strategy starts here)."""
    st = c.st
    st.canary_revision, st.canary_version = c.obs.revision, c.obs.version
    c.unretire(c.obs.revision)
    st.canary_weight = 0
    st.current_step = 0
    st.step_started_at = st.rollout_started_at = iso(c.now)
    st.last_analysis_at = None
    st.failures = st.inconclusive_streak = 0
    st.paused = False
    st.pause_reason = ""
    st.split_changed_at = []
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
    st.message = f"starting revision {c.obs.revision} ({c.obs.version}) beside {st.stable_revision}"
    c.event(
        "RolloutStarted",
        f"revision {c.obs.revision} ({c.obs.version}) starts as canary beside "
        f"{st.stable_revision} ({st.stable_version})",
    )
    c.canary_traffic()
    c.requeue(FAST)


def progress_canary(c: Cycle) -> None:
    st, spec = c.st, c.spec
    steps = spec.canary_steps()
    c.canary_traffic()
    if not c.ready(st.canary_revision):
        wait_for_canary_ready(c)
        return
    step = steps[st.current_step] if st.current_step < len(steps) else None
    assessment = None
    if c.obs.verdicts is not None:
        required = step_metrics(spec, step) if step is not None and step.analysis is not None else ()
        assessment = judge(c, c.obs.verdicts, required)
        if assessment.result == "fail":
            return  # rolled back
    if st.paused:
        show_pause(c, f"paused by a person at step {st.current_step + 1}/{len(steps)}")
        return
    if step is None:
        promote(c, "every step passed")
        return
    if step.set_weight is not None:
        _set_weight_step(c, step.set_weight, len(steps))
    elif step.pause is not None:
        _pause_step(c, step, len(steps))
    else:
        _analysis_step(c, step, len(steps), assessment)


def _set_weight_step(c: Cycle, weight: int, total: int) -> None:
    st = c.st
    st.canary_weight = weight
    wanted = c.canary_traffic()
    if c.weights_match(wanted):
        advance(c, total, f"canary weight {weight}% confirmed by the router")
    else:
        st.message = f"step {st.current_step + 1}/{total}: setting canary weight to {weight}%{c.waiting_on_gateway()}"
        c.requeue(FAST)


def _pause_step(c: Cycle, step: CanaryStep, total: int) -> None:
    st = c.st
    assert step.pause is not None
    if step.pause.duration is None:
        st.message = (
            f"step {st.current_step + 1}/{total}: paused at {st.canary_weight}% until promoted "
            "(kubectl kanaria promote)"
        )
        return
    hold = parse_duration(step.pause.duration)
    elapsed = seconds_since(st.step_started_at, c.now)
    if elapsed >= hold:
        advance(c, total, f"paused {hold:.0f}s at {st.canary_weight}%")
    else:
        end = c.now + timedelta(seconds=hold - elapsed)
        st.message = f"step {st.current_step + 1}/{total}: holding {st.canary_weight}% until {until_text(end)}"
        c.requeue(hold - elapsed)


def _analysis_step(c: Cycle, step: CanaryStep, total: int, assessment: Assessment | None) -> None:
    st, spec = c.st, c.spec
    assert step.analysis is not None
    names = step_metrics(spec, step)
    verdicts = c.obs.verdicts
    if assessment is not None and verdicts is not None:
        if assessment.passed:
            advance(c, total, "analysis passed: " + summary(names, verdicts))
            return
        st.inconclusive_streak += 1
    deadline = (
        parse_duration(step.analysis.deadline) if step.analysis.deadline else c.progress_deadline()
    )
    elapsed = seconds_since(st.step_started_at, c.now)
    limit = spec.analysis.inconclusive_limit if spec.analysis else 0
    if st.inconclusive_streak > limit or elapsed > deadline:
        why = (
            f"{st.inconclusive_streak} inconclusive measurements in a row (limit {limit})"
            if st.inconclusive_streak > limit
            else f"no decision within {deadline:.0f}s"
        )
        detail = summary(names, verdicts) if verdicts else "no measurement yet"
        on_inconclusive(c, f"step {st.current_step + 1}/{total}: {why}; {detail}")
        return
    latest = {r.metric: r for r in st.analysis}
    waiting = [n for n in names if n not in latest or latest[n].verdict != "pass"]
    st.message = (
        f"step {st.current_step + 1}/{total}: judging at {st.canary_weight}%; "
        f"waiting on {', '.join(pace(latest.get(n), n) for n in waiting) or 'the first measurement'}"
    )
    warn_if_too_slow(c, [latest[n] for n in waiting if n in latest], deadline - elapsed,
                     f"step {st.current_step + 1}/{total}")
    srm = latest.get(SRM_METRIC)
    if srm is not None and srm.verdict == "fail":
        st.message += f"; note: the observed split differs from the weights ({SRM_METRIC} in status.analysis)"
