"""The operator's watch caches against the real API server: one list and one watch per kind,
then every change arrives by the watch (no request per object or per read), a change calls
back with the object, a version the operator wrote is never replaced by an older one, and the
route kinds start once their CRD is established."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client
from tests.helpers import wait_for

from kanaria.controller.informers import Informers
from kanaria.sandbox.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def _service(name: str, owner: str | None) -> client.V1Service:
    labels = {"kanaria.io/deployment": owner} if owner else {"app": name}
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ServiceSpec(selector={"app": name}, ports=[client.V1ServicePort(port=80)]),
    )


def test_changes_arrive_by_watch_and_reads_cost_no_request(
    kanaria_crd: LocalCluster, k8s: client.ApiClient, namespace: str
) -> None:
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def changed(kind: str, obj: dict[str, Any], event: str) -> None:
        with lock:
            seen.append((kind, obj["metadata"]["name"], event))

    informers = Informers(k8s, on_change=changed)
    informers.start(timeout=60)
    try:
        assert informers.has("Service") and informers.has("Deployment") and informers.has("ModelDeployment")
        assert informers.has("HTTPRoute"), "the Gateway API CRDs are installed: its routes are followed"
        assert informers.crd_established("httproutes.gateway.networking.k8s.io")
        assert not informers.crd_established("virtualservices.networking.istio.io")
        assert not informers.has("VirtualService")
        # Of the Services' cache: another test's CRD appearing in this shared cluster starts a
        # cache of its kind (requests of their own), which is not what this test is about.
        baseline = informers.requests("Service")

        core = client.CoreV1Api(k8s)
        for i in range(20):
            core.create_namespaced_service(namespace, _service(f"svc-{i}", "iris" if i % 2 else None))
        wait_for(lambda: len(informers.list("Service", namespace)) == 20, 30, message="20 Services cached")
        owned = informers.list("Service", namespace, {"kanaria.io/deployment": "iris"})
        assert sorted(s["metadata"]["name"] for s in owned) == sorted(f"svc-{i}" for i in range(1, 20, 2))
        for _ in range(100):  # reads are served from memory
            assert informers.get("Service", namespace, "svc-3") is not None
        assert informers.requests("Service") == baseline, "a change or a read made a request"
        with lock:
            assert {n for k, n, e in seen if k == "Service" and e == "ADDED"} >= {f"svc-{i}" for i in range(20)}

        # A newer version the operator wrote stays; an older one never replaces it.
        current = informers.get("Service", namespace, "svc-1")
        assert current is not None
        version = int(current["metadata"]["resourceVersion"])
        newer = {**current, "metadata": {**current["metadata"], "resourceVersion": str(version + 1000)}}
        older = {**current, "metadata": {**current["metadata"], "resourceVersion": str(version - 1)}}
        informers.put("Service", newer)
        informers.put("Service", older)
        got = informers.get("Service", namespace, "svc-1")
        assert got is not None and got["metadata"]["resourceVersion"] == str(version + 1000)

        core.delete_namespaced_service("svc-2", namespace)
        wait_for(lambda: informers.get("Service", namespace, "svc-2") is None, 30, message="deletion seen")
        with lock:
            assert ("Service", "svc-2", "DELETED") in seen
    finally:
        informers.stop()


def test_namespaced_caches_see_only_their_namespace(
    kanaria_crd: LocalCluster, k8s: client.ApiClient, namespace: str
) -> None:
    informers = Informers(k8s, namespaces=[namespace])
    informers.start(timeout=60)
    try:
        client.CoreV1Api(k8s).create_namespaced_service(namespace, _service("mine", None))
        wait_for(lambda: informers.get("Service", namespace, "mine") is not None, 30, message="cached")
        assert informers.list("Service", "default") == []
        assert informers.get("Service", "default", "kubernetes") is None
    finally:
        informers.stop()
