"""The reference in the profile: counts and accuracy, their JSON, and their export as gauges."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from kanaria.monitor import FixedBinHistogram, ModelMonitor, ReferenceProfile, bin_counts

# A profile.json as written before the reference existed: edges and classes only.
OLD_PROFILE_JSON = """{
  "features": [
    {"name": "a", "edges": [1.0, 2.0, 3.0]},
    {"name": "b", "edges": [10.0, 20.0]}
  ],
  "score_edges": [0.5, 0.9],
  "classes": ["no", "yes"]
}
"""

REFERENCE_FAMILIES = {
    "kanaria_model_reference_feature",
    "kanaria_model_reference_prediction",
    "kanaria_model_reference_accuracy",
    "kanaria_model_reference_accuracy_samples",
}


def _direct_counts(edges: list[float], values: list[float]) -> list[int]:
    """Counts per bin straight from the definition: the first edge a value does not exceed,
    else the overflow bin; non-finite values are not counted."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        if not math.isfinite(value):
            continue
        counts[next((i for i, edge in enumerate(edges) if value <= edge), len(edges))] += 1
    return counts


def _families(monitor: ModelMonitor) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family name -> (labels, value) of its samples, with the family's type checked."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(monitor.exposition().decode()):
        if family.name in REFERENCE_FAMILIES:
            assert family.type == "gauge", family.name
        out[family.name] = [(dict(s.labels), s.value) for s in family.samples]
    return out


def _training_rows(rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = np.column_stack(
        [rng.normal(size=rows), rng.integers(0, 3, rows).astype(float), rng.lognormal(0, 1, rows)]
    )
    return X, rng.uniform(0.5, 1.0, rows)


# -- counts ---------------------------------------------------------------------------------


@given(
    edges=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12, unique=True).map(sorted),
    values=st.lists(
        st.one_of(st.floats(-2e6, 2e6), st.sampled_from([math.nan, math.inf, -math.inf])),
        max_size=200,
    ),
)
@settings(max_examples=100, deadline=None)
def test_bin_counts_match_a_direct_count_and_the_live_histogram(
    edges: list[float], values: list[float]
) -> None:
    counts = bin_counts(edges, values + edges)  # the edges themselves go in their own bins
    assert list(counts) == _direct_counts(edges, values + edges)
    live = FixedBinHistogram(tuple(edges))
    for value in values + edges:
        live.observe(value)
    assert list(counts) == live.counts


def test_from_training_data_counts_every_row_on_its_own_bins() -> None:
    X, scores = _training_rows()
    X[5, 2] = math.nan  # a missing value is not counted
    profile = ReferenceProfile.from_training_data(
        X, ["x", "disc", "skew"], scores, ["no", "yes"], accuracy=0.9, accuracy_samples=120
    )
    assert profile.rows == 400
    assert profile.feature_counts is not None and profile.score_counts is not None
    for j, (edges, counts) in enumerate(zip(profile.feature_edges, profile.feature_counts, strict=True)):
        column = X[:, j]
        assert len(counts) == len(edges) + 1
        expected_cumulative = [int((column <= edge).sum()) for edge in edges]
        assert list(np.cumsum(counts)[:-1]) == expected_cumulative
        assert sum(counts) == int(np.isfinite(column).sum())
    assert sum(profile.feature_counts[2]) == 399
    expected = [int((scores <= edge).sum()) for edge in profile.score_edges]
    assert list(np.cumsum(profile.score_counts)[:-1]) == expected
    assert sum(profile.score_counts) == 400
    # Training deciles: about a tenth of the rows in each bin of a continuous feature.
    assert all(36 <= c <= 44 for c in profile.feature_counts[0])
    assert (profile.accuracy, profile.accuracy_samples) == (0.9, 120)


def test_with_counts_recounts_other_rows_on_the_same_bins() -> None:
    X, scores = _training_rows()
    profile = ReferenceProfile.from_training_data(X, ["x", "disc", "skew"], scores, ["no", "yes"])
    others = X[:50] + 100.0  # every value above every edge
    recounted = profile.with_counts(others, [2.0] * 50)
    assert recounted.feature_edges == profile.feature_edges
    assert recounted.rows == 50
    assert recounted.feature_counts is not None and recounted.score_counts is not None
    assert all(counts[-1] == 50 and sum(counts) == 50 for counts in recounted.feature_counts)
    assert recounted.score_counts[-1] == 50
    with pytest.raises(ValueError, match="expected 3"):
        profile.with_counts([[1.0, 2.0]], [0.5])


# -- JSON -----------------------------------------------------------------------------------


def test_profile_with_reference_round_trips_through_json() -> None:
    X, scores = _training_rows()
    profile = ReferenceProfile.from_training_data(
        X, ["x", "disc", "skew"], scores, ["no", "yes"], accuracy=0.875, accuracy_samples=200
    )
    text = profile.to_json()
    assert ReferenceProfile.from_json(text) == profile
    data = json.loads(text)
    assert [f["counts"] for f in data["features"]] == [list(c) for c in profile.feature_counts or ()]
    assert data["score_counts"] == list(profile.score_counts or ())
    assert (data["rows"], data["accuracy"], data["accuracy_samples"]) == (400, 0.875, 200)


