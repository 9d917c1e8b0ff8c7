"""Judges of what people say about answers: the share of positive feedback and the mean
rating, each counted on the answers an arm served in the same period once they matured."""

from __future__ import annotations

from dataclasses import replace

from kanaria.analysis.evidence import (
    DEFAULT_MIN_SAMPLES,
    METRIC_NAMES,
    NoData,
    Target,
    cohort_of,
    count_of,
    labels_of,
    total_of,
)
from kanaria.analysis.feedback import RatingArm, judge_feedback, judge_rating
from kanaria.analysis.provider import MetricProvider
from kanaria.analysis.strata import judge_accuracy_stratified as strata_judge
from kanaria.analysis.templates import counter_increase
from kanaria.analysis.windows import period_arms
from kanaria.api.models import Metric
from kanaria.api.observed import AnalysisPlan, Arm
from kanaria.api.verdict import Verdict

__all__ = ["judge_feedback_metric", "judge_rating_metric"]


def _feedback_counts(m: Metric, p: MetricProvider, t: Target, arm: Arm) -> tuple[int, int]:
    """(positive, positive + negative) feedback on the answers ``arm`` served, each counted H
    after it was served; with maturity 0s, the feedback that arrived within the arm's window."""
    signal, horizon = m.signal or "thumbs", m.maturity_seconds()
    window = cohort_of(arm, horizon) if horizon > 0 else arm
    labels = {**labels_of(t, window), "signal": signal}
    name = METRIC_NAMES["feedback"]
    if horizon > 0:
        labels["horizon"] = f"{horizon:.0f}"
        name = METRIC_NAMES["feedback_matured"]
    got = {o: count_of(p, counter_increase(name, {**labels, "outcome": o}, window.window, window.offset))
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
        except NoData:
            if not plan.periods:
                raise
            continue  # a period with nothing matured yet adds nothing
        if nb or nc:
            strata.append((xb, nb, xc, nc))
    if not strata:
        raise NoData(f"no {signal!r} feedback matured yet for either revision (the server records it with "
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
        cohort = cohort_of(arm, horizon)
        labels = {**labels_of(t, cohort), "signal": signal, "horizon": f"{horizon:.0f}"}
        w, o = cohort.window, cohort.offset
        count = total_of(p, counter_increase(METRIC_NAMES["ratings_matured"], {**labels, "outcome": "rated"}, w, o))
        total = total_of(p, counter_increase(METRIC_NAMES["rating_sum"], labels, w, o))
        squares = total_of(p, counter_increase(METRIC_NAMES["rating_squares"], labels, w, o))
        arms.append(RatingArm(count, total, squares))
    if arms[0].count == 0 and arms[1].count == 0:
        raise NoData(f"no {signal!r} ratings matured yet for either revision (the server records them with "
                      f"the monitor library: {METRIC_NAMES['ratings_matured']})")
    verdict = judge_rating(
        arms[0], arms[1], low=m.rating_min, high=m.rating_max,
        min_samples=m.min_samples or DEFAULT_MIN_SAMPLES["rating"],
        margin=m.margin, alpha=m.alpha or 0.05,
    )  # fmt: skip
    return replace(verdict, details={**verdict.details, "maturity_seconds": horizon})
