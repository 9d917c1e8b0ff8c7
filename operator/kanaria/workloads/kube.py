"""Applying and observing revisions' workloads through the Kubernetes API."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.models import InferencePoolBackend, ModelDeploymentSpec
from kanaria.api.observed import WorkloadState
from kanaria.api.revision import revision_name
from kanaria.workloads.objects import (
    ANNOTATION_MODEL,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    POOL_GROUP,
    POOL_VERSION,
    deployment_manifest,
    model_fingerprint,
    pool_manifest,
    service_manifest,
)

__all__ = ["FIELD_MANAGER", "apply", "Workloads", "RevisionCollision"]

FIELD_MANAGER = "kanaria"


class RevisionCollision(RuntimeError):
    """A Deployment with this revision's name records a different model."""


def apply(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    """Server-side apply under Kanaria's field manager (force: these fields are Kanaria's)."""
    meta = manifest["metadata"]
    name, namespace, kind = meta["name"], meta["namespace"], manifest["kind"]
    common: dict[str, Any] = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": "application/apply-patch+yaml",
    }
    if kind == "Deployment":
        client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, manifest, **common)
    elif kind == "Service":
        client.CoreV1Api(api).patch_namespaced_service(name, namespace, manifest, **common)
    else:
        group, version = manifest["apiVersion"].split("/")
        plural = {
            "HTTPRoute": "httproutes",
            "VirtualService": "virtualservices",
            "InferencePool": "inferencepools",
            "InferenceModelRewrite": "inferencemodelrewrites",
        }[kind]
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            group, version, namespace, plural, name, manifest, **common
        )


class Workloads:
    """The Deployments and Services of one ModelDeployment's revisions."""

    def __init__(self, api: client.ApiClient, name: str, namespace: str, uid: str, cache: Any = None) -> None:
        self.api, self.cache = api, cache
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.name, self.namespace, self.uid = name, namespace, uid

    def observe(self) -> tuple[dict[str, WorkloadState], dict[str, str]]:
        """Ready state per revision, and the model recorded on each revision's Deployment."""
        if self.cache is not None:
            return self._observe_cached()
        found = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"{LABEL_DEPLOYMENT}={self.name}"
        )
        states: dict[str, WorkloadState] = {}
        models: dict[str, str] = {}
        # A Service left without its Deployment (for example by a crash between the two
        # deletions) still counts as a revision, so retention deletes it instead of orphaning it.
        services = self.core.list_namespaced_service(
            self.namespace, label_selector=f"{LABEL_DEPLOYMENT}={self.name}"
        )
        for svc in services.items:
            rev = ((svc.metadata.labels if svc.metadata else None) or {}).get(LABEL_REVISION)
            if rev:
                states[rev] = WorkloadState(replicas=0, ready=0)
        for dep in found.items:
            meta = dep.metadata or client.V1ObjectMeta()
            rev = (meta.labels or {}).get(LABEL_REVISION)
            if not rev:
                continue
            states[rev] = WorkloadState(
                replicas=(dep.spec.replicas if dep.spec else None) or 0,
                ready=(dep.status.ready_replicas if dep.status else None) or 0,
            )
            models[rev] = (meta.annotations or {}).get(ANNOTATION_MODEL, "")
        return states, models

    def _observe_cached(self) -> tuple[dict[str, WorkloadState], dict[str, str]]:
        """``observe`` from the operator's watch caches (no API request)."""
        mine = {LABEL_DEPLOYMENT: self.name}
        states: dict[str, WorkloadState] = {}
        models: dict[str, str] = {}
        for svc in self.cache.list("Service", self.namespace, mine):
            rev = ((svc.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
            if rev:
                states[rev] = WorkloadState(replicas=0, ready=0)
        for dep in self.cache.list("Deployment", self.namespace, mine):
            meta = dep.get("metadata") or {}
            rev = (meta.get("labels") or {}).get(LABEL_REVISION)
            if not rev:
                continue
            states[rev] = WorkloadState(
                replicas=int((dep.get("spec") or {}).get("replicas") or 0),
                ready=int((dep.get("status") or {}).get("readyReplicas") or 0),
            )
            models[rev] = (meta.get("annotations") or {}).get(ANNOTATION_MODEL, "")
        return states, models

    def ensure(
        self,
        spec: ModelDeploymentSpec,
        revision: str,
        replicas: int,
        recorded_model: str | None,
        service_port: int | None,
        pool: InferencePoolBackend | None = None,
    ) -> None:
        """Create or scale a revision's Deployment (and its Service when a port is given, and
        its InferencePool when ``pool`` is given without a model rewrite)."""
        if recorded_model and recorded_model != model_fingerprint(spec) and replicas > 0:
            raise RevisionCollision(
                f"Deployment {revision_name(self.name, revision)} exists for a different model "
                f"({recorded_model}); refusing to adopt it"
            )
        apply(self.api, deployment_manifest(self.name, self.namespace, self.uid, spec, revision, replicas))
        if service_port is not None:
            apply(self.api, service_manifest(self.name, self.namespace, self.uid, revision, service_port))
        if pool is not None and pool.model_rewrite is None:
            apply(self.api, pool_manifest(self.name, self.namespace, self.uid, revision, pool))

    def scale(self, revision: str, replicas: int) -> None:
        """Scale an existing revision without touching its template (its spec may be older)."""
        try:
            self.apps.patch_namespaced_deployment_scale(
                revision_name(self.name, revision), self.namespace, {"spec": {"replicas": replicas}}
            )
        except ApiException as exc:
            if exc.status != 404:  # only its Service is left: retention will delete it
                raise

    def delete(self, revision: str, pools: bool = False) -> None:
        """Delete a revision's Deployment and Service (and its InferencePool with ``pools``)."""
        name = revision_name(self.name, revision)
        for call in (self.apps.delete_namespaced_deployment, self.core.delete_namespaced_service):
            try:
                call(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        if pools:
            try:
                client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                    POOL_GROUP, POOL_VERSION, self.namespace, "inferencepools", name
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
