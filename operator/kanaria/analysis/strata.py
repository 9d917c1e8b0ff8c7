"""Judging across periods with different traffic weights, without pooling them.

When a strategy changes the split within a judged period (a bandit moving the challenger's
weight), the two revisions' samples come from the periods in different proportions; pooling the
counts then mixes the periods' traffic (hard hours, easy hours) differently into each revision,
and Simpson's paradox can make equal models look different or flip a real difference. So each
period is a stratum: the difference of accuracies is estimated within each, and the strata are
combined with Mantel-Haenszel (Cochran) weights w_k ∝ n_b,k·n_c,k / (n_b,k + n_c,k); the
variance of the combination is Σ w_k² V_k. The always-valid decision rule is then the same as
:func:`kanaria.analysis.proportions.judge_accuracy`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from kanaria.analysis.proportions import judge_accuracy, msprt_variance, non_inferiority_variance
from kanaria.analysis.sequential import normal_mixture_lr, normal_mixture_radius
from kanaria.api.verdict import Outcome, Verdict

__all__ = ["Stratum", "judge_accuracy_stratified", "stratified_difference"]

Stratum = tuple[float, float, float, float]
"""(correct_b, labelled_b, correct_c, labelled_c) of one period."""


def stratified_difference(
    strata: Sequence[Stratum], margin: float | None = None
) -> tuple[float, float, float, float]:
    """(Δ, V, p_c, p_b): the weighted difference of accuracies, its variance, and the two
    accuracies standardised to the same mix of periods. With ``margin`` V is the PASS side's
    (each period's :func:`non_inferiority_variance`). Strata with an empty arm carry no
    comparison and are left out; raises ValueError when none is left."""
    usable = [s for s in strata if s[1] > 0 and s[3] > 0]
    if not usable:
        raise ValueError("no period has labels in both revisions")
    weights = [nb * nc / (nb + nc) for _, nb, _, nc in usable]
    total = sum(weights)
    delta = variance = p_c = p_b = 0.0
    for w, (xb, nb, xc, nc) in zip(weights, usable, strict=True):
        w /= total
        delta += w * (xc / nc - xb / nb)
        v_k = msprt_variance(xb, nb, xc, nc) if margin is None else non_inferiority_variance(xb, nb, xc, nc, margin)
        variance += w * w * v_k
        p_c += w * xc / nc
        p_b += w * xb / nb
    return delta, variance, p_c, p_b


def judge_accuracy_stratified(
    strata: Sequence[Stratum],
    *,
    min_samples: int = 200,
    margin: float = 0.02,
    alpha: float = 0.05,
    tau: float = 0.02,
) -> Verdict:
    """judge_accuracy over periods that must not be pooled. One period: exactly judge_accuracy."""
    if len(strata) == 1:
        return judge_accuracy(*strata[0], min_samples=min_samples, margin=margin, alpha=alpha, tau=tau)
    n_b = sum(s[1] for s in strata)
    n_c = sum(s[3] for s in strata)
    if n_b < min_samples or n_c < min_samples or any(s[0] > s[1] or s[2] > s[3] or min(s) < 0 for s in strata):
        pooled = judge_accuracy(sum(s[0] for s in strata), n_b, sum(s[2] for s in strata), n_c,
                                min_samples=min_samples, margin=margin, alpha=alpha, tau=tau)
        return pooled if pooled.outcome is Outcome.INCONCLUSIVE else Verdict.inconclusive(
            "accuracy: bad counts in a period", statistic="msprt-stratified")
    try:
        delta, variance, p_c, p_b = stratified_difference(strata)
        pass_variance = stratified_difference(strata, margin)[1]
    except ValueError as error:
        return Verdict.inconclusive(f"accuracy: {error}", statistic="msprt-stratified")
    threshold = 1.0 / alpha
    lam = normal_mixture_lr(delta, variance, tau)
    upper = delta + normal_mixture_radius(variance, tau, alpha)
    lower = delta - normal_mixture_radius(pass_variance, tau, alpha)
    head = (f"canary accuracy {p_c:.3f} vs stable {p_b:.3f} over {int(n_c)}/{int(n_b)} labels "
            f"in {len(strata)} periods of different weights (not pooled)")
    if upper < 0:
        outcome, why = Outcome.FAIL, f"worse (Λ={lam:.3g} ≥ {threshold:.3g}, Δ ≤ {upper:+.3f})"
    elif lower > -margin:
        outcome, why = Outcome.PASS, f"not worse by more than {margin:.3f} (Δ ≥ {lower:+.3f}, Λ={lam:.3g})"
    else:
        outcome, why = Outcome.INCONCLUSIVE, f"not enough evidence yet (Δ in [{lower:+.3f}, {upper:+.3f}])"
    return Verdict(
        outcome, f"{head}: {why}", statistic="msprt-stratified", value=p_c, baseline=p_b, score=lam,
        threshold=threshold, p_value=min(1.0, 1.0 / lam), samples=int(n_c), baseline_samples=int(n_b),
        details={"delta": delta, "ci_lower": lower, "ci_upper": upper, "margin": margin,
                 "variance": variance, "pass_variance": pass_variance, "periods": float(len(strata))},
    )
