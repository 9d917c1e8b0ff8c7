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
