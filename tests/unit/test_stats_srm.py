"""Sample-ratio mismatch against scipy.stats.chisquare."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kanaria.analysis.srm import sample_ratio_mismatch
from kanaria.api.verdict import Outcome


def test_matches_scipy_chisquare() -> None:
    observed, weights = [9000, 1100], [90.0, 10.0]
    ref = stats.chisquare(observed, [10100 * 0.9, 10100 * 0.1])
    v = sample_ratio_mismatch(observed, weights)
    assert v.score == pytest.approx(ref.statistic, rel=1e-12)
    assert v.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert v.outcome is Outcome.PASS  # p ≈ 0.003 > 0.001
    assert v.threshold == pytest.approx(stats.chi2.isf(0.001, 1))


def test_mismatch_fails_and_says_so() -> None:
    v = sample_ratio_mismatch([9000, 1300], [0.9, 0.1])
    assert v.outcome is Outcome.FAIL
    assert "not what the operator set" in v.reason
    assert v.value == pytest.approx(1300 / 10300) and v.baseline == pytest.approx(0.1)
    assert v.samples == 10300


def test_three_arms_and_zero_weights() -> None:
    assert sample_ratio_mismatch([5000, 2500, 2500], [2, 1, 1]).outcome is Outcome.PASS
    # A weight-0 arm with a few in-flight requests is fine; with many it is a mismatch.
    assert sample_ratio_mismatch([10000, 3], [1, 0]).outcome is Outcome.PASS
    assert sample_ratio_mismatch([10000, 300], [1, 0]).outcome is Outcome.FAIL
    assert sample_ratio_mismatch([0, 0], [0, 0]).outcome is Outcome.INCONCLUSIVE


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ([], []),
        ([1, 2], [1]),
        ([math.nan, 5], [1, 1]),
        ([math.inf, 5], [1, 1]),
        ([-1, 500], [1, 1]),
        ([50, 40], [1, 1]),  # too little traffic
        ([990, 10], [999, 1]),  # an arm expecting < 5
    ],
)
def test_inconclusive(observed: list[float], weights: list[float]) -> None:
    v = sample_ratio_mismatch(observed, weights)
    assert v.outcome is Outcome.INCONCLUSIVE and v.reason


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 100), min_size=1, max_size=5),
    st.lists(st.integers(0, 10**5), min_size=5, max_size=5),
)
def test_no_exceptions_and_exact_split_passes(weights: list[int], counts: list[int]) -> None:
    counts = counts[: len(weights)]
    v = sample_ratio_mismatch(counts, [float(w) for w in weights])
    assert v.outcome in Outcome and v.reason
    if sum(weights) > 0:
        exact = [w * 1000 for w in weights]
        assert not sample_ratio_mismatch(exact, [float(w) for w in weights]).failed
