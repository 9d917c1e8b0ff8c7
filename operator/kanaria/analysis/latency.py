"""Latency from Prometheus histogram buckets: Mann-Whitney U with one tie group per bucket,
judged with an always-valid confidence sequence on P(canary slower).

``bounds`` are the buckets' ``le`` upper edges in increasing order (normally ending in +Inf);
cumulative counts are per bound, as ``sum by (le) (increase(..._bucket[W]))`` returns them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from scipy import stats

from kanaria.analysis.drift import bins_from_cumulative
from kanaria.analysis.sequential import (
    binomial_below_lr,
    binomial_mixture_lr,
    count_problem,
    normal_mixture_lr,
    normal_mixture_radius,
    sequence_problem,
)
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "auc_variance",
    "bucket_quantile",
    "exceedance_share",
    "judge_latency",
    "mann_whitney_from_buckets",
]


def _check_bounds(bounds: Sequence[float], *cumulatives: Sequence[float]) -> None:
    if len(bounds) == 0:
        raise ValueError("no buckets")
    if any(math.isnan(b) for b in bounds) or any(
        b2 <= b1 for b1, b2 in zip(bounds, bounds[1:], strict=False)
    ):
        raise ValueError("bucket bounds must be strictly increasing numbers")
    if any(not math.isfinite(b) for b in bounds[:-1]) or not math.isfinite(bounds[0]):
        # Only the last bucket may be +Inf; with no finite edge nothing can be compared.
        raise ValueError("bucket bounds must be finite but for a last +Inf, with at least one finite edge")
    for cumulative in cumulatives:
        if len(cumulative) != len(bounds):
            raise ValueError("need one cumulative count per bucket bound")


def mann_whitney_from_buckets(
    bounds: Sequence[float],
    baseline_cumulative: Sequence[float],
    canary_cumulative: Sequence[float],
) -> tuple[float, float, float, float]:
    """Mann-Whitney U of canary against baseline from bucket counts: (U, AUC, z, p).

    With per-bucket counts a_b (baseline, n in all), c_b (canary, m in all), A_<b the baseline
    count below bucket b, t_b = a_b + c_b and N = n + m:

        U = Σ_b c_b·(A_<b + a_b/2)        (pairs where the canary is slower, ties count ½)
        Var U = (nm/12)·[(N+1) − Σ(t³−t)/(N(N−1))]
        z = (U − nm/2)/sqrt(Var U),  p = P(Z ≥ z)   (one-sided: canary slower)

    AUC = U/(nm). No continuity correction (matches scipy's ``mannwhitneyu(canary, baseline,
    alternative='greater', method='asymptotic', use_continuity=False)``). When Var U = 0
    (everything in one bucket) z = 0 and p = 0.5. Raises ValueError on an empty arm.
    """
    _check_bounds(bounds, baseline_cumulative, canary_cumulative)
    a = bins_from_cumulative(baseline_cumulative)
    c = bins_from_cumulative(canary_cumulative)
    n, m = float(sum(a)), float(sum(c))
    if n == 0 or m == 0:
        raise ValueError("both arms need at least one observation")
    u = 0.0
    below = 0.0
    ties = 0.0
    for a_b, c_b in zip(a, c, strict=True):
        u += c_b * (below + a_b / 2.0)
        below += a_b
        t = float(a_b + c_b)
        ties += t**3 - t
    big_n = n + m
    variance = n * m / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)))
    if variance <= 0:
        return u, u / (n * m), 0.0, 0.5
    z = (u - n * m / 2.0) / math.sqrt(variance)
    return u, u / (n * m), z, float(stats.norm.sf(z))


def exceedance_share(
    bounds: Sequence[float], cumulative: Sequence[float], objective: float
) -> tuple[int, int]:
    """Requests slower than ``objective`` and all requests: (count_above, n).

    Exact only on a bucket edge, so ``objective`` must equal one of the finite bounds (to a
    relative 1e-9); otherwise ValueError.
    """
    _check_bounds(bounds, cumulative)
    counts = bins_from_cumulative(cumulative)
    n = sum(counts)
    for i, bound in enumerate(bounds):
        if math.isfinite(bound) and math.isclose(bound, objective, rel_tol=1e-9, abs_tol=0.0):
            return n - sum(counts[: i + 1]), n
    raise ValueError(f"objective {objective} is not a bucket edge of {list(bounds)}")


def bucket_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Quantile by linear interpolation within a bucket, as PromQL's histogram_quantile.

    The first bucket interpolates from 0 (if its bound is positive); a quantile in the +Inf
    bucket returns the highest finite bound. NaN when there are no observations. Descriptive.
    """
    _check_bounds(bounds, cumulative)
    counts = bins_from_cumulative(cumulative)
    total = sum(counts)
    if total == 0 or not 0 <= q <= 1:
        return math.nan
    rank = q * total
    seen = 0
    for i, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        if count > 0 and seen + count >= rank:
            if not math.isfinite(bound):
                finite = [b for b in bounds if math.isfinite(b)]
                return finite[-1] if finite else math.nan
            lower = bounds[i - 1] if i > 0 else min(0.0, bound)
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
    return math.nan


