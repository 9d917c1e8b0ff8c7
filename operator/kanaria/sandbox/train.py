"""Train a scikit-learn model revision on a bundled data set and write its artifact.

An artifact is a directory: ``model.joblib`` (a fitted pipeline), ``profile.json`` (the
:class:`~kanaria.monitor.ReferenceProfile`: deciles of the training data and of the training
prediction scores, the counts of the training rows and scores on those bins, and the held-out
accuracy with its number of rows) and ``meta.json`` (version, data set, held-out accuracy,
noise, shift, faults).

Label noise makes a measurably worse model: the labels of the ``label_noise`` fraction of
training rows with the highest values of the feature most correlated with the label are moved
to the next class. Flipping a whole feature region biases a linear model systematically,
unlike uniform noise, which logistic regression mostly averages away. On breast_cancer
(split seed 0) 0.1 takes held-out accuracy from about 96% to 88%, 0.3 to about 63%.

A covariate shift (:class:`Rescale`: features multiplied by a factor, labels unchanged, as a
recalibrated sensor would read them) hurts a model trained before it; ``rescale`` trains on
the training rows shifted that way and measures the held-out accuracy on shifted held-out
rows: the revision retrained on the shifted traffic, which recovers what the shift cost.

    python -m kanaria.sandbox.train --dataset breast_cancer --version v2 --out DIR \
        [--label-noise 0.1] [--seed N] [--delay-ms N] [--error-rate F] \
        [--rescale-factor 1.3 [--rescale-features NAME|INDEX,...]]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import joblib
import numpy as np
import sklearn
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from kanaria.monitor import ReferenceProfile

__all__ = [
    "DATASETS",
    "SIZE_FEATURES",
    "Artifact",
    "Rescale",
    "Split",
    "artifact_path",
    "flip_region_labels",
    "load_artifact",
    "load_split",
    "feature_index",
    "main",
    "make_model",
    "parse_features",
    "train_revision",
    "training_profile",
    "write_artifact",
]

DATASETS: tuple[str, ...] = ("breast_cancer", "wine", "iris", "digits")
MODEL_FILE = "model.joblib"
PROFILE_FILE = "profile.json"
META_FILE = "meta.json"

SIZE_FEATURES: tuple[str, ...] = (
    "mean radius", "mean perimeter", "mean area",
    "radius error", "perimeter error", "area error",
    "worst radius", "worst perimeter", "worst area",
)  # fmt: skip
"""breast_cancer's size measurements: what one imaging calibration scales together."""


@dataclass(frozen=True)
class Split:
    """A stratified train / held-out split of one bundled data set (labels are class indices)."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Artifact:
    """A loaded model revision."""

    path: Path
    model: Pipeline
    profile: ReferenceProfile
    meta: dict[str, Any]

    def predict(self, X: Any) -> tuple[list[str], list[float]]:
        """Predicted class names and the probability of each predicted class."""
        proba = self.model.predict_proba(np.asarray(X, dtype=float))
        best = np.argmax(proba, axis=1)
        labels = self.model.classes_[best]
        names = [self.profile.classes[int(label)] for label in labels]
        return names, [float(p) for p in proba[np.arange(len(best)), best]]


@dataclass(frozen=True)
class Rescale:
    """A covariate shift: ``features`` (names or indices) multiplied by ``factor`` in every
    row, the labels unchanged, as a recalibrated sensor would read them.

    The defaults read breast_cancer's nine size measurements (:data:`SIZE_FEATURES`) 30%
    larger. On the held-out split (split seed 0) the model :func:`train_revision` trains
    without a shift falls from 95.9% to 84.2% accuracy on shifted rows; trained on shifted
    rows (``rescale=Rescale()``) it is back at 95.9%: a scale is what the standardising step
    of the pipeline learns, so retraining undoes the harm exactly.
    """

    features: tuple[int | str, ...] = SIZE_FEATURES
    factor: float = 1.3

    def __post_init__(self) -> None:
        features = tuple(self.features)
        if not features:
            raise ValueError("a rescale needs at least one feature")
        object.__setattr__(self, "features", features)
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f"the rescale factor must be a positive number, not {self.factor!r}")

    def indices(self, feature_names: Sequence[str]) -> tuple[int, ...]:
        """The column indices of ``features`` among ``feature_names``."""
        found = {feature_index(feature, feature_names) for feature in self.features}
        return tuple(sorted(found))

    def apply(self, X: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        """A shifted copy of the rows ``X``."""
        shifted = np.array(X, dtype=float)
        shifted[:, list(self.indices(feature_names))] *= self.factor
        return shifted

    def describe(self, feature_names: Sequence[str]) -> dict[str, Any]:
        """``{"features": [names], "factor": F}``, for meta.json and reports."""
        return {
            "features": [feature_names[i] for i in self.indices(feature_names)],
            "factor": self.factor,
        }


def feature_index(feature: int | str, feature_names: Sequence[str]) -> int:
    """The column of ``feature`` (a name, or an index) among ``feature_names``."""
    if isinstance(feature, str):
        if feature not in feature_names:
            raise ValueError(f"no feature {feature!r}; the features are {list(feature_names)}")
        return list(feature_names).index(feature)
    index = int(feature)
    if not 0 <= index < len(feature_names):
        raise ValueError(f"feature index {index} out of range (0..{len(feature_names) - 1})")
    return index


def parse_features(text: str) -> tuple[int | str, ...]:
    """``"mean area,3"`` -> ``("mean area", 3)``: comma-separated names or indices."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return tuple(int(part) if part.isdigit() else part for part in parts)


