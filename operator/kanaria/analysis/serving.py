"""Watching the serving revision between rollouts: detectors that look forever.

A rollout's tests spend α once per step. A monitor looks at the same revision for weeks, so
its false-alarm budget is a time: ``falseAlarmEvery`` (T), the expected time between false
alarms when nothing changes. Two kinds of detector keep it:

* **Accuracy decay: CUSUM on matured labels.** Against the revision's baseline accuracy p0
  (its early life in production, less one standard error: :func:`conservative_baseline`), each matured label adds the log-likelihood ratio of "p0 −
  drop" against "p0": ln((p0−δ)/p0) when correct, ln((1−p0+δ)/(1−p0)) when wrong;
  S = max(0, S + Σ). It alarms at S ≥ h. For this statistic the expected number of labels
  before a false alarm is at least e^h (Lorden), so h = ln(label rate × T) keeps the expected
  time between false alarms at least T. A decay of δ is found after about h / KL(p0−δ ‖ p0)
  labels.
* **Drift, latency, errors: a test per check at α = interval / T.** Each check tests the
  recent window (against the reference profile, or the revision's own history) at level
  α = interval/T (Bonferroni over features for drift); the expected number of false alarms in
  T is then at most T/interval × α = 1, whatever the overlap of the windows. Drift also has to
  be material (JS distance base 2 > 0.1 or PSI > 0.25), so the finite reference sample cannot
  alarm on its own sampling noise.

Pure functions, and :func:`read_serving`, which reads one check's numbers through a provider.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from kanaria.analysis import drift as drift_stats
from kanaria.analysis import latency, proportions
from kanaria.analysis.provider import MetricProvider, Pinned, QueryResult
from kanaria.analysis.templates import buckets_increase, counter_increase, escape_label_value
from kanaria.api.durations import parse_duration
from kanaria.api.models import ModelDeploymentSpec
from kanaria.api.observed import ServingReading
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "conservative_baseline",
    "cusum_step",
    "cusum_threshold",
    "judge_reference_drift",
    "labels_to_detect",
    "per_check_alpha",
    "read_serving",
]


def per_check_alpha(interval_seconds: float, budget_seconds: float) -> float:
    """α of one check so that false alarms come at most once per budget in expectation."""
    if interval_seconds <= 0 or budget_seconds <= 0:
        raise ValueError("interval and budget must be positive")
    return min(0.05, interval_seconds / budget_seconds)


def cusum_step(statistic: float, correct: int, labelled: int, p0: float, drop: float) -> float:
    """The accuracy CUSUM after a batch of ``labelled`` matured labels, ``correct`` of them
    correct: S = max(0, S + x·ln(p1/p0) + (n−x)·ln((1−p1)/(1−p0))), p1 = p0 − drop. p0 is kept
    inside [drop + 1e-6, 1 − 1e-6] so that a perfect early life cannot make one error infinite."""
    if labelled < 0 or not 0 <= correct <= labelled:
        raise ValueError(f"need 0 ≤ correct ≤ labelled (got {correct}, {labelled})")
    base = min(max(p0, drop + 1e-6), 1.0 - 1e-6)
    worse = base - drop
    step = correct * math.log(worse / base) + (labelled - correct) * math.log((1.0 - worse) / (1.0 - base))
    return max(0.0, statistic + step)


def conservative_baseline(correct: int, labelled: int) -> float:
    """The baseline the decay detector compares with: the early-life accuracy less one standard
    error. A baseline estimated a little too high would read as a decay that never ends (with
    1,000 early labels and no margin, ten labels a second alarmed 11 times per budget:
    ``make bench-monitor BENCH_ARGS="--baseline-labels 1000 --plain-baseline"``); one standard
    error lower keeps the false alarms within the budget at 5,000 early labels and costs a
    little detection delay (``make bench-monitor``)."""
    if labelled <= 0 or not 0 <= correct <= labelled:
        raise ValueError(f"need 0 ≤ correct ≤ labelled and labelled > 0 (got {correct}, {labelled})")
    p = correct / labelled
    return p - math.sqrt(p * (1.0 - p) / labelled)


def cusum_threshold(labels_per_second: float, budget_seconds: float) -> float:
    """h = ln(labels expected in the budget): the expected labels before a false alarm, at
    least e^h, then last at least the budget. At least 1 (a handful of labels never alarms)."""
    expected = max(labels_per_second, 0.0) * budget_seconds
    return max(1.0, math.log(expected)) if expected > 1.0 else 1.0


def labels_to_detect(p0: float, drop: float, threshold: float) -> float:
    """About how many labels the CUSUM needs to find a decay of ``drop`` (h / KL)."""
    p1 = p0 - drop
    kl = p1 * math.log(p1 / p0) + (1.0 - p1) * math.log((1.0 - p1) / (1.0 - p0))
    return threshold / kl if kl > 0 else math.inf


def judge_reference_drift(
    live: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]],
    *,
    alpha: float,
    min_samples: int,
    js_threshold: float = 0.1,
    psi_threshold: float = 0.25,
) -> Verdict:
    """Recent inputs and predictions (``live`` bins per feature) against the reference profile
    (``reference`` bins, the same layout). FAIL when some feature drifted: material (JS > 0.1
    or PSI > 0.25) and significant (chi-square p < α / features); PASS when every feature has
    ``min_samples`` and none drifted; INCONCLUSIVE otherwise. ``value`` is the largest JS
    distance, ``details`` has per feature ``.js``, ``.psi``, ``.p``, ``.drifted``."""
    names = sorted(set(live) & set(reference))
    if not names:
        return Verdict.inconclusive("drift: no feature has both live counts and a reference", statistic="chi2-reference")
    tests = len(names)
    details: dict[str, float] = {}
    drifted: list[str] = []
    worst = 0.0
    fewest = min(int(sum(live[n])) for n in names)
    for name in names:
        ref, now = list(reference[name]), list(live[name])
        if len(ref) != len(now) or sum(ref) <= 0 or sum(now) <= 0:
            continue
        js = drift_stats.js_distance(ref, now)
        index = drift_stats.psi(ref, now)
        _, _, p = drift_stats.chi2_homogeneity(ref, now)
        material = js > js_threshold or index > psi_threshold
        hit = material and p * tests < alpha and sum(now) >= min_samples
        details.update({f"{name}.js": js, f"{name}.psi": index, f"{name}.p": min(1.0, p * tests),
                        f"{name}.drifted": 1.0 if hit else 0.0})
        worst = max(worst, js)
        if hit:
            drifted.append(name)
    details["share"] = len(drifted) / tests
    head = f"{len(drifted)}/{tests} drifted from the reference profile"
    if drifted:
        shown = ", ".join(f"{n} (JS {details[n + '.js']:.2f}, PSI {details[n + '.psi']:.2f})" for n in drifted[:5])
        return Verdict(Outcome.FAIL, f"{head}: {shown}; α per check {alpha:.2g}", value=worst, baseline=0.0,
                       statistic="chi2-reference", threshold=js_threshold, samples=fewest, details=details)
    if fewest < min_samples:
        return Verdict(Outcome.INCONCLUSIVE, f"drift: {fewest} recent requests, need {min_samples}", value=worst,
                       statistic="chi2-reference", samples=fewest, details=details)
    return Verdict(Outcome.PASS, f"{head} (largest JS {worst:.3f})", value=worst, baseline=0.0,
                   statistic="chi2-reference", threshold=js_threshold, samples=fewest, details=details)


# --------------------------------------------------------------------------- reading


class _Unreadable(Exception):
    pass


def _total(provider: MetricProvider, query: str) -> float | None:
    result = provider.query(query)
    if result.error is not None:
        raise _Unreadable(result.error)
    if not result.samples:
        return None
    total = result.total()
    return total if math.isfinite(total) and total >= 0 else None


def _by_label(result: QueryResult, key: str) -> dict[str, list[tuple[float, float]]]:
    if result.error is not None:
        raise _Unreadable(result.error)
    out: dict[str, list[tuple[float, float]]] = {}
    for s in result.samples:
        le = float(s.labels.get("le", "nan"))
        if math.isnan(le) or not math.isfinite(s.value):
            continue
        out.setdefault(s.labels.get(key, "prediction") if key else "prediction", []).append((le, max(0.0, s.value)))
    return out


def _bins(pairs: list[tuple[float, float]]) -> list[int]:
    return drift_stats.bins_from_cumulative([v for _, v in sorted(pairs)])


def _selector(model: str, revision: str) -> str:
    return f'model="{escape_label_value(model)}",revision="{escape_label_value(revision)}"'


def read_serving(
    provider: MetricProvider,
    spec: ModelDeploymentSpec,
    revision: str,
    period: float,
    monitored_for: float,
    at: float,
) -> ServingReading:
    """One check of the serving ``revision``: matured labels of the last ``period`` seconds,
    the estimated accuracy, the reference profile, and drift, latency and errors judged on the
    recent window (against the reference, and against the history of the ``monitored_for``
    seconds it has served). Queries are evaluated at ``at``."""
    m = spec.monitoring
    model = spec.model.name
    labels = {"model": model, "revision": revision}
    interval = parse_duration(m.interval)
    alpha = per_check_alpha(interval, parse_duration(m.false_alarm_every))
    window = parse_duration(m.window)
    history = min(parse_duration(m.history), max(monitored_for - window, 0.0))

    p = Pinned(provider, at)
    try:
        correct, labelled = _accuracy_counts(p, spec, labels, period)
        est_sum = _total(p, counter_increase("kanaria_model_prediction_sum", labels, window, 0))
        est_n = _total(p, counter_increase("kanaria_model_prediction_count", labels, window, 0))
        ref_acc = _total(p, f"max(kanaria_model_reference_accuracy{{{_selector(model, revision)}}})")
        ref_n = _total(p, f"max(kanaria_model_reference_accuracy_samples{{{_selector(model, revision)}}})")
        drift = _drift(p, model, revision, window, alpha, m.min_samples)
        slow = _latency(p, labels, window, history, alpha, m.min_samples, spec)
        errors = _errors(p, labels, window, history, alpha, m.min_samples)
    except _Unreadable as exc:
        return ServingReading(revision, period, error=str(exc))
    estimated = est_sum / est_n if est_sum is not None and est_n else None
    return ServingReading(
        revision,
        period,
        correct=correct,
        labelled=labelled,
        estimated_accuracy=estimated if estimated is not None and 0 <= estimated <= 1 else None,
        reference_accuracy=ref_acc if ref_acc is not None and 0 <= ref_acc <= 1 else None,
        reference_samples=int(ref_n or 0),
        drift=drift,
        latency=slow,
        errors=errors,
    )


def _accuracy_counts(
    p: MetricProvider, spec: ModelDeploymentSpec, labels: dict[str, str], period: float
) -> tuple[int | None, int | None]:
    metric = next((x for x in (spec.analysis.metrics if spec.analysis else []) if x.kind == "accuracy"), None)
    if metric is None or period < 1.0:
        return None, None
    horizon = metric.maturity_seconds()
    if horizon > 0:
        at = {**labels, "horizon": f"{horizon:.0f}"}
        right = _total(p, counter_increase("kanaria_model_matured_total", {**at, "outcome": "correct"}, period, 0))
        wrong = _total(p, counter_increase("kanaria_model_matured_total", {**at, "outcome": "incorrect"}, period, 0))
    else:
        right = _total(p, counter_increase("kanaria_model_labels_total", {**labels, "outcome": "correct"}, period, 0))
        wrong = _total(p, counter_increase("kanaria_model_labels_total", {**labels, "outcome": "incorrect"}, period, 0))
    if right is None or wrong is None:
        return None, None
    ok, bad = int(round(right)), int(round(wrong))
    return ok, ok + bad


def _drift(p: MetricProvider, model: str, revision: str, window: float, alpha: float, min_samples: int) -> Verdict | None:
    labels = {"model": model, "revision": revision}
    live = {
        **_by_label(p.query(buckets_increase("kanaria_model_feature", labels, window, 0, by=("feature", "le"))), "feature"),
        **_by_label(p.query(buckets_increase("kanaria_model_prediction", labels, window, 0)), ""),
    }
    sel = _selector(model, revision)
    reference = {
        **_by_label(p.query(f"max by (feature, le) (kanaria_model_reference_feature{{{sel}}})"), "feature"),
        **_by_label(p.query(f"max by (le) (kanaria_model_reference_prediction{{{sel}}})"), ""),
    }
    if not reference:
        return None  # the model ships no reference profile counts: nothing to compare with
    live_bins = {k: _bins(v) for k, v in live.items()}
    ref_bins = {k: _bins(v) for k, v in reference.items()}
    return judge_reference_drift(live_bins, ref_bins, alpha=alpha, min_samples=min_samples)


def _latency(
    p: MetricProvider, labels: dict[str, str], window: float, history: float, alpha: float, min_samples: int,
    spec: ModelDeploymentSpec,
) -> Verdict | None:
    if history < window:
        return None  # not yet a history as long as the window to compare with
    name = "kanaria_model_request_duration_seconds"
    recent = sorted(_by_label(p.query(buckets_increase(name, labels, window, 0)), "").get("prediction", []))
    past = sorted(_by_label(p.query(buckets_increase(name, labels, history, window)), "").get("prediction", []))
    if not recent or not past or [b for b, _ in recent] != [b for b, _ in past]:
        return None
    metric = next((x for x in (spec.analysis.metrics if spec.analysis else []) if x.kind == "latency"), None)
    return latency.judge_latency([b for b, _ in past], [v for _, v in past], [v for _, v in recent],
                                 min_samples=min_samples, max_auc=(metric.max_auc if metric else None) or 0.56,
                                 alpha=alpha)


def _errors(
    p: MetricProvider, labels: dict[str, str], window: float, history: float, alpha: float, min_samples: int
) -> Verdict | None:
    if history < window:
        return None
    recent_n = _total(p, counter_increase("kanaria_model_requests_total", labels, window, 0))
    recent_e = _total(p, counter_increase("kanaria_model_errors_total", labels, window, 0))
    past_n = _total(p, counter_increase("kanaria_model_requests_total", labels, history, window))
    past_e = _total(p, counter_increase("kanaria_model_errors_total", labels, history, window))
    if None in (recent_n, recent_e, past_n, past_e) or not past_n:
        return None
    assert recent_n is not None and recent_e is not None and past_n is not None and past_e is not None
    return proportions.judge_error_rate(
        min(round(past_e), round(past_n)), round(past_n), min(round(recent_e), round(recent_n)), round(recent_n),
        max_error_rate=None, min_requests=min_samples, alpha=alpha,
    )
