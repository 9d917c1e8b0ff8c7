"""The whole metrics path, real at every hop: load generator → HAProxy (weights follow the
HTTPRoute the operator writes) → model-server processes serving scikit-learn models →
Prometheus → the operator's analysis. One stack serves the module; each test rolls out a new
version of one ModelDeployment and keeps its timeline as an artifact.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.helpers import full_stack_marks, wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder

pytestmark = full_stack_marks("metrics-path")

NAME = "cancer"
STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
METRICS = [
    {"name": "accuracy", "kind": "accuracy", "minSamples": 250, "margin": 0.03, "maturity": "5s"},
    {"name": "latency", "kind": "latency", "minSamples": 300},
    {"name": "errors", "kind": "errorRate", "minSamples": 300, "critical": True},
]
DRIFT = {"name": "inputs", "kind": "drift", "minSamples": 200, "features": ["mean radius", "mean texture"]}


class Rollouts:
    """The module's stack, models and traffic, and helpers to roll out a version."""

    def __init__(self, stack: LocalStack, uris: dict[str, str], load: LoadGenerator) -> None:
        self.stack, self.uris, self.load = stack, uris, load
        self.lost = 0
        """Requests of the last roll() that no revision answered (the proxy's 5xx, no answer)."""

    def lost_so_far(self) -> int:
        stats = self.load.stats()
        return stats.errors_by_revision.get("<none>", 0) + stats.failed

    def body(self, version: str, *, env: dict[str, str] | None = None, window: str = "0s",
             metrics: list[dict[str, Any]] | None = None, **analysis: Any) -> dict[str, Any]:
        body = manifest(NAME, self.stack.namespace, version, self.uris[version.split("-")[0]],
                        self.stack.prometheus_url, steps=STEPS, metrics=metrics or METRICS,
                        interval="1s", window=window, extra_analysis=analysis)
        if env:
            body["spec"]["template"] = {"spec": {"containers": [{
                "name": "model", "image": "kanaria/modelserver:0.1.0",
                "env": [{"name": k, "value": v} for k, v in env.items()]}]}}
        return body

    def roll(self, body: dict[str, Any], artifacts: Path, *, until: str, timeout: float = 420) -> tuple[dict[str, Any], TimelineRecorder]:
        rev = revision_of(body)
        assert self.stack.api is not None and self.stack.proxy is not None
        proxy = self.stack.proxy
        with TimelineRecorder(self.stack.api, self.stack.namespace, NAME, interval=0.5) as timeline:
            servers = [f"{NAME}-{r}" for r in self._revisions(rev)]
            timeline.probes = {
                **{f"lb:{srv}": (lambda srv=srv: proxy.loadbalanced_counts().get(srv, 0)) for srv in servers},
                **{f"hw:{srv}": (lambda srv=srv: proxy.weights().get(srv, -1)) for srv in servers},
            }
            lost_before = self.lost_so_far()
            self.stack.apply(body)
            try:
                final = wait_status(lambda: self.stack.get(NAME), lambda s: _settled(s, rev, until),
                                    timeout=timeout, what=f"{body['spec']['model']['version']} {until}")
            except TimeoutError:
                timeline.dump(artifacts / "timeline.json")
                raise
            # The route changes a moment after the status: wait until the recorder saw it too.
            weight = 0 if until == "rolledBack" else 100
            wait_for(lambda: (timeline.snapshot()[-1].route or {}).get(rev, 0) == weight, 20,
                     message=f"route {weight}% recorded")
            self.lost = self.lost_so_far() - lost_before
        timeline.dump(artifacts / "timeline.json")
        (artifacts / "status.json").write_text(json.dumps(final, indent=1))
        return final, timeline

    def _revisions(self, new: str) -> list[str]:
        st = self.stack.get(NAME).get("status") or {}
        return [r for r in (st.get("stableRevision"), new) if r]


def _settled(status: dict[str, Any], rev: str, until: str) -> bool:
    if until == "promoted":
        return status.get("phase") == "Stable" and status.get("stableRevision") == rev
    if until == "watching":
        return status.get("phase") == "Watching" and status.get("stableRevision") == rev
    return status.get("phase") == "RolledBack" and status.get("rejectedRevision") == rev


