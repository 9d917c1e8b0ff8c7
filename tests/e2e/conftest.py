"""Fixtures for tests that run the operator against the real control plane and Prometheus."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from kanaria.sandbox.cluster import LocalCluster
    from kanaria.sandbox.operator import OperatorProcess

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
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's artifacts (timelines, logs), kept after the run."""
    path = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


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
