"""Measurements and checks that change nothing but their own time and numbers are kept in
memory, not written: an object at rest, or a canary that keeps passing through a long pause,
costs almost no status writes (docs/scale.md)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from kanaria.api.models import MetricResult, ModelDeploymentStatus
from kanaria.rollout.monitoring import parse_time

if TYPE_CHECKING:
    from kanaria.controller.reconcile import ReconcileContext

__all__ = ["QUIET_CHECKS_FOR", "QUIET_MEASUREMENTS_FOR", "quiet_check", "quiet_measurement", "status_dump"]


def status_dump(status: ModelDeploymentStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


QUIET_CHECKS_FOR = 600.0
"""A check of the serving revision that changed nothing but its own time is written at most
this often (seconds): an object at rest costs no API request per check."""


def quiet_check(
    ctx: ReconcileContext, obj: dict[str, Any], before: ModelDeploymentStatus, after: ModelDeploymentStatus,
    now: datetime,
) -> bool:
    """Whether this cycle's status differs from the one read only in ``monitoring.lastAt`` (a
    check that found no new labels, no new finding), written less than QUIET_CHECKS_FOR ago: then
    the time is kept in memory (``ctx.volatile``) and nothing is written. After a restart the
    next check covers the period since the last written time; no label is counted twice because
    the unwritten checks found none."""
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    old, new = before.monitoring, after.monitoring
    if old is None or new is None or new.last_at is None or obj.get("status") is None:
        return False
    stored = parse_time(((obj.get("status") or {}).get("monitoring") or {}).get("lastAt"))
    if stored is None or (now - stored).total_seconds() >= QUIET_CHECKS_FOR:
        return False
    if status_dump(before.model_copy(update={"monitoring": old.model_copy(update={"last_at": None})})) != \
            status_dump(after.model_copy(update={"monitoring": new.model_copy(update={"last_at": None})})):
        return False
    ctx.volatile[key] = (str(meta.get("resourceVersion")), new.last_at)
    return True


QUIET_MEASUREMENTS_FOR = 60.0
"""A measurement of a canary that changed no verdict, failed nothing and could query everything
(nothing changed but the numbers, the time and the message) is written at most this often (seconds): a canary that keeps passing through a long
pause costs one status write a minute, not one per interval."""


def _measurement_free(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The status without what every measurement changes: its time, its numbers, the message
    and the conditions' messages; each metric's verdict stays."""
    return status_dump(status.model_copy(update={
        "last_analysis_at": None,
        "message": "",
        "analysis": [MetricResult(metric=r.metric, kind=r.kind, verdict=r.verdict) for r in status.analysis],
        "conditions": [c.model_copy(update={"message": ""}) for c in status.conditions],
    }))


def quiet_measurement(
    ctx: ReconcileContext, obj: dict[str, Any], before: ModelDeploymentStatus, after: ModelDeploymentStatus,
    now: datetime,
) -> bool:
    """Whether this cycle only measured a canary again with the same verdicts, less than
    QUIET_MEASUREMENTS_FOR after the measurement last written: then its status is kept in memory
    (``ctx.unwritten``), the next cycle reads it from there, and nothing is written. A verdict,
    a step, a streak or a phase that changes is written at once; after a restart the next
    measurement is simply made sooner."""
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    written = ((obj.get("status") or {}).get("lastAnalysisAt"))
    stored = parse_time(written)
    if (stored is None or after.last_analysis_at is None or after.last_analysis_at == before.last_analysis_at
            or after.canary_revision is None or not after.analysis
            or any(r.verdict == "fail" or r.error for r in after.analysis)):
        return False  # a failing or blind measurement is written each time
    if (now - stored).total_seconds() >= QUIET_MEASUREMENTS_FOR:
        return False
    if _measurement_free(before) != _measurement_free(after):
        return False
    ctx.unwritten[key] = (str(written), after)
    return True
