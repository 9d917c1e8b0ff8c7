"""Reference model server: a real scikit-learn model behind HTTP, instrumented for Kanaria.

Endpoints:

- ``POST /predict`` -- ``{"features": [...]}`` (one row; answer ``prediction``, ``score``,
  ``request_id``, ``revision``) or ``{"instances": [[...], ...]}`` (answer ``predictions``:
  a list of those). The request id comes from the ``X-Request-Id`` header or the
  ``request_id`` (``request_ids`` for instances) field, else is generated. Every instance
  counts as one request in the metrics. The response carries ``X-Kanaria-Revision``.
- ``POST /feedback`` -- ``{"request_id": ..., "label": ..., "served_prediction": ...}`` (class
  names or indices; ``served_prediction``, the class the user was given, is optional); answers
  ``{"accepted": bool}``. A label is credited only where the prediction was served (or, for a
  shadow, mirrored); with ``served_prediction`` the server also counts whether its own
  prediction agreed with the served one (``kanaria_model_agreement_total``).
- ``GET /metrics`` (Prometheus text), ``GET /healthz``.
- ``GET|POST /admin/faults`` -- read or change ``{"delay_ms": N, "error_rate": F}`` at run
  time, so a regression can begin after promotion. Only with fault injection on (below);
  otherwise it answers 404 and says so.

Configuration comes from the environment the operator gives the pod: ``KANARIA_MODEL_URI``
(required; ``file://`` URI or path of an artifact written by :mod:`kanaria.sandbox.train`),
``KANARIA_MODEL_NAME``, ``KANARIA_REVISION``, ``KANARIA_MODEL_VERSION``,
``KANARIA_FEEDBACK_MAX_PENDING``, ``KANARIA_FEEDBACK_TTL_SECONDS``,
``KANARIA_MATURITY_HORIZONS`` (see :mod:`kanaria.monitor`; default 300 s). On SIGTERM the
server closes its monitor: predictions not yet matured are counted as dropped (``shutdown``)
and their number is written to stderr.

Labelled samples: with ``KANARIA_SAMPLE_DIR`` set, the server keeps the feature rows of its
recent predictions by request id (as many and as long as the feedback store keeps
predictions: ``KANARIA_FEEDBACK_MAX_PENDING``, ``KANARIA_FEEDBACK_TTL_SECONDS``) and, when a
label arrives for one of them, appends ``{"t", "revision", "request_id", "features", "label"}``
as one JSON line to ``$KANARIA_SAMPLE_DIR/<model name>.jsonl`` (layout and locking:
:mod:`kanaria.sandbox.samples`). Copies mirrored to a shadow (``X-Kanaria-Mirrored: 1``) are
not kept, so each label gives one line. The sandbox's runtime sets the variable for every
model server and for the Jobs it runs, whose retraining reads the file.

Fault injection (a test tool) is off unless the server is started with ``--enable-faults``,
which only the sandbox does (:class:`ModelServerProcess` with ``enable_faults=True``, as the
local stack's runtime launches every model server). With it on: ``/admin/faults``,
``KANARIA_FAULT_DELAY_MS``, ``KANARIA_FAULT_ERROR_RATE`` (these two override the artifact's
``meta.json`` faults), ``KANARIA_FAULT_SEED`` and ``KANARIA_FAULT_INPUT_SCALE``. With it off,
a server given any of those (or an artifact with faults) refuses to start rather than quietly
serve something else than was asked.

    python -m kanaria.sandbox.modelserver [--host H] [--port P] [--enable-faults]

``--host`` defaults to ``KANARIA_HOST``, else ``0.0.0.0`` inside a Kubernetes pod and
``127.0.0.1`` elsewhere; ``--port`` to ``KANARIA_PORT``, else 8080.

With ``--port 0`` a free port is taken; the first line on stdout is always
``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from kanaria.monitor import ModelMonitor, horizons_from_env
from kanaria.sandbox._http import AppHTTPServer, BodyError, read_json_object
from kanaria.sandbox._proc import ServerProcess
from kanaria.sandbox.samples import SAMPLE_DIR_ENV, SampleRecorder, sample_file
from kanaria.sandbox.train import Artifact, load_artifact

__all__ = [
    "Faults",
    "ModelServer",
    "ModelServerProcess",
    "ServerConfig",
    "main",
]

FAULTS_PATH = "/admin/faults"
FAULTS_OFF = (
    "fault injection is off: /admin/faults exists only on a model server the sandbox starts "
    "with --enable-faults"
)
REVISION_HEADER = "X-Kanaria-Revision"
REQUEST_ID_HEADER = "X-Request-Id"
MIRRORED_HEADER = "X-Kanaria-Mirrored"  # what the sandbox's mirror puts on a shadow's copies
_MAX_BODY = 16 * 1024 * 1024


class Faults:
    """Injected latency and error rate, changeable at run time. Thread-safe."""

    def __init__(self, delay_ms: float = 0.0, error_rate: float = 0.0, seed: int | None = None):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.delay_ms = 0.0
        self.error_rate = 0.0
        self.update(delay_ms=delay_ms, error_rate=error_rate)

    def update(self, delay_ms: float | None = None, error_rate: float | None = None) -> None:
        if delay_ms is not None and (delay_ms < 0 or delay_ms > 60_000):
            raise ValueError("delay_ms must be within [0, 60000]")
        if error_rate is not None and not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        with self._lock:
            if delay_ms is not None:
                self.delay_ms = float(delay_ms)
            if error_rate is not None:
                self.error_rate = float(error_rate)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {"delay_ms": self.delay_ms, "error_rate": self.error_rate}

    def draw(self) -> tuple[float, bool]:
        """(delay in seconds, fail this request?) for one request."""
        with self._lock:
            return self.delay_ms / 1000.0, self._rng.random() < self.error_rate


@dataclass(frozen=True)
class ServerConfig:
    model_uri: str
    model_name: str | None = None
    revision: str = "local"
    version: str | None = None
    delay_ms: float | None = None
    error_rate: float | None = None
    pending_max: int = 100_000
    pending_ttl_seconds: float = 3600.0
    maturity_horizons: tuple[float, ...] | None = None
    """Seconds; None: the monitor's default (``KANARIA_MATURITY_HORIZONS``, else 300)."""
    fault_seed: int | None = None
    input_scale: tuple[int, float] | None = None
    """A deliberate preprocessing bug: multiply input feature INDEX by FACTOR before the
    model sees it (and before it is monitored), as a broken feature pipeline would."""
    faults_enabled: bool = False
    """Whether the fault switches (the fields above, ``/admin/faults``) may be used at all."""
    sample_dir: str | None = None
    """Where labelled samples go (``KANARIA_SAMPLE_DIR``); None: nowhere."""

    def requested_faults(self, meta_faults: Mapping[str, Any]) -> list[str]:
        """The fault settings asked for, by name (empty when none is)."""
        asked = [
            name
            for name, value in (
                ("KANARIA_FAULT_DELAY_MS", self.delay_ms),
                ("KANARIA_FAULT_ERROR_RATE", self.error_rate),
                ("KANARIA_FAULT_SEED", self.fault_seed),
                ("KANARIA_FAULT_INPUT_SCALE", self.input_scale),
            )
            if value is not None
        ]
        asked += [f"meta.json faults.{k}" for k, v in sorted(meta_faults.items()) if v]
        return asked

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, faults_enabled: bool = False) -> ServerConfig:
        def number(key: str) -> float | None:
            raw = env.get(key, "").strip()
            return float(raw) if raw else None

        uri = env.get("KANARIA_MODEL_URI", "").strip()
        if not uri:
            raise ValueError("KANARIA_MODEL_URI is not set")
        seed = env.get("KANARIA_FAULT_SEED", "").strip()
        scale = env.get("KANARIA_FAULT_INPUT_SCALE", "").strip()
        input_scale = None
        if scale:
            index, _, factor = scale.partition(":")
            try:
                input_scale = (int(index), float(factor))
            except ValueError as exc:
                raise ValueError(f"KANARIA_FAULT_INPUT_SCALE must be INDEX:FACTOR, not {scale!r}") from exc
        return cls(
            input_scale=input_scale,
            model_uri=uri,
            model_name=env.get("KANARIA_MODEL_NAME") or None,
            revision=env.get("KANARIA_REVISION") or "local",
            version=env.get("KANARIA_MODEL_VERSION") or None,
            delay_ms=number("KANARIA_FAULT_DELAY_MS"),
            error_rate=number("KANARIA_FAULT_ERROR_RATE"),
            pending_max=int(env.get("KANARIA_FEEDBACK_MAX_PENDING") or 100_000),
            pending_ttl_seconds=float(env.get("KANARIA_FEEDBACK_TTL_SECONDS") or 3600.0),
            maturity_horizons=horizons_from_env(env),
            fault_seed=int(seed) if seed else None,
            faults_enabled=faults_enabled,
            sample_dir=env.get(SAMPLE_DIR_ENV, "").strip() or None,
        )


