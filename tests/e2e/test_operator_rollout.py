"""The operator against the real control plane and a real Prometheus.

Metric values come from the exporter fixture (a real /metrics endpoint scraped by Prometheus);
the operator runs as its own process under the RBAC in manifests/. Real model servers and the
proxy come in tests/e2e/test_metrics_path.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e._chaos import recording, status_of
from tests.e2e.conftest import (
    QUALITY,
    apply_md,
    apply_stable,
    canary_spec,
    get_md,
    md_manifest,
    md_status,
    phase_is,
    rev,
)
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus
from kanaria.sandbox.timeline import TimelineRecorder

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e]

def recorded(timeline: TimelineRecorder, phase: str, revision: str, weight: int) -> None:
    """Wait until the recorder itself has sampled this phase with this route weight (the
    status can change a moment before the route, so a wait on the API alone may end first)."""

    def seen() -> bool:
        points = timeline.snapshot()
        last = points[-1] if points else None
        return last is not None and last.phase == phase and (last.route or {}).get(revision, 0) == weight

    wait_for(seen, 20, message=f"{phase} with {revision} at {weight}% recorded")


def _operator_metrics(op: OperatorProcess, namespace: str, name: str) -> dict[tuple[str, str], float] | None:
    """This ModelDeployment's series from the operator's /metrics, keyed by (metric, phase)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name:
                out[(sample.name, sample.labels.get("phase", ""))] = sample.value
    return out if ("kanaria_canary_weight", "") in out and out[("kanaria_canary_weight", "")] == 10.0 else None


STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]


def test_promote_then_rollback(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    artifacts: Path,
) -> None:
    start_operator()
    name = "iris"
    v1 = md_manifest(name, namespace, "v1", **canary_spec(prom.url, STEPS))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v1)}).set(0.95)
    apply_stable(cluster, k8s, v1)

    # v2 is good: the HTTPRoute walks 20 → 50 → 100 and v2 becomes stable.
    v2 = md_manifest(name, namespace, "v2", **canary_spec(prom.url, STEPS))
    r2 = rev(v2)
    exporter.gauge("kanaria_test_quality", {"revision": r2}).set(0.97)
    with TimelineRecorder(k8s, namespace, name) as timeline:
        apply_md(cluster, v2)
        wait_for(lambda: phase_is(k8s, namespace, name, "Stable", r2), 90, message="v2 promoted")
        recorded(timeline, "Stable", r2, 100)
    timeline.dump(artifacts / "v2-timeline.json")
    assert timeline.route_weights_seen(r2)[-3:] == [20, 50, 100], timeline.route_weights_seen(r2)
    st = get_md(k8s, namespace, name)["status"]
    assert st["history"][-1]["outcome"] == "promoted" and st["history"][-1]["revision"] == r2

    # v3 fails its metric: all traffic back on v2, RolledBack, with an Event and a condition.
    v3 = md_manifest(name, namespace, "v3", **canary_spec(prom.url, STEPS))
    r3 = rev(v3)
    exporter.gauge("kanaria_test_quality", {"revision": r3}).set(0.5)
    with TimelineRecorder(k8s, namespace, name) as timeline:
        apply_md(cluster, v3)
        wait_for(
            lambda: md_status(k8s, namespace, name).get("phase") == "RolledBack",
            90,
            message="v3 rolled back",
        )
        recorded(timeline, "RolledBack", r3, 0)
    timeline.dump(artifacts / "v3-timeline.json")
    seen = timeline.route_weights_seen(r3)
    assert max(seen) <= 20 and seen[-1] == 0, seen  # never past the first step; back to 0
    st = get_md(k8s, namespace, name)["status"]
    assert st["stableRevision"] == r2 and st["history"][-1]["outcome"] == "rolledBack"
    assert "quality fail" in st["history"][-1]["reason"] and "0.5" in st["history"][-1]["reason"]
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    rolled = wait_for(lambda: [e for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
                               if e.reason == "RolledBack"], 30, message="the RolledBack Event")
    assert "0.5 >= 0.9 is false" in rolled[-1].message


def test_restart_mid_rollout_resumes_without_double_step(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    artifacts: Path,
) -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 40}, {"pause": {"duration": "3s"}}]
    name = "resume"
    op = start_operator()
    r1 = apply_stable(cluster, k8s, md_manifest(name, namespace, "v1", **canary_spec(prom.url, steps)))
    v2 = md_manifest(name, namespace, "v2", **canary_spec(prom.url, steps))
    r2 = rev(v2)
    exporter.gauge("kanaria_test_quality", {"revision": r1}).set(0.95)
    exporter.gauge("kanaria_test_quality", {"revision": r2}).set(0.95)
    # Steps from a watch, which sees every status write: a poller can miss a step the operator
    # holds for less than its interval (seen under load: step 2 lasted one short cycle).
    with TimelineRecorder(k8s, namespace, name, interval=0.1) as timeline, recording(k8s, namespace) as (mds, _):
        apply_md(cluster, v2)

        def at_pause() -> bool:
            st = md_status(k8s, namespace, name)
            return st.get("currentStep") == 1 and st.get("phase") == "Paused"

        wait_for(at_pause, 60, message="paused at step 1")
        # The operator's own /metrics say the same: phase Paused, canary at 10%.
        # The gauges are set after the status write that the wait above saw: wait for them too.
        def paused_series() -> dict[tuple[str, str], float] | None:
            found = _operator_metrics(op, namespace, name)
            return found if found and found.get(("kanaria_rollout_phase", "Paused")) == 1.0 else None

        series = wait_for(paused_series, 30, message="operator metrics")
        assert series[("kanaria_rollout_phase", "Paused")] == 1.0
        assert series[("kanaria_rollout_phase", "Progressing")] == 0.0
        assert series[("kanaria_canary_weight", "")] == 10.0
        assert series[("kanaria_rollout_step", "")] == 1.0
        op.kill()
        assert not op.alive()
        op = start_operator(name="operator-2")
        # The restarted operator holds at the indefinite pause: same step, same weight.
        wait_for(lambda: timeline.snapshot()[-1].step == 1, 10, message="still at step 1")
        cluster.kubectl("annotate", "--overwrite", "-n", namespace, f"modeldeployment/{name}",
                        "kanaria.io/action=promote@1")
        wait_for(lambda: phase_is(k8s, namespace, name, "Stable", r2), 60, message="v2 promoted")
        recorded(timeline, "Stable", r2, 100)
    timeline.dump(artifacts / "timeline.json")
    steps_seen = [status_of(m).get("currentStep", 0) for m in mds.snapshot(name)
                  if status_of(m).get("canaryRevision") == r2]
    assert steps_seen == sorted(steps_seen), steps_seen
    # No step done twice and none skipped across the restart: the operator's own record of
    # each step it completed (status.timeline), not a sampling of status, which can miss a
    # step that lasted less than its poll interval (a router that confirms at once).
    entries = (get_md(k8s, namespace, name).get("status") or {}).get("timeline") or []
    advanced = [e.get("step") for e in entries if e.get("reason") == "StepAdvanced" and e.get("revision") == r2]
    assert advanced == [1, 2, 3, 4], entries
    assert timeline.route_weights_seen(r2)[-3:] == [10, 40, 100]


