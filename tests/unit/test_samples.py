"""Labelled samples from live traffic: the model server writes one line per label, over real
HTTP on 127.0.0.1, and the reader takes back exactly the lines of a time window."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from kanaria.sandbox import mirror
from kanaria.sandbox.modelserver import MIRRORED_HEADER, ModelServer, ServerConfig
from kanaria.sandbox.samples import SampleRecorder, read_samples, sample_file
from kanaria.sandbox.train import load_split, train_revision

IRIS = load_split("iris")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_revision("iris", "v1", tmp_path_factory.mktemp("art") / "v1")


def _server(artifact: Path, sample_dir: Path, revision: str = "rev1", **extra: object) -> ModelServer:
    config = ServerConfig(
        model_uri=f"file://{artifact}",
        model_name="iris",
        revision=revision,
        sample_dir=str(sample_dir),
        **extra,  # type: ignore[arg-type]
    )
    return ModelServer(config)


@pytest.fixture
def server(artifact: Path, tmp_path: Path) -> Iterator[ModelServer]:
    with _server(artifact, tmp_path / "samples") as srv:
        yield srv


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_label_that_matches_a_prediction_appends_one_sample_line(server: ModelServer, tmp_path: Path) -> None:
    rows = [list(r) for r in IRIS.X_test[:4]]
    labels = [int(y) for y in IRIS.y_test[:4]]
    before = time.time()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/predict", json={"features": rows[0]}, headers={"X-Request-Id": "a"})
        client.post("/predict", json={"instances": rows[1:], "request_ids": ["b", "c", "d"]})
        after = time.time()
        client.post("/feedback", json={"request_id": "a", "label": labels[0]})  # by index
        client.post("/feedback", json={"request_id": "b", "label": IRIS.classes[labels[1]]})  # by name
        client.post("/feedback", json={"request_id": "b", "label": labels[1]})  # again: no 2nd line
        client.post("/feedback", json={"request_id": "nobody", "label": 0})  # never predicted
        client.post("/feedback", json={"request_id": "c", "label": "no such class"})

    lines = _lines(tmp_path / "samples" / "iris.jsonl")
    assert [line["request_id"] for line in lines] == ["a", "b"]
    for line, row, label in zip(lines, rows, labels, strict=False):
        assert set(line) == {"t", "revision", "request_id", "features", "label"}
        assert line["revision"] == "rev1" and line["features"] == row and line["label"] == label
        assert before - 0.001 <= float(line["t"]) <= after + 0.001  # type: ignore[arg-type]
    assert len(server.samples or []) == 2  # c and d still wait for their labels


def test_a_shadows_mirrored_copies_write_no_samples(server: ModelServer, tmp_path: Path) -> None:
    assert MIRRORED_HEADER == mirror.MIRRORED_HEADER  # the header the sandbox's nginx sets
    row = list(IRIS.X_test[0])
    with httpx.Client(base_url=server.url, timeout=10) as client:
        mirrored = {"X-Request-Id": "m1", MIRRORED_HEADER: "1"}
        assert client.post("/predict", json={"features": row}, headers=mirrored).status_code == 200
        answer = client.post("/feedback", json={"request_id": "m1", "label": 0}, headers=mirrored)
        assert answer.json()["accepted"] is True  # the monitor still credits the shadow
    assert _lines(tmp_path / "samples" / "iris.jsonl") == []


def test_samples_record_the_features_the_client_sent(artifact: Path, tmp_path: Path) -> None:
    row = list(IRIS.X_test[0])
    with _server(artifact, tmp_path, input_scale=(0, 10.0), faults_enabled=True) as srv:
        srv.predict({"features": row, "request_id": "x"}, None)
        srv.feedback({"request_id": "x", "label": 1}, None)
    assert _lines(tmp_path / "iris.jsonl")[0]["features"] == row


def test_without_a_sample_dir_nothing_is_kept(artifact: Path) -> None:
    config = ServerConfig(model_uri=f"file://{artifact}", model_name="iris")
    with ModelServer(config) as srv:
        assert srv.samples is None
    assert ServerConfig.from_env({"KANARIA_MODEL_URI": "/x"}).sample_dir is None
    assert ServerConfig.from_env({"KANARIA_MODEL_URI": "/x", "KANARIA_SAMPLE_DIR": "/s"}).sample_dir == "/s"


def test_two_revisions_append_whole_lines_to_one_file(artifact: Path, tmp_path: Path) -> None:
    rows = [list(r) for r in IRIS.X_test] * 4  # 180 predictions per revision
    with _server(artifact, tmp_path, "rev1") as one, _server(artifact, tmp_path, "rev2") as two:

        def serve(server: ModelServer, worker: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for i in range(worker, len(rows), 3):
                    rid = f"{server.revision}-{i}"
                    client.post("/predict", json={"features": rows[i], "request_id": rid})
                    client.post("/feedback", json={"request_id": rid, "label": i % 3})

        with ThreadPoolExecutor(6) as pool:
            for future in [pool.submit(serve, s, w) for s in (one, two) for w in range(3)]:
                future.result()
    lines = _lines(tmp_path / "iris.jsonl")
    ids = sorted(str(line["request_id"]) for line in lines)
    assert ids == sorted(f"{rev}-{i}" for rev in ("rev1", "rev2") for i in range(len(rows)))
    assert all(line["features"] == rows[int(str(line["request_id"]).split("-")[1])] for line in lines)


def test_the_recorder_is_bounded_in_rows_and_time(tmp_path: Path) -> None:
    now = [1000.0]
    recorder = SampleRecorder(
        tmp_path / "m.jsonl", "r", IRIS.classes, max_rows=2, ttl_seconds=60, clock=lambda: now[0]
    )
    for rid in ("a", "b", "c"):
        recorder.remember(rid, [1.0, 2.0, 3.0, 4.0])
    assert not recorder.label("a", 0)  # pushed out by c
    now[0] += 61
    assert not recorder.label("b", 0)  # expired
    assert len(recorder) == 0 and recorder.written == 0
    recorder.remember("d", [1.0, 2.0, 3.0, 4.0])
    assert recorder.label("d", 2) and recorder.written == 1
    assert _lines(tmp_path / "m.jsonl") == [
        {"t": 1061.0, "revision": "r", "request_id": "d", "features": [1.0, 2.0, 3.0, 4.0], "label": 2}
    ]


def test_reading_keeps_the_window_and_skips_unusable_lines(tmp_path: Path) -> None:
    path = sample_file(tmp_path, "iris")
    good = [{"t": t, "revision": "r", "features": [1.0, 2.0, 3.0, 4.0], "label": t % 3} for t in range(10)]
    bad = [
        "not json",
        json.dumps({"t": 5, "features": [1.0], "label": 0}),  # wrong width
        json.dumps({"t": 5, "features": [1.0, 2.0, 3.0, 4.0], "label": 7}),  # no such class
        json.dumps({"features": [1.0, 2.0, 3.0, 4.0], "label": 0}),  # no time
    ]
    named = {"t": 4.5, "features": [0.5, 0.5, 0.5, 0.5], "label": "virginica"}
    path.write_text("\n".join([*map(json.dumps, good), *bad, json.dumps(named), ""]))

    samples = read_samples(path, 4, IRIS.classes, since=3, until=6)
    assert samples.t.tolist() == [3, 4, 5, 6, 4.5] and samples.y.tolist() == [0, 1, 2, 0, 2]
    assert samples.X.shape == (5, 4) and samples.skipped == 4
    assert len(read_samples(path, 4, IRIS.classes)) == 11
    assert len(read_samples(tmp_path / "none.jsonl", 4, IRIS.classes)) == 0
    with pytest.raises(ValueError, match="cannot name a sample file"):
        sample_file(tmp_path, "../etc/passwd")
