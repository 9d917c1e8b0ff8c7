"""Which windows of counters hold which predictions: pure arithmetic on analysis arms.

A prediction served at t is counted as matured at t + H (``cohort_arm``); a step whose split
moved is cut at each move (``period_arms``).
"""

from __future__ import annotations

from kanaria.api.observed import Arm

__all__ = ["cohort_arm", "period_arms"]


def cohort_arm(arm: Arm, horizon: float) -> Arm | None:
    """The window of matured counts that holds exactly the predictions ``arm`` served.

    A prediction served at t is counted (matured) at t + H, so the predictions served over
    [now − offset − window, now − offset] are counted over [that + H], cut at now: window and
    offset shift by H. None while not one second of them has matured yet.
    """
    offset = max(0.0, arm.offset - horizon)
    window = arm.window + arm.offset - horizon - offset
    return Arm(arm.revision, window, offset) if window >= 1.0 else None


def period_arms(arm: Arm, periods: tuple[float, ...]) -> list[Arm]:
    """The arm cut at each split change (``periods``: seconds ago, oldest first)."""
    edges = [arm.offset + arm.window, *(a for a in periods if arm.offset < a < arm.offset + arm.window), arm.offset]
    return [Arm(arm.revision, start - end, end) for start, end in zip(edges, edges[1:], strict=False) if start > end]
