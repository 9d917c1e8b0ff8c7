"""The Deployment and Service of one revision, as plain manifests (pure functions)."""

from __future__ import annotations

import copy
import json
from typing import Any

from kanaria.api.models import GROUP, KIND, VERSION, InferencePoolBackend, ModelDeploymentSpec
from kanaria.api.revision import revision_name

__all__ = [
    "MANAGED_BY",
    "LABEL_DEPLOYMENT",
    "LABEL_REVISION",
    "ANNOTATION_MODEL",
    "DEFAULT_CONTAINER",
    "owner_reference",
    "labels_for",
    "deployment_manifest",
    "service_manifest",
    "model_fingerprint",
    "POOL_GROUP",
    "POOL_VERSION",
    "REWRITE_GROUP",
    "REWRITE_VERSION",
    "pool_manifest",
    "rewrite_manifest",
]

POOL_GROUP, POOL_VERSION = "inference.networking.k8s.io", "v1"
"""InferencePool, as the Gateway API Inference Extension v1.5.0 serves it."""
REWRITE_GROUP, REWRITE_VERSION = "inference.networking.x-k8s.io", "v1alpha2"
"""InferenceModelRewrite (alpha) in the Inference Extension v1.5.0."""

MANAGED_BY = {"app.kubernetes.io/managed-by": "kanaria"}
LABEL_DEPLOYMENT = "kanaria.io/deployment"
LABEL_REVISION = "kanaria.io/revision"
ANNOTATION_MODEL = "kanaria.io/model"
SERVING_PORT = 8080

DEFAULT_CONTAINER: dict[str, Any] = {
    "name": "model",
    "image": "kanaria/modelserver:0.1.0",
    "command": ["python", "-m", "kanaria.sandbox.modelserver", "--port", str(SERVING_PORT)],
    "ports": [{"name": "http", "containerPort": SERVING_PORT}],
    "readinessProbe": {"httpGet": {"path": "/healthz", "port": SERVING_PORT}},
}


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels_for(name: str, revision: str | None = None) -> dict[str, str]:
    labels = {**MANAGED_BY, LABEL_DEPLOYMENT: name}
    if revision is not None:
        labels[LABEL_REVISION] = revision
    return labels


def model_fingerprint(spec: ModelDeploymentSpec) -> str:
    """The model as recorded on a revision's Deployment, to detect a revision-name collision."""
    return json.dumps(spec.model.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)


def _env(spec: ModelDeploymentSpec, revision: str) -> list[dict[str, str]]:
    env = [
        {"name": "KANARIA_MODEL_NAME", "value": spec.model.name},
        {"name": "KANARIA_MODEL_VERSION", "value": spec.model.version},
        {"name": "KANARIA_MODEL_URI", "value": spec.model.uri},
        {"name": "KANARIA_REVISION", "value": revision},
    ]
    if spec.model.adapter:
        env.append({"name": "KANARIA_MODEL_ADAPTER", "value": spec.model.adapter})
    horizons = spec.maturity_horizons()
    if horizons:
        # The horizons at which the model server's monitor matures predictions into cohort
        # counts (kanaria_model_matured_total), one per metric maturity the spec uses.
        env.append({"name": "KANARIA_MATURITY_HORIZONS", "value": ",".join(f"{h:g}s" for h in horizons)})
    return env


def deployment_manifest(
    name: str,
    namespace: str,
    uid: str,
    spec: ModelDeploymentSpec,
    revision: str,
    replicas: int,
) -> dict[str, Any]:
    """The Deployment serving one revision. The pod template is the user's, with Kanaria's
    labels and the model's environment variables added to every container."""
    template = copy.deepcopy(spec.template) if spec.template else {}
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels_for(name, revision)}
    pod = template.setdefault("spec", {})
    containers = pod.get("containers") or [copy.deepcopy(DEFAULT_CONTAINER)]
    ours = {e["name"] for e in _env(spec, revision)}
    for container in containers:
        kept = [e for e in container.get("env") or [] if e.get("name") not in ours]
        container["env"] = [*kept, *_env(spec, revision)]
    pod["containers"] = containers
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": revision_name(name, revision),
            "namespace": namespace,
            "labels": labels_for(name, revision),
            "annotations": {
                ANNOTATION_MODEL: model_fingerprint(spec),
                "kanaria.io/model-version": spec.model.version,
            },
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: name, LABEL_REVISION: revision}},
            "template": template,
        },
    }


def service_manifest(
    name: str, namespace: str, uid: str, revision: str | None, port: int
) -> dict[str, Any]:
    """A revision's Service (``revision`` given), or the shared Service of every revision."""
    selector = {LABEL_DEPLOYMENT: name}
    if revision is not None:
        selector[LABEL_REVISION] = revision
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": revision_name(name, revision) if revision else name,
            "namespace": namespace,
            "labels": labels_for(name, revision),
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": SERVING_PORT}],
        },
    }


def pool_manifest(
    name: str, namespace: str, uid: str, revision: str | None, cfg: InferencePoolBackend
) -> dict[str, Any]:
    """A revision's InferencePool (``revision`` given, named like its Service), or the one pool
    over every revision's pods (named like the ModelDeployment) for an adapter rollout."""
    selector = {LABEL_DEPLOYMENT: name}
    if revision is not None:
        selector[LABEL_REVISION] = revision
    picker = cfg.endpoint_picker
    return {
        "apiVersion": f"{POOL_GROUP}/{POOL_VERSION}",
        "kind": "InferencePool",
        "metadata": {
            "name": revision_name(name, revision) if revision else name,
            "namespace": namespace,
            "labels": labels_for(name, revision),
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "targetPorts": [{"number": cfg.target_port}],
            "endpointPickerRef": {
                "kind": "Service",
                "name": picker.name,
                "port": {"number": picker.port},
                "failureMode": picker.failure_mode,
            },
        },
    }


def rewrite_manifest(
    name: str, namespace: str, uid: str, client_model: str, targets: dict[str, int]
) -> dict[str, Any]:
    """The InferenceModelRewrite of an adapter rollout: requests for ``client_model`` to the
    pool ``name`` go to each target model (adapter) by weight. A weight of 0 is left out (the
    CRD wants at least 1); every weight 0 leaves the model as the client sent it."""
    kept = [{"modelRewrite": model, "weight": int(w)} for model, w in sorted(targets.items()) if w > 0]
    rule: dict[str, Any] = {"matches": [{"model": {"type": "Exact", "value": client_model}}]}
    rule["targets"] = kept or [{"modelRewrite": client_model, "weight": 1}]
    return {
        "apiVersion": f"{REWRITE_GROUP}/{REWRITE_VERSION}",
        "kind": "InferenceModelRewrite",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels_for(name),
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "poolRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": name},
            "rules": [rule],
        },
    }