@pytest.fixture(scope="module")
def rollouts(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollouts]:
    work = tmp_path_factory.mktemp("metrics-path")
    uris = train_models(work / "models", {
        "v1": {"seed": 1}, "v2": {"seed": 2}, "v3": {"seed": 3}, "v4": {"seed": 4},
        "noisy": {"seed": 5, "label_noise": 0.3},
    })
    with LocalStack(work / "stack", namespace="metrics-path", cluster=cluster,
                    operator_kubeconfig=operator_kubeconfig) as stack:
        stack.follow_route(NAME)
        r = Rollouts(stack, uris, LoadGenerator(stack.proxy_url, rate=60, duration=1800,
                                                 feedback_delay_s=1.5, seed=11))
        stack.apply(r.body("v1"))
        wait_status(lambda: stack.get(NAME), lambda s: s.get("phase") == "Stable", timeout=120, what="v1")
        # Clients come once the proxy carries the route, as its status says.
        wait_for(lambda: stack.route_programmed(NAME), 60, message="the proxy carries the route")
        r.load.start()
        yield r
        r.load.stop()


def _share(timeline: TimelineRecorder, canary: str, stable: str, weight: int) -> float | None:
    """The canary's share of requests HAProxy balanced while the route said ``weight``."""
    # The proxy follows the route a moment later (a watch, then its runtime API, and in the
    # sandbox the revision's process must have started): count only what HAProxy balanced
    # while its own weights were the route's.
    points = [p for p in timeline.snapshot() if p.route and p.route.get(canary) == weight
              and p.extra.get(f"hw:{NAME}-{canary}") == weight
              and p.extra.get(f"hw:{NAME}-{stable}") == 100 - weight]
    if len(points) < 2:
        return None
    first, last = points[0].extra, points[-1].extra
    dc = last[f"lb:{NAME}-{canary}"] - first[f"lb:{NAME}-{canary}"]
    ds = last[f"lb:{NAME}-{stable}"] - first[f"lb:{NAME}-{stable}"]
    return dc / (dc + ds) if dc + ds > 50 else None


