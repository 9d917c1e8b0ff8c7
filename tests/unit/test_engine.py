"""decide(): every transition of the rollout state machine, table by table, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.api.observed import WorkloadState
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout import Observations, UserAction, analysis_plan, decide
from kanaria.rollout.clock import iso

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PASS = Verdict(Outcome.PASS, "fine", value=0.95, baseline=0.95, samples=900)
FAIL = Verdict(Outcome.FAIL, "worse", value=0.80, baseline=0.95, samples=900)
INC = Verdict(Outcome.INCONCLUSIVE, "too few labels", samples=10)


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "iris", "version": "v1", "uri": "file:///models/v1"},
        "replicas": 2,
        "traffic": {"gatewayAPI": {}},
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 10},
                    {"analysis": {}},
                    {"setWeight": 50},
                    {"pause": {"duration": "30s"}},
                ]
            }
        },
        "analysis": {
            "prometheus": {"address": "http://prom:9090"},
            "interval": "10s",
            "metrics": [
                {"name": "accuracy", "kind": "accuracy"},
                {"name": "latency", "kind": "latency"},
            ],
        },
        "rollback": {"postPromotionWindow": "60s", "scaleDownDelay": "30s"},
    }
    raw.update(overrides)
    return ModelDeploymentSpec.model_validate(raw)


def ready(*revs: str, n: int = 2) -> dict[str, WorkloadState]:
    return {r: WorkloadState(replicas=n, ready=n) for r in revs}


def obs(rev: str = "r2", version: str = "v2", **kw: Any) -> Observations:
    return Observations(revision=rev, version=version, generation=3, **kw)


def canary_status(step: int = 0, weight: int = 0, **kw: Any) -> ModelDeploymentStatus:
    base: dict[str, Any] = {
        "phase": "Progressing",
        "stable_revision": "r1",
        "stable_version": "v1",
        "canary_revision": "r2",
        "canary_version": "v2",
        "canary_weight": weight,
        "current_step": step,
        "step_started_at": iso(T0),
        "rollout_started_at": iso(T0),
    }
    base.update(kw)
    return ModelDeploymentStatus(**base)


# --------------------------------------------------------------------------- steady state


def test_first_deploy_goes_straight_to_stable_once_ready() -> None:
    spec = make_spec()
    d = decide(spec, ModelDeploymentStatus(), obs("r1", "v1"), T0)
    assert d.status.stable_revision == "r1" and d.status.canary_revision is None
    assert d.weights == {"r1": 100} and d.replicas == {"r1": 2}
    assert d.status.phase == "Progressing"  # not ready yet
    assert [h.outcome for h in d.status.history] == ["deployed"]
    d2 = decide(spec, d.status, obs("r1", "v1", workloads=ready("r1")), T0)
    assert d2.status.phase == "Stable"
    assert len(d2.status.history) == 1


def test_same_revision_as_stable_does_nothing() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1")), T0)
    assert d.status.phase == "Stable" and d.status.canary_revision is None
    assert d.weights == {"r1": 100} and not d.events


def test_new_revision_starts_canary_at_step_zero() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d = decide(make_spec(), st, obs(workloads=ready("r1")), T0)
    s = d.status
    assert (s.phase, s.canary_revision, s.current_step, s.canary_weight) == ("Progressing", "r2", 0, 0)
    assert d.weights == {"r1": 100, "r2": 0}
    assert d.replicas == {"r1": 2, "r2": 2}
    assert d.events[0].reason == "RolloutStarted"


# --------------------------------------------------------------------------- steps


def test_canary_waits_for_ready_then_rolls_back_after_deadline() -> None:
    spec = make_spec()
    d = decide(spec, canary_status(), obs(workloads=ready("r1")), T0 + timedelta(seconds=5))
    assert d.status.phase == "Progressing" and "waiting for canary" in d.status.message
    late = T0 + timedelta(minutes=16)
    d = decide(spec, canary_status(), obs(workloads=ready("r1")), late)
    assert d.status.phase == "RolledBack"
    assert "did not become ready" in d.status.history[-1].reason
    assert any(e.reason == "RolledBack" and e.type == "Warning" for e in d.events)


@pytest.mark.parametrize(
    ("seen", "advanced"),
    [
        ({"r1": 90, "r2": 10}, True),
        ({"r1": 100, "r2": 0}, False),  # router has not applied it yet
        (None, False),  # weights could not be read back
    ],
)
def test_set_weight_advances_only_when_router_confirms(
    seen: dict[str, int] | None, advanced: bool
) -> None:
    d = decide(make_spec(), canary_status(), obs(workloads=ready("r1", "r2"), weights=seen), T0)
    assert d.weights == {"r1": 90, "r2": 10}
    assert d.status.canary_weight == 10
    assert d.status.current_step == (1 if advanced else 0)


@pytest.mark.parametrize(
    ("verdicts", "step", "phase"),
    [
        ({"accuracy": PASS, "latency": PASS}, 2, "Progressing"),
        ({"accuracy": PASS, "latency": INC}, 1, "Progressing"),
        ({"accuracy": PASS}, 1, "Progressing"),  # latency not measured: hold
        ({"accuracy": FAIL, "latency": PASS}, 0, "RolledBack"),
        (None, 1, "Progressing"),
    ],
)
def test_analysis_step(verdicts: dict[str, Verdict] | None, step: int, phase: str) -> None:
    st = canary_status(step=1, weight=10)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), verdicts=verdicts), T0)
    assert d.status.phase == phase
    assert d.status.current_step == step
    if phase == "RolledBack":
        assert d.weights == {"r1": 100, "r2": 0}
        assert d.status.rejected_revision == "r2"
        assert "accuracy fail" in d.status.history[-1].reason
        assert d.status.analysis[0].value == 0.80  # the numbers are in status


def test_a_sample_ratio_mismatch_is_shown_and_never_acts() -> None:
    st = canary_status(step=1, weight=10)
    off = Verdict(Outcome.FAIL, "sample ratio: canary 30% of requests, expected 10%", samples=1000)
    seen = obs(workloads=ready("r1", "r2"), verdicts={"accuracy": INC, "latency": PASS, "sample-ratio": off})
    d = decide(make_spec(), st, seen, T0)
    assert d.status.phase == "Progressing" and d.status.failures == 0  # not a failed measurement
    assert "observed split differs from the weights" in d.status.message
    assert any(r.metric == "sample-ratio" and r.verdict == "fail" for r in d.status.analysis)  # shown
    passed = obs(workloads=ready("r1", "r2"), verdicts={"accuracy": PASS, "latency": PASS, "sample-ratio": off})
    assert decide(make_spec(), st, passed, T0).status.current_step == 2  # the judges decide
    plan = analysis_plan(make_spec(), st, T0 + timedelta(minutes=1))
    assert plan is not None and plan.expected_split == (10, 90)


def test_the_split_is_checked_once_the_weights_have_been_in_force_for_a_while() -> None:
    """Counts over a window of a few scrapes mix in the previous weights: the split is checked
    from max(30 s, 5 intervals) after the step began (interval 10 s: 50 s)."""
    st = canary_status(step=1, weight=10)
    early = analysis_plan(make_spec(), st, T0 + timedelta(seconds=49))
    assert early is not None and early.expected_split is None and early.metrics  # the judges still measure
    late = analysis_plan(make_spec(), st, T0 + timedelta(seconds=50))
    assert late is not None and late.expected_split == (10, 90)
    quick = make_spec(analysis={"prometheus": {"address": "http://prom:9090"}, "interval": "2s",
                                "metrics": [{"name": "accuracy", "kind": "accuracy"}]})
    assert analysis_plan(quick, st, T0 + timedelta(seconds=29)).expected_split is None  # type: ignore[union-attr]
    assert analysis_plan(quick, st, T0 + timedelta(seconds=30)).expected_split == (10, 90)  # type: ignore[union-attr]


def test_analysis_step_with_named_metrics_ignores_others() -> None:
    spec = make_spec(
        strategy={"canary": {"steps": [{"setWeight": 10}, {"analysis": {"metrics": ["accuracy"]}}]}}
    )
    st = canary_status(step=1, weight=10)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": PASS, "latency": INC}), T0)
    assert d.status.current_step == 2


def test_timed_pause_holds_then_advances() -> None:
    st = canary_status(step=3, weight=50)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2")), T0 + timedelta(seconds=10))
    assert d.status.current_step == 3 and "holding 50%" in d.status.message
    assert d.requeue_after <= 20.0
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2")), T0 + timedelta(seconds=31))
    assert d.status.current_step == 4


def test_indefinite_pause_waits_for_promote() -> None:
    spec = make_spec(strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})
    st = canary_status(step=1, weight=20)
    d = decide(spec, st, obs(workloads=ready("r1", "r2")), T0 + timedelta(hours=5))
    assert d.status.phase == "Paused" and d.status.current_step == 1
    # Paused with a canary is not at rest: it is measured every interval (10 s), not hourly.
    assert d.requeue_after <= 10.0
    act = UserAction.parse("promote@1")
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), action=act), T0 + timedelta(hours=5))
    assert d.status.current_step == 2 and d.status.last_action == "promote@1"
    # The same annotation seen again (for example after a restart) does nothing more.
    d2 = decide(spec, d.status, obs(workloads=ready("r1", "r2"), action=act), T0 + timedelta(hours=5))
    assert d2.status.current_step == 2


def test_after_last_step_promotes_when_router_confirms_full_weight() -> None:
    st = canary_status(step=4, weight=50)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), weights={"r1": 50, "r2": 50}), T0)
    assert d.weights == {"r1": 0, "r2": 100} and d.status.canary_revision == "r2"
    d = decide(make_spec(), d.status, obs(workloads=ready("r1", "r2"), weights={"r1": 0, "r2": 100}), T0)
    s = d.status
    assert (s.phase, s.stable_revision, s.prior_revision, s.canary_revision) == (
        "Watching",
        "r2",
        "r1",
        None,
    )
    assert d.replicas == {"r2": 2, "r1": 2}  # prior kept warm
    assert s.history[-1].outcome == "promoted"
    assert s.watch_until == iso(T0 + timedelta(seconds=60))


def test_promote_without_watch_window_retires_prior() -> None:
    spec = make_spec(rollback={"postPromotionWindow": "0s"})
    st = canary_status(step=4, weight=100)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), weights={"r2": 100}), T0)
    assert d.status.phase == "Stable" and d.status.prior_revision is None
    assert "r1" in d.status.retired


# --------------------------------------------------------------------------- failures, limits


def test_failure_limit_tolerates_then_rolls_back() -> None:
    spec = make_spec(
        analysis={
            "prometheus": {"address": "http://p:9090"},
            "failureLimit": 1,
            "metrics": [{"name": "accuracy", "kind": "accuracy"}],
        }
    )
    st = canary_status(step=1, weight=10)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": FAIL}), T0)
    assert d.status.phase == "Progressing" and d.status.failures == 1
    d = decide(spec, d.status, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": FAIL}), T0)
    assert d.status.phase == "RolledBack"


def test_critical_metric_fails_at_once_even_with_failure_limit() -> None:
    spec = make_spec(
        analysis={
            "prometheus": {"address": "http://p:9090"},
            "failureLimit": 5,
            "metrics": [{"name": "errors", "kind": "errorRate", "critical": True}],
        }
    )
    st = canary_status(step=0, weight=10)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"errors": FAIL}), T0)
    assert d.status.phase == "RolledBack" and "critical" in d.status.message


def test_background_analysis_fails_during_pause_step() -> None:
    st = canary_status(step=3, weight=50)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), verdicts={"latency": FAIL}), T0)
    assert d.status.phase == "RolledBack"


@pytest.mark.parametrize(
    ("policy", "phase"), [("pause", "Paused"), ("rollback", "RolledBack")]
)
def test_inconclusive_limit_acts_per_policy(policy: str, phase: str) -> None:
    spec = make_spec(
        analysis={
            "prometheus": {"address": "http://p:9090"},
            "inconclusiveLimit": 2,
            "onInconclusive": policy,
            "metrics": [{"name": "accuracy", "kind": "accuracy"}],
        }
    )
    st = canary_status(step=1, weight=10)
    for _ in range(2):
        d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": INC}), T0)
        assert d.status.phase == "Progressing"
        st = d.status
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": INC}), T0)
    assert d.status.phase == phase
    assert d.weights == ({"r1": 90, "r2": 10} if policy == "pause" else {"r1": 100, "r2": 0})


def test_progress_deadline_without_evidence() -> None:
    st = canary_status(step=1, weight=10)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2")), T0 + timedelta(minutes=16))
    assert d.status.phase == "Paused" and "no decision within 900s" in d.status.message


# --------------------------------------------------------------------------- user actions


@pytest.mark.parametrize(
    ("action", "phase", "step"),
    [
        ("pause@a", "Paused", 3),
        ("abort@a", "RolledBack", 0),
        ("promote-full@a", "Progressing", 4),
        ("bogus@a", "Progressing", 3),
    ],
)
def test_user_actions_during_canary(action: str, phase: str, step: int) -> None:
    st = canary_status(step=3, weight=50)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), action=UserAction.parse(action)), T0)
    assert d.status.phase == phase
    assert d.status.current_step == step
    assert d.status.last_action == action


def test_resume_after_pause() -> None:
    st = canary_status(step=3, weight=50, paused=True, phase="Paused")
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), action=UserAction.parse("resume@x")), T0)
    assert d.status.phase == "Progressing" and not d.status.paused


def test_retry_after_rollback_restarts_the_canary() -> None:
    st = ModelDeploymentStatus(
        phase="RolledBack", stable_revision="r1", stable_version="v1", rejected_revision="r2"
    )
    d = decide(make_spec(), st, obs(workloads=ready("r1")), T0)
    assert d.status.phase == "RolledBack" and d.weights == {"r1": 100}
    d = decide(make_spec(), st, obs(workloads=ready("r1"), action=UserAction.parse("retry@1")), T0)
    assert d.status.canary_revision == "r2" and d.status.phase == "Progressing"


def test_rollback_to_a_kept_revision() -> None:
    st = ModelDeploymentStatus(
        phase="Stable", stable_revision="r2", stable_version="v2", retired={"r1": iso(T0)}
    )
    act = UserAction.parse("rollback:r1@z")
    d = decide(make_spec(), st, obs(workloads=ready("r2") | {"r1": WorkloadState(0, 0)}, action=act), T0)
    assert d.status.stable_revision == "r1" and d.status.rejected_revision == "r2"
    assert d.weights == {"r2": 100, "r1": 0}  # r1 not ready yet: traffic stays
    d = decide(make_spec(), d.status, obs(workloads=ready("r1", "r2"), action=act), T0)
    assert d.weights == {"r1": 100} and d.status.phase == "RolledBack"
    bad = decide(make_spec(), st, obs(workloads=ready("r2"), action=UserAction.parse("rollback:zz@1")), T0)
    assert bad.status.stable_revision == "r2" and bad.events[0].reason == "ActionRejected"


# --------------------------------------------------------------------------- supersede, watch


def test_newer_revision_supersedes_canary() -> None:
    st = canary_status(step=2, weight=10)
    d = decide(make_spec(), st, obs("r3", "v3", workloads=ready("r1", "r2")), T0)
    s = d.status
    assert (s.canary_revision, s.current_step, s.canary_weight) == ("r3", 0, 0)
    assert s.history[-1].outcome == "superseded" and s.history[-1].revision == "r2"
    assert "r2" in s.retired


def test_spec_back_to_stable_ends_canary() -> None:
    st = canary_status(step=2, weight=10)
    d = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1", "r2")), T0)
    assert d.status.canary_revision is None and d.status.phase == "Stable"
    assert d.weights == {"r1": 100}


def watching() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Watching",
        stable_revision="r2",
        stable_version="v2",
        prior_revision="r1",
        prior_version="v1",
        promoted_at=iso(T0),
        rollout_started_at=iso(T0 - timedelta(minutes=5)),
        watch_until=iso(T0 + timedelta(seconds=60)),
    )


def test_watch_window_regression_reverts_to_prior() -> None:
    d = decide(make_spec(), watching(), obs(workloads=ready("r1", "r2"), verdicts={"accuracy": FAIL}), T0)
    s = d.status
    assert (s.phase, s.stable_revision, s.rejected_revision) == ("RolledBack", "r1", "r2")
    assert d.weights == {"r1": 100, "r2": 0}
    assert s.history[-1].outcome == "reverted"


def test_watch_window_passes_and_retires_prior() -> None:
    later = T0 + timedelta(seconds=61)
    d = decide(make_spec(), watching(), obs(workloads=ready("r1", "r2")), later)
    assert d.status.phase == "Stable" and d.status.prior_revision is None
    assert d.replicas["r1"] == 2  # still warm until the scale-down delay
    d = decide(make_spec(), d.status, obs(workloads=ready("r1", "r2")), later + timedelta(seconds=31))
    assert d.replicas["r1"] == 0


def test_history_limit_deletes_oldest_retired_revisions() -> None:
    spec = make_spec(rollback={"revisionHistoryLimit": 1, "scaleDownDelay": "0s"})
    st = ModelDeploymentStatus(
        phase="Stable",
        stable_revision="r3",
        stable_version="v3",
        retired={"r1": iso(T0 - timedelta(hours=2)), "r2": iso(T0 - timedelta(hours=1))},
    )
    d = decide(spec, st, obs("r3", "v3", workloads=ready("r1", "r2", "r3")), T0)
    assert d.delete == ["r1"] and d.replicas["r2"] == 0
    assert set(d.status.retired) == {"r2"}


PENDING = "gw has not yet programmed generation 4 of HTTPRoute iris (it reports generation 3)"


def test_a_weight_the_gateway_has_not_programmed_is_not_confirmed() -> None:
    seen = {"r1": 90, "r2": 10}  # the route's spec says it, the gateway has not applied it
    d = decide(make_spec(), canary_status(), obs(workloads=ready("r1", "r2"), weights=seen, route_pending=PENDING), T0)
    assert d.status.current_step == 0
    assert PENDING in (d.status.message or "")
    d = decide(make_spec(), canary_status(), obs(workloads=ready("r1", "r2"), weights=seen), T0)
    assert d.status.current_step == 1


def test_promotion_waits_for_the_gateway_to_apply_full_weight() -> None:
    st = canary_status(step=4, weight=100)
    spec = make_spec(rollback={"postPromotionWindow": "0s"})
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), weights={"r2": 100}, route_pending=PENDING), T0)
    assert d.status.phase == "Progressing" and "r1" not in d.status.retired
    assert "waiting for the router to confirm 100%" in (d.status.message or "")


def test_a_retired_revision_drains_before_it_is_scaled_down() -> None:
    spec = make_spec(rollback={"scaleDownDelay": "0s"})
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r2", stable_version="v2",
                               retired={"r1": iso(T0 - timedelta(minutes=5))})
    # The route read back still gives r1 weight, or the gateway has not applied the route that
    # took it away: r1 keeps its replicas.
    for routed in ({"weights": {"r1": 10, "r2": 90}}, {"weights": {"r2": 100}, "route_pending": PENDING},
                   {"weights": {"r2": 100}, "mirror": ("r1", 5)}):
        d = decide(spec, st, obs("r2", "v2", workloads=ready("r1", "r2"), **routed), T0)
        assert d.replicas.get("r1") == 2, routed
        assert d.requeue_after is not None and d.requeue_after <= 1.0
    # Nothing routes to it any more: scaled down.
    d = decide(spec, st, obs("r2", "v2", workloads=ready("r1", "r2"), weights={"r2": 100}), T0)
    assert d.replicas.get("r1") == 0
    # One already at zero replicas is not scaled up again by a route the gateway has not applied.
    d = decide(spec, st, obs("r2", "v2", workloads={**ready("r2"), "r1": WorkloadState(0, 0)},
                             weights={"r2": 100}, route_pending=PENDING), T0)
    assert d.replicas.get("r1") == 0


def test_unknown_workload_is_retired_not_orphaned() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1", "zz")), T0)
    assert "zz" in d.status.retired


def test_router_error_moves_no_traffic() -> None:
    st = canary_status(step=0, weight=0)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), router_error="HTTPRoute CRD missing"), T0)
    assert d.weights is None and d.status.current_step == 0
    degraded = next(c for c in d.status.conditions if c.type == "Degraded")
    assert degraded.status == "True" and "CRD missing" in degraded.message


def test_unavailable_metrics_hold_and_show_degraded_from_the_error_field() -> None:
    """"Metrics unavailable" is data on the verdict, not a prefix of its reason: a verdict with
    an error holds the step and marks Degraded; an inconclusive one whose reason merely uses
    the same words does not."""
    down = Verdict.unavailable_metrics("ConnectionError: refused")
    st = canary_status(step=1, weight=10)
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), weights={"r1": 90, "r2": 10},
                                    verdicts={"accuracy": down}), T0)
    degraded = next(c for c in d.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "MetricsUnavailable")
    assert d.status.current_step == 1 and d.weights == {"r1": 90, "r2": 10}
    assert d.status.analysis[0].error == "ConnectionError: refused"
    lookalike = Verdict(Outcome.INCONCLUSIVE, "metrics unavailable: said by a custom metric's reason")
    d = decide(make_spec(), st, obs(workloads=ready("r1", "r2"), weights={"r1": 90, "r2": 10},
                                    verdicts={"accuracy": lookalike}), T0)
    degraded = next(c for c in d.status.conditions if c.type == "Degraded")
    assert degraded.status == "False"


def test_an_automatic_pause_keeps_its_own_reason() -> None:
    """Not enough evidence pauses for a person; the next cycles still say why, and a person's
    own pause says it was a person."""
    spec = make_spec(analysis={"metrics": [{"name": "accuracy", "kind": "accuracy"}],
                               "prometheus": {"address": "http://prom:9090"},
                               "inconclusiveLimit": 0, "interval": "10s"},
                     strategy={"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}})
    st = canary_status(step=1, weight=10)
    seen = {"r1": 90, "r2": 10}
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), weights=seen, verdicts={"accuracy": INC}), T0)
    assert d.status.phase == "Paused" and "inconclusive" in d.status.message
    reason = d.status.message
    later = decide(spec, d.status, obs(workloads=ready("r1", "r2"), weights=seen), T0 + timedelta(minutes=1))
    assert later.status.phase == "Paused" and later.status.message == reason
    assert "by a person" not in later.status.message
    resumed = decide(spec, later.status, obs(workloads=ready("r1", "r2"), weights=seen,
                                             action=UserAction.parse("resume@1")), T0 + timedelta(minutes=2))
    paused = decide(spec, resumed.status, obs(workloads=ready("r1", "r2"), weights=seen,
                                              action=UserAction.parse("pause@2")), T0 + timedelta(minutes=3))
    assert paused.status.phase == "Paused" and paused.status.message.startswith("paused by a person")


def test_conditions_keep_transition_time_when_unchanged() -> None:
    st = ModelDeploymentStatus(phase="Stable", stable_revision="r1", stable_version="v1")
    d1 = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1")), T0)
    d2 = decide(make_spec(), d1.status, obs("r1", "v1", workloads=ready("r1")), T0 + timedelta(hours=1))
    a1 = next(c for c in d1.status.conditions if c.type == "Available")
    a2 = next(c for c in d2.status.conditions if c.type == "Available")
    assert a1.status == a2.status == "True" and a1.last_transition_time == a2.last_transition_time


# --------------------------------------------------------------------------- analysis plan


def test_plan_compares_canary_with_stable_over_the_step() -> None:
    st = canary_status(step=1, weight=10)
    plan = analysis_plan(make_spec(), st, T0 + timedelta(seconds=45))
    assert plan is not None
    assert (plan.candidate.revision, plan.baseline.revision) == ("r2", "r1")
    assert plan.candidate.window == plan.baseline.window == 45
    again = st.model_copy(update={"last_analysis_at": iso(T0 + timedelta(seconds=40))})
    assert analysis_plan(make_spec(), again, T0 + timedelta(seconds=45)) is None  # not due
    assert analysis_plan(make_spec(), canary_status(weight=0), T0) is None  # no traffic yet


def test_the_next_cycle_is_when_the_next_measurement_is_due_not_an_interval_after_this_one() -> None:
    """Measured 3 s before this cycle, with a 10 s interval: look again in 7 s (then it is due),
    not in 10 s — every interval plus a cycle's latency (or a grid slot) would drift."""
    spec = make_spec(strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "2m"}}]}})
    st = canary_status(step=1, weight=20, last_analysis_at=iso(T0 + timedelta(seconds=27)))
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), weights={"r1": 80, "r2": 20}), T0 + timedelta(seconds=30))
    assert d.status.current_step == 1
    assert d.requeue_after == pytest.approx(7.0)
    plan = analysis_plan(spec, d.status, T0 + timedelta(seconds=30 + d.requeue_after))
    assert plan is not None, "due exactly when the cycle wakes"


