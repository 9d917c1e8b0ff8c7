"""The A/B strategy, one path for one challenger or several.

A fixed split is set first (step 0: every challenger at its weight, or, with ``match``, the
requests that match sent to the single challenger); then each challenger is judged against the
incumbent on the primary metric (step 1). A challenger loses on a failed guardrail or when the
incumbent is significantly better, and its share goes back to the incumbent at once; the best
significant winner that passes every guardrail is promoted (step 2). When all have lost, or at
``maxDuration``, the incumbent stays. While a person has paused the test, losers still lose
but no winner is promoted and the bandit holds; resuming restarts the ``maxDuration`` clock.
A single challenger is a list of one arm: its arm is not
kept in status.arms, and with ``bandit`` its weight follows the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from kanaria.api.durations import parse_duration
from kanaria.api.models import ABTestStrategy, ArmStatus
from kanaria.api.routing import route_match
from kanaria.api.verdict import Verdict
from kanaria.rollout.assess import assess
from kanaria.rollout.clock import iso, seconds_since, until_text
from kanaria.rollout.cycle import FAST, Cycle, summary
from kanaria.rollout.endings import finish_promotion, promote, rollback
from kanaria.rollout.steps import advance, pace, show_pause, wait_for_canary_ready, warn_if_too_slow
from kanaria.rollout.winner import ab_winner, higher_is_better, thompson_weight

__all__ = ["progress_ab_test", "SPLIT_CHANGES_KEPT"]

SPLIT_CHANGES_KEPT = 16
"""Split changes remembered per step; beyond them the oldest periods merge (a longer first
period), which only makes the judgement more conservative about that stretch."""


def progress_ab_test(c: Cycle) -> None:
    st, spec = c.st, c.spec
    ab = spec.strategy.ab_test
    assert ab is not None and spec.analysis is not None and st.stable_revision is not None
    if st.current_step >= 2:  # a winner is being promoted: wait for the router, then finish
        finish_promotion(c, "A/B winner")
        return
    arms = _arms(c, ab)
    weights = _traffic(c, arms)
    waiting = [a for a in arms if not a.outcome and not c.ready(a.revision)]
    if waiting:  # no traffic to any challenger until all of them can serve
        c.d.weights = {rev: (100 if rev == st.stable_revision else 0) for rev in weights}
        _wait_for(c, waiting, several=bool(st.arms))
        return
    split = _split(c, ab, arms, weights)
    if st.current_step == 0:
        if c.weights_match(weights) and c.obs.match == c.d.match:
            advance(c, 2, f"A/B {split} confirmed by the router")
        else:
            st.message = f"A/B test: setting up {split}{c.waiting_on_gateway()}"
            c.requeue(FAST)
        return
    if c.obs.verdicts is not None:
        c.record(c.obs.verdicts)
        if _judge_arms(c, ab, arms):
            return
        weights = _traffic(c, arms)  # a loser's share goes back to the incumbent
        split = _split(c, ab, arms, weights)
    if st.paused:  # losers still lose; no winner is promoted and the clock waits for a person
        show_pause(c, f"A/B test, {split}: paused by a person")
        return
    elapsed = seconds_since(st.step_started_at, c.now)
    limit = parse_duration(ab.max_duration)
    if elapsed >= limit:
        rollback(c, f"no winner within {limit:.0f}s: the incumbent stays", outcome="lost")
        return
    running = sum(1 for a in arms if not a.outcome)
    said = f"{running} of {len(arms)} challengers running ({split})" if st.arms else split
    latest = {r.metric: r for r in st.analysis}
    judged = [ab.primary_metric, *ab.guardrails]
    st.message = (f"A/B test, {said}: deciding on {pace(latest.get(ab.primary_metric), ab.primary_metric)} "
                  f"(until {until_text(c.now + timedelta(seconds=limit - elapsed))})")
    undecided = [latest[n] for n in judged if n in latest and latest[n].verdict == "inconclusive"]
    warn_if_too_slow(c, undecided, limit - elapsed, "the A/B test", then="the incumbent stays")


def _arms(c: Cycle, ab: ABTestStrategy) -> list[ArmStatus]:
    """The challengers: status.arms when there are several; else one arm for the canary, at
    the configured weight while the split is set up, then at the weight in force (a bandit
    moves it), or 0 when requests reach it by match."""
    st = c.st
    if st.arms:
        return st.arms
    assert st.canary_revision is not None
    if ab.match is not None:
        weight = 0
    elif st.current_step == 0:
        weight = ab.weight
    else:
        weight = st.canary_weight
    return [ArmStatus(revision=st.canary_revision, version=st.canary_version or "", weight=weight)]


def _traffic(c: Cycle, arms: list[ArmStatus]) -> dict[str, int]:
    """Weights of the incumbent and every challenger (0 for those that lost)."""
    st = c.st
    assert st.stable_revision is not None
    st.canary_weight = sum(a.weight for a in arms if not a.outcome)
    weights = {st.stable_revision: 100 - st.canary_weight}
    c.d.replicas[st.stable_revision] = c.spec.replicas
    for arm in arms:
        weights[arm.revision] = 0 if arm.outcome else arm.weight
        c.d.replicas[arm.revision] = c.spec.replicas
    c.d.weights = weights
    return weights


def _split(c: Cycle, ab: ABTestStrategy, arms: list[ArmStatus], weights: dict[str, int]) -> str:
    """Ask for the test's route match (if any) and say how traffic is split."""
    if ab.match is not None:
        c.d.match = route_match(arms[0].revision, ab.match)
        said = [f"{h.name}: {h.value}" for h in ab.match.headers]
        if ab.match.cookie is not None:
            said.append(f"cookie {ab.match.cookie.name}={ab.match.cookie.value}")
        return "requests with " + " and ".join(said) + " to the challenger"
    split = "/".join(str(w) for w in weights.values())
    return f"split {split} over {len(arms)} challengers" if len(arms) > 1 else f"split {split}"


