"""One reconcile cycle against fakes of the Kubernetes API, the router and the workloads:
what a follower writes (nothing), how often the cycle writes status (once), how often it
plans the analysis (once), and that metric-provider clients are shared safely by threads."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import kanaria.controller.reconcile as reconcile_module
from kanaria.analysis.provider import QueryResult, Sample
from kanaria.api.models import ModelDeploymentSpec
from kanaria.api.observed import WorkloadState
from kanaria.api.revision import revision_hash
from kanaria.controller.reconcile import ReconcileContext, reconcile
from kanaria.workloads.kube import RevisionCollision
from kanaria.workloads.objects import model_fingerprint

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "model": {"name": "iris", "version": "v2", "uri": "file:///models/v2"},
    "replicas": 2,
    "traffic": {"gatewayAPI": {}},
    "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}]}},
    "analysis": {
        "prometheus": {"address": "http://prom:9090"},
        "interval": "30s",
        "metrics": [{"name": "accuracy", "kind": "accuracy"}, {"name": "latency", "kind": "latency"}],
    },
}
STABLE = {"phase": "Stable", "stableRevision": "r1", "stableVersion": "v1", "observedGeneration": 1}


class FakeCustomObjects:
    """The CustomObjectsApi calls a cycle makes, over one object; records status writes."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.status_writes: list[dict[str, Any]] = []

    def get_namespaced_custom_object(self, *_: Any) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def replace_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        body = copy.deepcopy(args[-1])
        self.status_writes.append(body["status"])
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        self.obj = body
        return copy.deepcopy(body)


class FakeRouter:
    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = weights
        self.applied: list[dict[str, int]] = []

    def check(self) -> str | None:
        return None

    def unprogrammed(self) -> str | None:
        return None

    def observe(self) -> tuple[dict[str, int], None, None]:
        return dict(self.weights), None, None

    def replicas(self, replicas: dict[str, int], _weights: dict[str, int] | None) -> dict[str, int]:
        return replicas

    def apply(self, weights: dict[str, int], *_: Any) -> None:
        self.applied.append(weights)


class FakeWorkloads:
    """Revisions' Deployments as the real Workloads sees them; ``ensure`` refuses a revision
    whose recorded model differs, as the real one does."""

    def __init__(self, states: dict[str, WorkloadState], models: dict[str, str]) -> None:
        self.states, self.models = states, models
        self.ensured: list[str] = []

    def observe(self) -> tuple[dict[str, WorkloadState], dict[str, str]]:
        return dict(self.states), dict(self.models)

    def ensure(
        self, spec: ModelDeploymentSpec, revision: str, replicas: int, recorded: str | None, _port: Any,
        _pool: Any = None,
    ) -> None:
        recorded = self.models.get(revision, recorded)
        if recorded and recorded != model_fingerprint(spec) and replicas > 0:
            raise RevisionCollision(f"Deployment iris-{revision} exists for a different model ({recorded})")
        self.ensured.append(revision)

    def scale(self, revision: str, replicas: int) -> None:
        self.states[revision] = WorkloadState(replicas=replicas, ready=replicas)

    def delete(self, revision: str, pools: bool = False) -> None:
        self.states.pop(revision, None)


