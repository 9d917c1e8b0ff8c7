"""The retraining Job: a new model revision from labelled live traffic.

    python -m kanaria.sandbox.retrain

Reads the labelled samples the model servers wrote (:mod:`kanaria.sandbox.samples`) in a time
window, trains a model of the same kind as :mod:`kanaria.sandbox.train` makes on about 75% of
them, measures its accuracy (and the current model's) on the other 25%, and writes a new
artifact directory (``model.joblib``, ``profile.json`` from the new training rows,
``meta.json``). Repeats of one feature row stay on one side of that split, so the measure is
never taken on rows the new model has seen.

Environment:

- ``KANARIA_MODEL_NAME`` (required): the model; its samples are ``<name>.jsonl``.
- ``KANARIA_MODEL_URI`` (required): the current artifact (``file://`` directory or path).
- ``KANARIA_MODEL_VERSION``: the current version (default: the artifact's ``meta.json``).
- ``KANARIA_SAMPLE_DIR`` (required): where the samples are.
- ``KANARIA_DATA_SINCE``, ``KANARIA_DATA_UNTIL``: unix seconds, the window of samples to
  learn from (the data that shows the problem); either may be unset.
- ``KANARIA_MIN_SAMPLES``: fewest samples to train on (default 200).
- ``KANARIA_OUTPUT_DIR``: where new artifacts go (default: ``retrained/`` beside the
  current artifact); the new one is ``<output dir>/<new version>``.
- ``KANARIA_NEW_VERSION``: the new version (default ``<current version>-r<unix time>``).
- ``KANARIA_EVIDENCE``: JSON, why retraining was asked for; logged and kept in meta.json.
- ``KANARIA_TERMINATION_LOG``: where the result goes (default ``/dev/termination-log``).

Result (exit 0)::

    {"version": "v1-r1717243200", "uri": "file:///.../retrained/v1-r1717243200",
     "metrics": {"accuracy": 0.97, "samples": 812, "holdout": 203, "current_accuracy": 0.81}}

``accuracy`` is the new model's on the held-out 25% (``holdout`` rows of ``samples``),
``current_accuracy`` the current model's on the same rows. Too few samples, a missing
artifact or bad settings exit 1 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.model_selection import GroupShuffleSplit

from kanaria.sandbox._job import JobError, env_int, env_time, iso, required, run_job
from kanaria.sandbox.samples import LabelledSamples, read_samples, sample_file
from kanaria.sandbox.train import (
    Artifact,
    artifact_path,
    load_artifact,
    make_model,
    training_profile,
    write_artifact,
)

__all__ = ["HOLDOUT_FRACTION", "RetrainRequest", "main", "retrain"]

HOLDOUT_FRACTION = 0.25
DEFAULT_MIN_SAMPLES = 200
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class RetrainRequest:
    model_name: str
    model_uri: str
    sample_dir: Path
    version: str | None = None
    since: float | None = None
    until: float | None = None
    min_samples: int = DEFAULT_MIN_SAMPLES
    output_dir: Path | None = None
    new_version: str | None = None
    evidence: Any = None
    seed: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetrainRequest:
        since, until = env_time(env, "KANARIA_DATA_SINCE"), env_time(env, "KANARIA_DATA_UNTIL")
        if since is not None and until is not None and until <= since:
            raise JobError(f"KANARIA_DATA_UNTIL ({until:g}) is not after KANARIA_DATA_SINCE ({since:g})")
        output = env.get("KANARIA_OUTPUT_DIR", "").strip()
        return cls(
            model_name=required(env, "KANARIA_MODEL_NAME"),
            model_uri=required(env, "KANARIA_MODEL_URI"),
            sample_dir=Path(required(env, "KANARIA_SAMPLE_DIR")),
            version=env.get("KANARIA_MODEL_VERSION", "").strip() or None,
            since=since,
            until=until,
            min_samples=env_int(env, "KANARIA_MIN_SAMPLES", DEFAULT_MIN_SAMPLES, minimum=2),
            output_dir=Path(output) if output else None,
            new_version=env.get("KANARIA_NEW_VERSION", "").strip() or None,
            evidence=_evidence(env.get("KANARIA_EVIDENCE", "")),
        )


def _evidence(raw: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JobError(f"KANARIA_EVIDENCE is not JSON: {exc}") from None


def window_text(since: float | None, until: float | None) -> str:
    if since is None and until is None:
        return "at any time"
    if until is None:
        return f"since {iso(since or 0)}"
    if since is None:
        return f"until {iso(until)}"
    return f"from {iso(since)} to {iso(until)}"


def _load_current(uri: str) -> Artifact:
    try:
        return load_artifact(uri)
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot load the current model from {uri}: {exc}") from None


def _load_samples(request: RetrainRequest, current: Artifact) -> LabelledSamples:
    try:
        path = sample_file(request.sample_dir, request.model_name)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    profile = current.profile
    samples = read_samples(
        path, profile.n_features, profile.classes, since=request.since, until=request.until
    )
    window = window_text(request.since, request.until)
    if len(samples) < request.min_samples:
        raise JobError(
            f"only {len(samples)} labelled samples of model {request.model_name} {window} in "
            f"{path} ({samples.skipped} unusable lines); at least {request.min_samples} are "
            "needed (KANARIA_MIN_SAMPLES)"
        )
    if len(np.unique(samples.y)) < 2:
        raise JobError(
            f"the {len(samples)} samples {window} all have one label "
            f"({profile.classes[int(samples.y[0])]}); a classifier needs at least two"
        )
    return samples


def _split(samples: LabelledSamples, seed: int) -> tuple[np.ndarray, ...]:
    """About 75% of the samples to train on, 25% to measure on. Repeats of one feature row
    (the same input served again) all fall on one side, so the measure is never taken on
    rows the model was trained on."""
    _, groups = np.unique(samples.X, axis=0, return_inverse=True)
    if groups.max() < 1:
        raise JobError(f"the {len(samples)} samples are all the same row; nothing to learn from")
    splitter = GroupShuffleSplit(n_splits=1, test_size=HOLDOUT_FRACTION, random_state=seed)
    train, hold = next(splitter.split(samples.X, samples.y, groups.ravel()))
    if len(np.unique(samples.y[train])) < 2:
        raise JobError("the training part of the samples has one label only; a classifier needs two")
    return samples.X[train], samples.X[hold], samples.y[train], samples.y[hold]


def _new_version(request: RetrainRequest, current: str, now: float) -> str:
    version = request.new_version or f"{current}-r{int(now)}"
    if not _VERSION.fullmatch(version):
        raise JobError(
            f"version {version!r} cannot name an artifact (at most 63 letters, digits, '.', '_', '-')"
        )
    return version


def _destination(request: RetrainRequest, version: str) -> Path:
    base = request.output_dir or artifact_path(request.model_uri).resolve().parent / "retrained"
    out = (base / version).resolve()
    if out.exists():
        raise JobError(f"{out} exists already; choose another KANARIA_NEW_VERSION")
    return out


def retrain(
    request: RetrainRequest,
    *,
    clock: Callable[[], float] = time.time,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, measure and write the new artifact; returns the Job's result."""
    started = clock()
    current = _load_current(request.model_uri)
    current_version = request.version or str(current.meta.get("version") or "model")
    if request.evidence is not None:
        say(f"evidence: {json.dumps(request.evidence)}")
    say(f"current model {request.model_name} {current_version} from {request.model_uri}")
    samples = _load_samples(request, current)
    say(
        f"{len(samples)} labelled samples {window_text(request.since, request.until)} in "
        f"{samples.path} ({samples.skipped} unusable lines skipped)"
    )
    X_train, X_hold, y_train, y_hold = _split(samples, request.seed)
    model = make_model(request.seed)
    model.fit(X_train, y_train)
    accuracy = float(model.score(X_hold, y_hold))
    current_accuracy = float(current.model.score(X_hold, y_hold))
    say(
        f"trained on {len(y_train)} rows; accuracy on {len(y_hold)} held-out rows: "
        f"{accuracy:.4f} (current model: {current_accuracy:.4f})"
    )
    version = _new_version(request, current_version, started)
    out = _destination(request, version)
    profile = training_profile(model, X_train, current.profile.feature_names, current.profile.classes,
                               held_out=(X_hold, y_hold))
    meta: dict[str, Any] = {
        **{k: current.meta[k] for k in ("dataset", "split_seed", "test_size") if k in current.meta},
        "version": version,
        "test_accuracy": accuracy,
        "holdout": f"{HOLDOUT_FRACTION:.0%} of the live samples",
        "retrained_from": {"version": current_version, "uri": request.model_uri},
        "data_since": request.since,
        "data_until": request.until,
        "retrained_at": round(started, 3),
        "n_samples": len(samples),
        "n_train": len(y_train),
        "n_test": len(y_hold),
        "current_accuracy": current_accuracy,
        "feature_names": list(current.profile.feature_names),
        "classes": list(current.profile.classes),
        "faults": {"delay_ms": 0.0, "error_rate": 0.0},
        "seed": request.seed,
        "evidence": request.evidence,
        "sklearn_version": sklearn.__version__,
    }
    _write_atomically(out, model, profile, meta)
    say(f"wrote {version} to {out}")
    return {
        "version": version,
        "uri": out.as_uri(),
        "metrics": {
            "accuracy": round(accuracy, 6),
            "samples": len(samples),
            "holdout": len(y_hold),
            "current_accuracy": round(current_accuracy, 6),
        },
    }


def _write_atomically(out: Path, model: Any, profile: Any, meta: dict[str, Any]) -> None:
    """Write into a temporary sibling and rename it, so a half-written artifact never has
    the version's name (a Job retried after a crash starts clean)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        write_artifact(tmp, model, profile, meta)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main() -> int:
    return run_job(lambda env: retrain(RetrainRequest.from_env(env)))


if __name__ == "__main__":
    sys.exit(main())
