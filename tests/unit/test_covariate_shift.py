"""A covariate shift that hurts the served model and that retraining fixes, measured offline,
through the real model server, and sent by the real load generator; and what the model server
exports about its reference and its confidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.helpers import metric_sum, metric_value, wait_for

from kanaria.sandbox.loadgen import Drift, LoadGenerator, Rescale, main
from kanaria.sandbox.modelserver import ModelServer, ServerConfig
from kanaria.sandbox.train import SIZE_FEATURES, Artifact, load_artifact, load_split, train_revision

DATASET = "breast_cancer"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shift")
    return {
        "v1": train_revision(DATASET, "v1", root / "v1"),
        "retrained": train_revision(DATASET, "v2", root / "v2", rescale=Rescale()),
    }


@pytest.fixture
def server(artifacts: dict[str, Path]) -> Iterator[ModelServer]:
    with ModelServer(ServerConfig(f"file://{artifacts['v1']}", "bc", "r1")) as srv:
        yield srv


def _accuracy(artifact: Artifact, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy on rows X and the mean score (probability of the predicted class)."""
    split = load_split(DATASET)
    names, scores = artifact.predict(X)
    truth = [split.classes[int(label)] for label in y]
    return float(np.mean([a == b for a, b in zip(names, truth, strict=True)])), float(np.mean(scores))


def test_rescale_hurts_the_served_model_and_retraining_recovers(artifacts: dict[str, Path]) -> None:
    split = load_split(DATASET)
    shift = Rescale()
    assert shift.features == SIZE_FEATURES and shift.factor == 1.3
    shifted_test = shift.apply(split.X_test, split.feature_names)
    v1 = load_artifact(str(artifacts["v1"]))
    retrained = load_artifact(str(artifacts["retrained"]))

    clean, clean_confidence = _accuracy(v1, split.X_test, split.y_test)
    hurt, hurt_confidence = _accuracy(v1, shifted_test, split.y_test)
    recovered, _ = _accuracy(retrained, shifted_test, split.y_test)
    # The numbers the module docs quote (171 held-out rows: 164, 144 and 164 correct).
    assert (round(clean, 3), round(hurt, 3), round(recovered, 3)) == (0.959, 0.842, 0.959)
    assert clean - hurt >= 0.08
    assert recovered >= clean - 0.02
    # Confidently wrong: the mean confidence falls far less than the accuracy.
    assert clean_confidence - hurt_confidence < (clean - hurt) / 2
    # The retrained revision's own reference is the shifted data, its accuracy the recovered one.
    assert retrained.profile.accuracy == pytest.approx(recovered)
    assert retrained.meta["rescale"] == {"features": list(SIZE_FEATURES), "factor": 1.3}
    assert v1.meta["rescale"] is None
    area = split.feature_names.index("mean area")
    assert retrained.profile.feature_edges[area][0] == pytest.approx(1.3 * v1.profile.feature_edges[area][0])


def test_rescale_resolves_names_and_indices_and_refuses_nonsense() -> None:
    names = load_split(DATASET).feature_names
    assert Rescale(["mean area", 0, "mean radius"], 2.0).indices(names) == (0, 3)
    X = np.ones((2, len(names)))
    shifted = Rescale(("mean area",), 2.0).apply(X, names)
    assert shifted[:, 3].tolist() == [2.0, 2.0] and shifted.sum() == X.sum() + 2 and X.sum() == 60
    for bad in ((), ("no such feature",), (30,)):
        with pytest.raises(ValueError):
            Rescale(bad, 1.3).indices(names)
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Rescale(factor=factor)


def test_modelserver_score_is_the_predicted_class_probability_and_its_mean_the_accuracy(
    server: ModelServer,
) -> None:
    split = load_split(DATASET)
    rows = [list(map(float, row)) for row in split.X_test]
    body = httpx.post(f"{server.url}/predict", json={"instances": rows}, timeout=30).json()
    proba = server.artifact.model.predict_proba(split.X_test)
    classes = server.artifact.profile.classes
    for answer, p in zip(body["predictions"], proba, strict=True):
        assert answer["score"] == pytest.approx(p.max())
        assert answer["prediction"] == classes[int(server.artifact.model.classes_[p.argmax()])]
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = metric_value(text, "kanaria_model_prediction_sum", revision="r1")
    count = metric_value(text, "kanaria_model_prediction_count", revision="r1")
    assert count == len(rows)
    assert total / count == pytest.approx(float(proba.max(axis=1).mean()))
    # Calibrated on unshifted traffic: the mean confidence is the accuracy, within 2 points.
    accuracy = metric_value(text, "kanaria_model_reference_accuracy", model="bc", revision="r1")
    assert abs(total / count - accuracy) < 0.02


def test_modelserver_exports_its_artifacts_reference(server: ModelServer) -> None:
    profile = server.artifact.profile
    assert profile.feature_counts is not None and profile.score_counts is not None
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    labels = {"model": "bc", "revision": "r1"}
    for name, edges, counts in zip(
        profile.feature_names, profile.feature_edges, profile.feature_counts, strict=True
    ):
        cumulative = np.cumsum(counts).tolist()
        for le, expected in zip([*map(repr, edges), "+Inf"], cumulative, strict=True):
            assert metric_value(text, "kanaria_model_reference_feature", feature=name, le=le, **labels) == expected
    les = {le for le in _label_values(text, "kanaria_model_reference_feature", "le", feature="mean area")}
    assert les == set(_label_values(text, "kanaria_model_feature_bucket", "le", feature="mean area"))
    assert metric_value(text, "kanaria_model_reference_prediction", le="+Inf", **labels) == profile.rows == 171
    assert metric_value(text, "kanaria_model_reference_accuracy", **labels) == profile.accuracy
    assert metric_value(text, "kanaria_model_reference_accuracy_samples", **labels) == 171


