"""The operator's identity has exactly the rights manifests/base/rbac.yaml grants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AuthenticationV1Api,
    AuthorizationV1Api,
    CoreV1Api,
)
from kubernetes.client.exceptions import ApiException

from kanaria.sandbox._api import ApiError, RawApi
from kanaria.sandbox.cluster import LocalCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator_kubeconfig(cluster: LocalCluster) -> Path:
    return cluster.operator_kubeconfig()


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: Path) -> Iterator[ApiClient]:
    client = config.new_client_from_config(config_file=str(operator_kubeconfig))  # type: ignore[no-untyped-call]
    yield client
    client.close()


def _can(
    client: ApiClient,
    verb: str,
    resource: str,
    namespace: str,
    subresource: str = "",
    group: str = "",
) -> bool:
    authz: Any = AuthorizationV1Api(client)  # Any: plain dicts instead of models
    review = authz.create_self_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "subresource": subresource,
                    "group": group,
                    "namespace": namespace,
                }
            },
        }
    )
    return bool(review.status.allowed)


def test_operator_is_who_it_says(operator: ApiClient) -> None:
    authn: Any = AuthenticationV1Api(operator)
    review = authn.create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert (
        review.status.user_info.username == "system:serviceaccount:kanaria-system:kanaria-operator"
    )


def test_operator_lists_deployments_and_creates_services(
    operator: ApiClient, namespace: str
) -> None:
    assert AppsV1Api(operator).list_namespaced_deployment(namespace).items == []
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model-stable"},
        "spec": {"selector": {"app": "model"}, "ports": [{"port": 8080}]},
    }
    core: Any = CoreV1Api(operator)
    created = core.create_namespaced_service(namespace, service)
    assert created.spec.cluster_ip.startswith("10.0.0.")


def test_operator_cannot_read_secrets(operator: ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        CoreV1Api(operator).list_namespaced_secret(namespace)
    assert caught.value.status == 403
    assert json.loads(caught.value.body or "{}")["message"] == (
        'secrets is forbidden: User "system:serviceaccount:kanaria-system:kanaria-operator" '
        f'cannot list resource "secrets" in API group "" in the namespace "{namespace}"'
    )
    with pytest.raises(ApiException) as caught:
        CoreV1Api(operator).read_namespaced_secret("anything", "kube-system")
    assert caught.value.status == 403


def test_operator_cannot_exec_into_pods(
    cluster: LocalCluster, operator: ApiClient, operator_kubeconfig: Path, namespace: str
) -> None:
    assert not _can(operator, "create", "pods", namespace, subresource="exec")
    assert not _can(operator, "get", "pods", namespace, subresource="exec")
    token = yaml.safe_load(operator_kubeconfig.read_text())["users"][0]["user"]["token"]
    raw = RawApi(cluster.server, token, cluster.ca_file)
    with pytest.raises(ApiError) as caught:
        raw.post(f"/api/v1/namespaces/{namespace}/pods/any/exec?command=true&stdout=true", {})
    assert caught.value.status == 403
    message = json.loads(caught.value.body)["message"]
    assert 'cannot create resource "pods/exec" in API group ""' in message


def test_rbac_grants_what_the_operator_needs(operator: ApiClient, namespace: str) -> None:
    granted = [
        ("watch", "modeldeployments", "", "kanaria.io"),
        ("patch", "modeldeployments", "status", "kanaria.io"),
        ("delete", "deployments", "", "apps"),
        ("create", "events", "", "events.k8s.io"),
        ("update", "httproutes", "", "gateway.networking.k8s.io"),
        ("create", "leases", "", "coordination.k8s.io"),
    ]
    for verb, resource, sub, group in granted:
        assert _can(operator, verb, resource, namespace, sub, group), (verb, resource, sub)
    denied = [
        ("delete", "modeldeployments", "", "kanaria.io"),
        ("create", "customresourcedefinitions", "", "apiextensions.k8s.io"),
        ("create", "clusterrolebindings", "", "rbac.authorization.k8s.io"),
        ("create", "pods", "", ""),
        ("get", "configmaps", "", ""),
    ]
    for verb, resource, sub, group in denied:
        assert not _can(operator, verb, resource, namespace, sub, group), (verb, resource, sub)
