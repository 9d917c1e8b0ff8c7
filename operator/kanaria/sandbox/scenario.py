"""Building blocks shared by the demo and the end-to-end tests: models, manifests, waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kanaria.api import ModelDeploymentSpec, revision_hash
from kanaria.sandbox.train import train_revision

__all__ = ["train_models", "manifest", "revision_of", "wait_status", "DATASET"]

DATASET = "breast_cancer"


def train_models(root: Path, specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Train each version (``{version: train_revision kwargs}``) once; returns version → URI."""
    uris = {}
    for version, kwargs in specs.items():
        out = root / version
        if not (out / "meta.json").exists() or not _profile_has_reference(out):
            train_revision(kwargs.pop("dataset", DATASET), version, out, **kwargs)
        uris[version] = out.resolve().as_uri()
    return uris


def _profile_has_reference(artifact: Path) -> bool:
    """An artifact trained before profiles carried reference counts is trained again (without
    them the monitor has nothing to compare drift with)."""
    try:
        return "score_counts" in json.loads((artifact / "profile.json").read_text())
    except (OSError, ValueError):
        return False


def manifest(
    name: str,
    namespace: str,
    version: str,
    uri: str,
    prometheus: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    interval: str = "2s",
    window: str = "30s",
    extra_analysis: dict[str, Any] | None = None,
    replicas: int = 1,
) -> dict[str, Any]:
    """A ModelDeployment for the sandbox (Gateway API router, the sandbox's Prometheus)."""
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": name, "version": version, "uri": uri},
            "replicas": replicas,
            "traffic": {"gatewayAPI": {}},
            "strategy": {
                "canary": {
                    "steps": steps
                    or [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
                }
            },
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": interval,
                "progressDeadline": "10m",
                "inconclusiveLimit": 1000,
                "metrics": metrics
                or [
                    {"name": "accuracy", "kind": "accuracy", "minSamples": 300, "margin": 0.03, "maturity": "5s"},
                    {"name": "latency", "kind": "latency", "minSamples": 200},
                    {"name": "errors", "kind": "errorRate", "minSamples": 500, "critical": True},
                ],
                **(extra_analysis or {}),
            },
            "rollback": {"postPromotionWindow": window, "scaleDownDelay": "5s", "revisionHistoryLimit": 3},
        },
    }


def revision_of(body: dict[str, Any]) -> str:
    return revision_hash(ModelDeploymentSpec.model_validate(body["spec"]))


def wait_status(
    get: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Poll the object's status until ``done(status)``; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while True:
        try:
            status = get().get("status") or {}
        except Exception:  # the API may be briefly away during fault tests
            status = status or {}
        if on_tick is not None:
            on_tick(status)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}; last phase "
                f"{status.get('phase')!r}: {status.get('message', '')}"
            )
        time.sleep(interval)
