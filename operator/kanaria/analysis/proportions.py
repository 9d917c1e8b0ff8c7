"""Accuracy and error rate: comparing two proportions, fixed-horizon and always-valid.

Arms are always given baseline (stable, ``_b``) first, canary (``_c``) second.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scipy import stats

from kanaria.analysis.sequential import (
    binomial_below_lr,
    binomial_mixture_lr,
    count_problem,
    normal_mixture_lr,
    normal_mixture_radius,
)
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "error_rate_required_requests",
    "judge_accuracy",
    "judge_error_rate",
    "msprt_two_proportions",
    "msprt_required_samples",
    "msprt_variance",
    "non_inferiority_variance",
    "required_samples_per_arm",
    "two_proportion_z",
]


def _check_arm(x: float, n: float, name: str) -> None:
    if not (math.isfinite(x) and math.isfinite(n)) or x < 0 or n <= 0 or x > n:
        raise ValueError(f"{name}: need 0 ≤ x ≤ n and n > 0 (got x={x}, n={n})")


def two_proportion_z(x_b: float, n_b: float, x_c: float, n_c: float) -> tuple[float, float]:
    """Fixed-horizon pooled two-proportion z test of p_c − p_b: returns (z, two-sided p).

    z = (p_c − p_b) / sqrt(p̄(1−p̄)(1/n_b + 1/n_c)), p̄ = (x_b + x_c)/(n_b + n_c). When p̄ is 0
    or 1 the arms are identical: (0.0, 1.0). Raises ValueError on impossible counts.
    """
    _check_arm(x_b, n_b, "baseline")
    _check_arm(x_c, n_c, "canary")
    pooled = (x_b + x_c) / (n_b + n_c)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_b + 1.0 / n_c))
    if se == 0.0:
        return 0.0, 1.0
    z = (x_c / n_c - x_b / n_b) / se
    return z, min(1.0, 2.0 * float(stats.norm.sf(abs(z))))


def msprt_variance(x_b: float, n_b: float, x_c: float, n_c: float) -> float:
    """V = p̃_b(1−p̃_b)/n_b + p̃_c(1−p̃_c)/n_c with Jeffreys-smoothed p̃ = (x + ½)/(n + 1).

    The smoothing keeps V > 0 when an arm is all-correct or all-wrong (where the plug-in V
    would be 0 and Λ infinite after a handful of samples); its effect is O(1/n).
    """
    _check_arm(x_b, n_b, "baseline")
    _check_arm(x_c, n_c, "canary")
    pb = (x_b + 0.5) / (n_b + 1.0)
    pc = (x_c + 0.5) / (n_c + 1.0)
    return pb * (1.0 - pb) / n_b + pc * (1.0 - pc) / n_c


def non_inferiority_variance(
    x_b: float, n_b: float, x_c: float, n_c: float, margin: float
) -> float:
    """V for the PASS side: :func:`msprt_variance` with the canary's term taken at least at the
    accuracy the pass must rule out, q = p̃_b − margin.

    A pass tests H0: p_c ≤ p_b − margin, so its variance belongs to that boundary (as in
    Farrington-Manning). The plug-in canary variance collapses when a near-perfect canary has
    shown no error yet (a 0.975 canary is error-free over its first 50 labels 28% of the time),
    which passed a canary 2 points worse than a 0.995 baseline 9–12% of the time at a small
    ``minSamples``. Evaluated at q the variance cannot collapse; for p̃ > ½ it costs the
    equal-accuracy case a factor q(1−q)/(p(1−p)) on the canary term (1.4 at 0.95, margin 0.02).
    """
    base = msprt_variance(x_b, n_b, x_c, n_c)
    pb = (x_b + 0.5) / (n_b + 1.0)
    pc = (x_c + 0.5) / (n_c + 1.0)
    q = min(max(pb - margin, 0.0), 1.0)
    floor = q * (1.0 - q)
    observed = pc * (1.0 - pc)
    return base if observed >= floor else base + (floor - observed) / n_c


def msprt_two_proportions(
    x_b: float, n_b: float, x_c: float, n_c: float, tau: float = 0.02
) -> float:
    """Mixture-SPRT likelihood ratio Λ against "no difference" (Johari, Pekelis, Walsh).

    Λ = sqrt(V/(V+τ²)) · exp(τ²Δ² / (2V(V+τ²))), Δ = p_c − p_b from the raw proportions and
    V from :func:`msprt_variance` (Jeffreys-smoothed, never 0). Reject when Λ ≥ 1/α.
    """
    delta = x_c / n_c - x_b / n_b if n_b > 0 and n_c > 0 else 0.0
    return normal_mixture_lr(delta, msprt_variance(x_b, n_b, x_c, n_c), tau)


def required_samples_per_arm(
    p_baseline: float, drop: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> tuple[int, int]:
    """Labelled samples (canary, baseline) for a one-sided test to detect a drop.

    ratio = n_baseline / n_canary (9 for a 90/10 split). With p_c = p_b − drop,
    p̄ = (ratio·p_b + p_c)/(1 + ratio):

        n_c = [z_α·sqrt(p̄(1−p̄)(1 + 1/ratio)) + z_β·sqrt(p_c(1−p_c) + p_b(1−p_b)/ratio)]² / drop²

    rounded up; n_b = ceil(ratio·n_c). 95% baseline, 2-point drop, α=0.05, power 0.8: 1,743 per
    arm; with ratio 9 the canary needs 925.
    """
    p_c = p_baseline - drop
    if not (0 < p_c < p_baseline < 1 and 0 < alpha < 1 and 0 < power < 1 and ratio > 0):
        raise ValueError("need 0 < p_baseline - drop < p_baseline < 1, alpha, power in (0,1)")
    z_a = float(stats.norm.isf(alpha))
    z_b = float(stats.norm.ppf(power))
    pooled = (ratio * p_baseline + p_c) / (1.0 + ratio)
    null_sd = math.sqrt(pooled * (1.0 - pooled) * (1.0 + 1.0 / ratio))
    alt_sd = math.sqrt(p_c * (1.0 - p_c) + p_baseline * (1.0 - p_baseline) / ratio)
    n_c = math.ceil(((z_a * null_sd + z_b * alt_sd) / drop) ** 2)
    return n_c, math.ceil(ratio * n_c)


def msprt_required_samples(
    p_baseline: float,
    drop: float,
    *,
    alpha: float = 0.05,
    tau: float = 0.02,
    power: float = 0.8,
    ratio: float = 1.0,
) -> int:
    """Canary labels at which :func:`judge_accuracy` FAILs a ``drop`` with probability ``power``
    (the documented minimum sample size for a canary step).

    judge_accuracy fails when Δ̂ + r(V) < 0, r the always-valid radius. With Δ̂ ~ N(−drop, V)
    and V = p_c(1−p_c)/n + p_b(1−p_b)/(ratio·n), the smallest n with
    −drop + z_power·√V + r(V) ≤ 0 (one look at n; earlier looks only add power). The
    fixed-horizon numbers of :func:`required_samples_per_arm` are smaller: the price of
    being allowed to look after every interval.
    """
    p_c = p_baseline - drop
    z = float(stats.norm.ppf(power))

    def short(n: float) -> float:
        v = p_c * (1 - p_c) / n + p_baseline * (1 - p_baseline) / (ratio * n)
        return -drop + z * math.sqrt(v) + normal_mixture_radius(v, tau, alpha)

    lo, hi = 2.0, 2.0
    while short(hi) > 0:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if short(mid) <= 0 else (mid, hi)
    return math.ceil(hi)


def error_rate_required_requests(
    base_rate: float,
    factor: float,
    *,
    share: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Canary requests at which :func:`judge_error_rate` FAILs a ``factor``× increase of the
    baseline's ``base_rate`` with probability ``power`` (one look; earlier looks only add power).

    With the canary on ``share`` of the traffic, n canary requests come with E = n·(base_rate·
    (1−s)/s + factor·base_rate) errors in expectation, each the canary's with probability
    θ1 = f·s/(f·s + 1 − s). The relative test fails at the smallest x* with
    binomial_mixture_lr(x*, E, θ(1)) ≥ 1/α, so power = P(Bin(E, θ1) ≥ x*). The guardrail can
    only add power; it is ignored here. 0.5% doubled, 50/50, α 0.05: 9,312 (90/10: 4,368).
    """
    if not (0 < base_rate < 1 and factor > 1 and 0 < base_rate * factor < 1 and 0 < share < 1):
        raise ValueError("need 0 < base_rate < base_rate·factor < 1, factor > 1, share in (0, 1)")
    theta0 = share / (share + 1.0 - share)
    theta1 = factor * share / (factor * share + 1.0 - share)
    per_request = base_rate * (1.0 - share) / share + factor * base_rate

    def power_at(n: int) -> float:
        errors = int(round(n * per_request))
        if errors <= 0:
            return 0.0
        lo, hi = 0, errors + 1  # smallest x with Λ ≥ 1/α (Λ rises with x)
        while lo < hi:
            mid = (lo + hi) // 2
            if binomial_mixture_lr(mid, errors, theta0) >= 1.0 / alpha:
                hi = mid
            else:
                lo = mid + 1
        return float(stats.binom.sf(lo - 1, errors, theta1)) if lo <= errors else 0.0

    n = 64
    while power_at(n) < power:
        n *= 2
        if n > 10**9:
            raise ValueError("the increase is too small to detect")
    lo, hi = n // 2, n
    while hi - lo > max(1, hi // 200):  # to 0.5%: power in n is stepwise, not smooth
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid, hi)
    return hi


