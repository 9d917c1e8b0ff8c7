"""Sample-ratio mismatch: is the traffic split the one the operator configured?"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from kanaria.analysis.sequential import sequence_problem
from kanaria.api.verdict import Outcome, Verdict

__all__ = ["sample_ratio_mismatch"]


def sample_ratio_mismatch(
    observed_counts: Sequence[float],
    expected_weights: Sequence[float],
    alpha: float = 0.001,
    *,
    min_requests: int = 100,
    stray_tolerance: float = 0.001,
) -> Verdict:
    """Chi-square goodness of fit of observed request counts to the configured weights.

    * Arms with weight 0 are left out of the chi-square. If they received more than
      max(10, stray_tolerance × total) requests (a few in-flight requests after a weight change
      are normal), that is a mismatch on its own: FAIL.
    * INCONCLUSIVE when fewer than ``min_requests`` requests were seen, an arm with positive
      weight expects fewer than 5 (the chi-square approximation needs it), or on bad input.
    * FAIL ("hold and say so") when p < α; PASS otherwise (and with a single weighted arm).

    ``value``/``baseline`` are the observed/expected share of the arm furthest from its
    expected count (in standard deviations; ties go to the smaller share, e.g. the canary), ``score`` the chi-square and ``threshold`` its
    critical value at 1 − α, ``samples`` the total request count. ``details`` has
    ``arm<i>.observed``/``.expected`` shares in the order given.
    """
    problem = sequence_problem("observed", observed_counts) or sequence_problem(
        "weight", expected_weights
    )
    if problem is None and (
        len(observed_counts) != len(expected_weights) or len(observed_counts) == 0
    ):
        problem = "need one weight per arm"
    if problem is None and sum(expected_weights) <= 0:
        problem = "all weights are zero"
    if problem is None and not 0 < alpha < 1:
        problem = f"alpha must lie in (0, 1), got {alpha}"
    if problem is not None:
        return Verdict.inconclusive(f"sample ratio: {problem}", statistic="chi2-srm")
    total = float(sum(observed_counts))
    weight_sum = float(sum(expected_weights))
    shares = [w / weight_sum for w in expected_weights]
    details: dict[str, float] = {}
    for i, (count, share) in enumerate(zip(observed_counts, shares, strict=True)):
        details[f"arm{i}.observed"] = count / total if total else 0.0
        details[f"arm{i}.expected"] = share
    stray = sum(c for c, s in zip(observed_counts, shares, strict=True) if s == 0)
    if stray > max(10.0, stray_tolerance * total):
        return Verdict(
            Outcome.FAIL,
            f"sample ratio: {int(stray)} of {int(total)} requests reached arms with weight 0; "
            "the traffic split is not what the operator set",
            value=stray / total,
            baseline=0.0,
            details=details,
            statistic="chi2-srm",
            samples=int(total),
        )
    weighted = [(float(c), s) for c, s in zip(observed_counts, shares, strict=True) if s > 0]
    n = sum(c for c, _ in weighted)
    if total < min_requests or any(n * s < 5 for _, s in weighted):
        return Verdict(
            Outcome.INCONCLUSIVE,
            f"sample ratio: {int(total)} requests, need {min_requests} and 5 expected per arm",
            statistic="chi2-srm",
            samples=int(total),
            details=details,
        )
    dof = len(weighted) - 1
    if dof == 0:
        return Verdict(
            Outcome.PASS,
            f"sample ratio: all {int(total)} requests went to the one weighted arm",
            value=1.0,
            baseline=1.0,
            p_value=1.0,
            details=details,
            statistic="chi2-srm",
            samples=int(total),
        )
    stat = sum((c - n * s) ** 2 / (n * s) for c, s in weighted)
    p = float(stats.chi2.sf(stat, dof))
    critical = float(stats.chi2.isf(alpha, dof))
    worst = max(
        range(len(observed_counts)),
        key=lambda i: (round(_deviation(float(observed_counts[i]), n, shares[i]), 9), -shares[i]),
    )
    observed_share = float(observed_counts[worst]) / n
    head = (
        f"sample ratio over {int(total)} requests: arm {worst} got {observed_share:.2%}, "
        f"expected {shares[worst]:.2%} (chi2 {stat:.1f} on {dof} dof, p={p:.2g})"
    )
    if p < alpha:
        outcome = Outcome.FAIL
        why = f"mismatch (p < {alpha:g}): the traffic split is not what the operator set; hold"
    else:
        outcome = Outcome.PASS
        why = "consistent with the configured weights"
    return Verdict(
        outcome,
        f"{head}: {why}",
        value=observed_share,
        baseline=shares[worst],
        score=stat,
        threshold=critical,
        p_value=p,
        details=dict(details, chi2=stat, dof=float(dof)),
        statistic="chi2-srm",
        samples=int(total),
    )


def _deviation(count: float, n: float, share: float) -> float:
    if share <= 0:
        return -math.inf
    return abs(count - n * share) / math.sqrt(n * share * (1.0 - share) or 1.0)
