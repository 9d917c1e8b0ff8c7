"""The reference profile: the fixed bin layout every revision of a model shares, and the
distribution and accuracy each revision was trained and validated on.

Drift is measured by comparing binned counts, so all revisions of one model must export their
feature and prediction-score histograms on the same bins. The bins come from the training
data (deciles) and travel with the model artifact as ``profile.json``.

A profile may also carry the reference itself: per feature, the number of reference rows in
each bin, the same for the prediction score, and the offline accuracy on held-out rows with
the number of rows it was measured on. The model server exports them (see
:mod:`kanaria.monitor`), so live histograms can be compared with the reference without
reading the artifact. ``profile.json`` without them still loads.

Pure Python on purpose: a model server installs this library with ``prometheus_client`` alone.
The deciles are numpy's default (``linear``) quantiles, computed the same way, so profiles
written before (with numpy) and after agree to the bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kanaria.monitor.histogram import FixedBinHistogram

__all__ = ["ReferenceProfile", "bin_counts", "decile_edges"]

_DECILES = tuple(q / 10 for q in range(1, 10))


def decile_edges(values: Iterable[float]) -> tuple[float, ...]:
    """The distinct finite deciles (10%..90%) of ``values``, ascending.

    These are the ``le`` upper bounds of a histogram; ``+Inf`` is implicit and not included.
    Repeated deciles (discrete or constant features) collapse into one edge.
    """
    data = sorted(v for v in (float(x) for x in values) if math.isfinite(v))
    if not data:
        raise ValueError("cannot compute deciles of no finite values")
    return tuple(sorted({_round12(_quantile(data, q)) for q in _DECILES}))


def bin_counts(edges: Sequence[float], values: Iterable[float]) -> tuple[int, ...]:
    """How many of ``values`` fall in each bin of ``edges``: ``len(edges) + 1`` counts.

    The bins of the live histograms (:class:`~kanaria.monitor.FixedBinHistogram`): a value
    goes in the first bin whose edge it does not exceed (``le``), the last bin holds the
    values above the last edge, and non-finite values are not counted.
    """
    histogram = FixedBinHistogram(_checked_edges("bin_counts", edges))
    for value in values:
        histogram.observe(float(value))
    return tuple(histogram.counts)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``ordered`` as ``numpy.quantile(method="linear")``.

    Same operations in the same order: virtual index ``(n - 1) * q``, and the interpolation
    from the nearer neighbour (numpy's ``_lerp``), so the results are identical, not close.
    """
    last = len(ordered) - 1
    index = last * q
    if index >= last:
        return ordered[last]
    below = math.floor(index)
    gamma = index - below
    a, b = ordered[below], ordered[below + 1]
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def _round12(x: float) -> float:
    """``numpy.round(x, 12)``: scale, round half to even, unscale (not Python's ``round``)."""
    scaled = x * 1e12
    if math.isfinite(scaled):
        scaled = float(round(scaled))
    return scaled / 1e12


def _checked_edges(name: str, edges: Sequence[float]) -> tuple[float, ...]:
    result = tuple(float(edge) for edge in edges)
    if not result:
        raise ValueError(f"{name}: at least one finite bin edge is needed")
    if any(not math.isfinite(edge) for edge in result):
        raise ValueError(f"{name}: bin edges must be finite (+Inf is implicit)")
    if any(b <= a for a, b in zip(result, result[1:], strict=False)):
        raise ValueError(f"{name}: bin edges must be strictly increasing")
    return result


