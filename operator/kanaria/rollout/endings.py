"""How a new revision's run ends — promoted, rolled back, superseded, or reverted after
promotion — and ``judge``, which acts on an assessment that says it must end."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from kanaria.api.durations import parse_duration
from kanaria.api.verdict import Verdict
from kanaria.rollout.assess import Assessment, assess
from kanaria.rollout.clock import iso
from kanaria.rollout.cycle import FAST, Cycle

__all__ = [
    "BECAUSE",
    "judge",
    "promote",
    "finish_promotion",
    "rollback",
    "revert",
    "end_canary",
    "end_canary_fields",
    "finish_watch",
]

BECAUSE = " — "
"""Separates a waiting promotion's message from its reason (kept in status.message)."""


def judge(c: Cycle, verdicts: Mapping[str, Verdict], required: tuple[str, ...] = ()) -> Assessment:
    """Record a measurement and assess it; a ``fail`` rolls the canary back (or reverts the
    promoted revision in the watch window), a tolerated failure is announced."""
    spec = c.spec
    critical = {m.name for m in spec.analysis.metrics if m.critical} if spec.analysis else set()
    limit = spec.analysis.failure_limit if spec.analysis else 0
    result = assess(verdicts, required=required, critical=critical,
                    failures=c.st.failures, failure_limit=limit)
    c.record(verdicts)
    c.st.failures = result.failures
    if result.result == "fail":
        _regressed(c, f"critical metric failed: {result.reason}" if result.critical else result.reason)
    elif result.tolerated:
        c.event("AnalysisFailed", result.reason, True)
    return result


def _regressed(c: Cycle, reason: str) -> None:
    if c.st.canary_revision is not None:
        rollback(c, reason)
    else:
        revert(c, reason)


def finish_promotion(c: Cycle, fallback: str) -> None:
    """A promotion already decided waits for the router: finish it with the reason it kept."""
    _, _, why = (c.st.message or "").partition(BECAUSE)
    promote(c, why or fallback)


def promote(c: Cycle, why: str) -> None:
    st, spec = c.st, c.spec
    new, old = st.canary_revision, st.stable_revision
    assert new is not None and old is not None
    st.canary_weight = 100
    wanted = c.canary_traffic()
    c.d.mirror = None
    c.d.match = None
    if not c.weights_match(wanted):
        st.message = f"promoting {new}: waiting for the router to confirm 100%{c.waiting_on_gateway()}{BECAUSE}{why}"
        c.requeue(FAST)
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
        st.watch_until = iso(c.now + timedelta(seconds=window))
        st.message = f"promoted {new}; watching it for {window:.0f}s with {old} kept warm"
    else:
        finish_watch(c)
        st.message = f"promoted {new} ({st.stable_version}); serving it"
    c.requeue(FAST)


def rollback(c: Cycle, reason: str, outcome: str = "rolledBack") -> None:
    st = c.st
    bad, stable = st.canary_revision, st.stable_revision
    assert bad is not None and stable is not None
    c.history(bad, st.canary_version or "", outcome, reason)
    c.event("RolledBack", f"revision {bad} ({st.canary_version}) rolled back: {reason}", True)
    _end_arms(c, keep=None, outcome=outcome, reason=reason)
    end_canary_fields(c)
    c.d.mirror = None
    c.d.match = None
    st.rejected_revision = bad
    st.message = f"rolled back {bad}: {reason}"
    c.d.weights = {stable: 100, bad: 0}
    c.d.replicas = {stable: c.spec.replicas}
    c.retire(bad)


def end_canary(c: Cycle, outcome: str, reason: str) -> None:
    """The spec moved on while a canary ran: record it and retire it."""
    st = c.st
    bad = st.canary_revision
    assert bad is not None
    c.history(bad, st.canary_version or "", outcome, reason)
    c.event("Superseded", f"revision {bad} ({st.canary_version}) {outcome}: {reason}")
    _end_arms(c, keep=None, outcome=outcome, reason=reason)
    end_canary_fields(c)
    c.retire(bad)


def _end_arms(c: Cycle, *, keep: str | None, outcome: str, reason: str) -> None:
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


def end_canary_fields(c: Cycle) -> None:
    st = c.st
    st.canary_revision = st.canary_version = None
    st.canary_weight = 0
    st.current_step = 0
    st.paused = False
    st.pause_reason = ""
    st.inconclusive_streak = 0


def finish_watch(c: Cycle) -> None:
    """The watch window is over (or cut short): the prior revision is retired."""
    st = c.st
    if st.prior_revision is not None:
        c.retire(st.prior_revision)
    st.prior_revision = st.prior_version = None
    st.watch_until = None


def revert(c: Cycle, reason: str, outcome: str = "reverted") -> None:
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
    st.message = f"reverted {bad} to {prior}: {reason}"
    c.d.weights = {prior: 100, bad: 0}
    c.d.replicas = {prior: spec.replicas}
    c.retire(bad)
