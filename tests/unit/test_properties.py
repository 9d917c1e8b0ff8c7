"""Property tests: random specs, statuses and observations fed to ``decide`` over many cycles,
and random (also hostile) numbers fed to every judge. Fast: a few seconds in all."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanaria.analysis.drift import judge_dataset_drift, judge_feature_drift
from kanaria.analysis.latency import judge_latency
from kanaria.analysis.proportions import judge_accuracy, judge_error_rate
from kanaria.api.models import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.api.observed import WorkloadState
from kanaria.api.verdict import Outcome, Verdict
from kanaria.rollout import Observations, UserAction, decide

OUTCOMES = {Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- specs


@st.composite
def steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    weights = sorted(draw(st.lists(st.integers(1, 99), min_size=n, max_size=n)))
    out: list[dict[str, Any]] = []
    for w in weights:
        out.append({"setWeight": w})
        out.append(draw(st.sampled_from([{"analysis": {}}, {"pause": {"duration": "1s"}}, {"pause": {}}])))
    return out


@st.composite
def specs(draw: st.DrawFn, version: str = "v1") -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"name": "iris", "version": version, "uri": f"file:///m/{version}"},
        "replicas": draw(st.integers(0, 3)),
        "traffic": draw(st.sampled_from([{"gatewayAPI": {}}, {"replicas": {}}])),
        "strategy": {"canary": {"steps": draw(steps())}},
        "analysis": {
            "prometheus": {"address": "http://prom:9090"},
            "interval": "1s",
            "failureLimit": draw(st.integers(0, 2)),
            "inconclusiveLimit": draw(st.integers(0, 3)),
            "onInconclusive": draw(st.sampled_from(["pause", "rollback"])),
            "metrics": [{"name": "q", "kind": "custom", "query": "sum(q{revision=\"{{revision}}\"}) or vector(1)", "condition": "> 0"}],
        },
        "rollback": {"postPromotionWindow": draw(st.sampled_from(["0s", "5s"])), "scaleDownDelay": "0s"},
    }
    return ModelDeploymentSpec.model_validate(body)


NAN = float("nan")
verdicts = st.one_of(
    st.none(),
    st.builds(
        lambda o, v: {"q": Verdict(o, "random", value=v)},
        st.sampled_from(list(Outcome)),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    ),
    st.just({}),
    st.just({"unknown": Verdict(Outcome.PASS, "not asked for", value=NAN)}),
)
actions = st.one_of(
    st.none(),
    st.sampled_from(["promote", "promote-full", "abort", "retry", "pause", "resume", "rollback:abc"]),
    st.text(max_size=20),
)


@st.composite
def cycles(draw: st.DrawFn) -> list[dict[str, Any]]:
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "new_version": st.booleans().map(lambda b: b and draw(st.integers(0, 9)) == 0),
                    "verdicts": verdicts,
                    "action": actions,
                    "router_error": st.sampled_from([None, None, None, "router CRD missing"]),
                    "drop_weights": st.integers(0, 9).map(lambda n: n == 0),
                    "advance": st.floats(0, 30),
                }
            ),
            min_size=5,
            max_size=40,
        )
    )


def _check_weights(weights: dict[str, int] | None) -> None:
    if weights is None:
        return
    assert all(0 <= w <= 100 for w in weights.values()), weights
    assert sum(weights.values()) == 100, weights


@FAST
@given(base=specs(), script=cycles(), data=st.data())
def test_decide_keeps_its_invariants_over_many_cycles(
    base: ModelDeploymentSpec, script: list[dict[str, Any]], data: st.DataObject
) -> None:
    from kanaria.api.revision import revision_hash

    spec, version = base, 1
    status = ModelDeploymentStatus()
    weights: dict[str, int] | None = None
    workloads: dict[str, WorkloadState] = {}
    now = T0
    action_id = 0
    forced: str | None = None  # the canary a person told to promote (promote-full)
    for cycle in script:
        if cycle["new_version"]:
            version += 1
            spec = spec.model_copy(update={"model": spec.model.model_copy(update={"version": f"v{version}", "uri": f"file:///m/v{version}"})})
        raw = None
        if cycle["action"] is not None:
            action_id += 1
            raw = f"{cycle['action']}@{action_id}"
        action = UserAction.parse(raw)
        obs = Observations(
            revision=revision_hash(spec),
            version=spec.model.version,
            generation=version,
            workloads=dict(workloads),
            weights=None if cycle["drop_weights"] or cycle["router_error"] else weights,
            verdicts=cycle["verdicts"],
            action=action,
            router_error=cycle["router_error"],
        )
        before = status
        decision = decide(spec, status, obs, now)
        after = decision.status
        if action is not None and action.verb == "promote-full":
            forced = after.canary_revision or before.canary_revision
        _check_weights(decision.weights)
        total = len(spec.canary_steps())
        # The stable revision keeps traffic while a canary is unproven (router readable), unless
        # a person told the canary to take everything (promote-full). A canary past its last
        # step is proven: it takes 100% while the engine waits for the router to confirm.
        canary, stable = after.canary_revision, after.stable_revision
        if (
            decision.weights
            and after.current_step < total
            and canary
            and stable
            and canary != stable
            and canary != forced
            and stable in decision.weights
            and cycle["router_error"] is None
        ):
            assert decision.weights[stable] > 0, (decision.weights, after)
        # Promotion only after the last step, unless a person promoted.
        promoted = [h for h in after.history[len(before.history):] if h.outcome == "promoted"]
        if promoted and (action is None or action.verb not in ("promote", "promote-full")):
            assert before.current_step >= total - 1, (before.current_step, total, promoted)
        # A revision rolled back in this cycle is not the stable one.
        for h in after.history[len(before.history):]:
            if h.outcome == "rolledBack":
                assert after.stable_revision != h.revision, (h, after.stable_revision)
        # The world follows the decision.
        if decision.weights is not None and cycle["router_error"] is None:
            weights = dict(decision.weights)
        for rev, count in decision.replicas.items():
            workloads[rev] = WorkloadState(replicas=count, ready=count)
        for rev in decision.delete:
            workloads.pop(rev, None)
            if weights:
                weights.pop(rev, None)
        status = after
        now += timedelta(seconds=cycle["advance"])
    assert data is not None


# --------------------------------------------------------------------------- judges

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, max_value=1e12, min_value=-1e12),
    st.sampled_from([NAN, math.inf, -math.inf]),
    st.integers(-10, 10_000).map(float),
    st.sampled_from([0.0, -1.0, NAN, math.inf, -math.inf]),
)
counts = st.lists(numbers, min_size=0, max_size=8)


def _sane(v: Verdict, *inputs: float) -> None:
    assert v.outcome in OUTCOMES
    if any(isinstance(x, float) and not math.isfinite(x) for x in inputs):
        assert v.outcome != Outcome.PASS, v


def _flat(*seqs: Any) -> list[float]:
    return [x for s in seqs for x in s]


@FAST
@given(a=numbers, b=numbers, c=numbers, d=numbers)
def test_proportion_judges_never_raise_and_never_pass_on_nan(a: float, b: float, c: float, d: float) -> None:
    _sane(judge_accuracy(a, b, c, d), a, b, c, d)
    _sane(judge_error_rate(a, b, c, d), a, b, c, d)


def test_accuracy_judge_with_astronomical_counts_does_not_raise() -> None:
    x = 4503599627370497.0
    assert judge_accuracy(x, x, x, x).outcome in OUTCOMES


@FAST
@given(bounds=counts, base=counts, canary=counts)
def test_latency_judge_never_raises_and_never_passes_on_nan(
    bounds: list[float], base: list[float], canary: list[float]
) -> None:
    # A last +Inf bucket edge is what every histogram has (it is not bad input); any other
    # non-finite edge or count is.
    edges = bounds[:-1] if len(bounds) > 1 and bounds[-1] == math.inf else bounds
    _sane(judge_latency(bounds, base, canary), *_flat(edges, base, canary))


@FAST
@given(base=counts, canary=counts)
def test_drift_judges_never_raise_and_never_pass_on_nan(base: list[float], canary: list[float]) -> None:
    _sane(judge_feature_drift(base, canary), *_flat(base, canary))
    _sane(judge_dataset_drift({"f": (base, canary), "g": (canary, base)}), *_flat(base, canary))