def test_plan_in_watch_window_compares_the_promoted_revision_with_itself() -> None:
    st = watching()  # promoted at T0, window 60 s: the first 20 s are the baseline
    assert analysis_plan(make_spec(), st, T0 + timedelta(seconds=25)) is None
    plan = analysis_plan(make_spec(), st, T0 + timedelta(seconds=45))
    assert plan is not None
    assert (plan.candidate.revision, plan.candidate.window, plan.candidate.offset) == ("r2", 25, 0)
    assert (plan.baseline.revision, plan.baseline.window, plan.baseline.offset) == ("r2", 20, 25)


# --------------------------------------------------------------------------- A/B test


def ab_spec(**ab: Any) -> ModelDeploymentSpec:
    return make_spec(
        strategy={"abTest": {"weight": 30, "primaryMetric": "accuracy", "guardrails": ["latency"],
                             "maxDuration": "10m", **ab}},
    )


BETTER = Verdict(Outcome.PASS, "better", value=0.95, baseline=0.90, samples=3000, baseline_samples=7000)
SAME = Verdict(Outcome.PASS, "same", value=0.90, baseline=0.90, samples=3000, baseline_samples=7000)


def test_ab_sets_the_split_then_waits_for_a_winner() -> None:
    st = canary_status(step=0, weight=0)
    d = decide(ab_spec(), st, obs(workloads=ready("r1", "r2"), weights={"r1": 70, "r2": 30}), T0)
    assert d.weights == {"r1": 70, "r2": 30} and d.status.current_step == 1
    later = T0 + timedelta(minutes=1)
    d = decide(ab_spec(), d.status, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": SAME, "latency": PASS}), later)
    assert d.status.phase == "Progressing" and d.weights == {"r1": 70, "r2": 30}


@pytest.mark.parametrize(
    ("verdicts", "outcome"),
    [
        ({"accuracy": BETTER, "latency": PASS}, "promoted"),
        ({"accuracy": BETTER, "latency": INC}, None),  # a winner must pass every guardrail
        ({"accuracy": BETTER, "latency": FAIL}, "lost"),
        ({"accuracy": FAIL, "latency": PASS}, "lost"),
    ],
)
def test_ab_winner(verdicts: dict[str, Verdict], outcome: str | None) -> None:
    st = canary_status(step=1, weight=30)
    seen = {"r1": 70, "r2": 30} if outcome != "promoted" else {"r2": 100}
    d = decide(ab_spec(), st, obs(workloads=ready("r1", "r2"), verdicts=verdicts, weights=seen), T0)
    last = d.status.history[-1].outcome if d.status.history else None
    assert last == outcome
    if outcome == "promoted":
        assert d.status.stable_revision == "r2"
    if outcome == "lost":
        assert d.status.stable_revision == "r1" and d.weights == {"r1": 100, "r2": 0}


def test_ab_without_a_winner_keeps_the_incumbent_after_max_duration() -> None:
    st = canary_status(step=1, weight=30)
    d = decide(ab_spec(), st, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": SAME, "latency": PASS}),
               T0 + timedelta(minutes=11))
    assert d.status.history[-1].outcome == "lost" and "incumbent stays" in d.status.history[-1].reason


def test_ab_bandit_moves_the_split_within_the_floor() -> None:
    st = canary_status(step=1, weight=30, step_started_at=iso(T0 - timedelta(minutes=5)))
    promising = Verdict(Outcome.PASS, "p", value=0.93, baseline=0.90, samples=300, baseline_samples=700)
    d = decide(ab_spec(bandit=True, explorationFloor=10), st,
               obs(workloads=ready("r1", "r2"), verdicts={"accuracy": promising, "latency": PASS}), T0)
    assert 30 < d.status.canary_weight <= 90
    assert d.weights == {"r1": 100 - d.status.canary_weight, "r2": d.status.canary_weight}
    assert any(e.reason == "SplitChanged" for e in d.events)
    # The move starts a new period: the next measurement judges the periods apart.
    assert d.status.split_changed_at == [iso(T0)]
    plan = analysis_plan(ab_spec(bandit=True, explorationFloor=10), d.status, T0 + timedelta(minutes=2))
    assert plan is not None and plan.periods == (120.0,)


def test_a_paused_ab_test_promotes_no_winner_until_resumed() -> None:
    st = canary_status(step=1, weight=30)
    seen = obs(workloads=ready("r1", "r2"), weights={"r1": 70, "r2": 30}, action=UserAction.parse("pause@1"),
               verdicts={"accuracy": BETTER, "latency": PASS})
    d = decide(ab_spec(), st, seen, T0)
    assert d.status.phase == "Paused" and d.status.canary_revision == "r2" and d.weights == {"r1": 70, "r2": 30}
    assert "paused by a person" in d.status.message
    later = T0 + timedelta(minutes=20)  # past maxDuration: the clock waits for a person
    d = decide(ab_spec(), d.status, obs(workloads=ready("r1", "r2"), weights={"r1": 70, "r2": 30}), later)
    assert d.status.phase == "Paused" and not d.status.history
    lost = decide(ab_spec(), d.status, obs(workloads=ready("r1", "r2"), weights={"r1": 70, "r2": 30},
                                           verdicts={"accuracy": BETTER, "latency": FAIL}), later)
    assert lost.status.history[-1].outcome == "lost"  # a failed guardrail still ends it
    resumed = decide(ab_spec(), d.status, obs(workloads=ready("r1", "r2"), weights={"r1": 70, "r2": 30},
                                              action=UserAction.parse("resume@2"),
                                              verdicts={"accuracy": BETTER, "latency": PASS}), later)
    assert resumed.weights == {"r1": 0, "r2": 100}  # the winner is promoted once resumed


def test_ab_gives_no_traffic_to_a_challenger_that_is_not_ready() -> None:
    """One challenger or several, the same rule: the incumbent keeps everything until every
    challenger can serve."""
    st = canary_status(step=0, weight=0)
    d = decide(ab_spec(), st, obs(workloads=ready("r1")), T0)
    assert d.weights == {"r1": 100, "r2": 0} and d.replicas["r2"] == 2
    assert "waiting for canary revision r2" in d.status.message


def test_ab_bandit_on_error_rate_favours_the_challenger_with_fewer_errors() -> None:
    spec = make_spec(
        analysis={"metrics": [{"name": "errors", "kind": "errorRate"}], "interval": "10s",
                  "prometheus": {"address": "http://prom:9090"}},
        strategy={"abTest": {"weight": 30, "primaryMetric": "errors", "bandit": True, "maxDuration": "10m"}},
    )
    st = canary_status(step=1, weight=30)
    fewer = Verdict(Outcome.PASS, "p", value=0.01, baseline=0.02, samples=300, baseline_samples=700)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), verdicts={"errors": fewer}), T0)
    assert d.status.canary_weight > 30 and d.weights == {"r1": 100 - d.status.canary_weight, "r2": d.status.canary_weight}


