"""Assessment: one pure function from verdicts to pass, fail or hold, with the reasons.

Measuring (analysis) turns queries into verdicts; assessing turns one measurement's verdicts
into what a strategy may act on. Every strategy — canary analysis steps, shadow, A/B
guardrails, the watch window — uses ``assess``; none re-implements "did it fail, was it
critical, is the limit reached, did everything pass".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from kanaria.api.observed import SRM_METRIC
from kanaria.api.verdict import Verdict
from kanaria.rollout.cycle import summary

__all__ = ["Assessment", "assess"]


@dataclass(frozen=True)
class Assessment:
    """What one measurement says.

    ``result`` is ``fail`` when the candidate must go (a critical metric failed, or failures
    exceed the limit), ``pass`` when every required metric passed (a tolerated failure of
    another metric does not stop that), and ``hold`` otherwise. ``failures`` is the count of
    failed measurements including this one; ``tolerated`` says a failure was counted but
    did not end the rollout.
    """

    result: Literal["pass", "fail", "hold"]
    reason: str
    failed: tuple[str, ...] = ()
    critical: bool = False
    failures: int = 0
    tolerated: bool = False

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def assess(
    verdicts: Mapping[str, Verdict],
    *,
    required: tuple[str, ...],
    judged: Collection[str] | None = None,
    critical: Collection[str] = (),
    failures: int = 0,
    failure_limit: int = 0,
) -> Assessment:
    """Assess one measurement.

    ``required``: metrics that must all pass for ``pass`` (none: ``pass`` unless one failed). ``judged``:
    metrics whose failure counts (None: every metric measured, except the sample-ratio check,
    which informs and never acts). ``critical``: metrics whose single failure is a ``fail``.
    ``failures``: failed measurements before this one; ``failure_limit``: how many are
    tolerated before a ``fail``.
    """
    failed = tuple(
        sorted(
            name
            for name, v in verdicts.items()
            if v.failed and name != SRM_METRIC and (judged is None or name in judged)
        )
    )
    counted = failures + 1 if failed else failures
    all_passed = all(n in verdicts and verdicts[n].passed for n in required)
    if failed:
        detail = summary(failed, verdicts)
        if any(n in critical for n in failed):
            return Assessment("fail", detail, failed, critical=True, failures=counted)
        if counted > failure_limit:
            why = f"{counted} failed measurement(s) (limit {failure_limit}): {detail}"
            return Assessment("fail", why, failed, failures=counted)
        why = f"failure {counted} of {failure_limit} tolerated: {detail}"
        return Assessment("pass" if all_passed else "hold", why, failed, failures=counted, tolerated=True)
    if all_passed:
        return Assessment("pass", summary(required, verdicts), failures=counted)
    return Assessment("hold", summary(required, verdicts), failures=counted)
