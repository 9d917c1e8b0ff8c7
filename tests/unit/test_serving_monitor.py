"""Watching the serving revision between rollouts: the engine's part (pure) and the statistics."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from tests.unit.test_engine import T0, make_spec, ready

from kanaria.analysis.serving import (
    cusum_step,
    cusum_threshold,
    judge_reference_drift,
    labels_to_detect,
    per_check_alpha,
)
from kanaria.api.models import ModelDeploymentStatus
from kanaria.api.observed import ServingReading
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout import Observations, decide
from kanaria.rollout.monitoring import monitoring_due


def spec(**monitoring: Any) -> Any:
    return make_spec(monitoring={"interval": "10s", "baselineLabels": 200, "falseAlarmEvery": "1d", **monitoring})


def stable() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")


def seen(reading: ServingReading | None = None) -> Observations:
    return Observations(revision="r1", version="v1", generation=1, workloads=ready("r1"), weights={"r1": 100},
                        serving=reading)


def run(s: Any, st: ModelDeploymentStatus, readings: list[ServingReading]) -> tuple[ModelDeploymentStatus, list[Any]]:
    """Monitoring starts, then one reading per interval; returns the status and every Event."""
    d = decide(s, st, seen(), T0)
    events = list(d.events)
    now = T0
    for r in readings:
        now += timedelta(seconds=10)
        assert monitoring_due(s, d.status, now) == pytest.approx(10.0)
        d = decide(s, d.status, seen(r), now)
        events += d.events
    return d.status, events


def labels(correct: int, n: int, **kw: Any) -> ServingReading:
    return ServingReading("r1", 10.0, correct=correct, labelled=n, **kw)


def condition(st: ModelDeploymentStatus, kind: str) -> Any:
    return next(c for c in st.conditions if c.type == kind)


def test_monitoring_starts_with_the_serving_revision_and_checks_once_per_interval() -> None:
    d = decide(spec(), stable(), seen(), T0)
    assert d.status.monitoring is not None and d.status.monitoring.revision == "r1"
    assert monitoring_due(spec(), d.status, T0 + timedelta(seconds=5)) is None
    assert monitoring_due(spec(), d.status, T0 + timedelta(seconds=11)) == pytest.approx(11)
    assert d.requeue_after <= 10
    assert condition(d.status, "Drifting").status == "False"
    off = make_spec(monitoring={"enabled": False})
    assert decide(off, stable(), seen(), T0).status.monitoring is None


def test_early_life_sets_the_baseline_then_a_decay_raises_degraded_once_and_recovery_clears_it() -> None:
    healthy = [labels(95, 100)] * 3  # 200 labels reach baselineLabels → baseline 0.95, then watched
    st, events = run(spec(), stable(), healthy)
    mon = st.monitoring
    assert mon is not None and mon.baseline_accuracy == pytest.approx(0.95) and mon.early_labels == 200
    assert any(e.reason == "BaselineSet" for e in events)
    # Four points worse: the CUSUM climbs to its threshold and alarms — once.
    st, events = run(spec(), stable(), healthy + [labels(91, 100)] * 40)
    found = {f.kind: f for f in st.monitoring.findings}  # type: ignore[union-attr]
    assert found["accuracy"].alarm and "baseline 0.950" in found["accuracy"].detail
    assert condition(st, "Degraded").status == "True" and condition(st, "Degraded").reason == "AccuracyDecay"
    assert [e.reason for e in events].count("Degraded") == 1
    # Good again: the statistic returns to 0 and the alarm ends.
    st, events = run(spec(), stable(), healthy + [labels(91, 100)] * 40 + [labels(99, 100)] * 80)
    assert not {f.kind: f for f in st.monitoring.findings}["accuracy"].alarm  # type: ignore[union-attr]
    assert condition(st, "Degraded").status == "False" and "Recovered" in [e.reason for e in events]


def test_no_alarm_while_accuracy_holds() -> None:
    st, events = run(spec(), stable(), [labels(95, 100)] * 100)
    assert not [e for e in events if e.type == "Warning"]
    assert st.monitoring is not None and st.monitoring.threshold is not None and st.monitoring.cusum < st.monitoring.threshold


def test_early_life_far_below_validation_is_a_finding() -> None:
    worse = [labels(85, 100, reference_accuracy=0.96, reference_samples=2000)] * 3
    st, _ = run(spec(), stable(), worse)
    found = {f.kind: f for f in st.monitoring.findings}  # type: ignore[union-attr]
    assert found["validated"].alarm and "0.850" in found["validated"].detail
    assert condition(st, "Degraded").reason == "BelowValidation"
    close = [labels(95, 100, reference_accuracy=0.96, reference_samples=2000)] * 3
    st, _ = run(spec(), stable(), close)
    assert not {f.kind: f for f in st.monitoring.findings}["validated"].alarm  # type: ignore[union-attr]


def test_drift_raises_drifting_and_an_inconclusive_check_keeps_it() -> None:
    drifted = Verdict(Outcome.FAIL, "1/3 drifted from the reference profile: mean radius (JS 0.40)", value=0.4,
                      samples=900)
    unsure = Verdict(Outcome.INCONCLUSIVE, "drift: 12 recent requests, need 500", samples=12)
    st, events = run(spec(), stable(), [ServingReading("r1", 10.0, drift=drifted),
                                        ServingReading("r1", 10.0, drift=unsure)])
    assert condition(st, "Drifting").status == "True" and "mean radius" in condition(st, "Drifting").message
    assert [e.reason for e in events] .count("Drifting") == 1
    assert condition(st, "Degraded").status == "False"  # drift alone is not degradation


def test_a_new_revision_starts_monitoring_afresh() -> None:
    st, _ = run(spec(), stable(), [labels(95, 100)] * 3)
    moved = st.model_copy(update={"stable_revision": "r2", "stable_version": "v2"})
    d = decide(spec(), moved, Observations(revision="r2", version="v2", workloads=ready("r2")), T0 + timedelta(hours=1))
    assert d.status.monitoring is not None and d.status.monitoring.revision == "r2"
    assert d.status.monitoring.baseline_accuracy is None and d.status.monitoring.findings == []


def test_unreadable_metrics_change_nothing() -> None:
    st, _ = run(spec(), stable(), [labels(95, 100)])
    before = st.monitoring
    d = decide(spec(), st, seen(ServingReading("r1", 10.0, error="connection refused")), T0 + timedelta(seconds=30))
    assert d.status.monitoring == before


# ------------------------------------------------------------------------------- statistics


def test_cusum_increments_are_the_log_likelihood_ratio_of_the_decay() -> None:
    p0, drop = 0.9, 0.02
    right, wrong = math.log(0.88 / 0.9), math.log(0.12 / 0.1)
    assert cusum_step(0.0, 0, 1, p0, drop) == pytest.approx(wrong)
    assert cusum_step(5.0, 1, 1, p0, drop) == pytest.approx(5.0 + right)
    assert cusum_step(0.0, 100, 100, p0, drop) == 0.0  # never below 0
    assert math.isfinite(cusum_step(0.0, 0, 1, 1.0, drop))  # a perfect early life
    with pytest.raises(ValueError):
        cusum_step(0.0, 5, 3, p0, drop)


def test_the_threshold_follows_the_budget_and_the_label_rate() -> None:
    assert cusum_threshold(1.0, 86400) == pytest.approx(math.log(86400))
    assert cusum_threshold(10.0, 86400) > cusum_threshold(1.0, 86400)
    assert cusum_threshold(0.0, 86400) == 1.0
    assert per_check_alpha(60, 30 * 86400) == pytest.approx(60 / (30 * 86400))
    # About 4,000 labels to find two points lost from 0.95 at one label a second over 30 days.
    assert 3000 < labels_to_detect(0.95, 0.02, cusum_threshold(1.0, 30 * 86400)) < 5000


def test_reference_drift_needs_a_material_and_significant_difference() -> None:
    ref = {"x": [100, 200, 400, 200, 100], "prediction": [300, 400, 300]}
    same = {"x": [98, 205, 395, 202, 100], "prediction": [301, 398, 301]}
    moved = {"x": [10, 40, 200, 400, 350], "prediction": [300, 400, 300]}
    assert judge_reference_drift(same, ref, alpha=1e-6, min_samples=500).outcome is Outcome.PASS
    v = judge_reference_drift(moved, ref, alpha=1e-6, min_samples=500)
    assert v.outcome is Outcome.FAIL and "x (JS" in v.reason and v.details["x.drifted"] == 1.0
    assert v.details["prediction.drifted"] == 0.0
    few = {"x": [1, 4, 20, 40, 35], "prediction": [30, 40, 30]}
    assert judge_reference_drift(few, ref, alpha=1e-6, min_samples=500).outcome is Outcome.INCONCLUSIVE
    # Tiny but significant differences on huge counts are not drift.
    big_ref = {"x": [c * 1000 for c in ref["x"]]}
    nudged = {"x": [100_500, 199_000, 400_000, 200_500, 100_000]}
    assert judge_reference_drift(nudged, big_ref, alpha=1e-6, min_samples=500).outcome is Outcome.PASS


# ------------------------------------------------------------------------------- simulation


def test_simulated_monitors_keep_their_false_alarm_budget_and_find_a_decay() -> None:
    """The real detectors on simulated streams (kanaria.bench.monitoring; the full run is
    `make bench-monitor`): a budget of one day, ten labels a second, ten days without change
    alarm at most about once per budget on average; a 2-point decay is found in most runs
    within two days; drift checks without change stay quiet and a covariate shift is found."""
    import numpy as np

    from kanaria.bench.monitoring import DAY, accuracy_monitor, drift_monitor

    rng = np.random.default_rng(7)
    quiet = [accuracy_monitor(rng, rate=10.0, budget=DAY, days=10) for _ in range(8)]
    assert sum(r.false_alarms for r in quiet) / sum(r.days for r in quiet) <= 1.0
    found = [accuracy_monitor(rng, rate=10.0, budget=30 * DAY, days=0, decay=0.02) for _ in range(10)]
    assert sum(r.detection_seconds is not None for r in found) >= 8
    still = [drift_monitor(rng, request_rate=20.0, budget=DAY, days=1) for _ in range(2)]
    assert sum(r.false_alarms for r in still) <= 2
    shifted = [drift_monitor(rng, request_rate=20.0, budget=30 * DAY, days=0, shifted_share=0.8) for _ in range(5)]
    assert sum(r.detection_seconds is not None for r in shifted) >= 3


def test_the_serving_revision_is_watched_after_a_rollback_too() -> None:
    """The spec still names a rolled-back revision; the stable one serves everything and is
    monitored as ever."""
    from kanaria.api.models import HistoryEntry

    st = ModelDeploymentStatus(phase="RolledBack", stable_revision="r1", stable_version="v1", rejected_revision="r9",
                               history=[HistoryEntry(revision="r9", model_version="v9", outcome="rolledBack")])
    rejected = Observations(revision="r9", version="v9", generation=1, workloads=ready("r1"), weights={"r1": 100})
    d = decide(spec(), st, rejected, T0)
    assert d.status.phase == "RolledBack" and d.status.monitoring is not None
    assert monitoring_due(spec(), d.status, T0 + timedelta(seconds=11)) == pytest.approx(11)