# --------------------------------------------------------------------------- shadow


def shadow_spec() -> ModelDeploymentSpec:
    """A shadow judged on agreement with the served answers and latency (labels cannot judge
    answers nobody saw)."""
    return make_spec(strategy={"shadow": {"percent": 50, "duration": "5m"}}, analysis={
        "prometheus": {"address": "http://prom:9090"}, "interval": "10s",
        "metrics": [{"name": "agreement", "kind": "agreement"}, {"name": "latency", "kind": "latency"}]})


def test_shadow_mirrors_first_and_never_gives_live_traffic() -> None:
    st = canary_status(step=0, weight=0)
    d = decide(shadow_spec(), st, obs(workloads=ready("r1", "r2")), T0)
    assert d.weights == {"r1": 100, "r2": 0} and d.mirror == ("r2", 50) and d.status.current_step == 0
    d = decide(shadow_spec(), st, obs(workloads=ready("r1", "r2"), mirror=("r2", 50)), T0)
    assert d.status.current_step == 1 and d.weights == {"r1": 100, "r2": 0}


def test_shadow_failing_metric_rolls_back_with_the_mirror_removed() -> None:
    st = canary_status(step=1, weight=0)
    d = decide(shadow_spec(), st, obs(workloads=ready("r1", "r2"), mirror=("r2", 50),
                                      verdicts={"agreement": FAIL, "latency": PASS}), T0)
    assert d.status.phase == "RolledBack" and d.mirror is None and d.weights == {"r1": 100, "r2": 0}


