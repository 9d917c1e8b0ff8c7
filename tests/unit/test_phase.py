"""The phase is a pure function of spec, status and observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.unit.test_engine import make_spec

from kanaria.api import ModelDeploymentStatus
from kanaria.api.models import HistoryEntry
from kanaria.api.observed import WorkloadState
from kanaria.rollout import Observations
from kanaria.rollout.phase import phase_of

NOW = datetime(2026, 1, 2, tzinfo=UTC)
READY = {r: WorkloadState(replicas=2, ready=2) for r in ("r1", "r2")}


def entry(rev: str, outcome: str) -> HistoryEntry:
    return HistoryEntry(revision=rev, model_version="v", outcome=outcome)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "revision", "workloads", "phase"),
    [
        ({}, "r1", {}, "Pending"),
        ({"stable_revision": "r1"}, "r1", {}, "Progressing"),  # not ready yet
        ({"stable_revision": "r1"}, "r1", READY, "Stable"),
        ({"stable_revision": "r1", "canary_revision": "r2"}, "r2", READY, "Progressing"),
        ({"stable_revision": "r1", "canary_revision": "r2", "paused": True}, "r2", READY, "Paused"),
        ({"stable_revision": "r2", "prior_revision": "r1", "watch_until": "2026-01-01T00:00:00Z"}, "r2", READY, "Watching"),
        ({"stable_revision": "r1", "rejected_revision": "r2", "history": [entry("r2", "rolledBack")]}, "r2", READY, "RolledBack"),
        # the spec went back to the stable revision: no longer rolled back
        ({"stable_revision": "r1", "rejected_revision": "r2", "history": [entry("r2", "rolledBack")]}, "r1", READY, "Stable"),
        # another A/B challenger won over spec.model's revision: refused, but the rollout ended well
        ({"stable_revision": "r1", "rejected_revision": "r2", "history": [entry("r2", "lost"), entry("r1", "promoted")]}, "r2", READY, "Stable"),
    ],
)
def test_phase_of(status: dict[str, Any], revision: str, workloads: dict[str, WorkloadState], phase: str) -> None:
    st = ModelDeploymentStatus(**status)
    assert phase_of(make_spec(), st, Observations(revision=revision, version="v", workloads=workloads), NOW) == phase


def test_an_indefinite_pause_step_is_paused_once_begun_and_the_canary_serves() -> None:
    from kanaria.rollout.clock import iso

    spec = make_spec(strategy={"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}})
    st = ModelDeploymentStatus(stable_revision="r1", canary_revision="r2", current_step=1, canary_weight=10,
                               step_started_at=iso(NOW))
    seen = Observations(revision="r2", version="v", workloads=READY)
    assert phase_of(spec, st, seen, NOW) == "Progressing"  # the cycle that completed step 1
    assert phase_of(spec, st, seen, NOW + timedelta(seconds=1)) == "Paused"
    only_r1 = Observations(revision="r2", version="v", workloads={"r1": READY["r1"]})
    assert phase_of(spec, st, only_r1, NOW + timedelta(seconds=1)) == "Progressing"
