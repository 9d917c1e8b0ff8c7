"""Watching the serving revision between rollouts: the detectors' state in status.monitoring,
findings, and the Events when a finding starts or ends. The numbers come in
``Observations.serving`` (see :mod:`kanaria.analysis.serving` for the statistics)."""

from __future__ import annotations

import math
from datetime import datetime

from kanaria.analysis.serving import conservative_baseline, cusum_step, cusum_threshold
from kanaria.api.durations import parse_duration
from kanaria.api.models import Finding, ModelDeploymentSpec, ModelDeploymentStatus, MonitorStatus
from kanaria.api.observed import ServingReading
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout.clock import iso, parse_iso
from kanaria.rollout.cycle import Cycle

__all__ = ["alarms", "monitoring_due", "monitoring_on", "watch_serving", "DEGRADING", "VALIDATED_Z"]

DEGRADING = ("accuracy", "validated", "latency", "errors")
"""Finding kinds behind the Degraded condition (drift has its own, Drifting)."""
VALIDATED_Z = 2.326
"""One-sided 1%: early life significantly below the validated accuracy minus the drop."""


def parse_time(text: str | None) -> datetime | None:
    """A stored timestamp, or None when absent or unreadable (status may be written by anyone)."""
    try:
        return parse_iso(text)
    except ValueError:
        return None


def monitoring_on(spec: ModelDeploymentSpec) -> bool:
    return spec.analysis is not None and spec.monitoring.enabled


def monitoring_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> float | None:
    """Seconds since the last check when the serving revision is due for one (the period the
    check covers), None when not due. The first check of a revision comes one interval after
    monitoring of it began."""
    if not monitoring_on(spec) or status.phase not in ("Stable", "RolledBack") or status.stable_revision is None:
        return None
    mon = status.monitoring
    if mon is None or mon.revision != status.stable_revision:
        return None
    last = parse_time(mon.last_at or mon.started_at)
    if last is None:
        return None
    elapsed = (now - last).total_seconds()
    return elapsed if elapsed >= parse_duration(spec.monitoring.interval) else None


def watch_serving(c: Cycle) -> None:
    """Start monitoring a newly serving revision, or take in this cycle's reading of it."""
    st, spec = c.st, c.spec
    if not monitoring_on(spec) or st.stable_revision is None:
        return
    interval = parse_duration(spec.monitoring.interval)
    mon = st.monitoring
    if mon is None or mon.revision != st.stable_revision:
        st.monitoring = MonitorStatus(revision=st.stable_revision, started_at=iso(c.now))
        c.requeue(interval)
        return
    reading = c.obs.serving
    if reading is not None and reading.revision == mon.revision and reading.error is not None:
        c.requeue(interval)  # metrics unreadable: try again an interval later, not at once
        return
    if reading is not None and reading.revision == mon.revision and reading.error is None:
        mon = mon.model_copy(deep=True)
        _take(c, mon, reading)
        st.monitoring = mon
    last = parse_time(mon.last_at or mon.started_at)
    waited = (c.now - last).total_seconds() if last is not None else 0.0
    c.requeue(max(interval - waited, 1.0))


def _take(c: Cycle, mon: MonitorStatus, r: ServingReading) -> None:
    spec = c.spec
    m = spec.monitoring
    mon.last_at = iso(c.now)
    if r.reference_accuracy is not None:
        mon.reference_accuracy = r.reference_accuracy
    mon.estimated_accuracy = r.estimated_accuracy
    if r.labelled is not None and r.correct is not None and r.labelled > 0:
        mon.labels += r.labelled
        mon.recent_labels = r.labelled
        mon.recent_accuracy = r.correct / r.labelled
        if mon.baseline_accuracy is None:
            _early_life(c, mon, r.correct, r.labelled, r.reference_samples)
        else:
            started = parse_time(mon.started_at)
            served = (c.now - started).total_seconds() if started is not None else r.period
            rate = mon.labels / max(served, 1.0)
            mon.threshold = cusum_threshold(rate, parse_duration(m.false_alarm_every))
            base = conservative_baseline(mon.early_correct, mon.early_labels)
            mon.cusum = cusum_step(mon.cusum, r.correct, r.labelled, base, m.accuracy_drop)
            alarm = mon.cusum >= mon.threshold
            clear = mon.cusum == 0.0
            detail = (
                f"accuracy {mon.recent_accuracy:.3f} over the last {r.labelled} labels, baseline "
                f"{mon.baseline_accuracy:.3f}; decay statistic {mon.cusum:.1f} (alarm at {mon.threshold:.1f})"
            )
            _finding(c, mon, "accuracy", alarm, clear, mon.recent_accuracy, mon.baseline_accuracy, r.labelled, detail)
    for kind, verdict in (("drift", r.drift), ("latency", r.latency), ("errors", r.errors)):
        if verdict is not None:
            _verdict_finding(c, mon, kind, verdict)


