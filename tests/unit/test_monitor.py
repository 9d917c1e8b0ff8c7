"""The monitor library: exposition parsed back, fixed bins, feedback crediting, bounded store."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import FakeClock

from kanaria.monitor import (
    LATENCY_BUCKETS,
    FixedBinHistogram,
    ModelMonitor,
    ReferenceProfile,
    decile_edges,
)


def _profile() -> ReferenceProfile:
    return ReferenceProfile(
        feature_names=("a", "b"),
        feature_edges=((1.0, 2.0, 3.0), (10.0, 20.0)),
        score_edges=(0.5, 0.9),
        classes=("no", "yes"),
    )


def _samples(monitor: ModelMonitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = monitor.exposition().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    base = {"model": "m", "revision": "r1"}
    base.update(labels)
    return samples[(name, tuple(sorted(base.items())))]


def test_monitor_exposition_counts_and_fixed_bins() -> None:
    monitor = ModelMonitor("m", "r1", _profile(), version="v1")
    monitor.observe_request("q1", [0.5, 15.0], "yes", 0.95, 0.004)
    monitor.observe_request("q2", [2.0, 25.0], "no", 0.6, 0.07)
    monitor.observe_request("q3", [9.0, 10.0], "yes", 0.3, 0.3)
    monitor.observe_request("q4", [2.5, 5.0], None, None, 1.2, error=True)
    s = _samples(monitor)

    assert _get(s, "kanaria_model_requests_total") == 4
    assert _get(s, "kanaria_model_errors_total") == 1
    assert _get(s, "kanaria_model_request_duration_seconds_count") == 4
    assert _get(s, "kanaria_model_request_duration_seconds_bucket", le="0.005") == 1
    assert _get(s, "kanaria_model_request_duration_seconds_bucket", le="0.075") == 2
    assert _get(s, "kanaria_model_request_duration_seconds_bucket", le="+Inf") == 4
    les = {dict(k[1]).get("le") for k in s if k[0] == "kanaria_model_request_duration_seconds_bucket"}
    assert len(les) == len(LATENCY_BUCKETS) + 1

    # Feature a: values 0.5, 2.0, 9.0, 2.5 on edges 1, 2, 3 (+Inf); cumulative, le-inclusive.
    a = {le: _get(s, "kanaria_model_feature_bucket", feature="a", le=le) for le in ("1.0", "2.0", "3.0", "+Inf")}
    assert a == {"1.0": 1, "2.0": 2, "3.0": 3, "+Inf": 4}
    assert _get(s, "kanaria_model_feature_count", feature="a") == 4
    assert _get(s, "kanaria_model_feature_sum", feature="a") == pytest.approx(14.0)
    # Feature b has its own edges.
    b = {le: _get(s, "kanaria_model_feature_bucket", feature="b", le=le) for le in ("10.0", "20.0", "+Inf")}
    assert b == {"10.0": 2, "20.0": 3, "+Inf": 4}

    # Scores only for successful predictions: 0.95, 0.6, 0.3 on edges 0.5, 0.9.
    assert _get(s, "kanaria_model_prediction_bucket", le="0.5") == 1
    assert _get(s, "kanaria_model_prediction_bucket", le="0.9") == 2
    assert _get(s, "kanaria_model_prediction_bucket", le="+Inf") == 3
    assert _get(s, "kanaria_model_predictions_total", **{"class": "yes"}) == 2
    assert _get(s, "kanaria_model_predictions_total", **{"class": "no"}) == 1
    assert _get(s, "kanaria_model_info", version="v1") == 1
    # Zero-valued series exist from the start.
    assert _get(s, "kanaria_model_labels_total", outcome="correct") == 0
    assert _get(s, "kanaria_model_feedback_dropped_total", reason="evicted") == 0


def test_monitor_feedback_credits_correct_and_incorrect() -> None:
    monitor = ModelMonitor("m", "r1", _profile())
    monitor.observe_request("q1", [1, 1], "yes", 0.9, 0.01)
    monitor.observe_request("q2", [1, 1], "no", 0.9, 0.01)
    assert monitor.feedback("q1", "yes") is True
    assert monitor.feedback("q2", "yes") is True
    assert monitor.feedback("q2", "yes") is False  # already labelled: unknown now
    assert monitor.feedback("never", "no") is False
    s = _samples(monitor)
    assert _get(s, "kanaria_model_labels_total", outcome="correct") == 1
    assert _get(s, "kanaria_model_labels_total", outcome="incorrect") == 1
    assert _get(s, "kanaria_model_feedback_dropped_total", reason="unknown") == 2
    assert monitor.pending == 2  # labelled, but not yet matured at the default 300 s


def test_monitor_feedback_credits_the_serving_revision_only() -> None:
    # Two revisions' monitors in one process share nothing: the label goes where it was served.
    old = ModelMonitor("m", "old", _profile())
    new = ModelMonitor("m", "new", _profile())
    old.observe_request("q1", [1, 1], "yes", 0.9, 0.01)
    assert new.feedback("q1", "yes") is False
    assert old.feedback("q1", "yes") is True
    text_old = old.exposition().decode()
    assert 'kanaria_model_labels_total{model="m",outcome="correct",revision="old"} 1.0' in text_old
    assert 'outcome="correct",revision="new"} 0.0' in new.exposition().decode()


def test_monitor_pending_store_expires_and_evicts_with_injected_clock() -> None:
    clock = FakeClock()
    monitor = ModelMonitor(
        "m", "r1", _profile(), pending_max=3, pending_ttl_seconds=10, clock=clock, maturity_horizons=(5,)
    )
    for i in range(5):  # q0 and q1 are pushed out by q3 and q4
        monitor.observe_request(f"q{i}", [1, 1], "yes", 0.9, 0.01)
    assert monitor.pending == 3
    assert monitor.feedback("q0", "yes") is False
    clock.now += 9.0
    assert monitor.feedback("q2", "yes") is True
    clock.now += 1.0  # q3, q4 are now exactly ttl old: expired
    assert monitor.feedback("q3", "yes") is False
    monitor.sweep()
    assert monitor.pending == 0
    s = _samples(monitor)
    assert _get(s, "kanaria_model_feedback_dropped_total", reason="evicted") == 2
    assert _get(s, "kanaria_model_feedback_dropped_total", reason="expired") == 2
    assert _get(s, "kanaria_model_feedback_dropped_total", reason="unknown") == 1
    assert _get(s, "kanaria_model_labels_total", outcome="correct") == 1


def test_monitor_rejects_wrong_feature_count_without_counting() -> None:
    monitor = ModelMonitor("m", "r1", _profile())
    with pytest.raises(ValueError):
        monitor.observe_request("q", [1.0], "yes", 0.9, 0.01)
    assert _get(_samples(monitor), "kanaria_model_requests_total") == 0


def test_monitor_is_thread_safe() -> None:
    monitor = ModelMonitor("m", "r1", _profile(), pending_max=10_000)

    def work(t: int) -> None:
        for i in range(500):
            monitor.observe_request(f"{t}-{i}", [i % 4, i % 30], "yes", 0.7, 0.01)
            monitor.feedback(f"{t}-{i}", "yes" if i % 2 else "no")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    s = _samples(monitor)
    assert _get(s, "kanaria_model_requests_total") == 4000
    assert _get(s, "kanaria_model_feature_count", feature="a") == 4000
    assert _get(s, "kanaria_model_labels_total", outcome="correct") == 2000
    assert _get(s, "kanaria_model_labels_total", outcome="incorrect") == 2000


def test_monitor_profile_deciles_and_json_round_trip() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=1000), np.zeros(1000), rng.integers(0, 3, 1000)])
    profile = ReferenceProfile.from_training_data(X, ["x", "const", "disc"], rng.uniform(0.5, 1, 1000), [0, 1])
    assert len(profile.feature_edges[0]) == 9
    assert profile.feature_edges[1] == (0.0,)
    assert set(profile.feature_edges[2]) <= {0.0, 1.0, 2.0}
    assert list(profile.feature_edges[0]) == sorted(profile.feature_edges[0])
    assert ReferenceProfile.from_json(profile.to_json()) == profile
    assert profile.classes == ("0", "1")
    assert decile_edges(range(1, 11)) == pytest.approx((1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1))


def test_monitor_profile_validates_edges() -> None:
    with pytest.raises(ValueError):
        ReferenceProfile(("a",), ((2.0, 1.0),), (0.5,), ("x",))
    with pytest.raises(ValueError):
        ReferenceProfile(("a",), ((1.0, float("inf")),), (0.5,), ("x",))
    with pytest.raises(ValueError):
        ReferenceProfile(("a", "b"), ((1.0,),), (0.5,), ("x",))


@given(
    edges=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12, unique=True).map(sorted),
    values=st.lists(st.floats(-2e6, 2e6), max_size=200),
)
@settings(max_examples=60, deadline=None)
def test_monitor_fixed_bins_match_numpy(edges: list[float], values: list[float]) -> None:
    hist = FixedBinHistogram(tuple(edges))
    for value in values:
        hist.observe(value)
    cumulative = hist.cumulative()
    data = np.asarray(values, dtype=float)
    expected = [int((data <= edge).sum()) for edge in edges] + [len(values)]
    assert [count for _, count in cumulative] == expected
    assert cumulative[-1][0] == "+Inf"
    assert [float(le) for le, _ in cumulative[:-1]] == edges


def _numpy_decile_edges(values: list[float]) -> tuple[float, ...]:
    """What ``decile_edges`` computed when it used numpy: the reference it must equal."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    quantiles = np.quantile(data, [q / 10 for q in range(1, 10)])
    return tuple(float(edge) for edge in np.unique(np.round(quantiles, 12)))


