"""Labelled samples from live traffic: what model servers write and retraining Jobs read.

A model server started with ``KANARIA_SAMPLE_DIR`` keeps the feature rows of its recent
predictions by request id (bounded: the newest ``max_rows``, each for ``ttl_seconds``). When
the ground-truth label of one of them arrives through ``/feedback``, it appends one JSON line
to ``$KANARIA_SAMPLE_DIR/<model name>.jsonl``::

    {"t": 1717243200.125, "revision": "iris-3f2a", "request_id": "q17",
     "features": [5.1, 3.5, 1.4, 0.2], "label": 0}

``t`` is the unix time of the prediction, ``features`` the row as the client sent it (before
any injected input fault), ``label`` the class index, as the bundled data sets number their
classes (:mod:`kanaria.sandbox.train`). A row gives at most one line: it is forgotten once its
label is written. Several servers (the revisions of one model) append to the same file; each
line is written with one ``write`` on an ``O_APPEND`` descriptor under an exclusive ``flock``,
so lines never interleave. Predictions a shadow saw only as a mirrored copy are not kept (the
revision that served the request writes the line), so one label gives one line.

:func:`read_samples` reads such a file back, keeping the lines of a time window.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE_DIR_ENV",
    "LabelledSamples",
    "SampleRecorder",
    "append_line",
    "class_index",
    "read_samples",
    "sample_file",
]

SAMPLE_DIR_ENV = "KANARIA_SAMPLE_DIR"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def sample_file(sample_dir: str | Path, model: str) -> Path:
    """``<sample_dir>/<model>.jsonl``; the model name must be usable as a file name."""
    if not _MODEL_NAME.fullmatch(model):
        raise ValueError(
            f"model name {model!r} cannot name a sample file (letters, digits, '.', '_', '-')"
        )
    return Path(sample_dir) / f"{model}.jsonl"


def class_index(label: object, classes: Sequence[str]) -> int | None:
    """The index of ``label`` (an index or a class name) among ``classes``; None if unknown."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label if 0 <= label < len(classes) else None
    if isinstance(label, float) and label.is_integer():
        return class_index(int(label), classes)
    if isinstance(label, str):
        if label in classes:
            return list(classes).index(label)
        if label.isdigit():
            return class_index(int(label), classes)
    return None


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line, under an exclusive lock on the file."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class SampleRecorder:
    """Feature rows of recent predictions, written as labelled samples when labels come.

    Thread-safe. Keeps at most ``max_rows`` rows (the oldest go first), each for
    ``ttl_seconds`` of ``clock`` (unix seconds).
    """

    def __init__(
        self,
        path: Path,
        revision: str,
        classes: Sequence[str],
        *,
        max_rows: int = 100_000,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = path
        self.revision = revision
        self.classes = tuple(classes)
        self.max_rows = max_rows
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._rows: OrderedDict[str, tuple[float, list[float]]] = OrderedDict()
        self._lock = threading.Lock()
        self.written = 0

    def remember(self, request_id: str, features: Sequence[float]) -> None:
        """Keep the row of a prediction served now."""
        with self._lock:
            self._rows.pop(request_id, None)
            self._rows[request_id] = (self._clock(), [float(v) for v in features])
            while len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)

    def label(self, request_id: str, label: object) -> bool:
        """Write the sample of ``request_id`` with its label; False when the row is not kept
        (never seen here, expired, already labelled) or the label names no class."""
        index = class_index(label, self.classes)
        with self._lock:
            self._expire()
            if index is None or request_id not in self._rows:
                return False
            at, features = self._rows.pop(request_id)
        record = {
            "t": round(at, 3),
            "revision": self.revision,
            "request_id": request_id,
            "features": features,
            "label": index,
        }
        append_line(self.path, record)
        with self._lock:
            self.written += 1
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def _expire(self) -> None:
        oldest_kept = self._clock() - self.ttl_seconds
        while self._rows:
            first = next(iter(self._rows.values()))
            if first[0] >= oldest_kept:
                return
            self._rows.popitem(last=False)


@dataclass(frozen=True)
class LabelledSamples:
    """Samples of one model in a time window: ``X`` rows, ``y`` class indices, ``t`` times."""

    X: np.ndarray
    y: np.ndarray
    t: np.ndarray
    skipped: int
    """Lines that could not be used (not JSON, wrong width, unknown label), in or out of
    the window."""
    path: Path

    def __len__(self) -> int:
        return len(self.y)


def _parse(line: str, width: int, classes: Sequence[str]) -> tuple[float, list[float], int] | None:
    try:
        record = json.loads(line)
        t = float(record["t"])
        features = [float(v) for v in record["features"]]
    except (ValueError, KeyError, TypeError):
        return None
    index = class_index(record.get("label"), classes)
    if index is None or len(features) != width or not all(map(math.isfinite, features)):
        return None
    return t, features, index


def read_samples(
    path: Path,
    n_features: int,
    classes: Sequence[str],
    *,
    since: float | None = None,
    until: float | None = None,
) -> LabelledSamples:
    """The samples in ``path`` with ``since <= t <= until`` (either bound optional); a missing
    file holds none. Unusable lines are counted in ``skipped``, not raised."""
    rows: list[list[float]] = []
    labels: list[int] = []
    times: list[float] = []
    skipped = 0
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        parsed = _parse(line, n_features, classes)
        if parsed is None:
            skipped += 1
            continue
        t, features, index = parsed
        if (since is not None and t < since) or (until is not None and t > until):
            continue
        times.append(t)
        rows.append(features)
        labels.append(index)
    return LabelledSamples(
        X=np.asarray(rows, dtype=float).reshape(len(rows), n_features),
        y=np.asarray(labels, dtype=int),
        t=np.asarray(times, dtype=float),
        skipped=skipped,
        path=path,
    )
