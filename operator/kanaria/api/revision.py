"""Revision identity: a stable hash of what a rollout is about (the model and pod template)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kanaria.api.models import ModelDeploymentSpec

__all__ = ["revision_hash", "revision_name"]


def revision_hash(spec: ModelDeploymentSpec) -> str:
    """Ten hex characters of SHA-256 over the canonical JSON of the model and template.

    Replicas, traffic, strategy and analysis are not part of it: changing how a model is rolled
    out does not make a new revision. Ten hex characters (40 bits) make an accidental collision
    among the handful of revisions a deployment keeps vanishingly unlikely; the workloads layer
    still refuses to adopt a Deployment whose recorded model differs (see workloads).
    """
    model = spec.model.model_dump(mode="json", by_alias=True)
    if model.get("adapter") is None:  # revisions from before adapters keep their hash
        model.pop("adapter", None)
    payload: dict[str, Any] = {
        "model": model,
        "template": spec.template,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def revision_name(deployment: str, revision: str) -> str:
    """Name of the Deployment and Service of one revision."""
    return f"{deployment}-{revision}"
