"""A/B and shadow strategies on the real stack: real models, real traffic through nginx
(mirroring) and HAProxy (weights), real Prometheus, the operator deciding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import full_stack_marks, wait_for

from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder

pytestmark = full_stack_marks("strategies")

NAME = "tumour"
GUARDS = [
    {"name": "latency", "kind": "latency", "minSamples": 300},
    {"name": "errors", "kind": "errorRate", "minSamples": 300, "maxErrorRate": 0.05},
]


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    work = tmp_path_factory.mktemp("strategies")
    uris = train_models(work / "models", {
        "clean": {"seed": 1},
        "noisy": {"seed": 2, "label_noise": 0.1},   # about 8 points less accurate
        "broken": {"seed": 3, "label_noise": 0.3},  # disagrees with the clean model often
    })
    with LocalStack(work / "stack", namespace="strategies", cluster=cluster,
                    operator_kubeconfig=operator_kubeconfig) as s:
        s.follow_route(NAME)
        yield s, uris


def body(s: LocalStack, uris: dict[str, str], version: str, model: str, strategy: dict[str, Any],
         metrics: list[dict[str, Any]]) -> dict[str, Any]:
    b = manifest(NAME, s.namespace, version, uris[model], s.prometheus_url, metrics=metrics,
                 interval="1s", window="0s")
    b["spec"]["strategy"] = strategy
    return b


def serve_incumbent(s: LocalStack, uris: dict[str, str], version: str, model: str, metrics: list[dict[str, Any]],
                    seed: int, **load_options: Any) -> tuple[dict[str, Any], LoadGenerator]:
    """Roll `model` out at once as the incumbent, wait until it is the stable revision and
    HAProxy balances to it, then start the load (stopped by the caller)."""
    incumbent = body(s, uris, version, model, {"canary": {"steps": [{"setWeight": 100}]}}, metrics)
    s.apply(incumbent)
    wait_status(lambda: s.get(NAME),
                lambda st: st.get("phase") == "Stable" and st.get("stableRevision") == revision_of(incumbent),
                timeout=180, what=f"the {model} incumbent serving")
    assert s.proxy is not None
    proxy = s.proxy
    wait_for(lambda: proxy.weights().get(f"{NAME}-{revision_of(incumbent)}", 0) > 0, 30,
             message="HAProxy following the incumbent")
    load = LoadGenerator(s.proxy_url, rate=60, duration=900, feedback_delay_s=1.0, seed=seed, **load_options)
    return incumbent, load.start()


def wait_promoted(s: LocalStack, timeline: TimelineRecorder, rev: str, timeout: float, what: str) -> dict[str, Any]:
    """Wait until `rev` is the stable revision and the recorder has seen the route give it all
    the traffic (the route changes a moment after the status); return the status."""
    final = wait_status(lambda: s.get(NAME),
                        lambda st: st.get("phase") == "Stable" and st.get("stableRevision") == rev,
                        timeout=timeout, what=what)
    wait_for(lambda: (timeline.snapshot()[-1].route or {}).get(rev, 0) == 100, 20, message="route 100% recorded")
    return final


def test_ab_test_picks_the_better_revision(stack: tuple[LocalStack, dict[str, str]], artifacts: Path) -> None:
    s, uris = stack
    metrics = [{"name": "accuracy", "kind": "accuracy", "minSamples": 200, "maturity": "4s"}, *GUARDS]
    # The incumbent is the noisier model; the challenger is better.
    _, load = serve_incumbent(s, uris, "ab-incumbent", "noisy", metrics, seed=5)
    try:
        ab = {"abTest": {"weight": 50, "primaryMetric": "accuracy", "guardrails": ["latency", "errors"],
                         "maxDuration": "8m"}}
        challenger = body(s, uris, "ab-challenger", "clean", ab, metrics)
        rev = revision_of(challenger)
        assert s.api is not None
        with TimelineRecorder(s.api, s.namespace, NAME, interval=0.5) as timeline:
            s.apply(challenger)
            final = wait_promoted(s, timeline, rev, timeout=480, what="the challenger to win")
        timeline.dump(artifacts / "timeline.json")
    finally:
        load.stop()
    assert final["history"][-1]["outcome"] == "promoted"
    assert "A/B winner" in final["history"][-1]["reason"]
    assert 50 in timeline.route_weights_seen(rev)  # it ran at the fixed split first
    accuracy = next(a for a in final["analysis"] if a["metric"] == "accuracy")
    assert accuracy["value"] > accuracy["baseline"]


def test_disagreeing_shadow_never_gets_live_traffic(stack: tuple[LocalStack, dict[str, str]], artifacts: Path) -> None:
    s, uris = stack
    metrics = [{"name": "agreement", "kind": "agreement", "minSamples": 100, "minAgreement": 0.95, "critical": True},
               *GUARDS]
    _, load = serve_incumbent(s, uris, "shadow-base", "clean", metrics, seed=6)
    try:
        shadow = body(s, uris, "shadow-broken", "broken", {"shadow": {"percent": 100, "duration": "5m"}}, metrics)
        rev = revision_of(shadow)
        assert s.api is not None and s.proxy is not None and s.prometheus is not None
        with TimelineRecorder(s.api, s.namespace, NAME, interval=0.5) as timeline:
            s.apply(shadow)
            final = wait_status(lambda: s.get(NAME),
                                lambda st: st.get("phase") == "RolledBack" and st.get("rejectedRevision") == rev,
                                timeout=300, what="the shadow to be rejected")
        timeline.dump(artifacts / "timeline.json")
        stats = load.stats()
    finally:
        load.stop()
    (artifacts / "load.json").write_text(stats.to_json())
    assert "agreement fail" in final["history"][-1]["reason"]
    # It never served a user: no answer came from it, HAProxy never balanced a request to it,
    # and the route never gave it weight — yet it did see the mirrored traffic.
    assert rev not in stats.by_revision
    assert s.proxy.loadbalanced_counts().get(f"{NAME}-{rev}", 0) == 0
    assert all((p.route or {}).get(rev, 0) == 0 for p in timeline.snapshot())
    seen = s.prometheus.scalar(f'sum(kanaria_model_requests_total{{revision="{rev}"}})')
    assert seen is not None and seen > 100
    agreement = next(a for a in final["analysis"] if a["metric"] == "agreement")
    assert agreement["verdict"] == "fail" and agreement["value"] < 0.95
    json.dumps(final)


def test_ab_test_by_cookie_sends_only_that_group_to_the_challenger(
    stack: tuple[LocalStack, dict[str, str]], artifacts: Path
) -> None:
    s, uris = stack
    metrics = [{"name": "accuracy", "kind": "accuracy", "minSamples": 200, "maturity": "4s"}, *GUARDS]
    # A third of the users carry the group cookie; only they may reach the challenger.
    incumbent, load = serve_incumbent(s, uris, "cookie-incumbent", "noisy", metrics, seed=7,
                                      cookie=("kanaria-group", "b", 0.35))
    assert s.proxy is not None and s.mirror is not None
    try:
        ab = {"abTest": {"match": {"cookie": {"name": "kanaria-group", "value": "b"}}, "primaryMetric": "accuracy",
                         "guardrails": ["latency", "errors"], "maxDuration": "8m"}}
        challenger = body(s, uris, "cookie-challenger", "clean", ab, metrics)
        rev = revision_of(challenger)
        assert s.api is not None
        with TimelineRecorder(s.api, s.namespace, NAME, interval=0.5) as timeline:
            timeline.probes = {
                "errors": lambda: load.stats().errors,
                "cookie_to_incumbent": lambda: load.stats().by_revision_with_cookie.get(revision_of(incumbent), 0),
                "cookie_to_challenger": lambda: load.stats().by_revision_with_cookie.get(rev, 0),
                "pinned": lambda: float(s.mirror is not None and s.mirror.pin is not None),
                "haproxy_challenger": lambda: float(f"{NAME}-{rev}" in (s.proxy.servers() if s.proxy else {})),
            }
            s.apply(challenger)
            judging = wait_status(lambda: s.get(NAME), lambda st: st.get("currentStep") == 1 and st.get("canaryRevision") == rev,
                                  timeout=120, what="the match to be in force")
            # The operator confirmed the route; the sandbox's proxies follow it a moment later
            # (nginx pins the group, HAProxy adds the challenger once its process is up).
            wait_for(lambda: s.mirror.pin is not None and f"{NAME}-{rev}" in s.proxy.servers(), 30,
                     message="nginx pinning the cookie group to a server HAProxy has")
            before = load.stats()
            # The status says "promoting" before the route moves everyone (status is written
            # first): count up to that moment, polled closely.
            wait_status(lambda: s.get(NAME),
                        lambda st: st.get("canaryWeight") == 100 or st.get("stableRevision") == rev,
                        timeout=480, what="the challenger to win", interval=0.05)
            during = load.stats()
            final = wait_promoted(s, timeline, rev, timeout=60, what="the promotion to complete")
        timeline.dump(artifacts / "timeline.json")
    finally:
        load.stop()
    (artifacts / "load.json").write_text(during.to_json())
    assert "cookie kanaria-group=b" in judging["message"]
    assert final["history"][-1]["outcome"] == "promoted" and "A/B winner" in final["history"][-1]["reason"]
    # The route never gave the challenger a weighted share before it won...
    weights = timeline.route_weights_seen(rev)
    assert weights and set(weights[:-1]) <= {0} and weights[-1] == 100, weights
    # ...yet, from the moment the proxy followed the match until the promotion, it served the
    # cookie group and only it: no request without the cookie reached it and no request with
    # it reached the incumbent (but for the few in flight at either end).
    def delta(field: str, revision: str) -> int:
        return int(getattr(during, field).get(revision, 0) - getattr(before, field).get(revision, 0))

    # "In flight": at most the load generator's concurrent requests at each end of the window.
    in_flight = 8
    served, cookied = delta("by_revision", rev), delta("by_revision_with_cookie", rev)
    assert served > 100 and served - cookied <= in_flight, (before, during)
    incumbent_rev = revision_of(incumbent)
    assert delta("by_revision_with_cookie", incumbent_rev) <= in_flight, (before, during)
    assert delta("by_revision", incumbent_rev) > served  # the other two thirds
    assert during.errors == before.errors, (before, during)


def test_ab_test_with_several_challengers_retires_losers_and_promotes_the_best(
    stack: tuple[LocalStack, dict[str, str]], artifacts: Path
) -> None:
    s, uris = stack
    metrics = [{"name": "accuracy", "kind": "accuracy", "minSamples": 150, "maturity": "4s"}, *GUARDS]
    _, load = serve_incumbent(s, uris, "multi-incumbent", "noisy", metrics, seed=8)
    try:
        # spec.model is the broken model (much worse); the extra challenger is the clean one.
        ab = {"abTest": {"weight": 30, "primaryMetric": "accuracy", "guardrails": ["latency", "errors"],
                         "maxDuration": "8m",
                         "challengers": [{"version": "multi-clean", "uri": uris["clean"], "weight": 30}]}}
        challenger = body(s, uris, "multi-broken", "broken", ab, metrics)
        broken = revision_of(challenger)
        assert s.api is not None
        with TimelineRecorder(s.api, s.namespace, NAME, interval=0.5) as timeline:
            s.apply(challenger)
            started = wait_status(lambda: s.get(NAME), lambda st: len(st.get("arms") or []) == 2,
                                  timeout=60, what="two challengers")
            clean = started["arms"][1]["revision"]
            final = wait_promoted(s, timeline, clean, timeout=480, what="the clean challenger to win")
        timeline.dump(artifacts / "timeline.json")
        stats = load.stats()
    finally:
        load.stop()
    (artifacts / "load.json").write_text(stats.to_json())
    (artifacts / "status.json").write_text(json.dumps(final, indent=1))
    outcomes = {h["revision"]: h["outcome"] for h in final["history"][-2:]}
    assert outcomes == {broken: "lost", clean: "promoted"}, final["history"][-3:]
    assert final["stableVersion"] == "multi-clean" and final["rejectedRevision"] == broken
    assert "A/B winner among 2" in final["history"][-1]["reason"]
    # All three served at the split first; both challengers really got traffic.
    splits = [p.route for p in timeline.snapshot() if p.route and len(p.route) == 3]
    assert any(r.get(broken) == 30 and r.get(clean) == 30 for r in splits), splits[:3]
    assert stats.by_revision.get(broken, 0) > 50 and stats.by_revision.get(clean, 0) > 50
    # The spec still names the broken model, which is not restarted.
    again = s.get(NAME)["status"]
    assert again["stableRevision"] == clean and again.get("canaryRevision") is None
