"""One reconcile cycle of one ModelDeployment: read → decide → act → write status.

Nothing here decides anything: observations go to ``rollout.decide`` and its decision is
carried out. All progress lives in the object's status, written once per cycle with the
resourceVersion read at its start, so a second writer (or a stale leader) gets a conflict
instead of a double step.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kanaria.analysis.measure import LLMContext, Target, measure
from kanaria.analysis.provider import MetricProvider, provider_for
from kanaria.analysis.serving import read_serving
from kanaria.api.durations import parse_duration
from kanaria.api.models import (
    GROUP,
    PLURAL,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from kanaria.api.observed import AnalysisPlan, ServingReading
from kanaria.api.revision import revision_hash
from kanaria.api.verdict import Verdict
from kanaria.controller.batch import on_grid
from kanaria.controller.collisions import captured_by, collision, version_reused
from kanaria.controller.events import post_event
from kanaria.controller.quiet import (
    quiet_check,
    quiet_measurement,
)
from kanaria.controller.safejson import TOO_DEEP_KEY
from kanaria.controller.status_write import write_status
from kanaria.rollout import Decision, Observations, UserAction, analysis_plan, decide
from kanaria.rollout.conditions import invalid_spec_condition
from kanaria.rollout.monitoring import monitoring_due, parse_time
from kanaria.traffic import Router, router_for
from kanaria.workloads.jobs import Jobs
from kanaria.workloads.kube import FIELD_MANAGER, RevisionCollision, Workloads

__all__ = ["ACTION_ANNOTATION", "ReconcileContext", "reconcile"]

log = logging.getLogger("kanaria.reconcile")

ACTION_ANNOTATION = "kanaria.io/action"


@dataclass
class ReconcileContext:
    """Clients and hooks shared by every reconcile (built once at startup)."""

    api: client.ApiClient
    is_leader: Callable[[], bool] = lambda: True
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    providers: dict[tuple[str, float], MetricProvider] = field(default_factory=dict)
    """One client per (address, timeout), shared by every worker thread."""
    on_decision: Callable[[dict[str, Any], Decision], None] | None = None
    on_verdicts: Callable[[dict[str, Any], dict[str, Verdict], float], None] | None = None
    cache: Any = None
    """The operator's watch caches (:class:`kanaria.controller.informers.Informers`); every
    read goes to the API when None."""
    on_status_written: Callable[[dict[str, Any]], None] | None = None
    """Told of every status this operator writes (the object as the API server returned it)."""
    volatile: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(namespace, name) -> (resourceVersion, monitoring.lastAt) of checks not written (see
    ``_quiet_check``)."""
    unwritten: dict[tuple[str, str], tuple[str | None, ModelDeploymentStatus]] = field(default_factory=dict)
    """(namespace, name) -> (status.lastAnalysisAt as written, the status of measurements since)
    for measurements that changed no verdict and were not written (see ``_quiet_measurement``)."""
    grid: float = 0.0
    """The timers' grid (see controller.batch.align); 0 when measurements are not batched."""
    _providers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def provider(self, address: str, timeout: float) -> MetricProvider:
        """The metric provider for an address; reconciles run in a pool of threads, so the
        first use of an address is made under a lock and every later one gets that client."""
        key = (address, timeout)
        with self._providers_lock:
            if key not in self.providers:
                self.providers[key] = provider_for("prometheus", address, timeout)
            return self.providers[key]


def _read_status(raw: dict[str, Any] | None) -> ModelDeploymentStatus:
    known = set(ModelDeploymentStatus.model_fields) | {
        f.alias for f in ModelDeploymentStatus.model_fields.values() if f.alias
    }
    data = {k: v for k, v in (raw or {}).items() if k in known}
    try:
        return ModelDeploymentStatus.model_validate(data)
    except ValidationError as exc:
        log.error("status unreadable, keeping what can be kept: %s", exc)
        return ModelDeploymentStatus()


@dataclass
class Prepared:
    """What one cycle read before measuring: the measurement (if one is due) can then run on
    its own — alone, or batched with other objects' (see :mod:`kanaria.controller.batch`) —
    and ``finish`` decides and acts on what it found."""

    obj: dict[str, Any]
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    now: datetime
    router: Router
    workloads: Workloads
    jobs: Jobs
    states: dict[str, Any]
    models: dict[str, str]
    router_error: str | None
    observed: tuple[Any, Any, Any]
    plan: AnalysisPlan | None
    target: Target
    verdicts: dict[str, Verdict] | None = None
    serving: ServingReading | None = None
    arm_verdicts: dict[str, dict[str, Verdict]] | None = None
    measured_at: datetime | None = None
    unprogrammed: str | None = None
    """Why the gateway has not yet applied the route as it stands (see Router.unprogrammed)."""

    @property
    def due(self) -> bool:
        """Whether this cycle queries Prometheus (an analysis or a check of the serving one)."""
        return self.plan is not None or (monitoring_due(self.spec, self.status, self.now) is not None)


