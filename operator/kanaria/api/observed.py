"""What the controller observes and what analysis is asked to measure: plain types shared by
``workloads`` (which reads workload state), ``analysis`` (which measures a plan) and ``rollout``
(which makes the plan and reads both)."""

from __future__ import annotations

from dataclasses import dataclass

from kanaria.api.verdict import Verdict

__all__ = ["WorkloadState", "Arm", "AnalysisPlan", "SRM_METRIC", "ServingReading", "JobState"]


@dataclass(frozen=True)
class WorkloadState:
    """A revision's Deployment as observed."""

    replicas: int
    ready: int


SRM_METRIC = "sample-ratio"
"""The verdict under which a weighted split's sample-ratio check appears in status; a name
no user metric may take. It informs, it never acts: a mismatch since the step started is
usually the proxy taking a moment to follow the weights (revisions compare per request, so
the judges stay valid); a lasting one says the split is not what Kanaria set."""


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a revision, measured over ``window`` seconds ending
    ``offset`` seconds ago (0: ending now)."""

    revision: str
    window: float
    offset: float = 0.0


@dataclass(frozen=True)
class AnalysisPlan:
    """What to measure this cycle: the candidate arm against the baseline arm."""

    metrics: tuple[str, ...]
    candidate: Arm
    baseline: Arm
    others: tuple[Arm, ...] = ()
    """A/B with several challengers: the other running challengers, each judged against the
    same baseline as the candidate."""
    expected_split: tuple[int, int] | None = None
    """The configured weights (candidate, baseline) when traffic is split by weight: the
    observed request counts are checked against them (sample-ratio mismatch)."""
    periods: tuple[float, ...] = ()
    """Seconds ago that the split changed within the measured window (a bandit's moves),
    oldest first: counts are judged per period and never pooled across them."""


@dataclass(frozen=True)
class ServingReading:
    """One check of the serving revision between rollouts (read by the controller through
    analysis, judged by the rollout's monitoring part)."""

    revision: str
    period: float
    """Seconds since the previous check: the cohorts of ``correct`` / ``labelled``."""
    correct: int | None = None
    labelled: int | None = None
    """Matured labels of the predictions served in the period (None: no accuracy metric, or
    none yet)."""
    estimated_accuracy: float | None = None
    """Mean confidence of the predictions in the window: an estimate, not a measurement."""
    reference_accuracy: float | None = None
    reference_samples: int = 0
    """Offline accuracy from the revision's reference profile, and the rows behind it."""
    drift: Verdict | None = None
    """Recent inputs and predictions against the reference profile (FAIL: drifted)."""
    latency: Verdict | None = None
    """Recent latency against the revision's own history (FAIL: slower)."""
    errors: Verdict | None = None
    """Recent error rate against the revision's own history (FAIL: higher)."""
    error: str | None = None
    """Set when the metrics could not be read at all."""


@dataclass(frozen=True)
class JobState:
    """A retraining or validation Job as observed."""

    state: str
    """Running, Succeeded or Failed."""
    message: str = ""
    """Its container's termination message (the Job's result, JSON by contract)."""
    reason: str = ""
    """Why it failed, as the Job controller says."""
