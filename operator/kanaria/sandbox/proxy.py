"""HAProxy in front of the model servers, with weights that follow an HTTPRoute.

:class:`HAProxyProxy` runs Debian's ``/usr/sbin/haproxy`` from a generated configuration in a
temporary directory, in its own process group, on free 127.0.0.1 ports:

- the frontend (``url``): one backend, ``models``, ``balance roundrobin``, one server per
  revision or Service;
- a stats port with HAProxy's built-in Prometheus exporter at ``/metrics`` (``USE_PROMEX``,
  present in Debian's 2.6 build) and the HTML stats page at ``/stats``;
- an admin stats socket for the runtime API. Servers are added and removed with
  ``add server`` / ``del server`` and weighted with ``set server be/srv weight N``: nothing is
  ever reloaded, so HAProxy's own per-server counters survive every change.

Feedback stickiness: every response carries ``X-Kanaria-Server: <server name>`` (set by
HAProxy), and a request carrying that header is sent to that server by a
``use-server %[req.hdr(X-Kanaria-Server)]`` rule, whatever its weight (weight 0 is HAProxy's
drain state: no new load-balanced traffic, but forced requests still arrive). So a client
posts a label to ``/feedback`` through the proxy with the header it got with the prediction,
and the label reaches the revision that served it even after that revision's weight fell to 0.

:class:`WeightFollower` applies a Gateway API HTTPRoute's backendRefs' weights to the proxy,
on every change :class:`~kanaria.sandbox.route_sync.HTTPRouteSync` sees.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kanaria.sandbox._proc import die_with_parent, free_port
from kanaria.sandbox.httproute import pools_of_httproute, weights_from_httproute

__all__ = [
    "BACKEND",
    "HAPROXY_BIN",
    "MAX_WEIGHT",
    "SERVER_HEADER",
    "HAProxyProxy",
    "ProxyError",
    "WeightFollower",
    "scale_weights",
    "server_name",
]

HAPROXY_BIN = "/usr/sbin/haproxy"
BACKEND = "models"
SERVER_HEADER = "X-Kanaria-Server"
MAX_WEIGHT = 256  # HAProxy's largest server weight

_log = logging.getLogger(__name__)

_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    stats timeout 30s
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    option redispatch
    retries 2

frontend kanaria
    bind 127.0.0.1:{port}
    default_backend {backend}

frontend kanaria-stats
    bind 127.0.0.1:{stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s

backend {backend}
    balance {balance}
    use-server %[req.hdr({header})] if {{ req.hdr({header}) -m found }}
    http-response set-header {header} %s
"""


class ProxyError(RuntimeError):
    """HAProxy refused a runtime command or did not start."""


