"""The API server enforces structural schemas and CEL rules on custom resources."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kanaria.sandbox.cluster import LocalCluster

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "test.kanaria.io", "v1", "widgets"
RULE_MESSAGE = "minReplicas must not exceed maxReplicas"

WIDGET_CRD = textwrap.dedent(f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {PLURAL}.{GROUP}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: widget, kind: Widget}}
      versions:
        - name: {VERSION}
          served: true
          storage: true
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  required: [minReplicas, maxReplicas]
                  properties:
                    minReplicas: {{type: integer, minimum: 0}}
                    maxReplicas: {{type: integer, minimum: 0}}
                  x-kubernetes-validations:
                    - rule: self.minReplicas <= self.maxReplicas
                      message: {RULE_MESSAGE}
    """)


@pytest.fixture(scope="module")
def widgets(cluster: LocalCluster) -> str:
    cluster.apply_yaml(WIDGET_CRD)
    cluster.wait_crd_established(f"{PLURAL}.{GROUP}")
    return f"{PLURAL}.{GROUP}"


def _widget(name: str, low: Any, high: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": low, "maxReplicas": high},
    }


def _rejection(k8s: ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    api = CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as caught:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert caught.value.status == 422, caught.value.body
    status: dict[str, Any] = json.loads(caught.value.body or "{}")
    return status


def test_valid_widget_is_accepted(k8s: ApiClient, widgets: str, namespace: str) -> None:
    api: Any = CustomObjectsApi(k8s)
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _widget("ok", 1, 3)
    )
    assert created["spec"] == {"minReplicas": 1, "maxReplicas": 3}


def test_cel_rule_rejects_invalid_widget(k8s: ApiClient, widgets: str, namespace: str) -> None:
    status = _rejection(k8s, namespace, _widget("bad", 5, 2))
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        f'Widget.{GROUP} "bad" is invalid: spec: Invalid value: {RULE_MESSAGE}'
    )
    causes = status["details"]["causes"]
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {RULE_MESSAGE}",
            "field": "spec",
        }
    ]


def test_schema_rejects_wrong_type(k8s: ApiClient, widgets: str, namespace: str) -> None:
    status = _rejection(k8s, namespace, _widget("typo", "one", 2))
    assert (
        'spec.minReplicas: Invalid value: "string": spec.minReplicas in body must be of type integer: "string"'
        in status["message"]
    )
