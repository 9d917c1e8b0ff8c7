"""Measure, then judge: turn an analysis plan into one verdict per metric.

Measuring (queries) and judging (pure statistics) are separate steps. A query that fails, or
returns nothing, NaN or Inf, leads to an inconclusive verdict that says so — never a pass.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace

from kanaria.analysis import drift, latency, llm, pacing, proportions
from kanaria.analysis.agreement import judge_agreement
from kanaria.analysis.evidence import (
    DEFAULT_MIN_SAMPLES,
    METRIC_NAMES,
    NoData,
    Target,
    check_result,
    count_of,
    cumulative_buckets,
    labels_of,
)
from kanaria.analysis.feedback_metrics import judge_feedback_metric, judge_rating_metric
from kanaria.analysis.llm import LLMContext
from kanaria.analysis.provider import MetricProvider, Pinned
from kanaria.analysis.srm import sample_ratio_mismatch
from kanaria.analysis.strata import judge_accuracy_stratified as strata_judge
from kanaria.analysis.strata import judge_error_rate_stratified as error_strata_judge
from kanaria.analysis.templates import (
    CONDITION_OPS,
    TemplateError,
    buckets_increase,
    counter_growth,
    counter_increase,
    fill_template,
    parse_condition,
)
from kanaria.analysis.windows import cohort_arm, period_arms
from kanaria.api.durations import format_duration
from kanaria.api.llmservers import LLM_LATENCY_KINDS, Histogram, histogram_for
from kanaria.api.models import Metric
from kanaria.api.observed import SRM_METRIC, AnalysisPlan, Arm
from kanaria.api.verdict import Outcome, Verdict

__all__ = ["DEFAULT_MIN_SAMPLES", "LLMContext", "METRIC_NAMES", "SRM_METRIC", "Target", "cohort_arm", "measure",
           "parse_condition", "period_arms"]

DEFAULT_MAX_ERROR_RATIO = 1.5
DEFAULT_MAX_EXCEEDANCE = 0.1
"""latency with an objective: the share of requests that may be slower than it."""

VLLM_HISTOGRAMS = {
    kind: h.name for kind in LLM_LATENCY_KINDS if isinstance(h := histogram_for(kind, "vllm", "request"), Histogram)
}
"""vLLM's per-request histogram for each LLM latency kind (kanaria.api.llmservers has every
server's). The series need a ``revision`` label, relabelled from the pod label
kanaria.io/revision (docs/llm.md has the PodMonitor)."""


def measure(
    metrics: list[Metric],
    plan: AnalysisPlan,
    provider: MetricProvider,
    target: Target,
    at: float | None = None,
    llm_context: LLMContext | None = None,
) -> dict[str, Verdict]:
    """One verdict per metric named in the plan.

    ``llm_context``: the server whose metric names the LLM kinds read and the evidence unit
    (spec.analysis.server and evidenceUnit; vLLM per request when None).

    Every query of one measurement is evaluated at the same instant ``at`` (Unix seconds; now
    when None), so counts that are compared — correct and labelled predictions, errors and
    requests, the two arms — come from the same samples, whatever the time between queries.
    """
    provider = Pinned(provider, time.time() if at is None else at)
    wanted = {m.name: m for m in metrics}
    context = llm_context or LLMContext()
    is_llm = any(llm.is_llm(m.kind) for m in metrics)
    out_split = (_split(plan, provider, target, context if is_llm else None)
                 if plan.expected_split is not None else None)
    out: dict[str, Verdict] = {}
    for name in plan.metrics:
        metric = wanted.get(name)
        if metric is None:
            out[name] = Verdict.inconclusive(f"metric {name!r} is not defined in spec.analysis")
            continue
        if llm.is_llm(metric.kind):
            out[name] = _paced(metric, plan, llm.judge(metric, plan, provider, context))
            continue
        judge = _JUDGES[metric.kind]
        try:
            out[name] = _paced(metric, plan, judge(metric, plan, provider, target))
        except NoData as missing:
            out[name] = missing.verdict(metric.kind)
    if out_split is not None:
        out[SRM_METRIC] = out_split
    return out


def _paced(m: Metric, plan: AnalysisPlan, verdict: Verdict) -> Verdict:
    """The verdict with how many more samples it needs and the rate they come at."""
    if m.kind == "custom":
        return verdict
    min_samples = m.min_samples or DEFAULT_MIN_SAMPLES[m.kind]
    window = plan.candidate.window
    if m.kind in ("accuracy", "feedback"):
        horizon = m.maturity_seconds()
        cohort = cohort_arm(plan.candidate, horizon) if horizon > 0 else plan.candidate
        window = cohort.window if cohort is not None else 0.0
        needed = pacing.accuracy_labels_needed(
            verdict, min_samples=min_samples, margin=m.margin if m.margin is not None else 0.02,
            alpha=m.alpha or 0.05,
        )
    elif m.kind == "latency" or m.kind in LLM_LATENCY_KINDS:
        needed = pacing.latency_requests_needed(
            verdict, min_samples=min_samples, max_auc=m.max_auc or 0.56, alpha=m.alpha or 0.01
        )
    else:
        # A rate per output token counts tokens; its minimum is requests at the stable's length.
        per_request = verdict.details.get("tokens_per_request", 1.0)
        needed = pacing.samples_needed(verdict, int(math.ceil(min_samples * per_request)))
    return pacing.with_pacing(verdict, needed, window)


def _split(plan: AnalysisPlan, p: MetricProvider, t: Target, server: LLMContext | None = None) -> Verdict:
    """Sample-ratio mismatch: the requests each arm served against the configured weights. For
    an LLM server (``server``) the requests are its finished requests, and the verdict also
    says each arm's share of the output tokens: a new revision that takes far more tokens than
    its share of requests (longer answers, more cost) is visible, though it decides nothing."""
    assert plan.expected_split is not None
    arms = (plan.candidate, plan.baseline)
    try:
        if server is not None:
            counts = [count_of(p, llm.finished_query(server.server, a)) for a in arms]
        else:
            counts = [count_of(p, counter_growth(METRIC_NAMES["requests"], labels_of(t, a), a.window, a.offset),
                             absent=f"no request series of revision {a.revision} yet (Prometheus has not "
                                    "scraped its server since it started)")
                      for a in arms]
    except NoData as missing:
        return missing.verdict("chi2-srm")
    verdict = sample_ratio_mismatch(counts, list(plan.expected_split))
    if server is None:
        return verdict
    try:
        tokens = [count_of(p, llm.tokens_query(server.server, a)) for a in arms]
    except NoData:
        return verdict
    if sum(tokens) <= 0 or sum(counts) <= 0:
        return verdict
    token_share, request_share = tokens[0] / sum(tokens), counts[0] / sum(counts)
    return replace(
        verdict,
        reason=f"{verdict.reason}; output tokens: {token_share:.1%} on the new revision against "
               f"{request_share:.1%} of the requests",
        details={**verdict.details, "token_share": token_share, "request_share": request_share,
                 "tokens": float(tokens[0]), "baseline_tokens": float(tokens[1])},
    )


# --------------------------------------------------------------------------- kinds


def _proportions(
    p: MetricProvider, t: Target, plan: AnalysisPlan, hits: str, hit_labels: dict[str, str], totals: str
) -> list[tuple[int, int]]:
    """(hits, total) for the baseline arm, then the candidate: counter increases over each
    arm's window, hits capped at the total (two queries, one instant)."""
    counts = []
    for arm in (plan.baseline, plan.candidate):
        labels = labels_of(t, arm)
        hit = count_of(p, counter_increase(hits, {**labels, **hit_labels}, arm.window, arm.offset))
        total = count_of(p, counter_increase(totals, labels, arm.window, arm.offset))
        counts.append((min(hit, total), total))
    return counts


