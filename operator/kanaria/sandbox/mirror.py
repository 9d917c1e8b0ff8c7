"""A mirroring hop for the shadow strategy: nginx in front of HAProxy.

The operator shadows a revision with a Gateway API ``RequestMirror`` filter on the route's
first rule: live traffic goes to the stable revision, and a copy of ``percent`` of it goes
to the shadow, whose responses are thrown away. HAProxy 2.6 cannot mirror, so the sandbox
puts Debian's nginx (``nginx-light`` has the mirror and split_clients modules) in front of
it:

    client ─► nginx (:class:`MirrorProxy`) ─► HAProxy ─► stable (and canary) servers
                    └─ mirror ─► shadow server (response discarded)

:class:`MirrorProxy` runs ``/usr/sbin/nginx`` (configuration from :mod:`kanaria.sandbox.nginxconf`) (``daemon off; master_process on``) from a
generated configuration in a temporary directory (pid file, logs and temp paths all inside
it), in its own process group, on a free 127.0.0.1 port:

- ``/predict`` and ``/feedback`` are proxied to HAProxy and mirrored (``mirror``,
  ``mirror_request_body on``) to an internal location, which proxies the copy to the
  shadow when one is set and the request is picked, and otherwise answers 204 at once;
- requests are picked with ``split_clients`` on the request id: the ``X-Request-Id`` header
  when the client sent one, else nginx's ``$request_id``. The same id goes upstream and to
  the shadow in ``X-Request-Id``. So a label posted with its prediction's id is mirrored
  exactly when its prediction was, and reaches the shadow that saw the request;
- everything else (``/metrics``, ``/healthz``, ``/admin/...``) is proxied, never mirrored;
- ``GET /_kanaria_mirror_state`` answers the configuration in force (a generation number,
  the shadow's address, the percent), which is how a reload is known to have happened.

:meth:`MirrorProxy.set_mirror` and :meth:`MirrorProxy.clear_mirror` rewrite the
configuration, check it (``nginx -t``), SIGHUP the master and wait until the new
generation answers and the old workers have exited.

:func:`~kanaria.sandbox.httproute.mirror_from_httproute` reads an HTTPRoute's mirror target; :class:`MirrorFollower`
applies it to a :class:`MirrorProxy` on every change
:class:`~kanaria.sandbox.route_sync.HTTPRouteSync` sees.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kanaria.sandbox._proc import ManagedProcess, free_port, run, tail
from kanaria.sandbox.httproute import mirror_from_httproute, pin_from_httproute
from kanaria.sandbox.nginxconf import (
    MIRRORED_HEADER,
    STATE_PATH,
    MirrorError,
    MirrorTarget,
    Pin,
    percent_share,
    render_config,
)
from kanaria.sandbox.proxy import server_name

__all__ = [
    "MIRRORED_HEADER",
    "NGINX_BIN",
    "STATE_PATH",
    "MirrorError",
    "MirrorFollower",
    "MirrorProxy",
    "MirrorTarget",
    "Pin",
]

NGINX_BIN = "/usr/sbin/nginx"

_log = logging.getLogger(__name__)


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()  # state ppid ...
        if len(rest) >= 2 and int(rest[1]) == pid and rest[0] != "Z":
            found.add(int(entry.name))
    return found


class MirrorProxy:
    """Real nginx in front of ``upstream_url`` (HAProxy's frontend) that can mirror traffic.

    Use as a context manager or call ``start``/``stop``. ``mirror_timeout_s`` bounds how long
    nginx waits for the shadow: a client's next request on the same keep-alive connection
    waits for the previous request's mirror copy to finish, so a slow shadow slows clients
    down by up to this much.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        nginx_bin: str = NGINX_BIN,
        startup_timeout: float = 10.0,
        reload_timeout: float = 15.0,
        mirror_timeout_s: float = 5.0,
    ) -> None:
        parsed = urlparse(upstream_url)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream_url!r}")
        self.upstream = (parsed.hostname, parsed.port)
        self._bin = nginx_bin
        self._startup_timeout = startup_timeout
        self._reload_timeout = reload_timeout
        self._mirror_timeout = mirror_timeout_s
        self._lock = threading.RLock()
        self._dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._target: MirrorTarget | None = None
        self._pin: Pin | None = None
        self._generation = 0
        self.port = 0

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The nginx master's pid (also its process group)."""
        return None if self._process is None else self._process.pid

    @property
    def target(self) -> MirrorTarget | None:
        """The mirror target in force, or None when nothing is mirrored."""
        return self._target

    def start(self) -> MirrorProxy:
        with self._lock:
            if self._process is not None:
                raise MirrorError("already started")
            self._dir = Path(tempfile.mkdtemp(prefix="kanaria-nginx-"))
            last_error: Exception | None = None
            for _attempt in range(3):  # a chosen port may be taken before nginx binds it
                try:
                    self._launch()
                    return self
                except MirrorError as exc:
                    last_error = exc
                    self._terminate()
            self.stop()
            raise MirrorError(f"nginx did not start: {last_error}")

    def _paths(self) -> tuple[Path, Path, Path]:
        if self._dir is None:
            raise MirrorError("mirror proxy is not started")
        return self._dir / "nginx.conf", self._dir / "error.log", self._dir / "nginx.log"

    def _write_config(self, target: MirrorTarget | None, generation: int, pin: Pin | None = None) -> None:
        assert self._dir is not None
        config, error_log, _ = self._paths()
        config.write_text(
            render_config(
                self._dir,
                self.port,
                self.upstream,
                target,
                generation,
                mirror_timeout_s=self._mirror_timeout,
                pin=pin,
            )
        )
        try:
            run([self._bin, "-t", "-q", "-p", str(self._dir), "-c", str(config), "-e", str(error_log)], timeout=30)
        except RuntimeError as exc:
            raise MirrorError(f"nginx refused the configuration: {exc}") from exc

    def _launch(self) -> None:
        assert self._dir is not None
        self.port = free_port()
        self._generation += 1
        self._write_config(self._target, self._generation, self._pin)
        config, error_log, log = self._paths()
        process = ManagedProcess(
            "nginx",
            [self._bin, "-p", str(self._dir), "-c", str(config), "-e", str(error_log)],
            log,
        )
        self._process = process
        process.start()
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise MirrorError(f"nginx exited: {tail(error_log, 20)} {tail(log, 20)}")
            try:
                if self.state()["generation"] == self._generation:
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.02)
        raise MirrorError(f"timed out waiting for nginx: {tail(error_log, 20)}")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop(timeout=5.0)

    def stop(self) -> None:
        """Stop nginx (its whole process group) and remove the temporary directory."""
        with self._lock:
            self._terminate()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> MirrorProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the mirror -------------------------------------------------------------------------

    def state(self, timeout: float = 2.0) -> dict[str, Any]:
        """The configuration nginx answers with right now, on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", STATE_PATH)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise MirrorError(f"{STATE_PATH}: HTTP {response.status}")
        finally:
            conn.close()
        state: dict[str, Any] = json.loads(body)
        return state

    def set_mirror(self, host: str, port: int, percent: float = 100.0) -> None:
        """Copy ``percent`` of /predict and /feedback to ``host:port``; returns when in force.

        A percent of 0 (or below 0.01) mirrors nothing, like :meth:`clear_mirror`.
        """
        share = percent_share(percent)
        self._apply(None if share <= 0 else MirrorTarget(host, int(port), share), keep_pin=True)

    def clear_mirror(self) -> None:
        """Stop mirroring; returns when in force."""
        self._apply(None, keep_pin=True)

    def set_pin(self, pin: Pin | None) -> None:
        """Send requests matching ``pin`` to its server (None: no pinning); returns when in force."""
        with self._lock:
            self._apply(self._target, pin)

    @property
    def pin(self) -> Pin | None:
        return self._pin

    def _apply(self, target: MirrorTarget | None, pin: Pin | None = None, *, keep_pin: bool = False) -> None:
        with self._lock:
            if keep_pin:
                pin = self._pin
            if self._process is None or not self._process.alive():
                raise MirrorError("mirror proxy is not running")
            if target == self._target and pin == self._pin:
                return
            master = self._process.pid
            assert master is not None
            old_workers = _children(master)
            generation = self._generation + 1
            self._write_config(target, generation, pin)
            os.kill(master, signal.SIGHUP)
            self._generation = generation
            self._target, self._pin = target, pin
            self._await_generation(generation, old_workers)

    def _await_generation(self, generation: int, old_workers: set[int]) -> None:
        """Wait until the new configuration answers and no old worker is left serving."""
        assert self._process is not None and self._process.pid is not None
        master = self._process.pid
        deadline = time.monotonic() + self._reload_timeout
        seen = -1
        while time.monotonic() < deadline:
            if not self._process.alive():
                _, error_log, _ = self._paths()
                raise MirrorError(f"nginx exited during reload: {tail(error_log, 20)}")
            try:
                seen = int(self.state()["generation"])
            except (OSError, http.client.HTTPException, ValueError, MirrorError):
                seen = -1
            if seen == generation and not (old_workers & _children(master)):
                return
            time.sleep(0.02)
        _, error_log, _ = self._paths()
        raise MirrorError(
            f"nginx did not take generation {generation} in time (answers {seen}): "
            f"{tail(error_log, 20)}"
        )


class MirrorFollower:
    """Keep a :class:`MirrorProxy`'s mirror and pin equal to an HTTPRoute's RequestMirror
    filter and match rule (a follower of :class:`~kanaria.sandbox.route_sync.HTTPRouteSync`).

    ``resolver`` maps the mirrored Service's name to ``(host, port)``; it may raise
    ``KeyError`` while that process starts (the sync tries again). A route without a mirror
    filter, or a deleted route, clears the mirror.
    """

    def __init__(self, mirror_proxy: MirrorProxy, resolver: Callable[[str], tuple[str, int]]) -> None:
        self.mirror_proxy = mirror_proxy
        self.resolver = resolver
        self._lock = threading.Lock()
        self.applied: tuple[str, float] | None = None

    def apply(self, route: Mapping[str, Any] | None) -> tuple[str, float] | None:
        """Make the mirror match the route (None: the route is gone); returns its target."""
        wanted = None if route is None else mirror_from_httproute(route)
        pinned = None if route is None else pin_from_httproute(route)
        with self._lock:
            pin = None if pinned is None else Pin(server_name(pinned[0]), pinned[1])
            if pin != self.mirror_proxy.pin:
                self.mirror_proxy.set_pin(pin)
            if wanted is None:
                self.mirror_proxy.clear_mirror()
            else:
                service, percent = wanted
                host, port = self.resolver(service)
                self.mirror_proxy.set_mirror(host, port, percent)
            self.applied = wanted
        return wanted
