"""The LLM metric kinds on each inference server: the queries built, the specs refused, and
evidence per output token.

The provider is a stand-in for one function's unit test: it answers queries from a table (by
substring) and records them. The real Prometheus path is tests/e2e/test_llm_rollout.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kanaria.analysis.llm import LLMContext
from kanaria.analysis.measure import Target, measure
from kanaria.analysis.provider import QueryResult, Sample
from kanaria.api.llmservers import LLM_KINDS, SERVERS, kind_problem
from kanaria.api.models import Analysis, Metric
from kanaria.api.observed import AnalysisPlan, Arm

PLAN = AnalysisPlan(("m",), Arm("canary1", 60), Arm("stable1", 60))
TARGET = Target("chat", "llm", "chat")
PROM = {"address": "http://prometheus:9090"}


class TableProvider:
    def __init__(self, answer: dict[str, QueryResult] | None = None) -> None:
        self.answer = answer or {}
        self.queries: list[str] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.queries.append(promql)
        for needle, result in self.answer.items():
            if needle in promql:
                return result
        return QueryResult(promql)

    def online(self) -> str | None:
        return None


def n(value: float) -> QueryResult:
    return QueryResult("q", (Sample({}, value),))


def _buckets(counts: list[float], bounds: tuple[str, ...] = ("0.05", "0.1", "0.25", "0.5", "+Inf")) -> QueryResult:
    return QueryResult("q", tuple(Sample({"le": le}, c) for le, c in zip(bounds, counts, strict=True)))


def _queries(kind: str, server: str, unit: str = "request", metric_unit: str | None = None) -> list[str]:
    provider = TableProvider({"_bucket{": _buckets([1, 2, 3, 4, 5]), "": n(1000)})
    metric = Metric(name="m", kind=kind, evidence_unit=metric_unit)
    measure([metric], PLAN, provider, TARGET, llm_context=LLMContext(server, unit))
    return provider.queries


# --------------------------------------------------------------------------- latency queries

LATENCY = {
    ("vllm", "timeToFirstToken"): "vllm:time_to_first_token_seconds",
    ("vllm", "timePerOutputToken"): "vllm:request_time_per_output_token_seconds",
    ("vllm", "requestLatency"): "vllm:e2e_request_latency_seconds",
    ("vllm", "queueTime"): "vllm:request_queue_time_seconds",
    ("vllm", "outputTokensPerSecond"): "vllm:request_time_per_output_token_seconds",
    ("sglang", "timeToFirstToken"): "sglang:time_to_first_token_seconds",
    ("sglang", "requestLatency"): "sglang:e2e_request_latency_seconds",
    ("sglang", "queueTime"): "sglang:queue_time_seconds",
    ("tgi", "timePerOutputToken"): "tgi_request_mean_time_per_token_duration",
    ("tgi", "requestLatency"): "tgi_request_duration",
    ("tgi", "queueTime"): "tgi_request_queue_duration",
    ("tgi", "outputTokensPerSecond"): "tgi_request_mean_time_per_token_duration",
    ("tensorrtLLM", "timeToFirstToken"): "trtllm_time_to_first_token_seconds",
    ("tensorrtLLM", "timePerOutputToken"): "trtllm_time_per_output_token_seconds",
    ("tensorrtLLM", "requestLatency"): "trtllm_e2e_request_latency_seconds",
    ("tensorrtLLM", "queueTime"): "trtllm_request_queue_time_seconds",
    ("tensorrtLLM", "outputTokensPerSecond"): "trtllm_time_per_output_token_seconds",
}


@pytest.mark.parametrize(("server", "kind"), sorted(LATENCY))
def test_each_latency_kind_reads_the_servers_own_histogram_per_revision(server: str, kind: str) -> None:
    name = LATENCY[(server, kind)]
    assert _queries(kind, server) == [
        f'sum by (le) (increase({name}_bucket{{revision="stable1"}}[60s]))',
        f'sum by (le) (increase({name}_bucket{{revision="canary1"}}[60s]))',
    ]


@pytest.mark.parametrize(("server", "name"), [
    ("vllm", "vllm:inter_token_latency_seconds"), ("sglang", "sglang:inter_token_latency_seconds"),
])
def test_time_per_output_token_per_token_reads_the_inter_token_latency(server: str, name: str) -> None:
    for unit, metric_unit in (("token", None), ("request", "token")):
        queries = _queries("timePerOutputToken", server, unit, metric_unit)
        assert queries[0] == f'sum by (le) (increase({name}_bucket{{revision="stable1"}}[60s]))'


def test_a_per_request_kind_stays_per_request_under_an_analysis_wide_token_unit() -> None:
    assert "vllm:time_to_first_token_seconds_bucket" in _queries("timeToFirstToken", "vllm", "token")[0]


def test_a_latency_query_with_an_offset_reads_the_window_that_ended_then() -> None:
    plan = AnalysisPlan(("m",), Arm("canary1", 120, 30), Arm("stable1", 120, 30))
    provider = TableProvider()
    measure([Metric(name="m", kind="queueTime")], plan, provider, TARGET, llm_context=LLMContext("tgi"))
    assert provider.queries[0] == 'sum by (le) (increase(tgi_request_queue_duration_bucket{revision="stable1"}[120s] offset 30s))'


# --------------------------------------------------------------------------- rate queries

RATES = {
    ("vllm", "abortRate"): ('vllm:request_success_total{revision="R",finished_reason="abort"}',
                            'vllm:request_success_total{revision="R"}'),
    ("vllm", "serverErrorRate"): ('vllm:request_success_total{revision="R",finished_reason="error"}',
                                  'vllm:request_success_total{revision="R"}'),
    ("vllm", "successRate"): ('vllm:request_success_total{revision="R",finished_reason!~"stop|length"}',
                              'vllm:request_success_total{revision="R"}'),
    ("sglang", "abortRate"): ('sglang:num_aborted_requests_total{revision="R"}',
                              'sglang:num_requests_total{revision="R"}'),
    ("tgi", "abortRate"): ('tgi_request_failure{revision="R",err="dropped"}',
                           'tgi_request_success{revision="R"}', 'tgi_request_failure{revision="R"}'),
    ("tgi", "serverErrorRate"): ('tgi_request_failure{revision="R",err=~"generation|incomplete"}',
                                 'tgi_request_success{revision="R"}', 'tgi_request_failure{revision="R"}'),
    ("tgi", "successRate"): ('tgi_request_failure{revision="R"}',
                             'tgi_request_success{revision="R"}', 'tgi_request_failure{revision="R"}'),
    ("tensorrtLLM", "abortRate"): ('trtllm_request_success_total{revision="R",finished_reason="cancelled"}',
                                   'trtllm_request_success_total{revision="R"}'),
    ("tensorrtLLM", "successRate"): ('trtllm_request_success_total{revision="R",finished_reason!~"stop|length"}',
                                     'trtllm_request_success_total{revision="R"}'),
}


def _inc(selector: str, revision: str) -> str:
    return "sum(increase(" + selector.replace('revision="R"', f'revision="{revision}"') + "[60s]))"


@pytest.mark.parametrize(("server", "kind"), sorted(RATES))
def test_each_rate_kind_counts_failures_and_finished_requests_on_the_server(server: str, kind: str) -> None:
    hits, *totals = RATES[(server, kind)]
    expected = []
    for revision in ("stable1", "canary1"):
        if len(totals) == 1:
            expected.append(_inc(totals[0], revision))
        else:
            expected.append(" + ".join(f"({_inc(t, revision)} or vector(0))" for t in totals))
        expected.append(_inc(hits, revision))
    assert _queries(kind, server) == expected


def test_label_values_in_llm_queries_are_escaped() -> None:
    plan = AnalysisPlan(("m",), Arm('c"} or vector(1) #', 60), Arm("stable1", 60))
    provider = TableProvider({"": n(1000)})
    measure([Metric(name="m", kind="abortRate")], plan, provider, TARGET)
    assert 'revision="c\\"} or vector(1) #"' in provider.queries[-1]


def test_per_token_rates_also_read_the_output_tokens() -> None:
    queries = _queries("abortRate", "tgi", "token")
    assert 'sum(increase(tgi_request_generated_tokens_sum{revision="canary1"}[60s]))' in queries


# --------------------------------------------------------------------------- invalid specs


@pytest.mark.parametrize(("server", "kind", "unit", "says"), [
    ("tgi", "timeToFirstToken", None, "TGI exports no time-to-first-token histogram"),
    ("tgi", "timePerOutputToken", "token", "no observation per token"),
    ("tensorrtLLM", "timePerOutputToken", "token", "no observation per token"),
    ("tensorrtLLM", "serverErrorRate", None, "trtllm_request_error_total"),
    ("sglang", "timePerOutputToken", None, "set evidenceUnit: token"),
    ("sglang", "outputTokensPerSecond", None, "no histogram of the time per output token"),
    ("sglang", "serverErrorRate", None, "no requests that ended in a server error"),
    ("sglang", "successRate", None, "use abortRate"),
    ("vllm", "timeToFirstToken", "token", "one value per request"),
])
def test_a_kind_the_server_lacks_makes_the_spec_invalid_and_says_why(server: str, kind: str, unit: str | None,
                                                                     says: str) -> None:
    metric = {"name": "x", "kind": kind, **({"evidenceUnit": unit} if unit else {})}
    with pytest.raises(ValidationError) as refused:
        Analysis.model_validate({"prometheus": PROM, "server": server, "metrics": [metric]})
    message = str(refused.value)
    assert "metric 'x'" in message and says in message


def test_every_kind_the_docs_call_supported_is_accepted() -> None:
    supported = [(s, k) for s in SERVERS for k in LLM_KINDS if kind_problem(k, s, "request", explicit_unit=False) is None]
    assert ("vllm", "successRate") in supported and ("tgi", "abortRate") in supported
    assert all(kind_problem(k, "vllm", "request", explicit_unit=False) is None for k in LLM_KINDS)
    for server, kind in supported:
        Analysis.model_validate({"prometheus": PROM, "server": server, "metrics": [{"name": "x", "kind": kind}]})


def test_the_server_defaults_to_vllm_and_refuses_an_unknown_one() -> None:
    assert Analysis.model_validate({"prometheus": PROM}).server == "vllm"
    with pytest.raises(ValidationError):
        Analysis.model_validate({"prometheus": PROM, "server": "ollama"})


def test_evidence_unit_belongs_to_llm_kinds_and_tokens_per_second_takes_no_objective() -> None:
    with pytest.raises(ValidationError, match="evidenceUnit applies to the LLM metric kinds"):
        Metric(name="x", kind="latency", evidence_unit="token")
    with pytest.raises(ValidationError, match="takes no objectiveSeconds"):
        Metric(name="x", kind="outputTokensPerSecond", objective_seconds=0.05)


# --------------------------------------------------------------------------- verdicts


def test_per_token_evidence_allows_more_failures_to_the_arm_that_serves_more_tokens() -> None:
    """The new revision aborts twice as many requests but writes answers twice as long: per
    request it fails; per output token the failure rates are equal and it passes."""
    answers = {
        'vllm:request_success_total{revision="canary1",finished_reason="abort"}': n(400),
        'vllm:request_success_total{revision="canary1"}': n(10_000),
        'vllm:generation_tokens_total{revision="canary1"}': n(1_000_000),
        'vllm:request_success_total{revision="stable1",finished_reason="abort"}': n(200),
        'vllm:request_success_total{revision="stable1"}': n(10_000),
        'vllm:generation_tokens_total{revision="stable1"}': n(500_000),
    }
    metric = Metric(name="m", kind="abortRate", max_error_rate=0.2)
    per_request = measure([metric], PLAN, TableProvider(answers), TARGET)["m"]
    assert per_request.outcome.value == "fail" and "abort rate" in per_request.reason
    per_token = measure([metric], PLAN, TableProvider(answers), TARGET, llm_context=LLMContext("vllm", "token"))["m"]
    assert per_token.outcome.value == "pass", per_token.reason
    assert "per output token" in per_token.reason and per_token.samples == 1_000_000
    assert per_token.details["tokens_per_request"] == pytest.approx(50.0)


def test_per_token_guardrail_is_the_per_request_one_at_the_stable_answer_length() -> None:
    """No aborts at all on either side: the verdict rests on the guardrail, which per token is
    maxErrorRate / (stable tokens per request) — 0 aborts in 2000 requests' worth passes."""
    answers = {
        'finished_reason="abort"': n(0),
        'vllm:request_success_total{revision="canary1"}': n(2000),
        'vllm:generation_tokens_total{revision="canary1"}': n(100_000),
        'vllm:request_success_total{revision="stable1"}': n(2000),
        'vllm:generation_tokens_total{revision="stable1"}': n(100_000),
    }
    v = measure([Metric(name="m", kind="abortRate")], PLAN, TableProvider(answers), TARGET,
                llm_context=LLMContext("vllm", "token"))["m"]
    assert v.outcome.value == "pass", v.reason
    few = {**answers, 'vllm:generation_tokens_total{revision="canary1"}': n(10_000),
           'vllm:request_success_total{revision="canary1"}': n(200)}
    early = measure([Metric(name="m", kind="abortRate")], PLAN, TableProvider(few), TARGET,
                    llm_context=LLMContext("vllm", "token"))["m"]
    assert early.outcome.value == "inconclusive"


