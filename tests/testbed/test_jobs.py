"""Kanaria's Jobs really run: the Job controller makes the pod, kwok makes it Running, the
sandbox's Job runner runs its command as a local process and reports how it ended on the pod's
status, and the Job controller completes or fails the Job from that."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from tests.helpers import wait_for

from kanaria.sandbox._proc import pid_exists
from kanaria.sandbox.jobs import LocalJobRunner
from kanaria.sandbox.samples import SampleRecorder, sample_file
from kanaria.sandbox.train import load_artifact, load_split, train_revision

pytestmark = pytest.mark.cluster


@pytest.fixture
def runner(k8s: ApiClient, namespace: str, tmp_path: Path) -> Iterator[LocalJobRunner]:
    with LocalJobRunner(k8s, namespace, tmp_path / "work", interval=0.2) as local:
        yield local
    assert not local.errors, local.errors


def _job(
    name: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    kind: str = "validate",
    policy: str = "File",
    deadline: int | None = None,
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "kanaria",
        "kanaria.io/deployment": "iris",
        "kanaria.io/job": kind,
    }
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": kind,
                        "image": "registry.invalid/kanaria-jobs:1",
                        "command": command,
                        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        "terminationMessagePolicy": policy,
                    }
                ],
            },
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def _condition(k8s: ApiClient, namespace: str, name: str, kind: str) -> Any:
    """The Job's condition ``kind`` when it is True, else None."""
    job = BatchV1Api(k8s).read_namespaced_job_status(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type == kind and condition.status == "True":
            return condition
    return None


def _run_job(k8s: ApiClient, namespace: str, manifest: dict[str, Any], ending: str) -> Any:
    """Create the Job, wait until it has the condition ``ending``, return its only pod."""
    name = manifest["metadata"]["name"]
    batch: Any = BatchV1Api(k8s)  # Any: the client is typed for models, we pass plain dicts
    batch.create_namespaced_job(namespace, manifest)
    wait_for(
        lambda: _condition(k8s, namespace, name, ending),
        timeout=60,
        message=lambda: f"Job {name} {ending}: {batch.read_namespaced_job_status(name, namespace).status}",
    )
    pods = CoreV1Api(k8s).list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
    ).items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def _terminated(pod: Any) -> Any:
    return pod.status.container_statuses[0].state.terminated


WRITE_RESULT = """
import json, os, sys
print("working", flush=True)
result = {
    "greeting": os.environ["GREETING"],
    "cwd": os.getcwd(),
    "python": sys.executable,
    "samples": os.environ["KANARIA_SAMPLE_DIR"],
}
with open(os.environ["KANARIA_TERMINATION_LOG"], "w") as f:
    json.dump(result, f)
"""


def test_a_job_runs_as_a_process_and_completes_with_its_termination_message(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner
) -> None:
    manifest = _job("hello", ["python", "-c", WRITE_RESULT], env={"GREETING": "hello"})
    pod = _run_job(k8s, namespace, manifest, "Complete")

    job = BatchV1Api(k8s).read_namespaced_job_status("hello", namespace)
    assert job.status.succeeded == 1 and not job.status.failed
    assert pod.status.phase == "Succeeded"
    terminated = _terminated(pod)
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert terminated.started_at <= terminated.finished_at
    assert json.loads(terminated.message) == {
        "greeting": "hello",
        "cwd": str(runner.workdir),
        "python": sys.executable,
        "samples": str(runner.sample_dir),
    }
    (done,) = runner.finished.values()
    assert done.log_path.read_text() == "working\n"  # ran once
    assert not runner.running


def test_a_job_whose_process_exits_1_fails(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner
) -> None:
    script = (
        "import json, os, sys\n"
        "open(os.environ['KANARIA_TERMINATION_LOG'], 'w').write(json.dumps({'error': 'bad input'}))\n"
        "sys.exit(1)\n"
    )
    pod = _run_job(k8s, namespace, _job("broken", ["python3", "-c", script]), "Failed")

    job = BatchV1Api(k8s).read_namespaced_job_status("broken", namespace)
    assert job.status.failed == 1 and not job.status.succeeded
    assert pod.status.phase == "Failed"
    terminated = _terminated(pod)
    assert terminated.exit_code == 1 and terminated.reason == "Error"
    assert json.loads(terminated.message) == {"error": "bad input"}


