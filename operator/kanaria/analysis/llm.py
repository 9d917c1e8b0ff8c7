"""The LLM metric kinds: queries on the chosen inference server's own metrics, and verdicts.

Which metric carries which kind on which server is :mod:`kanaria.api.llmservers`. Latency
kinds compare the two revisions' histograms with :func:`~kanaria.analysis.latency.judge_latency`
(the always-valid test on P(new request slower)); rate kinds compare failures with
:func:`~kanaria.analysis.proportions.judge_error_rate`.

Evidence per output token (``evidenceUnit: token``):

- timePerOutputToken reads the server's per-token histogram (each gap between two tokens one
  observation) instead of its per-request one: a long answer weighs as many tokens as it has.
- A rate counts failures per output token served: the exposure of each revision is its output
  tokens instead of its finished requests, so the relative test asks whether the new revision's
  share of the failures exceeds its share of the tokens. The guardrail maxErrorRate and
  minSamples keep their per-request meaning, converted at the stable revision's output tokens
  per finished request (a 1% guardrail becomes 1% / tokens-per-request per token).

Every query sums over the series of one revision (label ``revision``, relabelled from the pod
label kanaria.io/revision) and is evaluated by the caller's pinned provider at one instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from kanaria.analysis import latency, proportions
from kanaria.analysis.evidence import (
    LLM_DEFAULT_MIN_SAMPLES,
    NoData,
    check_result,
    cumulative_buckets,
)
from kanaria.analysis.provider import MetricProvider
from kanaria.analysis.templates import escape_label_value
from kanaria.api.durations import format_duration
from kanaria.api.llmservers import (
    LLM_LATENCY_KINDS,
    LLM_RATE_KINDS,
    METRICS,
    Histogram,
    Rate,
    Selector,
    effective_unit,
    histogram_for,
    rate_for,
)
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm
from kanaria.api.verdict import Verdict

__all__ = [
    "LLMContext",
    "is_llm",
    "judge",
    "selector_text",
    "increase_query",
    "buckets_query",
    "finished_query",
    "tokens_query",
    "DEFAULT_MIN_SAMPLES",
]

DEFAULT_MIN_SAMPLES = LLM_DEFAULT_MIN_SAMPLES
DEFAULT_MAX_ERROR_RATIO = 1.5
DEFAULT_MAX_EXCEEDANCE = 0.1
_VERB = {"abortRate": "abort rate", "serverErrorRate": "server error rate", "successRate": "failure rate"}


@dataclass(frozen=True)
class LLMContext:
    """The analysis-wide settings the LLM kinds read: the server and the evidence unit."""

    server: str = "vllm"
    evidence_unit: str = "request"


def is_llm(kind: str) -> bool:
    return kind in LLM_LATENCY_KINDS or kind in LLM_RATE_KINDS


# --------------------------------------------------------------------------- queries


def selector_text(selector: Selector, revision: str) -> str:
    """``metric{revision="R",label="v",other=~"a|b"}`` for a selector of the mapping."""
    metric, matchers = selector
    parts = [f'revision="{escape_label_value(revision)}"']
    for label, value in matchers:
        if value.startswith("!~"):
            parts.append(f'{label}!~"{escape_label_value(value[2:])}"')
        elif value.startswith("~"):
            parts.append(f'{label}=~"{escape_label_value(value[1:])}"')
        else:
            parts.append(f'{label}="{escape_label_value(value)}"')
    return metric + "{" + ",".join(parts) + "}"


def _range(arm: Arm) -> str:
    text = f"[{format_duration(arm.window)}]"
    return text + (f" offset {format_duration(arm.offset)}" if arm.offset >= 1 else "")


def increase_query(selectors: tuple[Selector, ...], arm: Arm) -> str:
    """The summed increase of the selectors' counters over the arm's window. With more than one
    counter, each counts 0 while it has no series (else one absent counter empties the sum)."""
    parts = [f"sum(increase({selector_text(s, arm.revision)}{_range(arm)}))" for s in selectors]
    if len(parts) == 1:
        return parts[0]
    return " + ".join(f"({part} or vector(0))" for part in parts)


def buckets_query(histogram: Histogram, arm: Arm) -> str:
    """The increase of each bucket of the histogram over the arm's window (cumulative per ``le``)."""
    selector = selector_text((histogram.name + "_bucket", ()), arm.revision)
    return f"sum by (le) (increase({selector}{_range(arm)}))"


def finished_query(server: str, arm: Arm) -> str:
    """The arm's finished requests on the server (for the split check)."""
    return increase_query(METRICS[server].finished, arm)


def tokens_query(server: str, arm: Arm) -> str:
    """The arm's output tokens on the server."""
    return increase_query(METRICS[server].output_tokens, arm)


# --------------------------------------------------------------------------- measuring


def _count(p: MetricProvider, query: str) -> float:
    """The summed value of a query; an empty result counts 0 (a counter not yet incremented,
    or a finish reason this server version never reports)."""
    result = p.query(query)
    check_result(result)
    return max(0.0, sum(sample.value for sample in result.samples))


