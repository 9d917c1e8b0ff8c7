"""The verdict every analysis returns: pass, fail, or not enough evidence yet."""

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

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    @staticmethod
    def inconclusive(reason: str, **numbers: object) -> Verdict:
        return Verdict(Outcome.INCONCLUSIVE, reason, **numbers)  # type: ignore[arg-type]


def finite(*values: float | None) -> bool:
    """True when every value is a real, finite number (no None, NaN or Inf)."""
    return all(v is not None and math.isfinite(v) for v in values)
