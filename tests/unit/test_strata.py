"""Periods with different weights are judged as strata, never pooled (Simpson's paradox)."""

from __future__ import annotations

import numpy as np

from kanaria.analysis.proportions import judge_accuracy
from kanaria.analysis.strata import judge_accuracy_stratified


def test_simpsons_paradox_cannot_flip_the_verdict() -> None:
    """Equal models; hard traffic while the bandit gave the challenger 80%, easy traffic while
    it gave it 20%. Pooled, the challenger looks 15 points worse and is failed; by period it is
    exactly as good, and passes."""
    hard = (2800, 4000, 11200, 16000)  # both 0.70
    easy = (15200, 16000, 3800, 4000)  # both 0.95
    pooled = judge_accuracy(hard[0] + easy[0], hard[1] + easy[1], hard[2] + easy[2], hard[3] + easy[3])
    assert pooled.outcome.value == "fail"
    by_period = judge_accuracy_stratified([hard, easy])
    assert by_period.outcome.value == "pass", by_period.reason
    assert abs(by_period.details["delta"]) < 1e-12


def test_a_real_drop_is_still_caught_by_period() -> None:
    hard = (700, 1000, 2400, 4000)  # 0.70 vs 0.60
    easy = (3800, 4000, 850, 1000)  # 0.95 vs 0.85
    v = judge_accuracy_stratified([hard, easy])
    assert v.outcome.value == "fail" and v.details["delta"] < -0.09


def test_one_period_is_exactly_the_pooled_judge() -> None:
    one = (900, 1000, 450, 500)
    assert judge_accuracy_stratified([one]) == judge_accuracy(*one)


def test_equal_models_across_moving_weights_rarely_fail() -> None:
    """A/A over 4 periods whose difficulty and split both change: the false-fail rate stays
    at or below α (0.05), where pooling fails far more often (seed 11, 400 runs)."""
    rng = np.random.default_rng(11)
    runs, strat_fail, pooled_fail = 400, 0, 0
    for _ in range(runs):
        strata = []
        for acc, share in ((0.70, 0.8), (0.95, 0.2), (0.80, 0.6), (0.90, 0.3)):
            nc, nb = int(2000 * share), int(2000 * (1 - share))
            strata.append((rng.binomial(nb, acc), nb, rng.binomial(nc, acc), nc))
        strat_fail += judge_accuracy_stratified(strata).outcome.value == "fail"
        sums = [sum(s[i] for s in strata) for i in range(4)]
        pooled_fail += judge_accuracy(*sums).outcome.value == "fail"
    assert strat_fail / runs <= 0.05
    assert pooled_fail / runs > 0.5


# ------------------------------------------------------------------ error rate across periods
def test_simpsons_paradox_cannot_make_equal_error_rates_fail() -> None:
    """Period 1 is easy (0.5% errors in both revisions) while the canary has 10% of the traffic;
    period 2 is hard (5% in both) while the bandit has moved it to 60%. Pooled, the canary
    served mostly hard requests and looks far worse; by period it is equal."""
    from kanaria.analysis.proportions import judge_error_rate
    from kanaria.analysis.strata import judge_error_rate_stratified

    strata = [(90, 18000, 10, 2000), (400, 8000, 600, 12000)]
    pooled = judge_error_rate(*(sum(s[i] for s in strata) for i in range(4)), max_error_rate=None)
    assert pooled.failed
    verdict = judge_error_rate_stratified(strata, max_error_rate=None)
    assert not verdict.failed and verdict.statistic == "ratio-mixture-stratified"
    assert "2 periods" in verdict.reason


def test_a_doubled_error_rate_is_still_caught_by_period_and_one_period_is_the_pooled_judge() -> None:
    from kanaria.analysis.proportions import judge_error_rate
    from kanaria.analysis.strata import judge_error_rate_stratified

    worse = [(90, 18000, 20, 2000), (400, 8000, 1200, 12000)]
    assert judge_error_rate_stratified(worse, max_error_rate=None).failed
    one = [(50, 10000, 6, 1000)]
    assert judge_error_rate_stratified(one) == judge_error_rate(*one[0])


def test_equal_error_rates_across_moving_splits_rarely_fail_and_a_margin_worse_rarely_passes() -> None:
    """Always valid across repeated looks: 150 bandit-like rollouts of 20 periods, the split
    moving every period and the difficulty drifting; equal rates fail in at most α = 5%, and a
    canary exactly 1.5× worse (the margin) passes in at most α."""
    from kanaria.analysis.strata import judge_error_rate_stratified

    rng = np.random.default_rng(4)
    for factor, outcome in ((1.0, "fail"), (1.5, "pass")):
        hits = 0
        for _ in range(150):
            strata: list[tuple[float, float, float, float]] = []
            for _ in range(20):
                share = rng.uniform(0.1, 0.9)
                rate = rng.uniform(0.002, 0.03)
                n = 600
                rc, rb = int(n * share), n - int(n * share)
                strata.append((rng.binomial(rb, rate), rb, rng.binomial(rc, min(1.0, rate * factor)), rc))
                v = judge_error_rate_stratified(strata, max_error_rate=None, min_requests=1)
                if v.outcome.value != "inconclusive":
                    hits += v.outcome.value == outcome
                    break
        assert hits / 150 <= 0.05, (factor, hits)
