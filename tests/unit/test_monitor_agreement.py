"""Agreement with the served prediction: the monitor counts it, the model server passes it on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.helpers import metric_value

from kanaria.monitor import ModelMonitor, ReferenceProfile
from kanaria.sandbox.modelserver import ModelServer, ServerConfig
from kanaria.sandbox.train import load_split, train_revision


def _profile() -> ReferenceProfile:
    return ReferenceProfile(
        feature_names=("a", "b"),
        feature_edges=((1.0, 2.0, 3.0), (10.0, 20.0)),
        score_edges=(0.5, 0.9),
        classes=("no", "yes"),
    )


def test_monitor_counts_agreement_with_the_served_prediction() -> None:
    monitor = ModelMonitor("m", "shadow", _profile())
    text = monitor.exposition().decode()
    assert metric_value(text, "kanaria_model_agreement_total", revision="shadow", outcome="agree") == 0
    assert metric_value(text, "kanaria_model_agreement_total", revision="shadow", outcome="disagree") == 0
    for rid, own in (("q1", "yes"), ("q2", "no"), ("q3", "yes"), ("q4", "no")):
        monitor.observe_request(rid, [1, 1], own, 0.9, 0.01)
    assert monitor.feedback("q1", "yes", served_prediction="yes") is True  # agree, correct
    assert monitor.feedback("q2", "no", served_prediction="yes") is True  # disagree, correct
    assert monitor.feedback("q3", "no", served_prediction="no") is True  # disagree, incorrect
    assert monitor.feedback("q4", "no") is True  # no served prediction: not compared
    assert monitor.feedback("never", "no", served_prediction="no") is False  # unknown: not compared
    text = monitor.exposition().decode()
    assert metric_value(text, "kanaria_model_agreement_total", outcome="agree") == 1
    assert metric_value(text, "kanaria_model_agreement_total", outcome="disagree") == 2
    assert metric_value(text, "kanaria_model_labels_total", outcome="correct") == 3
    assert metric_value(text, "kanaria_model_labels_total", outcome="incorrect") == 1


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_revision("iris", "v1", tmp_path_factory.mktemp("agree") / "v1")


def test_modelserver_passes_served_prediction_to_the_monitor(artifact: Path) -> None:
    split = load_split("iris")
    row = [float(v) for v in split.X_test[0]]
    config = ServerConfig(model_uri=f"file://{artifact}", model_name="iris", revision="r1")
    with ModelServer(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        own = client.post("/predict", json={"features": row, "request_id": "a"}).json()["prediction"]
        client.post("/predict", json={"features": row, "request_id": "b"})
        client.post("/predict", json={"features": row, "request_id": "c"})
        other = next(c for c in split.classes if c != own)
        other_index = split.classes.index(other)
        fb = client.post("/feedback", json={"request_id": "a", "label": own, "served_prediction": own})
        assert fb.json()["accepted"] is True
        # A class index is understood like a label's.
        fb = client.post("/feedback", json={"request_id": "b", "label": 0, "served_prediction": other_index})
        assert fb.json()["accepted"] is True
        # Without served_prediction the old contract holds: labels only.
        assert client.post("/feedback", json={"request_id": "c", "label": 0}).json()["accepted"] is True
        text = client.get("/metrics").text
    assert metric_value(text, "kanaria_model_agreement_total", revision="r1", outcome="agree") == 1
    assert metric_value(text, "kanaria_model_agreement_total", revision="r1", outcome="disagree") == 1
    assert metric_value(text, "kanaria_model_labels_total", revision="r1", outcome="correct") + metric_value(
        text, "kanaria_model_labels_total", revision="r1", outcome="incorrect"
    ) == 3