def test_shadow_passing_is_promoted() -> None:
    st = canary_status(step=1, weight=0)
    d = decide(shadow_spec(), st, obs(workloads=ready("r1", "r2"), mirror=("r2", 50),
                                      verdicts={"agreement": PASS, "latency": PASS}), T0)
    assert d.weights == {"r1": 0, "r2": 100} and d.mirror is None
    d = decide(shadow_spec(), d.status, obs(workloads=ready("r1", "r2"), weights={"r2": 100}), T0)
    assert d.status.stable_revision == "r2" and d.status.history[-1].outcome == "promoted"


def test_shadow_plan_measures_without_live_weight() -> None:
    st = canary_status(step=1, weight=0)
    plan = analysis_plan(shadow_spec(), st, T0 + timedelta(seconds=30))
    assert plan is not None and plan.candidate.revision == "r2"
    assert analysis_plan(make_spec(), st, T0 + timedelta(seconds=30)) is None  # a canary at 0%: nothing to see


def test_ab_by_cookie_routes_matching_requests_and_judges_them() -> None:
    from kanaria.api.routing import HeaderCondition, RouteMatch

    spec = ab_spec(match={"cookie": {"name": "ab", "value": "b"}, "headers": [{"name": "X-Tier", "value": "beta"}]})
    st = canary_status(step=0, weight=0)
    d = decide(spec, st, obs(workloads=ready("r1", "r2"), weights={"r1": 100, "r2": 0}), T0)
    # The challenger has no weighted share; the match rule is asked for, not yet confirmed.
    assert d.weights == {"r1": 100, "r2": 0} and d.status.canary_weight == 0
    assert d.match is not None and d.match.revision == "r2"
    assert d.match.headers[0] == HeaderCondition("x-tier", "beta", False)
    assert d.match.headers[1].name == "cookie" and d.match.headers[1].regex
    assert d.status.current_step == 0
    assert analysis_plan(spec, d.status, T0) is None  # nothing to judge before the match is in force
    d = decide(spec, d.status, obs(workloads=ready("r1", "r2"), weights={"r1": 100, "r2": 0}, match=d.match), T0)
    assert d.status.current_step == 1 and "cookie ab=b" in d.status.message
    plan = analysis_plan(spec, d.status, T0 + timedelta(minutes=1))
    assert plan is not None and plan.candidate.revision == "r2"
    # The winner is promoted and the match rule removed; a loser keeps all traffic on r1.
    seen = obs(workloads=ready("r1", "r2"), verdicts={"accuracy": BETTER, "latency": PASS},
               weights={"r1": 100, "r2": 0}, match=RouteMatch("r2", d.match.headers if d.match else ()))
    won = decide(spec, d.status, seen, T0 + timedelta(minutes=2))
    assert won.weights == {"r1": 0, "r2": 100} and won.match is None  # all traffic, no rule
    done = decide(spec, won.status, obs(workloads=ready("r1", "r2"), weights={"r2": 100}), T0 + timedelta(minutes=2))
    assert done.status.history, done.status.message
    assert done.status.history[-1].outcome == "promoted" and done.status.stable_revision == "r2"
    assert "A/B winner" in done.status.history[-1].reason  # the reason survives the wait
    lost = decide(spec, d.status, obs(workloads=ready("r1", "r2"), verdicts={"accuracy": FAIL, "latency": PASS},
                                      weights={"r1": 100, "r2": 0}), T0 + timedelta(minutes=2))
    assert lost.status.history[-1].outcome == "lost" and lost.match is None and lost.weights == {"r1": 100, "r2": 0}


