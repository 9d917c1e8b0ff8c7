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
from dataclasses import dataclass, replace

from kanaria.analysis import drift, latency, llm, pacing, proportions
from kanaria.analysis.agreement import judge_agreement
from kanaria.analysis.feedback import RatingArm, judge_feedback, judge_rating
from kanaria.analysis.llm import LLMContext
from kanaria.analysis.provider import MetricProvider, Pinned, QueryResult
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

__all__ = ["Target", "measure", "cohort_arm", "DEFAULT_MIN_SAMPLES", "METRIC_NAMES", "SRM_METRIC", "LLMContext"]

DEFAULT_MIN_SAMPLES = {
    "accuracy": 500,
    "errorRate": 1000,
    "latency": 200,
    **llm.DEFAULT_MIN_SAMPLES,
    "drift": 1000,
    "agreement": 200,
    "feedback": 500,
    "rating": 500,
    "custom": 1,
}

DEFAULT_MAX_ERROR_RATIO = 1.5
DEFAULT_MAX_EXCEEDANCE = 0.1
"""latency with an objective: the share of requests that may be slower than it."""

METRIC_NAMES = {
    "requests": "kanaria_model_requests_total",
    "errors": "kanaria_model_errors_total",
    "latency": "kanaria_model_request_duration_seconds",
    "labels": "kanaria_model_labels_total",
    "feature": "kanaria_model_feature",
    "prediction": "kanaria_model_prediction",
    "agreement": "kanaria_model_agreement_total",
    "matured": "kanaria_model_matured_total",
    "feedback": "kanaria_model_feedback_total",
    "feedback_matured": "kanaria_model_feedback_matured_total",
    "ratings_matured": "kanaria_model_feedback_ratings_matured_total",
    "rating_sum": "kanaria_model_feedback_rating_sum_matured_total",
    "rating_squares": "kanaria_model_feedback_rating_squares_matured_total",
}


@dataclass(frozen=True)
class Target:
    """Who is being measured: the ModelDeployment and its model."""

    name: str
    namespace: str
    model: str


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
        except _NoData as missing:
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
            counts = [_count(p, llm.finished_query(server.server, a)) for a in arms]
        else:
            counts = [_count(p, counter_growth(METRIC_NAMES["requests"], _labels(t, a), a.window, a.offset),
                             absent=f"no request series of revision {a.revision} yet (Prometheus has not "
                                    "scraped its server since it started)")
                      for a in arms]
    except _NoData as missing:
        return missing.verdict("chi2-srm")
    verdict = sample_ratio_mismatch(counts, list(plan.expected_split))
    if server is None:
        return verdict
    try:
        tokens = [_count(p, llm.tokens_query(server.server, a)) for a in arms]
    except _NoData:
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


class _NoData(Exception):
    """A query gave no usable evidence (error, empty, NaN or Inf); ``error`` is set when the
    query itself failed (the metrics could not be read)."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error

    def verdict(self, statistic: str) -> Verdict:
        if self.error is not None:
            return Verdict.unavailable_metrics(self.error, statistic=statistic)
        return Verdict.inconclusive(str(self), statistic=statistic)


def _labels(target: Target, arm: Arm) -> dict[str, str]:
    return {"model": target.model, "revision": arm.revision}


def _count(provider: MetricProvider, query: str, *, absent: str | None = None) -> int:
    """The query's total; with ``absent``, a result without any series is not 0 but missing
    evidence, and that is the reason given."""
    result = provider.query(query)
    _check(result)
    if absent is not None and not result.samples:
        raise _NoData(absent)
    total = result.total()
    if not math.isfinite(total) or total < 0:
        raise _NoData(f"query returned {total}: {query}")
    return int(round(total))


def _check(result: QueryResult) -> None:
    if result.error is not None:
        raise _NoData(f"metrics unavailable: {result.error}", error=result.error)
    for sample in result.samples:
        if not math.isfinite(sample.value):
            raise _NoData(f"query returned {sample.value}: {result.query}")


def _cumulative(provider: MetricProvider, query: str) -> tuple[list[float], list[float]]:
    """(upper bounds, cumulative counts) of a ``sum by (le)`` result, sorted, +Inf last."""
    result = provider.query(query)
    _check(result)
    pairs = sorted((float(s.labels.get("le", "nan")), s.value) for s in result.samples)
    pairs = [(le, v) for le, v in pairs if not math.isnan(le)]
    return [le for le, _ in pairs], [max(0.0, v) for _, v in pairs]


# --------------------------------------------------------------------------- kinds


def _proportions(
    p: MetricProvider, t: Target, plan: AnalysisPlan, hits: str, hit_labels: dict[str, str], totals: str
) -> list[tuple[int, int]]:
    """(hits, total) for the baseline arm, then the candidate: counter increases over each
    arm's window, hits capped at the total (two queries, one instant)."""
    counts = []
    for arm in (plan.baseline, plan.candidate):
        labels = _labels(t, arm)
        hit = _count(p, counter_increase(hits, {**labels, **hit_labels}, arm.window, arm.offset))
        total = _count(p, counter_increase(totals, labels, arm.window, arm.offset))
        counts.append((min(hit, total), total))
    return counts


