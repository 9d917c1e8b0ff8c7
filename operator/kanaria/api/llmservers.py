"""Which metric of each LLM inference server carries each LLM metric kind.

Pure data, read by the spec's validation (a kind the chosen server cannot measure makes the
spec invalid, with the reason) and by the analysis that builds the queries. Every name was
read in the servers' own source:

- vLLM: ``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``) and
  ``vllm/v1/engine/__init__.py`` (``FINISH_REASON_STRINGS``: stop, length, abort, and in
  newer releases error and repetition). ``vllm:time_per_output_token_seconds`` is not used: it
  was renamed ``vllm:inter_token_latency_seconds`` in 0.11 and is hidden from 0.12.
- SGLang: ``python/sglang/srt/metrics/collector.py`` (``TokenizerMetricsCollector``,
  ``SchedulerMetricsCollector``).
- TGI: ``router/src/server.rs`` and ``router/src/infer/mod.rs``,
  ``backends/v3/src/backend.rs`` (``tgi_request_failure{err}``: validation, overloaded,
  template, generation, incomplete, and dropped when the client went away).
- TensorRT-LLM's ``trtllm-serve``: ``tensorrt_llm/metrics/collector.py``
  (``MetricsCollector``; ``finished_reason`` is the completion's finish reason: stop, length,
  timeout, cancelled).

A selector is ``(metric, matchers)``; a matcher value starting with ``~`` is a regular
expression (``=~``), with ``!~`` a negated one; any other value is matched exactly. A count
is the sum of its selectors' increases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SERVERS",
    "LLMServer",
    "EvidenceUnit",
    "LLM_LATENCY_KINDS",
    "LLM_RATE_KINDS",
    "LLM_KINDS",
    "PER_REQUEST_ONLY",
    "Selector",
    "Histogram",
    "Rate",
    "ServerMetrics",
    "METRICS",
    "histogram_for",
    "rate_for",
    "kind_problem",
]

LLMServer = Literal["vllm", "sglang", "tgi", "tensorrtLLM"]
SERVERS: tuple[str, ...] = ("vllm", "sglang", "tgi", "tensorrtLLM")
EvidenceUnit = Literal["request", "token"]

LLM_LATENCY_KINDS = (
    "timeToFirstToken", "timePerOutputToken", "requestLatency", "queueTime", "outputTokensPerSecond",
)
"""Kinds read from a histogram and judged like latency (outputTokensPerSecond: from the time per
output token of each request; fewer tokens per second is a slower request)."""
LLM_RATE_KINDS = ("abortRate", "serverErrorRate", "successRate")
"""Kinds read from counters and judged like errorRate (successRate: on its complement, the
requests that did not finish with stop or length)."""
LLM_KINDS = LLM_LATENCY_KINDS + LLM_RATE_KINDS
PER_REQUEST_ONLY = ("timeToFirstToken", "requestLatency", "queueTime", "outputTokensPerSecond")
"""Kinds that have one value per request and no per-token form."""

Selector = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Histogram:
    """A histogram (the base name, without ``_bucket``) and what one observation is."""

    name: str
    per: Literal["request", "token"]


@dataclass(frozen=True)
class Rate:
    """A share of requests: ``hits`` (failures) out of ``total`` (finished requests)."""

    hits: tuple[Selector, ...]
    total: tuple[Selector, ...]


Missing = str
"""Why a server cannot give a kind (the message of the invalid spec)."""


@dataclass(frozen=True)
class ServerMetrics:
    """One server's metrics for every LLM kind: a histogram per kind and evidence unit, a rate
    per rate kind, and the counters of finished requests and output tokens."""

    title: str
    latency: dict[str, dict[str, Histogram | Missing]]
    rates: dict[str, Rate | Missing]
    finished: tuple[Selector, ...]
    output_tokens: tuple[Selector, ...]


def _s(metric: str, **matchers: str) -> Selector:
    return (metric, tuple(sorted(matchers.items())))


_NO_TOKEN_FORM = "has one value per request, not one per token"

_VLLM_FINISHED = _s("vllm:request_success_total")
_TRT_FINISHED = _s("trtllm_request_success_total")
_TGI_FINISHED = (_s("tgi_request_success"), _s("tgi_request_failure"))

METRICS: dict[str, ServerMetrics] = {
    "vllm": ServerMetrics(
        title="vLLM",
        latency={
            "timeToFirstToken": {"request": Histogram("vllm:time_to_first_token_seconds", "request")},
            "timePerOutputToken": {
                "request": Histogram("vllm:request_time_per_output_token_seconds", "request"),
                "token": Histogram("vllm:inter_token_latency_seconds", "token"),
            },
            "requestLatency": {"request": Histogram("vllm:e2e_request_latency_seconds", "request")},
            "queueTime": {"request": Histogram("vllm:request_queue_time_seconds", "request")},
            "outputTokensPerSecond": {
                "request": Histogram("vllm:request_time_per_output_token_seconds", "request"),
            },
        },
        rates={
            "abortRate": Rate((_s("vllm:request_success_total", finished_reason="abort"),), (_VLLM_FINISHED,)),
            "serverErrorRate": Rate((_s("vllm:request_success_total", finished_reason="error"),), (_VLLM_FINISHED,)),
            "successRate": Rate(
                (_s("vllm:request_success_total", finished_reason="!~stop|length"),), (_VLLM_FINISHED,)
            ),
        },
        finished=(_VLLM_FINISHED,),
        output_tokens=(_s("vllm:generation_tokens_total"),),
    ),
    "sglang": ServerMetrics(
        title="SGLang",
        latency={
            "timeToFirstToken": {"request": Histogram("sglang:time_to_first_token_seconds", "request")},
            "timePerOutputToken": {
                "request": "SGLang has no histogram of the time per output token of each request "
                "(only sglang:inter_token_latency_seconds, one observation per token): set "
                "evidenceUnit: token on this metric",
                "token": Histogram("sglang:inter_token_latency_seconds", "token"),
            },
            "requestLatency": {"request": Histogram("sglang:e2e_request_latency_seconds", "request")},
            "queueTime": {"request": Histogram("sglang:queue_time_seconds", "request")},
            "outputTokensPerSecond": {
                "request": "SGLang has no histogram of the time per output token of each request; "
                "judge timePerOutputToken with evidenceUnit: token instead",
            },
        },
        rates={
            "abortRate": Rate((_s("sglang:num_aborted_requests_total"),), (_s("sglang:num_requests_total"),)),
            "serverErrorRate": "SGLang counts aborted requests (sglang:num_aborted_requests_total) but no "
            "requests that ended in a server error",
            "successRate": "SGLang has no finish reason on its request counter, only a count of aborted "
            "requests: use abortRate",
        },
        finished=(_s("sglang:num_requests_total"),),
        output_tokens=(_s("sglang:generation_tokens_total"),),
    ),
    "tgi": ServerMetrics(
        title="TGI",
        latency={
            "timeToFirstToken": {"request": "TGI exports no time-to-first-token histogram"},
            "timePerOutputToken": {
                "request": Histogram("tgi_request_mean_time_per_token_duration", "request"),
                "token": "TGI has only the mean time per token of each request "
                "(tgi_request_mean_time_per_token_duration), no observation per token: use "
                "evidenceUnit: request on this metric",
            },
            "requestLatency": {"request": Histogram("tgi_request_duration", "request")},
            "queueTime": {"request": Histogram("tgi_request_queue_duration", "request")},
            "outputTokensPerSecond": {
                "request": Histogram("tgi_request_mean_time_per_token_duration", "request"),
            },
        },
        rates={
            "abortRate": Rate((_s("tgi_request_failure", err="dropped"),), _TGI_FINISHED),
            "serverErrorRate": Rate((_s("tgi_request_failure", err="~generation|incomplete"),), _TGI_FINISHED),
            "successRate": Rate((_s("tgi_request_failure"),), _TGI_FINISHED),
        },
        finished=_TGI_FINISHED,
        output_tokens=(_s("tgi_request_generated_tokens_sum"),),
    ),
    "tensorrtLLM": ServerMetrics(
        title="TensorRT-LLM (trtllm-serve)",
        latency={
            "timeToFirstToken": {"request": Histogram("trtllm_time_to_first_token_seconds", "request")},
            "timePerOutputToken": {
                "request": Histogram("trtllm_time_per_output_token_seconds", "request"),
                "token": "TensorRT-LLM has only the time per output token of each request "
                "(trtllm_time_per_output_token_seconds), no observation per token: use "
                "evidenceUnit: request on this metric",
            },
            "requestLatency": {"request": Histogram("trtllm_e2e_request_latency_seconds", "request")},
            "queueTime": {"request": Histogram("trtllm_request_queue_time_seconds", "request")},
            "outputTokensPerSecond": {
                "request": Histogram("trtllm_time_per_output_token_seconds", "request"),
            },
        },
        rates={
            "abortRate": Rate((_s("trtllm_request_success_total", finished_reason="cancelled"),), (_TRT_FINISHED,)),
            "serverErrorRate": "trtllm-serve counts HTTP errors (trtllm_request_error_total) apart from "
            "its finished requests, with no count of the requests that reached the engine and failed",
            "successRate": Rate(
                (_s("trtllm_request_success_total", finished_reason="!~stop|length"),), (_TRT_FINISHED,)
            ),
        },
        finished=(_TRT_FINISHED,),
        output_tokens=(_s("trtllm_generation_tokens_total"),),
    ),
}


def histogram_for(kind: str, server: str, unit: str) -> Histogram | Missing:
    """The histogram of a latency kind on a server for the evidence unit, or why there is none."""
    by_unit = METRICS[server].latency[kind]
    if unit in by_unit:
        return by_unit[unit]
    if unit == "token":
        return f"{kind} {_NO_TOKEN_FORM}"
    return f"{METRICS[server].title} has no per-request histogram for {kind}"


def rate_for(kind: str, server: str) -> Rate | Missing:
    return METRICS[server].rates[kind]


def kind_problem(kind: str, server: str, unit: str, *, explicit_unit: bool) -> str | None:
    """Why ``kind`` cannot be judged on ``server`` with ``unit`` (None when it can).

    ``explicit_unit``: the metric itself asks for the unit. An analysis-wide ``token`` leaves
    the kinds that have no per-token form per request; a metric that asks for it is refused.
    """
    if kind not in LLM_KINDS:
        return None
    title = METRICS[server].title
    if kind in LLM_RATE_KINDS:
        found = rate_for(kind, server)
        return None if isinstance(found, Rate) else f"{kind} on {title}: {found}"
    if unit == "token" and kind in PER_REQUEST_ONLY:
        return f"{kind} {_NO_TOKEN_FORM}; evidenceUnit: token does not apply" if explicit_unit else None
    found_h = histogram_for(kind, server, unit)
    return None if isinstance(found_h, Histogram) else f"{kind} on {title}: {found_h}"


def effective_unit(kind: str, analysis_unit: str, metric_unit: str | None) -> str:
    """The evidence unit a metric is judged in: its own, else the analysis's where the kind has
    a per-token form, else request."""
    if metric_unit is not None:
        return metric_unit
    if analysis_unit == "token" and kind not in PER_REQUEST_ONLY:
        return "token"
    return "request"
