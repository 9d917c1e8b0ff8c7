"""What the sandbox's model servers share over HTTP: a threaded server that carries its app
and keeps routine disconnects quiet, and the reading of a JSON object body."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["AppHTTPServer", "BodyError", "read_json_object"]


class BodyError(ValueError):
    """The request body is not one JSON object of at most the allowed size."""


class AppHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose handlers reach ``app``; a client or proxy closing its
    connection (routine for keep-alive and streams) is not worth a traceback."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: Any) -> None:
        self.app = app
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def read_json_object(handler: BaseHTTPRequestHandler, limit: int) -> dict[str, Any]:
    """The request's body as a JSON object ({} when empty); BodyError when it is larger than
    ``limit`` bytes, not JSON, or not an object."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > limit:
        raise BodyError("body too large")
    raw = handler.rfile.read(length) if length else b"{}"
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise BodyError(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BodyError("expected a JSON object")
    return body
