"""The sandbox's stand-in for the Gateway API Inference Extension's data path.

In a cluster a gateway sends an HTTPRoute's share for an InferencePool to that pool's endpoint
picker (the EPP), which applies the InferenceModelRewrites naming the pool (the request body's
``model`` replaced by one of the rule's targets, drawn by weight) and picks one of the pool's
pods. Here:

- :class:`PoolResolver` resolves an InferencePool to the local processes its
  ``selector.matchLabels`` selects (through :class:`~kanaria.sandbox.kubelet.LocalKubelet`,
  which runs one process per revision); HAProxy's
  :class:`~kanaria.sandbox.proxy.WeightFollower` uses it for a route's pool backendRefs.
- :class:`InferenceGateway` is an HTTP front that follows one HTTPRoute (its pool backendRefs'
  weights) and the namespace's InferenceModelRewrites (listed every ``refresh_seconds``): it
  draws a pool by the route's weights, rewrites ``model`` by the matching rule's weights, and
  forwards to an endpoint of the pool that serves the rewritten model (each endpoint's
  ``GET /v1/models``; the real EPP prefers pods with the adapter loaded from
  ``vllm:lora_requests_info``). Answers stream through as they come. It counts the requests
  it sent per (pool, model) in ``counts``, and says ``X-Kanaria-Target-Model``.

What it leaves out of the EPP: load-aware scoring (queue depth, KV cache), prefix-cache
affinity, InferenceObjective priorities, and the pool's ``targetPorts`` (each local process
has its own port).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kanaria.sandbox.httproute import POOL_GROUP, pools_of_httproute, weights_from_httproute
from kanaria.sandbox.kubelet import LocalKubelet, Served

__all__ = [
    "REWRITE_GROUP",
    "REWRITE_VERSION",
    "PoolResolver",
    "InferenceGateway",
    "rewrite_targets",
    "draw",
]

log = logging.getLogger("kanaria.sandbox.inference")

POOL_VERSION = "v1"
REWRITE_GROUP, REWRITE_VERSION = "inference.networking.x-k8s.io", "v1alpha2"
TARGET_MODEL_HEADER = "X-Kanaria-Target-Model"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}
_MAX_BODY = 4 * 1024 * 1024


class PoolResolver:
    """An InferencePool's name -> the local processes its selector selects."""

    def __init__(self, api: client.ApiClient, namespace: str, kubelet: LocalKubelet) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.kubelet = kubelet

    def selector(self, pool: str) -> dict[str, str]:
        """The pool's ``selector.matchLabels``; KeyError when there is no such pool (a route
        may still name the pool of a revision just deleted)."""
        try:
            obj = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                POOL_GROUP, POOL_VERSION, self.namespace, "inferencepools", pool
            ))
        except ApiException as exc:
            if exc.status == 404:
                raise KeyError(f"no InferencePool {pool}") from exc
            raise
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def endpoints(self, pool: str, *, refresh: bool = False) -> list[Served]:
        return self.kubelet.endpoints(self.selector(pool), refresh=refresh)

    def __call__(self, pool: str) -> tuple[str, int]:
        """(host, port) of the pool's first endpoint: HAProxy's one server for a revision's pool."""
        found = self.endpoints(pool, refresh=True)
        if not found:
            raise KeyError(f"no local process is selected by InferencePool {pool}")
        return found[0].process.host, found[0].process.port


def rewrite_targets(
    rewrites: Sequence[Mapping[str, Any]], pool: str, model: str
) -> list[tuple[str, int]] | None:
    """The weighted targets of the first rule, among the rewrites naming ``pool``, whose match
    is ``model`` (Exact); None when no rule matches (the model is left as it is). A target
    without a weight weighs 1."""
    for rewrite in sorted(rewrites, key=lambda r: str((r.get("metadata") or {}).get("name", ""))):
        spec = rewrite.get("spec") or {}
        ref = spec.get("poolRef") or {}
        if ref.get("name") != pool or (ref.get("group") or POOL_GROUP) != POOL_GROUP:
            continue
        for rule in spec.get("rules") or []:
            matches = rule.get("matches") or []
            if any(((m.get("model") or {}).get("value")) == model for m in matches):
                return [(str(t["modelRewrite"]), int(t.get("weight", 1))) for t in rule.get("targets") or []]
    return None


def draw(weighted: Sequence[tuple[str, int]], rng: random.Random) -> str | None:
    """One name, with probability proportional to its weight; None when every weight is 0."""
    total = sum(max(0, w) for _, w in weighted)
    if total <= 0:
        return None
    x = rng.uniform(0, total)
    for name, w in weighted:
        x -= max(0, w)
        if x < 0:
            return name
    return weighted[-1][0]