def _loader(dataset: str) -> Callable[..., Any]:
    loaders: dict[str, Callable[..., Any]] = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
    }
    if dataset not in loaders:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    return loaders[dataset]


def load_split(dataset: str, split_seed: int = 0, test_size: float = 0.3) -> Split:
    """The same split for the trainer and the load generator, so load is never trained on."""
    bunch = _loader(dataset)()
    X_train, X_test, y_train, y_test = train_test_split(
        np.asarray(bunch.data, dtype=float),
        np.asarray(bunch.target),
        test_size=test_size,
        random_state=split_seed,
        stratify=bunch.target,
    )
    names = getattr(bunch, "feature_names", None)
    if names is None:
        names = [f"x{j}" for j in range(X_train.shape[1])]
    return Split(
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        feature_names=tuple(str(n) for n in names),
        classes=tuple(str(c) for c in bunch.target_names),
    )


def flip_region_labels(
    X: np.ndarray, y: np.ndarray, fraction: float, n_classes: int
) -> tuple[np.ndarray, int]:
    """Move the labels of the top ``fraction`` of rows on the most label-correlated feature.

    Returns the noisy labels and the chosen feature's index.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError("label noise must be in [0, 1)")
    std = X.std(axis=0)
    yc = y - y.mean()
    corr = np.abs(((X - X.mean(axis=0)) * yc[:, None]).mean(axis=0)) / np.where(
        std > 0, std * max(float(yc.std()), 1e-12), np.inf
    )
    feature = int(np.argmax(corr))
    noisy = y.copy()
    if fraction > 0:
        count = int(round(fraction * len(y)))
        region = np.argsort(X[:, feature], kind="stable")[len(y) - count :]
        noisy[region] = (noisy[region] + 1) % n_classes
    return noisy, feature


def train_revision(
    dataset: str,
    version: str,
    out: str | Path,
    *,
    label_noise: float = 0.0,
    seed: int = 0,
    delay_ms: float = 0.0,
    error_rate: float = 0.0,
    split_seed: int = 0,
    test_size: float = 0.3,
    rescale: Rescale | None = None,
) -> Path:
    """Train, evaluate on the held-out split, and write the artifact directory ``out``.

    With ``rescale`` both splits are shifted first: the model is trained on, profiled on and
    evaluated on shifted rows.
    """
    split = load_split(dataset, split_seed, test_size)
    X_train, X_test = split.X_train, split.X_test
    if rescale is not None:
        X_train = rescale.apply(X_train, split.feature_names)
        X_test = rescale.apply(X_test, split.feature_names)
    y_train, noise_feature = flip_region_labels(X_train, split.y_train, label_noise, len(split.classes))
    model = make_model(seed)
    model.fit(X_train, y_train)
    profile = training_profile(model, X_train, split.feature_names, split.classes, held_out=(X_test, split.y_test))
    meta: dict[str, Any] = {
        "version": version,
        "dataset": dataset,
        "test_accuracy": profile.accuracy,
        "train_accuracy_clean_labels": float(model.score(X_train, split.y_train)),
        "label_noise": label_noise,
        "noise_feature": split.feature_names[noise_feature] if label_noise > 0 else None,
        "rescale": None if rescale is None else rescale.describe(split.feature_names),
        "seed": seed,
        "split_seed": split_seed,
        "test_size": test_size,
        "n_train": len(split.y_train),
        "n_test": len(split.y_test),
        "feature_names": list(split.feature_names),
        "classes": list(split.classes),
        "faults": {"delay_ms": delay_ms, "error_rate": error_rate},
        "sklearn_version": sklearn.__version__,
    }
    return write_artifact(out, model, profile, meta)


def make_model(seed: int = 0) -> Pipeline:
    """The kind of model every revision is: standardised features, logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))