def test_ab_match_is_refused_with_bandit_or_the_replicas_router() -> None:
    with pytest.raises(ValueError, match="bandit"):
        ab_spec(bandit=True, match={"headers": [{"name": "x-group", "value": "b"}]})
    with pytest.raises(ValueError, match="router that can match"):
        make_spec(traffic={"replicas": {}},
                  strategy={"abTest": {"primaryMetric": "accuracy", "match": {"cookie": {"name": "ab", "value": "b"}}}})
    with pytest.raises(ValueError, match="at least one header"):
        ab_spec(match={})


# --------------------------------------------------------------------------- A/B, several challengers


def multi_spec() -> ModelDeploymentSpec:
    return ab_spec(weight=30, challengers=[{"version": "v3", "uri": "file:///models/v3", "weight": 30}])


def _arm_rev(spec: ModelDeploymentSpec) -> str:
    from kanaria.api.revision import revision_hash

    return revision_hash(spec.arm_specs()[0])


def _started_multi(spec: ModelDeploymentSpec) -> tuple[ModelDeploymentStatus, str]:
    stable = ModelDeploymentStatus.model_validate({"phase": "Stable", "stable_revision": "r1", "stable_version": "v1"})
    d = decide(spec, stable, obs(workloads=ready("r1")), T0)
    arm = _arm_rev(spec)
    assert [a.revision for a in d.status.arms] == ["r2", arm]
    d = decide(spec, d.status, obs(workloads=ready("r1", "r2")), T0)
    assert d.weights == {"r1": 100, "r2": 0, arm: 0} and d.replicas[arm] == 2  # v3 not ready yet
    d = decide(spec, d.status, obs(workloads=ready("r1", "r2", arm)), T0)
    assert d.weights == {"r1": 40, "r2": 30, arm: 30} and d.status.current_step == 0
    d = decide(spec, d.status, obs(workloads=ready("r1", "r2", arm), weights=d.weights), T0)
    assert d.status.current_step == 1 and "2 challengers" in " ".join(e.message for e in d.events)
    return d.status, arm


