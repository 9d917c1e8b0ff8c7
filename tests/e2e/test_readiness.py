"""On the test bed a model revision's pod is Ready when its server answers the readiness probe,
not on kwok's timer; where no server runs for it, the test bed makes it Ready as kwok would.

Real control plane and kwok; real model-server processes started by the sandbox's kubelet from
Deployments written by Kanaria's own manifest builder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.helpers import fresh_namespace, wait_for

from kanaria.api.models import ModelDeploymentSpec
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.kubelet import LocalKubelet
from kanaria.sandbox.readiness import PROBE_ANNOTATION, is_ready
from kanaria.sandbox.scenario import train_models
from kanaria.workloads.objects import LABEL_DEPLOYMENT, LABEL_REVISION, deployment_manifest

pytestmark = pytest.mark.e2e


def _deployment(namespace: str, name: str, revision: str, probe_path: str | None = None,
                uri: str = "file:///models/v1") -> dict[str, Any]:
    spec = ModelDeploymentSpec.model_validate({
        "model": {"name": "iris", "version": revision, "uri": uri},
        "traffic": {"gatewayAPI": {}},
    })
    body = deployment_manifest(name, namespace, "00000000-0000-0000-0000-000000000000", spec, revision, 1)
    body["metadata"].pop("ownerReferences")  # no ModelDeployment owns it in this test
    if probe_path is not None:
        body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = probe_path
    return body


def _pod(core: client.CoreV1Api, namespace: str, name: str, revision: str) -> client.V1Pod | None:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"{LABEL_DEPLOYMENT}={name},{LABEL_REVISION}={revision}").items
    return pods[0] if len(pods) == 1 else None


@pytest.fixture
def kubelet(cluster: LocalCluster, k8s: client.ApiClient, tmp_path: Path) -> Iterator[tuple[str, LocalKubelet, str]]:
    uri = train_models(tmp_path / "models", {"v1": {"seed": 1}})["v1"]
    with fresh_namespace(cluster, "ready") as namespace:
        kubelet = LocalKubelet(k8s, namespace, tmp_path, tmp_path / "targets.json", interval=0.2)
        with kubelet:
            yield namespace, kubelet, uri


def test_a_pod_is_ready_only_when_its_server_answers_the_readiness_probe(
    cluster: LocalCluster, k8s: client.ApiClient, kubelet: tuple[str, LocalKubelet, str]
) -> None:
    namespace, local, uri = kubelet
    core = client.CoreV1Api(k8s)
    annotations = core.read_namespace(namespace).metadata.annotations or {}
    assert annotations.get(PROBE_ANNOTATION) == "probe", "the kubelet claims its namespace"

    cluster.apply_yaml(yaml.safe_dump(_deployment(namespace, "good", "v1", uri=uri)))
    cluster.apply_yaml(yaml.safe_dump(_deployment(namespace, "bad", "v1", probe_path="/not-served", uri=uri)))

    good = wait_for(lambda: (p := _pod(core, namespace, "good", "v1")) is not None and is_ready(p) and p,
                    timeout=60, message="the pod whose server answers /healthz to be Ready")
    assert good.status.phase == "Running"
    assert local.probes[("good", "v1")] >= 1, "Ready came from a probe of the real server"

    # The bad revision's server runs and answers 404 on its probe path: several probes later its
    # pod is Running, not Ready, and its Deployment has no ready replica.
    wait_for(lambda: local.probes[("bad", "v1")] >= 5, timeout=60,
             message="five readiness probes of the server behind 'bad'")
    bad = _pod(core, namespace, "bad", "v1")
    assert bad is not None and bad.status.phase == "Running"
    assert not is_ready(bad), "a pod whose probe fails is not Ready"
    apps = client.AppsV1Api(k8s)
    wait_for(lambda: apps.read_namespaced_deployment_status("good-v1", namespace).status.ready_replicas == 1,
             timeout=30, message="good-v1 to count its Ready pod")
    assert not apps.read_namespaced_deployment_status("bad-v1", namespace).status.ready_replicas


def test_where_no_server_runs_a_revision_pod_is_made_ready_as_kwok_would(
    cluster: LocalCluster, k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    cluster.apply_yaml(yaml.safe_dump(_deployment(namespace, "plain", "v1")))
    pod = wait_for(lambda: (p := _pod(core, namespace, "plain", "v1")) is not None and is_ready(p) and p,
                   timeout=60, message="the revision pod in a namespace no kubelet serves to be Ready")
    assert pod.status.phase == "Running"