class Cycle:
    """One ModelDeployment and the fakes a reconcile of it talks to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any], status: dict[str, Any]) -> None:
        self.api = FakeCustomObjects({
            "apiVersion": "kanaria.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "models", "uid": "u-1", "generation": 1,
                         "resourceVersion": "10"},
            "spec": spec,
            "status": status,
        })
        self.router = FakeRouter({"r1": 100})
        self.workloads = FakeWorkloads({"r1": WorkloadState(replicas=2, ready=2)}, {})
        self.events: list[str] = []
        self.context = ReconcileContext(api=object(), clock=lambda: NOW)  # type: ignore[arg-type]
        monkeypatch.setattr(reconcile_module.client, "CustomObjectsApi", lambda _api: self.api)
        monkeypatch.setattr(reconcile_module, "router_for", lambda *_: self.router)
        monkeypatch.setattr(reconcile_module, "Workloads", lambda *_: self.workloads)
        monkeypatch.setattr(reconcile_module, "post_event", lambda _api, _obj, event: self.events.append(event.reason))

    def run(self) -> float:
        return reconcile(self.context, "models", "iris")


@pytest.fixture
def stable(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cycle]:
    yield Cycle(monkeypatch, copy.deepcopy(SPEC), dict(STABLE))


# --------------------------------------------------------------------------- providers


def test_threads_asking_for_providers_at_once_share_one_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    entered = threading.Event()

    def slow_factory(_kind: str, address: str, _timeout: float) -> object:
        made.append(address)
        entered.set()
        # Hold the first creation open long enough for every other thread to arrive.
        threading.Event().wait(0.05)
        return object()

    monkeypatch.setattr(reconcile_module, "provider_for", slow_factory)
    context = ReconcileContext(api=object())  # type: ignore[arg-type]
    addresses = ["http://a:9090", "http://b:9090"] * 8
    start = threading.Barrier(len(addresses))
    got: list[tuple[str, object]] = []
    lock = threading.Lock()

    def ask(address: str) -> None:
        start.wait()
        provider = context.provider(address, 10.0)
        with lock:
            got.append((address, provider))

    threads = [threading.Thread(target=ask, args=(a,)) for a in addresses]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert entered.is_set()
    assert sorted(made) == ["http://a:9090", "http://b:9090"]
    assert len({id(p) for a, p in got if a == "http://a:9090"}) == 1
    assert len({id(p) for a, p in got if a == "http://b:9090"}) == 1


# --------------------------------------------------------------------------- followers


def test_a_follower_writes_nothing_even_for_an_invalid_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = copy.deepcopy(SPEC)
    bad["strategy"]["canary"]["steps"] = [{"setWeight": 10}, {"analysis": {"metrics": ["unknown"]}}]
    cycle = Cycle(monkeypatch, bad, dict(STABLE))
    cycle.context.is_leader = lambda: False
    assert cycle.run() == 2.0
    assert cycle.api.status_writes == [] and cycle.events == []
    cycle.context.is_leader = lambda: True  # the same object, seen by the leader
    assert cycle.run() == 300.0
    assert [w["phase"] for w in cycle.api.status_writes] == ["Invalid"] and cycle.events == ["InvalidSpec"]


# --------------------------------------------------------------------------- analysis plan


def test_the_analysis_plan_is_computed_once_per_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = copy.deepcopy(SPEC)
    spec["strategy"] = {"abTest": {"weight": 30, "primaryMetric": "accuracy", "guardrails": ["latency"],
                                   "maxDuration": "10m",
                                   "challengers": [{"version": "v3", "uri": "file:///models/v3", "weight": 30}]}}
    parsed = ModelDeploymentSpec.model_validate(spec)
    rev, arm = revision_hash(parsed), revision_hash(parsed.arm_specs()[0])
    status = {
        "phase": "Progressing", "stableRevision": "r1", "stableVersion": "v1", "canaryRevision": rev,
        "canaryVersion": "v2", "canaryWeight": 30, "currentStep": 1, "observedGeneration": 1,
        "stepStartedAt": "2026-01-02T03:00:00Z",
        "arms": [{"revision": rev, "version": "v2", "weight": 30}, {"revision": arm, "version": "v3", "weight": 30}],
    }
    cycle = Cycle(monkeypatch, spec, status)
    cycle.router.weights = {"r1": 40, rev: 30, arm: 30}
    cycle.workloads.states = {r: WorkloadState(replicas=2, ready=2) for r in ("r1", rev, arm)}

    class Silent:
        def query(self, promql: str, at: float | None = None) -> QueryResult:
            return QueryResult(promql)

        def online(self) -> str | None:
            return None

    cycle.context.providers[("http://prom:9090", 10.0)] = Silent()
    plans: list[object] = []
    real = reconcile_module.analysis_plan

    def counted(*args: Any) -> Any:
        plan = real(*args)
        plans.append(plan)
        return plan

    monkeypatch.setattr(reconcile_module, "analysis_plan", counted)
    measured: list[str] = []
    real_measure = reconcile_module.measure
    monkeypatch.setattr(reconcile_module, "measure",
                        lambda metrics, plan, *a, **k: measured.append(plan.candidate.revision)
                        or real_measure(metrics, plan, *a, **k))
    cycle.run()
    assert len(plans) == 1 and plans[0] is not None
    assert measured == [rev, arm]  # both challengers judged, from that one plan


# --------------------------------------------------------------------------- revision collisions


def test_a_colliding_challenger_marks_the_spec_invalid_with_one_status_write(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = copy.deepcopy(SPEC)
    spec["strategy"] = {"abTest": {"weight": 30, "primaryMetric": "accuracy", "maxDuration": "10m",
                                   "challengers": [{"version": "v3", "uri": "file:///models/v3", "weight": 30}]}}
    arm = revision_hash(ModelDeploymentSpec.model_validate(spec).arm_specs()[0])
    cycle = Cycle(monkeypatch, spec, dict(STABLE))
    cycle.workloads.models = {arm: "someone-else"}
    assert cycle.run() == 300.0
    assert len(cycle.api.status_writes) == 1, cycle.api.status_writes
    written = cycle.api.status_writes[0]
    assert written["phase"] == "Invalid" and f"iris-{arm} exists for a different model" in written["message"]
    assert written.get("canaryRevision") is None  # the rollout never started
    assert cycle.workloads.ensured == [] and cycle.router.applied == []
    assert cycle.events == ["InvalidSpec"]
    cycle.run()  # and it stays written once
    assert len(cycle.api.status_writes) == 1


def test_a_collision_found_while_acting_writes_status_once(stable: Cycle) -> None:
    """A Deployment that takes the new revision's name between observe and act: the cycle's
    status is already written, and it is not written a second time."""
    new = revision_hash(ModelDeploymentSpec.model_validate(SPEC))
    real_observe = stable.workloads.observe

    def observe_then_squat() -> tuple[dict[str, WorkloadState], dict[str, str]]:
        seen = real_observe()
        stable.workloads.models[new] = "someone-else"
        return seen

    stable.workloads.observe = observe_then_squat  # type: ignore[method-assign]
    assert stable.run() == 1.0
    assert len(stable.api.status_writes) == 1
    assert stable.router.applied == [] and stable.events == []
    stable.workloads.observe = real_observe  # type: ignore[method-assign]
    assert stable.run() == 300.0  # the next cycle sees the squatter and says so, once
    assert [w["phase"] for w in stable.api.status_writes] == ["Progressing", "Invalid"]


def test_llm_metrics_are_measured_on_the_server_the_spec_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """spec.analysis.server reaches the measurement: with server tgi every LLM query reads
    TGI's metric names, and the evidence unit reaches it too (tokens counted per arm)."""
    spec = copy.deepcopy(SPEC)
    spec["analysis"]["server"] = "tgi"
    spec["analysis"]["evidenceUnit"] = "token"
    spec["analysis"]["metrics"] = [{"name": "queue", "kind": "queueTime"}, {"name": "errors", "kind": "serverErrorRate"}]
    rev = revision_hash(ModelDeploymentSpec.model_validate(spec))
    status = {
        "phase": "Progressing", "stableRevision": "r1", "stableVersion": "v1", "canaryRevision": rev,
        "canaryVersion": "v2", "canaryWeight": 10, "currentStep": 1, "observedGeneration": 1,
        "stepStartedAt": "2026-01-02T03:00:00Z",
    }
    cycle = Cycle(monkeypatch, spec, status)
    cycle.router.weights = {"r1": 90, rev: 10}
    cycle.workloads.states = {r: WorkloadState(replicas=2, ready=2) for r in ("r1", rev)}
    queries: list[str] = []

    class Recording:
        def query(self, promql: str, at: float | None = None) -> QueryResult:
            queries.append(promql)
            return QueryResult(promql, () if "_bucket" in promql else (Sample({}, 100.0),))

        def online(self) -> str | None:
            return None

    cycle.context.providers[("http://prom:9090", 10.0)] = Recording()
    cycle.run()
    assert any("tgi_request_queue_duration_bucket" in q for q in queries), queries
    assert any('tgi_request_failure{revision="' in q for q in queries), queries
    assert any('tgi_request_generated_tokens_sum{revision="' in q for q in queries), queries
    assert not any("vllm:" in q for q in queries), queries


