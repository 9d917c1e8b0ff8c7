"""The test bed's kwok stages: a model revision's pod starts Running but not Ready; every other
pod as kwok's own pod-ready stage makes it."""

from __future__ import annotations

import shutil

import pytest

from kanaria.sandbox.kwoknodes import KWOK_MODULE, KWOK_POD_READY
from kanaria.sandbox.readiness import revision_pod_stages


@pytest.fixture(scope="module")
def pod_ready_stage() -> str:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (make deps installs it): kwok's stage comes from its Go module")
    from kanaria.sandbox._locate import go_module_dir, repo_root, required_version

    version = required_version(repo_root() / "hack/localcluster/kwok/go.mod", KWOK_MODULE)
    return (go_module_dir(KWOK_MODULE, version) / "kustomize" / "stage" / KWOK_POD_READY).read_text()


def test_revision_pods_start_unready_and_the_others_keep_kwoks_stage(pod_ready_stage: str) -> None:
    others, revisions = revision_pod_stages(pod_ready_stage)
    assert others["metadata"]["name"] == "pod-ready"
    assert revisions["metadata"]["name"] == "pod-start-unready"
    assert {"key": '.metadata.labels["kanaria.io/revision"]', "operator": "DoesNotExist"} in others["spec"]["selector"]["matchExpressions"]
    assert {"key": '.metadata.labels["kanaria.io/revision"]', "operator": "Exists"} in revisions["spec"]["selector"]["matchExpressions"]

    kept = others["spec"]["next"]["statusTemplate"]
    assert 'status: "True"\n  type: Ready' in kept
    unready = revisions["spec"]["next"]["statusTemplate"]
    assert 'status: "False"\n  type: Ready' in unready
    assert 'status: "False"\n  type: ContainersReady' in unready
    assert 'status: "True"\n  type: Ready' not in unready
    assert "phase: Running" in unready and "podIP:" in unready
    # The containers are running but not ready; init containers still complete as before.
    containers, init = unready.split("initContainerStatuses:")
    assert "ready: false" in containers and "ready: true" not in containers
    assert "ready: true" in init


def test_a_kwok_template_it_does_not_know_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="no longer says"):
        revision_pod_stages("metadata: {name: pod-ready}\nspec: {selector: {matchExpressions: []}, next: {statusTemplate: 'phase: Running'}}")
