"""Malformed ModelDeployments: each is refused by the API server with a clear message, or, where
the schema cannot say it, marked Invalid (an InvalidSpec condition and one Event per
generation) by the running operator, which neither crash-loops nor moves traffic.

The corpus is tests/e2e/bad_specs/: one ModelDeployment per file, headed by
``# expect: rejected|invalid`` and one or more ``# message: TEXT`` lines that the API server's
answer (rejected) or status.message (invalid) must contain. Cases too big to keep as files
(1000 steps, 10 MB strings), unknown fields and the revision-collision case are built here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.e2e.conftest import apply_md, get_md, md_status
from tests.helpers import fresh_namespace, wait_for

from kanaria.api import ModelDeploymentSpec, revision_hash
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.operator import OperatorProcess
from kanaria.workloads.objects import ANNOTATION_MODEL

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

CORPUS = Path(__file__).parent / "bad_specs"
GROUP, VERSION, PLURAL = "kanaria.io", "v1alpha1", "modeldeployments"


@dataclass(frozen=True)
class Case:
    name: str
    expect: str
    messages: tuple[str, ...]
    body: dict[str, Any]


def load_case(path: Path) -> Case:
    text = path.read_text()
    expect = re.findall(r"^# expect: (\w+)$", text, re.MULTILINE)
    messages = tuple(re.findall(r"^# message: (.+)$", text, re.MULTILINE))
    assert expect and expect[0] in ("rejected", "invalid"), f"{path.name}: no '# expect:' line"
    assert messages, f"{path.name}: no '# message:' line"
    body = yaml.safe_load(text)
    return Case(path.stem, expect[0], messages, body)


CASES = [load_case(p) for p in sorted(CORPUS.glob("*.yaml"))]
REJECTED = [c for c in CASES if c.expect == "rejected"]
INVALID = [c for c in CASES if c.expect == "invalid"]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30, len(CASES)
    assert INVALID and REJECTED


@pytest.fixture(scope="module")
def corpus_ns(kanaria_crd: LocalCluster) -> Iterator[str]:
    with fresh_namespace(kanaria_crd, "bad") as name:
        yield name


def _in(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["metadata"]["namespace"] = namespace
    return out


def _base(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "iris", "version": "v1", "uri": "file:///models/v1"},
            "traffic": {"gatewayAPI": {}},
            **spec,
        },
    }


def _create(api: client.ApiClient, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    custom: Any = client.CustomObjectsApi(api)
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body, **kw
    )
    return created


# --------------------------------------------------------------------------- rejected


@pytest.mark.parametrize("case", REJECTED, ids=[c.name for c in REJECTED])
def test_api_server_rejects_with_a_clear_message(
    kanaria_crd: LocalCluster, k8s: client.ApiClient, corpus_ns: str, case: Case
) -> None:
    with pytest.raises(RuntimeError) as err:
        apply_md(kanaria_crd, _in(case.body, corpus_ns))
    for message in case.messages:
        assert message in str(err.value), f"{case.name}: {message!r} not in {err.value}"
    with pytest.raises(ApiException) as missing:
        get_md(k8s, corpus_ns, case.body["metadata"]["name"])
    assert missing.value.status == 404


def test_a_thousand_steps_are_refused(k8s: client.ApiClient, corpus_ns: str) -> None:
    steps = [{"setWeight": min(100, i // 10)} for i in range(1000)]
    body = _base("thousand-steps", corpus_ns, strategy={"canary": {"steps": steps}})
    with pytest.raises(ApiException) as err:
        _create(k8s, body)
    assert err.value.status == 422
    assert "spec.strategy.canary.steps: Too many: 1000: must have at most 50 items" in str(err.value.body)


def test_long_strings_hit_field_limits(k8s: client.ApiClient, corpus_ns: str) -> None:
    body = _base("long-uri", corpus_ns)
    body["spec"]["model"]["uri"] = "s3://bucket/" + "x" * 1_000_000
    with pytest.raises(ApiException) as err:
        _create(k8s, body)
    assert err.value.status == 422
    assert "spec.model.uri: Too long: may not be more than 2048 bytes" in str(err.value.body)


def test_ten_megabyte_request_is_refused_before_validation(
    k8s: client.ApiClient, corpus_ns: str
) -> None:
    """The free-form pod template has no length limit of its own: the API server's request
    size limit (3 MiB) refuses a 10 MB object before decoding it; it answers 413 or, as it
    stops reading mid-body, closes the connection."""
    body = _base("ten-megabytes", corpus_ns)
    body["spec"]["template"] = {"metadata": {"annotations": {"blob": "x" * 10_000_000}}}
    with pytest.raises((ApiException, urllib3.exceptions.HTTPError)) as err:
        _create(k8s, body)
    if isinstance(err.value, ApiException):
        assert err.value.status == 413
        assert "Request entity too large" in str(err.value.body)
    with pytest.raises(ApiException) as missing:
        get_md(k8s, corpus_ns, "ten-megabytes")
    assert missing.value.status == 404


def test_two_megabytes_in_the_template_exceed_the_object_size_limit(
    k8s: client.ApiClient, corpus_ns: str
) -> None:
    """Under the request limit but over the stored-object limit (1.5 MiB in etcd)."""
    body = _base("two-megabytes", corpus_ns)
    body["spec"]["template"] = {"metadata": {"annotations": {"blob": "x" * 2_000_000}}}
    with pytest.raises(ApiException) as err:
        _create(k8s, body)
    assert err.value.status in (413, 422, 500), err.value
    assert "too large" in str(err.value.body).lower() or "too long" in str(err.value.body).lower()


# --------------------------------------------------------------------------- unknown fields


def _with_unknown_fields(name: str, namespace: str) -> dict[str, Any]:
    body = _base(name, namespace)
    body["spec"]["replicaz"] = 3  # top level of spec
    body["spec"]["model"]["colour"] = "blue"  # nested
    return body


def test_unknown_fields_are_rejected_under_strict_field_validation(
    k8s: client.ApiClient, corpus_ns: str
) -> None:
    with pytest.raises(ApiException) as err:
        _create(k8s, _with_unknown_fields("strict", corpus_ns), field_validation="Strict")
    assert err.value.status == 400
    text = str(err.value.body)
    assert 'unknown field \\"spec.replicaz\\"' in text or 'unknown field "spec.replicaz"' in text
    assert "spec.model.colour" in text


def test_unknown_fields_are_pruned_silently_when_validation_is_ignored(
    k8s: client.ApiClient, corpus_ns: str
) -> None:
    created = _create(k8s, _with_unknown_fields("pruned", corpus_ns), field_validation="Ignore")
    assert "replicaz" not in created["spec"] and "colour" not in created["spec"]["model"]
    stored = get_md(k8s, corpus_ns, "pruned")["spec"]
    assert "replicaz" not in stored and "colour" not in stored["model"]
    ModelDeploymentSpec.model_validate(stored)  # what is left is a valid spec


def test_server_side_apply_always_rejects_unknown_fields(
    kanaria_crd: LocalCluster, k8s: client.ApiClient, corpus_ns: str
) -> None:
    """kubectl apply --server-side (what the tests and the docs use) needs a typed object:
    undeclared fields fail whatever --validate says. The API server's message names the
    undeclared fields it met, in no fixed order and not always both: ask for one of them."""
    with pytest.raises(RuntimeError) as err:
        apply_md(kanaria_crd, _with_unknown_fields("ssa", corpus_ns))
    named = re.findall(r"\.spec\.(replicaz|model\.colour): field not declared in schema", str(err.value))
    assert named, f"no unknown field named in: {err.value}"
    with pytest.raises(ApiException) as missing:
        get_md(k8s, corpus_ns, "ssa")
    assert missing.value.status == 404


# --------------------------------------------------------------------------- invalid


def _invalid_spec_events(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [e for e in events.items if e.reason == "InvalidSpec"]


def _collision(cluster: LocalCluster, namespace: str) -> tuple[dict[str, Any], str]:
    """A Deployment already named NAME-<hash of the spec>, recording another model."""
    body = _base("collide", namespace)
    revision = revision_hash(ModelDeploymentSpec.model_validate(body["spec"]))
    labels = {
        "app.kubernetes.io/managed-by": "kanaria",
        "kanaria.io/deployment": "collide",
        "kanaria.io/revision": revision,
    }
    squatter = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"collide-{revision}",
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_MODEL: "someone-else/v9"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.example/other:v9"}]},
            },
        },
    }
    cluster.apply_yaml(yaml.safe_dump(squatter))
    return body, revision


def _route(name: str, namespace: str, backend: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [{"backendRefs": [{"name": backend, "port": 8080, "weight": 100}]}]},
    }


def _routes(api: client.ApiClient, namespace: str) -> dict[str, str]:
    custom: Any = client.CustomObjectsApi(api)
    found = custom.list_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes"
    )
    return {r["metadata"]["name"]: r["metadata"]["resourceVersion"] for r in found["items"]}


def _holds(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Assert that `predicate` stays true for `seconds` (polled, with a deadline)."""
    with pytest.raises(AssertionError, match="timed out"):
        wait_for(lambda: not predicate(), seconds, interval=0.5, message=message)


