"""The rollout engine: a pure state machine from (spec, status, observations, now) to a decision."""

from kanaria.rollout.engine import decide, step_metrics
from kanaria.rollout.plan import analysis_plan
from kanaria.rollout.types import Decision, Event, Observations, UserAction

__all__ = [
    "decide",
    "analysis_plan",
    "step_metrics",
    "Decision",
    "Event",
    "Observations",
    "UserAction",
]
