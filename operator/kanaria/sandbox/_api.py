"""A minimal JSON client for the API server, used only by the harness to wait for readiness.

(Tests and the operator use the real clients; this avoids loading them just to poll.)
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanaria.sandbox._proc import http_get


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RawApi:
    server: str
    token: str
    ca_file: Path

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def status(self, path: str) -> tuple[int, bytes]:
        return http_get(self.server + path, context=self._context(), headers=self._headers())

    def get(self, path: str) -> dict[str, Any]:
        code, body = self.status(path)
        if code != 200:
            raise ApiError(code, body.decode(errors="replace"))
        result: dict[str, Any] = json.loads(body)
        return result

    def post(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.server + path,
            data=json.dumps(obj).encode(),
            method="POST",
            headers={**self._headers(), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._context()) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as err:
            with err:
                raise ApiError(err.code, err.read().decode(errors="replace")) from None


def condition_true(obj: dict[str, Any], kind: str) -> bool:
    """True when status.conditions has `kind` with status "True"."""
    for cond in obj.get("status", {}).get("conditions", None) or []:
        if cond.get("type") == kind:
            return bool(cond.get("status") == "True")
    return False
