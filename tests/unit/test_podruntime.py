"""The test bed's pod runtime without a cluster: a container's restarts (after an exit, with
the kubelet's back-off; after failureThreshold liveness failures), readiness, and how paths
inside an image's root resolve (its symlinks stay inside it)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kanaria.sandbox._container import inside
from kanaria.sandbox._proc import free_port
from kanaria.sandbox.podruntime import ContainerRun, Probe


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _run(tmp_path: Path, argv: list[str], liveness: Probe | None = None,
         readiness: Probe | None = None) -> ContainerRun:
    return ContainerRun("pod", "c", argv, dict(os.environ), tmp_path / "c.log", 5.0, liveness, readiness)


def test_an_exited_container_restarts_after_the_back_off(tmp_path: Path) -> None:
    run = _run(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"])
    run.start()
    assert run.process is not None
    run.process.wait(10)
    now = run.started
    run.tick(now + 1)
    assert run.restarts == 0 and run.history[-1] == "exited with 3"
    run.tick(now + 1 + 9.9)
    assert run.restarts == 0
    run.tick(now + 1 + 10)
    assert run.restarts == 1 and run.history[-2] == "restarted after exit 3"
    run.process.wait(10)
    run.tick(now + 100)  # the second exit waits 20 s
    run.tick(now + 100 + 19)
    assert run.restarts == 1
    run.tick(now + 100 + 20)
    assert run.restarts == 2
    run.stop()


def test_liveness_failures_restart_and_readiness_follows_the_probe(tmp_path: Path, health_port: int) -> None:
    dead = free_port()  # nothing listens there
    liveness = Probe({"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 5,
                      "periodSeconds": 10, "failureThreshold": 3}, {"health": dead})
    readiness = Probe({"httpGet": {"path": "/healthz", "port": health_port}, "periodSeconds": 10}, {})
    run = _run(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"], liveness, readiness)
    run.start()
    try:
        first = run.process
        t = run.started
        run.tick(t)  # readiness is due at once, liveness after its initial delay
        assert run.ready and liveness.ok is None
        for k in range(2):
            run.tick(t + 5 + 10 * k)
            assert liveness.failures == k + 1 and run.restarts == 0
        run.tick(t + 25)
        assert run.restarts == 1 and run.process is not first
        assert first is not None and first.poll() is not None
        assert run.history[-2] == "liveness probe failed 3 times" and not run.ready
    finally:
        run.stop()


def test_paths_resolve_inside_the_image(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")
    (root / "etc").mkdir()
    (root / "etc" / "escape").symlink_to("../../../../../etc")
    assert inside(root, "/var/run/secrets/kubernetes.io/serviceaccount") == \
        root / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    assert inside(root, "/etc/escape/passwd") == root / "etc" / "passwd"
    assert inside(root, "/../../tmp") == root / "tmp"
