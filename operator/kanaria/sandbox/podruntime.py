"""Run the pods of a Deployment from their OCI image, as a kubelet would (for the test bed).

kwok marks the pods Running; nothing runs in them. :class:`PodRuntime` watches the pods a
Deployment selects and, for each Running one on a node, runs its containers from their images:

- the image (an OCI archive, ``make image``) is unpacked once with ``umoci unpack``;
- projected volumes are written as the kubelet writes them: the one the ServiceAccount
  admission adds to each pod (kube-api-access-*) gets a token for the pod's ServiceAccount
  from the TokenRequest API, bound to the pod (it stops working when the pod is deleted),
  ``ca.crt`` from the namespace's ``kube-root-ca.crt`` ConfigMap and ``namespace``, mounted
  read-only where the pod says, /var/run/secrets/kubernetes.io/serviceaccount;
- each container starts in a private mount namespace (``unshare --mount``, so this needs root):
  the image's root filesystem bind-mounted read-only, emptyDir volumes as tmpfs, /proc, a
  minimal /dev, projected volumes and /etc/hosts and /etc/resolv.conf bind-mounted,
  then ``chroot`` and ``setpriv`` to the pod's runAsUser/runAsGroup with no capabilities and
  no_new_privs; its command/args and env (values, the Downward API fields, ``$(VAR)``) as the
  Pod says, on top of the image's entrypoint and env;
- liveness and readiness probes (httpGet) are polled by their fields; after failureThreshold
  liveness failures in a row, or when the process exits, it is started again (restartCount).

The pods share the host's network (no network namespace): two replicas whose containers listen
on the same ports would collide, so run such Deployments with one replica here. Service IPs do
not route on this machine (no kube-proxy), so ``KUBERNETES_SERVICE_HOST`` and
``KUBERNETES_SERVICE_PORT`` are where kube-apiserver really listens: ``localhost`` and its
port (``localhost`` is in its serving certificate). Not ``127.0.0.1``: the operator refuses a
Prometheus address equal to the API server's, and the test bed's Prometheus is on 127.0.0.1 too
— in a real cluster they are different addresses.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from kanaria.sandbox._container import contained, mount_script, unpack_image

__all__ = ["ContainerRun", "PodRuntime"]

log = logging.getLogger("kanaria.sandbox.podruntime")


@dataclass
class Probe:
    spec: dict[str, Any]
    ports: dict[str, int]
    failures: int = 0
    successes: int = 0
    ok: bool | None = None
    due: float = 0.0

    def url(self) -> str:
        get = self.spec["httpGet"]
        port = get["port"]
        port = self.ports[port] if isinstance(port, str) and not port.isdigit() else int(port)
        scheme = get.get("scheme", "HTTP").lower()
        return f"{scheme}://127.0.0.1:{port}{get.get('path', '/')}"

    def check(self) -> bool:
        try:
            with urllib.request.urlopen(self.url(), timeout=float(self.spec.get("timeoutSeconds", 1))) as r:
                return 200 <= int(r.status) < 400
        except Exception:  # noqa: BLE001 - any error is a failed probe, as for a kubelet
            return False


@dataclass
class ContainerRun:
    """One container of one pod: its process, log, probe state and restarts."""

    pod: str
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    grace: float
    liveness: Probe | None
    readiness: Probe | None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = 0.0
    ready: bool = False
    exited: float | None = None
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.started, self.exited = time.monotonic(), None
        for probe in (self.liveness, self.readiness):
            if probe is not None:
                probe.failures = probe.successes = 0
                probe.due = self.started + float(probe.spec.get("initialDelaySeconds", 0))
        self.ready = False
        self.history.append(f"started pid {self.process.pid}")

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a stopped process sees its SIGTERM too
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, why: str) -> None:
        log.info("%s/%s: restarting (%s)", self.pod, self.name, why)
        self.history.append(why)
        self.stop()
        self.restarts += 1
        self.start()

    def tick(self, now: float) -> None:
        """Run the probes that are due; restart on liveness failure or exit."""
        assert self.process is not None
        code = self.process.poll()
        if code is not None:  # restartPolicy Always, with the kubelet's back-off: 10 s doubling to 5 min
            if self.exited is None:
                self.exited = now
                self.history.append(f"exited with {code}")
            if now - self.exited >= min(10 * 2 ** min(self.restarts, 5), 300):
                self.restart(f"restarted after exit {code}")
            return
        for probe in (self.liveness, self.readiness):
            if probe is None or now < probe.due:
                continue
            probe.due = now + float(probe.spec.get("periodSeconds", 10))
            ok = probe.check()
            probe.ok = ok
            probe.failures, probe.successes = (0, probe.successes + 1) if ok else (probe.failures + 1, 0)
            if probe is self.readiness:
                if ok and probe.successes >= int(probe.spec.get("successThreshold", 1)):
                    self.ready = True
                elif probe.failures >= int(probe.spec.get("failureThreshold", 3)):
                    self.ready = False
            elif probe.failures >= int(probe.spec.get("failureThreshold", 3)):
                self.restart(f"liveness probe failed {probe.failures} times")
                return
        if self.readiness is None:
            self.ready = True


class PodRuntime:
    """Runs the containers of the pods matching a Deployment's selector from the OCI archives
    in ``images`` (image reference -> archive). ``api`` is an admin client (it requests the
    tokens); the API server is ``server`` (https://host:port)."""

    def __init__(self, api: client.ApiClient, server: str, namespace: str, deployment: str,
                 images: dict[str, Path], workdir: Path, *, interval: float = 0.5) -> None:
        self.core: Any = client.CoreV1Api(api)  # dicts in, models out: typed loosely
        self.apps: Any = client.AppsV1Api(api)
        self.namespace = namespace
        self.deployment = deployment
        self.images = images
        self.workdir = workdir
        self.interval = interval
        parts = urlsplit(server)
        self.api_port = str(parts.port or 443)
        self.runs: dict[str, list[ContainerRun]] = {}  # by pod name
        self.errors: list[str] = []
        self._unpacked: dict[str, tuple[Path, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"pods-{deployment}", daemon=True)

    def start(self) -> PodRuntime:
        self._thread.start()
        return self

    def __enter__(self) -> PodRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        with self._lock:
            for runs in self.runs.values():
                for run in runs:
                    run.stop()
            self.runs.clear()
        shutil.rmtree(self.workdir / "images", ignore_errors=True)  # unpacked images: ~400 MB each

    def containers(self) -> list[ContainerRun]:
        with self._lock:
            return [run for runs in self.runs.values() for run in runs]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
                now = time.monotonic()
                for run in self.containers():
                    run.tick(now)
            except Exception as exc:  # keep running; say what went wrong
                message = f"{type(exc).__name__}: {exc}"
                if not self.errors or self.errors[-1] != message:
                    self.errors.append(message)
                    log.warning("pod runtime: %s", message)
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        dep = self.apps.read_namespaced_deployment(self.deployment, self.namespace)
        selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        running = {p.metadata.name: p for p in pods
                   if p.status and p.status.phase == "Running" and p.spec.node_name
                   and p.metadata.deletion_timestamp is None}
        with self._lock:
            for name in [n for n in self.runs if n not in running]:
                for run in self.runs.pop(name):
                    run.stop()
                log.info("stopped pod %s", name)
            for name, pod in running.items():
                if name not in self.runs:
                    self.runs[name] = self._launch(self.core.api_client.sanitize_for_serialization(pod))

    def _image(self, ref: str) -> tuple[Path, dict[str, Any]]:
        if ref not in self._unpacked:
            if ref not in self.images:
                raise KeyError(f"no OCI archive for image {ref!r}")
            dest = self.workdir / "images" / ref.replace("/", "_").replace(":", "_")
            self._unpacked[ref] = unpack_image(self.images[ref], dest)
        return self._unpacked[ref]

    def _projected(self, pod: dict[str, Any], volume: dict[str, Any], poddir: Path,
                   fields: dict[str, str]) -> Path:
        """A projected volume's files in a host folder, as the kubelet writes them: a
        TokenRequest token bound to the pod, ConfigMap keys, Downward API fields. The
        ServiceAccount admission plugin adds such a volume (kube-api-access-*) to every pod
        that mounts its token: token, ca.crt (kube-root-ca.crt) and namespace."""
        meta, spec = pod["metadata"], pod["spec"]
        folder: Path = poddir / "volumes" / str(volume["name"])
        folder.mkdir(parents=True, exist_ok=True)
        projected = volume["projected"]
        files: dict[str, str] = {}
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                want = source["serviceAccountToken"]
                request = {"spec": {
                    "audiences": [want["audience"]] if want.get("audience") else [],
                    "expirationSeconds": int(want.get("expirationSeconds", 3600)),
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                       "uid": meta["uid"]}}}
                files[want["path"]] = self.core.create_namespaced_service_account_token(
                    spec.get("serviceAccountName", "default"), self.namespace, request).status.token
            elif "configMap" in source:
                ref = source["configMap"]
                data = self.core.read_namespaced_config_map(ref["name"], self.namespace).data or {}
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    files[item["path"]] = data[item["key"]]
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    files[item["path"]] = fields[item["fieldRef"]["fieldPath"]]
            else:
                raise ValueError(f"volume {volume['name']}: unsupported projection {sorted(source)}")
        group = (spec.get("securityContext") or {}).get("fsGroup")
        for path, text in files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            if group is not None:  # fsGroup: the group owns the files, as the kubelet sets it
                os.chown(target, 0, int(group))
            target.chmod(int(projected.get("defaultMode", 0o644)))
        return folder

    def _launch(self, pod: dict[str, Any]) -> list[ContainerRun]:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        poddir = self.workdir / "pods" / meta["name"]
        poddir.mkdir(parents=True, exist_ok=True)
        pod_sc = spec.get("securityContext") or {}
        (poddir / "hosts").write_text(f"127.0.0.1\tlocalhost\n{status.get('podIP', '127.0.0.1')}\t{meta['name']}\n")
        (poddir / "resolv.conf").write_text(Path("/etc/resolv.conf").read_text())
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        fields = {"metadata.name": meta["name"], "metadata.namespace": self.namespace,
                  "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
                  "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
                  "status.podIP": status.get("podIP", ""), "status.hostIP": status.get("hostIP", "")}
        runs = []
        for container in spec["containers"]:
            rootfs, config = self._image(container["image"])
            env = dict(e.split("=", 1) for e in config.get("Env") or [])
            env |= {"HOSTNAME": meta["name"], "KUBERNETES_SERVICE_HOST": "localhost",
                    "KUBERNETES_SERVICE_PORT": self.api_port,
                    "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port}
            for var in container.get("env") or []:
                source = var.get("valueFrom")
                if source is None:  # an empty value comes without the key
                    env[var["name"]] = _expand(var.get("value", ""), env)
                elif "fieldRef" in source:
                    env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
                else:
                    raise ValueError(f"env {var['name']}: only values and fieldRef are supported")
            if container.get("command"):
                argv = [*container["command"], *(container.get("args") or [])]
            else:
                argv = [*(config.get("Entrypoint") or []),
                        *(container["args"] if "args" in container else config.get("Cmd") or [])]
            argv = [_expand(a, env) for a in argv]
            sc = {**pod_sc, **(container.get("securityContext") or {})}
            user, _, group = (config.get("User") or "0:0").partition(":")
            uid, gid = int(sc.get("runAsUser", user)), int(sc.get("runAsGroup", group or user))
            if sc.get("runAsNonRoot") and uid == 0:
                raise ValueError(f"{meta['name']}/{container['name']}: runAsNonRoot but the user is root")
            mounts: list[tuple[str, Path | dict[str, Any]]] = []
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                if "emptyDir" in volume:
                    mounts.append((mount["mountPath"], volume["emptyDir"] or {}))
                elif "projected" in volume:
                    mounts.append((mount["mountPath"], self._projected(pod, volume, poddir, fields)))
                else:
                    raise ValueError(f"volume {volume['name']}: only emptyDir and projected are supported")
            script = mount_script(rootfs, poddir, mounts, uid, gid,
                                  [g for g in [pod_sc.get("fsGroup")] if g is not None])
            ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if "name" in p}
            run = ContainerRun(
                meta["name"], container["name"],
                contained(script, argv),
                {k: v for k, v in env.items()}, poddir / f"{container['name']}.log",
                float(spec.get("terminationGracePeriodSeconds", 30)),
                Probe(container["livenessProbe"], ports) if "livenessProbe" in container else None,
                Probe(container["readinessProbe"], ports) if "readinessProbe" in container else None)
            run.start()
            log.info("started %s/%s from %s: %s", meta["name"], container["name"], container["image"],
                     shlex.join(argv))
            runs.append(run)
        return runs


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (no $$ escapes)."""
    for name, val in env.items():
        value = value.replace(f"$({name})", val)
    return value
