"""The Helm chart (charts/kanaria): `helm lint` and `helm template` for each way of installing it,
the rendered objects hang together, and where the chart and the kustomize manifests overlap
(the RBAC rules, the operator's container) they render the same, so neither changes alone.

helm is the pinned build of hack/localcluster/build-helm.sh (`make helm-bin`, part of `make
deps`), or $KANARIA_HELM; the tests skip, saying so, only when neither is there."""

from __future__ import annotations

import atexit
import copy
import functools
import glob
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.test_manifests import CHECKOV_CONFIG, _checkov_command

from kanaria.sandbox._locate import helm_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kanaria"
MONITORING = ROOT / "manifests" / "monitoring"
COPIES = {  # the chart's copy → its source (hack/sync-chart.sh)
    CHART / "crds" / "modeldeployment.yaml": ROOT / "crds" / "modeldeployment.yaml",
    CHART / "files" / "rules.yaml": MONITORING / "rules.yaml",
    CHART / "files" / "grafana-dashboard.json": MONITORING / "grafana-dashboard.json",
}
ALL_MONITORING = {
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
    }
}
# name → (release, namespace, values)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "default": ("kanaria", "kanaria-system", {}),
    "namespaced": ("kanaria", "kanaria-models", {"rbac": {"scope": "namespace"}}),
    "namespaced-elsewhere": (
        "team", "kanaria-system", {"rbac": {"scope": "namespace"}, "watchNamespaces": ["team-a", "team-b"]}
    ),
    "cluster-some-namespaces": ("kanaria", "kanaria-system", {"watchNamespaces": ["team-a"]}),
    "sharded": ("kanaria", "kanaria-system", {"shards": 2}),
    "sharded-other-release": ("team", "ops", {"shards": 3, "replicaCount": 1}),
    "monitoring": ("kanaria", "kanaria-system", ALL_MONITORING),
    "single-replica": ("kanaria", "kanaria-system", {"replicaCount": 1, "leaderElection": {"enabled": False}}),
}
NAMESPACED_KINDS = {
    "ServiceAccount", "Deployment", "Role", "RoleBinding", "Service", "NetworkPolicy",
    "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
}
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


# ----------------------------------------------------------------------------- helpers

@functools.cache
def _helm_home() -> str:
    """helm's cache, config and data folders, and the values files: one temp folder, removed at exit."""
    home = tempfile.mkdtemp(prefix="kanaria-helm-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


@functools.cache
def _helm_path() -> Path | None:
    return helm_binary(build=False)


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    helm = _helm_path()
    if helm is None:
        pytest.skip("helm not found: `make helm-bin` builds the pinned one (hack/localcluster/"
                    "build-helm.sh), or set KANARIA_HELM to a helm binary")
    home = _helm_home()
    env = {**os.environ, "HELM_CACHE_HOME": f"{home}/cache", "HELM_CONFIG_HOME": f"{home}/config",
           "HELM_DATA_HOME": f"{home}/data"}
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _values_file(values: dict[str, Any]) -> str:
    handle, path = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=_helm_home())
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(values, out)
    return path


@functools.cache
def _template_text(case: str, include_crds: bool = False) -> str:
    release, namespace, values = CASES[case]
    args = ["template", release, str(CHART), "-n", namespace, "-f", _values_file(values)]
    return _helm(*args, *(["--include-crds"] if include_crds else [])).stdout


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 0.5 MB of YAML