def reconcile(ctx: ReconcileContext, namespace: str, name: str) -> float:
    """Run one cycle; returns seconds until the next one."""
    step = prepare(ctx, namespace, name)
    if not isinstance(step, Prepared):
        return step
    measure_now(ctx, step, ctx.provider, step.now.timestamp())
    return finish(ctx, step)


def _read(ctx: ReconcileContext, namespace: str, name: str) -> dict[str, Any] | None:
    """The object: from the watch cache (a copy: the cycle edits it), else from the API."""
    if ctx.cache is not None and ctx.cache.has("ModelDeployment"):
        cached = ctx.cache.get("ModelDeployment", namespace, name)
        if cached is not None:
            return cast(dict[str, Any], copy.deepcopy(cached))
    custom = client.CustomObjectsApi(ctx.api)
    try:
        return cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def prepare(ctx: ReconcileContext, namespace: str, name: str) -> Prepared | float:
    """Read and check everything a cycle needs; a delay instead when the cycle ends here (a
    follower, a deleted object, an invalid spec)."""
    if not ctx.is_leader():
        return 2.0  # a follower writes nothing, not even an InvalidSpec status
    obj = _read(ctx, namespace, name)
    if obj is None:
        return 60.0
    meta = obj["metadata"]
    status = _read_status(obj.get("status"))
    kept = ctx.volatile.pop((namespace, name), None)
    if kept is not None and kept[0] == meta.get("resourceVersion") and status.monitoring is not None:
        status.monitoring.last_at = kept[1]  # a quiet check this process did not write
        ctx.volatile[(namespace, name)] = kept
    quiet = ctx.unwritten.pop((namespace, name), None)
    if quiet is not None and quiet[0] == status.last_analysis_at and status.canary_revision is not None \
            and status.canary_revision == quiet[1].canary_revision:
        # measurements this process made and did not write: the next is due after the latest
        status.last_analysis_at, status.analysis = quiet[1].last_analysis_at, quiet[1].analysis
        status.message, status.conditions = quiet[1].message, quiet[1].conditions
        ctx.unwritten[(namespace, name)] = quiet
    now = ctx.clock()
    if TOO_DEEP_KEY in obj:  # cut when it was read (see safejson): never act on what is left
        _write_invalid(ctx, obj, status, str(obj[TOO_DEEP_KEY]), now)
        return 300.0
    try:
        spec = ModelDeploymentSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        _write_invalid(ctx, obj, status, _validation_message(exc), now)
        return 300.0

    router = router_for(ctx.api, name, namespace, meta["uid"], spec, ctx.cache)
    workloads = Workloads(ctx.api, name, namespace, meta["uid"], ctx.cache)
    states, models = workloads.observe()
    refused = (collision(spec, name, models) or version_reused(spec, status, models)
               or captured_by(ctx, spec, namespace, states))
    if refused is not None:
        _write_invalid(ctx, obj, status, refused, now)
        return 300.0
    jobs = Jobs(ctx.api, name, namespace, meta["uid"])
    router_error = router.check()
    observed = router.observe() if router_error is None else (None, None, None)
    plan = analysis_plan(spec, status, now)
    return Prepared(obj, spec, status, now, router, workloads, jobs, states, models, router_error, observed,
                    plan, Target(name, namespace, spec.model.name),
                    unprogrammed=router.unprogrammed() if router_error is None else None)


def measurement_instant(at: float, interval: float, grid: float) -> float:
    """When a measurement due at ``at`` is evaluated and recorded: on the grid point just before
    it for intervals of a grid slot or more (see measure_now); shorter intervals as they come."""
    return on_grid(at, grid) if grid > 0 and interval >= grid else at


def measure_now(ctx: ReconcileContext, step: Prepared, providers: Callable[[str, float], MetricProvider],
                at: float) -> Prepared:
    """Take the cycle's measurements with ``providers`` (address, timeout → provider), every
    query evaluated at ``at`` — or at the grid point just before it, when the interval is at least
    a grid slot and the point at most a fifth of a slot (a second) earlier: a measurement made and
    recorded on the grid is next due exactly on the grid, not one slot later (controller.batch)."""
    spec, plan = step.spec, step.plan
    at = measurement_instant(at, spec.interval_seconds(), ctx.grid)
    step.verdicts = _measure(ctx, spec, plan, step.target, at, step.obj, providers)
    step.measured_at = datetime.fromtimestamp(at, UTC)
    step.serving = _check_serving(spec, step.status, step.now, at, providers) if plan is None else None
    step.arm_verdicts = (_measure_others(spec, plan, step.target, at, providers)
                         if step.verdicts is not None else None)
    return step


