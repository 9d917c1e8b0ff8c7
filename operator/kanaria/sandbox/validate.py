"""The validation Job: a candidate model revision and the stable one, measured offline on the
same labelled rows.

    python -m kanaria.sandbox.validate

The rows are the recent labelled live samples (:mod:`kanaria.sandbox.samples`) when there are
enough of them, else the data set's held-out split (:func:`kanaria.sandbox.train.load_split`
with the candidate's ``meta.json`` data set, split seed and test size), which no revision was
trained on.

Environment:

- ``KANARIA_CANDIDATE_URI`` (required): the candidate's artifact (``file://`` or a path).
- ``KANARIA_STABLE_URI``: the stable revision's artifact; unset when there is none yet.
- ``KANARIA_MODEL_NAME``: names the sample file (default: the candidate's data set).
- ``KANARIA_SAMPLE_DIR``, ``KANARIA_DATA_SINCE`` (and optionally ``KANARIA_DATA_UNTIL``): the
  live samples to use, by unix time of their prediction.
- ``KANARIA_MIN_SAMPLES``: fewest live samples to use them (default 200).
- ``KANARIA_TERMINATION_LOG``: where the result goes (default ``/dev/termination-log``).

Result (exit 0 whenever both models could be evaluated; the operator decides what passes)::

    {"candidate": {"accuracy": 0.95}, "stable": {"accuracy": 0.91},
     "samples": 240, "holdout": "live samples since 2024-06-01T12:00:00Z",
     "live_samples": 240, "seen_by_candidate": 0, "versions": {"candidate": "v2", "stable": "v1"}}

``stable`` (and its version) is null without a stable revision; the scores under
``candidate`` and ``stable`` are numbers only, named as the operator's ``metric`` names them.

``holdout`` is ``"live samples since ..."`` or ``"held-out split"``; ``live_samples`` is how
many live samples were found (fewer than the minimum: the split was used).
``seen_by_candidate`` counts the rows the candidate was trained on: a candidate the retraining
Job made (``retrained_from`` in its meta.json) learned from the live samples of its data
window, and in the sandbox live traffic replays the held-out split, so its score on rows it
has seen is optimistic (null when the samples cannot be read; 0 for other candidates).
Artifacts that cannot be loaded or do not fit together exit 1 with ``{"error": "..."}``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kanaria.sandbox._job import JobError, env_int, env_time, iso, required, run_job
from kanaria.sandbox.samples import read_samples, sample_file
from kanaria.sandbox.train import Artifact, load_artifact, load_split

__all__ = ["HELD_OUT_SPLIT", "Holdout", "ValidateRequest", "main", "validate"]

DEFAULT_MIN_SAMPLES = 200
HELD_OUT_SPLIT = "held-out split"


@dataclass(frozen=True)
class ValidateRequest:
    candidate_uri: str
    stable_uri: str | None = None
    model_name: str | None = None
    sample_dir: Path | None = None
    since: float | None = None
    until: float | None = None
    min_samples: int = DEFAULT_MIN_SAMPLES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ValidateRequest:
        sample_dir = env.get("KANARIA_SAMPLE_DIR", "").strip()
        return cls(
            candidate_uri=required(env, "KANARIA_CANDIDATE_URI"),
            stable_uri=env.get("KANARIA_STABLE_URI", "").strip() or None,
            model_name=env.get("KANARIA_MODEL_NAME", "").strip() or None,
            sample_dir=Path(sample_dir) if sample_dir else None,
            since=env_time(env, "KANARIA_DATA_SINCE"),
            until=env_time(env, "KANARIA_DATA_UNTIL"),
            min_samples=env_int(env, "KANARIA_MIN_SAMPLES", DEFAULT_MIN_SAMPLES),
        )


@dataclass(frozen=True)
class Holdout:
    """The labelled rows both models are measured on, and where they came from."""

    X: np.ndarray
    y: np.ndarray
    source: str
    live_samples: int


def _load(uri: str, role: str) -> Artifact:
    try:
        return load_artifact(uri)
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot load the {role} model from {uri}: {exc}") from None


def _check_compatible(candidate: Artifact, stable: Artifact) -> None:
    for what, mine, theirs in (
        ("features", candidate.profile.feature_names, stable.profile.feature_names),
        ("classes", candidate.profile.classes, stable.profile.classes),
    ):
        if tuple(mine) != tuple(theirs):
            raise JobError(
                f"the candidate and the stable model differ in {what}: {list(mine)} vs {list(theirs)}"
            )


def _live_source(since: float | None, until: float | None) -> str:
    text = "live samples"
    if since is not None:
        text += f" since {iso(since)}"
    if until is not None:
        text += f" until {iso(until)}"
    return text


def choose_holdout(request: ValidateRequest, candidate: Artifact) -> Holdout:
    """Recent live samples when there are at least ``min_samples``, else the held-out split."""
    name = request.model_name or str(candidate.meta.get("dataset") or "")
    live = 0
    if request.sample_dir is not None and name:
        try:
            path = sample_file(request.sample_dir, name)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        profile = candidate.profile
        samples = read_samples(
            path, profile.n_features, profile.classes, since=request.since, until=request.until
        )
        live = len(samples)
        if live >= request.min_samples:
            return Holdout(samples.X, samples.y, _live_source(request.since, request.until), live)
    dataset = candidate.meta.get("dataset")
    if not dataset:
        raise JobError(
            f"only {live} live samples (at least {request.min_samples} needed) and the "
            "candidate's meta.json names no data set to take the held-out split from"
        )
    try:
        split = load_split(
            str(dataset),
            int(candidate.meta.get("split_seed", 0)),
            float(candidate.meta.get("test_size", 0.3)),
        )
    except ValueError as exc:
        raise JobError(f"cannot load the held-out split: {exc}") from None
    return Holdout(split.X_test, split.y_test, HELD_OUT_SPLIT, live)


def seen_by_candidate(request: ValidateRequest, candidate: Artifact, holdout: Holdout) -> int | None:
    """How many holdout rows are among the samples a retrained candidate learned from."""
    meta = candidate.meta
    if "retrained_from" not in meta:
        return 0
    name = request.model_name or str(meta.get("dataset") or "")
    if request.sample_dir is None or not name:
        return None
    try:
        path = sample_file(request.sample_dir, name)
    except ValueError:
        return None
    profile = candidate.profile
    trained = read_samples(
        path,
        profile.n_features,
        profile.classes,
        since=meta.get("data_since"),
        until=meta.get("data_until") or meta.get("retrained_at"),
    )
    seen = {tuple(row) for row in trained.X.tolist()}
    return sum(tuple(row) in seen for row in holdout.X.tolist())


def accuracy(artifact: Artifact, X: np.ndarray, y: np.ndarray) -> float:
    if X.shape[1] != artifact.profile.n_features:
        raise JobError(
            f"the rows have {X.shape[1]} features, the model at {artifact.path} takes "
            f"{artifact.profile.n_features}"
        )
    return float(np.mean(artifact.model.predict(X) == y))


def _scored(artifact: Artifact, holdout: Holdout) -> dict[str, float]:
    return {"accuracy": round(accuracy(artifact, holdout.X, holdout.y), 6)}


def _version(artifact: Artifact | None) -> str | None:
    return None if artifact is None else str(artifact.meta.get("version", ""))


def validate(request: ValidateRequest, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate the candidate (and the stable model) on the same rows; returns the result."""
    candidate = _load(request.candidate_uri, "candidate")
    stable = _load(request.stable_uri, "stable") if request.stable_uri else None
    if stable is not None:
        _check_compatible(candidate, stable)
    holdout = choose_holdout(request, candidate)
    say(f"{len(holdout.y)} rows from the {holdout.source} ({holdout.live_samples} live samples found)")
    result: dict[str, Any] = {
        "candidate": _scored(candidate, holdout),
        "stable": None if stable is None else _scored(stable, holdout),
        "samples": len(holdout.y),
        "holdout": holdout.source,
        "live_samples": holdout.live_samples,
        "seen_by_candidate": seen_by_candidate(request, candidate, holdout),
        "versions": {"candidate": _version(candidate), "stable": _version(stable)},
    }
    say(
        f"candidate accuracy {result['candidate']['accuracy']:.4f}"
        + ("" if stable is None else f", stable accuracy {result['stable']['accuracy']:.4f}")
    )
    return result


def main() -> int:
    return run_job(lambda env: validate(ValidateRequest.from_env(env)))


if __name__ == "__main__":
    sys.exit(main())