def _label_values(text: str, name: str, label: str, **labels: str) -> list[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def test_loadgen_rescaled_traffic_costs_the_served_model_what_offline_says(server: ModelServer) -> None:
    split = load_split(DATASET)
    v1 = server.artifact
    expected = {
        shifted: round(n * _accuracy(v1, X, split.y_test)[0])
        for shifted, X, n in (
            (False, split.X_test, len(split.y_test)),
            (True, Rescale().apply(split.X_test, split.feature_names), len(split.y_test)),
        )
    }
    # Every held-out row once (the generator's order is a permutation of them).
    total = len(split.y_test)
    clean = LoadGenerator(server.url, DATASET, rate=2000, total=total, feedback=False).run()
    shifted = LoadGenerator(server.url, DATASET, rate=2000, total=total, feedback=False, rescale=Rescale()).run()
    assert clean.ok == shifted.ok == total
    assert (clean.rescaled, shifted.rescaled) == (0, total)
    assert clean.correct_by_revision["r1"] == expected[False] == 164
    assert shifted.correct_by_revision["r1"] == expected[True] == 144


def test_loadgen_rescale_changes_while_it_runs(server: ModelServer) -> None:
    feature = "mean area"
    profile = server.artifact.profile
    edges = profile.feature_edges[profile.feature_names.index(feature)]
    top = repr(edges[-1])

    def above_top() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        count = metric_sum(text, "kanaria_model_feature_count", feature=feature)
        return count - metric_sum(text, "kanaria_model_feature_bucket", feature=feature, le=top)

    gen = LoadGenerator(server.url, DATASET, rate=200, duration=60, feedback=False, seed=2).start()
    try:
        wait_for(lambda: gen.stats().ok >= 20, 20, interval=0.02, message="20 unshifted answers")
        # Far beyond every training value: each rescaled request lands above the last edge.
        first = gen.set_rescale(Rescale((feature,), 1000.0))
        wait_for(lambda: gen.stats().ok >= first + 30, 20, interval=0.02, message="30 rescaled answers")
        last = gen.set_rescale(None)
        wait_for(lambda: gen.stats().ok >= last + 20, 20, interval=0.02, message="20 answers after")
    finally:
        gen.stop()
    assert gen.join(timeout=10)
    stats = gen.stats()
    assert first >= 20 and last - first >= 30 and stats.sent - last >= 20
    assert stats.rescaled == last - first
    assert stats.ok == stats.sent
    # Above the top decile: every request in between, and of the others only those whose
    # held-out row lies there anyway (each row comes once per pass over the held-out rows).
    split = load_split(DATASET)
    natural = int((split.X_test[:, split.feature_names.index(feature)] > edges[-1]).sum())
    passes = -(-stats.sent // len(split.y_test))
    assert natural == 15
    assert stats.rescaled <= above_top() <= stats.rescaled + natural * passes


def test_loadgen_drift_changes_while_it_runs(server: ModelServer) -> None:
    gen = LoadGenerator(server.url, DATASET, rate=200, duration=60, feedback=False, seed=3).start()
    try:
        wait_for(lambda: gen.stats().ok >= 10, 20, interval=0.02, message="10 answers")
        first = gen.set_drift(Drift("mean radius", 5.0, 1.0))
        wait_for(lambda: gen.stats().ok >= first + 10, 20, interval=0.02, message="10 drifted answers")
        last = gen.set_drift(None)
        wait_for(lambda: gen.stats().ok >= last + 10, 20, interval=0.02, message="10 answers after")
    finally:
        gen.stop()
    assert gen.join(timeout=10)
    assert gen.stats().drifted == last - first
    with pytest.raises(ValueError, match="no feature"):
        gen.set_drift(Drift("no such feature", 1.0))


def test_loadgen_cli_rescales_from_the_start_or_later(
    server: ModelServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--url", server.url, "--dataset", DATASET, "--rate", "500", "--no-feedback"]
    assert main([*base, "--total", "40", "--rescale-factor", "1.3"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["sent"] == stats["ok"] == stats["rescaled"] == 40
    assert main([*base, "--total", "20", "--rescale-factor", "2", "--rescale-features", "mean area,0"]) == 0
    assert json.loads(capsys.readouterr().out)["rescaled"] == 20
    # Begins 0.3 s into a 1 s run at 100 requests per second.
    argv = [*base, "--rate", "100", "--duration", "1", "--rescale-factor", "1.3", "--rescale-after", "0.3"]
    assert main(argv) == 0
    later = json.loads(capsys.readouterr().out)
    assert 0 < later["rescaled"] < later["sent"]
    with pytest.raises(SystemExit):
        main([*base, "--total", "1", "--rescale-factor", "1.3", "--rescale-features", "petal width"])
    with pytest.raises(SystemExit):
        main([*base, "--total", "1", "--rescale-factor", "0"])
