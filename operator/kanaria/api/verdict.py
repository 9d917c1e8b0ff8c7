"""The verdict every analysis returns: pass, fail, or not enough evidence yet.

Shared by ``analysis`` (which produces verdicts), ``rollout`` (which acts on them) and the
controller (which records them); it lives in ``api`` so none of those imports another for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Outcome", "Verdict", "finite"]


class Outcome(StrEnum):
    """The three answers an analysis may give."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """One judgement of one metric, with the numbers that led to it.

    ``value`` is the canary's measurement, ``baseline`` the stable revision's (None when the
    metric is absolute). ``statistic`` names the test (``"msprt"``, ``"mann-whitney"``,
    ``"psi+chi2"``, ``"threshold"``, ...), ``score`` is that statistic's value and
    ``threshold`` the bound it was compared with; ``p_value`` is set where the test has one
    (for the mixture SPRT it carries 1/Λ, the always-valid p-value bound).

    ``error`` is set when there was no evidence to judge because the measurement itself
    failed (Prometheus unreachable, a query refused): such a verdict is always inconclusive,
    and the operator holds rather than moving traffic. It is data, not a prefix of ``reason``.
    """

    outcome: Outcome
    reason: str
    statistic: str = "threshold"
    value: float | None = None
    baseline: float | None = None
    score: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    samples: int = 0
    baseline_samples: int = 0
    details: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    needed: int | None = None
    """Pacing: about how many more samples of the new revision this metric needs before it can
    decide, if what was seen so far holds (0 once decided; None when it cannot tell)."""
    rate: float | None = None
    """Pacing: the new revision's samples per second over the measured window."""

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    @property
    def unavailable(self) -> bool:
        """True when the metrics could not be read at all (``error`` says why)."""
        return self.error is not None

    @staticmethod
    def inconclusive(reason: str, **numbers: object) -> Verdict:
        return Verdict(Outcome.INCONCLUSIVE, reason, **numbers)  # type: ignore[arg-type]

    @staticmethod
    def unavailable_metrics(error: str, **numbers: object) -> Verdict:
        """An inconclusive verdict because the measurement failed; the reason says so too."""
        return Verdict(Outcome.INCONCLUSIVE, f"metrics unavailable: {error}", error=error, **numbers)  # type: ignore[arg-type]


def finite(*values: float | None) -> bool:
    """True when every value is a real, finite number (no None, NaN or Inf)."""
    return all(v is not None and math.isfinite(v) for v in values)
