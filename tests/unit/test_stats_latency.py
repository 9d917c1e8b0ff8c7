"""Mann-Whitney from histogram buckets against scipy on the expanded data, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from tests.helpers import simulated_rollouts

from kanaria.analysis.latency import (
    bucket_quantile,
    exceedance_share,
    judge_latency,
    mann_whitney_from_buckets,
)
from kanaria.api.verdict import Outcome
from kanaria.monitor.monitor import LATENCY_BUCKETS

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf]


def cumulative(counts: list[int]) -> list[float]:
    return [float(v) for v in np.cumsum(counts)]


def scipy_reference(a: list[int], c: list[int]) -> tuple[float, float]:
    """Expand bucket counts to one value per request (the bucket index) and ask scipy."""
    xb = np.repeat(np.arange(len(a)), a)
    xc = np.repeat(np.arange(len(c)), c)
    res = stats.mannwhitneyu(
        xc, xb, alternative="greater", method="asymptotic", use_continuity=False
    )
    return float(res.statistic), float(res.pvalue)


counts = st.lists(st.integers(0, 60), min_size=len(BOUNDS), max_size=len(BOUNDS))


@settings(max_examples=60, deadline=None)
@given(counts, counts)
def test_matches_scipy_on_expanded_data(a: list[int], c: list[int]) -> None:
    if sum(a) == 0 or sum(c) == 0:
        with pytest.raises(ValueError):
            mann_whitney_from_buckets(BOUNDS, cumulative(a), cumulative(c))
        return
    u, auc, z, p = mann_whitney_from_buckets(BOUNDS, cumulative(a), cumulative(c))
    u_ref, p_ref = scipy_reference(a, c)
    assert u == pytest.approx(u_ref, abs=1e-9)
    assert auc == pytest.approx(u_ref / (sum(a) * sum(c)), abs=1e-12)
    if len({i for i, v in enumerate(a) if v} | {i for i, v in enumerate(c) if v}) > 1:
        assert p == pytest.approx(p_ref, rel=1e-9, abs=1e-15)
    else:  # everything in one bucket: scipy gives NaN, we say "no evidence"
        assert (z, p) == (0.0, 0.5)
    # Symmetry: swapping the arms maps U to nm − U, AUC to 1 − AUC and z to −z.
    u2, auc2, z2, _ = mann_whitney_from_buckets(BOUNDS, cumulative(c), cumulative(a))
    assert u2 == pytest.approx(sum(a) * sum(c) - u, abs=1e-9)
    assert auc2 == pytest.approx(1 - auc, abs=1e-12)
    assert z2 == pytest.approx(-z, abs=1e-9)


def test_tie_corrected_variance_by_hand() -> None:
    a, c = [3, 2, 0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 2, 0, 0, 0, 0, 0, 0, 0]
    n, m = 5, 5
    u = 1 * (0 + 3 / 2) + 2 * (3 + 2 / 2) + 2 * (5 + 0)
    big = n + m
    ties = (4**3 - 4) + (4**3 - 4) + (2**3 - 2)
    var = n * m / 12 * ((big + 1) - ties / (big * (big - 1)))
    got_u, _, z, p = mann_whitney_from_buckets(BOUNDS, cumulative(a), cumulative(c))
    assert got_u == u
    assert z == pytest.approx((u - n * m / 2) / math.sqrt(var))
    assert p == pytest.approx(stats.norm.sf(z))


def test_exceedance_share_on_an_edge_only() -> None:
    c = [0, 10, 50, 25, 10, 3, 1, 1, 0, 0]
    assert exceedance_share(BOUNDS, cumulative(c), 0.1) == (5, 100)
    assert exceedance_share(BOUNDS, cumulative(c), 2.5) == (0, 100)
    with pytest.raises(ValueError):
        exceedance_share(BOUNDS, cumulative(c), 0.3)


def test_bucket_quantile_interpolates_like_histogram_quantile() -> None:
    c = [0, 10, 50, 25, 10, 3, 1, 1, 0, 0]
    # rank 50 lies in (0.01, 0.025] with 10 below and 50 inside: 0.01 + 0.015·40/50.
    assert bucket_quantile(0.5, BOUNDS, cumulative(c)) == pytest.approx(0.01 + 0.015 * 0.8)
    assert bucket_quantile(0.5, [1.0, math.inf], [0.0, 5.0]) == 1.0  # +Inf bucket
    assert bucket_quantile(0.5, [1.0, math.inf], [4.0, 4.0]) == pytest.approx(0.5)
    assert math.isnan(bucket_quantile(0.5, BOUNDS, [0.0] * len(BOUNDS)))


def test_verdicts() -> None:
    base = [0, 100, 500, 250, 100, 30, 10, 10, 0, 0]
    slow = [0, 40, 350, 350, 160, 60, 20, 20, 0, 0]
    fail = judge_latency(BOUNDS, cumulative(base), cumulative(slow), min_samples=500)
    assert fail.outcome is Outcome.FAIL
    assert fail.value is not None and fail.value > 0.56
    assert fail.p_value is not None and fail.p_value < 0.01
    assert (fail.samples, fail.baseline_samples) == (1000, 1000)
    assert fail.threshold == 0.56 and fail.statistic == "mann-whitney"
    assert {"canary_p50", "baseline_p95"} <= fail.details.keys()
    same = judge_latency(BOUNDS, cumulative(base), cumulative(base), min_samples=500)
    assert same.outcome is Outcome.PASS
    few = judge_latency(BOUNDS, cumulative(base), cumulative(slow), min_samples=5000)
    assert few.outcome is Outcome.INCONCLUSIVE and "need 5000" in few.reason
    # Objective 0.1 s: 5% of the canary is slower; 1% allowed → significant excess fails.
    over = judge_latency(
        BOUNDS,
        cumulative(base),
        cumulative(base),
        min_samples=500,
        objective_seconds=0.1,
        max_exceedance=0.01,
    )
    assert over.outcome is Outcome.FAIL and over.statistic == "exceedance"
    assert over.value == pytest.approx(0.05)
    ok = judge_latency(
        BOUNDS,
        cumulative(base),
        cumulative(base),
        min_samples=500,
        objective_seconds=0.1,
        max_exceedance=0.1,
    )
    assert ok.outcome is Outcome.PASS
    # 5% against 6% allowed over 1,000 requests: not yet shown below, so no pass.
    close = judge_latency(BOUNDS, cumulative(base), cumulative(base), min_samples=500,
                          objective_seconds=0.1, max_exceedance=0.06)
    assert close.outcome is Outcome.INCONCLUSIVE and "not yet shown below 6.00%" in close.reason
    # Not significantly slower is not a pass: 200 requests each, equal, stay undecided.
    small = [0, 20, 100, 50, 20, 6, 2, 2, 0, 0]
    assert judge_latency(BOUNDS, cumulative(small), cumulative(small), min_samples=100).outcome is Outcome.INCONCLUSIVE


@pytest.mark.parametrize(
    ("baseline", "canary"),
    [
        ([0.0] * 10, [0.0] * 10),
        ([math.nan] * 10, list(range(10))),
        ([math.inf] * 10, list(range(10))),
        ([-5.0] * 10, list(range(10))),
        ([1.0, 2.0], [1.0, 2.0]),
        ([], []),
    ],
)
def test_bad_input_is_inconclusive(baseline: list[float], canary: list[float]) -> None:
    v = judge_latency(BOUNDS, baseline, canary, min_samples=0)
    assert v.outcome is Outcome.INCONCLUSIVE and v.reason


def test_counter_reset_noise_is_clamped() -> None:
    from kanaria.analysis.drift import bins_from_cumulative

    assert bins_from_cumulative([5, 4, 9, 9.4, 10.6]) == [5, 0, 4, 0, 2]
    v = judge_latency(BOUNDS, [5, 4, 9, 9, 9, 9, 9, 9, 9, 9], list(range(10)), min_samples=1)
    assert v.samples == 9 and v.baseline_samples == 9


@settings(max_examples=60, deadline=None)
@given(counts)
def test_a_a_never_fails(a: list[int]) -> None:
    v = judge_latency(BOUNDS, cumulative(a), cumulative(a), min_samples=0)
    assert not v.failed


# --------------------------------------------------------------- repeated looks, by simulation
MONITOR_BOUNDS = [*LATENCY_BUCKETS, math.inf]


def _requests(rng: np.random.Generator, n: int, slower: float) -> np.ndarray:
    """Bucket counts of n log-normal request durations (median 60 ms × slower, σ 0.5) in the
    monitor library's buckets."""
    seconds = rng.lognormal(math.log(0.06 * slower), 0.5, n)
    return np.bincount(np.searchsorted(MONITOR_BOUNDS, seconds), minlength=len(MONITOR_BOUNDS))


