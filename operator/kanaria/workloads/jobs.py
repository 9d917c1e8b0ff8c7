"""Retraining and validation Jobs: building them from the spec's template, reading how they
ended (their pod's termination message), and removing old ones."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.api.observed import JobState
from kanaria.workloads.objects import LABEL_DEPLOYMENT, MANAGED_BY, owner_reference

__all__ = ["LABEL_JOB", "Jobs", "job_manifest", "MESSAGE_LIMIT"]

LABEL_JOB = "kanaria.io/job"
"""retrain or validate, on the Job and its pods."""
MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""


def job_manifest(
    name: str, namespace: str, owner: str, uid: str, purpose: str, template: Mapping[str, Any],
    env: Mapping[str, str], deadline_seconds: int,
) -> dict[str, Any]:
    """A batch/v1 Job from a pod template: Kanaria's labels, restartPolicy Never, no retries
    (a failure is reported, never repeated in a loop), the deadline, and ``env`` added to every
    container (a template value of the same name is replaced)."""
    pod = copy.deepcopy(dict(template))
    labels = {**MANAGED_BY, LABEL_DEPLOYMENT: owner, LABEL_JOB: purpose}
    meta = pod.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    spec = pod.setdefault("spec", {})
    spec["restartPolicy"] = "Never"
    for container in spec.get("containers") or []:
        kept = [e for e in container.get("env") or [] if e.get("name") not in env]
        container["env"] = [*kept, *({"name": k, "value": v} for k, v in env.items())]
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "ownerReferences": [owner_reference(owner, uid)]},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": deadline_seconds, "ttlSecondsAfterFinished": 86400,
                 "template": pod},
    }


class Jobs:
    """The Jobs of one ModelDeployment."""

    def __init__(self, api: client.ApiClient, name: str, namespace: str, uid: str) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.name, self.namespace, self.uid = name, namespace, uid

    def observe(self, names: set[str]) -> dict[str, JobState]:
        """How the named Jobs stand (absent ones: Failed, "the Job is gone")."""
        if not names:
            return {}
        selector = ",".join(f"{k}={v}" for k, v in {**MANAGED_BY, LABEL_DEPLOYMENT: self.name}.items())
        listed = self.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        found = {j.metadata.name: j for j in listed if j.metadata is not None}
        out: dict[str, JobState] = {}
        for name in names:
            job = found.get(name)
            if job is None:
                out[name] = JobState("Failed", "", "the Job is gone (deleted before it reported)")
                continue
            out[name] = self._state(job)
        return out

    def _state(self, job: Any) -> JobState:
        conditions = {c.type: c for c in (job.status.conditions or []) if c.status == "True"} if job.status else {}
        failed = conditions.get("Failed")
        if "Complete" in conditions or failed is not None:
            message = self._termination_message(job.metadata.name)
            if failed is not None:
                why = failed.reason or "Failed"
                return JobState("Failed", message, f"{why}: {failed.message or ''}".strip(": "))
            return JobState("Succeeded", message, "")
        return JobState("Running", "", "")

    def _termination_message(self, job: str) -> str:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
        def created(pod: Any) -> str:
            return str(pod.metadata.creation_timestamp or "") if pod.metadata is not None else ""

        for pod in sorted(pods, key=created, reverse=True):
            for status in (pod.status.container_statuses or []) if pod.status else []:
                term = status.state.terminated if status.state else None
                if term is not None and term.message:
                    return str(term.message)[:MESSAGE_LIMIT]
        return ""

    def create(self, name: str, purpose: str, template: Mapping[str, Any], env: Mapping[str, str],
               deadline_seconds: int) -> None:
        """Create the Job; one that exists already (a retried cycle) is left as it is."""
        body = job_manifest(name, self.namespace, self.name, self.uid, purpose, template, env, deadline_seconds)
        try:
            self.batch.create_namespaced_job(self.namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise

    def delete(self, name: str) -> None:
        """Stop a Job and its pods (a deadline passed, or it is no longer wanted)."""
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
