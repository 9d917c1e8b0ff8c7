"""Run the pods of Kanaria's Jobs as local processes, as a kubelet would run their containers.

kwok makes a Job's pod Running and Ready but runs nothing in it (the test bed leaves out
kwok's pod-complete stage, so the pod stays Running). :class:`LocalJobRunner` watches the
pods of one namespace and, for every pod owned by a Job and labelled
``app.kubernetes.io/managed-by=kanaria`` that kwok has made Running, runs its first
container's ``command`` + ``args`` once (pods are remembered by UID):

- an executable named ``python`` or ``python3`` is this interpreter (``sys.executable``), so
  the virtualenv's packages and ``kanaria`` (on ``PYTHONPATH``) are there;
- the environment is this process's, plus the container's ``env`` entries with a literal
  ``value`` (``valueFrom`` is not resolved), plus ``KANARIA_TERMINATION_LOG`` (an empty file
  in the workdir: the stand-in for the container's ``terminationMessagePath``, which a local
  process cannot write) and ``KANARIA_SAMPLE_DIR`` (the stack's labelled samples, see
  :mod:`kanaria.sandbox.samples`); these two override the pod's;
- the working directory is the workdir; stdout and stderr go to ``jobs/<pod>.log`` there.

When the process exits, the pod's status subresource is patched as the kubelet would: phase
``Succeeded`` (exit 0) or ``Failed``; condition Ready false; the first container
``terminated`` with ``exitCode``, ``reason`` (``Completed`` / ``Error``), ``message`` (the
termination log's first 4096 bytes; when that is empty, the container failed and its
``terminationMessagePolicy`` is ``FallbackToLogsOnError``, the last 80 lines / 2048 bytes of
its log), ``startedAt`` and ``finishedAt``. The Job controller of kube-controller-manager then
counts the pod and marks the Job Complete or Failed. Further containers are not run; they are
reported terminated with exit 0. ``restartPolicy: OnFailure`` is treated like ``Never``: the
pod fails and the Job controller makes a new pod if its backoff limit allows.

A command that cannot be started (none given, not found) fails the pod with reason
``StartError`` and exit code 128. When the pod is deleted (the Job's
``activeDeadlineSeconds`` passed, the Job was deleted) the process group gets SIGTERM, then
SIGKILL after the pod's grace period (at most ``max_grace`` seconds). A failure while handling
one pod is recorded in ``errors`` and the loop goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.sandbox._job import TERMINATION_LOG_ENV
from kanaria.sandbox._proc import die_with_parent
from kanaria.sandbox.samples import SAMPLE_DIR_ENV
from kanaria.workloads.objects import MANAGED_BY

__all__ = ["LocalJobRunner", "JobProcess", "termination_message"]

log = logging.getLogger("kanaria.sandbox.jobs")

MAX_MESSAGE_BYTES = 4096  # the kubelet's limit on a termination message
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the kubelet's tail of the log ...
FALLBACK_LOG_BYTES = 2048  # ... and its size limit
START_ERROR_EXIT_CODE = 128
PYTHON_NAMES = ("python", "python3")
API_TIMEOUT = 10.0  # seconds; a hung request must not hold the loop (or stop()) for long
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class JobProcess:
    """One Job pod's container run as a local process (or the reason it could not start)."""

    pod: str
    uid: str
    log_path: Path
    termination_log: Path
    fallback_to_logs: bool
    containers: list[tuple[str, str]]
    """(name, image) of every container of the pod, for its status."""
    popen: subprocess.Popen[bytes] | None = None
    start_error: str | None = None
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    kill_deadline: float | None = None

    def exit_code(self) -> int | None:
        """The exit code once it has ended (128 + N for signal N), else None."""
        if self.start_error is not None:
            return START_ERROR_EXIT_CODE
        assert self.popen is not None
        code = self.popen.poll()
        if code is None:
            return None
        if self.finished_at is None:
            self.finished_at = _now()
        return 128 - code if code < 0 else code

    def terminate(self, grace: float) -> None:
        """SIGTERM the process group now; :meth:`reap` SIGKILLs it after ``grace`` seconds."""
        if self.popen is not None and self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
        self.kill_deadline = time.monotonic() + grace

    def reap(self) -> bool:
        """True when it is gone; SIGKILLs the group once the grace period is over."""
        if self.popen is None or self.popen.poll() is not None:
            return True
        if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline:
            _signal_group(self.popen.pid, signal.SIGKILL)
        return False

    def kill(self, timeout: float = 5.0) -> None:
        """Stop it now (SIGTERM, SIGKILL after ``timeout``) and wait for it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        _signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_head(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return b""


def _log_tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    lines = data.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
    return b"".join(lines)[-FALLBACK_LOG_BYTES:].decode("utf-8", errors="replace")


def termination_message(job: JobProcess, exit_code: int) -> str:
    """What the kubelet would report as the container's termination message."""
    if job.start_error is not None:
        return job.start_error
    message = _read_head(job.termination_log, MAX_MESSAGE_BYTES).decode("utf-8", errors="replace")
    if not message and exit_code != 0 and job.fallback_to_logs:
        return _log_tail(job.log_path)
    return message


