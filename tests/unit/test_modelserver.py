"""The reference model server over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers import metric_value

from kanaria.sandbox.modelserver import ModelServer, ModelServerProcess, ServerConfig
from kanaria.sandbox.train import load_split, train_revision


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_revision("iris", "v1", tmp_path_factory.mktemp("art") / "v1")


@pytest.fixture
def server(artifact: Path) -> Iterator[ModelServer]:
    config = ServerConfig(
        model_uri=f"file://{artifact}", model_name="iris", revision="rev1", fault_seed=1, faults_enabled=True
    )
    with ModelServer(config) as srv:
        yield srv


def test_modelserver_predicts_and_exports_metrics(server: ModelServer) -> None:
    split = load_split("iris")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        correct = 0
        for i, (row, label) in enumerate(zip(split.X_test[:20], split.y_test[:20], strict=True)):
            r = client.post("/predict", json={"features": list(row)}, headers={"X-Request-Id": f"q{i}"})
            assert r.status_code == 200
            body = r.json()
            assert body["request_id"] == f"q{i}" and body["revision"] == "rev1"
            assert r.headers["X-Kanaria-Revision"] == "rev1"
            assert body["prediction"] in split.classes and 0.3 <= body["score"] <= 1.0
            correct += body["prediction"] == split.classes[label]
            fb = client.post("/feedback", json={"request_id": f"q{i}", "label": int(label)})
            assert fb.json()["accepted"] is True
        batch = client.post("/predict", json={"instances": [list(r) for r in split.X_test[:3]], "request_ids": ["b1", "b2", "b3"]})
        assert [p["request_id"] for p in batch.json()["predictions"]] == ["b1", "b2", "b3"]
        assert client.post("/predict", json={"features": [1, 2]}).status_code == 400
        assert client.post("/predict", content=b"not json").status_code == 400
        assert client.get("/healthz").json()["status"] == "ok"
        text = client.get("/metrics").text

    assert metric_value(text, "kanaria_model_requests_total", model="iris", revision="rev1") == 23
    assert metric_value(text, "kanaria_model_errors_total", revision="rev1") == 0
    assert metric_value(text, "kanaria_model_labels_total", revision="rev1", outcome="correct") == correct
    assert metric_value(text, "kanaria_model_labels_total", revision="rev1", outcome="incorrect") == 20 - correct
    assert metric_value(text, "kanaria_model_feature_count", feature="petal length (cm)") == 23
    assert metric_value(text, "kanaria_model_prediction_count", revision="rev1") == 23
    assert metric_value(text, "kanaria_model_info", version="v1") == 1


def test_modelserver_faults_change_at_run_time(server: ModelServer) -> None:
    row = list(load_split("iris").X_test[0])
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/predict", json={"features": row}).status_code == 200
        assert client.post("/admin/faults", json={"error_rate": 1.0, "delay_ms": 30}).json() == {
            "delay_ms": 30.0,
            "error_rate": 1.0,
        }
        failed = client.post("/predict", json={"features": row})
        assert failed.status_code == 500 and failed.json()["revision"] == "rev1"
        assert client.post("/admin/faults", json={"error_rate": 2}).status_code == 400
        client.post("/admin/faults", json={"error_rate": 0.0, "delay_ms": 0})
        text = client.get("/metrics").text
    assert metric_value(text, "kanaria_model_requests_total") == 2
    assert metric_value(text, "kanaria_model_errors_total") == 1
    # The delayed request landed above the 25 ms bucket.
    assert metric_value(text, "kanaria_model_request_duration_seconds_bucket", le="0.025") == 1


def test_modelserver_cli_process_reads_env(artifact: Path) -> None:
    env = {
        "KANARIA_MODEL_URI": str(artifact),
        "KANARIA_MODEL_NAME": "flowers",
        "KANARIA_REVISION": "abc123",
        "KANARIA_MODEL_VERSION": "v7",
        "KANARIA_FAULT_ERROR_RATE": "1",
    }
    with ModelServerProcess(env, enable_faults=True) as proc:
        r = httpx.post(f"{proc.url}/predict", json={"features": [5.0, 3.0, 1.5, 0.2]}, timeout=10)
        assert r.status_code == 500
        health = httpx.get(f"{proc.url}/healthz", timeout=10).json()
        assert health["revision"] == "abc123" and health["version"] == "v7"
        text = httpx.get(f"{proc.url}/metrics", timeout=10).text
        assert metric_value(text, "kanaria_model_errors_total", model="flowers", revision="abc123") == 1
    assert proc.process.poll() is not None


def test_modelserver_config_requires_uri() -> None:
    with pytest.raises(ValueError):
        ServerConfig.from_env({})
    config = ServerConfig.from_env({"KANARIA_MODEL_URI": "/x", "KANARIA_FAULT_DELAY_MS": "5"})
    assert config.delay_ms == 5.0 and config.error_rate is None and config.revision == "local"


def test_input_scale_fault_is_parsed_and_refused_when_malformed() -> None:
    from kanaria.sandbox.modelserver import ServerConfig

    cfg = ServerConfig.from_env({"KANARIA_MODEL_URI": "/x", "KANARIA_FAULT_INPUT_SCALE": "3:10"})
    assert cfg.input_scale == (3, 10.0)
    import pytest

    with pytest.raises(ValueError, match="INDEX:FACTOR"):
        ServerConfig.from_env({"KANARIA_MODEL_URI": "/x", "KANARIA_FAULT_INPUT_SCALE": "three"})


def test_modelserver_fault_injection_is_off_unless_the_sandbox_turns_it_on(artifact: Path) -> None:
    config = ServerConfig(model_uri=f"file://{artifact}", model_name="iris", revision="rev1")
    assert config.faults_enabled is False
    row = list(load_split("iris").X_test[0])
    with ModelServer(config) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        for answer in (client.get("/admin/faults"), client.post("/admin/faults", json={"error_rate": 1.0})):
            assert answer.status_code == 404
            assert "fault injection is off" in answer.json()["error"]
            assert "--enable-faults" in answer.json()["error"]
        assert client.post("/predict", json={"features": row}).status_code == 200
        assert metric_value(client.get("/metrics").text, "kanaria_model_errors_total") == 0


@pytest.mark.parametrize(
    "env",
    [
        {"KANARIA_FAULT_ERROR_RATE": "0.5"},
        {"KANARIA_FAULT_DELAY_MS": "40"},
        {"KANARIA_FAULT_INPUT_SCALE": "0:3"},
        {"KANARIA_FAULT_SEED": "1"},
    ],
)
def test_modelserver_refuses_fault_settings_while_faults_are_off(artifact: Path, env: dict[str, str]) -> None:
    config = ServerConfig.from_env({"KANARIA_MODEL_URI": str(artifact), **env})
    with pytest.raises(ValueError, match=f"fault injection is off but {next(iter(env))}"):
        ModelServer(config)
    ModelServer(ServerConfig.from_env({"KANARIA_MODEL_URI": str(artifact), **env}, faults_enabled=True)).close()


def test_modelserver_refuses_an_artifact_with_faults_while_faults_are_off(tmp_path: Path) -> None:
    faulty = train_revision("iris", "v2", tmp_path / "v2", error_rate=0.2)
    with pytest.raises(ValueError, match="meta.json faults.error_rate"):
        ModelServer(ServerConfig(model_uri=str(faulty)))
    with ModelServer(ServerConfig(model_uri=str(faulty), faults_enabled=True)) as srv:
        assert srv.faults.as_dict() == {"delay_ms": 0.0, "error_rate": 0.2}


def test_modelserver_process_without_the_switch_answers_404_on_faults(artifact: Path) -> None:
    env = {"KANARIA_MODEL_URI": str(artifact), "KANARIA_REVISION": "plain"}
    with ModelServerProcess(env) as proc:
        answer = httpx.post(f"{proc.url}/admin/faults", json={"error_rate": 1.0}, timeout=10)
        assert answer.status_code == 404 and "fault injection is off" in answer.json()["error"]
    with pytest.raises(RuntimeError, match="fault injection is off"):
        ModelServerProcess({**env, "KANARIA_FAULT_ERROR_RATE": "1"}).stop()
