"""A/B winner selection and Thompson allocation (pure)."""

from __future__ import annotations

import math

import pytest

from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout.winner import ab_winner, higher_is_better, thompson_weight


def v(outcome: Outcome, value: float, baseline: float, n: int = 4000, nb: int = 4000, **kw: float) -> Verdict:
    return Verdict(outcome, "t", value=value, baseline=baseline, samples=n, baseline_samples=nb, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "verdict", "expected"),
    [
        ("accuracy", v(Outcome.PASS, 0.93, 0.90), "challenger"),
        ("accuracy", v(Outcome.PASS, 0.905, 0.90), None),  # not significantly better
        ("accuracy", v(Outcome.FAIL, 0.85, 0.90), "incumbent"),
        ("accuracy", v(Outcome.INCONCLUSIVE, 0.99, 0.90, n=10), None),
        ("errorRate", v(Outcome.PASS, 0.001, 0.02), "challenger"),
        ("errorRate", v(Outcome.PASS, 0.02, 0.001), None),  # more errors is never "better"
        ("custom", Verdict(Outcome.PASS, "ok"), "challenger"),
        ("drift", v(Outcome.PASS, 0.0, 0.0), None),
        ("latency", v(Outcome.PASS, 0.30, 0.5, p_value=0.9999, threshold=0.56), "challenger"),
        ("latency", v(Outcome.PASS, 0.49, 0.5, p_value=0.6, threshold=0.56), None),
        ("accuracy", v(Outcome.PASS, math.nan, 0.9), None),
    ],
)
def test_ab_winner(kind: str, verdict: Verdict, expected: str | None) -> None:
    assert ab_winner(kind, verdict) == expected


def test_thompson_weight_follows_the_evidence_and_keeps_the_floor() -> None:
    even = thompson_weight(v(Outcome.PASS, 0.90, 0.90))
    assert even == 50
    strong = thompson_weight(v(Outcome.PASS, 0.95, 0.90), floor=10)
    weak = thompson_weight(v(Outcome.PASS, 0.85, 0.90), floor=10)
    assert strong == 90 and weak == 10
    mild = thompson_weight(v(Outcome.PASS, 0.905, 0.90, n=300, nb=300), floor=5)
    assert mild is not None and 50 < mild < 95
    assert thompson_weight(v(Outcome.PASS, 0.01, 0.02), higher_is_better=False) == 90
    assert thompson_weight(Verdict(Outcome.PASS, "no numbers")) is None


def test_one_direction_of_better_for_every_kind() -> None:
    """The bandit and the choice among several winners read "better" the same way."""
    assert higher_is_better("accuracy") and higher_is_better("custom")
    assert not higher_is_better("errorRate") and not higher_is_better("latency")
