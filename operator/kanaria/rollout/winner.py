"""A/B decisions: which arm a verdict favours, and bandit allocation. Pure functions.

A judge's PASS means "the challenger is not worse" (non-inferiority); picking a winner needs
more: significant evidence that the challenger is *better*. For proportions this is the same
always-valid mixture SPRT the judges use, on the same counts.
"""

from __future__ import annotations

import math
from typing import Literal

from kanaria.analysis.proportions import msprt_two_proportions
from kanaria.api.verdict import Outcome, Verdict, finite

__all__ = ["Winner", "ab_winner", "higher_is_better", "thompson_weight"]

Winner = Literal["challenger", "incumbent"]


def _counts(v: Verdict) -> tuple[int, int, int, int] | None:
    if not finite(v.value, v.baseline) or v.samples <= 0 or v.baseline_samples <= 0:
        return None
    assert v.value is not None and v.baseline is not None
    xc = int(round(min(1.0, max(0.0, v.value)) * v.samples))
    xb = int(round(min(1.0, max(0.0, v.baseline)) * v.baseline_samples))
    return xb, v.baseline_samples, xc, v.samples


def higher_is_better(kind: str) -> bool:
    """The direction of "better" for a metric kind: lower error rates and latencies win."""
    return kind not in ("errorRate", "latency")


def ab_winner(kind: str, verdict: Verdict, *, alpha: float = 0.05, tau: float = 0.02) -> Winner | None:
    """The arm this verdict favours, or None while undecided.

    A failed verdict favours the incumbent (the challenger is significantly worse). Otherwise:
    accuracy / feedback / errorRate — the challenger wins when the mixture SPRT rejects "no difference"
    (Λ ≥ 1/α) in its favour; latency — when the challenger is significantly faster by at least
    the effect size the metric uses for "slower" (AUC ≤ 1 − maxAUC, one-sided p < α); custom —
    the condition held; rating — its mean is significantly higher (the confidence sequence on
    the difference lies above 0); drift never picks a winner.
    """
    if verdict.outcome is Outcome.FAIL:
        return "incumbent"
    if verdict.outcome is not Outcome.PASS:
        return None
    if kind == "custom":
        return "challenger"
    if kind == "rating":  # the confidence sequence on the difference of means lies above 0
        return "challenger" if verdict.details.get("ci_lower", 0.0) > 0 else None
    if kind in ("accuracy", "errorRate", "feedback"):
        counts = _counts(verdict)
        if counts is None:
            return None
        xb, nb, xc, nc = counts
        lr = msprt_two_proportions(xb, nb, xc, nc, tau)
        assert verdict.value is not None and verdict.baseline is not None
        better = verdict.value > verdict.baseline if kind != "errorRate" else verdict.value < verdict.baseline
        return "challenger" if better and lr >= 1.0 / alpha else None
    if kind == "latency":
        if not finite(verdict.value, verdict.p_value, verdict.threshold):
            return None
        assert verdict.value is not None and verdict.p_value is not None and verdict.threshold is not None
        faster_p = 1.0 - verdict.p_value
        return "challenger" if verdict.value <= 1.0 - verdict.threshold and faster_p < alpha else None
    return None


def thompson_weight(verdict: Verdict, *, floor: int = 10, higher_is_better: bool = True) -> int | None:
    """Percent of traffic for the challenger under Thompson sampling, in expectation.

    Thompson sampling sends each request to the arm that wins a draw from the Beta posteriors
    (uniform prior) of the primary proportion; the share the challenger gets is therefore
    P(θ_challenger > θ_incumbent), computed here with the normal approximation of the two
    posteriors (no randomness, so decisions are repeatable). Clamped to [floor, 100 − floor] so
    both arms keep being observed (delayed labels and changing traffic bias bandits).
    """
    counts = _counts(verdict)
    if counts is None:
        return None
    xb, nb, xc, nc = counts

    def posterior(x: int, n: int) -> tuple[float, float]:
        a, b = x + 1.0, n - x + 1.0
        mean = a / (a + b)
        return mean, a * b / ((a + b) ** 2 * (a + b + 1.0))

    mc, vc = posterior(xc, nc)
    mb, vb = posterior(xb, nb)
    diff = (mc - mb) if higher_is_better else (mb - mc)
    p = 0.5 * (1.0 + math.erf(diff / math.sqrt(2.0 * (vc + vb))))
    floor = max(0, min(50, floor))
    return int(round(min(100 - floor, max(floor, 100 * p))))
