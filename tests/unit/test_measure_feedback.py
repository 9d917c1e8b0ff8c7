"""The feedback and rating metric kinds: what the spec accepts, and measure() reading the
monitor library's matured counters of the same period for both arms.

The provider is a stand-in for one function's unit test (answers from a table); the real
Prometheus path is tests/e2e/test_llm_feedback.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kanaria.analysis.measure import Target, measure
from kanaria.analysis.provider import QueryResult, Sample
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm

TARGET = Target("chat", "llm", "chat")
PLAN = AnalysisPlan(("m",), Arm("canary1", 900), Arm("stable1", 900))


class TableProvider:
    def __init__(self, answer: dict[str, float]) -> None:
        self.answer = answer
        self.queries: list[str] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.queries.append(promql)
        for needle, value in self.answer.items():
            if needle in promql:
                return QueryResult(promql, (Sample({}, value),))
        return QueryResult(promql)

    def online(self) -> str | None:
        return None


def test_the_spec_accepts_feedback_and_rating_and_refuses_what_cannot_be_judged() -> None:
    fb = Metric.model_validate({"name": "thumbs", "kind": "feedback", "margin": 0.02})
    assert fb.maturity_seconds() == 300 and fb.signal is None
    rating = Metric.model_validate({"name": "stars", "kind": "rating", "ratingMin": 1, "ratingMax": 5,
                                    "margin": 0.3, "signal": "stars", "maturity": "30s"})
    assert (rating.rating_min, rating.rating_max, rating.maturity_seconds()) == (1, 5, 30)
    with pytest.raises(ValidationError, match="ratingMin < ratingMax"):
        Metric.model_validate({"name": "s", "kind": "rating", "ratingMin": 5, "ratingMax": 1})
    with pytest.raises(ValidationError, match="at most 1"):
        Metric.model_validate({"name": "t", "kind": "feedback", "margin": 2})
    with pytest.raises(ValidationError, match="must not be 0s"):
        Metric.model_validate({"name": "s", "kind": "rating", "ratingMin": 1, "ratingMax": 5, "maturity": "0s"})


def test_feedback_reads_the_matured_cohorts_of_both_arms() -> None:
    """5m: both arms' answers counted 300 s after they were served ([600s] of the 900 s step);
    positive against positive + negative (answers without feedback do not count)."""
    provider = TableProvider({
        'revision="stable1",signal="thumbs",horizon="300",outcome="positive"': 9500,
        'revision="stable1",signal="thumbs",horizon="300",outcome="negative"': 500,
        'revision="canary1",signal="thumbs",horizon="300",outcome="positive"': 2760,
        'revision="canary1",signal="thumbs",horizon="300",outcome="negative"': 240,
    })  # fmt: skip
    v = measure([Metric(name="m", kind="feedback")], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail" and (v.samples, v.baseline_samples) == (3000, 10000)
    assert v.value == pytest.approx(0.92) and v.baseline == pytest.approx(0.95)
    assert "positive feedback" in v.reason
    assert all("kanaria_model_feedback_matured_total" in q and "[600s]" in q for q in provider.queries)


def test_feedback_by_arrival_with_maturity_zero_and_another_signal() -> None:
    provider = TableProvider({
        'revision="stable1",signal="task_success",outcome="positive"': 950,
        'revision="stable1",signal="task_success",outcome="negative"': 50,
        'revision="canary1",signal="task_success",outcome="positive"': 951,
        'revision="canary1",signal="task_success",outcome="negative"': 49,
    })  # fmt: skip
    metric = Metric(name="m", kind="feedback", signal="task_success", maturity="0s", min_samples=100)
    v = measure([metric], PLAN, provider, TARGET)["m"]
    assert (v.samples, v.baseline_samples) == (1000, 1000)
    assert all("kanaria_model_feedback_total" in q and "[900s]" in q for q in provider.queries)


def test_feedback_without_any_matured_answer_is_inconclusive_and_says_where_it_looked() -> None:
    v = measure([Metric(name="m", kind="feedback")], PLAN, TableProvider({}), TARGET)["m"]
    assert v.outcome.value == "inconclusive"
    early = AnalysisPlan(("m",), Arm("canary1", 120), Arm("stable1", 120))
    v = measure([Metric(name="m", kind="feedback")], early, TableProvider({}), TARGET)["m"]
    assert v.outcome.value == "inconclusive" and "mature 300s after" in v.reason


def test_rating_reads_count_sum_and_squares_and_reports_means_on_the_scale() -> None:
    """Shifted sums: stable mean 1 + 3.0 = 4.0, canary 1 + 2.5 = 3.5 over 2,000 ratings each,
    sd about 1: half a star lower fails."""
    provider = TableProvider({
        'ratings_matured_total{model="chat",revision="stable1",signal="stars",horizon="300",outcome="rated"': 2000,
        'rating_sum_matured_total{model="chat",revision="stable1"': 6000,
        'rating_squares_matured_total{model="chat",revision="stable1"': 2000 * (9 + 1),
        'ratings_matured_total{model="chat",revision="canary1",signal="stars",horizon="300",outcome="rated"': 2000,
        'rating_sum_matured_total{model="chat",revision="canary1"': 5000,
        'rating_squares_matured_total{model="chat",revision="canary1"': 2000 * (6.25 + 1),
    })  # fmt: skip
    metric = Metric(name="m", kind="rating", signal="stars", rating_min=1, rating_max=5)
    v = measure([metric], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail", v.reason
    assert v.value == pytest.approx(3.5) and v.baseline == pytest.approx(4.0)
    assert v.details["sd"] == pytest.approx(1.0)


def test_feedback_and_rating_verdicts_render_in_status_and_the_cli() -> None:
    """The verdicts land in status.analysis (MetricResult) with their kind and show in
    `kubectl kanaria status`'s table with the means on the rating's scale."""
    from datetime import UTC, datetime

    from kanaria.api.models import MetricResult
    from kanaria.cli.render import analysis_table

    provider = TableProvider({
        'revision="stable1",signal="thumbs",horizon="300",outcome="positive"': 9500,
        'revision="stable1",signal="thumbs",horizon="300",outcome="negative"': 500,
        'revision="canary1",signal="thumbs",horizon="300",outcome="positive"': 2760,
        'revision="canary1",signal="thumbs",horizon="300",outcome="negative"': 240,
        'ratings_matured_total{model="chat",revision="stable1"': 600,
        'rating_sum_matured_total{model="chat",revision="stable1"': 1800,
        'rating_squares_matured_total{model="chat",revision="stable1"': 6000,
        'ratings_matured_total{model="chat",revision="canary1"': 600,
        'rating_sum_matured_total{model="chat",revision="canary1"': 1790,
        'rating_squares_matured_total{model="chat",revision="canary1"': 6000,
    })  # fmt: skip
    metrics = [Metric(name="thumbs", kind="feedback"),
               Metric(name="stars", kind="rating", rating_min=1, rating_max=5)]
    plan = AnalysisPlan(("thumbs", "stars"), Arm("canary1", 900), Arm("stable1", 900))
    verdicts = measure(metrics, plan, provider, TARGET)
    kinds = {m.name: m.kind for m in metrics}
    results = [
        MetricResult(metric=n, kind=kinds[n], verdict=v.outcome.value, value=v.value, baseline=v.baseline,
                     samples=v.samples, baseline_samples=v.baseline_samples, statistic=v.statistic,
                     reason=v.reason).model_dump(by_alias=True)
        for n, v in verdicts.items()
    ]
    text = analysis_table(results, datetime.now(UTC))
    assert "feedback" in text and "rating" in text and "msprt-mean" in text
    assert "3000/10000" in text and "600/600" in text and "3.983" in text


def test_feedback_over_periods_of_different_weights_is_stratified_not_pooled() -> None:
    """A bandit moved the split 600 s and 300 s ago: three periods, each judged on its own
    cohort window (shifted by H), combined without pooling."""
    plan = AnalysisPlan(("m",), Arm("canary1", 900), Arm("stable1", 900), periods=(600.0, 300.0))
    provider = TableProvider({
        'revision="stable1",signal="thumbs",horizon="60",outcome="positive"': 950,
        'revision="stable1",signal="thumbs",horizon="60",outcome="negative"': 50,
        'revision="canary1",signal="thumbs",horizon="60",outcome="positive"': 900,
        'revision="canary1",signal="thumbs",horizon="60",outcome="negative"': 100,
    })  # fmt: skip
    v = measure([Metric(name="m", kind="feedback", maturity="1m", min_samples=100)], plan, provider, TARGET)["m"]
    assert v.statistic == "msprt-stratified" and "3 periods" in v.reason and "positive feedback" in v.reason
    assert v.outcome.value == "fail" and (v.samples, v.baseline_samples) == (3000, 3000)
    assert {q[q.index("[") :] for q in provider.queries} == {"[300s] offset 540s))", "[300s] offset 240s))", "[240s]))"}
