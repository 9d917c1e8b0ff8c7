"""InferencePool and InferenceModelRewrite builders, their read-back, and the sandbox's reading
of them (the Gateway API Inference Extension v1.5.0 shapes)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from kanaria.api.models import GatewayAPITraffic, InferencePoolBackend, Model, ModelDeploymentSpec
from kanaria.api.revision import revision_hash
from kanaria.sandbox.httproute import pools_of_httproute, weights_from_httproute
from kanaria.sandbox.inference import draw, rewrite_targets
from kanaria.traffic.gatewayapi import ANNOTATION_ADAPTERS, weights_from_rewrite
from kanaria.workloads.objects import (
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    deployment_manifest,
    model_fingerprint,
    pool_manifest,
    rewrite_manifest,
)

POOL = InferencePoolBackend.model_validate({"endpointPicker": {"name": "chat-epp"}, "targetPort": 8000})


def spec(**model: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "chat", "version": "v1", "uri": "hf://base", **model},
        "traffic": {"gatewayAPI": {"inferencePool": {"endpointPicker": {"name": "chat-epp"}}}},
        "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    })


def test_a_revision_pool_selects_that_revision_and_names_the_picker() -> None:
    pool = pool_manifest("chat", "ns", "uid-1", "abc123", POOL)
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1" and pool["kind"] == "InferencePool"
    assert pool["metadata"]["name"] == "chat-abc123"
    assert pool["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pool["spec"]["selector"] == {"matchLabels": {LABEL_DEPLOYMENT: "chat", LABEL_REVISION: "abc123"}}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {
        "kind": "Service", "name": "chat-epp", "port": {"number": 9002}, "failureMode": "FailClose",
    }


def test_the_shared_pool_selects_every_revision() -> None:
    pool = pool_manifest("chat", "ns", "uid-1", None, POOL)
    assert pool["metadata"]["name"] == "chat"
    assert pool["spec"]["selector"] == {"matchLabels": {LABEL_DEPLOYMENT: "chat"}}


def test_a_rewrite_splits_the_client_model_and_leaves_out_zero_weights() -> None:
    rw = rewrite_manifest("chat", "ns", "uid-1", "chat", {"sql-lora-v2": 30, "sql-lora-v1": 70, "gone": 0})
    assert rw["apiVersion"] == "inference.networking.x-k8s.io/v1alpha2" and rw["kind"] == "InferenceModelRewrite"
    assert rw["spec"]["poolRef"] == {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat"}
    (rule,) = rw["spec"]["rules"]
    assert rule["matches"] == [{"model": {"type": "Exact", "value": "chat"}}]
    assert rule["targets"] == [{"modelRewrite": "sql-lora-v1", "weight": 70}, {"modelRewrite": "sql-lora-v2", "weight": 30}]


def test_rewrite_weights_read_back_per_revision() -> None:
    rw = rewrite_manifest("chat", "ns", "uid-1", "chat", {"a1": 100})
    rw["metadata"]["annotations"] = {ANNOTATION_ADAPTERS: json.dumps({"r1": "a1", "r2": "a2"})}
    assert weights_from_rewrite(rw) == {"r1": 100, "r2": 0}
    rw = rewrite_manifest("chat", "ns", "uid-1", "chat", {"a1": 75, "a2": 25})
    rw["metadata"]["annotations"] = {ANNOTATION_ADAPTERS: json.dumps({"r1": "a1", "r2": "a2"})}
    assert weights_from_rewrite(rw) == {"r1": 75, "r2": 25}
    rw["metadata"]["annotations"] = {ANNOTATION_ADAPTERS: "not json"}
    assert weights_from_rewrite(rw) is None


def test_the_adapter_reaches_the_pod_and_old_revisions_keep_their_hash_and_fingerprint() -> None:
    plain, with_adapter = spec(), spec(adapter="sql-lora-v2")
    env = deployment_manifest("chat", "ns", "u", with_adapter, "r", 1)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KANARIA_MODEL_ADAPTER", "value": "sql-lora-v2"} in env
    assert not any(e["name"] == "KANARIA_MODEL_ADAPTER" for e in
                   deployment_manifest("chat", "ns", "u", plain, "r", 1)["spec"]["template"]["spec"]["containers"][0]["env"])
    assert revision_hash(plain) != revision_hash(with_adapter)
    assert "adapter" not in model_fingerprint(plain)
    # The hash of a spec without an adapter is what it was before adapters existed.
    assert revision_hash(plain) == revision_hash(spec())


@pytest.mark.parametrize("bad", ["", "-lora", "lora-", "a b", "x" * 129, "lora\n", "a;rm"])
def test_hostile_adapter_and_model_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Model.model_validate({"name": "chat", "version": "v1", "uri": "x", "adapter": bad})
    with pytest.raises(ValidationError):
        GatewayAPITraffic.model_validate({"inferencePool": {"endpointPicker": {"name": "e"}, "modelRewrite": {"modelName": bad}}})


def test_picker_names_are_bounded() -> None:
    for bad in ["", "Epp", "e" * 64, "e.p"]:
        with pytest.raises(ValidationError):
            InferencePoolBackend.model_validate({"endpointPicker": {"name": bad}})


def test_the_sandbox_proxy_weights_pool_backend_refs() -> None:
    route = {"spec": {"rules": [{"backendRefs": [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat-r1", "weight": 80},
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat-r2", "weight": 20},
        {"group": "other.io", "kind": "InferencePool", "name": "elsewhere", "weight": 5},
    ]}]}}
    assert weights_from_httproute(route) == {"chat-r1": 80, "chat-r2": 20}
    assert pools_of_httproute(route) == {"chat-r1", "chat-r2"}


def test_the_sandbox_gateway_reads_the_matching_rule_and_draws_by_weight() -> None:
    rw = rewrite_manifest("chat", "ns", "uid", "chat", {"a1": 70, "a2": 30})
    assert rewrite_targets([rw], "chat", "chat") == [("a1", 70), ("a2", 30)]
    assert rewrite_targets([rw], "chat", "other-model") is None
    assert rewrite_targets([rw], "another-pool", "chat") is None
    rng = random.Random(1)
    drawn = Counter(draw([("a1", 70), ("a2", 30)], rng) for _ in range(4000))
    assert abs(drawn["a1"] / 4000 - 0.7) < 0.03
    assert draw([("a1", 0)], rng) is None