BATCH = 4
"""Cases in flight at once (many objects at once are covered by
test_more_objects_than_executor_threads_are_all_reconciled)."""


def test_operator_marks_what_the_schema_cannot_say_invalid_once(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # A route one of the cases would own: it must not change while the object is invalid.
    owner = next(c.body["metadata"]["name"] for c in INVALID if "gatewayAPI" in c.body["spec"]["traffic"])
    cluster.apply_yaml(yaml.safe_dump(_route(owner, namespace, "someone-else")))
    routes_before = _routes(k8s, namespace)
    op = start_operator()
    duplicates: dict[str, int] = {}
    for first in range(0, len(INVALID), BATCH):
        batch = INVALID[first : first + BATCH]
        expected = {c.body["metadata"]["name"]: c.messages for c in batch}
        for case in batch:
            apply_md(cluster, _in(case.body, namespace))

        def pending(names: dict[str, Any] = expected) -> list[str]:
            return [n for n in names if md_status(k8s, namespace, n).get("phase") != "Invalid"]

        wait_for(lambda: not pending(), 90, interval=0.5, message=f"Invalid: {list(expected)}")
        for name, messages in expected.items():
            st = get_md(k8s, namespace, name)["status"]
            for message in messages:
                assert message in st["message"], f"{name}: {message!r} not in {st['message']!r}"
            cond = next(c for c in st["conditions"] if c.get("reason") == "InvalidSpec")
            assert cond["status"] == "True" and st["message"] in cond["message"]
            assert st["observedGeneration"] == 1
        # Wake every loop again (an annotation leaves the generation alone).
        for name in expected:
            cluster.kubectl("annotate", "-n", namespace, f"modeldeployment/{name}", "poke=1")
        def calm(names: dict[str, Any] = expected) -> bool:
            return all(len(_invalid_spec_events(k8s, namespace, n)) >= 1 for n in names) and all(
                get_md(k8s, namespace, n)["status"]["phase"] == "Invalid" for n in names
            )

        wait_for(calm, 30, message="each marked Invalid with its Event")  # the Event follows the status
        _holds(calm, 5, message="still Invalid, with its Event")
        for name in expected:
            count = len(_invalid_spec_events(k8s, namespace, name))
            if count != 1:
                duplicates[name] = count

        if first == 0:
            # A new generation that is still invalid: one more Event, for generation 2.
            changed = _in(batch[0].body, namespace)
            name = changed["metadata"]["name"]
            before = len(_invalid_spec_events(k8s, namespace, name))
            changed["spec"]["model"]["version"] = "v2"
            apply_md(cluster, changed)
            wait_for(lambda n=name: get_md(k8s, namespace, n)["status"].get("observedGeneration") == 2,
                     60, message="generation 2 observed")
            wait_for(lambda n=name, b=before: len(_invalid_spec_events(k8s, namespace, n)) == b + 1, 30,
                     message="one more InvalidSpec Event for generation 2")
        for name in expected:
            cluster.kubectl("delete", "-n", namespace, f"modeldeployment/{name}", "--wait=true")

    # Nothing moved: no route written or changed, no revision deployed.
    assert _routes(k8s, namespace) == routes_before
    assert client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items == []
    # And the operator is alive and calm.
    assert op.alive()
    log = op.log_path.read_text()
    assert "Traceback" not in log, op.log_tail()
    assert not re.search(r"reconcile \S+ failed", log), op.log_tail()
    assert not duplicates, f"InvalidSpec Events per generation: {duplicates}"


def test_more_objects_than_executor_threads_are_all_reconciled(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    """40 objects, more than a default thread pool (min(32, CPUs + 4)): a sync daemon per
    object once held a thread each and starved the rest."""
    case = next(c for c in INVALID if c.name == "step-unknown-metric")
    names = [f"many-{i}" for i in range(40)]
    docs = []
    for name in names:
        body = _in(case.body, namespace)
        body["metadata"]["name"] = name
        docs.append(body)
    cluster.apply_yaml(yaml.safe_dump_all(docs))
    start_operator()

    def pending() -> list[str]:
        found: Any = client.CustomObjectsApi(k8s).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return [o["metadata"]["name"] for o in found["items"] if (o.get("status") or {}).get("phase") != "Invalid"]

    wait_for(lambda: not pending(), 90, interval=1.0, message="all 40 marked Invalid")


def test_revision_hash_collision_is_refused(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    collide, revision = _collision(cluster, namespace)
    cluster.apply_yaml(yaml.safe_dump(_route("collide", namespace, "someone-else")))
    routes_before = _routes(k8s, namespace)
    apply_md(cluster, collide)
    op = start_operator()

    def settled() -> dict[str, Any]:
        st = md_status(k8s, namespace, "collide")
        return st if st.get("phase") in ("Invalid", "Stable") else {}

    st = wait_for(settled, 90, message="the collision case decided")
    assert op.alive()
    assert _routes(k8s, namespace) == routes_before, "traffic moved to a squatter"
    assert st["phase"] == "Invalid", st
    assert "exists for a different model" in st["message"]
    wait_for(lambda: len(_invalid_spec_events(k8s, namespace, "collide")) == 1, 30,
             message="one InvalidSpec Event")  # the Event follows the status write


# --------------------------------------------------------------------------- nesting


def _deep(depth: int) -> dict[str, Any]:
    inner: Any = "bottom"
    for _ in range(depth):
        inner = {"x": inner}
    return inner


def test_a_template_nested_two_thousand_levels_deep_never_reaches_the_operator(
    kanaria_crd: LocalCluster, k8s: client.ApiClient, corpus_ns: str, tmp_path: Path
) -> None:
    """The pod template is typed with Kubernetes' own PodTemplateSpec: a deep unknown field is
    refused under strict validation and pruned otherwise, so what is stored is no deeper than
    a real template."""
    body = _base("deep-template", corpus_ns)
    body["spec"]["template"] = {"spec": {"containers": [{"name": "m", "image": "i"}], "x": "bottom"}}
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(body).replace('"bottom"', '{"x": ' * 2000 + "1" + "}" * 2000))
    with pytest.raises(RuntimeError) as err:
        kanaria_crd.kubectl("create", "-f", str(path), "--validate=strict")
    assert 'unknown field "spec.template.spec.x"' in str(err.value), err.value
    kanaria_crd.kubectl("create", "-f", str(path), "--validate=false")
    stored = get_md(k8s, corpus_ns, "deep-template")
    assert stored["spec"]["template"]["spec"] == {"containers": [{"name": "m", "image": "i"}]}


def test_a_deep_status_is_survived_marked_invalid_and_the_others_still_watched(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """Status keeps unknown fields (a newer operator's), so a user allowed to write status can
    store 3,000 levels there; JSON that deep stops Python's decoder. The operator's watch and
    reads decode it anyway, cut it, mark the object Invalid and go on with every other object
    (before, the watch died and the operator exited). Its next status write replaces the
    status it could not use."""
    case = next(c for c in INVALID if c.name == "step-unknown-metric")
    op = start_operator()
    poisoned = _in(case.body, namespace)
    poisoned["metadata"]["name"] = "poisoned"
    apply_md(cluster, poisoned)
    wait_for(lambda: md_status(k8s, namespace, "poisoned").get("phase") == "Invalid", 60, message="first marked")
    deep_text = json.dumps({"status": {"notes": "bottom"}}).replace('"bottom"', "[" * 3000 + "]" * 3000)
    patch = tmp_path / "deep-status.json"
    patch.write_text(deep_text)
    cluster.kubectl("patch", "-n", namespace, "modeldeployment/poisoned", "--subresource=status", "--type=merge",
                    "--patch-file", str(patch))
    wait_for(lambda: "poisoned is nested deeper than 62 levels: marked invalid" in op.log_path.read_text(), 60,
             message=lambda: f"the poisoned object read and marked for its depth: {op.log_tail()}")
    # The operator's next status write replaces the status it could not use.
    wait_for(lambda: md_status(k8s, namespace, "poisoned").get("phase") == "Invalid", 60,
             message="the poisoned object readable and Invalid again")
    later = _in(case.body, namespace)
    later["metadata"]["name"] = "after-the-poison"
    apply_md(cluster, later)
    wait_for(lambda: md_status(k8s, namespace, "after-the-poison").get("phase") == "Invalid", 60,
             message="an object created after the poison is still reconciled")
    assert op.alive(), op.log_tail()


def test_another_applications_route_is_not_taken_over_until_its_owner_hands_it_over(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    """A ModelDeployment named like an existing HTTPRoute that sends traffic elsewhere: no
    traffic moves and status says why; once the route's owner annotates it kanaria.io/adopt,
    Kanaria manages its backends."""
    cluster.apply_yaml(yaml.safe_dump(_route("takeover", namespace, "payments")))
    before = _routes(k8s, namespace)
    start_operator()
    apply_md(cluster, _base("takeover", namespace))
    wait_for(lambda: "not to this ModelDeployment's revisions" in (md_status(k8s, namespace, "takeover").get("message") or ""),
             60, message="the takeover refused in status")
    st = md_status(k8s, namespace, "takeover")
    assert "traffic router unavailable, no traffic moved: HTTPRoute takeover exists and sends traffic to payments" in st["message"]
    assert _routes(k8s, namespace) == before
    cluster.kubectl("annotate", "-n", namespace, "httproute/takeover", "kanaria.io/adopt=takeover")
    custom: Any = client.CustomObjectsApi(k8s)

    def backends() -> list[str]:
        route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "takeover")
        return [r["name"] for rule in route["spec"]["rules"] for r in rule.get("backendRefs") or []]

    wait_for(lambda: backends() and all(b.startswith("takeover-") for b in backends()), 90,
             message=lambda: f"the handed-over route managed by Kanaria; backends {backends()}")


def test_template_labels_that_another_service_selects_are_refused(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    """Pod labels that a Service Kanaria does not own selects would send that application's
    clients to the new model: InvalidSpec before any Deployment exists."""
    cluster.apply_yaml(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments", "namespace": namespace},
        "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80}]},
    }))
    body = _base("captor", namespace)
    body["spec"]["template"] = {"metadata": {"labels": {"app": "payments"}}}
    start_operator()
    apply_md(cluster, body)
    wait_for(lambda: md_status(k8s, namespace, "captor").get("phase") == "Invalid", 60, message="captor Invalid")
    message = md_status(k8s, namespace, "captor")["message"]
    assert "would put the new revision's pods behind Service payments (selector {'app': 'payments'})" in message
    assert client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items == []