def test_a_new_artifact_under_the_stable_version_is_refused() -> None:
    import json

    from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
    from kanaria.controller.collisions import version_reused as _version_reused

    def spec(uri: str, replicas: int = 1) -> ModelDeploymentSpec:
        return ModelDeploymentSpec.model_validate({"model": {"name": "m", "version": "v1", "uri": uri},
                                                   "replicas": replicas, "traffic": {"gatewayAPI": {}}})

    from kanaria.api.revision import revision_hash

    stable = spec("s3://m/v1")
    status = ModelDeploymentStatus(stable_revision=revision_hash(stable), stable_version="v1")
    models = {revision_hash(stable): json.dumps(stable.model.model_dump(mode="json", by_alias=True, exclude_none=True))}
    problem = _version_reused(spec("s3://m/v1-retrained"), status, models)
    assert problem is not None and "model.uri changed (s3://m/v1 → s3://m/v1-retrained)" in problem
    assert _version_reused(spec("s3://m/v1", replicas=3), status, models) is None  # same artifact, new template
    assert _version_reused(stable, status, models) is None


# --------------------------------------------------------------------------- quiet checks


def test_a_check_of_the_serving_revision_that_finds_nothing_new_is_not_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At rest, a check with no new labels and no new finding changes only monitoring.lastAt:
    it is kept in memory, so an idle object costs no status write per check; the time it covers
    still advances (the next check is due an interval after it), and a write happens once the
    written time is QUIET_CHECKS_FOR old."""
    from datetime import timedelta

    clock = {"now": NOW}
    rev = revision_hash(ModelDeploymentSpec.model_validate(SPEC))
    status = {**STABLE, "stableRevision": rev, "stableVersion": "v2", "monitoring": {
        "revision": rev, "startedAt": "2026-01-02T02:00:00Z", "lastAt": "2026-01-02T03:03:00Z"}}
    cycle = Cycle(monkeypatch, copy.deepcopy(SPEC), status)
    cycle.router.weights = {rev: 100}
    cycle.workloads.states = {rev: WorkloadState(replicas=2, ready=2)}
    cycle.context.clock = lambda: clock["now"]

    class Silent:
        def query(self, promql: str, at: float | None = None) -> QueryResult:
            return QueryResult(promql)

        def online(self) -> str | None:
            return None

    cycle.context.providers[("http://prom:9090", 10.0)] = Silent()
    cycle.run()  # the first check (and what a Stable status holds: conditions, message) is written
    assert [w["monitoring"]["lastAt"] for w in cycle.api.status_writes] == ["2026-01-02T03:04:05.000Z"]
    cycle.api.status_writes.clear()
    clock["now"] = NOW + timedelta(seconds=1)
    cycle.run()
    assert cycle.api.status_writes == []

    clock["now"] = NOW + timedelta(seconds=61)  # the second check: found nothing, not written
    assert cycle.run() == pytest.approx(60.0, abs=1)
    assert cycle.api.status_writes == []
    clock["now"] = NOW + timedelta(seconds=91)
    assert cycle.run() == pytest.approx(30.0, abs=1)  # not due: the kept time counts
    clock["now"] = NOW + timedelta(seconds=600)  # the written time is ten minutes old: written
    cycle.run()
    assert len(cycle.api.status_writes) == 1
    assert cycle.api.status_writes[0]["monitoring"]["lastAt"] == "2026-01-02T03:14:05.000Z"


def test_a_canary_that_keeps_passing_is_written_once_a_minute_not_every_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a long pause, a measurement whose every verdict passes again changes only numbers
    and times: it is kept in memory (the next is due an interval after it, not after the written
    one), written once the written measurement is QUIET_MEASUREMENTS_FOR old, and at once when a
    verdict changes."""
    from datetime import timedelta

    spec = copy.deepcopy(SPEC)
    spec["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]}}
    spec["analysis"] = {"prometheus": {"address": "http://prom:9090"}, "interval": "10s",
                        "metrics": [{"name": "quality", "kind": "custom", "query": "q{revision=\"{{revision}}\"}", "condition": ">= 0.9"}]}
    rev = revision_hash(ModelDeploymentSpec.model_validate(spec))
    status = {"phase": "Progressing", "stableRevision": "r1", "stableVersion": "v1", "observedGeneration": 1,
              "canaryRevision": rev, "canaryVersion": "v2", "canaryWeight": 20, "currentStep": 1,
              # The step began over a minute ago: its split is checked from the first measurement.
              "stepStartedAt": "2026-01-02T03:03:00.000Z", "rolloutStartedAt": "2026-01-02T03:02:00.000Z",
              "lastAnalysisAt": "2026-01-02T03:03:55.000Z",
              "analysis": [{"metric": "quality", "kind": "custom", "verdict": "pass", "value": 0.97,
                            "at": "2026-01-02T03:03:55.000Z"}]}
    cycle = Cycle(monkeypatch, spec, status)
    cycle.router.weights = {"r1": 80, rev: 20}
    cycle.workloads.states = {"r1": WorkloadState(replicas=2, ready=2), rev: WorkloadState(replicas=2, ready=2)}
    clock = {"now": NOW}
    cycle.context.clock = lambda: clock["now"]
    quality = {"value": 0.97}

    class Fixed:
        def query(self, promql: str, at: float | None = None) -> QueryResult:
            return QueryResult(promql, (Sample({}, quality["value"]),))

        def online(self) -> str | None:
            return None

    cycle.context.providers[("http://prom:9090", 10.0)] = Fixed()
    cycle.run()  # the first cycle also fills in what the read status lacked (conditions): written
    assert [w["lastAnalysisAt"] for w in cycle.api.status_writes] == ["2026-01-02T03:04:05.000Z"]
    cycle.api.status_writes.clear()
    clock["now"] = NOW + timedelta(seconds=10)  # measured, passes again: not written
    cycle.run()
    assert cycle.api.status_writes == []
    clock["now"] = NOW + timedelta(seconds=15)
    assert cycle.run() == pytest.approx(5.0, abs=0.5), "due an interval after the kept measurement"
    quality["value"] = 0.95
    for second in (20, 30, 40, 50):
        clock["now"] = NOW + timedelta(seconds=second)
        cycle.run()
    assert cycle.api.status_writes == [], "numbers changed, verdicts did not"
    clock["now"] = NOW + timedelta(seconds=60)  # the written measurement is a minute old
    cycle.run()
    assert [w["lastAnalysisAt"] for w in cycle.api.status_writes] == ["2026-01-02T03:05:05.000Z"]
    assert cycle.api.status_writes[0]["analysis"][0]["value"] == pytest.approx(0.95)
    assert cycle.api.status_writes[0]["currentStep"] == 1
    quality["value"] = 0.5  # a failing verdict is written at once
    clock["now"] = NOW + timedelta(seconds=70)
    cycle.run()
    assert len(cycle.api.status_writes) == 2
    assert cycle.api.status_writes[1]["analysis"][0]["verdict"] == "fail"


class StaleCache:
    """A watch cache that missed an update: it holds an older version than the API server's
    until someone puts a newer one (as the real cache does, it keeps the newer of the two)."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = copy.deepcopy(obj)

    def has(self, _kind: str) -> bool:
        return True

    def get(self, _kind: str, _namespace: str, _name: str) -> dict[str, Any]:
        return self.obj

    def put(self, _kind: str, obj: dict[str, Any]) -> None:
        if int(obj["metadata"]["resourceVersion"]) > int(self.obj["metadata"]["resourceVersion"]):
            self.obj = copy.deepcopy(obj)


def test_a_watch_cache_that_missed_a_change_costs_one_conflict_not_every_cycle(stable: Cycle) -> None:
    """The API server has a newer version than the cache (the cache's watch missed it): the
    status write conflicts once, and the cycle after builds on the version the API server has."""
    cache = StaleCache(stable.api.obj)
    stable.context.cache = cache
    stable.api.obj["metadata"]["resourceVersion"] = "11"  # say, a finalizer added
    stable.api.obj["metadata"]["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    replace = stable.api.replace_namespaced_custom_object_status

    def conflicting(*args: Any) -> dict[str, Any]:
        if args[-1]["metadata"]["resourceVersion"] != stable.api.obj["metadata"]["resourceVersion"]:
            raise reconcile_module.ApiException(status=409, reason="Conflict")
        return replace(*args)

    stable.api.replace_namespaced_custom_object_status = conflicting  # type: ignore[method-assign]
    stable.run()
    assert stable.api.status_writes == []
    assert cache.obj["metadata"]["resourceVersion"] == "11"  # re-read from the API server
    stable.run()
    assert [w["phase"] for w in stable.api.status_writes] == ["Progressing"]
    assert stable.api.obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
