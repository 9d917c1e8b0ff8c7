"""The operator runs in the cluster, from its image, and nowhere else: installed from manifests/
(kustomize, the image reference set to the archive ``make image`` built) and then from the Helm
chart, its pod is run by the test bed's pod runtime (:mod:`kanaria.sandbox.podruntime`) the way
a kubelet would — the image unpacked, a TokenRequest token bound to the pod and the namespace's
CA mounted at /var/run/secrets/kubernetes.io/serviceaccount, a read-only root, uid 65532, its
probes polled. No kubeconfig is given to it: it finds the API server through
KUBERNETES_SERVICE_HOST/PORT and authenticates with the mounted token, which the API server's
audit log shows (the user is the ServiceAccount, the token's pod-name is the pod's). It answers
its probes, leads on its Lease, and promotes a canary. In the manifests' run it is then frozen
(SIGSTOP): its liveness probe fails failureThreshold times, the runtime restarts it, and it is
ready again.

One replica, not the manifests' two: the pods share the host's network here (the runtime has
no network namespaces), and two replicas would both bind the container ports 8080 and 8081.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.conftest import (
    apply_md,
    apply_stable,
    canary_spec,
    get_md,
    md_manifest,
    phase_is,
    rev,
)
from tests.helpers import fresh_namespace, wait_for
from tests.testbed.conftest import BuiltImage
from tests.testbed.test_chart_install import CHART, Helm

from kanaria.sandbox._locate import helm_binary, repo_root
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.podruntime import ContainerRun, PodRuntime
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.xdist_group("operator-image")]

STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
QUALITY = "kanaria_test_quality"
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.log"


@pytest.fixture
def cluster(audit_log: Path) -> Iterator[LocalCluster]:
    """A control plane of this test's own, its API server writing an audit log: each test
    installs the CRD its own way (server-side apply of manifests/, or helm's), which would
    conflict on a shared one."""
    audit_log.parent.mkdir(parents=True)
    policy = audit_log.parent / "policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    with LocalCluster(apiserver_args=[f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}",
                                      "--audit-log-format=json"]) as local:
        local.install_gateway_api_crds()
        yield local


@pytest.fixture
def k8s(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    yield api
    api.close()


def _ready(runtime: PodRuntime) -> ContainerRun | None:
    runs = runtime.containers()
    return runs[0] if len(runs) == 1 and runs[0].ready else None


def _ports_free(*ports: int) -> None:
    """The container binds its ports on the host's network: say so plainly when another process
    (another run of these tests, say) holds them, instead of timing out on a probe."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
            try:
                sock.bind(("0.0.0.0", port))
            except OSError as exc:
                pytest.fail(f"port {port}, which the operator's container binds on the host network, "
                            f"is taken by another process: {exc}")


def _requests_of(audit_log: Path, user: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in audit_log.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("user", {}).get("username") == user]


def _in_cluster_rollout(cluster: LocalCluster, k8s: client.ApiClient, runtime: PodRuntime,
                        operator_namespace: str, namespace: str, exporter: MetricsExporter,
                        prom: LocalPrometheus, audit_log: Path) -> ContainerRun:
    """Start the runtime, wait for the pod's container to answer its probes, roll out a canary
    to promotion, and check who the API server saw doing it; returns the container."""
    _ports_free(8080, 8081)
    runtime.start()
    def ready() -> ContainerRun | None:
        if runtime.errors:  # not an error a retry mends: say it now
            pytest.fail(f"pod runtime: {runtime.errors}")
        return _ready(runtime)

    wait_for(ready, 180,
             message=lambda: f"the operator's container ready; runtime errors: {runtime.errors}; "
                             f"containers: {[(r.pod, r.history) for r in runtime.containers()]}")
    run = _ready(runtime)
    assert run is not None and run.process is not None
    assert run.liveness is None or run.liveness.ok is not False
    assert run.readiness is not None and run.readiness.ok and run.readiness.successes >= 1

    v1 = md_manifest("iris", namespace, "v1", **canary_spec(prom.url, STEPS))
    exporter.gauge(QUALITY, {"revision": rev(v1)}).set(0.95)
    apply_stable(cluster, k8s, v1, timeout=120)
    v2 = md_manifest("iris", namespace, "v2", **canary_spec(prom.url, STEPS))
    r2 = rev(v2)
    exporter.gauge(QUALITY, {"revision": r2}).set(0.97)
    apply_md(cluster, v2)
    wait_for(lambda: phase_is(k8s, namespace, "iris", "Stable", r2), 180,
             message=lambda: f"v2 promoted; operator log:\n{run.log_path.read_text()[-4000:]}")
    history = get_md(k8s, namespace, "iris")["status"]["history"]
    assert history[-1]["outcome"] == "promoted" and history[-1]["revision"] == r2
    log = run.log_path.read_text()
    assert "Forbidden" not in log and " 403" not in log, log[-4000:]

    # The API server saw the pod's own ServiceAccount, with a token bound to that pod, doing it.
    pod = client.CoreV1Api(k8s).read_namespaced_pod(run.pod, operator_namespace)
    user = f"system:serviceaccount:{operator_namespace}:{pod.spec.service_account_name}"
    seen = wait_for(lambda: _requests_of(audit_log, user) or None, 30, message=f"audit events of {user}")
    assert {tuple(e["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name", []))
            for e in seen} == {(run.pod,)}
    calls = {(e["verb"], e.get("objectRef", {}).get("resource"), e.get("objectRef", {}).get("subresource"))
             for e in seen}
    assert ("watch", "modeldeployments", None) in calls, calls
    assert {("patch", "modeldeployments", "status"), ("update", "modeldeployments", "status")} & calls, calls
    assert ("patch", "deployments", None) in calls, calls  # server-side apply
    # It leads on its Lease under its pod's name (POD_NAME from the Downward API).
    leases = client.CoordinationV1Api(k8s).list_namespaced_lease(operator_namespace).items
    assert [lease.spec.holder_identity for lease in leases] == [run.pod]
    return run


def test_operator_from_manifests_runs_in_cluster(
    cluster: LocalCluster, k8s: client.ApiClient, operator_image: BuiltImage, namespace: str,
    exporter: MetricsExporter, prometheus_factory: Callable[[list[ScrapeTarget]], LocalPrometheus],
    audit_log: Path, tmp_path: Path,
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    name, tag = operator_image.reference.rsplit(":", 1)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(repo_root() / "manifests", overlay)],
        "images": [{"name": "kanaria/operator", "newName": name, "newTag": tag}],
        "replicas": [{"name": "kanaria-operator", "count": 1}],
    }))
    rendered = cluster.kubectl("kustomize", str(overlay))
    assert f"image: {operator_image.reference}" in rendered
    cluster.apply_yaml(rendered)
    cluster.wait_crd_established("modeldeployments.kanaria.io")
    prom = prometheus_factory([ScrapeTarget(exporter.target)])
    runtime = PodRuntime(k8s, cluster.server, "kanaria-system", "kanaria-operator",
                         {operator_image.reference: operator_image.archive}, tmp_path / "pods")
    try:
        run = _in_cluster_rollout(cluster, k8s, runtime, "kanaria-system", namespace, exporter, prom,
                                  audit_log)
        # Frozen, it fails its liveness probe failureThreshold (3) times and is restarted.
        assert run.liveness is not None and run.process is not None
        assert run.restarts == 0
        os.kill(run.process.pid, signal.SIGSTOP)
        period = float(run.liveness.spec.get("periodSeconds", 10))
        wait_for(lambda: run.restarts == 1 and run.ready, 6 * period + 60,
                 message=lambda: f"a restart after failed liveness probes: {run.history}")
        assert "liveness probe failed 3 times" in run.history
    finally:
        runtime.stop()


