"""The retraining and validation Jobs on real scikit-learn data, with samples written the way
the model server writes them (:class:`SampleRecorder`), reporting through the termination log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kanaria.sandbox._job import run_job
from kanaria.sandbox.modelserver import ModelServer, ServerConfig
from kanaria.sandbox.retrain import HOLDOUT_FRACTION, RetrainRequest, _split, retrain
from kanaria.sandbox.samples import SampleRecorder, read_samples, sample_file
from kanaria.sandbox.train import load_artifact, load_split, train_revision
from kanaria.sandbox.validate import HELD_OUT_SPLIT, ValidateRequest, validate

CANCER = load_split("breast_cancer")
ALL_ROWS = np.vstack([CANCER.X_train, CANCER.X_test])
ALL_LABELS = np.concatenate([CANCER.y_train, CANCER.y_test])
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1: trained on 30% moved labels (about 63% accurate); v2: clean (about 96%)."""
    root = tmp_path_factory.mktemp("models")
    train_revision("breast_cancer", "v1", root / "v1", label_noise=0.3)
    train_revision("breast_cancer", "v2", root / "v2")
    return root


def write_samples(
    sample_dir: Path, rows: Iterable[Any], labels: Iterable[int], start: float, model: str = "cancer"
) -> None:
    """Through the model server's own recorder, one prediction a second from ``start``."""
    clock = [start]
    recorder = SampleRecorder(
        sample_file(sample_dir, model), "cancer-1", CANCER.classes, clock=lambda: clock[0]
    )
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        clock[0] = start + i
        recorder.remember(f"q{start}-{i}", row)
        assert recorder.label(f"q{start}-{i}", int(label))


