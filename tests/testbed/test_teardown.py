"""Stopping the test bed leaves no process and no temp dir behind, even after a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanaria.sandbox._proc import StartupError, pid_exists, processes_in_group
from kanaria.sandbox.cluster import LocalCluster
from kanaria.sandbox.prometheus import LocalPrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

PROGRAMS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def _assert_gone(pids: dict[str, int], workdirs: list[Path]) -> None:
    for name, pid in pids.items():
        assert not pid_exists(pid), f"{name} (pid {pid}) survived teardown"
        # Each program leads its own process group: nothing may be left in it either.
        assert processes_in_group(pid) == [], f"{name}'s process group survived teardown"
    for workdir in workdirs:
        assert not workdir.exists(), f"{workdir} was not removed"


def test_stop_leaves_nothing_behind() -> None:
    cluster = LocalCluster()
    prom = LocalPrometheus()
    cluster.start()
    try:
        prom.start()
        pids = {**cluster.pids(), **prom.pids()}
        workdirs = [cluster.workdir, prom.workdir]
        assert set(pids) == PROGRAMS | {"prometheus"}
        assert all(pid_exists(pid) for pid in pids.values())
    finally:
        prom.close()
        cluster.stop()
    _assert_gone(pids, workdirs)
    assert cluster.pids() == {}
    assert prom.pids() == {}


def test_failure_inside_with_still_tears_down() -> None:
    seen: dict[str, int] = {}
    workdirs: list[Path] = []
    with pytest.raises(RuntimeError, match="a test failed here"):  # noqa: SIM117
        with LocalCluster() as cluster, LocalPrometheus() as prom:
            seen.update(cluster.pids())
            seen.update(prom.pids())
            workdirs.extend([cluster.workdir, prom.workdir])
            raise RuntimeError("a test failed here")
    assert set(seen) == PROGRAMS | {"prometheus"}
    _assert_gone(seen, workdirs)


def test_failed_start_reports_the_log_and_cleans_up(tmp_path: Path) -> None:
    """A program that dies at start-up: the error carries its log tail; nothing is left."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in PROGRAMS | {"kubectl"}:
        script = fake / name
        script.write_text("#!/bin/sh\necho 'no storage for you' >&2\nexit 3\n")
        script.chmod(0o755)
    cluster = LocalCluster(bin_dir=fake, start_timeout=10)
    with pytest.raises(StartupError) as caught:
        cluster.start()
    message = str(caught.value)
    assert "etcd exited with code 3" in message
    assert "no storage for you" in message
    assert cluster.pids() == {}
    with pytest.raises(RuntimeError, match="not started"):
        _ = cluster.workdir