class _BadRequest(Exception):
    pass


class ModelServer:
    """The model, its monitor and the HTTP server; ``start()`` serves in a daemon thread."""

    def __init__(self, config: ServerConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.artifact: Artifact = load_artifact(config.model_uri)
        self.config = config
        meta = self.artifact.meta
        meta_faults = meta.get("faults", {})
        if not config.faults_enabled and (asked := config.requested_faults(meta_faults)):
            raise ValueError(
                f"fault injection is off but {', '.join(asked)} asks for faults; only the "
                "sandbox turns it on (--enable-faults)"
            )
        self.model_name = config.model_name or str(meta.get("dataset", "model"))
        self.revision = config.revision
        self.version = config.version or str(meta.get("version", ""))
        self.faults = Faults(
            delay_ms=config.delay_ms
            if config.delay_ms is not None
            else float(meta_faults.get("delay_ms", 0.0)),
            error_rate=config.error_rate
            if config.error_rate is not None
            else float(meta_faults.get("error_rate", 0.0)),
            seed=config.fault_seed,
        )
        self.monitor = ModelMonitor(
            self.model_name,
            self.revision,
            self.artifact.profile,
            pending_max=config.pending_max,
            pending_ttl_seconds=config.pending_ttl_seconds,
            version=self.version,
            maturity_horizons=config.maturity_horizons,
        )
        self.samples = self._sample_recorder(config)
        self._httpd = _HTTPServer((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

    def _sample_recorder(self, config: ServerConfig) -> SampleRecorder | None:
        if config.sample_dir is None:
            return None
        return SampleRecorder(
            sample_file(config.sample_dir, self.model_name),
            self.revision,
            self.artifact.profile.classes,
            max_rows=config.pending_max,
            ttl_seconds=config.pending_ttl_seconds,
        )

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self.serve_forever, name=f"modelserver-{self.revision}", daemon=True)
        self._thread.start()
        return self

    def request_shutdown(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler)."""
        threading.Thread(target=self._httpd.shutdown, daemon=True).start()

    def close(self) -> int:
        """Close the socket and the monitor; returns how many predictions had not matured."""
        self._httpd.server_close()
        return self.monitor.close()

    def stop(self) -> None:
        self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) ------------------------------------

    def class_name(self, label: object) -> str:
        classes = self.artifact.profile.classes
        if isinstance(label, bool):
            return str(label)
        if isinstance(label, int) and str(label) not in classes and 0 <= label < len(classes):
            return classes[label]
        return str(label)

    def predict(
        self, body: Mapping[str, Any], header_id: str | None, *, mirrored: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """Answer one prediction request; ``mirrored``: a shadow's copy (never answered to
        anyone, so its rows are not kept as samples)."""
        started = time.perf_counter()
        single = "features" in body
        rows, ids = self._parse_rows(body, header_id, single)
        sent = rows  # as the client sent them: what labelled samples record
        if self.config.input_scale is not None:
            index, factor = self.config.input_scale
            rows = [[v * factor if i == index else v for i, v in enumerate(row)] for row in rows]
        delay, fail = self.faults.draw()
        if delay > 0:
            time.sleep(delay)
        if fail:
            latency = time.perf_counter() - started
            for rid, row in zip(ids, rows, strict=True):
                self.monitor.observe_request(rid, row, None, None, latency, error=True)
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": "injected fault",
                "request_ids": ids,
                "revision": self.revision,
            }
        names, scores = self.artifact.predict(rows)
        latency = time.perf_counter() - started
        answers = []
        for rid, row, name, score in zip(ids, rows, names, scores, strict=True):
            self.monitor.observe_request(rid, row, name, score, latency)
            answers.append({"prediction": name, "score": score, "request_id": rid})
        if self.samples is not None and not mirrored:
            for rid, row in zip(ids, sent, strict=True):
                self.samples.remember(rid, row)
        common = {"revision": self.revision, "model": self.model_name, "version": self.version}
        if single:
            return HTTPStatus.OK, {**answers[0], **common}
        return HTTPStatus.OK, {"predictions": answers, **common}

    def _parse_rows(
        self, body: Mapping[str, Any], header_id: str | None, single: bool
    ) -> tuple[list[list[float]], list[str]]:
        width = self.artifact.profile.n_features
        raw = [body["features"]] if single else body.get("instances")
        if not isinstance(raw, list) or not raw:
            raise _BadRequest('expected {"features": [...]} or {"instances": [[...], ...]}')
        try:
            rows = [[float(v) for v in row] for row in raw]
        except (TypeError, ValueError) as exc:
            raise _BadRequest(f"features must be numbers: {exc}") from exc
        if any(len(row) != width for row in rows):
            raise _BadRequest(f"each instance needs {width} features")
        if single:
            ids = [str(body.get("request_id") or header_id or uuid.uuid4().hex)]
        else:
            given = body.get("request_ids")
            if given is not None and (not isinstance(given, list) or len(given) != len(rows)):
                raise _BadRequest("request_ids must be a list as long as instances")
            ids = [str(i) for i in given] if given else [uuid.uuid4().hex for _ in rows]
        return rows, ids

    def feedback(self, body: Mapping[str, Any], header_id: str | None) -> dict[str, Any]:
        rid = body.get("request_id") or header_id
        if not rid or "label" not in body:
            raise _BadRequest('expected {"request_id": ..., "label": ...}')
        served = body.get("served_prediction")
        label = self.class_name(body["label"])
        accepted = self.monitor.feedback(
            str(rid),
            label,
            served_prediction=None if served is None else self.class_name(served),
        )
        if self.samples is not None:
            self.samples.label(str(rid), label)
        return {"accepted": accepted, "request_id": str(rid), "revision": self.revision}

    def set_faults(self, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self.faults.update(
                delay_ms=None if body.get("delay_ms") is None else float(body["delay_ms"]),
                error_rate=None if body.get("error_rate") is None else float(body["error_rate"]),
            )
        except (TypeError, ValueError) as exc:
            raise _BadRequest(str(exc)) from exc
        return self.faults.as_dict()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model_name,
            "revision": self.revision,
            "version": self.version,
            "test_accuracy": self.artifact.meta.get("test_accuracy"),
        }


class _HTTPServer(AppHTTPServer):
    app: ModelServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet: request logs would drown the test output

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(REVISION_HEADER, self.server.app.revision)
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, body: Mapping[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        try:
            return read_json_object(self, _MAX_BODY)
        except BodyError as exc:
            raise _BadRequest(str(exc)) from exc

    def do_GET(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, app.monitor.exposition(), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            self._json(HTTPStatus.OK, app.health())
        elif path == FAULTS_PATH and not app.config.faults_enabled:
            self._json(HTTPStatus.NOT_FOUND, {"error": FAULTS_OFF})
        elif path == FAULTS_PATH:
            self._json(HTTPStatus.OK, app.faults.as_dict())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        header_id = self.headers.get(REQUEST_ID_HEADER)
        try:
            body = self._body()
            if path == "/predict":
                mirrored = self.headers.get(MIRRORED_HEADER) == "1"
                status, answer = app.predict(body, header_id, mirrored=mirrored)
                self._json(status, answer)
            elif path == "/feedback":
                self._json(HTTPStatus.OK, app.feedback(body, header_id))
            elif path == FAULTS_PATH and not app.config.faults_enabled:
                self._json(HTTPStatus.NOT_FOUND, {"error": FAULTS_OFF})
            elif path == FAULTS_PATH:
                self._json(HTTPStatus.OK, app.set_faults(body))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})
        except _BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc), "revision": app.revision})


class ModelServerProcess(ServerProcess):
    """Run ``python -m kanaria.sandbox.modelserver`` as a child in its own process group.

    ``env`` is added to the current environment (set ``KANARIA_MODEL_URI`` and friends there).
    ``enable_faults`` passes ``--enable-faults``: the sandbox's switch for fault injection.
    The port is chosen by the child (``--port 0``) and read from its first line of output;
    its stderr goes to ``log_path`` (a temporary file unless given).
    """

    module = "kanaria.sandbox.modelserver"
    what = "model server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.modelserver")
    in_pod = "KUBERNETES_SERVICE_HOST" in os.environ  # a Service must reach the pod
    parser.add_argument(
        "--host", default=os.environ.get("KANARIA_HOST") or ("0.0.0.0" if in_pod else "127.0.0.1")
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("KANARIA_PORT", "8080")))
    parser.add_argument(
        "--enable-faults",
        action="store_true",
        help="allow fault injection (KANARIA_FAULT_*, /admin/faults); for the sandbox's tests",
    )
    args = parser.parse_args(argv)
    config = ServerConfig.from_env(os.environ, faults_enabled=args.enable_faults)
    server = ModelServer(config, host=args.host, port=args.port)

    signal.signal(signal.SIGTERM, lambda _signum, _frame: server.request_shutdown())
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        lost = server.close()
        print(f"shutdown: {lost} predictions had not matured (counted as dropped, reason shutdown)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
