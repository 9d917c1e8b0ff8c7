"""Step mechanics every strategy shares: advancing, waiting for a revision to be ready,
pausing for a person when the evidence does not come, and the metrics a step judges."""

from __future__ import annotations

from datetime import timedelta

from kanaria.api.models import CanaryStep, MetricResult, ModelDeploymentSpec
from kanaria.rollout.clock import human_duration, iso, seconds_since, until_text
from kanaria.rollout.cycle import FAST, Cycle
from kanaria.rollout.endings import rollback

__all__ = [
    "advance",
    "wait_for_canary_ready",
    "on_inconclusive",
    "pace",
    "step_metrics",
    "show_pause",
    "warn_if_too_slow",
]


def advance(c: Cycle, total: int, why: str) -> None:
    st = c.st
    st.current_step += 1
    st.step_started_at = iso(c.now)
    st.inconclusive_streak = 0
    st.split_changed_at = []
    c.event("StepAdvanced", f"step {st.current_step}/{total} done: {why}")
    st.message = f"step {st.current_step}/{total} done: {why}"
    c.requeue(FAST)


def wait_for_canary_ready(c: Cycle) -> None:
    st = c.st
    deadline = c.progress_deadline()
    waited = seconds_since(st.rollout_started_at, c.now)
    state = c.obs.workloads.get(st.canary_revision or "")
    ready = state.ready if state else 0
    if waited > deadline:
        rollback(
            c,
            f"canary revision {st.canary_revision} did not become ready within "
            f"{deadline:.0f}s ({ready}/{c.spec.replicas} replicas ready)",
        )
        return
    st.message = (
        f"waiting for canary revision {st.canary_revision}: {ready}/{c.spec.replicas} "
        f"replicas ready (deadline {until_text(c.now + timedelta(seconds=deadline - waited))})"
    )
    c.requeue(2.0)


def on_inconclusive(c: Cycle, reason: str) -> None:
    """Not enough evidence in time: roll back or pause for a person, as the spec says. An
    automatic pause keeps its own reason in status until a person acts."""
    st, spec = c.st, c.spec
    policy = spec.analysis.on_inconclusive if spec.analysis else "pause"
    if policy == "rollback":
        rollback(c, f"not enough evidence: {reason}")
        return
    if not st.paused:
        c.event("Paused", f"waiting for a person: {reason}", warning=True)
    st.paused = True
    st.pause_reason = f"paused for a person (resume, promote or abort): {reason}"
    st.message = st.pause_reason


def show_pause(c: Cycle, by_person: str) -> None:
    """A paused rollout says why: its automatic reason, or ``by_person``."""
    c.st.message = c.st.pause_reason or by_person


def step_metrics(spec: ModelDeploymentSpec, step: CanaryStep | None) -> tuple[str, ...]:
    """Metrics judged at an analysis step (all metrics when the step names none)."""
    names = [m.name for m in spec.analysis.metrics] if spec.analysis else []
    if step is not None and step.analysis is not None and step.analysis.metrics:
        return tuple(step.analysis.metrics)
    return tuple(names)


def pace(result: MetricResult | None, name: str) -> str:
    """``accuracy (~340 more, ~2m)`` when the metric says how much it still needs."""
    if result is None or not result.needed:
        return name
    eta = f", ~{human_duration(result.eta_seconds)}" if result.eta_seconds is not None else ""
    return f"{name} (~{result.needed} more{eta})"


def warn_if_too_slow(
    c: Cycle, results: list[MetricResult], remaining: float, what: str, then: str | None = None
) -> None:
    """Say once per step, as soon as it is clear, that the evidence cannot arrive before the
    deadline of ``what`` (a canary step, the shadow's duration, the A/B test's maxDuration)."""
    st = c.st
    late = [r for r in results if r.eta_seconds is not None and r.eta_seconds > remaining]
    if not late or st.evidence_warned_step == st.current_step:
        return
    st.evidence_warned_step = st.current_step
    if then is None:
        then = f"onInconclusive: {c.spec.analysis.on_inconclusive if c.spec.analysis else 'pause'}"
    said = "; ".join(
        f"{r.metric} needs ~{r.needed} more samples, ~{human_duration(r.eta_seconds or 0)} at the rate seen"
        for r in late
    )
    c.event(
        "EvidenceTooSlow",
        f"{what} cannot reach its evidence before its deadline "
        f"(in {human_duration(max(remaining, 0))}): {said}; then {then}",
        warning=True,
    )