def test_good_revision_is_promoted_and_traffic_really_moves(rollouts: Rollouts, artifacts: Path) -> None:
    stable = rollouts.stack.get(NAME)["status"]["stableRevision"]
    body = rollouts.body("v2")
    final, timeline = rollouts.roll(body, artifacts, until="promoted")
    rev = revision_of(body)
    assert timeline.route_weights_seen(rev)[-3:] == [25, 50, 100]
    for weight in (25, 50):
        share = _share(timeline, rev, stable, weight)
        assert share is not None and abs(share - weight / 100) < 0.08, (weight, share)
    assert final["history"][-1]["outcome"] == "promoted"
    assert rollouts.lost == 0, f"{rollouts.lost} requests lost while weights moved: {rollouts.load.stats().failures[-5:]}"
    passed = [t["message"] for t in final["timeline"] if t["reason"] == "StepAdvanced" and "analysis passed" in t["message"]]
    assert len(passed) >= 2 and all("accuracy pass" in m and "latency pass" in m for m in passed[-2:])
    # The observed split was checked against the weights (sample-ratio) from the requests each
    # revision counted, and this healthy split never showed a mismatch: the canary serves only
    # once its server answers, each step starts once the proxy applied its weights, and its
    # requests before Prometheus first scraped it count.
    srm = [a for p in timeline.snapshot() for a in p.analysis if a["metric"] == "sample-ratio"]
    assert srm and srm[-1]["samples"] > 100 and 0 < srm[-1]["value"] < 1, srm[-3:]
    assert not [a for a in srm if a["verdict"] == "fail"], [a for a in srm if a["verdict"] == "fail"][:3]
    # Labels that matched a served prediction became labelled samples, from both revisions,
    # where the stack's Jobs read them.
    lines = (rollouts.stack.sample_dir / f"{NAME}.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    by_revision = {r: sum(s["revision"] == r for s in samples) for r in (stable, rev)}
    assert all(n > 50 for n in by_revision.values()), by_revision
    assert all(len(s["features"]) == 30 and s["label"] in (0, 1) for s in samples)
    assert len({s["request_id"] for s in samples}) == len(samples)  # one line per label


@pytest.mark.parametrize(
    ("version", "env", "metric"),
    [
        ("v3-slow", {"KANARIA_FAULT_DELAY_MS": "40"}, "latency fail"),
        ("v3-errors", {"KANARIA_FAULT_ERROR_RATE": "0.2"}, "errors fail"),
    ],
)
def test_latency_and_error_regressions_roll_back(
    rollouts: Rollouts, artifacts: Path, version: str, env: dict[str, str], metric: str
) -> None:
    before = rollouts.stack.get(NAME)["status"]["stableRevision"]
    final, timeline = rollouts.roll(rollouts.body(version, env=env), artifacts, until="rolledBack")
    assert final["stableRevision"] == before
    assert metric in final["history"][-1]["reason"]
    assert timeline.snapshot()[-1].route is not None
    assert max(p.canary_weight for p in timeline.snapshot()) <= 25  # never got past the first step


def test_accuracy_regression_from_delayed_labels_rolls_back_after_enough_labels(
    rollouts: Rollouts, artifacts: Path
) -> None:
    final, timeline = rollouts.roll(rollouts.body("noisy"), artifacts, until="rolledBack")
    assert "accuracy fail" in final["history"][-1]["reason"]
    accuracy = next(a for a in final["analysis"] if a["metric"] == "accuracy")
    assert accuracy["verdict"] == "fail" and accuracy["samples"] >= 250  # waited for labels
    early = [a for p in timeline.snapshot() for a in p.analysis if a["metric"] == "accuracy" and a["samples"] < 250]
    assert all(a["verdict"] == "inconclusive" for a in early)
    assert rollouts.lost == 0, f"{rollouts.lost} requests lost in the rollback: {rollouts.load.stats().failures[-5:]}"


def test_input_drift_on_the_canary_is_detected(rollouts: Rollouts, artifacts: Path) -> None:
    # The new revision's feature pipeline multiplies "mean radius" (feature 0) by 3. That also
    # costs accuracy, and the accuracy judge may see it first once labels come in, so this
    # rollout is judged without it: only the drift judge can reject the revision here.
    judges = [m for m in METRICS if m["kind"] != "accuracy"]
    body = rollouts.body("v3-drift", env={"KANARIA_FAULT_INPUT_SCALE": "0:3"},
                         metrics=[*judges, {**DRIFT, "critical": True, "shareThreshold": 0.5}])
    final, _ = rollouts.roll(body, artifacts, until="rolledBack")
    assert final["history"][-1]["revision"] == revision_of(body)
    assert "inputs fail" in final["history"][-1]["reason"], final["history"][-1]["reason"]
    drift = next(a for a in final["analysis"] if a["metric"] == "inputs")
    assert drift["verdict"] == "fail"


def test_prometheus_down_holds_then_resumes(rollouts: Rollouts, artifacts: Path) -> None:
    stack = rollouts.stack
    assert stack.prometheus is not None and stack.api is not None
    body = rollouts.body("v4")
    rev = revision_of(body)
    with TimelineRecorder(stack.api, stack.namespace, NAME, interval=0.5) as timeline:
        stack.apply(body)
        wait_status(lambda: stack.get(NAME), lambda s: s.get("currentStep") == 1 and s.get("canaryRevision") == rev,
                    timeout=120, what="the first analysis step")
        stack.prometheus.stop()
        try:
            held = wait_status(
                lambda: stack.get(NAME),
                lambda s: any(c.get("reason") == "MetricsUnavailable" for c in s.get("conditions", [])),
                timeout=60, what="MetricsUnavailable")
            assert held["currentStep"] == 1 and held["canaryWeight"] == 25
        finally:
            stack.prometheus.start()
        try:
            final = wait_status(lambda: stack.get(NAME), lambda s: _settled(s, rev, "promoted"),
                                timeout=420, what="v4 promoted after Prometheus came back")
        finally:  # kept on failure too: the verdicts before and after the outage
            timeline.dump(artifacts / "timeline.json")
    down = [p for p in timeline.snapshot() if "metrics unavailable" in " ".join(a["reason"] for a in p.analysis)]
    assert down and all(p.step == 1 and p.canary_weight == 25 for p in down)
    assert final["history"][-1]["outcome"] == "promoted"


def test_regression_after_promotion_reverts_to_the_prior_revision(rollouts: Rollouts, artifacts: Path) -> None:
    stack = rollouts.stack
    prior = stack.get(NAME)["status"]["stableRevision"]
    body = rollouts.body("v2-watched", window="60s")
    rev = revision_of(body)
    status, _ = rollouts.roll(body, artifacts, until="watching")
    assert rollouts.lost == 0, f"{rollouts.lost} requests lost in the promotion: {rollouts.load.stats().failures[-5:]}"
    lost_before = rollouts.lost_so_far()
    assert status["priorRevision"] == prior
    assert stack.kubelet is not None
    url = stack.kubelet.url_of(rev)
    assert url is not None
    # The regression starts after promotion: the promoted revision becomes slow.
    wait_status(lambda: stack.get(NAME), lambda s: s.get("lastAnalysisAt") is not None and s.get("phase") == "Watching",
                timeout=60, what="the first watch measurement")
    request = urllib.request.Request(f"{url}/admin/faults", data=json.dumps({"delay_ms": 60}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    final = wait_status(lambda: stack.get(NAME), lambda s: s.get("phase") == "RolledBack", timeout=120,
                        what="revert inside the watch window")
    assert final["stableRevision"] == prior and final["history"][-1]["outcome"] == "reverted"
    assert "latency fail" in final["history"][-1]["reason"]
    # Every request of the revert answered by a revision: the route moved back before anything
    # was scaled down.
    wait_for(lambda: rollouts.stack.route_programmed(NAME), 30, message="the proxy carries the reverted route")
    lost = rollouts.lost_so_far() - lost_before
    assert lost == 0, f"{lost} requests lost in the revert: {rollouts.load.stats().failures[-5:]}"


def test_the_scale_down_of_a_retired_revision_and_a_revert_after_the_watch_window_lose_nothing(
    rollouts: Rollouts, artifacts: Path
) -> None:
    """A promotion without a watch window retires the prior revision; after scaleDownDelay its
    Deployment goes to zero and its server stops while clients keep coming. A person then
    reverts to it: it is started again, serves only once it answers its readiness probe, and the
    revision it replaces drains before it is scaled down. No request is lost in all of it."""
    stack = rollouts.stack
    assert stack.api is not None and stack.kubelet is not None
    kubelet = stack.kubelet
    apps = client.AppsV1Api(stack.api)
    prior = stack.get(NAME)["status"]["stableRevision"]
    body = rollouts.body("v4-kept")
    rev = revision_of(body)
    rollouts.roll(body, artifacts, until="promoted")
    assert rollouts.lost == 0, f"{rollouts.lost} requests lost in the promotion: {rollouts.load.stats().failures[-5:]}"
    lost_before = rollouts.lost_so_far()

    def scaled_down(revision: str) -> bool:
        dep = apps.read_namespaced_deployment(f"{NAME}-{revision}", stack.namespace)
        return dep.spec.replicas == 0 and kubelet.url_of(revision) is None

    wait_for(lambda: scaled_down(prior), 60, message=f"the retired {prior} scaled to zero and its server stopped")
    served_before = rollouts.load.stats().sent
    wait_for(lambda: rollouts.load.stats().sent >= served_before + 120, 30, message="clients served after the scale-down")
    lost = rollouts.lost_so_far() - lost_before
    assert lost == 0, f"{lost} requests lost in the scale-down: {rollouts.load.stats().failures[-5:]}"

    stack.patch(NAME, {"metadata": {"annotations": {"kanaria.io/action": f"rollback:{prior}@revert-after-window"}}})
    final = wait_status(lambda: stack.get(NAME), lambda s: s.get("stableRevision") == prior and s.get("priorRevision") is None,
                        timeout=120, what=f"the revert to {prior}")
    assert final["history"][-1]["outcome"] == "reverted"
    wait_for(lambda: stack.route_programmed(NAME), 30, message="the proxy carries the reverted route")
    wait_for(lambda: scaled_down(rev), 60, message=f"the replaced {rev} scaled to zero and its server stopped")
    served_before = rollouts.load.stats().sent
    wait_for(lambda: rollouts.load.stats().sent >= served_before + 120, 30, message="clients served after the revert")
    lost = rollouts.lost_so_far() - lost_before
    assert lost == 0, f"{lost} requests lost in the revert after the window: {rollouts.load.stats().failures[-5:]}"
