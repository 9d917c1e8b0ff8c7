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

import math
from collections.abc import Sequence
from dataclasses import replace

from kanaria.analysis.proportions import (
    judge_accuracy,
    judge_error_rate,
    msprt_variance,
    non_inferiority_variance,
)
from kanaria.analysis.sequential import normal_mixture_lr, normal_mixture_radius
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "Stratum",
    "judge_accuracy_stratified",
    "judge_error_rate_stratified",
    "ratio_mixture_lr",
    "stratified_difference",
]

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


# A grid over log ρ for the mixtures below: a half-normal prior of scale 1 on |log(ρ/ρ0)|,
# Simpson's rule on [0, 4] (ρ up to e⁴·ρ0 or down to ρ0/e⁴).
_STEPS = [4.0 * i / 160 for i in range(161)]
_RAW = [
    math.exp(-0.5 * x * x) * (1.0 if i in (0, 160) else 4.0 if i % 2 else 2.0)
    for i, x in enumerate(_STEPS)
]
_WEIGHTS = [w / sum(_RAW) for w in _RAW]


def ratio_mixture_lr(errors: Sequence[tuple[float, float, float]], rho0: float, above: bool) -> float:
    """Always-valid evidence about the canary's error-rate ratio ρ across periods of different
    splits: ``errors`` holds (canary errors x_k, all errors E_k, canary request share s_k) per
    period, and in period k each error is the canary's with probability
    θ_k(ρ) = ρs_k/(ρs_k + 1 − s_k). The likelihood ratio of ρ against ρ0,
    Π_k (θ_k(ρ)/θ_k(ρ0))^x_k ((1−θ_k(ρ))/(1−θ_k(ρ0)))^(E_k−x_k), is mixed over ρ > ρ0
    (``above``: H0 ρ ≤ ρ0) or ρ < ρ0 (H0 ρ ≥ ρ0) with a half-normal prior on log(ρ/ρ0). Each
    component is a supermartingale under every ρ of H0 (the binomial's likelihood ratio is
    monotone in θ), so the mixture is too: P(sup Λ ≥ 1/α) ≤ α. Capped at e^690."""
    signs = 1.0 if above else -1.0
    log_lr = [0.0] * len(_STEPS)
    for x, total, share in errors:
        if total <= 0 or not 0 < share < 1:
            continue
        odds = share / (1.0 - share)
        t0 = rho0 * odds / (1.0 + rho0 * odds)
        for i, step in enumerate(_STEPS):
            r = rho0 * math.exp(signs * step) * odds
            t = r / (1.0 + r)
            log_lr[i] += x * math.log(t / t0) + (total - x) * math.log((1.0 - t) / (1.0 - t0))
    peak = max(log_lr)
    value = peak + math.log(sum(w * math.exp(v - peak) for w, v in zip(_WEIGHTS, log_lr, strict=True)))
    return math.exp(min(value, 690.0))


ErrorStratum = tuple[float, float, float, float]
"""(errors_b, requests_b, errors_c, requests_c) of one period."""


def judge_error_rate_stratified(
    strata: Sequence[ErrorStratum],
    *,
    max_error_rate: float | None = 0.01,
    relative_tolerance: float = 0.5,
    min_requests: int = 1000,
    alpha: float = 0.05,
) -> Verdict:
    """judge_error_rate over periods with different splits, without pooling them: the
    guardrail and the minimum on the canary's own requests (pooled: they concern the canary
    alone), the comparison with the stable revision by :func:`ratio_mixture_lr` — each error
    weighed against its own period's split. One period: exactly judge_error_rate."""
    kwargs = {"max_error_rate": max_error_rate, "relative_tolerance": relative_tolerance,
              "min_requests": min_requests, "alpha": alpha}
    totals = [sum(s[i] for s in strata) for i in range(4)]
    pooled = judge_error_rate(*totals, **kwargs)  # type: ignore[arg-type]
    if len(strata) <= 1 or any(min(s) < 0 or s[0] > s[1] or s[2] > s[3] for s in strata):
        return pooled
    if pooled.failed and pooled.details.get("guardrail_lr", 0.0) >= 1.0 / alpha:
        return pooled  # the guardrail concerns the canary's own rate: pooling is right
    if pooled.outcome is Outcome.INCONCLUSIVE and (totals[3] < min_requests or totals[1] == 0):
        return pooled  # not yet the canary requests or stable traffic the test needs
    periods = [(ec, eb + ec, rc / (rb + rc)) for eb, rb, ec, rc in strata if rb > 0 and rc > 0]
    ratio = 1.0 + relative_tolerance
    threshold = 1.0 / alpha
    worse_lr = ratio_mixture_lr(periods, 1.0, above=True)
    ni_lr = ratio_mixture_lr(periods, ratio, above=False)
    below_lr = pooled.details.get("below_guardrail_lr", 0.0)
    within = all(ec * rb <= ratio * eb * rc for eb, rb, ec, rc in strata if rb > 0 and rc > 0)
    shown = pooled.reason.split(":")[0] + f" in {len(strata)} periods of different splits (not pooled)"
    if worse_lr >= threshold:
        outcome, score, why = Outcome.FAIL, worse_lr, f"worse than the stable rate (Λ={worse_lr:.3g} ≥ {threshold:.3g})"
    elif ni_lr >= threshold:
        outcome, score, why = Outcome.PASS, ni_lr, f"not above {ratio:.3g}× the stable rate (Λ={ni_lr:.3g} ≥ {threshold:.3g})"
    elif max_error_rate is not None and below_lr >= threshold and within:
        outcome, score = Outcome.PASS, below_lr
        why = f"below the {max_error_rate:.3%} guardrail and within {ratio:.3g}× the stable rate in every period"
    else:
        outcome, score = Outcome.INCONCLUSIVE, max(ni_lr, below_lr)
        why = f"not enough evidence yet (worse Λ={worse_lr:.3g}, not-worse Λ={score:.3g}, need {threshold:.3g})"
    return replace(
        pooled, outcome=outcome, reason=f"{shown}: {why}", statistic="ratio-mixture-stratified",
        score=score, p_value=min(1.0, 1.0 / score) if score > 0 else 1.0,
        details={**pooled.details, "worse_lr": worse_lr, "non_inferior_lr": ni_lr,
                 "periods": float(len(strata))},
    )