def _result(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


# ------------------------------------------------------------------ retraining


def test_retraining_on_the_window_beats_the_current_model(models: Path, tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    # Before the window: labels all wrong (must not be learned from); in it: the truth.
    write_samples(samples, ALL_ROWS[:100], 1 - ALL_LABELS[:100], T0 - 1000)
    write_samples(samples, ALL_ROWS, ALL_LABELS, T0)
    request = RetrainRequest(
        model_name="cancer",
        model_uri=(models / "v1").as_uri(),
        sample_dir=samples,
        version="v1",
        since=T0,
        until=T0 + len(ALL_LABELS),
        output_dir=tmp_path / "out",
        evidence={"accuracy": {"canary": 0.63}},
    )
    said: list[str] = []
    result = retrain(request, clock=lambda: T0 + 5000.5, say=said.append)

    assert result["version"] == "v1-r1700005000"
    out = tmp_path / "out" / "v1-r1700005000"
    assert result["uri"] == out.as_uri()
    metrics = result["metrics"]
    assert metrics["samples"] == len(ALL_LABELS)
    assert abs(metrics["holdout"] - HOLDOUT_FRACTION * len(ALL_LABELS)) <= 2
    assert metrics["accuracy"] > 0.9 and metrics["current_accuracy"] < 0.75
    artifact = load_artifact(result["uri"])
    assert artifact.meta["version"] == "v1-r1700005000" and artifact.meta["dataset"] == "breast_cancer"
    assert artifact.meta["test_accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert artifact.meta["retrained_from"] == {"version": "v1", "uri": request.model_uri}
    assert artifact.meta["faults"] == {"delay_ms": 0.0, "error_rate": 0.0}
    assert artifact.profile.feature_names == CANCER.feature_names
    assert any("evidence" in line for line in said)
    assert any(f"{len(ALL_LABELS)} labelled samples from" in line for line in said)
    # The model server serves the new revision as it is.
    with ModelServer(ServerConfig(model_uri=result["uri"])) as server:
        code, answer = server.predict({"features": list(CANCER.X_test[0])}, None)
    assert code == 200 and answer["version"] == "v1-r1700005000"


def test_repeats_of_a_row_stay_on_one_side_of_the_holdout(tmp_path: Path) -> None:
    write_samples(tmp_path, list(CANCER.X_test) * 3, list(CANCER.y_test) * 3, T0)
    samples = read_samples(sample_file(tmp_path, "cancer"), 30, CANCER.classes)
    X_train, X_hold, _, _ = _split(samples, seed=0)
    assert not {tuple(r) for r in X_train} & {tuple(r) for r in X_hold}
    assert 0.15 < len(X_hold) / len(samples) < 0.35


def test_the_retraining_job_reports_too_few_samples(models: Path, tmp_path: Path) -> None:
    write_samples(tmp_path / "s", ALL_ROWS[:50], ALL_LABELS[:50], T0)
    log = tmp_path / "termination-log"
    env = {
        "KANARIA_MODEL_NAME": "cancer",
        "KANARIA_MODEL_URI": (models / "v1").as_uri(),
        "KANARIA_SAMPLE_DIR": str(tmp_path / "s"),
        "KANARIA_OUTPUT_DIR": str(tmp_path / "out"),
        "KANARIA_TERMINATION_LOG": str(log),
    }
    assert run_job(lambda e: retrain(RetrainRequest.from_env(e), say=lambda _: None), env) == 1
    error = _result(log)["error"]
    assert "only 50 labelled samples of model cancer" in error and "at least 200" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"KANARIA_DATA_SINCE": "yesterday"}, "KANARIA_DATA_SINCE must be unix seconds"),
        ({"KANARIA_DATA_SINCE": "200", "KANARIA_DATA_UNTIL": "100"}, "is not after KANARIA_DATA_SINCE"),
        ({"KANARIA_MIN_SAMPLES": "many"}, "KANARIA_MIN_SAMPLES must be a whole number"),
        ({"KANARIA_MODEL_URI": ""}, "KANARIA_MODEL_URI is not set"),
        ({"KANARIA_MODEL_URI": "file:///nonexistent/v1"}, "cannot load the current model"),
        ({"KANARIA_EVIDENCE": "{oops"}, "KANARIA_EVIDENCE is not JSON"),
        ({"KANARIA_NEW_VERSION": "../../v9"}, "cannot name an artifact"),
    ],
)
def test_the_retraining_job_refuses_bad_input(
    models: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    write_samples(tmp_path / "s", ALL_ROWS, ALL_LABELS, T0)
    log = tmp_path / "termination-log"
    env = {
        "KANARIA_MODEL_NAME": "cancer",
        "KANARIA_MODEL_URI": (models / "v1").as_uri(),
        "KANARIA_SAMPLE_DIR": str(tmp_path / "s"),
        "KANARIA_OUTPUT_DIR": str(tmp_path / "out"),
        "KANARIA_TERMINATION_LOG": str(log),
        **change,
    }
    assert run_job(lambda e: retrain(RetrainRequest.from_env(e), say=lambda _: None), env) == 1
    assert message in _result(log)["error"]


def test_the_retraining_entrypoint_writes_beside_the_current_artifact(models: Path, tmp_path: Path) -> None:
    current = tmp_path / "models" / "v1"
    train_revision("breast_cancer", "v1", current, label_noise=0.3)
    write_samples(tmp_path / "s", ALL_ROWS, ALL_LABELS, T0)
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "KANARIA_MODEL_NAME": "cancer",
        "KANARIA_MODEL_URI": current.as_uri(),
        "KANARIA_SAMPLE_DIR": str(tmp_path / "s"),
        "KANARIA_TERMINATION_LOG": str(log),
        "KANARIA_MIN_SAMPLES": "300",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kanaria.sandbox.retrain"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = _result(log)
    assert result["version"].startswith("v1-r")
    assert Path(load_artifact(result["uri"]).path).parent == tmp_path / "models" / "retrained"
    assert "569 labelled samples" in done.stdout and f"result: {json.dumps(result, separators=(',', ':'))}" in done.stdout


# ------------------------------------------------------------------ validation


def test_validation_measures_both_models_on_the_live_samples(models: Path, tmp_path: Path) -> None:
    write_samples(tmp_path, ALL_ROWS[:50], ALL_LABELS[:50], T0 - 500)  # before the window
    write_samples(tmp_path, ALL_ROWS[100:400], ALL_LABELS[100:400], T0)
    request = ValidateRequest(
        candidate_uri=(models / "v2").as_uri(),
        stable_uri=(models / "v1").as_uri(),
        model_name="cancer",
        sample_dir=tmp_path,
        since=T0,
    )
    result = validate(request, say=lambda _: None)

    rows, labels = ALL_ROWS[100:400], ALL_LABELS[100:400]
    expected = {
        v: round(float(load_artifact(str(models / v)).model.score(rows, labels)), 6) for v in ("v1", "v2")
    }
    assert result == {
        "candidate": {"accuracy": expected["v2"]},
        "stable": {"accuracy": expected["v1"]},
        "samples": 300,
        "holdout": "live samples since 2023-11-14T22:13:20Z",
        "live_samples": 300,
        "seen_by_candidate": 0,
        "versions": {"candidate": "v2", "stable": "v1"},
    }
    assert expected["v2"] > expected["v1"]


def test_validation_falls_back_to_the_held_out_split(models: Path, tmp_path: Path) -> None:
    write_samples(tmp_path, ALL_ROWS[:20], ALL_LABELS[:20], T0)
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "KANARIA_CANDIDATE_URI": str(models / "v2"),
        "KANARIA_STABLE_URI": (models / "v1").as_uri(),
        "KANARIA_MODEL_NAME": "cancer",
        "KANARIA_SAMPLE_DIR": str(tmp_path),
        "KANARIA_DATA_SINCE": str(T0),
        "KANARIA_TERMINATION_LOG": str(log),
    }
    done = subprocess.run(
        [sys.executable, "-m", "kanaria.sandbox.validate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = _result(log)
    assert result["holdout"] == HELD_OUT_SPLIT and result["live_samples"] == 20
    assert result["samples"] == len(CANCER.y_test)
    # The same rows train.py measured each revision's test accuracy on.
    for role, version in (("candidate", "v2"), ("stable", "v1")):
        meta = load_artifact(str(models / version)).meta
        assert result[role] == {"accuracy": pytest.approx(meta["test_accuracy"], abs=1e-6)}
        assert result["versions"][role] == version


def test_validation_without_a_stable_revision(models: Path) -> None:
    result = validate(ValidateRequest(candidate_uri=str(models / "v2")), say=lambda _: None)
    assert result["stable"] is None and result["versions"] == {"candidate": "v2", "stable": None}
    assert result["holdout"] == HELD_OUT_SPLIT
    assert result["candidate"]["accuracy"] > 0.9


def test_validation_counts_the_rows_a_retrained_candidate_has_seen(models: Path, tmp_path: Path) -> None:
    # Live traffic in the sandbox replays the held-out split; a candidate retrained on it has
    # seen those rows, and the result says how many of the holdout it has seen.
    write_samples(tmp_path, list(CANCER.X_test) * 2, list(CANCER.y_test) * 2, T0)
    retrained = retrain(
        RetrainRequest(
            model_name="cancer",
            model_uri=(models / "v1").as_uri(),
            sample_dir=tmp_path,
            until=T0 + 10_000,
            output_dir=tmp_path / "out",
        ),
        say=lambda _: None,
    )
    request = ValidateRequest(candidate_uri=retrained["uri"], model_name="cancer", sample_dir=tmp_path, since=T0 + 20_000)
    result = validate(request, say=lambda _: None)
    assert result["holdout"] == HELD_OUT_SPLIT and result["seen_by_candidate"] == len(CANCER.y_test)


def test_validation_refuses_models_that_do_not_fit_together(models: Path, tmp_path: Path) -> None:
    iris = train_revision("iris", "i1", tmp_path / "i1")
    log = tmp_path / "termination-log"
    env = {
        "KANARIA_CANDIDATE_URI": str(models / "v2"),
        "KANARIA_STABLE_URI": str(iris),
        "KANARIA_TERMINATION_LOG": str(log),
    }
    assert run_job(lambda e: validate(ValidateRequest.from_env(e), say=lambda _: None), env) == 1
    assert "differ in features" in _result(log)["error"]
    env["KANARIA_CANDIDATE_URI"] = str(tmp_path / "missing")
    assert run_job(lambda e: validate(ValidateRequest.from_env(e), say=lambda _: None), env) == 1
    assert "cannot load the candidate model" in _result(log)["error"]
