"""User feedback judges: the share of positive feedback and the bounded-mean rating, with the
rating's always-valid confidence sequence proved by simulation under repeated looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.helpers import simulated_rollouts

from kanaria.analysis.feedback import RatingArm, judge_feedback, judge_rating, rating_variance
from kanaria.api.verdict import Outcome

STARS = np.arange(1, 6)
BASE = np.array([0.05, 0.05, 0.15, 0.35, 0.40])  # mean 4.0, sd about 1.1


def worse(by: float) -> np.ndarray:
    """The baseline's distribution with some ratings turned into 1 star: mean lower by ``by``."""
    w = by / (BASE @ STARS - 1.0)
    return (1 - w) * BASE + w * np.eye(5)[0]


def _arm(rng: np.random.Generator, n: int, probs: np.ndarray) -> np.ndarray:
    """[count, sum, sum of squares] of n ratings, shifted to start at 0 as the monitor exports."""
    counts = rng.multinomial(n, probs)
    shifted = STARS - 1.0
    return np.array([n, counts @ shifted, counts @ shifted**2], dtype=float)


def _judge(b: np.ndarray, c: np.ndarray, min_samples: int) -> object:
    return judge_rating(RatingArm(*b), RatingArm(*c), low=1, high=5, min_samples=min_samples, margin=0.2)


def _rollouts(canary: np.ndarray, ratio: int, *, runs: int, looks: int, per_look: int, seed: int,
              min_samples: int = 200, base: np.ndarray = BASE) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    return simulated_rollouts(
        runs, looks,
        lambda: (_arm(rng, per_look * ratio, base), _arm(rng, per_look, canary)),
        lambda b, c: _judge(b, c, min_samples),
        lambda v: v.details.get("ci_upper", 0.0) < 0,
    )


def test_a_rating_verdict_carries_the_means_on_the_rating_scale() -> None:
    # 4 ratings 5, 4, 4, 3 (shifted: 4, 3, 3, 2) against 3 ratings of 5
    v = judge_rating(RatingArm(3, 12, 48), RatingArm(4, 12, 38), low=1, high=5, min_samples=1)
    assert v.value == pytest.approx(4.0) and v.baseline == pytest.approx(5.0)
    assert v.samples == 4 and v.baseline_samples == 3 and v.statistic == "msprt-mean"
    assert v.outcome is Outcome.INCONCLUSIVE  # a handful of ratings decides nothing


def test_the_variance_never_collapses() -> None:
    """All-alike ratings still carry the floor (R/2)²/(n+1) per rating: 4/(n(n+1)) on 1..5."""
    same = RatingArm(100, 400, 1600)
    assert rating_variance(same, 4.0) == pytest.approx(4.0 / 101 / 100)


@pytest.mark.parametrize(
    "baseline,canary",
    [
        (RatingArm(math.nan, 1, 1), RatingArm(10, 10, 10)),
        (RatingArm(10, 10, 10), RatingArm(-1, 0, 0)),
        (RatingArm(10, 50, 250), RatingArm(10, 10, 10)),  # mean 5 over a width of 4
        (RatingArm(10, 20, 10), RatingArm(10, 10, 10)),  # sum² > n · sum of squares
    ],
)
def test_impossible_counts_are_inconclusive(baseline: RatingArm, canary: RatingArm) -> None:
    v = judge_rating(baseline, canary, low=1, high=5, min_samples=1)
    assert v.outcome is Outcome.INCONCLUSIVE and "rating:" in v.reason


def test_below_min_samples_is_inconclusive_whatever_the_means() -> None:
    v = judge_rating(RatingArm(199, 199 * 4, 199 * 16), RatingArm(500, 0, 0), low=1, high=5, min_samples=200)
    assert v.outcome is Outcome.INCONCLUSIVE and "need 200" in v.reason