def _wait_for(c: Cycle, waiting: list[ArmStatus], several: bool) -> None:
    st = c.st
    if not several:
        wait_for_canary_ready(c)
        return
    deadline = c.progress_deadline()
    names = ", ".join(a.revision for a in waiting)
    if seconds_since(st.rollout_started_at, c.now) > deadline:
        rollback(c, f"challengers {names} not ready within {deadline:.0f}s")
        return
    st.message = f"A/B test: waiting for {names} to become ready"
    c.requeue(FAST)


@dataclass(frozen=True)
class _Win:
    arm: ArmStatus
    primary: Verdict
    detail: str


def _judge_arms(c: Cycle, ab: ABTestStrategy, arms: list[ArmStatus]) -> bool:
    """Judge every running challenger against the incumbent; True when the test ended."""
    st, spec = c.st, c.spec
    assert spec.analysis is not None
    kind = {m.name: m.kind for m in spec.analysis.metrics}[ab.primary_metric]
    names = (ab.primary_metric, *ab.guardrails)
    several = bool(st.arms)
    winners: list[_Win] = []
    for i, arm in enumerate(arms):
        if arm.outcome:
            continue
        verdicts = _verdicts_of(c, i)
        if verdicts is None:
            continue
        detail = summary(names, verdicts)
        guard = assess(verdicts, required=tuple(ab.guardrails), judged=ab.guardrails, critical=ab.guardrails)
        primary = verdicts.get(ab.primary_metric)
        winner = ab_winner(kind, primary) if primary is not None else None
        if guard.result == "fail" or winner == "incumbent":
            arm.outcome = "lost"
            arm.reason = f"guardrail failed: {guard.reason}" if guard.result == "fail" else f"the incumbent wins: {detail}"
            if several:
                c.event("ChallengerLost", f"revision {arm.revision} ({arm.version}) lost: {arm.reason}", True)
            if i > 0:
                c.history(arm.revision, arm.version, "lost", arm.reason)
            continue
        if st.paused:
            continue
        if winner == "challenger" and guard.passed and primary is not None:
            winners.append(_Win(arm, primary, detail))
        elif ab.bandit and guard.passed and primary is not None and not several:
            _bandit(c, ab, kind, arm, primary)
    if winners:
        _promote_best(c, winners, kind, several)
        return True
    if all(a.outcome for a in arms):
        first = arms[0]
        st.canary_revision, st.canary_version = first.revision, first.version
        reason = "every challenger lost: the incumbent stays" if several else first.reason
        rollback(c, reason, outcome="lost")
        return True
    return False


def _verdicts_of(c: Cycle, index: int) -> Mapping[str, Verdict] | None:
    """spec.model's challenger is measured as the plan's candidate; the others beside it."""
    if index == 0:
        return c.obs.verdicts
    return (c.obs.arm_verdicts or {}).get(c.st.arms[index].revision)


def _promote_best(c: Cycle, winners: list[_Win], kind: str, several: bool) -> None:
    st = c.st
    sign = -1.0 if higher_is_better(kind) else 1.0
    best = min(winners, key=lambda w: sign * (w.primary.value if w.primary.value is not None else 0.0))
    best.arm.outcome = "won"
    if several:
        main = st.arms[0]
        if best.arm.revision != main.revision:
            # Another version than spec.model won: spec.model's revision lost, and is not
            # retried while the spec stays (it is the rejected revision).
            if not main.outcome:
                main.outcome, main.reason = "lost", f"{best.arm.revision} ({best.arm.version}) won"
            c.history(main.revision, main.version, "lost", main.reason)
            st.rejected_revision = main.revision
            st.canary_revision, st.canary_version = best.arm.revision, best.arm.version
    st.current_step = 2
    why = f"A/B winner among {len(st.arms)} challengers: {best.detail}" if several else f"A/B winner: {best.detail}"
    promote(c, why)


def _bandit(c: Cycle, ab: ABTestStrategy, kind: str, arm: ArmStatus, primary: Verdict) -> None:
    """Move the single challenger's weight toward the better arm (Thompson sampling)."""
    if kind == "rating":  # Thompson sampling here draws proportions; a mean rating is none
        return
    weight = thompson_weight(primary, floor=ab.exploration_floor, higher_is_better=higher_is_better(kind))
    if weight is not None and weight != arm.weight:
        c.event("SplitChanged", f"bandit moves the challenger from {arm.weight}% to {weight}%")
        arm.weight = weight
        c.st.split_changed_at = [*c.st.split_changed_at, iso(c.now)][-SPLIT_CHANGES_KEPT:]