def _cohort_counts(p: MetricProvider, t: Target, arm: Arm, horizon: float) -> tuple[int, int, int]:
    """(correct, labelled, unlabelled) predictions of the arm's cohort at horizon H."""
    cohort = cohort_arm(arm, horizon)
    if cohort is None:
        wait = horizon - arm.window - arm.offset + 1.0
        raise _NoData(f"the predictions of this period mature {horizon:.0f}s after they are served "
                      f"(maturity): the first count in {wait:.0f}s")
    labels = {**_labels(t, cohort), "horizon": f"{horizon:.0f}"}
    counts = {}
    for outcome in ("correct", "incorrect", "unlabelled"):
        result = p.query(counter_increase(METRIC_NAMES["matured"], {**labels, "outcome": outcome},
                                          cohort.window, cohort.offset))
        _check(result)
        counts[outcome] = max(0, int(round(result.total())))
    if not any(counts.values()):
        raise _NoData(f"no matured predictions at horizon {horizon:.0f}s for revision {arm.revision} yet "
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
        except _NoData:
            continue  # a period with nothing (matured) yet adds nothing
        strata.append((xb, nb, xc, nc))
    if not strata:
        raise _NoData("no period of this step has labels in both revisions yet")
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
    b_bounds, b_cum = _cumulative(p, buckets_increase(METRIC_NAMES["latency"], _labels(t, plan.baseline), plan.baseline.window, plan.baseline.offset))
    c_bounds, c_cum = _cumulative(p, buckets_increase(METRIC_NAMES["latency"], _labels(t, plan.candidate), plan.candidate.window, plan.candidate.offset))
    if not b_bounds or not c_bounds:
        raise _NoData("no latency histogram samples yet for one of the revisions")
    if b_bounds != c_bounds:
        raise _NoData("the two revisions export different latency buckets; cannot compare")
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
        result = p.query(buckets_increase(metric, _labels(t, arm), arm.window, arm.offset, by=by))
        _check(result)
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
        raise _NoData("no feature histograms yet for one of the revisions")
    pairs = {}
    for name in names:
        if name not in base or name not in cand:
            raise _NoData(f"feature {name!r} has no histogram for one of the revisions")
        if len(base[name]) != len(cand[name]):
            raise _NoData(f"feature {name!r} has different bins on the two revisions")
        pairs[name] = (drift.bins_from_cumulative(base[name]), drift.bins_from_cumulative(cand[name]))
    return drift.judge_dataset_drift(
        pairs,
        share_threshold=m.share_threshold or 0.5,
        alpha=m.alpha or 0.05,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["drift"],
    )


def _agreement(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    labels = _labels(t, plan.candidate)
    name, window, offset = METRIC_NAMES["agreement"], plan.candidate.window, plan.candidate.offset
    agree = _count(p, counter_increase(name, {**labels, "outcome": "agree"}, window, offset))
    total = _count(p, counter_increase(name, labels, window, offset))
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
            raise _NoData(f"the predictions of this period mature {horizon:.0f}s after they are served "
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
    _check(result)
    value = result.scalar()
    if value is None:
        n = len(result.samples)
        raise _NoData(f"custom query returned {n} series, expected exactly one finite value")
    ok = CONDITION_OPS[op](value, bound)
    return Verdict(
        Outcome.PASS if ok else Outcome.FAIL,
        f"{value:.6g} {op} {bound:g} is {'true' if ok else 'false'}",
        statistic="custom",
        value=value,
        threshold=bound,
        samples=1,
    )


VLLM_HISTOGRAMS = {
    kind: h.name for kind in LLM_LATENCY_KINDS if isinstance(h := histogram_for(kind, "vllm", "request"), Histogram)
}
"""vLLM's per-request histogram for each LLM latency kind (kanaria.api.llmservers has every
server's). The series need a ``revision`` label, relabelled from the pod label
kanaria.io/revision (docs/llm.md has the PodMonitor)."""


def _cohort(arm: Arm, horizon: float) -> Arm:
    cohort = cohort_arm(arm, horizon)
    if cohort is None:
        wait = horizon - arm.window - arm.offset + 1.0
        raise _NoData(f"the answers of this period mature {horizon:.0f}s after they are served "
                      f"(maturity): the first count in {wait:.0f}s")
    return cohort


def _sum(p: MetricProvider, query: str) -> float:
    result = p.query(query)
    _check(result)
    return max(0.0, result.total())


def _feedback_counts(m: Metric, p: MetricProvider, t: Target, arm: Arm) -> tuple[int, int]:
    """(positive, positive + negative) feedback on the answers ``arm`` served, each counted H
    after it was served; with maturity 0s, the feedback that arrived within the arm's window."""
    signal, horizon = m.signal or "thumbs", m.maturity_seconds()
    window = _cohort(arm, horizon) if horizon > 0 else arm
    labels = {**_labels(t, window), "signal": signal}
    name = METRIC_NAMES["feedback"]
    if horizon > 0:
        labels["horizon"] = f"{horizon:.0f}"
        name = METRIC_NAMES["feedback_matured"]
    got = {o: _count(p, counter_increase(name, {**labels, "outcome": o}, window.window, window.offset))
           for o in ("positive", "negative")}
    return got["positive"], got["positive"] + got["negative"]


def judge_feedback_metric(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    """The share of positive feedback on the answers each arm served in the same period (each
    answer counted H after it was served, with the feedback it got by then); "0s": feedback
    counted by arrival since the step began. When the split moved within the window (a bandit),
    one stratum per period, never pooled, as for accuracy."""
    signal, horizon = m.signal or "thumbs", m.maturity_seconds()
    min_samples = m.min_samples or DEFAULT_MIN_SAMPLES["feedback"]
    margin, alpha = (m.margin if m.margin is not None else 0.02), (m.alpha or 0.05)
    strata: list[tuple[float, float, float, float]] = []
    for cand, base in zip(period_arms(plan.candidate, plan.periods), period_arms(plan.baseline, plan.periods),
                          strict=True):
        try:
            xb, nb = _feedback_counts(m, p, t, base)
            xc, nc = _feedback_counts(m, p, t, cand)
        except _NoData:
            if not plan.periods:
                raise
            continue  # a period with nothing matured yet adds nothing
        if nb or nc:
            strata.append((xb, nb, xc, nc))
    if not strata:
        raise _NoData(f"no {signal!r} feedback matured yet for either revision (the server records it with "
                      f"the monitor library: {METRIC_NAMES['feedback_matured']})")
    if len(strata) == 1:
        verdict = judge_feedback(*strata[0], min_samples=min_samples, margin=margin, alpha=alpha)
    else:
        verdict = strata_judge(strata, min_samples=min_samples, margin=margin, alpha=alpha)
        verdict = replace(verdict, reason=verdict.reason.replace("canary accuracy", "canary positive feedback", 1)
                          .replace("accuracy:", "feedback:", 1).replace(" labels", " rated answers"))
    return replace(verdict, details={**verdict.details, "maturity_seconds": horizon})


def judge_rating_metric(m: Metric, plan: AnalysisPlan, p: MetricProvider, t: Target) -> Verdict:
    """The mean rating of the answers each arm served in the same period, from the matured
    count, sum and sum of squares (ratings shifted to start at ratingMin)."""
    assert m.rating_min is not None and m.rating_max is not None
    signal, horizon = m.signal or "rating", m.maturity_seconds()
    arms = []
    for arm in (plan.baseline, plan.candidate):
        cohort = _cohort(arm, horizon)
        labels = {**_labels(t, cohort), "signal": signal, "horizon": f"{horizon:.0f}"}
        w, o = cohort.window, cohort.offset
        count = _sum(p, counter_increase(METRIC_NAMES["ratings_matured"], {**labels, "outcome": "rated"}, w, o))
        total = _sum(p, counter_increase(METRIC_NAMES["rating_sum"], labels, w, o))
        squares = _sum(p, counter_increase(METRIC_NAMES["rating_squares"], labels, w, o))
        arms.append(RatingArm(count, total, squares))
    if arms[0].count == 0 and arms[1].count == 0:
        raise _NoData(f"no {signal!r} ratings matured yet for either revision (the server records them with "
                      f"the monitor library: {METRIC_NAMES['ratings_matured']})")
    verdict = judge_rating(
        arms[0], arms[1], low=m.rating_min, high=m.rating_max,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["rating"],
        margin=m.margin, alpha=m.alpha or 0.05,
    )  # fmt: skip
    return replace(verdict, details={**verdict.details, "maturity_seconds": horizon})


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

