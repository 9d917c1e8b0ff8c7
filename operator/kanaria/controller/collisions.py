"""Why a spec cannot be acted on as it stands: a revision name taken by another model, a version
reused for a new artifact, or template labels that another application's Service selects."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubernetes import client

from kanaria.api.models import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.api.revision import revision_hash, revision_name
from kanaria.workloads.objects import LABEL_REVISION, MANAGED_BY, model_fingerprint

if TYPE_CHECKING:
    from kanaria.controller.reconcile import ReconcileContext

__all__ = ["captured_by", "collision", "version_reused"]


def collision(spec: ModelDeploymentSpec, name: str, models: dict[str, str]) -> str | None:
    """Why a revision this spec runs (its own, or an extra A/B challenger's) cannot be used:
    a Deployment of that revision's name records a different model. None when all is well."""
    for wanted in (spec, *spec.arm_specs()):
        revision = revision_hash(wanted)
        recorded = models.get(revision)
        if recorded and recorded != model_fingerprint(wanted):
            return (
                f"revision {revision}: Deployment {revision_name(name, revision)} exists for a different "
                f"model ({recorded}); refusing to adopt it (rename it or change the spec)"
            )
    return None


def version_reused(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, models: dict[str, str]) -> str | None:
    """Why a new artifact cannot be published under the stable revision's version: history,
    metrics and people tell versions apart, so two artifacts must not share one. A new revision
    of the same artifact (a template change) keeps its version."""
    stable = status.stable_revision
    if stable is None or spec.model.version != status.stable_version or revision_hash(spec) == stable:
        return None
    try:
        recorded = json.loads(models.get(stable) or "{}")
    except ValueError:
        return None
    if not isinstance(recorded, dict) or not recorded.get("uri"):
        return None
    for part in ("uri", "adapter"):
        if recorded.get(part) != getattr(spec.model, part):
            return (f"model.version {spec.model.version} is the stable revision's version, but model.{part} "
                    f"changed ({recorded.get(part)} → {getattr(spec.model, part)}): a new artifact needs a "
                    "new version")
    return None


def captured_by(ctx: ReconcileContext, spec: ModelDeploymentSpec, namespace: str, states: dict[str, Any]) -> str | None:
    """Why the template's labels cannot be used: a Service Kanaria does not own would select the
    new revision's pods and send its clients to them (taking over another application's
    traffic). Checked when the template has labels of its own, before its revision is created."""
    labels = dict((spec.template.get("metadata") or {}).get("labels") or {})
    if not labels or revision_hash(spec) in states:
        return None
    pods = {**labels, **MANAGED_BY, LABEL_REVISION: revision_hash(spec)}
    for svc_name, svc_labels, selector in _services(ctx, namespace):
        if not selector or svc_labels.get("app.kubernetes.io/managed-by") == "kanaria":
            continue
        if all(pods.get(k) == v for k, v in selector.items()) and any(k in labels for k in selector):
            return (f"template: metadata.labels would put the new revision's pods behind Service {svc_name} "
                    f"(selector {dict(sorted(selector.items()))}), which Kanaria does not own; choose labels "
                    "no other Service selects")
    return None


def _services(ctx: ReconcileContext, namespace: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(name, labels, selector) of every Service in the namespace: from the watch cache when the
    operator runs one, else listed."""
    if ctx.cache is not None and ctx.cache.has("Service"):
        return [(str((s.get("metadata") or {}).get("name")), dict((s.get("metadata") or {}).get("labels") or {}),
                 dict((s.get("spec") or {}).get("selector") or {})) for s in ctx.cache.list("Service", namespace)]
    out = []
    for svc in client.CoreV1Api(ctx.api).list_namespaced_service(namespace).items:
        meta = svc.metadata or client.V1ObjectMeta()
        out.append((str(meta.name), dict(meta.labels or {}), dict((svc.spec.selector if svc.spec else None) or {})))
    return out
