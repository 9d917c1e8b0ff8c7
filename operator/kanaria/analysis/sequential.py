"""Shared pieces of the always-valid (anytime) tests and of input checking.

Two test martingales are used by the judges, both safe to look at after every scrape
(Ville's inequality: under the null, P(sup_t Λ_t ≥ 1/α) ≤ α):

* :func:`normal_mixture_lr` — the mixture SPRT of Johari, Pekelis and Walsh for a difference
  of means with (estimated) variance V and a N(0, τ²) mixing distribution;
* :func:`binomial_mixture_lr` — a one-sided test of ``H0: p ≤ p0`` for a Bernoulli rate,
  mixing the likelihood ratio over a Beta prior truncated to ``[p0, 1]``;
* :func:`binomial_below_lr` — the other side, ``H0: p ≥ p0``, mixing over a uniform prior on
  ``[0, p0]`` (evidence that a rate is *below* a bound: non-inferiority of error rates).

All functions are pure.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from scipy import special

__all__ = [
    "LOG_LR_CAP",
    "binomial_below_lr",
    "binomial_mixture_lr",
    "count_problem",
    "normal_mixture_log_lr",
    "normal_mixture_lr",
    "normal_mixture_radius",
]

# Likelihood ratios are capped at e^690 (≈ 1e299) so that they stay finite floats and can be
# written to JSON status; any such value is far beyond every threshold 1/α we use.
LOG_LR_CAP = 690.0


def count_problem(**counts: float | None) -> str | None:
    """Why these counts cannot be judged (None, NaN, Inf or negative), or None if they can."""
    for name, value in counts.items():
        if value is None:
            return f"{name} is missing"
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return f"{name} is not a finite number ({value!r})"
        if value < 0:
            return f"{name} is negative ({value!r})"
    return None


def sequence_problem(name: str, values: Iterable[float]) -> str | None:
    """Like :func:`count_problem` for every element of a sequence."""
    for i, value in enumerate(values):
        problem = count_problem(**{f"{name}[{i}]": value})
        if problem is not None:
            return problem
    return None


def normal_mixture_log_lr(delta: float, variance: float, tau: float) -> float:
    """log Λ for the normal mixture SPRT.

    Λ = sqrt(V/(V+τ²)) · exp(τ²Δ² / (2V(V+τ²))), the likelihood ratio of Δ ~ N(θ, V) with
    θ ~ N(0, τ²) against θ = 0. Requires V > 0 and τ > 0.
    """
    if variance <= 0 or tau <= 0:
        raise ValueError("variance and tau must be positive")
    t2 = tau * tau
    log_lr = 0.5 * math.log(variance / (variance + t2))
    log_lr += t2 * delta * delta / (2.0 * variance * (variance + t2))
    return min(log_lr, LOG_LR_CAP)


def normal_mixture_lr(delta: float, variance: float, tau: float) -> float:
    """Λ of :func:`normal_mixture_log_lr` (capped at e^690)."""
    return math.exp(normal_mixture_log_lr(delta, variance, tau))


def normal_mixture_radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width r of the always-valid confidence sequence Δ ± r.

    The sequence is the set of d with Λ(Δ − d) < 1/α, i.e.

        r² = 2V(V+τ²)/τ² · [ln(1/α) + ½·ln((V+τ²)/V)].

    0 lies outside Δ ± r exactly when Λ(Δ) ≥ 1/α, so the interval and the test agree.
    """
    if variance <= 0 or tau <= 0 or not 0 < alpha < 1:
        raise ValueError("variance, tau must be positive and alpha in (0, 1)")
    t2 = tau * tau
    bracket = math.log(1.0 / alpha) + 0.5 * math.log((variance + t2) / variance)
    return math.sqrt(2.0 * variance * (variance + t2) / t2 * bracket)


def binomial_mixture_lr(x: float, n: float, p0: float) -> float:
    """Always-valid evidence that a Bernoulli rate exceeds p0 (``H0: p ≤ p0``).

    The likelihood ratio (p/p0)^x ((1−p)/(1−p0))^(n−x) is mixed over a Beta(a, b) prior
    truncated to [p0, 1], with mean p0 and prior size a + b = (1−p0)/p0, i.e. a = 1 − p0,
    b = (1−p0)²/p0 — it spreads over alternatives of the order of "twice p0":

        Λ = B(x+a, n−x+b)·Ī_{p0}(x+a, n−x+b) / [B(a, b)·Ī_{p0}(a, b)·p0^x (1−p0)^(n−x)],

    Ī the upper regularised incomplete beta. Each component with p ≥ p0 is a supermartingale
    under every rate ≤ p0, so the mixture is too (Ville: P(sup Λ ≥ 1/α) ≤ α). Λ is
    non-decreasing in x for fixed n. Capped at e^690.
    """
    if not 0 < p0 < 1:
        raise ValueError("p0 must lie in (0, 1)")
    if x < 0 or n < x:
        raise ValueError("need 0 ≤ x ≤ n")
    a, b = 1.0 - p0, (1.0 - p0) ** 2 / p0
    tail = float(special.betaincc(x + a, n - x + b, p0))
    prior_tail = float(special.betaincc(a, b, p0))
    if tail <= 0.0 or prior_tail <= 0.0:
        return 0.0
    log_lr = (
        float(special.betaln(x + a, n - x + b))
        - float(special.betaln(a, b))
        + math.log(tail)
        - math.log(prior_tail)
        - x * math.log(p0)
        - (n - x) * math.log1p(-p0)
    )
    return math.exp(min(log_lr, LOG_LR_CAP))


def binomial_below_lr(x: float, n: float, p0: float) -> float:
    """Always-valid evidence that a Bernoulli rate is below p0 (``H0: p ≥ p0``).

    The likelihood ratio (p/p0)^x ((1−p)/(1−p0))^(n−x) mixed over p uniform on [0, p0]:

        Λ = B(x+1, n−x+1)·I_{p0}(x+1, n−x+1) / [p0 · p0^x (1−p0)^(n−x)],

    I the regularised incomplete beta. For p < p0 each component's expected factor per
    observation, q·p/p0 + (1−q)(1−p)/(1−p0), decreases in the true rate q and is 1 at q = p0,
    so every component — and the mixture — is a supermartingale under every rate ≥ p0
    (Ville: P(sup Λ ≥ 1/α) ≤ α). Λ is non-increasing in x for fixed n. Capped at e^690.
    """
    if not 0 < p0 < 1:
        raise ValueError("p0 must lie in (0, 1)")
    if x < 0 or n < x:
        raise ValueError("need 0 ≤ x ≤ n")
    mass = float(special.betainc(x + 1.0, n - x + 1.0, p0))
    if mass <= 0.0:
        return 0.0
    log_lr = (
        float(special.betaln(x + 1.0, n - x + 1.0))
        + math.log(mass)
        - math.log(p0)
        - x * math.log(p0)
        - (n - x) * math.log1p(-p0)
    )
    return math.exp(min(log_lr, LOG_LR_CAP))
