"""The label-timing benchmark (operator/kanaria/bench/cohorts.py), small and seeded.

Cohorts of predictions keep the A/A false-rollback rate within α where counting labels by
arrival does not; pooling across a change of the split flips verdicts, stratifying does not.
Bounds are binomial, as in test_bench_stats.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.helpers import power_lower, rate_allowed

from kanaria.analysis.proportions import judge_accuracy, msprt_variance
from kanaria.analysis.sequential import normal_mixture_radius
from kanaria.api.verdict import Outcome
from kanaria.bench.cohorts import (
    ARRIVAL,
    COHORTS,
    MIN_LABELS,
    STRATIFIED,
    CohortConfig,
    CohortRow,
    _always_valid_codes,
    _stratified_arrays,
    cohort_scenarios,
    first_decisions,
    mixture_radius,
    run_cohort_benchmark,
    simulate,
    stratified_difference,
    summarise_cohorts,
)

ROLLOUTS = 200
SEED = 7
ERRORS_FIRST, CORRECT_FIRST, DRIFT, BANDIT = cohort_scenarios()




@pytest.fixture(scope="module")
def rows() -> list[CohortRow]:
    runs = run_cohort_benchmark(
        ROLLOUTS, SEED, scenarios=[ERRORS_FIRST, CORRECT_FIRST, BANDIT], volumes=(1000.0,)
    )
    return summarise_cohorts(runs)


def _row(rows: list[CohortRow], scenario: str, policy: str) -> CohortRow:
    found = [r for r in rows if r.scenario == scenario and r.policy == policy]
    assert len(found) == 1, (scenario, policy)
    return found[0]


def test_cohorts_keep_false_rollbacks_and_promotions_within_alpha(rows: list[CohortRow]) -> None:
    bound = rate_allowed(0.05, ROLLOUTS)
    for scenario in (ERRORS_FIRST, CORRECT_FIRST):
        row = _row(rows, scenario.name, COHORTS)
        assert row.truncated == 0
        assert row.false_rollback <= bound, row
        assert (row.bad_promoted or 0.0) <= bound, row
        assert power_lower(row.detected, ROLLOUTS) >= 0.7, row


def test_arrival_window_is_biased_by_outcome_dependent_delay(rows: list[CohortRow]) -> None:
    """Errors labelled first: healthy canaries rolled back; correct first: worse ones promoted."""
    assert _row(rows, ERRORS_FIRST.name, ARRIVAL).false_rollback >= 0.5
    assert (_row(rows, CORRECT_FIRST.name, ARRIVAL).bad_promoted or 0.0) >= 0.5


def test_pooling_across_a_split_change_flips_verdicts_stratifying_does_not(rows: list[CohortRow]) -> None:
    bound = rate_allowed(0.05, ROLLOUTS)
    pooled = _row(rows, BANDIT.name, COHORTS)
    assert pooled.false_rollback >= 0.5 and (pooled.bad_promoted or 0.0) >= 0.3, pooled
    stratified = _row(rows, BANDIT.name, STRATIFIED)
    assert stratified.false_rollback <= bound and (stratified.bad_promoted or 0.0) <= bound, stratified
    assert stratified.detected >= 0.6, stratified


def test_drift_biases_the_arrival_window_not_the_cohorts() -> None:
    runs = run_cohort_benchmark(100, SEED, scenarios=[DRIFT], volumes=(1000.0,))
    got = {r.policy: r for r in summarise_cohorts(runs)}
    assert got[COHORTS].false_rollback <= rate_allowed(0.05, 100), got[COHORTS]
    assert got[ARRIVAL].false_rollback >= 0.1, got[ARRIVAL]


def test_first_decisions_match_the_judge_called_at_every_look() -> None:
    """The vectorised screen may skip looks, never change the first FAIL or PASS."""
    rng = np.random.default_rng(3)
    for scenario, bad in ((ERRORS_FIRST, False), (CORRECT_FIRST, True), (BANDIT, False)):
        counts = simulate(rng, scenario, bad, 300.0, 12, CohortConfig()).arrival
        last = counts[0].shape[1] - 1
        stop = np.full(12, last, dtype=np.int64)
        fail, passed = first_decisions(*counts, stop)
        for r in range(12):
            want_fail, want_pass = -1, -1
            for look in range(last + 1):
                xb, nb, xc, nc = (int(a[r, look]) for a in counts)
                outcome = judge_accuracy(xb, nb, xc, nc, min_samples=MIN_LABELS)
                if outcome.outcome is Outcome.FAIL:
                    want_fail = look
                    break
                if outcome.outcome is Outcome.PASS and want_pass < 0:
                    want_pass = look
            assert (fail[r], passed[r]) == (want_fail, want_pass), (scenario.name, r)


def test_stratified_difference_with_one_stratum_is_the_pooled_statistic() -> None:
    delta, variance = stratified_difference([(900, 1000, 880, 1000)])
    assert math.isclose(delta, 0.88 - 0.90)
    assert math.isclose(variance, msprt_variance(900, 1000, 880, 1000))


def test_stratified_difference_resolves_simpsons_paradox() -> None:
    """Equal arms in each period; the canary got the hard period: pooled −3.4 points."""
    strata = [(930, 1000, 465, 500), (170, 200, 1020, 1200)]
    pooled = sum(s[2] for s in strata) / 1700 - sum(s[0] for s in strata) / 1200
    assert pooled < -0.03
    delta, _ = stratified_difference(strata)
    assert abs(delta) < 1e-12


def test_stratified_difference_skips_empty_strata_and_rejects_bad_counts() -> None:
    assert stratified_difference([(0, 0, 5, 10), (90, 100, 80, 100)]) == stratified_difference(
        [(90, 100, 80, 100)]
    )
    delta, variance = stratified_difference([(0, 0, 5, 10)])
    assert math.isnan(delta) and math.isinf(variance)
    with pytest.raises(ValueError):
        stratified_difference([(11, 10, 5, 10)])


def test_vectorised_statistics_match_the_scalar_ones() -> None:
    rng = np.random.default_rng(5)
    nb = rng.integers(0, 400, (50, 3)).astype(float)
    nc = rng.integers(0, 400, (50, 3)).astype(float)
    xb, xc = rng.binomial(nb.astype(int), 0.9).astype(float), rng.binomial(nc.astype(int), 0.88).astype(float)
    delta, variance, _ = _stratified_arrays(xb, nb, xc, nc)
    for k in range(50):
        want = stratified_difference(list(zip(xb[k], nb[k], xc[k], nc[k], strict=True)))
        assert (math.isnan(want[0]) and math.isnan(delta[k])) or math.isclose(want[0], delta[k])
        assert math.isclose(want[1], variance[k]) or want[1] == variance[k] == math.inf
    v = np.geomspace(1e-7, 1e-2, 20)
    assert np.allclose(mixture_radius(v), [normal_mixture_radius(float(x), 0.02, 0.05) for x in v])


def test_stratified_rule_with_one_stratum_agrees_with_judge_accuracy() -> None:
    """The stratified verdict mirrors judge_accuracy's rule; if the judge changes (a variance
    floor, say), this is where the two part."""
    rng = np.random.default_rng(11)
    nb = rng.integers(MIN_LABELS, 20000, 300)
    nc = rng.integers(MIN_LABELS, 20000, 300)
    xb = rng.binomial(nb, 0.9)
    xc = rng.binomial(nc, rng.uniform(0.86, 0.92, 300))
    delta, variance, pass_variance = _stratified_arrays(*(a[:, None].astype(float) for a in (xb, nb, xc, nc)))
    fail, passed = _always_valid_codes(delta, variance, pass_variance, np.ones(300, dtype=bool))
    for k in range(300):
        outcome = judge_accuracy(int(xb[k]), int(nb[k]), int(xc[k]), int(nc[k]), min_samples=MIN_LABELS).outcome
        want = "fail" if outcome is Outcome.FAIL else "pass" if outcome is Outcome.PASS else "-"
        got = "fail" if fail[k] else "pass" if passed[k] else "-"
        assert got == want, (k, xb[k], nb[k], xc[k], nc[k])


def test_same_seed_same_numbers_whatever_the_workers() -> None:
    one = run_cohort_benchmark(40, 3, scenarios=[ERRORS_FIRST], volumes=(1000.0,), workers=1, chunk=10)
    two = run_cohort_benchmark(40, 3, scenarios=[ERRORS_FIRST], volumes=(1000.0,), workers=2, chunk=10)
    for a, b in zip(one, two, strict=True):
        for policy in a.fail:
            assert np.array_equal(a.fail[policy], b.fail[policy])
            assert np.array_equal(a.passed[policy], b.passed[policy])
