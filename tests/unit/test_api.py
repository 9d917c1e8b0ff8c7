"""The API models, the generated CRD, revision hashing and the import rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kanaria.api import ModelDeploymentSpec, parse_duration, revision_hash
from kanaria.api.crd import crd_manifest, crd_yaml

ROOT = Path(__file__).resolve().parents[2]


def spec(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model": {"name": "iris", "version": "v1", "uri": "file:///m/v1"},
        "traffic": {"gatewayAPI": {}},
    }
    base.update(kw)
    return base


def test_crds_folder_matches_the_models() -> None:
    on_disk = (ROOT / "crds" / "modeldeployment.yaml").read_text()
    assert on_disk == crd_yaml(), "crds/ is stale: run `make crds`"


def test_every_spec_field_has_a_description() -> None:
    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    missing: list[str] = []

    def walk(node: dict[str, object], path: str) -> None:
        if "description" not in node:
            missing.append(path)
        if path.endswith(".template"):
            return  # a PodTemplateSpec, typed with Kubernetes' own schema and documented there
        props = node.get("properties") or {}
        assert isinstance(props, dict)
        for key, sub in props.items():
            walk(sub, f"{path}.{key}")
        items = node.get("items")
        if isinstance(items, dict) and "properties" in items:
            for key, sub in items["properties"].items():
                walk(sub, f"{path}[].{key}")

    walk(root, "spec")
    assert not missing


def test_crd_has_printer_columns_short_name_and_status() -> None:
    crd = crd_manifest()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["mdep"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase", "Stable", "Canary", "Weight", "Step", "Age"]
    text = yaml.safe_dump(crd)
    assert "$ref" not in text and "anyOf" not in text


def test_every_pod_template_is_typed_with_the_pinned_kubernetes_schema() -> None:
    """Typed, the API server prunes and validates a template like a Deployment's: nothing in
    it can nest deeper than a real PodTemplateSpec (the watch must never see a 2,000-deep one)."""
    spec_schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec_schema["properties"]
    templates = [props["template"], props["retraining"]["properties"]["template"],
                 props["validation"]["properties"]["template"]]
    deepest = 0
    for template in templates:
        assert template["properties"]["spec"]["required"] == ["containers"]
        container = template["properties"]["spec"]["properties"]["containers"]["items"]
        assert container["required"] == ["name"]
        assert container["properties"]["ports"]["items"]["properties"]["containerPort"]["type"] == "integer"
        stack = [(template, 1)]
        while stack:
            node, depth = stack.pop()
            deepest = max(deepest, depth)
            assert "x-kubernetes-preserve-unknown-fields" not in node
            children = list((node.get("properties") or {}).values())
            children += [node[k] for k in ("items", "additionalProperties") if isinstance(node.get(k), dict)]
            stack += [(c, depth + 1) for c in children]
    assert deepest < 30
    text = yaml.safe_dump(spec_schema)
    assert "x-kubernetes-int-or-string" in text


def test_the_vendored_pod_template_schema_is_the_pinned_kubernetes_version() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "hack" / "gen_podtemplate_schema.py"), "--check"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"traffic": {"gatewayAPI": {}, "istio": {}}}, "exactly one traffic router"),
        ({"strategy": {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 10}]}}}, "must not decrease"),
        ({"strategy": {"canary": {"steps": [{"setWeight": 150}]}}}, "less than or equal to 100"),
        ({"strategy": {"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}}, "exactly one of"),
        ({"strategy": {"canary": {"steps": [{"analysis": {}}]}}}, "need spec.analysis"),
        ({"analysis": {"prometheus": {"address": "http://p"}, "interval": "0s"}}, "should match pattern"),
        ({"analysis": {"prometheus": {"address": "http://p"},
                       "metrics": [{"name": "x", "kind": "custom"}]}}, "needs a query and a condition"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ModelDeploymentSpec.model_validate(spec(**patch))
    assert message in str(err.value)


def test_revision_hash_is_stable_and_depends_on_model_and_template_only() -> None:
    a = ModelDeploymentSpec.model_validate(spec())
    b = ModelDeploymentSpec.model_validate(spec(replicas=5, traffic={"replicas": {}}))
    c = ModelDeploymentSpec.model_validate(spec(model={"name": "iris", "version": "v2", "uri": "file:///m/v1"}))
    d = ModelDeploymentSpec.model_validate(spec(template={"metadata": {"labels": {"x": "y"}}}))
    assert revision_hash(a) == revision_hash(b)
    assert len({revision_hash(a), revision_hash(c), revision_hash(d)}) == 3
    assert len(revision_hash(a)) == 10


@pytest.mark.parametrize(("text", "seconds"), [("250ms", 0.25), ("30s", 30), ("5m", 300), ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_durations_refuse_garbage() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")


PURE = ("rollout", "analysis", "api")
FORBIDDEN = ("kopf", "kubernetes", "kanaria.controller", "kanaria.traffic", "kanaria.workloads")


@pytest.mark.parametrize("package", PURE)
def test_engine_and_analysis_import_no_kubernetes_or_kopf(package: str) -> None:
    offenders = []
    for path in (ROOT / "operator" / "kanaria" / package).rglob("*.py"):
        if path.name == "prometheus.py":
            continue  # the Prometheus provider is the analysis package's one I/O adapter
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN)]
    assert not offenders


def _with_metrics(*metrics: dict[str, object]) -> ModelDeploymentSpec:
    analysis = {"prometheus": {"address": "http://prom:9090"}, "metrics": list(metrics)}
    return ModelDeploymentSpec.model_validate(spec(analysis=analysis))


def test_maturity_horizons_reach_the_model_pods() -> None:
    from kanaria.workloads.objects import deployment_manifest

    s = _with_metrics(
        {"name": "acc", "kind": "accuracy", "maturity": "5m"},
        {"name": "acc-fast", "kind": "accuracy", "maturity": "90s"},
        {"name": "by-arrival", "kind": "accuracy", "maturity": "0s"},
        {"name": "q", "kind": "custom", "query": "x{revision=\"{{revision}}\"}", "condition": "> 0", "maturity": "5m"},
        {"name": "lat", "kind": "latency"},
    )
    assert s.maturity_horizons() == (90.0, 300.0)
    env = deployment_manifest("m", "ns", "uid", s, "r1", 1)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KANARIA_MATURITY_HORIZONS", "value": "90s,300s"} in env
    plain = deployment_manifest("m", "ns", "uid", _with_metrics({"name": "lat", "kind": "latency"}), "r1", 1)
    assert all(e["name"] != "KANARIA_MATURITY_HORIZONS" for e in plain["spec"]["template"]["spec"]["containers"][0]["env"])


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ({"name": "lat", "kind": "latency", "maturity": "5m"}, "maturity applies to accuracy and custom"),
        ({"name": "acc", "kind": "accuracy", "maturity": "25h"}, "at most 24h"),
        ({"name": "acc", "kind": "accuracy", "maturity": "soon"}, "pattern"),
        ({"name": "acc", "kind": "accuracy", "maturity": "1500ms"}, "whole number of seconds"),
    ],
)
def test_maturity_is_validated(metric: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _with_metrics(metric)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"rollback": {"postPromotionWindow": "99999999999d"}}, "postPromotionWindow: 99999999999d is longer than 3650d"),
        ({"analysis": {"prometheus": {"address": "http://p"}, "interval": "3651d"}}, "interval: 3651d is longer"),
        ({"analysis": {"prometheus": {"address": "http://p"}, "interval": "1" * 13 + "s"}}, "should match pattern"),
        ({"analysis": {"prometheus": {"address": "http://p"}, "metrics": [
            {"name": "c", "kind": "custom", "query": "up", "condition": "< 1e999"}]}}, "should match pattern"),
        ({"analysis": {"prometheus": {"address": "http://p"}, "metrics": [
            {"name": "l", "kind": "latency", "objectiveSeconds": 1e308}]}}, "less than or equal to 86400"),
        ({"template": {"spec": {"containers": [{"name": "m"}]}}}, "spec.containers[0] (m) needs an image"),
        ({"template": {"metadata": {"labels": {"app.kubernetes.io/managed-by": "me"}}}}, "is Kanaria's own label"),
        ({"template": {"spec": {"hostNetwork": True, "containers": [{"name": "m", "image": "i", "securityContext": {
            "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}}]}}},
         "spec.hostNetwork is not allowed; spec.containers[0].securityContext.capabilities.add: SYS_ADMIN not allowed"),
    ],
)
def test_bounds_and_the_baseline_pod_security_profile(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ModelDeploymentSpec.model_validate(spec(**patch))
    assert message in str(err.value)


def test_a_ten_year_duration_and_a_baseline_template_are_accepted() -> None:
    ok = spec(rollback={"postPromotionWindow": "3650d"}, template={"spec": {"containers": [{
        "name": "m", "image": "i", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]},
                                                       "runAsNonRoot": True}}]}})
    ModelDeploymentSpec.model_validate(ok)


def test_the_pod_security_check_can_be_left_to_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    privileged = spec(template={"spec": {"containers": [{"name": "m", "image": "i", "securityContext": {"privileged": True}}]}})
    with pytest.raises(ValidationError, match="privileged is not allowed"):
        ModelDeploymentSpec.model_validate(privileged)
    monkeypatch.setenv("KANARIA_POD_SECURITY", "privileged")
    ModelDeploymentSpec.model_validate(privileged)


def test_what_the_docs_forbid_is_refused_not_silently_accepted() -> None:
    prom = {"prometheus": {"address": "http://p"}}
    bandit = spec(strategy={"abTest": {"primaryMetric": "lat", "bandit": True}},
                  analysis={**prom, "metrics": [{"name": "lat", "kind": "latency"}]})
    with pytest.raises(ValidationError, match="bandit draws proportions: its primaryMetric must be of kind"):
        ModelDeploymentSpec.model_validate(bandit)
    shadow = spec(strategy={"shadow": {}},
                  analysis={**prom, "metrics": [{"name": "acc", "kind": "accuracy"}, {"name": "lat", "kind": "latency"}]})
    with pytest.raises(ValidationError, match="a shadow's answers reach nobody"):
        ModelDeploymentSpec.model_validate(shadow)
    ModelDeploymentSpec.model_validate(spec(strategy={"abTest": {"primaryMetric": "acc", "bandit": True}},
                                            analysis={**prom, "metrics": [{"name": "acc", "kind": "accuracy"}]}))


def test_header_names_that_differ_only_by_case_are_refused() -> None:
    both = {"abTest": {"primaryMetric": "acc", "match": {"headers": [{"name": "X-Beta", "value": "1"},
                                                                     {"name": "x-beta", "value": "2"}]}}}
    with pytest.raises(ValidationError, match="header 'X-Beta' is matched twice"):
        ModelDeploymentSpec.model_validate(spec(strategy=both, analysis={
            "prometheus": {"address": "http://p"}, "metrics": [{"name": "acc", "kind": "accuracy"}]}))


def test_feature_names_are_nfc_normalised() -> None:
    decomposed = "cafe\u0301"  # e + combining acute: looks like "café"
    s = ModelDeploymentSpec.model_validate(spec(analysis={"prometheus": {"address": "http://p"}, "metrics": [
        {"name": "d", "kind": "drift", "features": [decomposed]}]}))
    assert s.analysis is not None and s.analysis.metrics[0].features == ["caf\u00e9"]