def _whole(value: Any) -> bool:
    """A whole number (an int, or an integral float), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and float(value).is_integer()


def _checked_counts(name: str, counts: Sequence[Any], edges: Sequence[float]) -> tuple[int, ...]:
    result: list[int] = []
    for count in counts:
        if not _whole(count):
            raise ValueError(f"{name}: bin counts must be whole numbers, not {count!r}")
        if count < 0:
            raise ValueError(f"{name}: bin counts must not be negative")
        result.append(int(count))
    if len(result) != len(edges) + 1:
        raise ValueError(
            f"{name}: {len(edges)} edges need {len(edges) + 1} bin counts (the last for "
            f"values above the last edge), not {len(result)}"
        )
    return tuple(result)


def _rows_of(X: Any, width: int) -> list[list[float]]:
    try:
        rows = [[float(v) for v in row] for row in X]
    except TypeError as exc:
        raise ValueError(f"X must be rows of {width} features: {exc}") from exc
    if not rows:
        raise ValueError(f"X has no rows, expected (n, {width})")
    bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if bad is not None:
        raise ValueError(f"X row {bad} has {len(rows[bad])} features, expected {width}")
    return rows


@dataclass(frozen=True)
class ReferenceProfile:
    """Feature names, their bin edges, the score bin edges and the class names of one model,
    and optionally the reference distribution and accuracy.

    ``feature_edges[i]`` are the finite ``le`` bounds of feature ``feature_names[i]``;
    ``score_edges`` those of the prediction score (probability of the predicted class).

    The reference, all optional:

    - ``feature_counts[i]``: how many reference rows fall in each bin of feature ``i``
      (``len(feature_edges[i]) + 1`` bins, the last above the last edge; as
      :func:`bin_counts` counts them), with ``rows``, the number of reference rows (a
      feature's counts sum to fewer when some of its values were not finite);
    - ``score_counts``: the same for the model's prediction scores on those rows;
    - ``accuracy``: the offline accuracy on held-out rows, measured on ``accuracy_samples``
      rows (given together).
    """

    feature_names: tuple[str, ...]
    feature_edges: tuple[tuple[float, ...], ...]
    score_edges: tuple[float, ...]
    classes: tuple[str, ...]
    feature_counts: tuple[tuple[int, ...], ...] | None = None
    score_counts: tuple[int, ...] | None = None
    rows: int | None = None
    accuracy: float | None = None
    accuracy_samples: int | None = None

    def __post_init__(self) -> None:
        names = tuple(str(name) for name in self.feature_names)
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if len(self.feature_edges) != len(names):
            raise ValueError(
                f"{len(names)} feature names but {len(self.feature_edges)} edge lists"
            )
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(
            self,
            "feature_edges",
            tuple(_checked_edges(n, e) for n, e in zip(names, self.feature_edges, strict=True)),
        )
        object.__setattr__(self, "score_edges", _checked_edges("score", self.score_edges))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        self._check_counts()
        self._check_accuracy()

    def _check_counts(self) -> None:
        if self.feature_counts is not None:
            if len(self.feature_counts) != self.n_features:
                raise ValueError(
                    f"{self.n_features} features but {len(self.feature_counts)} count lists"
                )
            object.__setattr__(
                self,
                "feature_counts",
                tuple(
                    _checked_counts(name, counts, edges)
                    for name, edges, counts in zip(
                        self.feature_names, self.feature_edges, self.feature_counts, strict=True
                    )
                ),
            )
        if self.score_counts is not None:
            object.__setattr__(
                self, "score_counts", _checked_counts("score", self.score_counts, self.score_edges)
            )
        counted = self.feature_counts is not None or self.score_counts is not None
        if not counted:
            if self.rows is not None:
                raise ValueError("rows is the number of reference rows: give it with the counts")
            return
        if self.rows is None or not _whole(self.rows) or self.rows < 1:
            raise ValueError(
                f"reference counts need rows, the number of reference rows, not {self.rows!r}"
            )
        rows = int(self.rows)
        object.__setattr__(self, "rows", rows)
        per_feature = zip(self.feature_names, self.feature_counts or (), strict=False)
        for name, counts in per_feature:
            if sum(counts) > rows:
                raise ValueError(f"{name}: {sum(counts)} counted values in {rows} rows")

    def _check_accuracy(self) -> None:
        if (self.accuracy is None) != (self.accuracy_samples is None):
            raise ValueError("give accuracy and accuracy_samples together")
        if self.accuracy is None or self.accuracy_samples is None:
            return
        if isinstance(self.accuracy, bool) or not isinstance(self.accuracy, numbers.Real):
            raise ValueError(f"accuracy must be a number, not {self.accuracy!r}")
        accuracy = float(self.accuracy)
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must lie within [0, 1], not {self.accuracy!r}")
        samples = self.accuracy_samples
        if not _whole(samples) or samples < 1:
            raise ValueError(f"accuracy_samples must be a whole number >= 1, not {samples!r}")
        object.__setattr__(self, "accuracy", accuracy)
        object.__setattr__(self, "accuracy_samples", int(samples))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @classmethod
    def from_training_data(
        cls,
        X: Any,
        feature_names: Sequence[str],
        scores: Iterable[float],
        classes: Sequence[Any],
        *,
        accuracy: float | None = None,
        accuracy_samples: int | None = None,
    ) -> ReferenceProfile:
        """Deciles of every column of ``X`` (rows of features) and of the training ``scores``,
        and the counts of those same rows and scores on those bins (see :meth:`with_counts`).

        ``accuracy`` (with ``accuracy_samples``) is the offline accuracy on held-out rows.
        """
        rows = _rows_of(X, len(feature_names))
        score_values = [float(s) for s in scores]
        profile = cls(
            feature_names=tuple(feature_names),
            feature_edges=tuple(decile_edges(column) for column in zip(*rows, strict=True)),
            score_edges=decile_edges(score_values),
            classes=tuple(str(c) for c in classes),
            accuracy=accuracy,
            accuracy_samples=accuracy_samples,
        )
        return profile.with_counts(rows, score_values)

    def with_counts(self, X: Any, scores: Iterable[float]) -> ReferenceProfile:
        """This profile with reference counts from ``X`` (rows of features, in profile order)
        and ``scores`` (the model's prediction scores), on this profile's bins."""
        rows = _rows_of(X, self.n_features)
        return dataclasses.replace(
            self,
            feature_counts=tuple(
                bin_counts(edges, column)
                for edges, column in zip(self.feature_edges, zip(*rows, strict=True), strict=True)
            ),
            score_counts=bin_counts(self.score_edges, scores),
            rows=len(rows),
        )

    def to_dict(self) -> dict[str, Any]:
        features: list[dict[str, Any]] = []
        for index, (name, edges) in enumerate(
            zip(self.feature_names, self.feature_edges, strict=True)
        ):
            entry: dict[str, Any] = {"name": name, "edges": list(edges)}
            if self.feature_counts is not None:
                entry["counts"] = list(self.feature_counts[index])
            features.append(entry)
        data: dict[str, Any] = {
            "features": features,
            "score_edges": list(self.score_edges),
            "classes": list(self.classes),
        }
        if self.score_counts is not None:
            data["score_counts"] = list(self.score_counts)
        if self.rows is not None:
            data["rows"] = self.rows
        if self.accuracy is not None:
            data["accuracy"] = self.accuracy
            data["accuracy_samples"] = self.accuracy_samples
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """The inverse of :meth:`to_dict`; a profile without the reference fields loads too."""
        features = data["features"]
        with_counts = ["counts" in f for f in features]
        if any(with_counts) and not all(with_counts):
            raise ValueError("either every feature has counts or none has")
        feature_counts = tuple(tuple(f["counts"]) for f in features) if all(with_counts) else None
        score_counts = data.get("score_counts")
        return cls(
            feature_names=tuple(f["name"] for f in features),
            feature_edges=tuple(tuple(f["edges"]) for f in features),
            score_edges=tuple(data["score_edges"]),
            classes=tuple(data["classes"]),
            feature_counts=feature_counts if features else None,
            score_counts=None if score_counts is None else tuple(score_counts),
            rows=data.get("rows"),
            accuracy=data.get("accuracy"),
            accuracy_samples=data.get("accuracy_samples"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))
