"""Pacing: how much more evidence a metric needs before it can decide, and how long that takes.

Pure functions. The estimate assumes what was seen so far holds (the observed rates and the
ratio of the two arms' samples) and asks when the judge's own rule would decide: for accuracy,
when the always-valid confidence sequence on the difference leaves the undecided band; for
latency, when the one on P(canary slower) does; for every other kind, when the minimum sample
size is reached.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kanaria.analysis.proportions import msprt_variance, non_inferiority_variance
from kanaria.analysis.sequential import normal_mixture_radius
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "accuracy_labels_needed",
    "latency_requests_needed",
    "samples_needed",
    "with_pacing",
    "MAX_SCALE",
]

MAX_SCALE = 10_000.0
"""Beyond this many times the evidence seen so far, the estimate says it cannot tell."""


def samples_needed(verdict: Verdict, min_samples: int) -> int | None:
    """More samples of the new revision before ``min_samples`` per arm are reached (0 when a
    verdict is in; None when the minimum is reached and the judge still cannot tell)."""
    if verdict.outcome is not Outcome.INCONCLUSIVE:
        return 0
    short = max(min_samples - verdict.samples, 0)
    if verdict.baseline_samples < min_samples and verdict.samples > 0:
        # the baseline arm is the one short: scale by the arms' ratio
        ratio = verdict.baseline_samples / verdict.samples
        short = max(short, math.ceil((min_samples - verdict.baseline_samples) / ratio) if ratio > 0 else 0)
    return short if short > 0 else None


def accuracy_labels_needed(
    verdict: Verdict, *, min_samples: int, margin: float, alpha: float, tau: float = 0.02
) -> int | None:
    """More canary labels before the accuracy judge decides, if the observed accuracies and the
    ratio of the two arms' labels held: the smallest growth k of both arms' counts for which
    the confidence sequence (Δ − r(V'/k), Δ + r(V/k)) leaves the undecided band [−margin, 0]
    (V' the PASS side's variance, :func:`non_inferiority_variance`)."""
    if verdict.outcome is not Outcome.INCONCLUSIVE:
        return 0
    n_c, n_b = verdict.samples, verdict.baseline_samples
    p_c, p_b = verdict.value, verdict.baseline
    floor = max(min_samples - n_c, 0)
    if p_c is None or p_b is None or n_c <= 0 or n_b <= 0:
        return floor or None
    variance = msprt_variance(p_b * n_b, n_b, p_c * n_c, n_c)
    pass_variance = non_inferiority_variance(p_b * n_b, n_b, p_c * n_c, n_c, margin)
    delta = p_c - p_b
    if not variance > 0:
        return floor or None

    def decided(k: float) -> bool:
        fails = delta + normal_mixture_radius(variance / k, tau, alpha) < 0
        return fails or delta - normal_mixture_radius(pass_variance / k, tau, alpha) > -margin

    growth = _growth_needed(decided)
    if growth is None:
        return None
    if growth == 1.0:
        return floor or None  # decidable now: only the minimum keeps it waiting
    return max(floor, math.ceil(n_c * (growth - 1.0)))


def _growth_needed(decided: Callable[[float], bool]) -> float | None:
    """The smallest factor k ≥ 1 (to 1%) by which both arms' evidence must grow for
    ``decided(k)``; None beyond MAX_SCALE."""
    if decided(1.0):
        return 1.0
    hi = 2.0
    while not decided(hi):
        hi *= 2.0
        if hi > MAX_SCALE:
            return None
    lo = hi / 2.0
    while hi - lo > 0.01 * lo:
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if decided(mid) else (mid, hi)
    return hi


def latency_requests_needed(verdict: Verdict, *, min_samples: int, max_auc: float, alpha: float) -> int | None:
    """More canary requests before the latency judge decides, if P(canary slower) and the arms'
    ratio held: the confidence sequence AUC ± r(V/k) must leave the band it cannot decide in
    (below max_auc for a pass; above ½ with AUC > max_auc for a fail)."""
    if verdict.outcome is not Outcome.INCONCLUSIVE:
        return 0
    short = samples_needed(verdict, min_samples)
    auc, variance = verdict.value, verdict.details.get("variance")
    if short or auc is None or variance is None or not variance > 0 or verdict.samples <= 0:
        return short
    tau = max(max_auc - 0.5, 0.01)

    def decided(k: float) -> bool:
        radius = normal_mixture_radius(variance / k, tau, alpha)
        return (auc - radius > 0.5 and auc > max_auc) or auc + radius < max_auc

    growth = _growth_needed(decided)
    if growth is None or growth == 1.0:
        return None  # cannot tell, or only another condition (an objective) is waiting
    return math.ceil(verdict.samples * (growth - 1.0))


def with_pacing(verdict: Verdict, needed: int | None, window_seconds: float) -> Verdict:
    """The verdict with its pacing: samples still needed and the observed rate."""
    from dataclasses import replace

    rate = verdict.samples / window_seconds if window_seconds > 0 and verdict.samples > 0 else None
    return replace(verdict, needed=needed, rate=rate)