def test_output_tokens_per_second_fails_a_slower_decoder_and_says_tokens_per_second() -> None:
    name = "vllm:request_time_per_output_token_seconds"
    bounds = ("0.01", "0.025", "0.05", "0.075", "+Inf")
    slow = _buckets([0, 100, 600, 950, 1000], bounds)
    fast = _buckets([0, 500, 950, 1000, 1000], bounds)
    provider = TableProvider({f'{name}_bucket{{revision="canary1"}}': slow, f'{name}_bucket{{revision="stable1"}}': fast})
    v = measure([Metric(name="m", kind="outputTokensPerSecond")], PLAN, provider, TARGET)["m"]
    assert v.outcome.value == "fail"
    assert v.details["canary_median_tokens_per_second"] < v.details["baseline_median_tokens_per_second"]
    assert "output tokens/s" in v.reason


def test_the_split_check_counts_each_servers_finished_requests() -> None:
    answers = {
        # one query per arm, success + failure (Prometheus adds them; the table answers the sum)
        'tgi_request_success{revision="canary1"}': n(300),
        'tgi_request_success{revision="stable1"}': n(700),
        'tgi_request_generated_tokens_sum{revision="canary1"}': n(30_000),
        'tgi_request_generated_tokens_sum{revision="stable1"}': n(35_000),
    }
    plan = AnalysisPlan(("m",), PLAN.candidate, PLAN.baseline, expected_split=(30, 70))
    provider = TableProvider(answers)
    v = measure([Metric(name="m", kind="queueTime")], plan, provider, TARGET, llm_context=LLMContext("tgi"))["sample-ratio"]
    assert v.outcome.value == "pass" and v.details["request_share"] == pytest.approx(0.3)
    assert v.details["token_share"] == pytest.approx(30_000 / 65_000)
    assert provider.queries[0] == ('(sum(increase(tgi_request_success{revision="canary1"}[60s])) or vector(0)) + '
                                   '(sum(increase(tgi_request_failure{revision="canary1"}[60s])) or vector(0))')


def test_pacing_of_a_per_token_rate_counts_output_tokens_to_the_minimum() -> None:
    """Too few requests yet: the tokens still needed are minSamples requests' worth at the
    stable revision's answer length, less the tokens already served."""
    answers = {
        'finished_reason="abort"': n(0),
        'vllm:request_success_total{revision="canary1"}': n(100),
        'vllm:generation_tokens_total{revision="canary1"}': n(5_000),
        'vllm:request_success_total{revision="stable1"}': n(400),
        'vllm:generation_tokens_total{revision="stable1"}': n(20_000),
    }
    v = measure([Metric(name="m", kind="abortRate")], PLAN, TableProvider(answers), TARGET,
                llm_context=LLMContext("vllm", "token"))["m"]
    assert v.outcome.value == "inconclusive"
    assert v.needed == 1000 * 50 - 5_000


@pytest.mark.parametrize("kind", ["abortRate", "timeToFirstToken"])
def test_without_the_revision_label_an_llm_metric_is_inconclusive_and_says_so(kind: str) -> None:
    v = measure([Metric(name="m", kind=kind)], PLAN, TableProvider(), TARGET)["m"]
    assert v.outcome.value == "inconclusive" and "is the revision label relabelled?" in v.reason
