"""The LLM server's wire protocol: OpenAI's completions and chat completions over HTTP, with
server-sent events when streaming, the sandbox's headers, and the request a completion becomes
(:class:`Job`). :class:`LLMHandler` answers for an :class:`~kanaria.sandbox.llmserver.LLMServer`.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from kanaria.sandbox._http import AppHTTPServer, BodyError, read_json_object
from kanaria.sandbox.llmconfig import FaultDraw
from kanaria.sandbox.llmsched import Ticket

if TYPE_CHECKING:
    from kanaria.sandbox.llmserver import LLMServer

__all__ = ["FAULTS_OFF", "FAULTS_PATH", "ID_PREFIXES", "MAX_BODY", "MODEL_HEADER", "QUALITY_HEADER",
           "REQUEST_ID_HEADER", "REQUEST_ID_PATTERN", "REVISION_HEADER", "BadRequest", "Job", "LLMHTTPServer",
           "LLMHandler", "message_text"]

FAULTS_PATH = "/admin/faults"
FAULTS_OFF = (
    "fault injection is off: /admin/faults exists only on an LLM server the sandbox starts "
    "with --enable-faults"
)
REVISION_HEADER = "X-Kanaria-Revision"
REQUEST_ID_HEADER = "X-Request-Id"
QUALITY_HEADER = "X-Kanaria-Quality"
MODEL_HEADER = "X-Kanaria-Model"
MAX_BODY = 4 * 1024 * 1024
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_PREFIXES = ("chatcmpl-", "cmpl-")
class BadRequest(Exception):
    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass
class Job:
    """One completion request, from admission to its finish."""

    chat: bool
    request_id: str
    arrival: float
    prompt_tokens: int
    context: list[str]
    previous: str | None
    max_tokens: int
    max_tokens_param: int | None
    temperature: float
    rng: random.Random
    faults: FaultDraw
    abort_at: int | None
    stream: bool
    include_usage: bool
    model: str = ""
    """The served name the request asked for (the base model or the adapter)."""
    ticket: Ticket | None = None
    completion_tokens: int = 0
    finish_reason: str | None = None
    text: list[str] = field(default_factory=list)

    @property
    def response_id(self) -> str:
        return ("chatcmpl-" if self.chat else "cmpl-") + self.request_id

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts are understood
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(str(p) for p in parts)
    if content is None:
        return ""
    raise BadRequest("a message's content must be a string or a list of text parts")





class LLMHTTPServer(AppHTTPServer):
    request_queue_size = 128  # bursts of streaming clients connect at once
    app: LLMServer


class LLMHandler(BaseHTTPRequestHandler):
    server: LLMHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # every streamed token goes out at once

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet: request logs would drown the test output

    def _headers(self, status: int, content_type: str, extra: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header(REVISION_HEADER, self.server.app.revision)
        for name, value in extra.items():
            self.send_header(name, value)

    def _send(self, status: int, payload: bytes, content_type: str, extra: Mapping[str, str] | None = None) -> None:
        self._headers(status, content_type, extra or {})
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", extra)

    def _error(self, exc: BadRequest, extra: Mapping[str, str] | None = None) -> None:
        body = {"error": {"message": str(exc), "type": exc.kind, "code": int(exc.status)}}
        self._json(exc.status, body, extra)

    def _body(self) -> dict[str, Any]:
        try:
            return read_json_object(self, MAX_BODY)
        except BodyError as exc:
            raise BadRequest(str(exc)) from exc

    def do_GET(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, app.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path in ("/health", "/healthz", "/readyz"):
            self._json(HTTPStatus.OK, app.health())
        elif path == "/v1/models":
            self._json(HTTPStatus.OK, app.models())
        elif path == FAULTS_PATH and not app.config.faults_enabled:
            self._error(BadRequest(FAULTS_OFF, HTTPStatus.NOT_FOUND, "NotFoundError"))
        elif path == FAULTS_PATH:
            self._json(HTTPStatus.OK, app.faults.as_dict())
        else:
            self._error(BadRequest(f"no route {path}", HTTPStatus.NOT_FOUND, "NotFoundError"))

    def do_POST(self) -> None:
        arrival = time.monotonic()
        app = self.server.app
        path = self.path.split("?", 1)[0]
        header_id = self.headers.get(REQUEST_ID_HEADER)
        try:
            body = self._body()
            if path in ("/v1/completions", "/v1/chat/completions"):
                job = app.job(body, chat=path.endswith("/chat/completions"), header_id=header_id, arrival=arrival)
                app.admit(job)
                self._complete(job)
            elif path == "/feedback":
                self._json(HTTPStatus.OK, app.feedback(body, header_id))
            elif path == FAULTS_PATH and not app.config.faults_enabled:
                raise BadRequest(FAULTS_OFF, HTTPStatus.NOT_FOUND, "NotFoundError")
            elif path == FAULTS_PATH:
                self._json(HTTPStatus.OK, app.set_faults(body))
            else:
                raise BadRequest(f"no route {path}", HTTPStatus.NOT_FOUND, "NotFoundError")
        except BadRequest as exc:
            self._error(exc)

    # -- completions --------------------------------------------------------------------------

    def _job_headers(self, job: Job) -> dict[str, str]:
        headers = {REQUEST_ID_HEADER: job.request_id, MODEL_HEADER: job.model or self.server.app.model_name}
        if self.server.app.config.faults_enabled:
            headers[QUALITY_HEADER] = "bad" if job.faults.bad else "good"
        return headers

    def _complete(self, job: Job) -> None:
        app = self.server.app
        tokens = app.generate(job)
        try:
            if job.stream:
                self._stream(job, tokens)
            else:
                for _ in tokens:
                    pass
                self._json(HTTPStatus.OK, self._final_body(job), self._job_headers(job))
        finally:
            tokens.close()  # aborts the request if the client went away
            if job.ticket is not None:
                app.scheduler.release(job.ticket)  # a no-op once the generator has run

    def _final_body(self, job: Job) -> dict[str, Any]:
        app = self.server.app
        text = "".join(job.text)
        choice: dict[str, Any]
        if job.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": job.finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": job.finish_reason}
        return {
            "id": job.response_id,
            "object": "chat.completion" if job.chat else "text_completion",
            "created": int(time.time()),
            "model": job.model or app.model_name,
            "choices": [choice],
            "usage": job.usage(),
        }

    def _chunk(self, job: Job, text: str | None, finish_reason: str | None, *, role: bool = False) -> dict[str, Any]:
        choice: dict[str, Any]
        if job.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {
            "id": job.response_id,
            "object": "chat.completion.chunk" if job.chat else "text_completion",
            "created": int(time.time()),
            "model": job.model or self.server.app.model_name,
            "choices": [choice],
        }
        if job.include_usage:
            chunk["usage"] = None
        return chunk

    def _event(self, data: Mapping[str, Any] | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        message = f"data: {payload}\n\n".encode()
        self.wfile.write(b"%X\r\n%s\r\n" % (len(message), message))

    def _stream(self, job: Job, tokens: Iterator[str]) -> None:
        self._headers(HTTPStatus.OK, "text/event-stream; charset=utf-8", self._job_headers(job))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            role = job.chat  # a chat stream's first chunk names the role, as the first token comes
            for text in tokens:
                if role:
                    self._event(self._chunk(job, None, None, role=True))
                    role = False
                self._event(self._chunk(job, text, None))
            if role:
                self._event(self._chunk(job, None, None, role=True))
            self._event(self._chunk(job, None if job.chat else "", job.finish_reason))
            if job.include_usage:
                self._event({
                    "id": job.response_id,
                    "object": "chat.completion.chunk" if job.chat else "text_completion",
                    "created": int(time.time()),
                    "model": job.model or self.server.app.model_name,
                    "choices": [],
                    "usage": job.usage(),
                })  # fmt: skip
            self._event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, OSError):
            self.close_connection = True  # the client is gone; closing the generator aborts
