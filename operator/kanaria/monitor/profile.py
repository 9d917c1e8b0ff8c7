"""The reference profile: the fixed bin layout every revision of a model shares.

Drift is measured by comparing binned counts, so all revisions of one model must export their
feature and prediction-score histograms on the same bins. The bins come from the training
data (deciles) and travel with the model artifact as ``profile.json``.

Pure Python on purpose: a model server installs this library with ``prometheus_client`` alone.
The deciles are numpy's default (``linear``) quantiles, computed the same way, so profiles
written before (with numpy) and after agree to the bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ReferenceProfile", "decile_edges"]

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


@dataclass(frozen=True)
class ReferenceProfile:
    """Feature names, their bin edges, the score bin edges and the class names of one model.

    ``feature_edges[i]`` are the finite ``le`` bounds of feature ``feature_names[i]``;
    ``score_edges`` those of the prediction score (probability of the predicted class).
    """

    feature_names: tuple[str, ...]
    feature_edges: tuple[tuple[float, ...], ...]
    score_edges: tuple[float, ...]
    classes: tuple[str, ...]

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
    ) -> ReferenceProfile:
        """Deciles of every column of ``X`` (rows of features) and of the training ``scores``."""
        width = len(feature_names)
        try:
            rows = [[float(v) for v in row] for row in X]
        except TypeError as exc:
            raise ValueError(f"X must be rows of {width} features: {exc}") from exc
        if not rows:
            raise ValueError(f"X has no rows, expected (n, {width})")
        bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
        if bad is not None:
            raise ValueError(f"X row {bad} has {len(rows[bad])} features, expected {width}")
        return cls(
            feature_names=tuple(feature_names),
            feature_edges=tuple(decile_edges(column) for column in zip(*rows, strict=True)),
            score_edges=decile_edges(scores),
            classes=tuple(str(c) for c in classes),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [
                {"name": name, "edges": list(edges)}
                for name, edges in zip(self.feature_names, self.feature_edges, strict=True)
            ],
            "score_edges": list(self.score_edges),
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        features = data["features"]
        return cls(
            feature_names=tuple(f["name"] for f in features),
            feature_edges=tuple(tuple(f["edges"]) for f in features),
            score_edges=tuple(data["score_edges"]),
            classes=tuple(data["classes"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))