def test_monitor_deciles_equal_numpy_on_random_data() -> None:
    """Pure-Python deciles are numpy's, exactly (same bins for old and new profiles)."""
    rng = np.random.default_rng(20251202)
    samples = [[7.5], [1.0, 2.0], [0.1, 0.2, 0.3], [float("nan"), 1.0, float("inf"), -3.0]]
    for size in (*range(4, 40), 99, 100, 101, 1000, 4096):
        samples.append(list(rng.normal(size=size)))
        samples.append(list(rng.integers(-3, 4, size).astype(float)))
        samples.append(list(rng.lognormal(0, 3, size) * rng.choice([1e-9, 1.0, 1e9])))
        samples.append(list(np.round(rng.uniform(0, 1, size), 3)))
    for values in samples:
        assert decile_edges(values) == _numpy_decile_edges(values), values
    X = rng.normal(size=(500, 3))
    profile = ReferenceProfile.from_training_data(X, ["a", "b", "c"], rng.uniform(size=500), [0])
    assert profile.feature_edges == tuple(_numpy_decile_edges(list(X[:, j])) for j in range(3))
    assert ReferenceProfile.from_training_data(X.tolist(), ["a", "b", "c"], [0.5], [0]) == (
        ReferenceProfile.from_training_data(X, ["a", "b", "c"], [0.5], [0])
    )


@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_monitor_deciles_equal_numpy_on_any_floats(values: list[float]) -> None:
    # Below 1e290: numpy.round(x, 12) overflows (x * 1e12) beyond about 1.8e296.
    finite = [v for v in values if np.isfinite(v) and abs(v) < 1e290]
    if finite:
        assert decile_edges(finite) == _numpy_decile_edges(finite)


def test_monitor_profile_refuses_malformed_training_data() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        ReferenceProfile.from_training_data([[1.0, 2.0], [3.0]], ["a", "b"], [0.5], [0])
    with pytest.raises(ValueError, match="rows of 2 features"):
        ReferenceProfile.from_training_data([1.0, 2.0], ["a", "b"], [0.5], [0])
    with pytest.raises(ValueError):
        decile_edges([float("nan"), float("inf")])
