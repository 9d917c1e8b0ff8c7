"""Sharding: two operator processes, KANARIA_SHARD=0/2 and 1/2, each with its own Lease. Every
ModelDeployment is rolled out by exactly one of them — the one its hash names — and the other
never touches it (its /metrics has no series of the object, its cycle counter does not move for
it)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from kubernetes import client
from tests.e2e._chaos import lease_holder
from tests.e2e.conftest import apply_md, md_manifest, md_status, rev
from tests.helpers import wait_for

from kanaria.controller.state import Shard
from kanaria.sandbox._proc import http_get
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.operator import OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

OBJECTS = 8
SPEC = {
    "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    "rollback": {"postPromotionWindow": "0s", "scaleDownDelay": "0s"},
}
PHASE = re.compile(r"^kanaria_rollout_phase\{([^}]*)\}", re.M)
LABEL = re.compile(r'(\w+)="([^"]*)"')


def _objects_seen(op: OperatorProcess, namespace: str) -> set[str]:
    status, body = http_get(f"http://127.0.0.1:{op.metrics_port}/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = [dict(LABEL.findall(labels)) for labels in PHASE.findall(text)]
    return {f["name"] for f in found if f.get("namespace") == namespace}


def test_two_shards_split_the_objects_and_never_both_act_on_one(
    cluster: LocalCluster,
    k8s: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    tag = uuid.uuid4().hex[:6]
    shards = [start_operator(name=f"shard-{i}", POD_NAME=f"shard-{i}-{tag}", KANARIA_SHARD=f"{i}/2")
              for i in range(2)]
    for i in range(2):
        wait_for(lambda i=i: lease_holder(k8s, "kanaria-system", f"kanaria-operator-shard-{i}-of-2")
                 == f"shard-{i}-{tag}", 30, message=f"shard {i} holds its own lease")
    names = [f"model-{i}" for i in range(OBJECTS)]
    owner = {n: next(i for i in range(2) if Shard(i, 2).owns(namespace, n)) for n in names}
    assert set(owner.values()) == {0, 1}, "the names must land on both shards for the test to mean anything"

    for n in names:
        apply_md(cluster, md_manifest(n, namespace, "v1", **SPEC))
    for n in names:
        wait_for(lambda n=n: md_status(k8s, namespace, n).get("phase") == "Stable", 90, message=f"{n} Stable")
    second = {n: md_manifest(n, namespace, "v2", **SPEC) for n in names}
    for body in second.values():
        apply_md(cluster, body)
    for n, body in second.items():
        r = rev(body)
        wait_for(lambda n=n, r=r: md_status(k8s, namespace, n).get("stableRevision") == r
                 and md_status(k8s, namespace, n).get("phase") == "Stable", 120, message=f"{n} promoted")

    seen = [_objects_seen(op, namespace) for op in shards]
    assert seen[0].isdisjoint(seen[1]), f"both shards acted on {sorted(seen[0] & seen[1])}"
    for i in range(2):
        assert seen[i] == {n for n in names if owner[n] == i}
    for op in shards:
        assert op.alive()