class InferenceGateway:
    """An HTTP front doing a gateway's and an endpoint picker's parts for InferencePools; a
    follower of :class:`~kanaria.sandbox.route_sync.HTTPRouteSync` (see the module doc)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        resolver: PoolResolver,
        *,
        seed: int = 0,
        refresh_seconds: float = 0.5,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.resolver = resolver
        self.refresh_seconds = refresh_seconds
        self.counts: Counter[tuple[str, str]] = Counter()
        """Requests forwarded, per (pool, model after the rewrite)."""
        self.split: dict[str, int] = {}
        self.rewrites: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int], tuple[float, set[str]]] = {}
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- following --------------------------------------------------------------------------

    def apply(self, route: Mapping[str, Any] | None) -> dict[str, int]:
        """Follow the route's split over InferencePools (None: the route is gone)."""
        pools = pools_of_httproute(route) if route is not None else set()
        split = {k: v for k, v in weights_from_httproute(route).items() if k in pools} if route else {}
        with self._lock:
            self.split = split
        return split

    def refresh(self) -> None:
        listing = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
            REWRITE_GROUP, REWRITE_VERSION, self.namespace, "inferencemodelrewrites"
        ))
        with self._lock:
            self.rewrites = list(listing.get("items") or [])

    def targets(self, pool: str, model: str) -> list[tuple[str, int]]:
        """The weighted targets the gateway now applies to ``model`` in ``pool``."""
        with self._lock:
            return rewrite_targets(self.rewrites, pool, model) or []

    def _follow_rewrites(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep following: a transient API error must not stop it
                log.warning("InferenceModelRewrite refresh: %r", exc)
            self._stop.wait(self.refresh_seconds)

    # -- choosing -----------------------------------------------------------------------------

    def _served_models(self, endpoint: Served) -> set[str]:
        key = (endpoint.process.host, endpoint.process.port)
        now = time.monotonic()
        cached = self._models.get(key)
        if cached is not None and now - cached[0] < 2.0:
            return cached[1]
        conn = http.client.HTTPConnection(*key, timeout=2)
        try:
            conn.request("GET", "/v1/models")
            data = json.loads(conn.getresponse().read() or b"{}")
            names = {str(m.get("id")) for m in data.get("data") or []}
        except (OSError, ValueError):
            names = set()
        finally:
            conn.close()
        self._models[key] = (now, names)
        return names

    def choose(self, model: str | None) -> tuple[str, str | None, Served]:
        """(pool, model to send, endpoint) for a request asking for ``model``."""
        with self._lock:
            pool = draw(sorted(self.split.items()), self._rng)
            if pool is None:
                raise LookupError("the route sends no traffic to an InferencePool")
            targets = rewrite_targets(self.rewrites, pool, model) if model is not None else None
            target = draw(targets, self._rng) if targets else None
        target = target or model
        try:
            endpoints = self.resolver.endpoints(pool) or self.resolver.endpoints(pool, refresh=True)
        except KeyError as exc:
            raise LookupError(str(exc)) from exc
        if not endpoints:
            raise LookupError(f"InferencePool {pool} has no endpoint")
        serving = [e for e in endpoints if target is None or target in self._served_models(e)]
        with self._lock:
            endpoint = self._rng.choice(serving or endpoints)
            self.counts[(pool, target or "")] += 1
        return pool, target, endpoint

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> InferenceGateway:
        for target, name in ((self._server.serve_forever, "inference-gateway"),
                             (self._follow_rewrites, "inference-rewrites")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> InferenceGateway:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], gateway: InferenceGateway):
        super().__init__(address, handler)
        self.gateway = gateway


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read counts
        return

    def _fail(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": {"message": message}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._forward(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return
        self._forward(self.rfile.read(length))

    def _forward(self, raw: bytes) -> None:
        gateway = self.server.gateway
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
        try:
            _, target, endpoint = gateway.choose(model)
        except (LookupError, ApiException) as exc:
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
            return
        if isinstance(body, dict) and target is not None and target != model:
            body["model"] = target
            raw = json.dumps(body).encode()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
        if raw:
            headers["Content-Length"] = str(len(raw))
        conn = http.client.HTTPConnection(endpoint.process.host, endpoint.process.port, timeout=120)
        try:
            try:
                conn.request(self.command, self.path, body=raw or None, headers=headers)
                upstream = conn.getresponse()
            except OSError as exc:
                self._fail(HTTPStatus.BAD_GATEWAY, f"endpoint {endpoint.service}: {exc}")
                return
            self.send_response(upstream.status)
            for key, value in upstream.getheaders():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            if target is not None:
                self.send_header(TARGET_MODEL_HEADER, target)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = upstream.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client or the server went away mid-answer
        finally:
            conn.close()
