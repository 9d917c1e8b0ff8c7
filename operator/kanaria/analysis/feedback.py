"""User feedback: the share of positive feedback, and the mean of a bounded rating.

Arms are given baseline (stable, ``_b``) first, canary (``_c``) second, like every judge.
Both judges are always-valid (safe to look at after every scrape) and return PASS only on
evidence of non-inferiority:

* :func:`judge_feedback` — thumbs up/down, task success: a proportion, judged exactly like
  accuracy (:func:`kanaria.analysis.proportions.judge_accuracy`, the mixture SPRT with the
  pass side's variance at the boundary).
* :func:`judge_rating` — a rating in a declared range [low, high] (for example 1..5 stars)
  from the aggregates a Prometheus counter can hold: count, sum and sum of squares per arm.
  The difference of means Δ = m_c − m_b gets the normal-mixture confidence sequence
  Δ ± r(V), V = σ̃_b²/n_b + σ̃_c²/n_c, with each arm's variance smoothed towards the largest a
  bounded variable can have: σ̃² = (n·s² + (R/2)²)/(n + 1), s² the (biased) empirical
  variance and R = high − low — one pseudo-observation at maximal spread, the analogue of the
  Jeffreys smoothing of the proportions. The floor (R/2)²/(n + 1) keeps V from collapsing when
  an arm's first ratings happen to be all alike.

All functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import replace

from kanaria.analysis.proportions import judge_accuracy
from kanaria.analysis.sequential import count_problem, normal_mixture_lr, normal_mixture_radius
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "DEFAULT_FEEDBACK_MARGIN",
    "DEFAULT_RATING_MARGIN_SHARE",
    "RatingArm",
    "judge_feedback",
    "judge_rating",
    "rating_variance",
]

DEFAULT_FEEDBACK_MARGIN = 0.02
"""The non-inferiority margin of the share of positive feedback (2 points)."""
DEFAULT_RATING_MARGIN_SHARE = 0.05
"""The default rating margin as a share of the range: 0.2 stars on 1..5."""


def judge_feedback(
    positive_b: float,
    rated_b: float,
    positive_c: float,
    rated_c: float,
    *,
    min_samples: int = 500,
    margin: float = DEFAULT_FEEDBACK_MARGIN,
    alpha: float = 0.05,
    tau: float = 0.02,
) -> Verdict:
    """The share of positive feedback (thumbs up, task success) of the canary against the
    baseline's: FAIL when significantly lower, PASS when not lower by more than ``margin``,
    always-valid — the accuracy judge's rules on (positive, rated) counts."""
    verdict = judge_accuracy(
        positive_b, rated_b, positive_c, rated_c,
        min_samples=min_samples, margin=margin, alpha=alpha, tau=tau,
    )  # fmt: skip
    reason = (
        verdict.reason.replace("canary accuracy", "canary positive feedback", 1)
        .replace("accuracy:", "feedback:", 1)
        .replace(" labels", " rated answers")
    )
    return replace(verdict, reason=reason)


class RatingArm:
    """One arm's ratings as a Prometheus counter can hold them: how many, their sum and their
    sum of squares (of the ratings, or of ratings shifted by a constant: the difference of
    means and the variances do not change)."""

    __slots__ = ("count", "squares", "total")

    def __init__(self, count: float, total: float, squares: float) -> None:
        self.count = count
        self.total = total
        self.squares = squares

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def spread(self) -> float:
        """The (biased) empirical variance, never negative."""
        return max(0.0, self.squares / self.count - self.mean**2)

    def problem(self, span: float, name: str) -> str | None:
        problem = count_problem(**{f"{name} count": self.count, f"{name} sum": self.total,
                                   f"{name} sum of squares": self.squares})
        if problem is not None or self.count == 0:
            return problem
        slack = 1e-9 * max(1.0, self.count) * max(1.0, span * span)
        if self.total > self.count * span + slack or self.squares > self.count * span * span + slack:
            return (f"{name}: the ratings do not fit the declared range (mean {self.mean:.4g} of "
                    f"values shifted to start at 0, range width {span:g})")
        if self.total * self.total > self.count * self.squares + slack * max(1.0, self.total):
            return f"{name}: sum and sum of squares are inconsistent (Cauchy-Schwarz)"
        return None