def judge(m: Metric, plan: AnalysisPlan, p: MetricProvider, ctx: LLMContext) -> Verdict:
    """The verdict on one LLM metric (inconclusive, saying why, when the evidence is missing)."""
    unit = effective_unit(m.kind, ctx.evidence_unit, m.evidence_unit)
    latency_kind = m.kind in LLM_LATENCY_KINDS
    statistic = "mann-whitney" if latency_kind else "binomial-mixture"
    try:
        if latency_kind:
            return _latency(m, plan, p, ctx.server, unit)
        return _rate(m, plan, p, ctx.server, unit)
    except NoData as missing:
        return missing.verdict(statistic)


def _latency(m: Metric, plan: AnalysisPlan, p: MetricProvider, server: str, unit: str) -> Verdict:
    histogram = histogram_for(m.kind, server, unit)
    if not isinstance(histogram, Histogram):  # the spec's validation refuses this; say so anyway
        return Verdict.inconclusive(f"{m.kind}: {histogram}", statistic="mann-whitney")
    arms = []
    for arm in (plan.baseline, plan.candidate):
        bounds, cumulative = cumulative_buckets(p, buckets_query(histogram, arm))
        if not bounds:
            raise NoData(f"no {histogram.name} samples yet for revision {arm.revision} "
                          "(is the revision label relabelled?)")
        arms.append((bounds, cumulative))
    (b_bounds, b_cum), (c_bounds, c_cum) = arms
    if b_bounds != c_bounds:
        raise NoData(f"the two revisions export different {histogram.name} buckets; cannot compare")
    objective = m.objective_seconds
    verdict = latency.judge_latency(
        b_bounds, b_cum, c_cum,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES[m.kind],
        max_auc=m.max_auc or 0.56,
        alpha=m.alpha or 0.01,
        objective_seconds=objective,
        max_exceedance=(m.max_exceedance or DEFAULT_MAX_EXCEEDANCE) if objective else None,
    )
    per = "per token" if histogram.per == "token" else "per request"
    reason = f"{m.kind}: {verdict.reason} ({histogram.name}, {per})"
    details = {**verdict.details, "per_token": 1.0 if histogram.per == "token" else 0.0}
    if m.kind == "outputTokensPerSecond":
        # The same ranks as the time per output token: a request with fewer tokens per second
        # is a slower one. Show tokens per second (from the interpolated medians) to people.
        for key in ("canary_p50", "baseline_p50"):
            seconds = details.get(key)
            if seconds is not None and seconds > 0:
                details[key.replace("_p50", "_median_tokens_per_second")] = 1.0 / seconds
        fast_c = details.get("canary_median_tokens_per_second")
        fast_b = details.get("baseline_median_tokens_per_second")
        if fast_c is not None and fast_b is not None:
            reason = f"{reason}; median {fast_c:.1f} vs {fast_b:.1f} output tokens/s"
    return replace(verdict, reason=reason, details=details)


def _rate(m: Metric, plan: AnalysisPlan, p: MetricProvider, server: str, unit: str) -> Verdict:
    rate = rate_for(m.kind, server)
    if not isinstance(rate, Rate):
        return Verdict.inconclusive(f"{m.kind}: {rate}", statistic="binomial-mixture")
    counts = []
    for arm in (plan.baseline, plan.candidate):
        finished = _count(p, increase_query(rate.total, arm))
        if finished <= 0:
            raise NoData(f"no finished requests yet for revision {arm.revision} "
                          "(is the revision label relabelled?)")
        failed = min(_count(p, increase_query(rate.hits, arm)), finished)
        tokens = _count(p, tokens_query(server, arm)) if unit == "token" else 0.0
        counts.append((failed, finished, tokens))
    (fb, nb, tb), (fc, nc, tc) = counts
    max_error_rate = m.max_error_rate if m.max_error_rate is not None else 0.01
    min_samples = m.min_samples or DEFAULT_MIN_SAMPLES[m.kind]
    tolerance = (m.max_error_ratio or DEFAULT_MAX_ERROR_RATIO) - 1.0
    alpha = m.alpha or 0.05
    verb = _VERB[m.kind]
    if unit == "request":
        verdict = proportions.judge_error_rate(
            fb, nb, fc, nc, max_error_rate=max_error_rate, relative_tolerance=tolerance,
            min_requests=min_samples, alpha=alpha,
        )
        return replace(verdict, reason=f"{m.kind}: " + verdict.reason.replace("error rate", verb))
    if nb <= 0 or tb <= 0:
        raise NoData(f"{m.kind} per output token: no finished requests with output tokens yet on "
                      f"revision {plan.baseline.revision}")
    tokens_per_request = tb / nb
    verdict = proportions.judge_error_rate(
        fb, tb, fc, tc,
        max_error_rate=min(max_error_rate / tokens_per_request, 0.5),
        relative_tolerance=tolerance,
        min_requests=max(1, int(math.ceil(min_samples * tokens_per_request))),
        alpha=alpha,
    )
    reason = (verdict.reason.replace("error rate", f"{verb} per output token").replace(" requests", " output tokens"))
    details = {**verdict.details, "per_token": 1.0, "tokens_per_request": tokens_per_request,
               "failures": fc, "baseline_failures": fb, "requests": nc, "baseline_requests": nb}
    return replace(verdict, reason=f"{m.kind}: {reason}", details=details)