def judge_accuracy(
    correct_b: float,
    labelled_b: float,
    correct_c: float,
    labelled_c: float,
    *,
    min_samples: int = 200,
    margin: float = 0.02,
    alpha: float = 0.05,
    tau: float = 0.02,
) -> Verdict:
    """Judge the canary's accuracy against the baseline's with an always-valid test.

    With Δ = p_c − p_b, V as in :func:`msprt_variance` and the confidence sequence Δ ± r,
    r² = 2V(V+τ²)/τ² · [ln(1/α) + ½ln((V+τ²)/V)] (the d with Λ(Δ−d) < 1/α):

    * FAIL when Δ + r < 0 — the canary is significantly worse (equivalently Λ ≥ 1/α, Δ < 0).
      This takes precedence: a drop that is real but smaller than ``margin`` still fails.
    * PASS when Δ − r' > −margin — non-inferior: not worse by more than δ = margin, r' the
      radius with the canary's variance at the boundary accuracy p_b − margin
      (:func:`non_inferiority_variance`), so that a near-perfect canary that has not erred yet
      cannot pass on a collapsed variance.
    * INCONCLUSIVE otherwise, and below ``min_samples`` labels in either arm or on bad counts.

    Every true Δ eventually resolves: Δ ≥ 0 passes, Δ < 0 fails.
    """
    problem = count_problem(
        correct_b=correct_b, labelled_b=labelled_b, correct_c=correct_c, labelled_c=labelled_c
    )
    if problem is None and (correct_b > labelled_b or correct_c > labelled_c):
        problem = "more correct predictions than labelled ones"
    if problem is not None:
        return Verdict.inconclusive(f"accuracy: {problem}", statistic="msprt")
    threshold = 1.0 / alpha
    if labelled_b < min_samples or labelled_c < min_samples or labelled_b == 0 or labelled_c == 0:
        return Verdict(
            Outcome.INCONCLUSIVE,
            f"accuracy: {int(labelled_c)}/{int(labelled_b)} labels (canary/stable), "
            f"need {min_samples} per arm",
            statistic="msprt",
            value=correct_c / labelled_c if labelled_c else None,
            baseline=correct_b / labelled_b if labelled_b else None,
            threshold=threshold,
            samples=int(labelled_c),
            baseline_samples=int(labelled_b),
        )
    p_b, p_c = correct_b / labelled_b, correct_c / labelled_c
    delta = p_c - p_b
    variance = msprt_variance(correct_b, labelled_b, correct_c, labelled_c)
    if not variance > 0:  # counts so large the variance rounds to zero: no usable numbers
        return Verdict.inconclusive(
            f"accuracy: counts too large to compute a variance ({int(labelled_c)}/{int(labelled_b)})",
            statistic="msprt",
        )
    lam = normal_mixture_lr(delta, variance, tau)
    upper = delta + normal_mixture_radius(variance, tau, alpha)
    pass_variance = non_inferiority_variance(correct_b, labelled_b, correct_c, labelled_c, margin)
    lower = delta - normal_mixture_radius(pass_variance, tau, alpha)
    z, p_fixed = two_proportion_z(correct_b, labelled_b, correct_c, labelled_c)
    head = (
        f"canary accuracy {p_c:.3f} vs stable {p_b:.3f} over "
        f"{int(labelled_c)}/{int(labelled_b)} labels"
    )
    if upper < 0:
        outcome = Outcome.FAIL
        why = f"worse (Λ={lam:.3g} ≥ {threshold:.3g}, Δ ≤ {upper:+.3f})"
    elif lower > -margin:
        outcome = Outcome.PASS
        why = f"not worse by more than {margin:.3f} (Δ ≥ {lower:+.3f}, Λ={lam:.3g})"
    else:
        outcome = Outcome.INCONCLUSIVE
        why = f"not enough evidence yet (Δ in [{lower:+.3f}, {upper:+.3f}], margin {margin:.3f})"
    return Verdict(
        outcome,
        f"{head}: {why}",
        statistic="msprt",
        value=p_c,
        baseline=p_b,
        score=lam,
        threshold=threshold,
        p_value=min(1.0, 1.0 / lam),
        samples=int(labelled_c),
        baseline_samples=int(labelled_b),
        details={
            "delta": delta,
            "ci_lower": lower,
            "ci_upper": upper,
            "margin": margin,
            "variance": variance,
            "pass_variance": pass_variance,
            "z": z,
            "p_fixed_horizon": p_fixed,
        },
    )


