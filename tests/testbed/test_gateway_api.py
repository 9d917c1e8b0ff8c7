"""The Gateway API CRDs (standard channel, pinned version) are installed and usable."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi

from kanaria.sandbox.cluster import GATEWAY_API_VERSION, LocalCluster

pytestmark = pytest.mark.cluster

GROUP, VERSION = "gateway.networking.k8s.io", "v1"


def test_httproute_crd_is_established(cluster: LocalCluster) -> None:
    crd = cluster.kubectl(
        "get",
        "crd",
        "httproutes.gateway.networking.k8s.io",
        "-o",
        "jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version}",
    )
    assert crd == GATEWAY_API_VERSION


def test_httproute_with_weighted_backends(k8s: ApiClient, namespace: str) -> None:
    route = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": "model"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
                    "backendRefs": [
                        {"name": "model-stable", "port": 8080, "weight": 90},
                        {"name": "model-canary", "port": 8080, "weight": 10},
                    ],
                }
            ],
        },
    }
    api: Any = CustomObjectsApi(k8s)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", route)
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", "model")
    weights = {b["name"]: b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"model-stable": 90, "model-canary": 10}
