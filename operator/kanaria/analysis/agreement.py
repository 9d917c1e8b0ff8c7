"""Shadow agreement: how often the new revision's prediction matches the one served."""

from __future__ import annotations

import math

from kanaria.analysis.sequential import binomial_mixture_lr
from kanaria.api.verdict import Outcome, Verdict

__all__ = ["judge_agreement"]


def judge_agreement(
    agree: float,
    total: float,
    *,
    min_agreement: float = 0.95,
    min_samples: int = 200,
    alpha: float = 0.05,
) -> Verdict:
    """Always-valid one-sample tests on the agreement rate (mixture likelihood ratios).

    FAIL when the disagreement rate is significantly above 1 − minAgreement; PASS when the
    agreement rate is significantly above minAgreement (with at least ``min_samples``
    compared predictions); inconclusive otherwise, and on NaN, negative or impossible counts.
    """
    if not (math.isfinite(agree) and math.isfinite(total)) or agree < 0 or total < 0 or agree > total:
        return Verdict.inconclusive(f"agreement: unusable counts {agree}/{total}", statistic="agreement-sprt")
    n, a = int(round(total)), int(round(agree))
    if n == 0:
        return Verdict.inconclusive("agreement: no compared predictions yet", statistic="agreement-sprt")
    rate = a / n
    fail_lr = binomial_mixture_lr(n - a, n, 1.0 - min_agreement)
    pass_lr = binomial_mixture_lr(a, n, min_agreement)
    common = {
        "statistic": "agreement-sprt",
        "value": rate,
        "baseline": min_agreement,
        "threshold": 1.0 / alpha,
        "samples": n,
    }
    if fail_lr >= 1.0 / alpha:
        return Verdict(Outcome.FAIL, f"agrees with the served prediction {rate:.3f} of {n} times: "
                       f"significantly below {min_agreement:.3f} (Λ={fail_lr:.3g} ≥ {1 / alpha:.0f})",
                       score=fail_lr, p_value=min(1.0, 1.0 / fail_lr), **common)  # type: ignore[arg-type]
    if n >= min_samples and pass_lr >= 1.0 / alpha:
        return Verdict(Outcome.PASS, f"agrees {rate:.3f} of {n} times: above {min_agreement:.3f} "
                       f"(Λ={pass_lr:.3g})", score=pass_lr, p_value=min(1.0, 1.0 / pass_lr), **common)  # type: ignore[arg-type]
    return Verdict(Outcome.INCONCLUSIVE, f"agrees {rate:.3f} of {n} times: not enough evidence yet",
                   score=max(fail_lr, pass_lr), **common)  # type: ignore[arg-type]