def _is_job_pod(pod: Any) -> bool:
    owners = pod.metadata.owner_references or []
    return any(owner.kind == "Job" for owner in owners)


def _ready_to_run(pod: Any) -> bool:
    """Scheduled, made Running by kwok, and not being deleted."""
    status = pod.status
    return bool(
        pod.metadata.deletion_timestamp is None
        and pod.spec.node_name
        and status is not None
        and status.phase == "Running"
    )


class LocalJobRunner:
    """Runs every Kanaria Job pod of ``namespace`` once, as a local process (see the module)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        workdir: Path,
        *,
        sample_dir: Path | None = None,
        interval: float = 0.5,
        max_grace: float = 10.0,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.workdir = workdir.resolve()
        self.sample_dir = (sample_dir or self.workdir / "samples").resolve()
        self.interval = interval
        self.max_grace = max_grace
        self.running: dict[str, JobProcess] = {}
        """By pod UID: started, not yet reported."""
        self.finished: dict[str, JobProcess] = {}
        """By pod UID: reported (or its pod went away)."""
        self._seen: set[str] = set()
        self._dying: list[JobProcess] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-jobs", daemon=True)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalJobRunner:
        (self.workdir / "jobs").mkdir(parents=True, exist_ok=True)
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        for job in [*self.running.values(), *self._dying]:
            job.kill()
        self.running.clear()
        self._dying.clear()

    def __enter__(self) -> LocalJobRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- loop

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep the runtime going; say what went wrong
                self._record(f"listing pods: {type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def _record(self, message: str) -> None:
        if not self.errors or self.errors[-1] != message:
            self.errors.append(message)
            log.warning("local jobs: %s", message)

    def sync(self) -> None:
        """One pass: start new Job pods, report ended ones, stop those whose pod is gone."""
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        listed = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _request_timeout=API_TIMEOUT
        )
        pods: dict[str, Any] = {
            str(p.metadata.uid): p for p in listed.items if p.metadata and _is_job_pod(p)
        }
        for uid, pod in pods.items():
            if uid not in self._seen and _ready_to_run(pod):
                self._seen.add(uid)
                self._guarded(str(pod.metadata.name), partial(self._start, pod))
        for uid, job in list(self.running.items()):
            self._guarded(job.pod, partial(self._follow, uid, job, pods.get(uid)))
        self._dying = [job for job in self._dying if not job.reap()]

    def _guarded(self, pod: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # one pod's trouble must not stop the others
            self._record(f"pod {pod}: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- one pod

    def _start(self, pod: Any) -> None:
        job = self._launch(pod)
        self.running[pod.metadata.uid] = job
        if job.popen is not None:
            log.info("started job pod %s (pid %d): %s", job.pod, job.popen.pid, job.popen.args)
        else:
            log.warning("job pod %s could not start: %s", job.pod, job.start_error)

    def _launch(self, pod: Any) -> JobProcess:
        name, uid = pod.metadata.name, pod.metadata.uid
        containers = pod.spec.containers or []
        first = containers[0] if containers else None
        stem = f"{name}-{uid[:8]}"
        job = JobProcess(
            pod=name,
            uid=uid,
            log_path=self.workdir / "jobs" / f"{stem}.log",
            termination_log=self.workdir / "jobs" / f"{stem}.termination-log",
            fallback_to_logs=first is not None
            and first.termination_message_policy == "FallbackToLogsOnError",
            containers=[(c.name, c.image or "") for c in containers],
        )
        argv = self._argv(first)
        if isinstance(argv, str):
            job.start_error = argv
            return job
        try:
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            job.termination_log.write_bytes(b"")
            with open(job.log_path, "ab") as out:
                job.popen = subprocess.Popen(  # noqa: S603 - the pod's own command
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env(first, job),
                    cwd=self.workdir,
                    start_new_session=True,
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - nothing else runs in the child
                )
        except OSError as exc:
            job.start_error = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        return job

    @staticmethod
    def _argv(container: Any) -> list[str] | str:
        """The command line, or why there is none."""
        if container is None:
            return "the pod has no container"
        command = list(container.command or [])
        if not command:
            return (
                f"container {container.name} has no command: the sandbox cannot run an "
                "image's entrypoint"
            )
        argv = command + list(container.args or [])
        if argv[0] in PYTHON_NAMES:
            argv[0] = sys.executable
        return argv

    def _env(self, container: Any, job: JobProcess) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        for var in container.env or []:
            if var.value is not None:
                env[var.name] = var.value
        env[TERMINATION_LOG_ENV] = str(job.termination_log)
        env[SAMPLE_DIR_ENV] = str(self.sample_dir)
        return env

    def _follow(self, uid: str, job: JobProcess, pod: Any) -> None:
        if pod is None or pod.metadata.deletion_timestamp is not None:
            self._abandon(uid, job, pod)
            return
        code = job.exit_code()
        if code is None:
            return
        self._report(job, code)
        self.finished[uid] = self.running.pop(uid)

    def _abandon(self, uid: str, job: JobProcess, pod: Any) -> None:
        """The pod is gone or going: stop its process, report nothing."""
        grace = self.max_grace
        if pod is not None and pod.spec.termination_grace_period_seconds is not None:
            grace = min(grace, float(pod.spec.termination_grace_period_seconds))
        job.terminate(grace)
        self._dying.append(job)
        self.finished[uid] = self.running.pop(uid)
        log.info("job pod %s was deleted; stopping its process", job.pod)

    def _report(self, job: JobProcess, code: int) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                job.pod,
                self.namespace,
                pod_status_patch(job, code),
                _content_type="application/strategic-merge-patch+json",
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:  # gone meanwhile: nothing to report to
                raise
        log.info("job pod %s exited with %d", job.pod, code)


def pod_status_patch(job: JobProcess, code: int) -> dict[str, Any]:
    """The status the kubelet would write for a pod whose container ended with ``code``."""
    finished = job.finished_at or _now()
    now = _timestamp(_now())
    terminated: dict[str, Any] = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else ("StartError" if job.start_error else "Error"),
        "startedAt": _timestamp(job.started_at),
        "finishedAt": _timestamp(finished),
    }
    message = termination_message(job, code)
    if message:
        terminated["message"] = message
    statuses = []
    for index, (name, image) in enumerate(job.containers):
        state = terminated if index == 0 else {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": _timestamp(job.started_at),
            "finishedAt": _timestamp(finished),
        }
        statuses.append(
            {
                "name": name,
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": state},
            }
        )
    not_ready = {"status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
    return {
        "status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": "Ready", **not_ready}, {"type": "ContainersReady", **not_ready}],
            "containerStatuses": statuses,
        }
    }
