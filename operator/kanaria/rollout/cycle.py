"""One decision in the making: the inputs, the status copy being edited, and the decision.

Every part of the engine (strategies, endings, actions, retention) takes a ``Cycle`` and edits
it; ``decide`` makes one per call and returns its decision. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from kanaria.api.durations import parse_duration
from kanaria.api.models import (
    HistoryEntry,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from kanaria.api.verdict import Verdict
from kanaria.rollout.clock import iso
from kanaria.rollout.phase import serving_ready
from kanaria.rollout.types import Decision, Event, Observations

__all__ = ["Cycle", "FAST", "HISTORY_LIMIT", "summary"]

HISTORY_LIMIT = 50
FAST = 1.0
"""Requeue after a transition, to carry on promptly."""


class Cycle:
    """The inputs of one ``decide`` call, the status being edited (``st``) and the decision
    being built (``d``)."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        obs: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.obs = obs
        self.now = now
        self.st = status.model_copy(deep=True)
        self.d = Decision(status=self.st, requeue_after=spec.interval_seconds())
        self.asked = math.inf
        """The soonest any part of the cycle asked to be looked at again (seconds)."""

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.d.events.append(Event("Warning" if warning else "Normal", reason, message))

    def history(self, revision: str, version: str, outcome: str, reason: str) -> None:
        entry = HistoryEntry(
            revision=revision,
            model_version=version,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            at=iso(self.now),
        )
        self.st.history = [*self.st.history, entry][-HISTORY_LIMIT:]

    def requeue(self, seconds: float) -> None:
        self.asked = min(self.asked, seconds)
        self.d.requeue_after = max(0.2, min(self.d.requeue_after, seconds))

    def ready(self, revision: str | None) -> bool:
        return serving_ready(self.spec, self.obs, revision)

    def weights_match(self, wanted: Mapping[str, int]) -> bool:
        """The router's weights, read back, are exactly ``wanted`` (others at 0), and the gateway
        says it has applied them (when it reports that at all)."""
        seen = self.obs.weights
        if seen is None or self.obs.route_pending is not None:
            return False
        return all(seen.get(rev, 0) == w for rev, w in wanted.items()) and all(
            w == 0 for rev, w in seen.items() if rev not in wanted
        )

    def waiting_on_gateway(self) -> str:
        """" (the gateway's reason)" while the gateway has not applied the route; else ""."""
        return f" ({self.obs.route_pending})" if self.obs.route_pending is not None else ""

    def routed_to(self, revision: str) -> bool:
        """The router may still send ``revision`` traffic: it has weight or the mirror in what
        was read back, or the gateway has not applied the route yet."""
        obs = self.obs
        if obs.route_pending is not None:
            return True
        if obs.weights is not None and obs.weights.get(revision, 0) > 0:
            return True
        return (obs.mirror is not None and obs.mirror[0] == revision) or (
            obs.match is not None and obs.match.revision == revision)

    def retire(self, revision: str | None) -> None:
        if revision is not None and revision not in self.st.retired:
            self.st.retired = {**self.st.retired, revision: iso(self.now)}

    def unretire(self, revision: str) -> None:
        self.st.retired = {k: v for k, v in self.st.retired.items() if k != revision}

    def canary_traffic(self) -> dict[str, int]:
        """Ask for both revisions at full replicas and the canary's weight beside the stable."""
        st = self.st
        assert st.stable_revision is not None and st.canary_revision is not None
        self.d.replicas[st.stable_revision] = self.spec.replicas
        self.d.replicas[st.canary_revision] = self.spec.replicas
        weights = {st.stable_revision: 100 - st.canary_weight, st.canary_revision: st.canary_weight}
        self.d.weights = weights
        return weights

    def progress_deadline(self) -> float:
        """Seconds a new revision may take to become ready (and a step to decide, by default)."""
        if self.spec.analysis is not None:
            return parse_duration(self.spec.analysis.progress_deadline)
        return 600.0

    def record(self, verdicts: Mapping[str, Verdict]) -> None:
        """Write this measurement's verdicts into status.analysis."""
        kinds = {m.name: m.kind for m in self.spec.analysis.metrics} if self.spec.analysis else {}
        at = iso(self.obs.measured_at or self.now)
        self.st.analysis = [
            MetricResult(
                metric=name,
                kind=kinds.get(name, ""),
                verdict=v.outcome.value,
                value=v.value,
                baseline=v.baseline,
                samples=v.samples,
                baseline_samples=v.baseline_samples,
                statistic=v.statistic,
                score=v.score,
                threshold=v.threshold,
                p_value=v.p_value,
                reason=v.reason,
                error=v.error,
                needed=v.needed,
                eta_seconds=(v.needed / v.rate) if v.needed and v.rate else (0.0 if v.needed == 0 else None),
                at=at,
            )
            for name, v in sorted(verdicts.items())
        ]
        self.st.last_analysis_at = at


def summary(names: tuple[str, ...], verdicts: Mapping[str, Verdict]) -> str:
    """``name outcome (reason)`` for each name, in order."""
    parts = []
    for name in names:
        v = verdicts.get(name)
        parts.append(f"{name} {v.outcome.value} ({v.reason})" if v else f"{name} not measured")
    return "; ".join(parts)
