"""Run the pods of the local test bed as real processes.

kwok makes pods look Running to the control plane, but nothing runs in them. In the sandbox the
model servers must really serve, so this stand-in for a kubelet watches the Deployments Kanaria owns and, for
every revision with replicas, starts one real model server process with the environment of
the Deployment's pod template (KANARIA_MODEL_URI, KANARIA_REVISION, ...) — the reference
LLM server instead when the template's image is ``kanaria/llmserver`` — and with fault
injection on (KANARIA_FAULT_* in a pod template and /admin/faults are how the tests make a
regression). It publishes the servers to Prometheus through a file_sd targets file and answers
the proxy's question "where does Service NAME-REVISION live?".

Every server gets ``KANARIA_SAMPLE_DIR`` (``sample_dir``, default ``<workdir>/samples``,
overriding the pod template's): the labelled samples of live traffic go there (see
:mod:`kanaria.sandbox.samples`), where the Jobs :class:`~kanaria.sandbox.jobs.LocalJobRunner`
runs find them. The pods of Jobs are that class's business, not this one's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from kanaria.sandbox._proc import ServerProcess, http_get
from kanaria.sandbox.llmserver import LLMServerProcess
from kanaria.sandbox.modelserver import ModelServerProcess
from kanaria.sandbox.readiness import claim_namespace, mark_ready, needs_readiness
from kanaria.sandbox.samples import SAMPLE_DIR_ENV
from kanaria.workloads.objects import LABEL_DEPLOYMENT, LABEL_REVISION, MANAGED_BY

__all__ = ["LocalKubelet", "Served"]

log = logging.getLogger("kanaria.sandbox.kubelet")

LLM_IMAGE = "kanaria/llmserver"
"""A pod template whose container image starts with this runs the reference LLM server
(:mod:`kanaria.sandbox.llmserver`); every other one runs the reference model server."""


@dataclass
class Served:
    deployment: str
    revision: str
    service: str
    process: ServerProcess
    labels: dict[str, str] = field(default_factory=dict)
    """The pod template's labels (what an InferencePool's selector matches)."""
    started: float = field(default_factory=time.monotonic)
    """When it was launched (monotonic): a list of Deployments taken before that cannot
    say it is unwanted."""
    probe_path: str | None = None
    """The path of the pod template's httpGet readiness probe; None: no probe, so the pod is
    ready as soon as its server listens (as with a kubelet)."""


class LocalKubelet:
    """Keeps one model-server process per Kanaria revision Deployment that has replicas."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        workdir: Path,
        targets_file: Path,
        *,
        interval: float = 0.5,
        keep_stopped: bool = True,
        sample_dir: Path | None = None,
    ) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.workdir = workdir
        self.sample_dir = (sample_dir or workdir / "samples").resolve()
        self.targets_file = targets_file
        self.interval = interval
        self.keep_stopped = keep_stopped
        self.served: dict[str, Served] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-runtime", daemon=True)
        self.errors: list[str] = []
        self.probes: Counter[tuple[str, str]] = Counter()
        """Readiness probes made, by (ModelDeployment, revision)."""
        self._write_targets()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalKubelet:
        claim_namespace(self.core, self.namespace)  # its pods are Ready when the probe passes
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            for served in self.served.values():
                served.process.stop()
            self.served.clear()

    def __enter__(self) -> LocalKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- queries

    def resolve(self, service: str) -> tuple[str, int]:
        """(host, port) of the process behind a per-revision Service name."""
        with self._lock:
            served = self.served.get(service)
            if served is None:
                self._sync()  # the route may name a revision started a moment ago
                served = self.served.get(service)
            if served is None:
                raise KeyError(f"no local process serves {service}")
            return served.process.host, served.process.port

    def endpoints(self, match_labels: Mapping[str, str], *, refresh: bool = False) -> list[Served]:
        """The processes whose pod labels match a selector (an InferencePool's), by name;
        ``refresh`` lists the Deployments first (a pool may name a revision a moment old)."""
        with self._lock:
            if refresh:
                self._sync()
            return [
                s for _, s in sorted(self.served.items())
                if match_labels and all(s.labels.get(k) == v for k, v in match_labels.items())
            ]

    def url_of(self, revision: str) -> str | None:
        with self._lock:
            for served in self.served.values():
                if served.revision == revision:
                    return str(served.process.url)
        return None

    # ---------------------------------------------------------------- loop

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
                self._probe_pods()
            except Exception as exc:  # keep the sandbox running; say what went wrong
                message = f"{type(exc).__name__}: {exc}"
                if not self.errors or self.errors[-1] != message:
                    self.errors.append(message)
                    log.warning("local runtime: %s", message)
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        listed_at = time.monotonic()
        found = self.apps.list_namespaced_deployment(self.namespace, label_selector=selector)
        wanted: dict[str, Any] = {}
        for dep in found.items:
            meta = dep.metadata
            if meta is None or dep.spec is None:
                continue
            if (dep.spec.replicas or 0) > 0 or (self.keep_stopped and meta.name in self.served):
                wanted[meta.name or ""] = dep
        with self._lock:
            changed = False
            for name in list(self.served):
                # A process launched after this list was taken (by resolve(), for a route that
                # names a revision a moment old) is not in it: only a newer list may stop it.
                if name not in wanted and self.served[name].started < listed_at:
                    self.served.pop(name).process.stop()
                    changed = True
            for name, dep in wanted.items():
                if name not in self.served and (dep.spec.replicas or 0) > 0:
                    self.served[name] = self._launch(name, dep)
                    changed = True
            if changed:
                self._write_targets()

    def _probe_pods(self) -> None:
        """Mark Ready the Running pods of every revision whose server answers the pod template's
        readiness probe (kwok starts them unready: see :mod:`kanaria.sandbox.readiness`)."""
        selector = ",".join([*(f"{k}={v}" for k, v in MANAGED_BY.items()), LABEL_REVISION])
        pods = [p for p in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
                if needs_readiness(p)]
        if not pods:
            return
        with self._lock:
            by_revision = {(s.deployment, s.revision): s for s in self.served.values()}
        answers: dict[tuple[str, str], bool] = {}
        for pod in pods:
            labels = (pod.metadata.labels if pod.metadata else None) or {}
            key = (labels.get(LABEL_DEPLOYMENT, ""), labels.get(LABEL_REVISION, ""))
            served = by_revision.get(key)
            if served is None:
                continue  # its server is not started yet
            if key not in answers:
                answers[key] = _answers_probe(served)
                self.probes[key] += 1
            if answers[key]:
                mark_ready(self.core, pod)

    def _launch(self, name: str, dep: Any) -> Served:
        labels = dep.metadata.labels or {}
        containers = dep.spec.template.spec.containers or []
        env = {e.name: e.value for c in containers for e in (c.env or []) if e.value is not None}
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        env[SAMPLE_DIR_ENV] = str(self.sample_dir)
        log_path = self.workdir / f"{name}.log"
        images = [c.image or "" for c in containers]
        server = LLMServerProcess if any(i.startswith(LLM_IMAGE) for i in images) else ModelServerProcess
        process = server(env, log_path=log_path, enable_faults=True)
        log.info("started %s at %s", name, process.url)
        pod_labels = dict((dep.spec.template.metadata.labels if dep.spec.template.metadata else None) or {})
        return Served(labels.get(LABEL_DEPLOYMENT, ""), labels.get(LABEL_REVISION, ""), name, process, pod_labels,
                      probe_path=_probe_path(containers))

    def _write_targets(self) -> None:
        groups = [
            {
                "targets": [f"{s.process.host}:{s.process.port}"],
                "labels": {"job": "models", "kanaria_service": s.service},
            }
            for s in self.served.values()
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)


def _probe_path(containers: list[Any]) -> str | None:
    """The path of the first container's httpGet readiness probe (the model server's container
    is the first), or None."""
    for container in containers[:1]:
        probe = getattr(container, "readiness_probe", None)
        get = getattr(probe, "http_get", None) if probe is not None else None
        if get is not None:
            return str(get.path or "/")
    return None


def _answers_probe(served: Served) -> bool:
    """The readiness probe on the revision's process: a status in 200-399 within 1 s, as a
    kubelet's httpGet probe counts success; no probe: ready once the server listens."""
    if served.probe_path is None:
        return True
    path = served.probe_path if served.probe_path.startswith("/") else "/" + served.probe_path
    try:
        status, _ = http_get(f"http://{served.process.host}:{served.process.port}{path}", timeout=1.0)
    except OSError:
        return False
    return 200 <= status < 400
