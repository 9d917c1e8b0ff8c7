"""A fast, seeded version of `make bench-stats` (docs/benchmarks.md).

Nothing here is hard-coded: the rates come from simulated streams judged by the real
``judge_*`` functions. Bounds are binomial: with R rollouts, an observed count above the 99th
percentile of Binomial(R, α) would reject "false-rollback rate ≤ α" at the 1% level, and power
is asserted through the lower end of a one-sided 99% Clopper-Pearson interval.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.helpers import power_lower, rate_allowed

from kanaria.analysis.latency import bucket_quantile
from kanaria.bench.stats import (
    ALPHA,
    BUCKETS,
    TUNED,
    Effect,
    MetricRun,
    Row,
    Scenario,
    StreamConfig,
    histogram_quantile,
    label_delay_shares,
    msprt_required_samples,
    run_benchmark,
    summarise,
)

ROLLOUTS = 300
SEED = 7
CFG = StreamConfig(baseline_accuracy=(0.90, 0.90), weight=0.5)




@pytest.fixture(scope="module")
def results() -> tuple[list[MetricRun], list[Row]]:
    scenarios = [
        Scenario("A/A", "accuracy"),
        Scenario("accuracy -2 points", "accuracy", Effect(accuracy_drop=0.02)),
        Scenario("A/A", "errors"),
        Scenario("errors x2", "errors", Effect(error_factor=2.0)),
    ]
    runs = run_benchmark(ROLLOUTS, SEED, scenarios=scenarios, cfg=CFG, workers=1)
    return runs, summarise(runs, CFG)


def _row(rows: list[Row], scenario: str, metric: str, horizon: str, policy: str) -> Row:
    found = [
        r for r in rows
        if r.scenario == scenario and r.metric == metric and r.horizon == horizon and r.policy == policy
    ]
    assert len(found) == 1, (scenario, metric, horizon, policy)
    return found[0]


@pytest.mark.parametrize("horizon", ["fixed-horizon n", "documented n"])
def test_aa_false_rollbacks_within_alpha(results: tuple[list[MetricRun], list[Row]], horizon: str) -> None:
    _, rows = results
    row = _row(rows, "A/A", "accuracy", horizon, "Kanaria")
    assert row.rollouts == ROLLOUTS and row.truncated == 0
    assert row.rollback_rate <= rate_allowed(ALPHA["accuracy"], ROLLOUTS), row


def test_aa_error_rate_false_rollbacks_within_alpha(results: tuple[list[MetricRun], list[Row]]) -> None:
    _, rows = results
    for horizon in ("30 min", "documented n"):
        row = _row(rows, "A/A", "errors", horizon, "Kanaria")
        assert row.rollback_rate <= rate_allowed(ALPHA["errors"], ROLLOUTS), row


def test_error_doubling_caught_with_power_at_the_documented_size(
    results: tuple[list[MetricRun], list[Row]]
) -> None:
    """0.5% → 1%: power ≥ 0.8 at the documented n, and at least the tuned threshold's rate;
    a doubled canary is almost never promoted first."""
    _, rows = results
    kanaria = _row(rows, "errors x2", "errors", "documented n", "Kanaria")
    assert power_lower(kanaria.rollback_rate, ROLLOUTS) >= 0.8, kanaria
    tuned = _row(rows, "errors x2", "errors", "documented n", TUNED.name)
    aa = _row(rows, "A/A", "errors", "documented n", TUNED.name)
    if aa.rollback_rate <= rate_allowed(ALPHA["errors"], ROLLOUTS):
        assert kanaria.rollback_rate >= tuned.rollback_rate - 0.05, (kanaria, tuned)
    assert (kanaria.passed_first or 0.0) <= rate_allowed(ALPHA["errors"], ROLLOUTS), kanaria


def test_power_at_the_documented_sample_size(results: tuple[list[MetricRun], list[Row]]) -> None:
    """A 2-point drop at a 90% baseline is caught with power ≥ 0.8 by the documented n."""
    _, rows = results
    row = _row(rows, "accuracy -2 points", "accuracy", "documented n", "Kanaria")
    assert row.truncated == 0
    assert power_lower(row.rollback_rate, ROLLOUTS) >= 0.8, row
    # Promoting the bad canary (PASS before any FAIL) is rare: the drop equals the margin.
    assert (row.passed_first or 0.0) <= rate_allowed(ALPHA["accuracy"], ROLLOUTS), row


@pytest.mark.parametrize("horizon", ["fixed-horizon n", "documented n"])
def test_kanaria_detects_at_least_as_often_as_thresholds_at_equal_false_rollbacks(
    results: tuple[list[MetricRun], list[Row]], horizon: str
) -> None:
    """Against every threshold variant that keeps A/A false rollbacks within the same bound."""
    _, rows = results
    bound = rate_allowed(ALPHA["accuracy"], ROLLOUTS)
    kanaria = _row(rows, "accuracy -2 points", "accuracy", horizon, "Kanaria")
    policies = {r.policy for r in rows if r.policy != "Kanaria"}
    assert TUNED.name in policies
    compared = 0
    for policy in policies:
        aa = _row(rows, "A/A", "accuracy", horizon, policy)
        if aa.rollback_rate > bound:
            continue  # not a like-for-like competitor: it rolls back healthy canaries
        compared += 1
        other = _row(rows, "accuracy -2 points", "accuracy", horizon, policy)
        assert kanaria.rollback_rate >= other.rollback_rate, (kanaria, other)
    assert compared >= 1


def test_sequential_sample_size_exceeds_the_fixed_horizon_one() -> None:
    from kanaria.analysis.proportions import error_rate_required_requests, required_samples_per_arm

    # More canary requests for a smaller increase; fewer when the stable has more traffic.
    assert error_rate_required_requests(0.005, 3.0) < error_rate_required_requests(0.005, 2.0)
    assert error_rate_required_requests(0.005, 2.0, share=0.1) < error_rate_required_requests(0.005, 2.0)

    for p in (0.80, 0.90, 0.95):
        fixed = required_samples_per_arm(p, 0.02)[0]
        assert fixed < msprt_required_samples(p, 0.02) < 4 * fixed


def test_same_seed_same_numbers_whatever_the_workers() -> None:
    scenario = [Scenario("errors x3", "errors", Effect(error_factor=3.0))]
    cfg = StreamConfig(time_horizon_intervals=8)
    one = run_benchmark(40, 3, scenarios=scenario, cfg=cfg, workers=1, chunk=10)[0]
    two = run_benchmark(40, 3, scenarios=scenario, cfg=cfg, workers=2, chunk=10)[0]
    assert np.array_equal(one.kanaria_fail, two.kanaria_fail)
    assert np.array_equal(one.tuning, two.tuning)


def test_histogram_quantile_matches_the_judges_version() -> None:
    rng = np.random.default_rng(1)
    counts = rng.multinomial(rng.integers(0, 60, 200), np.full(len(BUCKETS), 1 / len(BUCKETS)))
    counts[:, -1] = rng.integers(0, 2, 200)
    got = histogram_quantile(0.99, counts)
    for row, value in zip(counts, got, strict=True):
        want = bucket_quantile(0.99, BUCKETS, np.cumsum(row).tolist())
        assert (math.isnan(want) and math.isnan(value)) or math.isclose(want, value, rel_tol=1e-12)


def test_label_delay_shares_have_the_right_mean() -> None:
    means = np.array([0.5, 2.0, 10.0])
    shares = label_delay_shares(means, 200)
    assert np.allclose(shares.sum(axis=1), 1.0)
    # E[floor(U + X)] = E[U + X] - 1/2 = mean (U uniform on [0, 1)).
    offsets = shares @ np.arange(200)
    assert np.allclose(offsets, means, atol=0.02)
