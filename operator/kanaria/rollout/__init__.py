"""The rollout engine: a pure state machine from (spec, status, observations, now) to a decision."""

from kanaria.rollout.engine import decide, step_metrics
from kanaria.rollout.plan import analysis_plan
from kanaria.rollout.types import (
    AnalysisPlan,
    Arm,
    Decision,
    Event,
    Observations,
    UserAction,
    WorkloadState,
)

__all__ = [
    "decide",
    "analysis_plan",
    "step_metrics",
    "AnalysisPlan",
    "Arm",
    "Decision",
    "Event",
    "Observations",
    "UserAction",
    "WorkloadState",
]