def test_several_challengers_start_together_and_a_loser_gives_its_share_back() -> None:
    spec = multi_spec()
    st, arm = _started_multi(spec)
    plan = analysis_plan(spec, st, T0 + timedelta(minutes=1))
    assert plan is not None and plan.candidate.revision == "r2" and [a.revision for a in plan.others] == [arm]
    # v3 is worse than the incumbent: it loses at once; r2 keeps running at its weight.
    seen = obs(workloads=ready("r1", "r2", arm), weights={"r1": 40, "r2": 30, arm: 30},
               verdicts={"accuracy": SAME, "latency": PASS}, arm_verdicts={arm: {"accuracy": FAIL, "latency": PASS}})
    d = decide(spec, st, seen, T0 + timedelta(minutes=1))
    assert d.weights == {"r1": 70, "r2": 30, arm: 0}
    assert [a.outcome for a in d.status.arms] == ["", "lost"]
    assert d.status.history[-1].revision == arm and d.status.history[-1].outcome == "lost"
    # r2 then wins: promoted; the lost arm is retired.
    won = decide(spec, d.status, obs(workloads=ready("r1", "r2", arm), weights={"r2": 100},
                                     verdicts={"accuracy": BETTER, "latency": PASS}), T0 + timedelta(minutes=2))
    assert won.status.stable_revision == "r2" and won.status.history[-1].outcome == "promoted"
    assert won.status.arms == [] and arm in won.status.retired


