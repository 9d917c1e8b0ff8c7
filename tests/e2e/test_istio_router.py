"""The Istio router against the real API server with Istio's own VirtualService CRD (from the
pinned istio.io/api module in the Go module cache; no Istio control plane is needed to see the
weights Kanaria writes)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.conftest import apply_md, md_manifest, md_status, quality_spec, rev
from tests.helpers import wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.exporter import MetricsExporter
from kanaria.sandbox.operator import OperatorProcess
from kanaria.sandbox.prometheus import LocalPrometheus
from kanaria.traffic.istio import weights_from_virtualservice

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.e2e]

ISTIO_API = "istio.io/api@v1.28.0"


def _virtualservice_crd() -> dict[str, Any]:
    try:
        out = subprocess.run(["go", "mod", "download", "-json", ISTIO_API], capture_output=True, text=True,
                             check=True, timeout=300, env={**__import__("os").environ, "GOTOOLCHAIN": "local"})
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot fetch {ISTIO_API} from the Go module proxy: {exc}")
    crds = Path(json.loads(out.stdout)["Dir"]) / "kubernetes" / "customresourcedefinitions.gen.yaml"
    for doc in yaml.safe_load_all(crds.read_text()):
        if doc and doc.get("metadata", {}).get("name") == "virtualservices.networking.istio.io":
            doc["metadata"].pop("labels", None)
            return dict(doc)
    raise AssertionError("no VirtualService CRD in the istio.io/api module")


@pytest.fixture
def virtualservice_crd(kanaria_crd: LocalCluster) -> Iterator[LocalCluster]:
    """Istio's VirtualService CRD installed for this test only: the cluster is shared by the
    session, and other tests expect no Istio CRD."""
    cluster = kanaria_crd
    cluster.apply_yaml(yaml.safe_dump(_virtualservice_crd()))
    cluster.wait_crd_established("virtualservices.networking.istio.io")
    yield cluster
    cluster.kubectl("delete", "crd", "virtualservices.networking.istio.io", "--wait=true")


def test_istio_router_walks_the_weights_and_mirrors(
    virtualservice_crd: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    exporter: MetricsExporter,
    prom: LocalPrometheus,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    cluster = virtualservice_crd
    start_operator()
    custom = client.CustomObjectsApi(k8s)

    def spec(strategy: dict[str, Any]) -> dict[str, Any]:
        return {"traffic": {"istio": {"hosts": ["iris.example"]}}, **quality_spec(prom.url, strategy)}

    def read_vs() -> Any:
        return custom.get_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", "iris")

    def phase() -> Any:
        return md_status(k8s, namespace, "iris").get("phase")

    seen: list[dict[str, int]] = []
    mirrors: list[Any] = []

    def vs_weights() -> dict[str, int] | None:
        vs = read_vs()
        w = weights_from_virtualservice("iris", vs) or {}
        if not seen or seen[-1] != w:
            seen.append(w)
        mirrors.append((vs["spec"]["http"][0].get("mirror"), vs["spec"]["http"][0].get("mirrorPercentage")))
        return w

    canary = {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]}}
    v1 = md_manifest("iris", namespace, "v1", **spec(canary))
    apply_md(cluster, v1)
    wait_for(lambda: vs_weights() == {rev(v1): 100}, 60, message="v1 at 100% in the VirtualService")
    v2 = md_manifest("iris", namespace, "v2", **spec(canary))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v2)}).set(0.95)
    apply_md(cluster, v2)
    wait_for(lambda: (vs_weights() or {}).get(rev(v2)) == 100 and phase() == "Stable", 90,
             message="v2 promoted through the VirtualService", interval=0.1)
    canary_weights = [w.get(rev(v2), 0) for w in seen]
    assert [w for i, w in enumerate(canary_weights) if i == 0 or w != canary_weights[i - 1]][-3:] == [20, 50, 100]

    # Shadow: the VirtualService mirrors to the new revision, which gets no weight; it fails.
    v3 = md_manifest("iris", namespace, "v3", **spec({"shadow": {"percent": 40, "duration": "2m"}}))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v3)}).set(0.2)
    mirrors.clear()
    apply_md(cluster, v3)
    wait_for(lambda: vs_weights() is not None and phase() == "RolledBack", 90,
             message="the shadow rolled back", interval=0.1)
    mirrored = [m for m in mirrors if m[0]]
    assert mirrored and mirrored[0][0]["host"] == f"iris-{rev(v3)}" and mirrored[0][1] == {"value": 40.0}
    assert all(w.get(rev(v3), 0) == 0 for w in seen)
    wait_for(lambda: (vs_weights(), mirrors[-1][0] is None)[1], 20, message="mirror removed")

    # A/B by header: a VirtualService route named kanaria-match goes first and sends the group
    # to the challenger, while the weighted route keeps everyone else on the incumbent.
    matched: list[Any] = []

    def vs_match() -> None:
        vs = read_vs()
        first = vs["spec"]["http"][0]
        if first.get("name") == "kanaria-match":
            matched.append((first["match"], first["route"], weights_from_virtualservice("iris", vs)))

    ab = {"abTest": {"match": {"headers": [{"name": "X-Group", "value": "b"}]}, "primaryMetric": "quality",
                     "maxDuration": "2m"}}
    v4 = md_manifest("iris", namespace, "v4", **spec(ab))
    exporter.gauge("kanaria_test_quality", {"revision": rev(v4)}).set(0.97)
    apply_md(cluster, v4)
    wait_for(lambda: (vs_match(), bool(matched))[1], 60, message="the match route in the VirtualService", interval=0.1)
    match, route, weights = matched[0]
    assert match == [{"headers": {"x-group": {"exact": "b"}}}]
    assert route[0]["destination"]["host"] == f"iris-{rev(v4)}" and route[0]["weight"] == 100
    assert weights is not None and weights.get(rev(v4), 0) == 0 and sum(weights.values()) == 100
    wait_for(lambda: (vs_weights() or {}).get(rev(v4)) == 100 and phase() == "Stable", 90,
             message="the challenger promoted", interval=0.1)
    vs = read_vs()
    assert all(h.get("name") != "kanaria-match" for h in vs["spec"]["http"])  # the match route is gone