def finish(ctx: ReconcileContext, step: Prepared) -> float:
    """Decide on what the cycle read and measured, write the status, act."""
    obj, spec, status, now = step.obj, step.spec, step.status, step.now
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    weights, mirror, match = step.observed
    running = {j.name for j in status.jobs if j.state == "Running"}
    obs = Observations(
        revision=revision_hash(spec),
        version=spec.model.version,
        generation=int(meta.get("generation") or 0),
        workloads=step.states,
        weights=weights,
        verdicts=step.verdicts,
        measured_at=step.measured_at,
        action=UserAction.parse((meta.get("annotations") or {}).get(ACTION_ANNOTATION)),
        router_error=step.router_error,
        route_pending=step.unprogrammed,
        mirror=mirror,
        match=match,
        arm_verdicts=step.arm_verdicts,
        serving=step.serving,
        jobs=step.jobs.observe(running),
        stable_uri=_model_uri(step.models.get(status.stable_revision or "")),
        name=name,
    )
    decision = decide(spec, status, obs, now)
    if not ctx.is_leader():
        return 2.0  # lost the lease while measuring: act on nothing
    # Status first, then act: the intent is recorded before anything moves, so a crash
    # between the two replays the recorded intent (idempotently) instead of an older one —
    # a rolled-back canary never gets its traffic back — and a writer that lost the race
    # (409) acts on nothing.
    version = meta.get("resourceVersion")
    if quiet_check(ctx, obj, step.status, decision.status, now):
        pass  # nothing but the time of a check that found nothing new: not written
    elif quiet_measurement(ctx, obj, step.status, decision.status, now):
        pass  # a measurement that changed no verdict: written at most every QUIET_MEASUREMENTS_FOR
    elif not write_status(ctx, obj, status, decision.status):
        return 1.0
    moved = meta.get("resourceVersion") != version
    try:
        _act(decision, spec, step.router, step.workloads, step.models, obs)
    except RevisionCollision as exc:
        # A Deployment took a revision's name after observe(): this cycle's status is written
        # already (one write per cycle); the next cycle's check above marks the spec invalid.
        log.warning("%s/%s: %s; checking again next cycle", namespace, name, exc)
        return 1.0
    for job in decision.jobs:
        step.jobs.create(job.name, job.purpose, job.template, job.env, job.deadline_seconds)
    if decision.adopt is not None:
        _adopt(ctx, obj, spec, *decision.adopt)
    for event in decision.events:
        post_event(ctx.api, obj, event)
    if ctx.on_decision is not None:
        ctx.on_decision(obj, decision)
    # The status' own watch event wakes nothing (see handlers.wake): a cycle that moved the
    # rollout on looks again within a second instead, as what it did may allow the next move.
    return min(decision.requeue_after, AFTER_MOVE) if moved else decision.requeue_after


AFTER_MOVE = 1.0
"""Seconds until the next cycle after one that wrote a new status."""
def _model_uri(fingerprint: str | None) -> str | None:
    """The model URI recorded on a revision's Deployment (see model_fingerprint)."""
    if not fingerprint:
        return None
    try:
        value = json.loads(fingerprint)
    except ValueError:
        return None
    uri = value.get("uri") if isinstance(value, dict) else None
    return uri if isinstance(uri, str) else None


def _adopt(ctx: ReconcileContext, obj: dict[str, Any], spec: ModelDeploymentSpec, version: str, uri: str) -> None:
    """Write a candidate into spec.model with server-side apply under Kanaria's field manager
    (forced: adoption was asked for). A GitOps tool that owns the spec will put its own value
    back at its next sync: adopt in the repository instead (docs/gitops.md)."""
    meta = obj["metadata"]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"model": {"name": spec.model.name, "version": version, "uri": uri}},
    }
    try:
        client.CustomObjectsApi(ctx.api).patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body,
            field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
        )
    except ApiException as exc:
        from kanaria.rollout.types import Event

        why = f"{exc.status} {exc.reason}"
        log.warning("%s/%s: could not write the candidate into spec.model: %s", meta["namespace"], meta["name"], why)
        post_event(ctx.api, obj, Event("Warning", "CandidateNotAdopted",
                                       f"could not write {version} into spec.model ({why}); adopt it in the "
                                       "spec's source, or again with kubectl kanaria adopt"))


def _measure(
    ctx: ReconcileContext,
    spec: ModelDeploymentSpec,
    plan: AnalysisPlan | None,
    target: Target,
    at: float,
    obj: dict[str, Any],
    providers: Callable[[str, float], MetricProvider],
) -> dict[str, Verdict] | None:
    if plan is None or spec.analysis is None:
        return None
    provider = providers(spec.analysis.prometheus.address, parse_duration(spec.analysis.prometheus.timeout))
    started = ctx.clock()
    verdicts = measure(list(spec.analysis.metrics), plan, provider, target, at=at,
                       llm_context=_llm_context(spec))
    if ctx.on_verdicts is not None:
        ctx.on_verdicts(obj, verdicts, (ctx.clock() - started).total_seconds())
    return verdicts


