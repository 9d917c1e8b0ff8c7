"""Slower decoding is rolled back on the time per output token, on the real stack.

The reference LLM server runs every revision and exports vLLM's metric names; the new revision
takes 10 ms more per generated token (KANARIA_FAULT_TOKEN_MS) with the same time to first
token. ``timePerOutputToken`` (vLLM's per-request histogram, no PromQL written) rolls it back,
and the stable revision keeps serving; judged per output token instead (``evidenceUnit:
token``: vLLM's inter-token latencies), the next such revision is rolled back too.
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

pytestmark = full_stack_marks("llm-decoding")

NAME = "decode"
METRICS = [
    {"name": "tpot", "kind": "timePerOutputToken", "minSamples": 150, "critical": True},
    {"name": "ttft", "kind": "timeToFirstToken", "minSamples": 150},
]


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("llm-decoding")
    with LocalStack(work / "stack", namespace="llm-decoding", cluster=cluster, operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s


def body(s: LocalStack, version: str, metrics: list[dict[str, Any]] = METRICS, **env: str) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, f"builtin://ngram/{version}", s.prometheus_url,
                 steps=[{"setWeight": 30}, {"analysis": {}}], metrics=metrics, interval="1s", window="0s")
    # 20 ms per token: every stable gap lies within vLLM's (0.01, 0.025] bucket, 30 ms beyond it.
    settings = {"KANARIA_LLM_FIRST_TOKEN_MS": "40", "KANARIA_LLM_TOKEN_MS": "20", "KANARIA_LLM_MAX_RUNNING": "32", **env}
    b["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in settings.items()],
    }]}}
    b["spec"]["monitoring"] = {"enabled": False}
    return b


def test_a_revision_that_decodes_slower_is_rolled_back_on_time_per_output_token(stack: LocalStack) -> None:
    s = stack
    first = body(s, "v1")
    r1 = revision_of(first)
    s.apply(first)
    wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    load = LLMLoadGenerator(s.proxy_url, rate=12, duration=600, max_tokens=16, seed=5, concurrency=24)
    load.start()
    try:
        slow = body(s, "v2", KANARIA_FAULT_TOKEN_MS="10")  # 20 ms + 10 ms per token: 50% slower decoding
        r2 = revision_of(slow)
        s.apply(slow)
        final = wait_status(lambda: s.get(NAME), lambda st: st.get("rejectedRevision") == r2 or st.get("stableRevision") == r2,
                            timeout=240, what="v2 decided")
        assert final.get("rejectedRevision") == r2 and final["stableRevision"] == r1, final.get("message")
        entry = next(h for h in final["history"] if h["revision"] == r2)
        assert entry["outcome"] == "rolledBack"
        assert "tpot" in entry["reason"] and "timePerOutputToken" in entry["reason"], entry["reason"]
        assert "vllm:request_time_per_output_token_seconds, per request" in entry["reason"], entry["reason"]

        per_token = [{"name": "itl", "kind": "timePerOutputToken", "evidenceUnit": "token", "minSamples": 600,
                      "critical": True}]
        slow_again = body(s, "v3", per_token, KANARIA_FAULT_TOKEN_MS="10")
        r3 = revision_of(slow_again)
        s.apply(slow_again)
        again = wait_status(lambda: s.get(NAME), lambda st: st.get("rejectedRevision") == r3 or st.get("stableRevision") == r3,
                            timeout=240, what="v3 decided")
        assert again.get("rejectedRevision") == r3 and again["stableRevision"] == r1, again.get("message")
        reason = next(h for h in again["history"] if h["revision"] == r3)["reason"]
        assert "itl" in reason and "timePerOutputToken" in reason, reason
        assert "vllm:inter_token_latency_seconds, per token" in reason, reason
    finally:
        load.stop()
        load.join(30)
    truth = load.stats()
    assert truth.by_revision.get(r2, 0) > 0 and truth.by_revision.get(r3, 0) > 0
