"""The reference profile: the fixed bin layout every revision of a model shares.

Drift is measured by comparing binned counts, so all revisions of one model must export their
feature and prediction-score histograms on the same bins. The bins come from the training
data (deciles) and travel with the model artifact as ``profile.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ReferenceProfile", "decile_edges"]

_DECILES = tuple(q / 10 for q in range(1, 10))


def decile_edges(values: Iterable[float]) -> tuple[float, ...]:
    """The distinct finite deciles (10%..90%) of ``values``, ascending.

    These are the ``le`` upper bounds of a histogram; ``+Inf`` is implicit and not included.
    Repeated deciles (discrete or constant features) collapse into one edge.
    """
    data = np.asarray(list(values), dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ValueError("cannot compute deciles of no finite values")
    quantiles = np.quantile(data, _DECILES)
    return tuple(float(edge) for edge in np.unique(np.round(quantiles, 12)))


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
        """Deciles of every column of ``X`` and of the training ``scores``."""
        matrix = np.asarray(X, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
            raise ValueError(
                f"X has shape {matrix.shape}, expected (n, {len(feature_names)})"
            )
        return cls(
            feature_names=tuple(feature_names),
            feature_edges=tuple(decile_edges(matrix[:, j]) for j in range(matrix.shape[1])),
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
