"""When a model revision's pod is Ready on the test bed.

kwok, the test bed's fake kubelet, would make every pod Ready the moment it is scheduled, with
nothing listening behind it. The test bed's kwok stages (:func:`revision_pod_stages`) therefore
start a pod that carries ``kanaria.io/revision`` Running but **not** Ready, as a kubelet does
before the first readiness probe passes. Then:

- in a namespace whose model servers really run (a :class:`~kanaria.sandbox.kubelet.LocalKubelet`
  serves it; :func:`claim_namespace` marks it ``sandbox.kanaria.io/readiness: probe``), the
  LocalKubelet GETs the pod template's readiness probe path on the revision's process and marks
  the pods Ready when it answers 200 — so a Deployment becomes available, and Kanaria moves
  weight to it, only when the server answers;
- everywhere else nothing runs in a pod (API-only tests, the scale benchmark), and
  :class:`PodReadiness`, which the test bed starts with the cluster, marks the pod Ready at
  once, as kwok's own stage would.
"""

from __future__ import annotations

import copy
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kanaria.workloads.objects import LABEL_REVISION

__all__ = [
    "PROBE_ANNOTATION",
    "PodReadiness",
    "claim_namespace",
    "is_ready",
    "mark_ready",
    "needs_readiness",
    "revision_pod_stages",
]

log = logging.getLogger("kanaria.sandbox.readiness")

PROBE_ANNOTATION = "sandbox.kanaria.io/readiness"
PROBE_VALUE = "probe"
"""A Namespace annotated ``PROBE_ANNOTATION: PROBE_VALUE`` has its revision pods made Ready by
the LocalKubelet that probes their servers, not by :class:`PodReadiness`."""

_REVISION_KEY = f'.metadata.labels["{LABEL_REVISION}"]'
_NOT_READY = (
    ('status: "True"\n  type: Ready\n', 'status: "False"\n  type: Ready\n'),
    ('status: "True"\n  type: ContainersReady\n', 'status: "False"\n  type: ContainersReady\n'),
)
_CONTAINER_READY = "{{ range .spec.containers }}\n- image: {{ .image | Quote }}\n  name: {{ .name | Quote }}\n  ready: true"


def revision_pod_stages(pod_ready_stage: str) -> list[dict[str, Any]]:
    """kwok's ``pod-ready`` stage split in two: the stage unchanged for pods without
    ``kanaria.io/revision``, and ``pod-start-unready`` for pods with it — Running, with the same
    IPs and container statuses, but Ready, ContainersReady and every container's ``ready``
    False. Raises ValueError if kwok's template is not the one this expects."""
    stage = yaml.safe_load(pod_ready_stage)
    template: str = stage["spec"]["next"]["statusTemplate"]
    unready_template = template
    for old, new in _NOT_READY:
        if old not in unready_template:
            raise ValueError(f"kwok's pod-ready stage no longer says {old!r}")
        unready_template = unready_template.replace(old, new, 1)
    if _CONTAINER_READY not in unready_template:
        raise ValueError("kwok's pod-ready stage no longer lists containers as this expects")
    unready_template = unready_template.replace(_CONTAINER_READY, _CONTAINER_READY.replace("ready: true", "ready: false"), 1)

    others = copy.deepcopy(stage)
    others["spec"]["selector"]["matchExpressions"].append({"key": _REVISION_KEY, "operator": "DoesNotExist"})
    revisions = copy.deepcopy(stage)
    revisions["metadata"]["name"] = "pod-start-unready"
    revisions["spec"]["selector"]["matchExpressions"].append({"key": _REVISION_KEY, "operator": "Exists"})
    revisions["spec"]["next"]["statusTemplate"] = unready_template
    return [others, revisions]


def is_ready(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def needs_readiness(pod: client.V1Pod) -> bool:
    """Running, not being deleted, and not Ready yet."""
    meta, status = pod.metadata, pod.status
    if meta is None or status is None or meta.deletion_timestamp is not None:
        return False
    return status.phase == "Running" and not is_ready(pod)


def mark_ready(core: client.CoreV1Api, pod: client.V1Pod) -> bool:
    """Set the pod's Ready and ContainersReady conditions and its containers' ``ready`` to true,
    as a kubelet does when the readiness probe passes. False if the pod is gone."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert pod.metadata is not None and pod.spec is not None
    containers = [
        {"name": c.name, "ready": True} for c in (pod.status.container_statuses or [])  # type: ignore[union-attr]
    ]
    body: dict[str, Any] = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }
    }
    try:
        core.patch_namespaced_pod_status(str(pod.metadata.name), str(pod.metadata.namespace), body)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def claim_namespace(core: client.CoreV1Api, namespace: str) -> None:
    """Say that ``namespace``'s revision pods are made Ready by a probing LocalKubelet."""
    core.patch_namespace(namespace, {"metadata": {"annotations": {PROBE_ANNOTATION: PROBE_VALUE}}})


def _claimed(core: client.CoreV1Api, namespace: str) -> bool | None:
    """Whether a LocalKubelet claimed the namespace; None when it is gone (nothing to make Ready)."""
    try:
        ns = core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    annotations = (ns.metadata.annotations if ns.metadata else None) or {}
    return annotations.get(PROBE_ANNOTATION) == PROBE_VALUE


class PodReadiness:
    """Marks revision pods Ready at once where no LocalKubelet probes them (see the module's
    doc). Watches the pods with ``kanaria.io/revision`` in every namespace; reconnects when the
    API server restarts."""

    def __init__(self, kubeconfig: Path, *, workers: int = 4) -> None:
        self._api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(self._api)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pod-readiness")
        self._thread = threading.Thread(target=self._run, name="pod-readiness", daemon=True)
        self._watch: watch.Watch | None = None
        self._claimed: set[str] = set()
        """Namespaces a LocalKubelet claimed: a claim is never taken back, so it is read once."""
        self.readied = 0

    def start(self) -> PodReadiness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - the API server restarts in some tests
                if not self._stop.is_set():
                    log.info("pod readiness: %s; watching again in 1 s", exc)
            self._stop.wait(1.0)

    def _follow(self) -> None:
        listed = self._core.list_pod_for_all_namespaces(label_selector=LABEL_REVISION)
        for pod in listed.items:
            self._consider(pod)
        version = listed.metadata.resource_version if listed.metadata else None
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._core.list_pod_for_all_namespaces, label_selector=LABEL_REVISION,
                resource_version=version, timeout_seconds=5, allow_watch_bookmarks=True,  # stop() waits at most this
            ):
                if self._stop.is_set():
                    return
                pod = event["object"]
                if event["type"] == "ERROR":
                    return  # expired: list again
                if pod.metadata is not None:
                    version = pod.metadata.resource_version
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._consider(pod)

    def _consider(self, pod: client.V1Pod) -> None:
        if needs_readiness(pod):
            self._pool.submit(self._ready, pod)

    def _ready(self, pod: client.V1Pod) -> None:
        try:
            assert pod.metadata is not None
            namespace = str(pod.metadata.namespace)
            if namespace in self._claimed:
                return
            claimed = _claimed(self._core, namespace)
            if claimed:
                self._claimed.add(namespace)
            if claimed is not False:
                return
            if mark_ready(self._core, pod):
                self.readied += 1
        except Exception as exc:  # noqa: BLE001 - the next event or relist tries again
            log.info("pod readiness: %s", exc)
