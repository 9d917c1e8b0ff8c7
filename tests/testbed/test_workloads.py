"""Deployments really roll out: controller-manager makes the Pods, the scheduler binds them,
kwok (the fake kubelet) reports them Running and Ready."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api

from helpers import wait_for

pytestmark = pytest.mark.cluster


def test_deployment_reaches_three_ready_replicas(k8s: ApiClient, namespace: str) -> None:
    labels = {"app": "echo"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "labels": labels},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "echo", "image": "registry.invalid/echo:1"}]},
            },
        },
    }
    apps: Any = AppsV1Api(k8s)  # Any: the client is typed for models, we pass plain dicts
    apps.create_namespaced_deployment(namespace, deployment)

    def ready() -> bool:
        status = apps.read_namespaced_deployment_status("echo", namespace).status
        return bool(status.ready_replicas == 3 and status.available_replicas == 3)

    wait_for(ready, timeout=30, message="3 ready replicas of deployment echo")

    core: Any = CoreV1Api(k8s)
    pods = core.list_namespaced_pod(namespace, label_selector="app=echo").items
    assert len(pods) == 3
    assert all(p.spec.node_name and p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert all(p.status.phase == "Running" and p.status.pod_ip for p in pods)