def judge_error_rate(
    errors_b: float,
    requests_b: float,
    errors_c: float,
    requests_c: float,
    *,
    max_error_rate: float | None = 0.01,
    relative_tolerance: float = 0.5,
    min_requests: int = 1000,
    alpha: float = 0.05,
) -> Verdict:
    """Judge the canary's error rate: an absolute guardrail and a relative comparison, both
    always-valid, with PASS meaning evidence of non-inferiority (as for accuracy).

    Given E = errors_b + errors_c, each error is the canary's with probability
    θ(ρ) = ρs/(ρs + 1 − s), s = requests_c/(requests_b + requests_c) the canary's share of
    requests and ρ its error-rate ratio to the baseline. With r = 1 + relative_tolerance:

    * FAIL when the canary's rate is significantly above the guardrail —
      Λ_g = :func:`binomial_mixture_lr` (errors_c, requests_c, max_error_rate) ≥ 1/α, at any
      request count ("breached outright") — or, once requests_c ≥ min_requests, when it is
      significantly above the baseline's: Λ_w = binomial_mixture_lr(errors_c, E, θ(1)) ≥ 1/α.
      Like accuracy, a real increase smaller than the tolerance still fails.
    * PASS, once requests_c ≥ min_requests and nothing fails, on evidence that the canary is
      not worse: either its share of the errors is significantly below θ(r) (ρ < r:
      Λ_ni = :func:`binomial_below_lr` (errors_c, E, θ(r)) ≥ 1/α), or — when errors are too
      rare for a ratio to be measured — its rate is significantly below the guardrail
      (binomial_below_lr(errors_c, requests_c, max_error_rate) ≥ 1/α) while its observed rate
      is within r × the baseline's.
    * INCONCLUSIVE otherwise, and on bad counts.

    More canary errors (same traffic) never improve the verdict: the FAIL evidence rises and
    the PASS evidence falls with errors_c.
    """
    problem = count_problem(
        errors_b=errors_b, requests_b=requests_b, errors_c=errors_c, requests_c=requests_c
    )
    if problem is None and (errors_b > requests_b or errors_c > requests_c):
        problem = "more errors than requests"
    if problem is None and max_error_rate is not None and not 0 < max_error_rate < 1:
        problem = f"max_error_rate must lie in (0, 1), got {max_error_rate}"
    if problem is None and not (relative_tolerance >= 0 and math.isfinite(relative_tolerance)):
        problem = f"relative_tolerance must be ≥ 0, got {relative_tolerance}"
    if problem is not None:
        return Verdict.inconclusive(f"error rate: {problem}", statistic="binomial-mixture")
    threshold = 1.0 / alpha
    rate_c = errors_c / requests_c if requests_c else None
    rate_b = errors_b / requests_b if requests_b else None
    base = Verdict(
        Outcome.INCONCLUSIVE,
        "",
        statistic="binomial-mixture",
        value=rate_c,
        baseline=rate_b,
        threshold=threshold,
        samples=int(requests_c),
        baseline_samples=int(requests_b),
    )
    shown = (
        f"canary error rate {_fmt(rate_c)} vs stable {_fmt(rate_b)} over "
        f"{int(requests_c)}/{int(requests_b)} requests"
    )
    details: dict[str, float] = {}
    guard_lr = 0.0
    if max_error_rate is not None and requests_c > 0:
        guard_lr = binomial_mixture_lr(errors_c, requests_c, max_error_rate)
        details.update(guardrail=max_error_rate, guardrail_lr=guard_lr)
        if guard_lr >= threshold:
            return replace(
                base,
                outcome=Outcome.FAIL,
                reason=f"{shown}: above the {max_error_rate:.3%} guardrail "
                f"(Λ={guard_lr:.3g} ≥ {threshold:.3g})",
                score=guard_lr,
                p_value=min(1.0, 1.0 / guard_lr),
                details=details,
            )
    if requests_c < min_requests or requests_b == 0 or rate_c is None or rate_b is None:
        return replace(
            base,
            reason=f"{shown}: need {min_requests} canary requests and stable traffic",
            details=details,
        )
    share = requests_c / (requests_b + requests_c)
    ratio = 1.0 + relative_tolerance

    def theta(rho: float) -> float:
        return rho * share / (rho * share + 1.0 - share)

    total_errors = errors_b + errors_c
    theta_equal, theta_margin = theta(1.0), theta(ratio)
    worse_lr = binomial_mixture_lr(errors_c, total_errors, theta_equal)
    ni_lr = binomial_below_lr(errors_c, total_errors, theta_margin) if theta_margin < 1 else 0.0
    below_lr = (
        binomial_below_lr(errors_c, requests_c, max_error_rate) if max_error_rate is not None else 0.0
    )
    details.update(
        request_share=share,
        error_share=errors_c / total_errors if total_errors else 0.0,
        null_error_share=theta_equal,
        margin_error_share=theta_margin,
        worse_lr=worse_lr,
        non_inferior_lr=ni_lr,
        below_guardrail_lr=below_lr,
    )
    within_ratio = rate_c <= ratio * rate_b
    if worse_lr >= threshold:
        outcome, score = Outcome.FAIL, worse_lr
        why = (
            f"worse than the stable rate (Λ={worse_lr:.3g} ≥ {threshold:.3g}, "
            f"{int(errors_c)} of {int(total_errors)} errors on {share:.1%} of requests)"
        )
    elif ni_lr >= threshold:
        outcome, score = Outcome.PASS, ni_lr
        why = f"not above {ratio:.3g}× the stable rate (Λ={ni_lr:.3g} ≥ {threshold:.3g})"
    elif max_error_rate is not None and below_lr >= threshold and within_ratio:
        outcome, score = Outcome.PASS, below_lr
        why = (
            f"below the {max_error_rate:.3%} guardrail (Λ={below_lr:.3g} ≥ {threshold:.3g}) "
            f"and within {ratio:.3g}× the stable rate"
        )
    else:
        outcome, score = Outcome.INCONCLUSIVE, max(ni_lr, below_lr)
        why = (
            f"not enough evidence yet ({int(errors_c)} of {int(total_errors)} errors on "
            f"{share:.1%} of requests; worse Λ={worse_lr:.3g}, not-worse Λ={score:.3g}, "
            f"need {threshold:.3g})"
        )
    return replace(
        base,
        outcome=outcome,
        reason=f"{shown}: {why}",
        score=score,
        p_value=min(1.0, 1.0 / score) if score > 0 else 1.0,
        details=details,
    )


def _fmt(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.3%}"
