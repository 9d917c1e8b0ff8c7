"""Depth-safe decoding of API responses: no object can stop the operator's watch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kanaria.controller import safejson


def nested(depth: int) -> dict[str, Any]:
    """A ModelDeployment whose pod template carries an annotation-free field ``depth`` deep."""
    inner: Any = "bottom"
    for _ in range(depth):
        inner = {"x": inner}
    return {"apiVersion": "kanaria.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "deep", "namespace": "ns"}, "spec": {"template": inner}}


def depth_of(doc: Any) -> int:
    best, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack += [(c, d + 1) for c in children if isinstance(c, (dict, list))]
    return best


def test_plain_json_fails_on_a_template_two_thousand_levels_deep() -> None:
    with pytest.raises(RecursionError):
        json.loads(json.dumps(nested(500)).replace('"bottom"', "[" * 1500 + "]" * 1500))


@pytest.mark.parametrize("depth", [70, 2_000, 9_999])
def test_a_deep_object_is_decoded_cut_to_the_bound_and_marked(depth: int) -> None:
    text = json.dumps({"type": "MODIFIED", "object": nested(1)}).replace('"bottom"', "[" * depth + "]" * depth)
    before = safejson.poisoned()["truncated"]
    event = safejson.loads(text)
    obj = event["object"]
    assert event["type"] == "MODIFIED" and obj["metadata"]["name"] == "deep"
    assert depth_of(event) <= safejson.MAX_DEPTH
    assert "nested deeper than" in obj[safejson.TOO_DEEP_KEY]
    assert safejson.TOO_DEEP in json.dumps(obj)
    assert safejson.poisoned()["truncated"] == before + 1


def test_each_deep_object_of_a_list_is_marked_and_the_others_are_untouched() -> None:
    shallow = nested(3) | {"metadata": {"name": "fine", "namespace": "ns"}}
    deep = json.dumps(nested(1)).replace('"bottom"', "[" * 3000 + "]" * 3000)
    text = '{"kind": "ModelDeploymentList", "items": [' + json.dumps(shallow) + "," + deep + "]}"
    listed = safejson.loads(text)
    fine, cut = listed["items"]
    assert fine == shallow and safejson.TOO_DEEP_KEY not in fine
    assert safejson.TOO_DEEP_KEY in cut


def test_ordinary_documents_decode_exactly_as_json_does() -> None:
    doc = {"a": [1, 2.5, None, True, {"b": "c" * 100}], "d": {"e": {"f": []}}}
    text = json.dumps(doc)
    assert safejson.loads(text) == json.loads(text)
    assert safejson.loads(text.encode()) == doc


def test_bound_depth_is_iterative_and_counts_what_it_cuts() -> None:
    doc: Any = []
    node = doc
    for _ in range(100_000):  # far deeper than any recursion limit
        node.append([])
        node = node[0]
    assert safejson.bound_depth(doc, 10) == 1
    assert depth_of(doc) == 10


def test_installed_into_kopf_the_kubernetes_client_and_aiohttp() -> None:
    import aiohttp
    import kopf._cogs.clients.api as kopf_api
    import kubernetes.client.api_client as kube_api

    patched = safejson.install()
    assert len(patched) == 3
    deep = json.dumps(nested(1)).replace('"bottom"', "[" * 2500 + "]" * 2500)
    assert safejson.TOO_DEEP_KEY in kopf_api.json.loads(deep)
    assert kopf_api.json.dumps({"a": 1}) == '{"a": 1}'  # the rest of the json module is unchanged
    assert safejson.TOO_DEEP_KEY in kube_api.json.loads(deep)
    assert aiohttp.ClientResponse.json.__kwdefaults__["loads"] is safejson.loads
    assert safejson.install() == patched  # idempotent