def test_operator_from_chart_runs_in_cluster(
    cluster: LocalCluster, k8s: client.ApiClient, operator_image: BuiltImage, namespace: str,
    exporter: MetricsExporter, prometheus_factory: Callable[[list[ScrapeTarget]], LocalPrometheus],
    audit_log: Path, tmp_path: Path,
) -> None:
    binary = helm_binary(build=True)
    assert binary is not None, "hack/localcluster/build-helm.sh did not produce helm"
    helm = Helm(binary, cluster, tmp_path / "helm-home")
    name, tag = operator_image.reference.rsplit(":", 1)
    values = {"image": {"repository": name, "tag": tag}, "replicaCount": 1}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    with fresh_namespace(cluster, prefix="kanaria") as release_namespace:
        helm("install", "kanaria", str(CHART), "-n", release_namespace, "-f", str(values_file),
             "--wait", "--timeout", "180s")
        try:
            manifest = helm("get", "manifest", "kanaria", "-n", release_namespace)
            deployment = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == operator_image.reference
            cluster.wait_crd_established("modeldeployments.kanaria.io")
            prom = prometheus_factory([ScrapeTarget(exporter.target)])
            runtime = PodRuntime(k8s, cluster.server, release_namespace, deployment["metadata"]["name"],
                                 {operator_image.reference: operator_image.archive}, tmp_path / "pods")
            try:
                _in_cluster_rollout(cluster, k8s, runtime, release_namespace, namespace, exporter, prom,
                                    audit_log)
            finally:
                runtime.stop()
        finally:
            helm("uninstall", "kanaria", "-n", release_namespace, "--wait", "--timeout", "120s")