@functools.cache
def _parsed(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def render(case: str) -> list[dict[str, Any]]:
    """The objects `helm template` renders for a case (a fresh copy each call)."""
    return copy.deepcopy(_parsed(_template_text(case)))


def _kubectl() -> str:
    candidates = [os.path.join(os.environ.get("KANARIA_CLUSTER_BIN", ""), "kubectl"), shutil.which("kubectl"),
                  *sorted(glob.glob(str(ROOT / ".cache" / "cluster-bin" / "*" / "kubectl")))]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if found is None:
        pytest.skip("kubectl is not in $KANARIA_CLUSTER_BIN, on PATH nor in .cache/cluster-bin: "
                    "cannot render the kustomize manifests (make cluster-bin builds it)")
    return found


@functools.cache
def _kustomize_text(directory: str) -> str:
    return subprocess.run([_kubectl(), "kustomize", str(ROOT / directory)], check=True,
                          capture_output=True, text=True, timeout=120).stdout


def kustomize(directory: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_parsed(_kustomize_text(directory)))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects, expected one"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The (apiGroup, resource, verb) triples a list of rules grants: equal triples, equal rights,
    however the rules are grouped."""
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def lease_of(deployment: dict[str, Any]) -> str:
    """The Lease the operator of this Deployment elects on (controller/state.build_state)."""
    env = env_of(deployment)
    if "KANARIA_LEASE_NAME" in env:
        return str(env["KANARIA_LEASE_NAME"])
    if "KANARIA_SHARD" in env:
        index, count = str(env["KANARIA_SHARD"]).split("/")
        return f"kanaria-operator-shard-{index}-of-{count}"
    return "kanaria-operator"


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


# ----------------------------------------------------------------------------- the chart itself

def test_the_chart_copies_equal_their_sources() -> None:
    for copied, source in COPIES.items():
        assert copied.read_bytes() == source.read_bytes(), (
            f"{copied.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: run hack/sync-chart.sh "
            "(make crds runs it)"
        )


def test_the_crd_is_installed_from_crds() -> None:
    crds = of_kind(_parsed(_template_text("default", include_crds=True)), "CustomResourceDefinition")
    assert crds == _parsed((ROOT / "crds" / "modeldeployment.yaml").read_text())
    assert not of_kind(render("default"), "CustomResourceDefinition")  # from crds/, not templates/


@pytest.mark.parametrize("case", list(CASES))
def test_helm_lint_passes(case: str) -> None:
    release, namespace, values = CASES[case]
    result = _helm("lint", "--strict", str(CHART), "-n", namespace, "-f", _values_file(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_objects_are_well_formed(case: str) -> None:
    release, namespace, values = CASES[case]
    text = _template_text(case)
    assert "<no value>" not in text and "%!" not in text  # a missing value, a bad printf
    docs = render(case)
    assert docs
    names: set[tuple[str, str, str]] = set()
    for doc in docs:
        kind, meta = doc["kind"], doc["metadata"]
        where = f"{case}: {kind}/{meta.get('name')}"
        assert doc["apiVersion"] and meta["name"], where
        assert kind in NAMESPACED_KINDS | CLUSTER_KINDS, where
        if kind in NAMESPACED_KINDS:
            assert meta.get("namespace"), f"{where} has no namespace"
        else:
            assert "namespace" not in meta, where
        key = (kind, meta.get("namespace", ""), meta["name"])
        assert key not in names, f"{where} rendered twice"
        names.add(key)
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "kanaria", where
        assert labels["app.kubernetes.io/instance"] == release, where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        for path, value in _walk(doc):
            assert value is not None, f"{where}: {path} is null"
            # "" only where it means something: the core API group, an env var set empty.
            assert value != "" or path.endswith(".value") or ".apiGroups[" in path, f"{where}: empty {path}"

    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "ServiceAccount")}
    for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        assert (ref["kind"], scope, ref["name"]) in roles, f"{binding['metadata']['name']}: no {ref}"
        assert [(s["namespace"], s["name"]) for s in binding["subjects"]] == sorted(accounts)

    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == values.get("shards", 1)
    for deployment in deployments:
        spec = deployment["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
        assert (deployment["metadata"]["namespace"], spec["template"]["spec"]["serviceAccountName"]) in accounts
        assert spec["replicas"] == values.get("replicaCount", 2)
        image = container(deployment)["image"]
        assert image == "kanaria/operator:0.1.0", image
    selectors = [json.dumps(d["spec"]["selector"], sort_keys=True) for d in deployments]
    assert len(set(selectors)) == len(selectors), "two Deployments select each other's pods"
    leases = [lease_of(d) for d in deployments]
    assert len(set(leases)) == len(leases), f"Deployments share a Lease: {leases}"

    pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for obj in of_kind(docs, "Service") + of_kind(docs, "NetworkPolicy"):
        selector = obj["spec"]["selector"] if obj["kind"] == "Service" else obj["spec"]["podSelector"]["matchLabels"]
        assert all(selector.items() <= labels.items() for labels in pods), obj["metadata"]["name"]
    budgets = of_kind(docs, "PodDisruptionBudget")
    if values.get("replicaCount", 2) > 1:
        assert sorted(json.dumps(b["spec"]["selector"], sort_keys=True) for b in budgets) == sorted(selectors)
    else:
        assert budgets == []


def test_default_names_are_those_of_the_manifests() -> None:
    docs = render("default")
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        ("ServiceAccount", "kanaria-operator"), ("ClusterRole", "kanaria-operator"),
        ("ClusterRoleBinding", "kanaria-operator"), ("Deployment", "kanaria-operator"),
        ("NetworkPolicy", "kanaria-operator"), ("PodDisruptionBudget", "kanaria-operator"),
    }
    assert {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]} == {"kanaria-system"}
    assert lease_of(one(docs, "Deployment")) == "kanaria-operator"


def test_invalid_values_are_refused() -> None:
    bad = [
        ({"rbac": {"scope": "everywhere"}}, "/rbac/scope"),
        ({"shards": 0}, "/shards"),
        ({"replicas": 3}, "replicas"),  # a typo of replicaCount
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"podSecurity": "restricted"}, "/podSecurity"),
        ({"leaderElection": {"enabled": False}}, "needs replicaCount 1"),
    ]
    for values, message in bad:
        result = _helm("template", "kanaria", str(CHART), "-f", _values_file(values), check=False)
        assert result.returncode != 0, f"{values} was accepted"
        assert message in result.stderr, (values, result.stderr)


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def leaves(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in node.items():
            if isinstance(value, dict) and value and key not in ("labels", "resources", "podSecurityContext", "securityContext"):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    missing = [key for key in leaves(values) if f"`{key}`" not in readme]
    assert missing == [], f"values not documented in charts/kanaria/README.md: {missing}"


# ----------------------------------------------------------------------------- the two scopes

def test_cluster_scope_grants_one_cluster_role() -> None:
    docs = render("default")
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    assert container(one(docs, "Deployment"))["args"] == ["--liveness", "http://0.0.0.0:8081/healthz"]
    some = render("cluster-some-namespaces")
    assert container(one(some, "Deployment"))["args"][2:] == ["--namespace", "team-a"]
    assert of_kind(some, "ClusterRole") and not of_kind(some, "Role")


def test_namespace_scope_watches_the_release_namespace_by_default() -> None:
    docs = render("namespaced")
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "kanaria-models"
    assert ("coordination.k8s.io", "leases", "create") in grants(role["rules"])  # the Lease is here
    assert container(one(docs, "Deployment"))["args"][2:] == ["--namespace", "$(KANARIA_NAMESPACE)"]
    cluster_role = one(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "kanaria-operator-kanaria-models"  # one per install
    assert {verb for _, _, verb in grants(cluster_role["rules"])} == {"get", "list", "watch"}


def test_namespace_scope_has_a_role_per_watched_namespace_and_one_for_the_lease() -> None:
    docs = render("namespaced-elsewhere")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind(docs, "Role")}
    assert sorted(roles) == [
        ("kanaria-system", "team-kanaria-operator-leader-election"),
        ("team-a", "team-kanaria-operator"),
        ("team-b", "team-kanaria-operator"),
    ]
    lease_role = roles[("kanaria-system", "team-kanaria-operator-leader-election")]
    assert {(g, r) for g, r, _ in grants(lease_role["rules"])} == {("coordination.k8s.io", "leases")}
    args = container(one(docs, "Deployment"))["args"]
    assert args[2:] == ["--namespace", "team-a", "--namespace", "team-b"]
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in of_kind(docs, "RoleBinding")}
    assert bindings == set(roles)
    # Another release's objects, another Lease than the operator's default.
    assert lease_of(one(docs, "Deployment")) == "team-kanaria-operator"


# ----------------------------------------------------------------------------- sharding

def test_shards_are_deployments_that_differ_only_in_their_share() -> None:
    docs = render("sharded-other-release")
    deployments = of_kind(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [
        "team-kanaria-operator", "team-kanaria-operator-shard-1", "team-kanaria-operator-shard-2"
    ]
    assert [env_of(d)["KANARIA_SHARD"] for d in deployments] == ["0/3", "1/3", "2/3"]
    assert [lease_of(d) for d in deployments] == [
        f"team-kanaria-operator-shard-{i}-of-3" for i in range(3)
    ]

    def normal(d: dict[str, Any]) -> dict[str, Any]:
        d = json.loads(json.dumps(d))
        d["metadata"].pop("name")
        for labels in (d["metadata"]["labels"], d["spec"]["selector"]["matchLabels"],
                       d["spec"]["template"]["metadata"]["labels"]):
            labels.pop("kanaria.io/shard")
        c = container(d)
        c["env"] = [e for e in c["env"] if e["name"] not in ("KANARIA_SHARD", "KANARIA_LEASE_NAME")]
        return d

    assert normal(deployments[0]) == normal(deployments[1]) == normal(deployments[2])


def test_sharded_chart_matches_the_sharded_manifests() -> None:
    chart = {d["metadata"]["name"]: d for d in of_kind(render("sharded"), "Deployment")}
    manifests = {d["metadata"]["name"]: d for d in of_kind(kustomize("manifests/sharded"), "Deployment")}
    assert sorted(chart) == sorted(manifests) == ["kanaria-operator", "kanaria-operator-shard-1"]
    for name in chart:
        assert container(chart[name]) == container(manifests[name]), name
        assert lease_of(chart[name]) == lease_of(manifests[name])


def test_unsharded_operator_keeps_its_selector_when_sharded() -> None:
    # A Deployment's selector cannot change: going from 1 shard to 2 must keep shard 0's.
    first = one(render("default"), "Deployment")
    sharded = of_kind(render("sharded"), "Deployment")[0]
    assert first["metadata"]["name"] == sharded["metadata"]["name"]
    assert first["spec"]["selector"] == sharded["spec"]["selector"]


# ----------------------------------------------------------------------------- monitoring

def test_monitoring_objects_match_manifests_monitoring() -> None:
    docs = render("monitoring")
    rule = one(docs, "PrometheusRule")
    source = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["spec"] == source["spec"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"

    dashboard = one(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kanaria.json"]) == json.loads(
        (MONITORING / "grafana-dashboard.json").read_text()
    )

    manifests = [d for d in yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text()) if d]
    monitor, expected = one(docs, "ServiceMonitor"), one(manifests, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"].pop("selector")["matchLabels"].items() <= service["metadata"]["labels"].items()
    expected["spec"].pop("selector")  # the chart's also names the release
    assert monitor["spec"] == expected["spec"]
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "kanaria"  # the job label
    assert service["spec"]["ports"] == one(manifests, "Service")["spec"]["ports"]

    pod_monitor = one(docs, "PodMonitor")
    expected_pods = yaml.safe_load((MONITORING / "podmonitor-models.yaml").read_text())
    assert pod_monitor["spec"] == expected_pods["spec"]


def test_monitoring_is_off_by_default() -> None:
    kinds = {d["kind"] for d in render("default")}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "Service"}


# ----------------------------------------------------------------------------- chart = kustomize

def test_cluster_role_grants_what_manifests_base_grants() -> None:
    chart = one(render("default"), "ClusterRole")
    base = one(kustomize("manifests"), "ClusterRole")
    assert grants(chart["rules"]) == grants(base["rules"])


def test_namespaced_roles_grant_what_manifests_namespaced_grants() -> None:
    chart, manifests = render("namespaced"), kustomize("manifests/namespaced")
    assert grants(one(chart, "Role")["rules"]) == grants(one(manifests, "Role")["rules"])
    assert grants(one(chart, "ClusterRole")["rules"]) == grants(one(manifests, "ClusterRole")["rules"])
    assert container(one(chart, "Deployment"))["args"] == container(one(manifests, "Deployment"))["args"]


@pytest.mark.parametrize("field", ["command", "args", "env", "ports", "livenessProbe", "readinessProbe",
                                   "securityContext", "resources", "volumeMounts", "image",
                                   "imagePullPolicy"])
def test_operator_container_is_that_of_manifests_base(field: str) -> None:
    chart = container(one(render("default"), "Deployment"))
    base = container(one(kustomize("manifests"), "Deployment"))
    assert chart.get(field) == base.get(field)


def test_operator_pod_is_that_of_manifests_base() -> None:
    chart = one(render("default"), "Deployment")["spec"]
    base = one(kustomize("manifests"), "Deployment")["spec"]
    assert chart["replicas"] == base["replicas"]
    for field in ("securityContext", "volumes", "serviceAccountName", "automountServiceAccountToken"):
        assert chart["template"]["spec"][field] == base["template"]["spec"][field], field
    chart_policy = one(render("default"), "NetworkPolicy")["spec"]
    base_policy = one(kustomize("manifests"), "NetworkPolicy")["spec"]
    assert chart_policy["ingress"] == base_policy["ingress"]
    assert chart_policy["policyTypes"] == base_policy["policyTypes"]


# ----------------------------------------------------------------------------- hardened

def test_checkov_finds_nothing_on_the_rendered_chart(tmp_path: Path) -> None:
    """The checks tests/unit/test_manifests.py runs on manifests/, on every case rendered here
    (one checkov run, ~15 s; skipped, saying so, only when checkov is not installed)."""
    command = _checkov_command()
    for case in CASES:
        (tmp_path / f"{case}.yaml").write_text(_template_text(case))
    run = subprocess.run(
        [*command, "--config-file", str(CHECKOV_CONFIG), "-d", str(tmp_path), "-o", "json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )
    assert run.stdout.strip(), f"checkov printed nothing (rc {run.returncode}): {run.stderr[-2000:]}"
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']}, {c['file_path']})"
              for report in reports for c in report["results"]["failed_checks"]]
    assert failed == [], "\n".join(failed)
    assert all(report["summary"]["parsing_errors"] == 0 for report in reports)
    assert sum(report["summary"]["passed"] for report in reports) > 100
