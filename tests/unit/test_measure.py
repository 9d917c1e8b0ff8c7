"""Query templates (escaping) and measure() turning query results into verdicts.

The provider here is a stand-in for one function's unit test: it answers queries from a
table. The real Prometheus path is covered in tests/e2e.
"""

from __future__ import annotations

import math

import pytest

from kanaria.analysis.measure import Target, measure, parse_condition
from kanaria.analysis.provider import QueryResult, Sample
from kanaria.analysis.templates import TemplateError, escape_label_value, fill_template
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm

PLAN = AnalysisPlan(("m",), Arm("canary1", 60), Arm("stable1", 60))
TARGET = Target("iris", "models", "iris")


class TableProvider:
    def __init__(self, answer: dict[str, QueryResult] | None = None, default: QueryResult | None = None) -> None:
        self.answer = answer or {}
        self.default = default
        self.queries: list[str] = []
        self.times: list[float | None] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.queries.append(promql)
        self.times.append(at)
        for needle, result in self.answer.items():
            if needle in promql:
                return result
        return self.default or QueryResult(promql)

    def online(self) -> str | None:
        return None


@pytest.mark.parametrize("hostile", ['a"} or vector(1) #', "x\\", "line\nbreak", 'a"}[5m])) or up{x="'])
def test_label_values_cannot_change_the_query(hostile: str) -> None:
    q = fill_template('sum(x{revision="{{revision}}"})', {"revision": hostile})
    # The value stays one PromQL string: only the one pair of unescaped quotes around it.
    body = q[len('sum(x{revision="') : -len('"})')]
    assert escape_label_value(hostile) == body
    unescaped = [i for i, ch in enumerate(body) if ch == '"' and (i == 0 or body[i - 1] != "\\")]
    assert not unescaped and "\n" not in body


def test_placeholders_outside_quotes_are_refused() -> None:
    with pytest.raises(TemplateError, match="inside double quotes"):
        fill_template("sum(x) by ({{revision}})", {"revision": "r"})
    with pytest.raises(TemplateError, match="unknown variable"):
        fill_template('x{a="{{nope}}"}', {"revision": "r"})
    assert fill_template('rate(x{r="{{revision}}"}[{{window}}])', {"revision": "r", "window": "60s"}) == 'rate(x{r="r"}[60s])'


@pytest.mark.parametrize(("text", "parsed"), [("< 0.05", ("<", 0.05)), (">=0.9", (">=", 0.9)), ("!= 1", ("!=", 1.0))])
def test_conditions(text: str, parsed: tuple[str, float]) -> None:
    assert parse_condition(text) == parsed


def custom(condition: str = "< 0.05") -> Metric:
    return Metric(name="m", kind="custom", query='max(e{revision="{{revision}}"})', condition=condition)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (QueryResult("q", (Sample({}, 0.01),)), "pass"),
        (QueryResult("q", (Sample({}, 0.2),)), "fail"),
        (QueryResult("q", ()), "inconclusive"),  # empty
        (QueryResult("q", (Sample({}, math.nan),)), "inconclusive"),
        (QueryResult("q", (Sample({}, math.inf),)), "inconclusive"),
        (QueryResult("q", error="ConnectionError: refused"), "inconclusive"),
        (QueryResult("q", (Sample({"a": "1"}, 0.01), Sample({"a": "2"}, 0.01))), "inconclusive"),
    ],
)
def test_custom_metric_never_passes_on_missing_evidence(result: QueryResult, outcome: str) -> None:
    v = measure([custom()], PLAN, TableProvider(default=result), TARGET)["m"]
    assert v.outcome.value == outcome
    if result.error:
        assert "metrics unavailable" in v.reason
        assert v.error == "ConnectionError: refused" and v.unavailable
    else:
        assert v.error is None and not v.unavailable


