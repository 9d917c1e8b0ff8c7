"""The sandbox's kubelet never stops a process on a list of Deployments older than it.

The Kubernetes API here is a stand-in for one function's unit test (the real stack runs the
kubelet against a real API server in tests/e2e)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes import client

from kanaria.sandbox.kubelet import LocalKubelet, Served


class _Process:
    host, port = "127.0.0.1", 1

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def _deployment(name: str) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, labels={}),
        spec=SimpleNamespace(replicas=1, template=SimpleNamespace(spec=SimpleNamespace(containers=[]))),
    )


def test_a_process_launched_while_an_older_list_was_in_flight_is_kept(tmp_path: Path) -> None:
    kubelet = LocalKubelet(client.ApiClient(), "ns", tmp_path, tmp_path / "targets.json")
    launched: list[_Process] = []

    def launch(name: str, dep: Any) -> Served:
        launched.append(_Process())
        return Served("m", "r1", name, launched[-1])  # type: ignore[arg-type]

    kubelet._launch = launch  # type: ignore[method-assign]
    calls = 0

    def list_deployments(namespace: str, label_selector: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            # While this list is in flight the Deployment appears, and a route that names it
            # makes resolve() launch its process at once.
            assert kubelet.resolve("m-r1") == ("127.0.0.1", 1)
            return SimpleNamespace(items=[])  # the older answer: without the new Deployment
        return SimpleNamespace(items=[_deployment("m-r1")])

    kubelet.apps = SimpleNamespace(list_namespaced_deployment=list_deployments)  # type: ignore[assignment]
    kubelet._sync()  # the background loop's pass, with the older list
    assert len(launched) == 1 and not launched[0].stopped and "m-r1" in kubelet.served
    kubelet.apps = SimpleNamespace(list_namespaced_deployment=lambda namespace, label_selector: SimpleNamespace(items=[]))  # type: ignore[assignment]
    kubelet._sync()  # a newer list without it: now it goes
    assert launched[0].stopped and "m-r1" not in kubelet.served