def rating_variance(arm: RatingArm, span: float) -> float:
    """σ̃²/n for one arm: the empirical variance smoothed with one pseudo-observation at the
    largest variance a rating of range ``span`` can have, (span/2)²."""
    n = arm.count
    return (n * arm.spread + (span / 2.0) ** 2) / (n + 1.0) / n


def judge_rating(
    baseline: RatingArm,
    canary: RatingArm,
    *,
    low: float,
    high: float,
    min_samples: int = 500,
    margin: float | None = None,
    alpha: float = 0.05,
    tau: float | None = None,
) -> Verdict:
    """The canary's mean rating against the baseline's, always-valid (see the module doc).

    The arms hold ratings shifted to start at 0 (rating − low), as the monitor library
    exports them; ``value`` and ``baseline`` in the verdict are means on the rating's own
    scale. ``margin`` (rating units; default 5% of the range) is the largest drop that still
    passes, ``tau`` the mixing scale (default: the margin).

    * FAIL when Δ + r < 0 — the canary's mean is significantly lower (any amount).
    * PASS when Δ − r > −margin — not lower by more than the margin.
    * INCONCLUSIVE otherwise, below ``min_samples`` ratings in either arm, and on counts that
      cannot be (NaN, negative, outside the range).
    """
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return Verdict.inconclusive(f"rating: the range [{low:g}, {high:g}] is empty", statistic="msprt-mean")
    margin = DEFAULT_RATING_MARGIN_SHARE * span if margin is None else margin
    tau = tau if tau is not None and tau > 0 else max(margin, 0.01 * span)
    problem = baseline.problem(span, "stable") or canary.problem(span, "canary")
    if problem is not None:
        return Verdict.inconclusive(f"rating: {problem}", statistic="msprt-mean")
    threshold = 1.0 / alpha
    n_b, n_c = baseline.count, canary.count
    m_b = low + baseline.mean if n_b > 0 else None
    m_c = low + canary.mean if n_c > 0 else None
    counts = f"{int(n_c)}/{int(n_b)} ratings (canary/stable)"
    if n_b < min_samples or n_c < min_samples or n_b == 0 or n_c == 0:
        return Verdict(
            Outcome.INCONCLUSIVE,
            f"rating: {counts}, need {min_samples} per arm",
            statistic="msprt-mean",
            value=m_c,
            baseline=m_b,
            threshold=threshold,
            samples=int(n_c),
            baseline_samples=int(n_b),
        )
    assert m_b is not None and m_c is not None
    delta = m_c - m_b
    variance = rating_variance(baseline, span) + rating_variance(canary, span)
    radius = normal_mixture_radius(variance, tau, alpha)
    lam = normal_mixture_lr(delta, variance, tau)
    upper, lower = delta + radius, delta - radius
    head = f"canary mean rating {m_c:.3f} vs stable {m_b:.3f} over {int(n_c)}/{int(n_b)} ratings"
    if upper < 0:
        outcome = Outcome.FAIL
        why = f"lower (Λ={lam:.3g} ≥ {threshold:.3g}, Δ ≤ {upper:+.3f})"
    elif lower > -margin:
        outcome = Outcome.PASS
        why = f"not lower by more than {margin:.3g} (Δ ≥ {lower:+.3f}, Λ={lam:.3g})"
    else:
        outcome = Outcome.INCONCLUSIVE
        why = f"not enough evidence yet (Δ in [{lower:+.3f}, {upper:+.3f}], margin {margin:.3g})"
    return Verdict(
        outcome,
        f"{head}: {why}",
        statistic="msprt-mean",
        value=m_c,
        baseline=m_b,
        score=lam,
        threshold=threshold,
        p_value=min(1.0, 1.0 / lam) if lam > 0 else 1.0,
        samples=int(n_c),
        baseline_samples=int(n_b),
        details={
            "delta": delta,
            "ci_lower": lower,
            "ci_upper": upper,
            "margin": margin,
            "variance": variance,
            "sd": math.sqrt(canary.spread),
            "baseline_sd": math.sqrt(baseline.spread),
        },
    )
