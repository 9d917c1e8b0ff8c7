"""kind-config.yaml (the cluster of `make kind-up`) is one that kind accepts: kindcheck reads it
with the pinned kind's own config loading and validation (hack/localcluster/kind, built by
hack/localcluster/build-kindcheck.sh: `make kindcheck-bin`, part of `make deps`), the checks
`kind create cluster --config` makes before it creates anything. Wrong copies of the file are
refused, each for its own reason, so the check can fail. The tests skip, saying so, when the
checker is not built."""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "kind-config.yaml"
KIND_MODULE = ROOT / "hack" / "localcluster" / "kind"
BUILD = ROOT / "hack" / "localcluster" / "build-kindcheck.sh"


@functools.cache
def _checker() -> str | None:
    out = subprocess.run(["bash", str(BUILD), "--where"], check=True, capture_output=True,
                         text=True, timeout=60).stdout.strip().splitlines()
    path = out[-1] if out else ""
    return path if path and os.access(path, os.X_OK) else None


def kindcheck(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    checker = _checker()
    if checker is None:
        pytest.skip("kindcheck is not built: run `make deps` (or `make kindcheck-bin`, "
                    "hack/localcluster/build-kindcheck.sh)")
    return subprocess.run([checker, *args, str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def _pinned_kind() -> str:
    match = re.search(r"^require sigs\.k8s\.io/kind (v\S+)$", (KIND_MODULE / "go.mod").read_text(), re.M)
    assert match, "hack/localcluster/kind/go.mod does not require sigs.k8s.io/kind"
    return match.group(1)


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_kind_config_is_accepted_by_kind() -> None:
    result = kindcheck(CONFIG)
    assert result.returncode == 0, f"kind {_pinned_kind()} refuses kind-config.yaml:\n{result.stderr}"
    assert result.stdout.startswith("ok:"), result.stdout


def test_kind_config_with_the_name_kind_up_gives() -> None:
    """hack/kind-up.sh passes --name ($KIND_CLUSTER_NAME, else kanaria), which replaces the file's."""
    script = (ROOT / "hack" / "kind-up.sh").read_text()
    match = re.search(r"^name=\$\{KIND_CLUSTER_NAME:-([^}]+)\}$", script, re.M)
    assert match, "hack/kind-up.sh no longer sets name=${KIND_CLUSTER_NAME:-...}"
    assert "--config \"$root/kind-config.yaml\"" in script
    result = kindcheck(CONFIG, "-name", match.group(1))
    assert result.returncode == 0, result.stderr
    assert f'cluster "{match.group(1)}"' in result.stdout


def _add_field(doc: dict[str, Any]) -> None:
    doc["nodez"] = doc.pop("nodes")


def _nested_field(doc: dict[str, Any]) -> None:
    doc["networking"]["serviceSubnets"] = doc["networking"].pop("serviceSubnet")


def _api_version(doc: dict[str, Any]) -> None:
    doc["apiVersion"] = "kind.x-k8s.io/v1alpha3"


def _kind(doc: dict[str, Any]) -> None:
    doc["kind"] = "Clusters"


def _role(doc: dict[str, Any]) -> None:
    doc["nodes"][-1]["role"] = "workers"


def _no_control_plane(doc: dict[str, Any]) -> None:
    doc["nodes"] = [n for n in doc["nodes"] if n.get("role") != "control-plane"] or [{"role": "worker"}]


def _subnet(doc: dict[str, Any]) -> None:
    doc["networking"]["serviceSubnet"] = "10.96.0.0/33"


def _name(doc: dict[str, Any]) -> None:
    doc["name"] = "Kanaria_Cluster"


# a wrong copy of the file → what kind's error must say (so it is refused for that reason)
WRONG: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown-field": (_add_field, "field nodez not found in type v1alpha4.Cluster"),
    "unknown-nested-field": (_nested_field, "field serviceSubnets not found in type v1alpha4.Networking"),
    "api-version": (_api_version, "unknown apiVersion: kind.x-k8s.io/v1alpha3"),
    "kind": (_kind, "unknown kind Clusters"),
    "node-role": (_role, '"workers" is not a valid node role'),
    "no-control-plane": (_no_control_plane, "must have at least one control-plane node"),
    "service-subnet": (_subnet, "invalid service subnet"),
    "cluster-name": (_name, "is not a valid cluster name"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_copy_is_refused(case: str, tmp_path: Path) -> None:
    change, message = WRONG[case]
    doc = copy.deepcopy(_config())
    change(doc)
    wrong = tmp_path / "kind-config.yaml"
    wrong.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = kindcheck(wrong)
    assert result.returncode == 1, f"kind accepted a wrong copy ({case}):\n{wrong.read_text()}"
    assert message in result.stderr, result.stderr


def test_docs_name_the_pinned_kind() -> None:
    docs = (ROOT / "docs" / "testbed.md").read_text()
    assert f"kind {_pinned_kind()}" in docs, "docs/testbed.md does not name the kind version the config is checked against"
