"""The Helm chart on the real test bed: `helm install` in both RBAC scopes, every object it
renders is there and the CRD is Established; then the operator runs as a local process with
exactly the chart's arguments and environment, under a token of the ServiceAccount the chart
created (so with the chart's RBAC and nothing else), and a canary rollout reaches Stable.

The Deployment's own pods are kwok's fakes: they are Ready but run nothing (and so hold no
Lease); the local process stands in for one of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

from kanaria.sandbox._locate import helm_binary, repo_root
from kanaria.sandbox._proc import run
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus, ScrapeTarget

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CHART = repo_root() / "charts" / "kanaria"
CRD = "modeldeployments.kanaria.io"
STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
QUALITY = "kanaria_test_quality"


@dataclass
class Helm:
    """The pinned helm against the test bed's API server, as its admin."""

    binary: Path
    cluster: LocalCluster
    home: Path

    def __call__(self, *args: str, timeout: float = 300) -> str:
        env = {**os.environ, "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_CONFIG_HOME": str(self.home / "config"), "HELM_DATA_HOME": str(self.home / "data")}
        return run([str(self.binary), f"--kubeconfig={self.cluster.kubeconfig}", *args], env=env,
                   timeout=timeout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A control plane of this module's own: the chart installs the CRD with helm's server-side
    apply, which conflicts with the copy other tests apply to the shared test bed (another field
    manager owns its fields) — as it would on any cluster where the CRD came from elsewhere."""
    with LocalCluster() as local:
        local.install_gateway_api_crds()
        yield local


@pytest.fixture(scope="module")
def k8s(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    yield api
    api.close()


@pytest.fixture(scope="module")
def helm(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = helm_binary(build=True)  # builds the pinned helm when it is missing, as make deps does
    assert binary is not None, "hack/localcluster/build-helm.sh did not produce helm"
    return Helm(binary, cluster, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture
def release_namespace(cluster: LocalCluster) -> Iterator[str]:
    """The namespace the chart is installed in (not the one the ModelDeployment lives in)."""
    with fresh_namespace(cluster, prefix="kanaria") as name:
        yield name


def _installed(helm: Helm, release: str, namespace: str) -> list[dict[str, Any]]:
    manifest = helm("get", "manifest", release, "-n", namespace)
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def _exists(cluster: LocalCluster, obj: dict[str, Any]) -> bool:
    kind, meta = obj["kind"], obj["metadata"]
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    resource = f"{kind.lower()}.{group}" if group else kind.lower()
    scope = ["-n", meta["namespace"]] if "namespace" in meta else []
    return bool(cluster.kubectl("get", resource, meta["name"], *scope, "-o", "name").strip())


def _available(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> bool:
    status = apps.read_namespaced_deployment(name, namespace).status
    return (status.available_replicas or 0) == replicas


def local_operator(deployment: dict[str, Any], kubeconfig: Path, workdir: Path) -> OperatorProcess:
    """An operator process with the arguments and environment of the Deployment's container, as
    the kubelet would give them (the Downward API and $(VAR) expanded), on its own free ports."""
    namespace = deployment["metadata"]["namespace"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    downward = {"metadata.namespace": namespace, "metadata.name": f"{deployment['metadata']['name']}-local"}
    env: dict[str, str] = {}
    for var in container["env"]:
        if "valueFrom" in var:
            env[var["name"]] = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = var.get("value", "")
    env.pop("KANARIA_METRICS_PORT")  # OperatorProcess picks a free port (and a free health port)
    args = list(container["args"])
    at = args.index("--liveness")
    del args[at:at + 2]
    for name, value in env.items():
        args = [arg.replace(f"$({name})", value) for arg in args]
    return OperatorProcess(kubeconfig, workdir=workdir, name="chart-operator", namespace=namespace,
                           extra_env=env, args=args)


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_chart_installs_and_its_operator_rolls_out(
    scope: str,
    cluster: LocalCluster,
    k8s: client.ApiClient,
    helm: Helm,
    release_namespace: str,
    namespace: str,
    exporter: MetricsExporter,
    prometheus_factory: Callable[[list[ScrapeTarget]], LocalPrometheus],
    tmp_path: Path,
) -> None:
    release = f"chart-{scope}"
    values: dict[str, Any] = {"rbac": {"scope": scope}}
    if scope == "namespace":
        values["watchNamespaces"] = [namespace]  # elsewhere than the release: the Lease gets its own Role
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm("install", release, str(CHART), "-n", release_namespace, "-f", str(values_file),
         "--wait", "--timeout", "180s")
    try:
        # Every object the chart rendered is there; the CRD serves; the fake pods are Ready.
        objects = _installed(helm, release, release_namespace)
        kinds = sorted({o["kind"] for o in objects})
        expected = {"cluster": ["ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy",
                                "PodDisruptionBudget", "ServiceAccount"],
                    "namespace": ["ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy",
                                  "PodDisruptionBudget", "Role", "RoleBinding", "ServiceAccount"]}
        assert kinds == expected[scope]
        for obj in objects:
            assert _exists(cluster, obj), f"{obj['kind']}/{obj['metadata']['name']} is missing"
        cluster.wait_crd_established(CRD)
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        name = deployment["metadata"]["name"]
        wait_for(lambda: _available(client.AppsV1Api(k8s), release_namespace, name, 2), 60,
                 message=f"Deployment {name} available")

        # The operator, under the chart's ServiceAccount, as the chart's Deployment runs it.
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = cluster.service_account_kubeconfig(release_namespace, account)
        prom = prometheus_factory([ScrapeTarget(exporter.target)])
        op = local_operator(deployment, kubeconfig, tmp_path)
        try:
            op.start()
            v1 = md_manifest("iris", namespace, "v1", **canary_spec(prom.url, STEPS))
            exporter.gauge(QUALITY, {"revision": rev(v1)}).set(0.95)
            apply_stable(cluster, k8s, v1, timeout=90)
            v2 = md_manifest("iris", namespace, "v2", **canary_spec(prom.url, STEPS))
            r2 = rev(v2)
            exporter.gauge(QUALITY, {"revision": r2}).set(0.97)
            apply_md(cluster, v2)
            wait_for(lambda: phase_is(k8s, namespace, "iris", "Stable", r2), 120,
                     message=lambda: f"v2 promoted; operator log:\n{op.log_tail(30)}")
            history = get_md(k8s, namespace, "iris")["status"]["history"]
            assert history[-1]["outcome"] == "promoted" and history[-1]["revision"] == r2
            log = op.log_path.read_text()
            assert "Forbidden" not in log and " 403" not in log, op.log_tail(60)
            # It led on the chart's Lease, in the release namespace.
            env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            lease = client.CoordinationV1Api(k8s).read_namespaced_lease(env["KANARIA_LEASE_NAME"], release_namespace)
            assert lease.spec.holder_identity == f"{name}-local"
        finally:
            op.stop()
    finally:
        helm("uninstall", release, "-n", release_namespace, "--wait", "--timeout", "120s")
