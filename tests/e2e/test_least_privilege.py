"""The operator's identity can do what it needs and nothing dangerous, and the namespaced install
(manifests/namespaced) runs a whole rollout while being locked out of every other namespace.

Rights are asked of the API server itself (``kubectl auth can-i`` under the operator's token),
and the namespaced operator is the real process under a TokenRequest token of its ServiceAccount.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tests.e2e.conftest import (
    ROOT,
    apply_md,
    apply_stable,
    canary_spec,
    get_md,
    md_manifest,
    phase_is,
    rev,
)
from tests.helpers import fresh_namespace, wait_for

from kanaria.sandbox.cluster import LocalCluster, write_kubeconfig
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

OPERATOR_NS = "kanaria-system"
STEPS = [{"setWeight": 50}, {"analysis": {}}]

# What the operator uses, per (group, resource): nothing more is granted, all of it is.
NEEDED: dict[tuple[str, str], list[str]] = {
    ("kanaria.io", "modeldeployments"): ["get", "list", "watch", "patch", "update"],
    ("kanaria.io", "modeldeployments/status"): ["get", "patch", "update"],
    ("kanaria.io", "modeldeployments/finalizers"): ["update"],
    ("apps", "deployments"): ["get", "list", "watch", "create", "patch", "update", "delete"],
    ("apps", "deployments/scale"): ["get", "patch", "update"],
    ("", "services"): ["get", "list", "watch", "create", "patch", "update", "delete"],
    ("", "events"): ["create", "patch"],
    ("events.k8s.io", "events"): ["create", "patch"],
    ("gateway.networking.k8s.io", "httproutes"): [
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
    ],
    ("inference.networking.k8s.io", "inferencepools"): ["create", "patch", "delete"],
    ("inference.networking.x-k8s.io", "inferencemodelrewrites"): ["get", "create", "patch"],
    ("networking.istio.io", "virtualservices"): [
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
    ],
    ("coordination.k8s.io", "leases"): ["get", "list", "watch", "create", "update", "patch"],
}
CLUSTER_READS: dict[tuple[str, str], list[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): ["get", "list", "watch"],
    ("", "namespaces"): ["get", "list", "watch"],
}

# (verb, resource[.group], namespace or None for all namespaces / cluster scope)
DANGEROUS: list[tuple[str, str]] = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods/exec"),
    ("create", "pods/attach"),
    ("create", "pods"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts/token"),
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("delete", "modeldeployments.kanaria.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
]


def can_i(cluster: LocalCluster, kubeconfig: Path, verb: str, resource: str, *scope: str) -> bool:
    """``kubectl auth can-i`` under `kubeconfig`; exit code 1 with "no" means denied. For a
    resource the server does not serve (Istio is not installed here) kubectl answers "no"
    without asking, so then ask with a SelfSubjectAccessReview, still under `kubeconfig`."""
    try:
        out = cluster.kubectl("auth", "can-i", verb, resource, *scope, kubeconfig=kubeconfig)
    except RuntimeError as exc:
        if "doesn't have a resource type" in str(exc):
            return access_review(cluster, kubeconfig, verb, resource, *scope)
        if "stdout:\nno" in str(exc):
            return False
        raise
    return out.strip() == "yes"


def access_review(
    cluster: LocalCluster, kubeconfig: Path, verb: str, resource: str, *scope: str
) -> bool:
    name, _, sub = resource.partition("/")
    plural, _, group = name.partition(".")
    attributes = {"verb": verb, "resource": plural, "group": group, "subresource": sub}
    if len(scope) == 2 and scope[0] == "-n":
        attributes["namespace"] = scope[1]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    out = cluster.kubectl(
        "create", "-o", "json", "-f", "-", input_text=json.dumps(review), kubeconfig=kubeconfig
    )
    return bool(json.loads(out)["status"].get("allowed"))


def as_resource(group: str, resource: str) -> str:
    """`deployments/scale` in `apps` → `deployments.apps/scale`, as kubectl auth can-i takes it."""
    base, _, sub = resource.partition("/")
    name = f"{base}.{group}" if group else base
    return f"{name}/{sub}" if sub else name


def denied_everywhere(cluster: LocalCluster, kubeconfig: Path, namespaces: list[str]) -> list[str]:
    """The DANGEROUS rights the identity has anywhere (all namespaces, or any listed one)."""
    allowed = []
    for verb, resource in DANGEROUS:
        for scope in (["--all-namespaces"], *(["-n", ns] for ns in namespaces)):
            if can_i(cluster, kubeconfig, verb, resource, *scope):
                allowed.append(f"{verb} {resource} {' '.join(scope)}")
    return allowed


def missing_rights(
    cluster: LocalCluster, kubeconfig: Path, needed: dict[tuple[str, str], list[str]], *scope: str
) -> list[str]:
    return [
        f"{verb} {as_resource(group, resource)} {' '.join(scope)}"
        for (group, resource), verbs in needed.items()
        for verb in verbs
        if not can_i(cluster, kubeconfig, verb, as_resource(group, resource), *scope)
    ]


def test_cluster_wide_identity_has_what_it_uses_and_nothing_dangerous(
    cluster: LocalCluster, operator_kubeconfig: Path, namespace: str
) -> None:
    allowed = denied_everywhere(
        cluster, operator_kubeconfig, [namespace, OPERATOR_NS, "kube-system"]
    )
    assert allowed == [], f"the operator identity may: {allowed}"
    missing = missing_rights(cluster, operator_kubeconfig, NEEDED, "-n", namespace)
    missing += missing_rights(cluster, operator_kubeconfig, CLUSTER_READS)
    assert missing == [], f"the operator identity lacks: {missing}"
    # And an actual read of a Secret is refused, not just predicted to be.
    api = config.new_client_from_config(config_file=str(operator_kubeconfig))  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(api).list_secret_for_all_namespaces()
        assert caught.value.status == 403
    finally:
        api.close()


# ------------------------------------------------------------------------- namespaced install


def render_namespaced(cluster: LocalCluster, ns: str, workdir: Path) -> str:
    """manifests/namespaced through an overlay, as a user would install it into `ns`."""
    overlay = workdir / "overlay"
    overlay.mkdir()
    base = os.path.relpath(ROOT / "manifests" / "namespaced", overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"namespace: {ns}\n"
        f"nameSuffix: -{ns}\n"  # the ClusterRoleBinding is cluster-scoped: one per install
        f"resources:\n  - {base}\n"
    )
    return cluster.kubectl("kustomize", str(overlay))


@pytest.fixture
def other_namespace(cluster: LocalCluster) -> Iterator[str]:
    with fresh_namespace(cluster, "t-other") as name:
        yield name


@pytest.fixture
def namespaced_kubeconfig(
    kanaria_crd: LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """manifests/namespaced installed into `namespace`; a kubeconfig of its ServiceAccount."""
    cluster = kanaria_crd
    rendered = render_namespaced(cluster, namespace, tmp_path)
    cluster.apply_yaml(rendered)
    sa = f"kanaria-operator-{namespace}"
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", sa, "-n", namespace, "-o", "name"),
        30,
        message=f"ServiceAccount {namespace}/{sa}",
    )
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").strip()
    path = tmp_path / "namespaced.kubeconfig"
    write_kubeconfig(
        path,
        cluster.server,
        cluster.ca_file,
        f"system:serviceaccount:{namespace}:{sa}",
        token,
        namespace=namespace,
    )
    yield path
    # Cluster-scoped leftovers of this install (namespaced ones go with the namespace).
    suffix = f"-{namespace}"
    cluster.kubectl(
        "delete",
        "clusterrolebinding",
        f"kanaria-namespaced-operator{suffix}",
        "clusterrole",
        f"kanaria-namespaced-operator{suffix}",
        "--ignore-not-found",
    )


def forbidden(call: Callable[[], object]) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value
    return caught.value


@pytest.mark.prometheus
def test_namespaced_install_rolls_out_and_is_locked_out_elsewhere(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    other_namespace: str,
    namespaced_kubeconfig: Path,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    tmp_path: Path,
) -> None:
    kubeconfig = namespaced_kubeconfig
    # Rights first: everything in its namespace, nothing in another, nothing dangerous anywhere.
    assert missing_rights(cluster, kubeconfig, NEEDED, "-n", namespace) == []
    assert not missing_rights(
        cluster,
        kubeconfig,
        {
            ("apiextensions.k8s.io", "customresourcedefinitions"): ["get", "list", "watch"],
            ("", "namespaces"): ["list", "watch"],  # kopf lists namespaces even with --namespace
        },
    )
    elsewhere = [
        f"{verb} {as_resource(group, resource)}"
        for (group, resource), verbs in NEEDED.items()
        for verb in verbs
        if can_i(cluster, kubeconfig, verb, as_resource(group, resource), "-n", other_namespace)
    ]
    assert elsewhere == [], f"the namespaced identity may, in {other_namespace}: {elsewhere}"
    for verb, resource in (
        ("get", "namespaces"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ):
        assert not can_i(cluster, kubeconfig, verb, resource)
    assert denied_everywhere(cluster, kubeconfig, [namespace, other_namespace, "kube-system"]) == []

    # A ModelDeployment in the other namespace: this operator must never touch it.
    foreign = md_manifest("foreign", other_namespace, "v1", **canary_spec(prom.url, STEPS))
    apply_md(cluster, foreign)

    lease_name = f"kanaria-ns-{uuid.uuid4().hex[:6]}"
    op = OperatorProcess(
        kubeconfig,
        workdir=tmp_path,
        name="namespaced-operator",
        namespace=namespace,
        extra_env={
            "KANARIA_LEASE_NAME": lease_name,
            "POD_NAME": "namespaced-operator",
        },
        args=["--namespace", namespace],
    )
    try:
        op.start()
        name = "iris"
        v1 = md_manifest(name, namespace, "v1", **canary_spec(prom.url, STEPS))
        exporter.gauge("kanaria_test_quality", {"revision": rev(v1)}).set(0.95)
        apply_stable(cluster, k8s, v1)
        v2 = md_manifest(name, namespace, "v2", **canary_spec(prom.url, STEPS))
        exporter.gauge("kanaria_test_quality", {"revision": rev(v2)}).set(0.97)
        apply_md(cluster, v2)
        wait_for(
            lambda: phase_is(k8s, namespace, name, "Stable", rev(v2)), 90, message="v2 promoted"
        )
        history = get_md(k8s, namespace, name)["status"]["history"]
        assert history[-1]["outcome"] == "promoted" and history[-1]["revision"] == rev(v2)
        assert op.alive(), op.log_tail()

        # The Lease is in its own namespace, held by it.
        lease: Any = client.CoordinationV1Api(k8s).read_namespaced_lease(lease_name, namespace)
        assert lease.spec.holder_identity == "namespaced-operator"
        # Untouched elsewhere: no status, no kopf annotations or finalizers on the foreign object.
        other = get_md(k8s, other_namespace, "foreign")
        assert "status" not in other or not other["status"], other.get("status")
        assert not other["metadata"].get("finalizers"), other["metadata"]
        assert not any(k.startswith("kopf.") for k in other["metadata"].get("annotations") or {})
        assert client.AppsV1Api(k8s).list_namespaced_deployment(other_namespace).items == []
        log = op.log_path.read_text()
        # An HTTP 403 anywhere in the log (not the milliseconds of a timestamp, ",403").
        assert not re.search(r"(?<![,.\d])403(?!\d)", log) and "Forbidden" not in log, op.log_tail(80)
    finally:
        op.stop()

    # Under its own token, real API calls into the other namespace are refused.
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        apps = client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        err = forbidden(lambda: apps.list_namespaced_deployment(other_namespace))
        message = json.loads(err.body or "{}")["message"]
        assert f'in the namespace "{other_namespace}"' in message, message
        forbidden(
            lambda: custom.get_namespaced_custom_object(
                "kanaria.io", "v1alpha1", other_namespace, "modeldeployments", "foreign"
            )
        )
        forbidden(
            lambda: custom.patch_namespaced_custom_object(
                "kanaria.io",
                "v1alpha1",
                other_namespace,
                "modeldeployments",
                "foreign",
                {"metadata": {"labels": {"touched": "yes"}}},
            )
        )
        forbidden(lambda: client.CoreV1Api(api).list_namespaced_secret(namespace))
        forbidden(lambda: client.CoreV1Api(api).read_namespace(other_namespace))
        # ...while the same calls in its own namespace work.
        own: Any = apps.list_namespaced_deployment(namespace)
        assert own.items, "the operator's own namespace holds the revisions' Deployments"
    finally:
        api.close()
