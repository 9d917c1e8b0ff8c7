"""The test bed's kwok nodes: the stages kwok plays (from the pinned kwok module's
kustomize/stage/), the Node objects it manages, and when a node takes pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kanaria.sandbox._api import ApiError, RawApi, condition_true
from kanaria.sandbox._locate import go_module_dir, repo_root, required_version
from kanaria.sandbox._proc import StartupError
from kanaria.sandbox.readiness import revision_pod_stages

__all__ = ["KWOK_MODULE", "KWOK_NODE_ANNOTATION", "KWOK_POD_READY", "KWOK_STAGES", "POD_CIDR", "node_object",
           "node_schedulable", "write_kwok_config"]

KWOK_MODULE = "sigs.k8s.io/kwok"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Relative to the kwok module's kustomize/stage/. No pod-complete stage: a Job's pod stays
# Running until the sandbox's Job runner (sandbox/jobs.py) has run its command and reports
# how it ended. pod-ready is split in two (sandbox/readiness.py): a model revision's pod starts
# Running but not Ready, and is Ready when its server answers its readiness probe.
KWOK_POD_READY = "pod/fast/pod-ready.yaml"
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat/node-heartbeat.yaml",
    KWOK_POD_READY,
    "pod/fast/pod-delete.yaml",
)
POD_CIDR = "10.244.0.0/16"


def write_kwok_config(workdir: Path) -> Path:
    """kwok's configuration: the stages above, the pod-ready stage split for revision pods."""
    version = required_version(repo_root() / "hack/localcluster/kwok/go.mod", KWOK_MODULE)
    stage_dir = go_module_dir(KWOK_MODULE, version) / "kustomize" / "stage"
    docs: list[str] = []
    for rel in KWOK_STAGES:
        path = stage_dir / rel
        if not path.is_file():
            raise StartupError(f"kwok stage {path} is missing (kwok {version})")
        if rel == KWOK_POD_READY:
            docs.extend(yaml.safe_dump(stage).strip() for stage in revision_pod_stages(path.read_text()))
        else:
            docs.append(path.read_text().strip())
    config = workdir / "kwok.yaml"
    config.write_text("\n---\n".join(docs) + "\n")
    return config


def node_object(name: str, resources: dict[str, str]) -> dict[str, Any]:
    """A Node kwok manages (by its annotation), with ``resources`` allocatable."""
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def node_schedulable(api: RawApi, name: str) -> bool:
    try:
        node = api.get(f"/api/v1/nodes/{name}")
    except ApiError:
        return False
    taints = node.get("spec", {}).get("taints") or []
    return condition_true(node, "Ready") and not any(
        t.get("effect") in ("NoSchedule", "NoExecute") for t in taints
    )
