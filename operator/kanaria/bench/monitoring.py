"""Simulated monitoring of a serving revision: how often the detectors alarm when nothing
changes, and how soon they find a 2-point accuracy decay or a covariate shift.

The real detector code decides (``cusum_step``/``cusum_threshold`` for accuracy,
``judge_reference_drift`` for drift); only the streams are simulated:

* **Accuracy**: matured labels arrive at ``rate`` per second, checked every ``interval``
  seconds; the revision's true accuracy is p0 (uniform 0.85–0.97 per run). Its baseline is
  estimated from its first ``baseline_labels`` labels (5,000, the default), as the operator
  does. Without change,
  false alarms are counted over ``days`` (the alarm is reset after each, as a person would);
  with a decay of ``drop`` after the baseline, the time to the alarm is measured.
* **Drift**: one feature's reference profile is 10 bins of the ``reference_rows`` rows the
  model was validated on (a sample of the true distribution); every ``interval`` the last
  ``window`` seconds of requests at ``request_rate`` per second are tested against it at
  α = interval / budget. A shift moves ``shifted_share`` of the true distribution's mass up
  by one bin (a covariate shift of about a third of a standard deviation for deciles of a
  normal feature).

Pure numpy and the project's functions; seeded; ``run_monitoring_benchmark`` returns rows a
table prints from (``hack/bench_monitoring.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kanaria.analysis.serving import (
    conservative_baseline,
    cusum_step,
    cusum_threshold,
    judge_reference_drift,
    per_check_alpha,
)
from kanaria.api.verdict import Outcome

__all__ = ["AccuracyRun", "DriftRun", "MonitorRow", "accuracy_monitor", "drift_monitor", "run_monitoring_benchmark"]

DAY = 86400.0


@dataclass(frozen=True)
class AccuracyRun:
    false_alarms: int
    days: float
    detection_seconds: float | None


@dataclass(frozen=True)
class DriftRun:
    false_alarms: int
    days: float
    detection_seconds: float | None


@dataclass(frozen=True)
class MonitorRow:
    detector: str
    setting: str
    budget_days: float
    runs: int
    false_alarms_per_budget: float
    median_minutes_to_detect: float
    detected_share: float


def accuracy_monitor(
    rng: np.random.Generator, *, rate: float, budget: float, days: float, interval: float = 60.0,
    drop: float = 0.02, baseline_labels: int = 5000, decay: float | None = None, horizon: float = 2 * DAY,
    plain_baseline: bool = False,
) -> AccuracyRun:
    """One revision watched for ``days`` without change (false alarms), or, with ``decay``,
    until the alarm after accuracy falls by ``decay`` right after the baseline."""
    p0 = rng.uniform(0.85, 0.97)
    per_check = rate * interval
    early = int(rng.binomial(baseline_labels, p0))
    base = early / baseline_labels if plain_baseline else conservative_baseline(early, baseline_labels)
    start = baseline_labels / rate
    checks = int((horizon if decay is not None else days * DAY) / interval)
    truth = p0 - (decay or 0.0)
    labels = rng.poisson(per_check, checks)
    correct = rng.binomial(labels, truth)
    statistic, alarms, seen = 0.0, 0, baseline_labels
    for k in range(checks):
        seen += int(labels[k])
        h = cusum_threshold(seen / (start + (k + 1) * interval), budget)
        statistic = cusum_step(statistic, int(correct[k]), int(labels[k]), base, drop)
        if statistic >= h:
            if decay is not None:
                return AccuracyRun(0, 0.0, (k + 1) * interval)
            alarms += 1
            statistic = 0.0
    return AccuracyRun(alarms, days if decay is None else 0.0, None)


def drift_monitor(
    rng: np.random.Generator, *, request_rate: float, budget: float, days: float, interval: float = 60.0,
    window: float = 600.0, reference_rows: int = 455, shifted_share: float | None = None,
    horizon: float = DAY, min_samples: int = 500,
) -> DriftRun:
    """One feature watched every ``interval`` over the last ``window``: false alarms over
    ``days`` without change, or the time to the alarm after a shift."""
    bins = 10
    truth = np.full(bins, 1.0 / bins)
    reference = rng.multinomial(reference_rows, truth)
    live = truth.copy()
    if shifted_share is not None:
        moved = live * shifted_share
        live = live - moved + np.roll(moved, 1) * (np.arange(bins) > 0)
        live[-1] += moved[-1]
        live /= live.sum()
    alpha = per_check_alpha(interval, budget)
    per_check = request_rate * interval
    slots = int(window / interval)
    checks = int((horizon if shifted_share is not None else days * DAY) / interval)
    recent = [rng.multinomial(int(rng.poisson(per_check)), live) for _ in range(slots)]
    alarms, alarmed = 0, False
    for k in range(checks):
        recent = [*recent[1:], rng.multinomial(int(rng.poisson(per_check)), live)]
        counts = np.sum(recent, axis=0)
        verdict = judge_reference_drift({"x": counts.tolist()}, {"x": reference.tolist()}, alpha=alpha,
                                        min_samples=min_samples)
        hit = verdict.outcome is Outcome.FAIL
        if hit and shifted_share is not None:
            return DriftRun(0, 0.0, (k + 1) * interval)
        if hit and not alarmed:
            alarms += 1
        alarmed = hit
    return DriftRun(alarms, days if shifted_share is None else 0.0, None)


def run_monitoring_benchmark(
    runs: int = 40, seed: int = 20240601, days: float = 30.0, baseline_labels: int = 5000,
    plain_baseline: bool = False,
) -> list[MonitorRow]:
    """The rows of docs/benchmarks.md's monitoring table (a budget of 1 day, so that a month
    of simulated traffic shows the false-alarm rate; 30 days for the detection times).
    ``plain_baseline``: compare with the early-life estimate itself, without the operator's
    one-standard-error margin (to show why it has one)."""
    rng = np.random.default_rng(seed)
    rows: list[MonitorRow] = []
    for rate in (1.0, 10.0):
        quiet = [accuracy_monitor(rng, rate=rate, budget=DAY, days=days, baseline_labels=baseline_labels,
                                  plain_baseline=plain_baseline) for _ in range(runs)]
        found = [accuracy_monitor(rng, rate=rate, budget=30 * DAY, days=0, decay=0.02, baseline_labels=baseline_labels,
                                  plain_baseline=plain_baseline) for _ in range(runs)]
        rows.append(_row("accuracy CUSUM, 2-point decay", f"{rate:g} labels/s", quiet, found, runs))
    for rate in (2.0, 20.0):
        quiet_d = [drift_monitor(rng, request_rate=rate, budget=DAY, days=days / 3) for _ in range(max(runs // 4, 5))]
        found_d = [drift_monitor(rng, request_rate=rate, budget=30 * DAY, days=0, shifted_share=0.8)
                   for _ in range(max(runs // 4, 5))]
        rows.append(_row("drift vs reference, 80% of the mass one decile up (JS 0.17)", f"{rate:g} requests/s", quiet_d,
                         found_d, max(runs // 4, 5)))
    return rows


def _row(detector: str, setting: str, quiet: list, found: list, runs: int) -> MonitorRow:  # type: ignore[type-arg]
    alarms = sum(r.false_alarms for r in quiet)
    observed_days = sum(r.days for r in quiet)
    times = [r.detection_seconds for r in found if r.detection_seconds is not None]
    return MonitorRow(
        detector, setting, 1.0, runs,
        false_alarms_per_budget=alarms / observed_days if observed_days else math.nan,
        median_minutes_to_detect=float(np.median(times)) / 60 if times else math.inf,
        detected_share=len(times) / len(found) if found else math.nan,
    )