def training_profile(
    model: Pipeline, X_train: Any, feature_names: Sequence[str], classes: Sequence[str],
    held_out: tuple[Any, Any] | None = None,
) -> ReferenceProfile:
    """The reference profile of a fitted model: bins at the deciles of its training rows and
    of its prediction scores on them. With ``held_out`` (rows, labels), the validation set: the
    reference counts are of those rows and the model's scores on them, and its accuracy on them
    is the profile's offline accuracy — the distribution and the accuracy it was validated on,
    what the monitor compares live traffic with. Without, the training rows are counted."""
    train_scores = model.predict_proba(np.asarray(X_train, dtype=float)).max(axis=1)
    profile = ReferenceProfile.from_training_data(X_train, feature_names, train_scores, classes)
    if held_out is None:
        return profile
    rows, labels = np.asarray(held_out[0], dtype=float), held_out[1]
    scores = model.predict_proba(rows).max(axis=1)
    accuracy = float(model.score(rows, labels))
    counted = profile.with_counts(rows, scores)
    return replace(counted, accuracy=accuracy, accuracy_samples=len(labels))


def write_artifact(
    out: str | Path, model: Pipeline, profile: ReferenceProfile, meta: Mapping[str, Any]
) -> Path:
    """Write the artifact directory ``out``: model.joblib, profile.json and meta.json."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path / MODEL_FILE)
    (path / PROFILE_FILE).write_text(profile.to_json() + "\n")
    (path / META_FILE).write_text(json.dumps(dict(meta), indent=2) + "\n")
    return path


def artifact_path(uri: str) -> Path:
    """``file:///dir``, ``file:dir`` or a plain path -> the directory."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.netloc + parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ValueError(f"unsupported model URI scheme {parsed.scheme!r} (use file:// or a path)")
    return Path(uri)


def load_artifact(uri: str) -> Artifact:
    path = artifact_path(uri)
    model = joblib.load(path / MODEL_FILE)
    profile = ReferenceProfile.from_json((path / PROFILE_FILE).read_text())
    meta = json.loads((path / META_FILE).read_text())
    return Artifact(path=path, model=model, profile=profile, meta=meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.train", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument(
        "--rescale-factor",
        type=float,
        help="train on rows whose --rescale-features are multiplied by this factor",
    )
    parser.add_argument(
        "--rescale-features",
        type=parse_features,
        default=SIZE_FEATURES,
        help="comma-separated feature names or indices (default: breast_cancer's size features)",
    )
    args = parser.parse_args(argv)
    rescale = None
    if args.rescale_factor is not None:
        rescale = Rescale(args.rescale_features, args.rescale_factor)
    path = train_revision(
        args.dataset,
        args.version,
        args.out,
        label_noise=args.label_noise,
        seed=args.seed,
        delay_ms=args.delay_ms,
        error_rate=args.error_rate,
        split_seed=args.split_seed,
        rescale=rescale,
    )
    meta = json.loads((path / META_FILE).read_text())
    print(json.dumps({"artifact": str(path), "test_accuracy": meta["test_accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