def _cohort_counts(p: MetricProvider, t: Target, arm: Arm, horizon: float) -> tuple[int, int, int]:
    """(correct, labelled, unlabelled) predictions of the arm's cohort at horizon H."""
    cohort = cohort_arm(arm, horizon)
    if cohort is None:
        wait = horizon - arm.window - arm.offset + 1.0
        raise NoData(f"the predictions of this period mature {horizon:.0f}s after they are served "
                      f"(maturity): the first count in {wait:.0f}s")
    labels = {**labels_of(t, cohort), "horizon": f"{horizon:.0f}"}
    counts = {}
    for outcome in ("correct", "incorrect", "unlabelled"):
        result = p.query(counter_increase(METRIC_NAMES["matured"], {**labels, "outcome": outcome},
                                          cohort.window, cohort.offset))
        check_result(result)
        counts[outcome] = max(0, int(round(result.total())))
    if not any(counts.values()):
        raise NoData(f"no matured predictions at horizon {horizon:.0f}s for revision {arm.revision} yet "
                      f"(the model server exports {METRIC_NAMES['matured']} for the horizons in "
                      "KANARIA_MATURITY_HORIZONS)")
    return counts["correct"], counts["correct"] + counts["incorrect"], counts["unlabelled"]


def _accuracy(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    if plan.periods:
        return _accuracy_by_period(m, plan, p, t)
    horizon = m.maturity_seconds()
    if horizon > 0:
        return _cohort_accuracy(m, plan, p, t, horizon)
    (xb, nb), (xc, nc) = _proportions(p, t, plan, METRIC_NAMES["labels"], {"outcome": "correct"}, METRIC_NAMES["labels"])
    return _judge_accuracy(m, xb, nb, xc, nc)


def _accuracy_by_period(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    """Accuracy when the split moved within the window: one stratum per period, never pooled."""
    horizon = m.maturity_seconds()
    strata: list[tuple[float, float, float, float]] = []
    for cand, base in zip(period_arms(plan.candidate, plan.periods), period_arms(plan.baseline, plan.periods),
                          strict=True):
        period = replace(plan, candidate=cand, baseline=base, periods=())
        try:
            if horizon > 0:
                xb, nb, _ = _cohort_counts(p, t, base, horizon)
                xc, nc, _ = _cohort_counts(p, t, cand, horizon)
            else:
                (xb, nb), (xc, nc) = _proportions(p, t, period, METRIC_NAMES["labels"], {"outcome": "correct"},
                                                  METRIC_NAMES["labels"])
        except NoData:
            continue  # a period with nothing (matured) yet adds nothing
        strata.append((xb, nb, xc, nc))
    if not strata:
        raise NoData("no period of this step has labels in both revisions yet")
    return strata_judge(
        strata,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["accuracy"],
        margin=m.margin if m.margin is not None else 0.02,
        alpha=m.alpha or 0.05,
    )


def _cohort_accuracy(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target, horizon: float) -> Verdict:
    """Accuracy on the cohorts of predictions both arms served in the same period, each
    prediction counted H after it was served (unlabelled by then: unlabelled for both)."""
    xb, nb, ub = _cohort_counts(p, t, plan.baseline, horizon)
    xc, nc, uc = _cohort_counts(p, t, plan.candidate, horizon)
    verdict = _judge_accuracy(m, xb, nb, xc, nc)
    unlabelled = {"maturity_seconds": horizon, "unlabelled": float(uc), "baseline_unlabelled": float(ub)}
    return replace(verdict, details={**verdict.details, **unlabelled})


def _judge_accuracy(m: Metric, xb: int, nb: int, xc: int, nc: int) -> Verdict:
    return proportions.judge_accuracy(
        xb,
        nb,
        xc,
        nc,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["accuracy"],
        margin=m.margin if m.margin is not None else 0.02,
        alpha=m.alpha or 0.05,
    )


def _error_rate(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    """Error rate; when the split moved within the window, one stratum per period (never pooled)."""
    strata = []
    for cand, base in zip(period_arms(plan.candidate, plan.periods), period_arms(plan.baseline, plan.periods),
                          strict=True):
        period = replace(plan, candidate=cand, baseline=base, periods=())
        (eb, rb), (ec, rc) = _proportions(p, t, period, METRIC_NAMES["errors"], {}, METRIC_NAMES["requests"])
        strata.append((float(eb), float(rb), float(ec), float(rc)))
    return error_strata_judge(
        strata,
        max_error_rate=m.max_error_rate if m.max_error_rate is not None else 0.01,
        relative_tolerance=(m.max_error_ratio or DEFAULT_MAX_ERROR_RATIO) - 1.0,
        min_requests=m.min_samples or DEFAULT_MIN_SAMPLES["errorRate"],
        alpha=m.alpha or 0.05,
    )


def _latency(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    b_bounds, b_cum = cumulative_buckets(p, buckets_increase(METRIC_NAMES["latency"], labels_of(t, plan.baseline), plan.baseline.window, plan.baseline.offset))
    c_bounds, c_cum = cumulative_buckets(p, buckets_increase(METRIC_NAMES["latency"], labels_of(t, plan.candidate), plan.candidate.window, plan.candidate.offset))
    if not b_bounds or not c_bounds:
        raise NoData("no latency histogram samples yet for one of the revisions")
    if b_bounds != c_bounds:
        raise NoData("the two revisions export different latency buckets; cannot compare")
    return latency.judge_latency(
        b_bounds,
        b_cum,
        c_cum,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["latency"],
        max_auc=m.max_auc or 0.56,
        alpha=m.alpha or 0.01,
        objective_seconds=m.objective_seconds,
        max_exceedance=(m.max_exceedance or DEFAULT_MAX_EXCEEDANCE) if m.objective_seconds else None,
    )


def _per_feature(p: MetricProvider, t: Target, arm: Arm) -> dict[str, list[float]]:
    """Cumulative bucket counts per feature (and the prediction score as "prediction")."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for metric, key in ((METRIC_NAMES["feature"], "feature"), (METRIC_NAMES["prediction"], None)):
        by = ("feature", "le") if key else ("le",)
        result = p.query(buckets_increase(metric, labels_of(t, arm), arm.window, arm.offset, by=by))
        check_result(result)
        for s in result.samples:
            name = unicodedata.normalize("NFC", s.labels.get("feature", "")) if key else "prediction"
            le = float(s.labels.get("le", "nan"))
            if name and not math.isnan(le):
                out[name].append((le, max(0.0, s.value)))
    return {k: [v for _, v in sorted(pairs)] for k, pairs in out.items()}


def _drift(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    base = _per_feature(p, t, plan.baseline)
    cand = _per_feature(p, t, plan.candidate)
    names = m.features or sorted(set(base) & set(cand))
    if not names:
        raise NoData("no feature histograms yet for one of the revisions")
    pairs = {}
    for name in names:
        if name not in base or name not in cand:
            raise NoData(f"feature {name!r} has no histogram for one of the revisions")
        if len(base[name]) != len(cand[name]):
            raise NoData(f"feature {name!r} has different bins on the two revisions")
        pairs[name] = (drift.bins_from_cumulative(base[name]), drift.bins_from_cumulative(cand[name]))
    return drift.judge_dataset_drift(
        pairs,
        share_threshold=m.share_threshold or 0.5,
        alpha=m.alpha or 0.05,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["drift"],
    )


def _agreement(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    labels = labels_of(t, plan.candidate)
    name, window, offset = METRIC_NAMES["agreement"], plan.candidate.window, plan.candidate.offset
    agree = count_of(p, counter_increase(name, {**labels, "outcome": "agree"}, window, offset))
    total = count_of(p, counter_increase(name, labels, window, offset))
    return judge_agreement(
        min(agree, total),
        total,
        min_agreement=m.min_agreement or 0.95,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["agreement"],
        alpha=m.alpha or 0.05,
    )


def _custom(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    assert m.query is not None and m.condition is not None
    horizon = m.maturity_seconds()
    window = plan.candidate.window
    if horizon > 0:  # opted into cohorts: {{window}} is the window of the matured counts
        cohort = cohort_arm(plan.candidate, horizon)
        if cohort is None:
            raise NoData(f"the predictions of this period mature {horizon:.0f}s after they are served "
                          "(maturity): nothing to count yet")
        window = cohort.window
    values: Mapping[str, str] = {
        "name": t.name,
        "namespace": t.namespace,
        "model": t.model,
        "revision": plan.candidate.revision,
        "stableRevision": plan.baseline.revision,
        "window": format_duration(window),
        "horizon": f"{horizon:.0f}",
    }
    try:
        query = fill_template(m.query, values)
        op, bound = parse_condition(m.condition)
    except (TemplateError, ValueError) as bad:
        return Verdict.inconclusive(f"custom metric cannot run: {bad}", statistic="custom")
    result = p.query(query)
    check_result(result)
    value = result.scalar()
    if value is None:
        n = len(result.samples)
        raise NoData(f"custom query returned {n} series, expected exactly one finite value")
    ok = CONDITION_OPS[op](value, bound)
    return Verdict(
        Outcome.PASS if ok else Outcome.FAIL,
        f"{value:.6g} {op} {bound:g} is {'true' if ok else 'false'}",
        statistic="custom",
        value=value,
        threshold=bound,
        samples=1,
    )


_JUDGES: dict[str, Callable[[Metric, AnalysisPlan, MetricProvider, Target], Verdict]] = {
    "accuracy": _accuracy,
    "errorRate": _error_rate,
    "latency": _latency,
    "drift": _drift,
    "agreement": _agreement,
    "custom": _custom,
    "feedback": judge_feedback_metric,
    "rating": judge_rating_metric,
}