def test_an_extra_challenger_can_win_and_spec_model_is_then_not_retried() -> None:
    spec = multi_spec()
    st, arm = _started_multi(spec)
    seen = obs(workloads=ready("r1", "r2", arm), weights={"r1": 40, "r2": 30, arm: 30},
               verdicts={"accuracy": SAME, "latency": PASS}, arm_verdicts={arm: {"accuracy": BETTER, "latency": PASS}})
    d = decide(spec, st, seen, T0 + timedelta(minutes=1))
    assert d.weights == {"r1": 0, arm: 100} and d.status.canary_revision == arm  # promoting v3
    assert d.status.rejected_revision == "r2" and d.status.history[-1].revision == "r2"
    assert d.status.history[-1].outcome == "lost"
    # The router confirms on the next cycle; the spec still names r2 (v2).
    done = decide(spec, d.status, obs(workloads=ready("r1", "r2", arm), weights={arm: 100}), T0 + timedelta(minutes=1))
    assert done.status.stable_revision == arm and done.status.stable_version == "v3"
    assert done.status.history[-1].outcome == "promoted" and "A/B winner among 2" in done.status.history[-1].reason
    again = decide(spec, done.status, obs(workloads=ready("r1", "r2", arm), weights={arm: 100}), T0 + timedelta(minutes=2))
    assert again.status.canary_revision is None and again.weights == {arm: 100}  # r2 is not restarted