def test_old_profile_json_still_loads_and_is_written_back_unchanged() -> None:
    profile = ReferenceProfile.from_json(OLD_PROFILE_JSON)
    assert profile.feature_edges == ((1.0, 2.0, 3.0), (10.0, 20.0))
    assert profile.feature_counts is None and profile.score_counts is None
    assert profile.rows is None and profile.accuracy is None and profile.accuracy_samples is None
    assert json.loads(profile.to_json()) == json.loads(OLD_PROFILE_JSON)


def test_profile_accepts_the_reference_in_parts() -> None:
    scores_only = ReferenceProfile(("a",), ((1.0,),), (0.5,), ("x",), score_counts=(3, 4), rows=7)
    assert ReferenceProfile.from_json(scores_only.to_json()) == scores_only
    accuracy_only = ReferenceProfile(("a",), ((1.0,),), (0.5,), ("x",), accuracy=1, accuracy_samples=5.0)
    assert (accuracy_only.accuracy, accuracy_only.accuracy_samples) == (1.0, 5)
    assert ReferenceProfile.from_json(accuracy_only.to_json()) == accuracy_only


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"feature_counts": ((1, 2),), "rows": 3}, "need 3 bin counts"),
        ({"feature_counts": ((1, 2, 3), (1, 1)), "rows": 6}, "2 count lists"),
        ({"feature_counts": ((1, -1, 3),), "rows": 3}, "negative"),
        ({"feature_counts": ((1, 0.5, 3),), "rows": 5}, "whole numbers"),
        ({"feature_counts": ((1, 2, 3),)}, "need rows"),
        ({"feature_counts": ((1, 2, 3),), "rows": 5}, "6 counted values in 5 rows"),
        ({"score_counts": (1, 2, 3, 4), "rows": 10}, "need 3 bin counts"),
        ({"rows": 10}, "give it with the counts"),
        ({"accuracy": 0.9}, "together"),
        ({"accuracy_samples": 10}, "together"),
        ({"accuracy": 1.2, "accuracy_samples": 10}, "within"),
        ({"accuracy": math.nan, "accuracy_samples": 10}, "within"),
        ({"accuracy": 0.9, "accuracy_samples": 0}, "whole number >= 1"),
    ],
)
def test_profile_refuses_a_malformed_reference(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReferenceProfile(("a",), ((1.0, 2.0),), (0.5, 0.9), ("x",), **fields)  # type: ignore[arg-type]


def test_profile_json_needs_counts_on_every_feature_or_none() -> None:
    data = json.loads(OLD_PROFILE_JSON)
    data["features"][0]["counts"] = [1, 1, 1, 1]
    data["rows"] = 4
    with pytest.raises(ValueError, match="every feature"):
        ReferenceProfile.from_dict(data)


# -- export ---------------------------------------------------------------------------------


def test_monitor_exports_the_reference_as_cumulative_gauges_on_the_live_le_strings() -> None:
    X, scores = _training_rows()
    names = ["x", "disc", "skew"]
    profile = ReferenceProfile.from_training_data(
        X, names, scores, ["no", "yes"], accuracy=0.91, accuracy_samples=150
    )
    monitor = ModelMonitor("m", "r1", profile)
    # Live traffic identical to the reference rows: every live bucket equals its reference.
    for i, (row, score) in enumerate(zip(X, scores, strict=True)):
        monitor.observe_request(f"q{i}", list(row), "yes", float(score), 0.01)
    families = _families(monitor)

    reference = {
        (labels["feature"], labels["le"]): value
        for labels, value in families["kanaria_model_reference_feature"]
        if labels["model"] == "m" and labels["revision"] == "r1"
    }
    live = {
        (labels["feature"], labels["le"]): value
        for labels, value in families["kanaria_model_feature"]
        if labels.get("le") is not None
    }
    assert reference == live
    assert len(reference) == sum(len(edges) + 1 for edges in profile.feature_edges)
    assert all(reference[(name, "+Inf")] == 400 for name in names)
    edges = profile.feature_edges[0]
    assert [reference[("x", repr(e))] for e in edges] == [float((X[:, 0] <= e).sum()) for e in edges]

    scores_ref = {labels["le"]: value for labels, value in families["kanaria_model_reference_prediction"]}
    scores_live = {
        labels["le"]: value for labels, value in families["kanaria_model_prediction"] if "le" in labels
    }
    assert scores_ref == scores_live and scores_ref["+Inf"] == 400
    assert families["kanaria_model_reference_accuracy"] == [({"model": "m", "revision": "r1"}, 0.91)]
    assert families["kanaria_model_reference_accuracy_samples"] == [
        ({"model": "m", "revision": "r1"}, 150.0)
    ]


def test_monitor_exports_only_the_reference_the_profile_has() -> None:
    old = ModelMonitor("m", "r1", ReferenceProfile.from_json(OLD_PROFILE_JSON))
    assert REFERENCE_FAMILIES.isdisjoint(_families(old))
    accuracy_only = ReferenceProfile.from_dict(
        {**json.loads(OLD_PROFILE_JSON), "accuracy": 0.8, "accuracy_samples": 50}
    )
    found = REFERENCE_FAMILIES & set(_families(ModelMonitor("m", "r1", accuracy_only)))
    assert found == {"kanaria_model_reference_accuracy", "kanaria_model_reference_accuracy_samples"}


def test_bin_counts_refuses_edges_out_of_order() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        bin_counts([2.0, 1.0], [1.5])