def _early_life(c: Cycle, mon: MonitorStatus, correct: int, labelled: int, reference_samples: int) -> None:
    """Collect the baseline; once complete, compare it with the validated (offline) accuracy."""
    mon.early_correct += correct
    mon.early_labels += labelled
    if mon.early_labels < c.spec.monitoring.baseline_labels:
        return
    base = mon.early_correct / mon.early_labels
    mon.baseline_accuracy = base
    said = f"baseline accuracy {base:.3f} from the first {mon.early_labels} labels in production"
    ref = mon.reference_accuracy
    if ref is not None and reference_samples > 0:
        drop = c.spec.monitoring.accuracy_drop
        se = math.sqrt(base * (1 - base) / mon.early_labels + ref * (1 - ref) / reference_samples)
        z = (base - (ref - drop)) / se if se > 0 else 0.0
        below = z < -VALIDATED_Z
        detail = (f"accuracy in production {base:.3f} ({mon.early_labels} labels) vs {ref:.3f} in validation "
                  f"({reference_samples} rows): {'significantly below' if below else 'not significantly below'} "
                  f"validation − {drop:g} (z {z:.2f})")
        _finding(c, mon, "validated", below, not below, base, ref, mon.early_labels, detail)
        said += f"; validation accuracy {ref:.3f}"
    c.event("BaselineSet", f"revision {mon.revision}: {said}")


def _verdict_finding(c: Cycle, mon: MonitorStatus, kind: str, verdict: Verdict) -> None:
    if verdict.outcome is Outcome.INCONCLUSIVE:
        return  # too little recent traffic: the finding stays as it was
    alarm = verdict.outcome is Outcome.FAIL
    reference = verdict.baseline
    _finding(c, mon, kind, alarm, not alarm, verdict.value, reference, verdict.samples, verdict.reason)


def _finding(
    c: Cycle, mon: MonitorStatus, kind: str, alarm: bool, clear: bool,
    value: float | None, reference: float | None, samples: int, detail: str,
) -> None:
    """Record a detector's result; an Event when an alarm starts (Warning) or ends."""
    old = next((f for f in mon.findings if f.kind == kind), None)
    was = old is not None and old.alarm
    now_alarm = alarm or (was and not clear)
    since = ((old.since if old is not None and was else None) or iso(c.now)) if now_alarm else None
    new = Finding(kind=kind, alarm=now_alarm, value=_finite(value), reference=_finite(reference),  # type: ignore[arg-type]
                  samples=samples, detail=detail[:1024], since=since)
    mon.findings = [*(f for f in mon.findings if f.kind != kind), new]
    mon.findings.sort(key=lambda f: f.kind)
    if now_alarm and not was:
        reason = "Drifting" if kind == "drift" else "Degraded"
        c.event(reason, f"revision {mon.revision}: {kind}: {detail}", warning=True)
    elif was and not now_alarm:
        c.event("Recovered", f"revision {mon.revision}: {kind} back to normal: {detail}")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def alarms(status: ModelDeploymentStatus, kinds: tuple[str, ...]) -> list[Finding]:
    """The findings in alarm among ``kinds`` for the revision serving now."""
    mon = status.monitoring
    if mon is None or mon.revision != status.stable_revision:
        return []
    return [f for f in mon.findings if f.alarm and f.kind in kinds]