def auc_variance(bounds: Sequence[float], baseline_cumulative: Sequence[float],
                 canary_cumulative: Sequence[float]) -> float:
    """Variance of the AUC estimate U/(nm): the tie-corrected Var U of
    :func:`mann_whitney_from_buckets` over (nm)²; where ties leave nothing ((N+1)/(12nm)
    without them; used when every request fell in one bucket)."""
    a = bins_from_cumulative(baseline_cumulative)
    c = bins_from_cumulative(canary_cumulative)
    n, m = float(sum(a)), float(sum(c))
    big_n = n + m
    ties = sum(float(x + y) ** 3 - float(x + y) for x, y in zip(a, c, strict=True))
    variance = ((big_n + 1.0) - ties / (big_n * (big_n - 1.0))) / (12.0 * n * m)
    return variance if variance > 0 else (big_n + 1.0) / (12.0 * n * m)


def judge_latency(
    bounds: Sequence[float],
    baseline_cumulative: Sequence[float],
    canary_cumulative: Sequence[float],
    *,
    min_samples: int = 100,
    max_auc: float = 0.56,
    alpha: float = 0.01,
    objective_seconds: float | None = None,
    max_exceedance: float | None = None,
) -> Verdict:
    """Judge whether the canary is slower than the baseline, always-valid both ways.

    The AUC = U/(nm) (the probability that a canary request is slower than a baseline one,
    ties ½) gets a confidence sequence AUC ± r, r the normal-mixture radius of
    :func:`~kanaria.analysis.sequential.normal_mixture_radius` with V = :func:`auc_variance`
    and mixing scale τ = max_auc − ½ (at least 0.01): safe to look at after every interval.

    * FAIL when the canary is significantly slower (AUC − r > ½, i.e. the mixture Λ ≥ 1/α)
      AND the effect is material (AUC > max_auc); or, with an objective on a bucket edge and
      ``max_exceedance``, when the canary's share of requests slower than the objective is
      significantly above max_exceedance (binomial mixture Λ ≥ 1/α).
    * PASS only on evidence: both arms have ``min_samples`` requests, nothing fails, and
      AUC + r < max_auc — the canary is shown not to be materially slower (with an objective
      and max_exceedance, also its share above the objective shown below max_exceedance).
      "Not significantly slower" is not enough.
    * INCONCLUSIVE otherwise, and on NaN/Inf/negative counts or malformed buckets.

    Requests are not independent (bursts, shared caches): treat the level as optimistic; keep α
    small. p50/p95 (interpolated like histogram_quantile) are in ``details`` for people only.
    """
    problem = (
        sequence_problem("baseline", baseline_cumulative)
        or sequence_problem("canary", canary_cumulative)
        or count_problem(alpha=alpha, max_auc=max_auc)
    )
    if problem is None and not 0 < alpha < 1:
        problem = f"alpha must lie in (0, 1) (got {alpha})"
    if problem is None:
        try:
            _check_bounds(bounds, baseline_cumulative, canary_cumulative)
            if objective_seconds is not None:
                exceedance_share(bounds, canary_cumulative, objective_seconds)
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        return Verdict.inconclusive(f"latency: {problem}", statistic="mann-whitney")
    n = sum(bins_from_cumulative(baseline_cumulative))
    m = sum(bins_from_cumulative(canary_cumulative))
    details = {
        f"{arm}_p{int(q * 100)}": bucket_quantile(q, bounds, cumulative)
        for arm, cumulative in (("baseline", baseline_cumulative), ("canary", canary_cumulative))
        for q in (0.5, 0.95)
    }
    details = {k: v for k, v in details.items() if math.isfinite(v)}
    base = Verdict(
        Outcome.INCONCLUSIVE,
        f"latency: {m}/{n} requests (canary/stable), need {min_samples} per arm",
        statistic="mann-whitney",
        threshold=max_auc,
        samples=m,
        baseline_samples=n,
        details=details,
    )
    if n < min_samples or m < min_samples or n == 0 or m == 0:
        return base
    u, auc, z, p = mann_whitney_from_buckets(bounds, baseline_cumulative, canary_cumulative)
    variance = auc_variance(bounds, baseline_cumulative, canary_cumulative)
    tau = max(max_auc - 0.5, 0.01)
    radius = normal_mixture_radius(variance, tau, alpha)
    lam = normal_mixture_lr(auc - 0.5, variance, tau)
    lower, upper = auc - radius, auc + radius
    details.update(u=u, z=z, alpha=alpha, auc_lower=lower, auc_upper=upper, variance=variance,
                   p_fixed_horizon=p)
    head = (
        f"canary p50 {_ms(details.get('canary_p50'))}/p95 {_ms(details.get('canary_p95'))} vs "
        f"stable {_ms(details.get('baseline_p50'))}/{_ms(details.get('baseline_p95'))} over "
        f"{m}/{n} requests, P(canary slower)={auc:.3f} in [{lower:.3f}, {upper:.3f}]"
    )
    base = replace(base, value=auc, baseline=0.5, score=auc, p_value=min(1.0, 1.0 / lam))
    if lower > 0.5 and auc > max_auc:
        return replace(
            base,
            outcome=Outcome.FAIL,
            reason=f"{head}: slower (Λ={lam:.3g} ≥ {1.0 / alpha:.3g}, AUC > {max_auc:g})",
        )
    share_ok = True
    if objective_seconds is not None and max_exceedance is not None:
        above, total = exceedance_share(bounds, canary_cumulative, objective_seconds)
        share = above / total
        ok = 0 < max_exceedance < 1
        lr = binomial_mixture_lr(above, total, max_exceedance) if ok else 0.0
        below = binomial_below_lr(above, total, max_exceedance) if ok else 0.0
        details.update(exceedance=share, max_exceedance=max_exceedance, exceedance_lr=lr,
                       exceedance_below_lr=below)
        over = f"{share:.2%} of canary requests slower than {objective_seconds:g}s"
        if lr >= 1.0 / alpha:
            # The failing test is the exceedance one: report its numbers.
            return replace(
                base,
                outcome=Outcome.FAIL,
                reason=f"{head}: {over}, significantly above {max_exceedance:.2%} "
                f"(Λ={lr:.3g} ≥ {1.0 / alpha:.3g})",
                statistic="exceedance",
                value=share,
                baseline=max_exceedance,
                score=lr,
                threshold=1.0 / alpha,
                p_value=min(1.0, 1.0 / lr),
            )
        share_ok = below >= 1.0 / alpha
        if not share_ok:
            base = replace(base, reason=f"{head}: {over}, not yet shown below {max_exceedance:.2%}")
    if upper < max_auc and share_ok:
        return replace(base, outcome=Outcome.PASS,
                       reason=f"{head}: not materially slower (AUC < {max_auc:g} shown)")
    if upper >= max_auc:
        base = replace(base, reason=f"{head}: not yet shown below {max_auc:g}")
    return base


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f}ms"