def test_when_every_challenger_loses_the_incumbent_stays() -> None:
    spec = multi_spec()
    st, arm = _started_multi(spec)
    seen = obs(workloads=ready("r1", "r2", arm), weights={"r1": 40, "r2": 30, arm: 30},
               verdicts={"accuracy": FAIL, "latency": PASS}, arm_verdicts={arm: {"accuracy": FAIL, "latency": PASS}})
    d = decide(spec, st, seen, T0 + timedelta(minutes=1))
    assert d.status.phase == "RolledBack" and d.status.stable_revision == "r1"
    assert d.weights == {"r1": 100, "r2": 0}
    assert {h.revision: h.outcome for h in d.status.history[-2:]} == {arm: "lost", "r2": "lost"}
    assert d.status.arms == [] and {"r2", arm} <= set(d.status.retired)


def test_several_challengers_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1%"):
        ab_spec(weight=50, challengers=[{"version": "v3", "uri": "file:///m/v3", "weight": 50}])
    with pytest.raises(ValueError, match="must not repeat"):
        ab_spec(challengers=[{"version": "v1", "uri": "file:///m/v1b", "weight": 10}])
    with pytest.raises(ValueError, match="weighted split"):
        ab_spec(bandit=True, challengers=[{"version": "v3", "uri": "file:///m/v3", "weight": 10}])


# --------------------------------------------------------------------------- status written by anyone


@pytest.mark.parametrize("garbage", ["not a time", "2026-13-45T99:99:99Z", "9" * 5000, "", "2026-11-01T10:00:00",
                                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
@pytest.mark.parametrize("phase", ["Progressing", "Watching", "Stable", "Paused"])
def test_status_timestamps_that_do_not_parse_never_raise(garbage: str, phase: str) -> None:
    """A user with status access can write anything into the timestamps: a cycle still decides
    (no error loop), treating an unreadable time as absent."""
    times = {k: garbage for k in ("step_started_at", "rollout_started_at", "last_analysis_at", "promoted_at",
                                  "watch_until", "last_retrain_at")}
    status = canary_status(step=1, weight=10, **{**times, "phase": phase})
    observed = obs(workloads=ready("r1", "r2"), weights={"r1": 90, "r2": 10})
    decision = decide(make_spec(), status, observed, T0 + timedelta(seconds=45))
    assert decision.status.phase in ("Progressing", "Watching", "Stable", "Paused", "RolledBack")


def test_an_object_at_rest_waits_for_a_change_and_a_watched_one_for_its_check() -> None:
    from kanaria.rollout.engine import IDLE_REQUEUE

    st = ModelDeploymentStatus.model_validate(
        {"phase": "Stable", "stableRevision": "r1", "stableVersion": "v1", "observedGeneration": 3})
    quiet = make_spec(monitoring={"enabled": False})
    d = decide(quiet, st, obs("r1", "v1", workloads=ready("r1"), weights={"r1": 100}), T0)
    assert d.status.phase == "Stable" and d.requeue_after == IDLE_REQUEUE
    # Monitoring the serving revision is a timer: the next check is due within its interval.
    d = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1"), weights={"r1": 100}), T0)
    assert d.requeue_after <= 3600 and d.status.monitoring is not None
    watched = make_spec(monitoring={"interval": "2m"})
    d = decide(watched, st, obs("r1", "v1", workloads=ready("r1"), weights={"r1": 100}), T0)
    assert d.requeue_after == 120
    # A rollout under way is never at rest.
    d = decide(quiet, canary_status(step=1, weight=10), obs(workloads=ready("r1", "r2")), T0)
    assert d.requeue_after <= 10


def test_an_unreadable_check_of_the_serving_revision_is_tried_again_an_interval_later() -> None:
    from kanaria.api.observed import ServingReading

    st = ModelDeploymentStatus.model_validate({
        "phase": "Stable", "stableRevision": "r1", "stableVersion": "v1", "observedGeneration": 3,
        "monitoring": {"revision": "r1", "startedAt": iso(T0 - timedelta(minutes=10)),
                       "lastAt": iso(T0 - timedelta(minutes=2))}})
    failed = ServingReading("r1", 120.0, error="metrics unavailable: ConnectionError")
    d = decide(make_spec(), st, obs("r1", "v1", workloads=ready("r1"), weights={"r1": 100}, serving=failed), T0)
    assert d.requeue_after == 60  # not every second while Prometheus is down
    assert d.status.monitoring is not None and d.status.monitoring.last_at == st.monitoring.last_at