def _llm_context(spec: ModelDeploymentSpec) -> LLMContext:
    """The inference server and evidence unit the LLM metric kinds of the spec read."""
    assert spec.analysis is not None
    return LLMContext(spec.analysis.server, spec.analysis.evidence_unit)


def _check_serving(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime, at: float,
    providers: Callable[[str, float], MetricProvider],
) -> ServingReading | None:
    """A check of the serving revision between rollouts, when one is due."""
    period = monitoring_due(spec, status, now)
    if period is None or spec.analysis is None or status.monitoring is None:
        return None
    provider = providers(spec.analysis.prometheus.address, parse_duration(spec.analysis.prometheus.timeout))
    started = parse_time(status.monitoring.started_at)
    monitored_for = (now - started).total_seconds() if started is not None else period
    return read_serving(provider, spec, status.monitoring.revision, period, monitored_for, at)


def _measure_others(
    spec: ModelDeploymentSpec,
    plan: AnalysisPlan | None,
    target: Target,
    at: float,
    providers: Callable[[str, float], MetricProvider],
) -> dict[str, dict[str, Verdict]] | None:
    """A/B with several challengers: each other running challenger against the incumbent,
    with the plan ``_measure`` used (computed once per cycle)."""
    if plan is None or not plan.others or spec.analysis is None:
        return None
    provider = providers(spec.analysis.prometheus.address, parse_duration(spec.analysis.prometheus.timeout))
    return {
        arm.revision: measure(list(spec.analysis.metrics), replace(plan, candidate=arm, others=()), provider,
                              target, at=at, llm_context=_llm_context(spec))
        for arm in plan.others
    }


def _act(
    decision: Decision,
    spec: ModelDeploymentSpec,
    router: Router,
    workloads: Workloads,
    models: dict[str, str],
    obs: Observations,
) -> None:
    """Workloads first (a revision must exist before it gets traffic), then weights, then
    deletions (a revision leaves only after traffic has left it)."""
    replicas = router.replicas(decision.replicas, decision.weights)
    port = _service_port(spec)
    pool = spec.traffic.gateway_api.inference_pool if spec.traffic.gateway_api is not None else None
    current = {rev for rev in (decision.status.stable_revision, decision.status.canary_revision) if rev}
    arms = {revision_hash(s): s for s in spec.arm_specs()} if decision.status.arms else {}
    for rev, count in sorted(replicas.items()):
        seen = obs.workloads.get(rev)
        if rev in current and rev == obs.revision and (seen is None or seen.replicas != count):
            workloads.ensure(spec, rev, count, models.get(rev), port, pool)
        elif rev in arms and (seen is None or seen.replicas != count):
            workloads.ensure(arms[rev], rev, count, models.get(rev), port, pool)
        elif seen is not None and seen.replicas != count:
            workloads.scale(rev, count)
    if decision.weights is not None and obs.router_error is None and (
        obs.weights is None or dict(obs.weights) != decision.weights or obs.mirror != decision.mirror
        or obs.match != decision.match
    ):
        router.apply(decision.weights, decision.mirror, decision.match)
    for rev in decision.delete:
        workloads.delete(rev, pools=pool is not None)


def _service_port(spec: ModelDeploymentSpec) -> int | None:
    t = spec.traffic
    if t.gateway_api is not None:
        return t.gateway_api.port
    if t.istio is not None:
        return t.istio.port
    return None  # the replica router serves every revision through one shared Service


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{where}: {err['msg']}" if where else f"spec: {err['msg']}")
    return "; ".join(parts)


def _write_invalid(
    ctx: ReconcileContext,
    obj: dict[str, Any],
    status: ModelDeploymentStatus,
    message: str,
    now: datetime,
) -> None:
    """Mark the spec invalid once: no traffic moves, nothing is retried until the spec changes."""
    generation = int(obj["metadata"].get("generation") or 0)
    if status.phase == "Invalid" and status.message == message and status.observed_generation == generation:
        return
    after = status.model_copy(deep=True)
    after.phase = "Invalid"
    after.message = message
    after.observed_generation = generation
    after.conditions = invalid_spec_condition(status.conditions, message, generation, now)
    from kanaria.rollout.types import Event

    # The Event only once the status says so: a conflicting write is retried next cycle and
    # must not leave a second Event behind.
    if write_status(ctx, obj, status, after):
        post_event(ctx.api, obj, Event("Warning", "InvalidSpec", message))
