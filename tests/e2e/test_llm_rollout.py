"""An LLM rollout on the real stack, judged on vLLM's own metric names with no PromQL written.

The reference LLM server (streaming tokens from an n-gram model it builds itself, exporting
vLLM's metrics) runs every revision; a streaming chat load generator goes through HAProxy. A
healthy revision is promoted; a revision whose time to first token is 30% longer is rolled
back on ``timeToFirstToken``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import full_stack_marks

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.llmload import LLMLoadGenerator
from kanaria.sandbox.scenario import manifest, revision_of, wait_status
from kanaria.sandbox.stack import LocalStack

pytestmark = full_stack_marks("llm")

NAME = "chat"
METRICS = [
    {"name": "ttft", "kind": "timeToFirstToken", "minSamples": 150, "critical": True},
    {"name": "tpot", "kind": "timePerOutputToken", "minSamples": 150},
    {"name": "aborts", "kind": "abortRate", "minSamples": 150},
]


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("llm")
    with LocalStack(work / "stack", namespace="llm", cluster=cluster, operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s


def body(s: LocalStack, version: str, **env: str) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, f"builtin://ngram/{version}", s.prometheus_url,
                 steps=[{"setWeight": 30}, {"analysis": {}}], metrics=METRICS, interval="1s", window="0s")
    b["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in {"KANARIA_LLM_FIRST_TOKEN_MS": "60", "KANARIA_LLM_MAX_RUNNING": "32", **env}.items()],
    }]}}
    b["spec"]["monitoring"] = {"enabled": False}
    return b


def test_a_healthy_llm_revision_is_promoted_and_a_slower_first_token_is_rolled_back(stack: LocalStack) -> None:
    s = stack
    s.apply(body(s, "v1"))
    wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    # Well below capacity (32 at once per server): time to first token measures the revision,
    # not a queue that the busier stable revision would build.
    load = LLMLoadGenerator(s.proxy_url, rate=12, duration=900, max_tokens=24, seed=3, concurrency=24)
    load.start()
    try:
        good = body(s, "v2")
        r2 = revision_of(good)
        s.apply(good)
        promoted = wait_status(lambda: s.get(NAME), lambda st: st.get("stableRevision") == r2 or st.get("phase") == "RolledBack",
                               timeout=300, what="v2 decided")
        assert promoted.get("stableRevision") == r2, promoted.get("message")
        ttft = next(a for a in promoted["history"] if a["revision"] == r2)
        assert ttft["outcome"] == "promoted"

        slow = body(s, "v3", KANARIA_FAULT_FIRST_TOKEN_MS="18")  # 60 ms + 18 ms: 30% longer
        r3 = revision_of(slow)
        s.apply(slow)
        final = wait_status(lambda: s.get(NAME), lambda st: st.get("rejectedRevision") == r3 or st.get("stableRevision") == r3,
                            timeout=300, what="v3 decided")
        assert final.get("rejectedRevision") == r3 and final["stableRevision"] == r2, final.get("message")
        reason = final["history"][-1]["reason"]
        assert "ttft" in reason and "timeToFirstToken" in reason, reason
    finally:
        load.stop()
        load.join(30)
    truth = load.stats()
    assert truth.by_revision.get(r2, 0) > 0 and truth.by_revision.get(r3, 0) > 0