def test_invalid_spec_is_rejected_by_the_api_server(kanaria_crd: LocalCluster, namespace: str) -> None:
    bad = md_manifest("bad", namespace, "v1", traffic={"gatewayAPI": {}, "istio": {}},
                      strategy={"canary": {"steps": [{"setWeight": 60}, {"setWeight": 20}]}})
    with pytest.raises(RuntimeError) as err:
        apply_md(kanaria_crd, bad)
    text = str(err.value)
    assert "choose exactly one traffic router" in text
    assert "setWeight values must not decrease" in text


def test_router_crd_missing_marks_degraded_and_moves_nothing(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    body = md_manifest("mesh", namespace, "v1", traffic={"istio": {}})
    apply_md(cluster, body)

    def degraded() -> dict[str, Any] | None:
        st = md_status(k8s, namespace, "mesh")
        return next((c for c in st.get("conditions", []) if c["type"] == "Degraded" and c["status"] == "True"), None)

    cond = wait_for(degraded, 60, message="Degraded condition")
    assert cond["reason"] == "RouterUnavailable" and "Istio VirtualService CRD" in cond["message"]


def test_unreachable_prometheus_holds_and_says_so(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    from kanaria.sandbox._proc import free_port

    start_operator()
    dead = f"http://127.0.0.1:{free_port()}"
    spec = {
        "strategy": {"canary": {"steps": [{"setWeight": 30}, {"analysis": {}}]}},
        "analysis": {
            "prometheus": {"address": dead, "timeout": "1s"},
            "interval": "1s",
            "metrics": [{"name": "quality", "kind": "custom", "query": QUALITY, "condition": ">= 0.9"}],
        },
    }
    apply_stable(cluster, k8s, md_manifest("blind", namespace, "v1", **spec))
    v2 = md_manifest("blind", namespace, "v2", **spec)
    apply_md(cluster, v2)

    def metrics_down() -> dict[str, Any] | None:
        st = md_status(k8s, namespace, "blind")
        return next((c for c in st.get("conditions", []) if c.get("reason") == "MetricsUnavailable"), None)

    cond = wait_for(metrics_down, 60, message="MetricsUnavailable")
    assert "metrics unavailable" in cond["message"]
    st = get_md(k8s, namespace, "blind")["status"]
    assert st["currentStep"] == 1 and st["canaryWeight"] == 30  # held at the analysis step
    assert st["phase"] == "Progressing"


class _Receiver:
    """A webhook receiver on 127.0.0.1 that records what it gets."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                import json

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("reachable", [True, False], ids=["receiver", "unreachable"])
def test_rollback_is_never_silent(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
    reachable: bool,
) -> None:
    from kanaria.sandbox._proc import free_port

    receiver = _Receiver() if reachable else None
    url = receiver.url if receiver else f"http://127.0.0.1:{free_port()}/hooks/secret-token"
    op = start_operator(KANARIA_WEBHOOK_URL=url, KANARIA_WEBHOOK_FORMAT="generic")
    try:
        name = "noisy"
        steps = [{"setWeight": 30}, {"analysis": {}}]
        apply_stable(cluster, k8s, md_manifest(name, namespace, "v1", **canary_spec(prom.url, steps)))
        v2 = md_manifest(name, namespace, "v2", **canary_spec(prom.url, steps))
        exporter.gauge("kanaria_test_quality", {"revision": rev(v2)}).set(0.1)
        apply_md(cluster, v2)
        # An unreachable receiver must not hold the rollback up: the same deadline applies.
        wait_for(lambda: md_status(k8s, namespace, name).get("phase") == "RolledBack",
                 60, message="rolled back")
        # The Event follows the status write: wait for it rather than race it.
        wait_for(lambda: any(e.reason == "RolledBack"
                             for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items),
                 30, message="the RolledBack Event")
        if receiver is not None:
            got = wait_for(lambda: [m for m in receiver.received if m.get("event") == "RolledBack"], 30,
                           message="the rollback notification")
            assert got[0]["name"] == name and got[0]["namespace"] == namespace
            assert got[0]["revision"] == rev(v2) and "quality fail" in got[0]["message"]
        assert "secret-token" not in op.log_path.read_text()
    finally:
        if receiver is not None:
            receiver.close()
