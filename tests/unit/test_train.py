"""The training tool: artifacts load, noise makes a measurably worse model on held-out data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kanaria.monitor.profile import decile_edges
from kanaria.sandbox.train import (
    artifact_path,
    flip_region_labels,
    load_artifact,
    load_split,
    train_revision,
)

OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"


def _held_out_accuracy(uri: str) -> float:
    artifact = load_artifact(uri)
    split = load_split(artifact.meta["dataset"], artifact.meta["split_seed"])
    names, _ = artifact.predict(split.X_test)
    truth = [split.classes[i] for i in split.y_test]
    return float(np.mean([a == b for a, b in zip(names, truth, strict=True)]))


def test_train_noisy_breast_cancer_model_is_worse_on_held_out(tmp_path: Path) -> None:
    clean = train_revision("breast_cancer", "v1", tmp_path / "v1")
    noisy = train_revision("breast_cancer", "v2", tmp_path / "v2", label_noise=0.1)
    clean_acc = _held_out_accuracy(str(clean))
    noisy_acc = _held_out_accuracy(f"file://{noisy}")
    assert clean_acc >= 0.93
    assert clean_acc - noisy_acc >= 0.05
    meta = json.loads((noisy / "meta.json").read_text())
    assert meta["test_accuracy"] == pytest.approx(noisy_acc)
    assert meta["label_noise"] == 0.1 and meta["noise_feature"]


@pytest.mark.parametrize("dataset", ["iris", "wine", "digits"])
def test_train_other_datasets_and_profile(tmp_path: Path, dataset: str) -> None:
    path = train_revision(dataset, "v1", tmp_path / dataset)
    artifact = load_artifact(str(path))
    split = load_split(dataset)
    assert artifact.profile.feature_names == split.feature_names
    assert artifact.profile.classes == split.classes
    assert all(1 <= len(edges) <= 9 for edges in artifact.profile.feature_edges)
    assert artifact.meta["test_accuracy"] > 0.85
    # Training deciles: about 10% of training rows fall at or below the first edge.
    j = int(np.argmax(split.X_train.std(axis=0)))
    share = float(np.mean(split.X_train[:, j] <= artifact.profile.feature_edges[j][0]))
    assert 0.05 <= share <= 0.5


def test_train_flip_region_labels_moves_only_the_top_region() -> None:
    X = np.column_stack([np.arange(100.0), np.zeros(100)])
    y = (np.arange(100) >= 50).astype(int)
    noisy, feature = flip_region_labels(X, y, 0.2, 2)
    assert feature == 0
    assert (noisy[80:] == 0).all() and (noisy[:80] == y[:80]).all()
    with pytest.raises(ValueError):
        flip_region_labels(X, y, 1.0, 2)


def test_train_artifact_path_accepts_uris() -> None:
    assert artifact_path("file:///tmp/a b") == Path("/tmp/a b")
    assert artifact_path("/tmp/x") == Path("/tmp/x")
    with pytest.raises(ValueError):
        artifact_path("s3://bucket/model")


def test_train_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kanaria.sandbox.train", "--dataset", "iris", "--version", "v9",
         "--out", str(tmp_path / "a"), "--delay-ms", "20", "--error-rate", "0.1"],
        env={"PYTHONPATH": str(OPERATOR_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert json.loads(out.stdout)["test_accuracy"] > 0.85
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["version"] == "v9" and meta["faults"] == {"delay_ms": 20.0, "error_rate": 0.1}


def test_train_profile_carries_the_validation_distribution_and_held_out_accuracy(tmp_path: Path) -> None:
    """Bins at the training deciles; counts, scores and accuracy of the held-out (validation)
    rows: the distribution and accuracy the revision was validated on."""
    path = train_revision("breast_cancer", "v1", tmp_path / "v1", label_noise=0.1)
    artifact = load_artifact(str(path))
    profile, split = artifact.profile, load_split("breast_cancer")
    assert profile.rows == len(split.X_test)
    assert profile.feature_counts is not None and profile.score_counts is not None
    for j, (edges, counts) in enumerate(zip(profile.feature_edges, profile.feature_counts, strict=True)):
        column = split.X_test[:, j]
        assert list(np.cumsum(counts)) == [*(int((column <= e).sum()) for e in edges), len(column)]
        assert edges == decile_edges(split.X_train[:, j])
    # Scores: the model's probability of its predicted class on the held-out rows.
    _, scores = artifact.predict(split.X_test)
    scores_arr = np.asarray(scores)
    assert list(np.cumsum(profile.score_counts)) == [
        *(int((scores_arr <= e).sum()) for e in profile.score_edges), len(scores),
    ]
    # Accuracy: on the held-out split, with the clean labels, as meta.json has it.
    assert profile.accuracy == pytest.approx(_held_out_accuracy(str(path)))
    assert profile.accuracy == artifact.meta["test_accuracy"]
    assert profile.accuracy_samples == len(split.y_test) == artifact.meta["n_test"]
    saved = json.loads((path / "profile.json").read_text())
    assert {"score_counts", "rows", "accuracy", "accuracy_samples"} <= saved.keys()
    assert all("counts" in feature for feature in saved["features"])


def test_train_cli_trains_on_rescaled_rows(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kanaria.sandbox.train", "--dataset", "breast_cancer", "--version", "v2",
         "--out", str(tmp_path / "b"), "--rescale-factor", "2", "--rescale-features", "mean area,0"],
        env={"PYTHONPATH": str(OPERATOR_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(out.stdout)["test_accuracy"] > 0.93
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["rescale"] == {"features": ["mean radius", "mean area"], "factor": 2.0}
    profile = load_artifact(str(tmp_path / "b")).profile
    # Trained, and profiled, on the rescaled rows: the edges are twice the training deciles.
    assert profile.feature_edges[3][0] == pytest.approx(2 * np.quantile(load_split("breast_cancer").X_train[:, 3], 0.1))