def test_fallback_to_logs_reports_the_tail_of_the_output(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner
) -> None:
    script = "import sys\nfor i in range(100): print(f'line {i}')\nsys.exit(3)\n"
    manifest = _job("noisy", ["python", "-c", script], policy="FallbackToLogsOnError")
    terminated = _terminated(_run_job(k8s, namespace, manifest, "Failed"))

    assert terminated.exit_code == 3 and terminated.reason == "Error"
    assert terminated.message.splitlines() == [f"line {i}" for i in range(20, 100)]


def test_a_command_that_cannot_start_fails_the_job(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner
) -> None:
    manifest = _job("missing", ["/nonexistent/kanaria-job"])
    terminated = _terminated(_run_job(k8s, namespace, manifest, "Failed"))

    assert terminated.exit_code == 128 and terminated.reason == "StartError"
    assert "/nonexistent/kanaria-job" in terminated.message


def test_a_job_past_its_deadline_has_its_process_killed(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner
) -> None:
    script = (
        "import os, time\n"
        "open(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\n"
        "while True: time.sleep(1)\n"
    )
    pid_file = runner.workdir / "sleeper.pid"
    manifest = _job("sleeper", ["python", "-c", script], env={"PID_FILE": str(pid_file)}, deadline=3)
    BatchV1Api(k8s).create_namespaced_job(namespace, manifest)  # type: ignore[arg-type]
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30, message="the process started"))
    assert pid_exists(pid)

    condition = wait_for(
        lambda: _condition(k8s, namespace, "sleeper", "Failed"), timeout=60, message="Job sleeper Failed"
    )
    assert condition.reason == "DeadlineExceeded"
    wait_for(lambda: not pid_exists(pid), timeout=30, message=f"process {pid} gone")
    assert not runner.running and len(runner.finished) == 1


def test_the_retraining_job_writes_a_new_revision_from_labelled_samples(
    k8s: ApiClient, namespace: str, runner: LocalJobRunner, tmp_path: Path
) -> None:
    current = train_revision("breast_cancer", "v1", tmp_path / "models" / "v1", label_noise=0.3)
    split = load_split("breast_cancer")
    recorder = SampleRecorder(
        sample_file(runner.sample_dir, "cancer"), "cancer-1", split.classes
    )
    rows = np.vstack([split.X_train, split.X_test])
    labels = np.concatenate([split.y_train, split.y_test])
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        recorder.remember(f"q{i}", row)
        assert recorder.label(f"q{i}", int(label))
    env = {
        "KANARIA_MODEL_NAME": "cancer",
        "KANARIA_MODEL_VERSION": "v1",
        "KANARIA_MODEL_URI": current.as_uri(),
        "KANARIA_NEW_VERSION": "v1-retrained",
        "KANARIA_EVIDENCE": json.dumps({"accuracy": 0.63}),
    }
    manifest = _job("retrain", ["python", "-m", "kanaria.sandbox.retrain"], env=env, kind="retrain")
    terminated = _terminated(_run_job(k8s, namespace, manifest, "Complete"))

    result = json.loads(terminated.message)
    out = tmp_path / "models" / "retrained" / "v1-retrained"
    assert result["version"] == "v1-retrained" and result["uri"] == out.as_uri()
    assert result["metrics"]["samples"] == len(labels)
    assert result["metrics"]["accuracy"] > 0.9 > result["metrics"]["current_accuracy"]
    artifact = load_artifact(result["uri"])
    assert artifact.meta["version"] == "v1-retrained" and artifact.meta["retrained_from"]["version"] == "v1"
    assert os.path.samefile(artifact.path, out)
