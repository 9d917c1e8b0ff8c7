"""Pacing: how much more evidence a metric needs, and the engine saying so in time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.unit.test_engine import T0, canary_status, make_spec, obs, ready

from kanaria.analysis.pacing import accuracy_labels_needed, samples_needed
from kanaria.analysis.proportions import judge_accuracy
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout import decide


@pytest.mark.parametrize(("p_b", "p_c", "n"), [(0.90, 0.90, 300), (0.95, 0.96, 500), (0.90, 0.85, 100), (0.99, 0.99, 200)])
def test_the_labels_needed_are_what_the_judge_then_decides_on(p_b: float, p_c: float, n: int) -> None:
    now = judge_accuracy(p_b * 3 * n, 3 * n, p_c * n, n, min_samples=50, margin=0.02)
    assert now.outcome is Outcome.INCONCLUSIVE, now.reason
    needed = accuracy_labels_needed(now, min_samples=50, margin=0.02, alpha=0.05)
    assert needed is not None and needed > 0
    grow = (n + needed) / n  # both arms grow alike, at the same accuracies

    def judged(k: float) -> Verdict:
        return judge_accuracy(p_b * 3 * n * k, 3 * n * k, p_c * n * k, n * k, min_samples=50, margin=0.02)

    assert judged(grow * 1.02).outcome is not Outcome.INCONCLUSIVE  # decided once they arrive
    assert judged(grow * 0.9).outcome is Outcome.INCONCLUSIVE  # and not much sooner


def test_a_decided_verdict_needs_nothing_and_a_hair_from_no_difference_cannot_tell() -> None:
    done = judge_accuracy(9000, 10000, 600, 1000, min_samples=50)
    assert done.outcome is Outcome.FAIL
    assert accuracy_labels_needed(done, min_samples=50, margin=0.02, alpha=0.05) == 0
    # With no margin, a difference of a millionth takes more than 10,000 times the evidence.
    hair = Verdict(Outcome.INCONCLUSIVE, "x", value=0.899999, baseline=0.9, samples=1000, baseline_samples=1000)
    assert accuracy_labels_needed(hair, min_samples=50, margin=0.0, alpha=0.05) is None


def test_below_the_minimum_the_shortfall_is_what_is_needed() -> None:
    few = Verdict(Outcome.INCONCLUSIVE, "x", samples=120, baseline_samples=400)
    assert samples_needed(few, 200) == 80
    base_short = Verdict(Outcome.INCONCLUSIVE, "x", samples=400, baseline_samples=100)
    assert samples_needed(base_short, 200) == 400  # the baseline grows at a quarter the pace
    assert samples_needed(Verdict(Outcome.PASS, "x", samples=10), 200) == 0


def _slow(needed: int, rate: float) -> Verdict:
    return Verdict(Outcome.INCONCLUSIVE, "not enough yet", value=0.9, baseline=0.9, samples=100,
                   baseline_samples=100, needed=needed, rate=rate)


def test_status_says_how_much_more_and_a_warning_comes_once_when_the_deadline_cannot_be_met() -> None:
    spec = make_spec()  # analysis step deadline: the progress deadline, 15m
    st = canary_status(step=1, weight=10)
    seen = {"r1": 90, "r2": 10}
    fine = decide(spec, st, obs(workloads=ready("r1", "r2"), weights=seen,
                                verdicts={"accuracy": _slow(300, 1.0), "latency": Verdict(Outcome.PASS, "ok")}), T0)
    assert "accuracy (~300 more, ~5m)" in fine.status.message
    assert fine.status.analysis[0].needed == 300 and fine.status.analysis[0].eta_seconds == 300
    assert not [e for e in fine.events if e.reason == "EvidenceTooSlow"]
    later = T0 + timedelta(minutes=1)
    slow = decide(spec, fine.status, obs(workloads=ready("r1", "r2"), weights=seen,
                                         verdicts={"accuracy": _slow(3000, 1.0)}), later)
    warned = [e for e in slow.events if e.reason == "EvidenceTooSlow"]
    assert len(warned) == 1 and warned[0].type == "Warning" and "~3000 more samples, ~50m" in warned[0].message
    again = decide(spec, slow.status, obs(workloads=ready("r1", "r2"), weights=seen,
                                          verdicts={"accuracy": _slow(3000, 1.0)}), later + timedelta(minutes=1))
    assert not [e for e in again.events if e.reason == "EvidenceTooSlow"]  # once per step


def test_the_requests_needed_for_latency_are_what_the_judge_then_decides_on() -> None:
    """Equal revisions, undecided at 200 requests each: growing both arms by the estimate (same
    shares) gives a PASS; a little less does not."""
    from kanaria.analysis.latency import judge_latency
    from kanaria.analysis.pacing import latency_requests_needed

    bounds = [0.01, 0.025, 0.05, 0.1, 0.25, float("inf")]
    shares = [10, 30, 30, 20, 8, 2]

    def cum(k: float) -> list[float]:
        out, run = [], 0.0
        for s in shares:
            run += s * k
            out.append(run)
        return out

    first = judge_latency(bounds, cum(2), cum(2), min_samples=100)
    assert first.outcome is Outcome.INCONCLUSIVE
    needed = latency_requests_needed(first, min_samples=100, max_auc=0.56, alpha=0.01)
    assert needed is not None and needed > 0
    grown = (200 + needed) / 100
    assert judge_latency(bounds, cum(grown), cum(grown), min_samples=100).outcome is Outcome.PASS
    short = (200 + 0.9 * needed) / 100
    assert judge_latency(bounds, cum(short), cum(short), min_samples=100).outcome is Outcome.INCONCLUSIVE


def test_a_shadow_and_an_ab_test_warn_once_when_their_evidence_cannot_come_in_time() -> None:
    """The same Warning for the shadow's duration (5m) and the A/B test's maxDuration (10m)."""
    from tests.unit.test_engine import ab_spec, shadow_spec

    st = canary_status(step=1, weight=0)
    d = decide(shadow_spec(), st, obs(workloads=ready("r1", "r2"), mirror=("r2", 50),
                                      verdicts={"agreement": _slow(3000, 1.0), "latency": Verdict(Outcome.PASS, "ok")}), T0)
    warned = [e for e in d.events if e.reason == "EvidenceTooSlow"]
    assert len(warned) == 1 and warned[0].message.startswith("the shadow cannot reach its evidence")
    assert "agreement (~3000 more, ~50m)" in d.status.message
    again = decide(shadow_spec(), d.status, obs(workloads=ready("r1", "r2"), mirror=("r2", 50),
                                                verdicts={"agreement": _slow(3000, 1.0)}), T0 + timedelta(seconds=30))
    assert not [e for e in again.events if e.reason == "EvidenceTooSlow"]

    st = canary_status(step=1, weight=30)
    seen = {"r1": 70, "r2": 30}
    quick = decide(ab_spec(), st, obs(workloads=ready("r1", "r2"), weights=seen,
                                      verdicts={"accuracy": _slow(300, 1.0), "latency": Verdict(Outcome.PASS, "ok")}), T0)
    assert not [e for e in quick.events if e.reason == "EvidenceTooSlow"]
    slow = decide(ab_spec(), quick.status, obs(workloads=ready("r1", "r2"), weights=seen,
                                               verdicts={"accuracy": _slow(3000, 1.0), "latency": Verdict(Outcome.PASS, "ok")}),
                  T0 + timedelta(minutes=1))
    warned = [e for e in slow.events if e.reason == "EvidenceTooSlow"]
    assert len(warned) == 1 and "the A/B test" in warned[0].message and "the incumbent stays" in warned[0].message
