"""The operator's own Prometheus metrics, served at /metrics."""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kanaria.api.models import Phase
from kanaria.api.verdict import Verdict
from kanaria.rollout.types import Decision

__all__ = ["OperatorMetrics"]

PHASES: tuple[Phase, ...] = ("Pending", "Progressing", "Paused", "Watching", "Stable", "RolledBack", "Invalid")


def _poisoned_count(outcome: str) -> Any:
    from kanaria.controller.safejson import poisoned

    return lambda: poisoned()[outcome]


class OperatorMetrics:
    """Counters and gauges about rollouts; one registry per operator process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["namespace", "name"]
        self.phase = Gauge("kanaria_rollout_phase", "1 for the phase a ModelDeployment is in", [*labels, "phase"], registry=r)
        self.weight = Gauge("kanaria_canary_weight", "Percent of traffic on the new revision", labels, registry=r)
        self.step = Gauge("kanaria_rollout_step", "Index of the canary step in force", labels, registry=r)
        self.verdicts = Counter("kanaria_verdicts", "Verdicts by metric and outcome", [*labels, "metric", "outcome"], registry=r)
        self.promotions = Counter("kanaria_promotions", "Revisions promoted", labels, registry=r)
        self.rollbacks = Counter("kanaria_rollbacks", "Revisions rolled back or reverted", [*labels, "reason"], registry=r)
        self.analysis_seconds = Histogram(
            "kanaria_analysis_duration_seconds", "Time to measure and judge all metrics once", labels,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )
        self.query_errors = Counter("kanaria_metric_query_errors", "Metric queries that returned no evidence because of an error", [*labels, "metric"], registry=r)
        self.reconcile_errors = Counter("kanaria_reconcile_errors", "Reconcile cycles that raised", labels, registry=r)
        self.leader = Gauge("kanaria_leader", "1 when this replica holds the leader lease", registry=r)
        self.finding = Gauge(
            "kanaria_serving_finding",
            "1 while a detector of the serving revision is in alarm (kind: accuracy, validated, drift, latency, errors)",
            [*labels, "kind"], registry=r,
        )
        self.decay = Gauge(
            "kanaria_serving_accuracy_decay_ratio",
            "The serving revision's accuracy-decay statistic over its alarm threshold (1 alarms)", labels, registry=r,
        )
        self.estimated = Gauge(
            "kanaria_serving_estimated_accuracy",
            "Accuracy of the serving revision estimated from its confidences (an estimate, before labels)",
            labels, registry=r,
        )
        self.poisoned = Gauge(
            "kanaria_poisoned_documents",
            "API responses nested too deep for the JSON decoder (decoded_deep), cut to the depth bound "
            "(truncated) or not decodable at all (undecodable) since the operator started",
            ["outcome"], registry=r,
        )
        for outcome in ("decoded_deep", "truncated", "undecodable"):
            self.poisoned.labels(outcome).set_function(_poisoned_count(outcome))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def attach(self, state: Any) -> None:
        """The operator's own costs: API and Prometheus requests, the work queue, batching."""
        r = self.registry
        batcher, informers, pool = state.batcher, state.informers, state.pool
        api = state.context.api
        costs = Gauge("kanaria_operator_requests", "Requests the operator made since it started, by target "
                      "(api: every Kubernetes API request including watches; watch: list and watch requests of "
                      "the watch caches; prometheus: HTTP requests to Prometheus; query: queries those carried)",
                      ["target"], registry=r)
        costs.labels("api").set_function(lambda: getattr(api, "requests", 0))
        costs.labels("watch").set_function(lambda: informers.requests() if informers is not None else 0)
        costs.labels("prometheus").set_function(lambda: batcher.stats.requests if batcher is not None else 0)
        costs.labels("query").set_function(lambda: batcher.stats.queries if batcher is not None else 0)
        batches = Gauge("kanaria_analysis_batches", "Analysis batches run (batches), measurements in them "
                        "(measurements) and combined requests retried one by one (fallbacks)", ["what"], registry=r)
        def stat(what: str) -> Any:
            return lambda: getattr(batcher.stats, what) if batcher is not None else 0

        for what in ("batches", "measurements", "fallbacks"):
            batches.labels(what).set_function(stat(what))
        queued = Gauge("kanaria_reconcile_queue", "Cycles waiting for a worker", registry=r)
        queued.set_function(pool.queued)
        self.cycles = Counter("kanaria_reconcile_cycles", "Reconcile cycles by why they ran (woken: a change; "
                              "timed: a timer or resync)", ["why"], registry=r)
        self.gap = Histogram(
            "kanaria_analysis_gap_ratio", "Time between two measurements of an object over its analysis interval",
            buckets=(0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5, 10), registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def on_decision(self, obj: dict[str, Any], decision: Decision) -> None:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        st = decision.status
        for phase in PHASES:
            self.phase.labels(ns, name, phase).set(1 if st.phase == phase else 0)
        self.weight.labels(ns, name).set(st.canary_weight)
        self.step.labels(ns, name).set(st.current_step)
        self._serving(ns, name, decision)
        for event in decision.events:
            if event.reason == "Promoted":
                self.promotions.labels(ns, name).inc()
            elif event.reason in ("RolledBack", "Reverted"):
                self.rollbacks.labels(ns, name, _reason_class(event.message)).inc()

    def _serving(self, ns: str, name: str, decision: Decision) -> None:
        mon = decision.status.monitoring
        if mon is None or mon.revision != decision.status.stable_revision:
            return
        for kind in ("accuracy", "validated", "drift", "latency", "errors"):
            found = next((f for f in mon.findings if f.kind == kind), None)
            self.finding.labels(ns, name, kind).set(1 if found is not None and found.alarm else 0)
        if mon.threshold:
            self.decay.labels(ns, name).set(mon.cusum / mon.threshold)
        if mon.estimated_accuracy is not None:
            self.estimated.labels(ns, name).set(mon.estimated_accuracy)

    def on_verdicts(self, obj: dict[str, Any], verdicts: dict[str, Verdict], seconds: float) -> None:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        self.analysis_seconds.labels(ns, name).observe(seconds)
        for metric, verdict in verdicts.items():
            self.verdicts.labels(ns, name, metric, verdict.outcome.value).inc()
            if verdict.unavailable:
                self.query_errors.labels(ns, name, metric).inc()

    def on_reconcile_error(self, namespace: str, name: str) -> None:
        self.reconcile_errors.labels(namespace, name).inc()


def _reason_class(message: str) -> str:
    """A low-cardinality reason for a rollback, from its message."""
    for needle, reason in (
        ("aborted", "aborted"),
        ("did not become ready", "not_ready"),
        ("not enough evidence", "no_evidence"),
        ("critical metric", "critical_metric"),
        ("failed measurement", "metric_failed"),
        ("by a person", "manual"),
    ):
        if needle in message:
            return reason
    return "other"