def _rollouts(slower: float, ratio: int, *, runs: int, looks: int, per_look: int, seed: int,
              min_samples: int = 200) -> tuple[float, float, float]:
    """(fail share, pass share, share ever 'significantly slower') of simulated rollouts judged
    after every look, each stopping at its first verdict."""
    rng = np.random.default_rng(seed)
    return simulated_rollouts(
        runs, looks,
        lambda: (_requests(rng, per_look * ratio, 1.0), _requests(rng, per_look, slower)),
        lambda b, c: judge_latency(MONITOR_BOUNDS, cumulative(b), cumulative(c), min_samples=min_samples),
        lambda v: v.details.get("auc_lower", 0.0) > 0.5,
    )


@pytest.mark.parametrize("ratio", [9, 1])
def test_a_a_false_fail_stays_below_alpha_over_fifty_looks(ratio: int) -> None:
    """Equal revisions, judged after every one of 50 looks from the first request on
    (minSamples 1): neither a FAIL nor even "significantly slower" happens in more than α = 1%
    of rollouts — the confidence sequence is valid under repeated looks (a fixed-horizon
    Mann-Whitney re-run at every look is not)."""
    failed, _, significant = _rollouts(1.0, ratio, runs=400, looks=50, per_look=5, seed=ratio,
                                       min_samples=1)
    assert failed <= 0.01 and significant <= 0.01


@pytest.mark.parametrize("ratio", [9, 1])
def test_a_canary_at_the_material_slowdown_passes_at_most_alpha(ratio: int) -> None:
    """12% slower is P(canary slower) = 0.56 = max_auc in these buckets (the boundary a pass must
    rule out); judged after each of 60 looks it passes in at most α = 1% of rollouts. A canary
    20% slower never passes and fails in nearly every one."""
    _, passed, _ = _rollouts(1.12, ratio, runs=300, looks=60, per_look=25, seed=10 + ratio)
    assert passed <= 0.01
    failed, passed, _ = _rollouts(1.2, ratio, runs=100, looks=60, per_look=25, seed=20 + ratio)
    assert passed == 0 and failed >= 0.95


def test_equal_revisions_pass_on_evidence_within_the_documented_requests() -> None:
    """A pass needs evidence, yet comes: equal revisions pass in ≥ 90% of rollouts within 1,000
    canary requests (90/10 split; about 300 at the median)."""
    _, passed, _ = _rollouts(1.0, 9, runs=200, looks=40, per_look=25, seed=30)
    assert passed >= 0.9