def test_accuracy_counts_flow_into_the_judge() -> None:
    answers = {
        'revision="stable1",outcome="correct"': QueryResult("q", (Sample({}, 9000.0),)),
        'revision="stable1"}': QueryResult("q", (Sample({}, 10000.0),)),
        'revision="canary1",outcome="correct"': QueryResult("q", (Sample({}, 1500.0),)),
        'revision="canary1"}': QueryResult("q", (Sample({}, 2000.0),)),
    }
    provider = TableProvider(answers)
    v = measure([Metric(name="m", kind="accuracy", maturity="0s")], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail"
    assert (v.samples, v.baseline_samples) == (2000, 10000)
    assert v.value == pytest.approx(0.75) and v.baseline == pytest.approx(0.9)
    assert all("[60s]" in q for q in provider.queries)


def test_accuracy_waits_for_enough_labels() -> None:
    answers = {
        'outcome="correct"': QueryResult("q", (Sample({}, 5.0),)),
        "labels_total": QueryResult("q", (Sample({}, 10.0),)),
    }
    v = measure([Metric(name="m", kind="accuracy", maturity="0s")], PLAN, TableProvider(answers), TARGET)["m"]
    assert v.outcome.value == "inconclusive"


def test_accuracy_by_cohort_reads_matured_counts_of_the_same_period() -> None:
    """Maturity 5m: both arms over the window since the step began, shifted by H, at horizon
    H; labelled = correct + incorrect, unlabelled apart (for both)."""
    plan = AnalysisPlan(("m",), Arm("canary1", 900), Arm("stable1", 900))
    answers = {
        'revision="stable1",horizon="300",outcome="correct"': QueryResult("q", (Sample({}, 9000.0),)),
        'revision="stable1",horizon="300",outcome="incorrect"': QueryResult("q", (Sample({}, 1000.0),)),
        'revision="stable1",horizon="300",outcome="unlabelled"': QueryResult("q", (Sample({}, 500.0),)),
        'revision="canary1",horizon="300",outcome="correct"': QueryResult("q", (Sample({}, 1500.0),)),
        'revision="canary1",horizon="300",outcome="incorrect"': QueryResult("q", (Sample({}, 500.0),)),
        'revision="canary1",horizon="300",outcome="unlabelled"': QueryResult("q", (Sample({}, 100.0),)),
    }
    provider = TableProvider(answers)
    v = measure([Metric(name="m", kind="accuracy", maturity="5m")], plan, provider, TARGET)["m"]
    assert v.outcome.value == "fail" and (v.samples, v.baseline_samples) == (2000, 10000)
    assert v.details["unlabelled"] == 100 and v.details["baseline_unlabelled"] == 500
    assert all("kanaria_model_matured_total" in q and "[600s]" in q for q in provider.queries), provider.queries


def test_accuracy_by_cohort_waits_for_the_first_predictions_to_mature() -> None:
    plan = AnalysisPlan(("m",), Arm("canary1", 120), Arm("stable1", 120))
    provider = TableProvider(default=QueryResult("q", (Sample({}, 10.0),)))
    v = measure([Metric(name="m", kind="accuracy", maturity="5m")], plan, provider, TARGET)["m"]
    assert v.outcome.value == "inconclusive" and "mature 300s after" in v.reason and not provider.queries


def test_accuracy_by_cohort_says_when_the_horizon_is_not_exported() -> None:
    plan = AnalysisPlan(("m",), Arm("canary1", 900), Arm("stable1", 900))
    v = measure([Metric(name="m", kind="accuracy", maturity="5m")], plan, TableProvider(), TARGET)["m"]
    assert v.outcome.value == "inconclusive" and "KANARIA_MATURITY_HORIZONS" in v.reason


@pytest.mark.parametrize(
    ("arm", "horizon", "cohort"),
    [
        (Arm("r", 600), 300, Arm("r", 300, 0)),  # predictions of the last 10 min, matured in the last 5
        (Arm("r", 200), 300, None),  # none matured yet
        (Arm("r", 600, 900), 300, Arm("r", 600, 600)),  # an old window: the same length, 5 min later
        (Arm("r", 600, 100), 300, Arm("r", 400, 0)),  # partly not matured yet: cut at now
    ],
)
def test_cohort_arm_shifts_the_window_by_the_horizon(arm: Arm, horizon: float, cohort: Arm | None) -> None:
    from kanaria.analysis.measure import cohort_arm

    assert cohort_arm(arm, horizon) == cohort


def test_latency_from_buckets() -> None:
    bounds = ["0.05", "0.1", "0.2", "+Inf"]
    slow = QueryResult("q", tuple(Sample({"le": le}, c) for le, c in zip(bounds, [0, 100, 900, 1000], strict=True)))
    fast = QueryResult("q", tuple(Sample({"le": le}, c) for le, c in zip(bounds, [500, 900, 1000, 1000], strict=True)))
    provider = TableProvider({'revision="canary1"': slow, 'revision="stable1"': fast})
    v = measure([Metric(name="m", kind="latency")], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail" and v.samples == 1000


def test_a_latency_objective_judges_the_share_of_slow_requests() -> None:
    """Equal distributions, but 20% of the canary's requests are slower than the 0.1 s objective:
    above the default maxExceedance 0.1 it fails; allowed 0.3 it passes."""
    bounds = ["0.05", "0.1", "0.2", "+Inf"]
    same = QueryResult("q", tuple(Sample({"le": le}, c) for le, c in zip(bounds, [4000, 8000, 10000, 10000], strict=True)))
    provider = TableProvider({'revision="canary1"': same, 'revision="stable1"': same})
    strict = measure([Metric(name="m", kind="latency", objectiveSeconds=0.1)], PLAN, provider, TARGET)["m"]
    assert strict.outcome.value == "fail" and strict.statistic == "exceedance"
    assert "20.00% of canary requests slower than 0.1s" in strict.reason
    loose = Metric(name="m", kind="latency", objectiveSeconds=0.1, maxExceedance=0.3)
    assert measure([loose], PLAN, provider, TARGET)["m"].outcome.value == "pass"


def test_undefined_metric_is_inconclusive() -> None:
    plan = AnalysisPlan(("ghost",), PLAN.candidate, PLAN.baseline)
    v = measure([custom()], plan, TableProvider(), TARGET)["ghost"]
    assert v.outcome.value == "inconclusive" and "not defined" in v.reason


@pytest.mark.parametrize(("canary", "outcome"), [(1000.0, "pass"), (2500.0, "fail")])
def test_weighted_split_is_checked_for_sample_ratio_mismatch(canary: float, outcome: str) -> None:
    answers = {
        'requests_total{model="iris",revision="canary1"}': QueryResult("q", (Sample({}, canary),)),
        'requests_total{model="iris",revision="stable1"}': QueryResult("q", (Sample({}, 9000.0),)),
    }
    plan = AnalysisPlan((), PLAN.candidate, PLAN.baseline, expected_split=(10, 90))
    provider = TableProvider(answers)
    v = measure([], plan, provider, TARGET)["sample-ratio"]
    assert v.outcome.value == outcome and v.samples == int(canary + 9000)
    assert len(set(provider.times)) == 1  # both counts from one instant
    # Without a configured split (shadow, match, watch window) there is no such verdict.
    assert "sample-ratio" not in measure([], PLAN, TableProvider(answers), TARGET)


def test_a_revision_prometheus_has_not_scraped_yet_leaves_the_split_unjudged() -> None:
    """Right after a step starts the new revision's server may not be scraped yet: its request
    series is absent. That is missing evidence, not zero requests (no false mismatch)."""
    answers = {'requests_total{model="iris",revision="stable1"}': QueryResult("q", (Sample({}, 900.0),))}
    plan = AnalysisPlan((), PLAN.candidate, PLAN.baseline, expected_split=(20, 80))
    v = measure([], plan, TableProvider(answers), TARGET)["sample-ratio"]
    assert v.outcome.value == "inconclusive"
    assert "no request series of revision canary1 yet" in v.reason
    # Counted from the series' growth since the window began, not increase(): a new series'
    # requests before its first scrape count too.
    provider = TableProvider({**answers, 'revision="canary1"': QueryResult("q", (Sample({}, 225.0),))})
    assert measure([], plan, provider, TARGET)["sample-ratio"].outcome.value == "pass"
    assert all("max_over_time(kanaria_model_requests_total" in q for q in provider.queries)


def test_accuracy_when_a_bandit_moved_the_split_is_judged_per_period() -> None:
    """Equal models; the first 5 minutes hard traffic with the challenger at 80%, the last 5
    easy traffic with it at 20%: per period both revisions are equal and the verdict passes,
    where the pooled counts would fail the challenger (Simpson's paradox)."""
    def n(x: float) -> QueryResult:
        return QueryResult("q", (Sample({}, x),))

    answers = {  # matched in order: the first needle found in the query answers it
        'revision="stable1",outcome="correct"}[300s] offset 300s': n(2800.0),
        'revision="stable1"}[300s] offset 300s': n(4000.0),
        'revision="canary1",outcome="correct"}[300s] offset 300s': n(11200.0),
        'revision="canary1"}[300s] offset 300s': n(16000.0),
        'revision="stable1",outcome="correct"}[300s]': n(15200.0),
        'revision="stable1"}[300s]': n(16000.0),
        'revision="canary1",outcome="correct"}[300s]': n(3800.0),
        'revision="canary1"}[300s]': n(4000.0),
    }
    plan = AnalysisPlan(("m",), Arm("canary1", 600), Arm("stable1", 600), periods=(300.0,))
    v = measure([Metric(name="m", kind="accuracy", maturity="0s")], plan, TableProvider(answers), TARGET)["m"]
    assert v.statistic == "msprt-stratified" and v.outcome.value == "pass", v.reason
    assert (v.samples, v.baseline_samples) == (20000, 20000)


@pytest.mark.parametrize(
    ("periods", "cut"),
    [((), [(600, 0)]), ((400.0, 100.0), [(200, 400), (300, 100), (100, 0)]), ((900.0, 50.0), [(550, 50), (50, 0)])],
)
def test_period_arms_cut_the_window_at_each_split_change(periods: tuple[float, ...], cut: list[tuple[float, float]]) -> None:
    from kanaria.analysis.measure import period_arms

    assert [(a.window, a.offset) for a in period_arms(Arm("r", 600), periods)] == cut


def test_a_custom_metric_opts_into_cohorts_with_maturity() -> None:
    """{{window}} becomes the window of matured counts for the step's predictions and
    {{horizon}} the horizon, so a custom ratio of matured counters judges cohorts too."""
    query = ('sum(increase(kanaria_model_matured_total{revision="{{revision}}",horizon="{{horizon}}",'
             'outcome="correct"}[{{window}}]))')
    metric = Metric(name="m", kind="custom", query=query, condition="> 0", maturity="5m")
    plan = AnalysisPlan(("m",), Arm("canary1", 900), Arm("stable1", 900))
    provider = TableProvider(default=QueryResult("q", (Sample({}, 42.0),)))
    v = measure([metric], plan, provider, TARGET)["m"]
    assert v.outcome.value == "pass"
    assert provider.queries == [
        'sum(increase(kanaria_model_matured_total{revision="canary1",horizon="300",outcome="correct"}[600s]))'
    ]
    early = measure([metric], AnalysisPlan(("m",), Arm("canary1", 200), Arm("stable1", 200)), provider, TARGET)["m"]
    assert early.outcome.value == "inconclusive" and "mature 300s after" in early.reason


def _buckets(counts: list[float], bounds: tuple[str, ...] = ("0.05", "0.1", "0.25", "0.5", "+Inf")) -> QueryResult:
    return QueryResult("q", tuple(Sample({"le": le}, c) for le, c in zip(bounds, counts, strict=True)))


@pytest.mark.parametrize("kind", ["timeToFirstToken", "timePerOutputToken", "requestLatency", "queueTime"])
def test_llm_latency_kinds_read_vllms_histograms_by_revision(kind: str) -> None:
    """No PromQL to write: each kind reads vLLM's own histogram of the revision, judged like latency."""
    from kanaria.analysis.measure import VLLM_HISTOGRAMS

    name = VLLM_HISTOGRAMS[kind]
    slow = _buckets([50, 200, 700, 950, 1000])
    fast = _buckets([400, 800, 950, 990, 1000])
    provider = TableProvider({f'{name}_bucket{{revision="canary1"}}': slow, f'{name}_bucket{{revision="stable1"}}': fast})
    v = measure([Metric(name="m", kind=kind)], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail" and v.reason.startswith(f"{kind}: ") and v.samples == 1000
    assert any(name + "_bucket" in q for q in provider.queries)
    same = TableProvider({f'{name}_bucket{{revision="canary1"}}': fast, f'{name}_bucket{{revision="stable1"}}': fast})
    assert measure([Metric(name="m", kind=kind)], PLAN, same, TARGET)["m"].outcome.value == "pass"
    missing = measure([Metric(name="m", kind=kind)], PLAN, TableProvider(), TARGET)["m"]
    assert missing.outcome.value == "inconclusive" and "revision label" in missing.reason


def test_abort_rate_reads_vllms_finished_requests() -> None:
    def n(value: float) -> QueryResult:
        return QueryResult("q", (Sample({}, value),))

    answers = {
        'vllm:request_success_total{revision="canary1",finished_reason="abort"}': n(60),
        'vllm:request_success_total{revision="canary1"}': n(2000),
        'vllm:request_success_total{revision="stable1",finished_reason="abort"}': n(20),
        'vllm:request_success_total{revision="stable1"}': n(2000),
    }
    v = measure([Metric(name="m", kind="abortRate")], PLAN, TableProvider(answers), TARGET)["m"]
    assert v.outcome.value == "fail" and "abort rate" in v.reason and v.samples == 2000


def test_an_llm_split_reports_each_arms_share_of_output_tokens() -> None:
    """The sample-ratio check of an LLM server counts vLLM's finished requests and shows the
    output-token share beside the request share: a canary answering at greater length shows."""
    def n(value: float) -> QueryResult:
        return QueryResult("q", (Sample({}, value),))

    answers = {
        'vllm:request_success_total{revision="canary1"}': n(300),
        'vllm:request_success_total{revision="stable1"}': n(700),
        'vllm:generation_tokens_total{revision="canary1"}': n(30000),
        'vllm:generation_tokens_total{revision="stable1"}': n(35000),
    }
    plan = AnalysisPlan(("m",), PLAN.candidate, PLAN.baseline, expected_split=(30, 70))
    v = measure([Metric(name="m", kind="timeToFirstToken")], plan, TableProvider(answers), TARGET)["sample-ratio"]
    assert v.outcome.value == "pass"
    assert v.details["token_share"] == pytest.approx(30000 / 65000) and v.details["request_share"] == pytest.approx(0.3)
    assert "output tokens: 46.2% on the new revision against 30.0% of the requests" in v.reason