def server_name(name: str) -> str:
    """A valid HAProxy server name for a revision or Service name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)
    if not cleaned:
        raise ValueError("empty server name")
    return cleaned


def scale_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """Fit weights into HAProxy's 0..256, keeping ratios and keeping non-zero non-zero.

    Weights that already fit are kept exactly (80/20 stays 80/20); larger ones (an HTTPRoute
    allows up to 1,000,000) are scaled so the largest becomes 256.
    """
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    top = max(weights.values(), default=0)
    if top <= MAX_WEIGHT:
        return {name: int(w) for name, w in weights.items()}
    return {
        name: 0 if w == 0 else max(1, round(w * MAX_WEIGHT / top)) for name, w in weights.items()
    }


class HAProxyProxy:
    """A real HAProxy with one backend whose servers and weights change at run time.

    ``servers`` maps names (revisions, Services) to ``(host, port)``; ``weights`` their
    initial weights (0 when missing). Use as a context manager or call ``start``/``stop``.

    Keep ``balance="roundrobin"``: it splits exactly by weight (400 requests at 80/20 gave
    320/80). HAProxy's ``random`` is not proportional with few servers (it draws on a
    consistent-hash ring, and by default takes the less loaded of two draws): at 80/20 it
    gave 351/49 (``random``) and 340/60 (``random(1)``), which a sample-ratio test flags.
    """

    def __init__(
        self,
        servers: Mapping[str, tuple[str, int]] | None = None,
        weights: Mapping[str, int] | None = None,
        *,
        balance: str = "roundrobin",
        haproxy_bin: str = HAPROXY_BIN,
        startup_timeout: float = 10.0,
    ) -> None:
        self._initial_servers = dict(servers or {})
        self._initial_weights = dict(weights or {})
        self._balance = balance
        self._bin = haproxy_bin
        self._startup_timeout = startup_timeout
        self._lock = threading.RLock()
        self._servers: dict[str, tuple[str, int]] = {}
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.stats_port = 0

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/metrics"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/stats"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise ProxyError("proxy is not started")
        return self._dir / "admin.sock"

    def start(self) -> HAProxyProxy:
        if self._process is not None:
            raise ProxyError("already started")
        self._dir = Path(tempfile.mkdtemp(prefix="kanaria-haproxy-"))
        last_error: Exception | None = None
        for _attempt in range(3):  # a chosen port may be taken before HAProxy binds it
            try:
                self._launch()
                break
            except ProxyError as exc:
                last_error = exc
                self._terminate()
        else:
            self.stop()
            raise ProxyError(f"haproxy did not start: {last_error}")
        try:
            for name, (host, port) in self._initial_servers.items():
                self.add_server(name, host, port, self._initial_weights.get(name, 0))
        except Exception:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        assert self._dir is not None
        self.port, self.stats_port = free_port(), free_port()
        config = self._dir / "haproxy.cfg"
        config.write_text(
            _CONFIG.format(
                socket=self.socket_path,
                port=self.port,
                stats_port=self.stats_port,
                backend=BACKEND,
                balance=self._balance,
                header=SERVER_HEADER,
            )
        )
        self.socket_path.unlink(missing_ok=True)
        log_path = self._dir / "haproxy.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self._bin, "-db", "-f", str(config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - nothing else runs in the child
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ProxyError(log_path.read_text(errors="replace").strip()[-2000:])
            if self.socket_path.exists() and _port_open(self.port):
                try:
                    self.runtime("show info")
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise ProxyError("timed out waiting for haproxy")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            process.wait(5)

    def stop(self) -> None:
        """Stop HAProxy (its whole process group) and remove the temporary directory."""
        with self._lock:
            self._terminate()
            self._servers.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> HAProxyProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- runtime API ------------------------------------------------------------------------

    def runtime(self, command: str, timeout: float = 5.0) -> str:
        """Send one command to the admin socket and return HAProxy's answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _expect(self, command: str, ok: Callable[[str], bool]) -> str:
        answer = self.runtime(command)
        if not ok(answer.strip()):
            raise ProxyError(f"{command!r}: {answer.strip()}")
        return answer

    def servers(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return dict(self._servers)

    def add_server(self, name: str, host: str, port: int, weight: int = 0) -> str:
        """Add and enable a server; returns its HAProxy name."""
        srv = server_name(name)
        with self._lock:
            if srv in self._servers:
                raise ProxyError(f"server {srv} exists")
            self._expect(
                f"add server {BACKEND}/{srv} {host}:{int(port)} weight {scale_weights({srv: weight})[srv]}",
                lambda a: "New server registered" in a,
            )
            self._expect(f"enable server {BACKEND}/{srv}", lambda a: a == "")
            self._servers[srv] = (host, int(port))
        return srv

    def move_server(self, name: str, host: str, port: int) -> bool:
        """Point an existing server at a new address (its process was started again on
        another port); False when it already points there."""
        srv = server_name(name)
        with self._lock:
            if self._servers.get(srv) == (host, int(port)):
                return False
            self._expect(
                f"set server {BACKEND}/{srv} addr {host} port {int(port)}",
                lambda a: "changed" in a.lower() or "no need" in a.lower(),
            )
            self._servers[srv] = (host, int(port))
        return True

    def remove_server(self, name: str, timeout: float = 10.0) -> None:
        """Drain, cut and delete a server (its connections must close first)."""
        srv = server_name(name)
        with self._lock:
            if srv not in self._servers:
                raise KeyError(srv)
            self._expect(f"disable server {BACKEND}/{srv}", lambda a: a == "")
            deadline = time.monotonic() + timeout
            while True:
                self.runtime(f"shutdown sessions server {BACKEND}/{srv}")
                answer = self.runtime(f"del server {BACKEND}/{srv}").strip()
                if "deleted" in answer.lower():
                    break
                if time.monotonic() > deadline:
                    raise ProxyError(f"del server {srv}: {answer}")
                time.sleep(0.05)
            del self._servers[srv]

    def set_weights(self, weights: Mapping[str, int]) -> dict[str, int]:
        """Apply a whole split without a restart; servers not named get weight 0.

        Returns the weights HAProxy was given (see :func:`scale_weights`).
        """
        wanted = {server_name(name): int(w) for name, w in weights.items()}
        with self._lock:
            unknown = set(wanted) - set(self._servers)
            if unknown:
                raise KeyError(f"no such servers: {sorted(unknown)}")
            applied = scale_weights({srv: wanted.get(srv, 0) for srv in self._servers})
            # Raise weights before lowering others, so the backend never has none while
            # moving traffic from one server to another.
            for srv, weight in sorted(applied.items(), key=lambda item: -item[1]):
                self._expect(f"set server {BACKEND}/{srv} weight {weight}", lambda a: a == "")
        return applied

    def stat_rows(self) -> list[dict[str, str]]:
        """``show stat`` rows of the backend's servers."""
        text = self.runtime("show stat").lstrip("# ")
        rows = csv.DictReader(line for line in text.splitlines() if line.strip())
        return [r for r in rows if r["pxname"] == BACKEND and r["svname"] not in ("FRONTEND", "BACKEND")]

    def weights(self) -> dict[str, int]:
        """Current weights as HAProxy reports them."""
        return {r["svname"]: int(r["weight"] or 0) for r in self.stat_rows()}

    def served_counts(self) -> dict[str, int]:
        """HTTP requests each server has answered (HAProxy's ``req_tot``), all paths."""
        return {r["svname"]: int(r["req_tot"] or r["stot"] or 0) for r in self.stat_rows()}

    def loadbalanced_counts(self) -> dict[str, int]:
        """Requests the balancer chose each server for (``lbtot``; excludes forced feedback)."""
        return {r["svname"]: int(r["lbtot"] or 0) for r in self.stat_rows()}


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class WeightFollower:
    """Keep a proxy's weights equal to an HTTPRoute's backendRefs weights (a follower of
    :class:`~kanaria.sandbox.route_sync.HTTPRouteSync`).

    ``resolver`` maps a Service name to the ``(host, port)`` of the process serving it; a
    Service seen for the first time becomes a new proxy server, and a known one follows its
    process to a new address (the route is handed over again at least every watch timeout). Services that leave the route
    keep their server at weight 0 (drained), so late feedback still reaches them, unless
    ``remove_absent``. A deleted route leaves the weights as they are.

    ``pool_resolver`` does the same for an InferencePool backendRef: the pool's selector
    resolved to the process serving its pods (the sandbox runs one process per revision).
    """

    def __init__(
        self,
        proxy: HAProxyProxy,
        resolver: Callable[[str], tuple[str, int]],
        *,
        remove_absent: bool = False,
        pool_resolver: Callable[[str], tuple[str, int]] | None = None,
    ) -> None:
        self.proxy = proxy
        self.resolver = resolver
        self.pool_resolver = pool_resolver
        self.remove_absent = remove_absent
        self._lock = threading.Lock()
        self.applied: dict[str, int] | None = None

    def apply(self, route: Mapping[str, Any] | None) -> dict[str, int] | None:
        """Make the proxy match the route; returns the route's weights by Service."""
        if route is None:
            return None
        weights = weights_from_httproute(route)
        pools = pools_of_httproute(route)
        if pools and self.pool_resolver is None:
            raise ProxyError(f"the route names InferencePools {sorted(pools)} and no pool resolver was given")

        def resolve(name: str) -> tuple[str, int]:
            if name in pools and self.pool_resolver is not None:
                return self.pool_resolver(name)
            return self.resolver(name)

        with self._lock:
            known = self.proxy.servers()
            absent: set[str] = set()
            for service in weights:
                if server_name(service) not in known:
                    try:
                        host, port = resolve(service)
                    except KeyError:
                        if weights[service] > 0:
                            raise
                        absent.add(service)  # weight 0 and nothing serving it (scaled to zero)
                        continue
                    self.proxy.add_server(service, host, port, weight=0)
                    continue
                # The process behind a Service can start again on another port (a revision
                # scaled to 0 and back): follow it, or its share of traffic goes nowhere.
                try:
                    host, port = resolve(service)
                except KeyError:
                    continue  # not serving right now: keep the last address
                self.proxy.move_server(service, host, port)
            self.proxy.set_weights({s: w for s, w in weights.items() if s not in absent})
            if self.remove_absent:
                wanted = {server_name(s) for s in weights}
                for srv in set(known) - wanted:
                    self.proxy.remove_server(srv)
            self.applied = weights
        return weights
