"""InferencePools as the router, and a LoRA adapter rollout by InferenceModelRewrite weights,
on the real stack with the Gateway API Inference Extension's CRDs (v1.5.0).

- Pools: the operator writes one InferencePool per revision and an HTTPRoute whose backendRefs
  are those pools with the rollout's weights; both are read back from the API server, HAProxy
  follows the pool backendRefs (each pool's selector resolved to its revision's server), the
  requests through it split as the weights say, and the healthy revision is promoted on
  evidence.
- Adapters: the operator writes one pool over every revision and an InferenceModelRewrite
  sending the client's model name to the revisions' adapters by weight; it is read back, the
  sandbox gateway (the endpoint picker's part) follows it, the answers come from each adapter
  in the rewrite's proportions, the new adapter is promoted, and a slower one is rolled back.

Splits are checked on 400 requests: within 8 points of the weight (HAProxy's weighted round
robin is near exact; the gateway draws at random, where 8 points is 3.5 standard deviations of a
30% share of 400).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.helpers import full_stack_marks, wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.llmload import LLMLoadGenerator
from kanaria.sandbox.scenario import manifest, revision_of, wait_status
from kanaria.sandbox.stack import LocalStack

pytestmark = full_stack_marks("inference-pool")

POOLED = "pooled"
CHAT = "chat"
CLIENT_MODEL = "chat"
BASE_MODEL = "llama-base"
PICKER = {"name": "chat-epp"}
METRICS = [
    {"name": "ttft", "kind": "timeToFirstToken", "minSamples": 250, "critical": True},
    {"name": "aborts", "kind": "abortRate", "minSamples": 250},
]
SAMPLE = 400
TOLERANCE = 0.08
POOL_GV = ("inference.networking.k8s.io", "v1")
REWRITE_GV = ("inference.networking.x-k8s.io", "v1alpha2")


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("inference-pool")
    with LocalStack(work / "stack", namespace="inference-pool", cluster=cluster,
                    operator_kubeconfig=operator_kubeconfig) as s:
        yield s


def body(s: LocalStack, name: str, version: str, pool: dict[str, Any], adapter: str | None = None,
         **env: str) -> dict[str, Any]:
    b = manifest(name, s.namespace, version, f"builtin://ngram/{version}", s.prometheus_url,
                 steps=[{"setWeight": 30}, {"analysis": {}}], metrics=METRICS, interval="1s", window="0s")
    b["spec"]["traffic"] = {"gatewayAPI": {"inferencePool": pool}}
    if adapter is not None:
        b["spec"]["model"].update(name=BASE_MODEL, adapter=adapter)
    b["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in {"KANARIA_LLM_FIRST_TOKEN_MS": "60", "KANARIA_LLM_MAX_RUNNING": "32", **env}.items()],
    }]}}
    b["spec"]["monitoring"] = {"enabled": False}
    return b


def custom(s: LocalStack) -> client.CustomObjectsApi:
    assert s.api is not None
    return client.CustomObjectsApi(s.api)


def read(s: LocalStack, gv: tuple[str, str], plural: str, name: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], custom(s).get_namespaced_custom_object(*gv, s.namespace, plural, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def route_refs(s: LocalStack, name: str) -> list[dict[str, Any]]:
    route = read(s, ("gateway.networking.k8s.io", "v1"), "httproutes", name) or {}
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return list(rules[0].get("backendRefs") or [])


def rewrite_weights(s: LocalStack, name: str) -> dict[str, int]:
    rw = read(s, REWRITE_GV, "inferencemodelrewrites", name) or {}
    rules = (rw.get("spec") or {}).get("rules") or [{}]
    return {t["modelRewrite"]: int(t.get("weight", 1)) for t in rules[0].get("targets") or []}


def send(url: str, n: int, model: str | None = None) -> list[httpx.Response]:
    """n short non-streaming completions, 8 at a time."""
    payload: dict[str, Any] = {"prompt": "the pool", "max_tokens": 2}
    if model is not None:
        payload["model"] = model
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: http.post("/v1/completions", json=payload), range(n)))


def share(counts: Counter[str], key: str) -> float:
    return counts[key] / max(1, sum(counts.values()))


def test_a_rollout_through_inference_pools_is_followed_by_the_proxy_and_promoted(stack: LocalStack) -> None:
    s = stack
    s.follow_route(POOLED)
    pool_spec = {"endpointPicker": PICKER, "targetPort": 8080}
    v1 = body(s, POOLED, "v1", pool_spec)
    v1["spec"]["rollback"]["revisionHistoryLimit"] = 0  # a retired revision is deleted at once
    r1 = revision_of(v1)
    s.apply(v1)
    wait_status(lambda: s.get(POOLED), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    pool1 = wait_for(lambda: read(s, POOL_GV, "inferencepools", f"{POOLED}-{r1}"), 30, message="v1's pool")
    assert pool1["spec"]["selector"]["matchLabels"] == {"kanaria.io/deployment": POOLED, "kanaria.io/revision": r1}
    assert pool1["spec"]["targetPorts"] == [{"number": 8080}]
    assert pool1["spec"]["endpointPickerRef"]["name"] == PICKER["name"]
    assert pool1["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    v2 = body(s, POOLED, "v2", pool_spec)
    v2["spec"]["rollback"]["revisionHistoryLimit"] = 0
    r2 = revision_of(v2)
    s.apply(v2)
    at30 = wait_status(lambda: s.get(POOLED), lambda st: st.get("canaryRevision") == r2 and st.get("canaryWeight") == 30,
                       timeout=120, what="v2 at 30%")
    assert at30.get("phase") not in ("RolledBack", "Stable")
    # The route, read back from the API server: the two revisions' pools, weighted.
    refs = wait_for(lambda: (lambda r: r if {x["name"]: x.get("weight") for x in r}
                             == {f"{POOLED}-{r1}": 70, f"{POOLED}-{r2}": 30} else None)(route_refs(s, POOLED)),
                    30, message=lambda: f"pool backendRefs 70/30, got {route_refs(s, POOLED)}")
    assert all(x["group"] == "inference.networking.k8s.io" and x["kind"] == "InferencePool" and "port" not in x
               for x in refs)
    assert read(s, POOL_GV, "inferencepools", f"{POOLED}-{r2}") is not None

    # HAProxy follows the pools: its weights are the route's, then the requests split so.
    assert s.proxy is not None
    wait_for(lambda: s.proxy.weights().get(f"{POOLED}-{r2}") == 30 and s.proxy.weights().get(f"{POOLED}-{r1}") == 70,
             30, message=lambda: f"HAProxy weights 70/30, got {s.proxy.weights() if s.proxy else None}")
    answers = send(s.proxy_url, SAMPLE)
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    by_rev = Counter(a.headers["X-Kanaria-Revision"] for a in answers)
    assert set(by_rev) == {r1, r2}
    print(f"pools: v2's share through HAProxy {share(by_rev, r2):.3f} of {SAMPLE} (weight 30%)")
    assert abs(share(by_rev, r2) - 0.30) <= TOLERANCE, by_rev
    # Too few samples yet for the analysis to decide: the split was measured at 30%.
    assert s.get(POOLED)["status"].get("canaryWeight") == 30

    load = LLMLoadGenerator(s.proxy_url, rate=12, duration=600, max_tokens=16, seed=5, concurrency=24, feedback=False)
    load.start()
    try:
        final = wait_status(lambda: s.get(POOLED),
                            lambda st: st.get("stableRevision") == r2 or st.get("phase") == "RolledBack",
                            timeout=300, what="v2 decided")
    finally:
        load.stop()
        load.join(30)
    assert final.get("stableRevision") == r2, final.get("message")
    assert next(h for h in final["history"] if h["revision"] == r2)["outcome"] == "promoted"
    wait_for(lambda: {x["name"]: x.get("weight") for x in route_refs(s, POOLED)}.get(f"{POOLED}-{r2}") == 100, 30,
             message=lambda: f"all traffic on v2's pool, got {route_refs(s, POOLED)}")
    # The retired revision leaves with its pool, as with its Service.
    wait_for(lambda: read(s, POOL_GV, "inferencepools", f"{POOLED}-{r1}") is None, 60, message="v1's pool deleted")
    assert read(s, POOL_GV, "inferencepools", f"{POOLED}-{r2}") is not None


def test_an_adapter_rollout_moves_rewrite_weights_that_the_gateway_follows(stack: LocalStack) -> None:
    s = stack
    gateway = s.follow_inference(CHAT)
    pool_spec = {"endpointPicker": PICKER, "modelRewrite": {"modelName": CLIENT_MODEL}}
    v1 = body(s, CHAT, "v1", pool_spec, adapter="sql-lora-v1")
    r1 = revision_of(v1)
    s.apply(v1)
    wait_status(lambda: s.get(CHAT), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    # One pool over every revision, one route to it, and the rewrite to v1's adapter.
    shared = wait_for(lambda: read(s, POOL_GV, "inferencepools", CHAT), 30, message="the shared pool")
    assert shared["spec"]["selector"]["matchLabels"] == {"kanaria.io/deployment": CHAT}
    assert [(x["kind"], x["name"]) for x in route_refs(s, CHAT)] == [("InferencePool", CHAT)]
    wait_for(lambda: rewrite_weights(s, CHAT) == {"sql-lora-v1": 100}, 30,
             message=lambda: f"rewrite to v1's adapter, got {rewrite_weights(s, CHAT)}")
    rw = read(s, REWRITE_GV, "inferencemodelrewrites", CHAT)
    assert rw is not None
    assert rw["spec"]["poolRef"]["name"] == CHAT
    assert rw["spec"]["rules"][0]["matches"] == [{"model": {"type": "Exact", "value": CLIENT_MODEL}}]
    # A server asked for the client's name directly does not know it: the rewrite is needed.
    assert s.kubelet is not None
    kubelet = s.kubelet
    url = wait_for(lambda: kubelet.url_of(r1), 60, message="v1's server listening")
    direct = httpx.post(f"{url}/v1/completions",
                        json={"model": CLIENT_MODEL, "prompt": "x", "max_tokens": 1}, timeout=10)
    assert direct.status_code == 404

    v2 = body(s, CHAT, "v2", pool_spec, adapter="sql-lora-v2")
    r2 = revision_of(v2)
    s.apply(v2)
    wait_status(lambda: s.get(CHAT), lambda st: st.get("canaryRevision") == r2 and st.get("canaryWeight") == 30,
                timeout=120, what="v2 at 30%")
    wanted = {"sql-lora-v1": 70, "sql-lora-v2": 30}
    wait_for(lambda: rewrite_weights(s, CHAT) == wanted, 30,
             message=lambda: f"rewrite 70/30, got {rewrite_weights(s, CHAT)}")
    # The route did not change: the split is in the rewrite.
    assert [(x["kind"], x["name"], x.get("weight")) for x in route_refs(s, CHAT)] == [("InferencePool", CHAT, 1)]
    wait_for(lambda: dict(gateway.targets(CHAT, CLIENT_MODEL)) == wanted, 30,
             message=lambda: f"the gateway's rewrite 70/30, got {gateway.targets(CHAT, CLIENT_MODEL)}")
    answers = send(gateway.url, SAMPLE, model=CLIENT_MODEL)
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    by_model = Counter(a.json()["model"] for a in answers)
    pairs = {(a.json()["model"], a.headers["X-Kanaria-Revision"]) for a in answers}
    assert pairs == {("sql-lora-v1", r1), ("sql-lora-v2", r2)}, pairs  # each adapter on its revision
    print(f"adapters: sql-lora-v2's share through the gateway {share(by_model, 'sql-lora-v2'):.3f} of {SAMPLE} "
          "(weight 30%)")
    assert abs(share(by_model, "sql-lora-v2") - 0.30) <= TOLERANCE, by_model
    assert s.get(CHAT)["status"].get("canaryWeight") == 30

    load = LLMLoadGenerator(gateway.url, rate=12, duration=900, max_tokens=16, seed=7, concurrency=24,
                            model=CLIENT_MODEL, feedback=False)
    load.start()
    try:
        promoted = wait_status(lambda: s.get(CHAT),
                               lambda st: st.get("stableRevision") == r2 or st.get("phase") == "RolledBack",
                               timeout=300, what="v2's adapter decided")
        assert promoted.get("stableRevision") == r2, promoted.get("message")
        wait_for(lambda: rewrite_weights(s, CHAT) == {"sql-lora-v2": 100}, 30,
                 message=lambda: f"rewrite all to v2's adapter, got {rewrite_weights(s, CHAT)}")

        # A slower adapter (30% longer to the first token) is rolled back: the rewrite returns.
        v3 = body(s, CHAT, "v3", pool_spec, adapter="sql-lora-v3", KANARIA_FAULT_FIRST_TOKEN_MS="18")
        r3 = revision_of(v3)
        s.apply(v3)
        wait_for(lambda: rewrite_weights(s, CHAT) == {"sql-lora-v2": 70, "sql-lora-v3": 30}, 120,
                 message=lambda: f"rewrite 70/30 to v3's adapter, got {rewrite_weights(s, CHAT)}")
        final = wait_status(lambda: s.get(CHAT),
                            lambda st: st.get("rejectedRevision") == r3 or st.get("stableRevision") == r3,
                            timeout=300, what="v3's adapter decided")
    finally:
        load.stop()
        load.join(30)
    assert final.get("rejectedRevision") == r3 and final["stableRevision"] == r2, final.get("message")
    assert "ttft" in final["history"][-1]["reason"], final["history"][-1]["reason"]
    wait_for(lambda: rewrite_weights(s, CHAT) == {"sql-lora-v2": 100}, 30,
             message=lambda: f"rewrite back on v2's adapter, got {rewrite_weights(s, CHAT)}")
    truth = load.stats()
    assert truth.by_revision.get(r2, 0) > 0 and truth.by_revision.get(r3, 0) > 0

