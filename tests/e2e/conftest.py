"""Fixtures for tests that run the operator against the real control plane and Prometheus."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.helpers import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from kanaria.sandbox.cluster import LocalCluster
    from kanaria.sandbox.exporter import MetricsExporter
    from kanaria.sandbox.operator import OperatorProcess
    from kanaria.sandbox.prometheus import LocalPrometheus

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KANARIA_ARTIFACTS", ROOT / "artifacts"))


@pytest.fixture(scope="session")
def kanaria_crd(cluster: LocalCluster) -> LocalCluster:
    """The ModelDeployment CRD from crds/, installed and Established."""
    cluster.apply_crds([ROOT / "crds" / "modeldeployment.yaml"])
    return cluster


@pytest.fixture(scope="session")
def operator_kubeconfig(kanaria_crd: LocalCluster) -> Path:
    """The CRD installed, and a kubeconfig of the operator's ServiceAccount (RBAC from manifests/)."""
    return kanaria_crd.operator_kubeconfig()


@pytest.fixture
def start_operator(
    operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes under the operator identity; all stopped at the end."""
    from kanaria.sandbox.operator import OperatorProcess

    started: list[OperatorProcess] = []

    def start(name: str = "operator", **env: str) -> OperatorProcess:
        op = OperatorProcess(operator_kubeconfig, workdir=tmp_path, name=name, extra_env=env)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def prom(exporter: MetricsExporter, prometheus_factory: Callable[..., LocalPrometheus]) -> LocalPrometheus:
    """A real Prometheus scraping this test's exporter."""
    from kanaria.sandbox.prometheus import ScrapeTarget

    return prometheus_factory([ScrapeTarget(exporter.target)])


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's artifacts (timelines, logs), kept after the run."""
    path = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


QUALITY = 'max(kanaria_test_quality{revision="{{revision}}"})'
"""The query of the tests' one metric: a gauge per revision that each test sets on its exporter."""


def quality_spec(
    address: str, strategy: dict[str, Any], *, timeout: str | None = None, **analysis: Any
) -> dict[str, Any]:
    """Spec fields for a rollout by `strategy`, judged every second by QUALITY >= 0.9 from the
    Prometheus at `address`, with no post-promotion window and no scale-down delay."""
    prometheus: dict[str, Any] = {"address": address}
    if timeout is not None:
        prometheus["timeout"] = timeout
    metric = {"name": "quality", "kind": "custom", "query": QUALITY, "condition": ">= 0.9"}
    return {
        "strategy": strategy,
        "analysis": {"prometheus": prometheus, "interval": "1s", "metrics": [metric], **analysis},
        "rollback": {"postPromotionWindow": "0s", "scaleDownDelay": "0s"},
    }


def canary_spec(
    address: str, steps: list[dict[str, Any]], *, timeout: str | None = None, **analysis: Any
) -> dict[str, Any]:
    """`quality_spec` for a canary through `steps`."""
    return quality_spec(address, {"canary": {"steps": steps}}, timeout=timeout, **analysis)


def md_manifest(name: str, namespace: str, version: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "iris", "version": version, "uri": f"file:///models/{version}"},
            "replicas": 1,
            "traffic": {"gatewayAPI": {}},
            **spec,
        },
    }
    return body


def apply_md(cluster: LocalCluster, body: dict[str, Any]) -> str:
    return cluster.apply_yaml(yaml.safe_dump(body))


def get_md(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kanaria.io", "v1alpha1", namespace, "modeldeployments", name
    )
    return obj


def md_status(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The ModelDeployment's status; empty before the operator first writes it."""
    st: dict[str, Any] = get_md(api, namespace, name).get("status") or {}
    return st


def rev(body: dict[str, Any]) -> str:
    """The revision Kanaria derives from the spec of `body`."""
    from kanaria.sandbox.scenario import revision_of

    return revision_of(body)


def phase_is(api: ApiClient, ns: str, name: str, phase: str, revision: str) -> bool:
    st = md_status(api, ns, name)
    return st.get("phase") == phase and st.get("stableRevision") == revision


def apply_stable(cluster: LocalCluster, api: ApiClient, body: dict[str, Any], timeout: float = 60) -> str:
    """Apply `body` and wait until its revision is the stable one; return that revision."""
    apply_md(cluster, body)
    r = rev(body)
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    version = body["spec"]["model"]["version"]
    wait_for(lambda: phase_is(api, ns, name, "Stable", r), timeout, message=f"{version} stable")
    return r
