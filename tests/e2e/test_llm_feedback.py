"""User feedback as delayed labels, on the real stack: the reference LLM server records each
thumbs up or down with the monitor library against the request that produced the answer; the
operator judges the share of thumbs up per revision on matured cohorts (``kind: feedback``).

Numbers: 24 streamed chat requests per second through HAProxy, 50% on the new revision, every
answer rated 0.5 s after it ends; users give thumbs down to 2% of good answers. A healthy
revision (2% thumbs down) is promoted; one whose thumbs-down rate is 3 points higher (5%:
``KANARIA_FAULT_BAD_RATE=0.03``, which the load generator turns into exactly 3 more points) is
rolled back on the feedback metric. Margin 2.5 points, maturity 5 s, minSamples 200: about
12 rated answers per revision per second, so a decision needs about a minute (simulated with
the judge itself: median 75 s to promote the healthy revision, 55 s to roll back the worse
one).
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

NAME = "assist"
METRICS = [{"name": "thumbs", "kind": "feedback", "margin": 0.025, "maturity": "5s", "minSamples": 200}]


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("llmfeedback")
    with LocalStack(work / "stack", namespace="llmfeedback", cluster=cluster, operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s


def body(s: LocalStack, version: str, **env: str) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, f"builtin://ngram/{version}", s.prometheus_url,
                 steps=[{"setWeight": 50}, {"analysis": {}}], metrics=METRICS, interval="1s", window="0s")
    b["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in {"KANARIA_LLM_MAX_RUNNING": "32", **env}.items()],
    }]}}
    b["spec"]["monitoring"] = {"enabled": False}
    return b


def test_more_thumbs_down_is_rolled_back_and_a_healthy_revision_is_promoted(stack: LocalStack) -> None:
    s = stack
    s.apply(body(s, "v1"))
    wait_status(lambda: s.get(NAME), lambda st: st.get("phase") == "Stable", timeout=120, what="v1 stable")
    load = LLMLoadGenerator(s.proxy_url, rate=24, duration=900, max_tokens=6, base_down_rate=0.02,
                            feedback_delay_s=0.5, seed=11, concurrency=24)
    load.start()
    try:
        good = body(s, "v2")
        r2 = revision_of(good)
        s.apply(good)
        promoted = wait_status(lambda: s.get(NAME), lambda st: st.get("stableRevision") == r2 or st.get("phase") == "RolledBack",
                               timeout=240, what="v2 decided")
        assert promoted.get("stableRevision") == r2, promoted.get("message")
        assert next(h for h in promoted["history"] if h["revision"] == r2)["outcome"] == "promoted"

        seen: dict[str, dict[str, Any]] = {}

        def remember(st: dict[str, Any]) -> None:
            for result in st.get("analysis") or []:
                if result.get("metric") == "thumbs":
                    seen["thumbs"] = result

        worse = body(s, "v3", KANARIA_FAULT_BAD_RATE="0.03")  # thumbs down 2% -> 5%
        r3 = revision_of(worse)
        s.apply(worse)
        final = wait_status(lambda: s.get(NAME), lambda st: st.get("rejectedRevision") == r3 or st.get("stableRevision") == r3,
                            timeout=240, what="v3 decided", on_tick=remember)
        assert final.get("rejectedRevision") == r3 and final["stableRevision"] == r2, final.get("message")
        reason = final["history"][-1]["reason"]
        assert "thumbs" in reason and "positive feedback" in reason, reason
        verdict = seen["thumbs"]
        assert verdict["verdict"] == "fail" and verdict["kind"] == "feedback"
        assert verdict["value"] < verdict["baseline"] and verdict["samples"] >= 200
    finally:
        load.stop()
        load.join(30)
    truth = load.stats()
    # The ratings reached the servers that gave the answers (but for the few in flight while a
    # revision was scaled down).
    assert truth.feedback_accepted >= 0.99 * truth.feedback_sent > 0
    assert truth.thumbs_down_by_revision.get(r3, 0) > 0 and truth.bad_by_revision.get(r2, 0) == 0
