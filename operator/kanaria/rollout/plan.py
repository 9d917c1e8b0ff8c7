"""What to measure, and over which windows: a pure function of spec, status and time."""

from __future__ import annotations

from datetime import datetime

from kanaria.api.models import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.api.observed import AnalysisPlan, Arm
from kanaria.rollout.clock import seconds_since

__all__ = ["analysis_plan", "MAX_WINDOW"]

MAX_WINDOW = 24 * 3600.0


SPLIT_SETTLE_S = 30.0
SPLIT_SETTLE_INTERVALS = 5
"""The split is checked (sample ratio) once the step's weights have been in force for
max(SPLIT_SETTLE_S, SPLIT_SETTLE_INTERVALS × interval): request counts come from counters
scraped every few seconds, so a window only a few scrapes long starts a scrape early or late
and mixes in requests sent at the previous weights — a false mismatch on a healthy split."""


def _window(seconds: float, floor: float) -> float:
    return min(MAX_WINDOW, max(floor, seconds))


def analysis_plan(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
) -> AnalysisPlan | None:
    """The measurement due now, or None.

    During a canary the new revision is compared with the stable revision serving beside it,
    both over the time since the current step started (evidence at the current weight
    accumulates; it is not thrown away each interval). In the watch window after promotion
    the promoted revision, over the time since promotion, is compared with the prior revision
    over the whole rollout (its late labels still count). Nothing is measured while the new
    revision has no traffic: no weight, unless it is a shadow or an A/B test by match (which
    gets the requests that match) once that is set up.
    """
    if spec.analysis is None or not spec.analysis.metrics:
        return None
    interval = spec.interval_seconds()
    if status.last_analysis_at is not None and seconds_since(status.last_analysis_at, now) < interval:
        return None
    metrics = tuple(m.name for m in spec.analysis.metrics)
    if status.canary_revision is not None and status.stable_revision is not None:
        shadowing = spec.strategy.shadow is not None and status.current_step >= 1
        ab = spec.strategy.ab_test
        matching = ab is not None and ab.match is not None and status.current_step >= 1
        if status.canary_weight <= 0 and not shadowing and not matching:
            return None
        window = _window(seconds_since(status.step_started_at, now), interval)
        others = tuple(
            Arm(a.revision, window) for a in status.arms[1:] if not a.outcome
        ) if status.current_step >= 1 else ()
        moving = ab is not None and ab.bandit  # a bandit changes the split within the step
        weighted = (not shadowing and not matching and not moving and not status.arms
                    and 0 < status.canary_weight < 100)
        settled = seconds_since(status.step_started_at, now) >= max(SPLIT_SETTLE_S, SPLIT_SETTLE_INTERVALS * interval)
        split = (status.canary_weight, 100 - status.canary_weight) if weighted and settled else None
        periods = tuple(
            age for age in (seconds_since(t, now) for t in status.split_changed_at) if 0 < age < window
        ) if moving else ()
        return AnalysisPlan(
            metrics, Arm(status.canary_revision, window), Arm(status.stable_revision, window), others, split,
            tuple(sorted(periods, reverse=True)),
        )
    if status.phase == "Watching" and status.stable_revision and status.watch_until:
        return _watch_plan(metrics, status, now, interval)
    return None


def _watch_plan(
    metrics: tuple[str, ...], status: ModelDeploymentStatus, now: datetime, interval: float
) -> AnalysisPlan | None:
    """In the watch window the promoted revision serves all traffic, so nothing serves beside
    it. It is compared with itself: the first third of the window (at full traffic, right
    after promotion) is the baseline, the time since then the candidate. Comparing with the
    prior revision's numbers from the rollout would mix in the change of load (a revision
    serving all traffic is slower than one serving half), and roll back good revisions."""
    stable = status.stable_revision
    assert stable is not None
    since = seconds_since(status.promoted_at, now)
    length = since + max(0.0, -seconds_since(status.watch_until, now))
    baseline = max(interval, length / 3)
    if since < baseline + interval:
        return None  # the baseline is still being collected
    candidate = min(MAX_WINDOW, since - baseline)
    return AnalysisPlan(metrics, Arm(stable, candidate), Arm(stable, baseline, offset=candidate))