@pytest.mark.parametrize("ratio", [1, 9])
def test_a_a_false_fail_stays_below_alpha_over_fifty_looks(ratio: int) -> None:
    """Equal revisions judged after each of 50 looks from the tenth rating on (minSamples 10):
    neither a FAIL nor a confidence sequence wholly below zero in more than α = 5%."""
    failed, _, significant = _rollouts(BASE, ratio, runs=400, looks=50, per_look=10, seed=ratio, min_samples=10)
    assert failed <= 0.05 and significant <= 0.05


@pytest.mark.parametrize("ratio", [1, 9])
def test_a_canary_worse_by_the_margin_passes_at_most_alpha(ratio: int) -> None:
    """A canary whose mean is 0.2 stars lower (= the margin) passes in at most α = 5% of
    rollouts judged after each of 60 looks; 0.5 stars lower fails in nearly every one and
    never passes."""
    _, passed, _ = _rollouts(worse(0.2), ratio, runs=300, looks=60, per_look=40, seed=10 + ratio)
    assert passed <= 0.05
    failed, passed, _ = _rollouts(worse(0.5), ratio, runs=100, looks=60, per_look=40, seed=20 + ratio)
    assert passed == 0 and failed >= 0.95


def test_a_skewed_rating_keeps_both_error_rates() -> None:
    """95% five stars and 5% one star (a thumbs-like rating, far from normal): equal revisions
    fail in at most α over 50 looks from the tenth rating; 0.2 stars worse passes in at most α."""
    skewed = np.array([0.05, 0, 0, 0, 0.95])
    failed, _, _ = _rollouts(skewed, 1, runs=400, looks=50, per_look=10, seed=41, min_samples=10, base=skewed)
    assert failed <= 0.05
    w = 0.2 / (skewed @ STARS - 1.0)
    _, passed, _ = _rollouts((1 - w) * skewed + w * np.eye(5)[0], 1, runs=300, looks=60, per_look=40, seed=42,
                             base=skewed)
    assert passed <= 0.05


def test_equal_revisions_pass_on_evidence() -> None:
    """A pass needs evidence, yet comes: equal revisions pass in ≥ 90% of rollouts within 2,400
    canary ratings (50/50)."""
    _, passed, _ = _rollouts(BASE, 1, runs=200, looks=60, per_look=40, seed=30)
    assert passed >= 0.9


def test_feedback_is_judged_like_accuracy_and_says_so() -> None:
    """95% positive against 92% over 3,000 rated answers each: a 3-point drop fails; equal
    shares pass; the reason speaks of feedback, not accuracy."""
    bad = judge_feedback(2850, 3000, 2760, 3000)
    assert bad.outcome is Outcome.FAIL and "positive feedback" in bad.reason and "accuracy" not in bad.reason
    good = judge_feedback(2850, 3000, 2852, 3000)
    assert good.outcome is Outcome.PASS and "rated answers" in good.reason


def test_feedback_a_a_and_three_points_more_thumbs_down_by_simulation() -> None:
    """Thumbs down at 5% on both arms: at most α = 5% of rollouts fail over 40 looks; thumbs
    down at 8% on the canary (3 points more) fails in at least 90% by 40 looks of 100."""
    def rollouts(down_c: float, seed: int, runs: int) -> tuple[float, float, float]:
        rng = np.random.default_rng(seed)

        def draw() -> tuple[np.ndarray, np.ndarray]:
            return (np.array([rng.binomial(100, 0.95), 100.0]), np.array([rng.binomial(100, 1 - down_c), 100.0]))

        return simulated_rollouts(
            runs, 40, draw, lambda b, c: judge_feedback(b[0], b[1], c[0], c[1], min_samples=100),
            lambda v: v.details.get("ci_upper", 0.0) < 0,
        )

    failed, _, significant = rollouts(0.05, 1, 400)
    assert failed <= 0.05 and significant <= 0.05
    failed, passed, _ = rollouts(0.08, 2, 100)
    assert failed >= 0.9 and passed == 0
