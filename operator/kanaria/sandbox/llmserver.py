"""Reference LLM server: a small n-gram language model behind an OpenAI-compatible API,
streaming real tokens and exporting vLLM's metrics.

The model (:mod:`kanaria.sandbox.ngram`) is trained at start-up on the standard library's
docstrings: nothing is downloaded. Tokens are really sampled one by one; a configurable delay
per request (prefill) and per token (decode) stands in for GPU time, so latencies look like an
LLM's. A scheduler runs at most ``max_running`` requests at once and queues the rest in
arrival order, so time in the queue is real.

Endpoints:

- ``POST /v1/completions`` (``prompt``: a string) and ``POST /v1/chat/completions``
  (``messages``), with ``model`` (the served name, or absent), ``max_tokens`` (chat also
  ``max_completion_tokens``; default 16 for completions, the rest of the context for chat),
  ``temperature`` (0..2, default 1; 0 is greedy), ``seed`` (same prompt and seed, same answer),
  ``n`` (1 only) and ``stream``. Streaming answers are Server-Sent Events (``data: {...}``
  chunks, then ``data: [DONE]``); with ``stream_options: {"include_usage": true}`` a last chunk
  with empty ``choices`` carries ``usage``. Non-streaming answers carry ``usage``
  (``prompt_tokens``, ``completion_tokens``, ``total_tokens``). ``finish_reason`` is ``stop``
  (the model ended its text), ``length`` (``max_tokens`` reached) or ``abort``.
- ``POST /feedback`` -- ``{"request_id": ..., "thumbs": "up"|"down"}`` and/or
  ``{"request_id": ..., "rating": 1..5}``: recorded with the monitor library
  (:class:`kanaria.monitor.UserFeedback`, signals ``thumbs`` and ``rating``) as a delayed
  label of the answer, credited to this revision when the request id is one this server
  answered and not yet rated (kept ``KANARIA_FEEDBACK_TTL_SECONDS``, at most
  ``KANARIA_FEEDBACK_MAX_PENDING``), else counted as unmatched; each answer matures at the
  horizons of ``KANARIA_MATURITY_HORIZONS`` (``kanaria_model_feedback_matured_total`` and
  friends: what Kanaria's ``feedback`` and ``rating`` metric kinds judge). Answers
  ``{"accepted": bool}``. The response's ``id`` (``chatcmpl-<request id>``) is accepted as
  the request id too.
- ``GET /v1/models``, ``GET /health`` (also ``/healthz``, ``/readyz``), ``GET /metrics``
  (:mod:`kanaria.sandbox.llmmetrics`: vLLM's names, types, labels and buckets, plus
  ``revision``), ``GET|POST /admin/faults`` (fault injection on only; below).

Every response carries ``X-Kanaria-Revision`` (the serving revision) and ``X-Request-Id``: the
client's ``X-Request-Id`` header, else one the server makes; the proxy adds
``X-Kanaria-Server`` (see :mod:`kanaria.sandbox.proxy`), which routes feedback back to the
server that answered. A request waits for a running slot; more than ``max_waiting`` waiting
requests get 503. A client that goes away mid-stream aborts its request
(``finished_reason="abort"``).

Configuration: ``KANARIA_MODEL_NAME`` (served model name, default ``kanaria-ngram``),
``KANARIA_MODEL_ADAPTER`` (a LoRA adapter's name, served beside the base model as vLLM's
``--lora-modules`` would: listed in ``/v1/models`` with the base as parent, answering requests
for it from its own stream of samples; every response says ``X-Kanaria-Model``, the name that
answered; the metrics stay labelled ``model_name`` = the base model, as vLLM's are),
``KANARIA_REVISION``, ``KANARIA_MODEL_VERSION``, ``KANARIA_LLM_ORDER`` (2..4, default 3),
``KANARIA_LLM_SEED`` (0), ``KANARIA_LLM_MAX_RUNNING`` (4), ``KANARIA_LLM_MAX_WAITING`` (256),
``KANARIA_LLM_MAX_MODEL_LEN`` (2048), ``KANARIA_LLM_FIRST_TOKEN_MS`` (30: prefill, from being
scheduled to the first token), ``KANARIA_LLM_PROMPT_TOKEN_MS`` (0.05 more per prompt token),
``KANARIA_LLM_TOKEN_MS`` (8 per further token), ``KANARIA_LLM_JITTER`` (0.1: each delay is
scaled by a uniform factor within 1 ± jitter), ``KANARIA_FEEDBACK_MAX_PENDING`` (100000),
``KANARIA_FEEDBACK_TTL_SECONDS`` (3600). Command-line flags override the environment.

Fault injection (a test tool) is off unless the server is started with ``--enable-faults``:
``/admin/faults`` reads or changes ``{"first_token_ms", "token_ms", "abort_rate", "bad_rate"}``,
and ``KANARIA_FAULT_FIRST_TOKEN_MS``, ``KANARIA_FAULT_TOKEN_MS``, ``KANARIA_FAULT_ABORT_RATE``,
``KANARIA_FAULT_BAD_RATE`` and ``KANARIA_FAULT_SEED`` set them at start: extra milliseconds
before the first token and per further token; a share of requests that end early with
``finished_reason="abort"`` (after at least one token); and a share of deliberately worse
answers (word salad drawn by token frequency, context ignored). With fault injection on, every
completion response says ``X-Kanaria-Quality: good`` or ``bad``: the ground truth the sandbox's
load generator (:mod:`kanaria.sandbox.llmload`) turns into thumbs down, as unhappy users would.
Which answers are bad is decided by the request's *mood* (:func:`user_mood`, a uniform number
from the request id that the load generator computes too): the bad ones are those with a mood
of at least 1 − ``bad_rate``, while the load generator's users who are unhappy anyway have a
mood below its base rate — the two never overlap, so a bad rate of 0.03 raises the share of
thumbs down by exactly 3 points (as long as base rate + bad rate ≤ 1).
Without ``--enable-faults``, ``/admin/faults`` answers 404 and a server given any
``KANARIA_FAULT_*`` refuses to start.

    python -m kanaria.sandbox.llmserver [--host H] [--port P] [--enable-faults]
        [--max-running N] [--first-token-ms MS] [--token-ms MS] [--seed N] [--order N]

``--host`` defaults to ``KANARIA_HOST``, else ``0.0.0.0`` inside a Kubernetes pod and
``127.0.0.1`` elsewhere; ``--port`` to ``KANARIA_PORT``, else 8080. With ``--port 0`` a free
port is taken; the first line on stdout is always ``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from kanaria.monitor.feedback import UserFeedback
from kanaria.sandbox._proc import ServerProcess
from kanaria.sandbox.llmconfig import RATING_RANGE, FaultDraw, LLMConfig, LLMFaults, user_mood
from kanaria.sandbox.llmhttp import (
    ID_PREFIXES,
    REQUEST_ID_PATTERN,
    BadRequest,
    Job,
    LLMHandler,
    LLMHTTPServer,
    message_text,
)
from kanaria.sandbox.llmmetrics import LLMMetrics
from kanaria.sandbox.llmsched import QueueFull, Scheduler
from kanaria.sandbox.ngram import EOS, NgramModel, count_prompt_tokens, piece, tokenize

__all__ = [
    "LLMConfig",
    "LLMFaults",
    "LLMServer",
    "LLMServerProcess",
    "Scheduler",
    "main",
    "user_mood",
]

class LLMServer:
    """The model, its scheduler, its metrics and the HTTP server; ``start()`` serves in a
    daemon thread."""

    def __init__(
        self,
        config: LLMConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        model: NgramModel | None = None,
    ) -> None:
        if not config.faults_enabled and (asked := config.requested_faults()):
            raise ValueError(
                f"fault injection is off but {', '.join(asked)} asks for faults; only the "
                "sandbox turns it on (--enable-faults)"
            )
        self.config = config
        self.model_name = config.model_name
        self.revision = config.revision
        self.model = model if model is not None else NgramModel.from_stdlib(config.order)
        self.metrics = LLMMetrics(
            config.model_name, config.revision, max_model_len=config.max_model_len, version=config.version
        )
        self.scheduler = Scheduler(config.max_running, config.max_waiting, self.metrics.scheduler)
        self.faults = LLMFaults(
            seed=config.fault_seed,
            first_token_ms=config.fault_first_token_ms,
            token_ms=config.fault_token_ms,
            abort_rate=config.fault_abort_rate,
            bad_rate=config.fault_bad_rate,
        )
        self.user_feedback = UserFeedback(
            config.model_name, config.revision, signals=("thumbs",), ratings={"rating": RATING_RANGE},
            registry=self.metrics.registry, pending_max=config.feedback_max_pending,
            pending_ttl_seconds=config.feedback_ttl_seconds,
        )  # fmt: skip
        self._rng_lock = threading.Lock()
        self._seeds = random.Random(f"requests:{config.seed}")
        self._jitter = random.Random(f"jitter:{config.seed}")
        self.created = int(time.time())
        self._httpd = LLMHTTPServer((host, port), LLMHandler, self)
        self._thread: threading.Thread | None = None

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

    def start(self) -> LLMServer:
        self._thread = threading.Thread(target=self.serve_forever, name=f"llmserver-{self.revision}", daemon=True)
        self._thread.start()
        return self

    def request_shutdown(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler)."""
        threading.Thread(target=self._httpd.shutdown, daemon=True).start()

    def close(self) -> None:
        self._httpd.server_close()
        self.user_feedback.close()  # answers still maturing: counted as shutdown

    def stop(self) -> None:
        self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- parsing ------------------------------------------------------------------------------

    def job(self, body: Mapping[str, Any], *, chat: bool, header_id: str | None, arrival: float) -> Job:
        """Check a completion request and make it a job (raises BadRequest)."""
        model = body.get("model")
        if model is not None and model not in self.served_names:
            raise BadRequest(f"The model `{model}` does not exist.", HTTPStatus.NOT_FOUND, "NotFoundError")
        if body.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                raise BadRequest('expected "messages": a non-empty list of {"role", "content"}')
            lines = [f"{m.get('role', 'user')}: {message_text(m.get('content'))}" for m in messages]
            prompt_text = "\n".join([*lines, "assistant:"])
            context = self.model.start_context([])
            previous = None
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise BadRequest('expected "prompt": a string')
            prompt_text = prompt
            prompt_model_tokens = tokenize(prompt)
            context = self.model.start_context(prompt_model_tokens)
            previous = prompt_model_tokens[-1] if prompt_model_tokens else None
        prompt_tokens = count_prompt_tokens(prompt_text)
        room = self.config.max_model_len - prompt_tokens
        asked = body.get("max_completion_tokens") if chat else None
        if asked is None:
            asked = body.get("max_tokens")
        if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
            raise BadRequest("max_tokens must be a positive whole number")
        max_tokens = asked if asked is not None else (room if chat else 16)
        if room < 1 or max_tokens > room:
            raise BadRequest(
                f"This model's maximum context length is {self.config.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion)."
            )
        temperature = body.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise BadRequest("temperature must be a number within [0, 2]")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise BadRequest("seed must be a whole number")
        stream = bool(body.get("stream", False))
        options = body.get("stream_options")
        if options is not None and (not stream or not isinstance(options, dict)):
            raise BadRequest("stream_options is only allowed with stream: true, as an object")
        include_usage = bool(options and options.get("include_usage"))
        adapter = bool(self.config.adapter) and model == self.config.adapter
        with self._rng_lock:
            # The adapter's small difference: its own stream of samples, so the same prompt and
            # seed answer differently through the adapter than through the base model.
            prefix = f"{self.config.adapter}:" if adapter else ""
            rng = random.Random(f"{prefix}{self.config.seed}:{seed}") if seed is not None else random.Random(self._seeds.getrandbits(64))
        request_id = header_id if header_id and REQUEST_ID_PATTERN.fullmatch(header_id) else uuid.uuid4().hex
        faults = self.faults.draw(request_id) if self.config.faults_enabled else FaultDraw()
        abort_at = rng.randint(1, max(1, max_tokens - 1)) if faults.abort else None
        return Job(
            chat=chat, request_id=request_id, arrival=arrival, prompt_tokens=prompt_tokens,
            context=context, previous=previous, max_tokens=max_tokens, max_tokens_param=asked,
            temperature=float(temperature), rng=rng, faults=faults, abort_at=abort_at,
            stream=stream, include_usage=include_usage, model=str(model) if model is not None else self.model_name,
        )  # fmt: skip

    # -- generation ---------------------------------------------------------------------------

    def admit(self, job: Job) -> None:
        """Queue the job for a running slot (raises BadRequest 503 when the queue is full)
        and remember its id for feedback."""
        try:
            job.ticket = self.scheduler.enqueue()
        except QueueFull as exc:
            raise BadRequest(str(exc), HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailableError") from exc
        self.user_feedback.answered(job.request_id)

    def _scaled(self, seconds: float) -> float:
        if self.config.jitter == 0 or seconds == 0:
            return seconds
        with self._rng_lock:
            factor = self._jitter.uniform(1 - self.config.jitter, 1 + self.config.jitter)
        return seconds * factor

    def generate(self, job: Job) -> Generator[str, None, None]:
        """The job's text, piece by piece, as each token is ready; metrics are recorded as it
        goes, and the finish (reason, intervals) before the generator ends. Closing the
        generator early aborts the request. The job must have been admitted."""
        assert job.ticket is not None
        config, metrics = self.config, self.metrics
        scheduled = first = last = None
        reason: str | None = None
        try:
            self.scheduler.wait(job.ticket)
            scheduled = time.monotonic()
            # Prefill: the prompt's context is in job.context; the delay stands in for the GPU.
            due = scheduled + self._scaled(
                (config.first_token_ms + config.prompt_token_ms * job.prompt_tokens) / 1000.0
            ) + job.faults.first_token_s
            context, previous = job.context, job.previous
            while True:
                if job.completion_tokens >= job.max_tokens:
                    reason = "length"
                    break
                if job.faults.bad:
                    token = self.model.unigram_token(job.rng)
                    while token == EOS and job.completion_tokens == 0:  # salad, but some words
                        token = self.model.unigram_token(job.rng)
                else:
                    token = self.model.next_token(context, job.rng, job.temperature)
                if job.abort_at is not None and (token == EOS or job.completion_tokens >= job.abort_at):
                    reason = "abort"
                    break
                if token == EOS:
                    reason = "stop"
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                now = time.monotonic()
                if first is None:
                    first = now
                    metrics.first_token(now - job.arrival, job.prompt_tokens)
                else:
                    assert last is not None
                    metrics.next_token(now - last)
                last = now
                job.completion_tokens += 1
                if job.completion_tokens >= job.max_tokens and job.abort_at is not None:
                    # The fault ends the request early, whatever the model would have done.
                    reason = "abort"
                text = piece(token, previous)
                context.append(token)
                previous = token
                job.text.append(text)
                due = now + self._scaled(config.token_ms / 1000.0) + job.faults.token_s
                yield text
                if reason is not None:
                    break
        finally:
            job.finish_reason = reason or "abort"
            finished = time.monotonic()
            if scheduled is not None:
                first_at = first if first is not None else finished
                last_at = last if last is not None else first_at
                metrics.finished(
                    job.finish_reason,
                    e2e_s=finished - job.arrival,
                    queued_s=scheduled - job.arrival,
                    prefill_s=first_at - scheduled,
                    decode_s=last_at - first_at,
                    inference_s=last_at - scheduled,
                    prompt_tokens=job.prompt_tokens,
                    generation_tokens=job.completion_tokens,
                    max_tokens=job.max_tokens_param,
                )
            self.scheduler.release(job.ticket)

    # -- feedback, faults, health -------------------------------------------------------------

    def feedback(self, body: Mapping[str, Any], header_id: str | None) -> dict[str, Any]:
        rid = body.get("request_id") or header_id
        thumbs, rating = body.get("thumbs"), body.get("rating")
        low, high = RATING_RANGE
        good_rating = (
            isinstance(rating, int | float) and not isinstance(rating, bool) and low <= rating <= high
        )
        if not rid or (thumbs is None and rating is None) or thumbs not in (None, "up", "down") or (
            rating is not None and not good_rating
        ):
            raise BadRequest(
                f'expected {{"request_id": ..., "thumbs": "up" | "down"}} and/or a "rating" within '
                f"[{low:g}, {high:g}]"
            )
        rid = str(rid)
        if rid.startswith(ID_PREFIXES):  # the response's id: chatcmpl-<request id>
            rid = rid.split("-", 1)[1]
        accepted = True
        if thumbs is not None:
            accepted = self.user_feedback.feedback(rid, thumbs == "up")
        if rating is not None:
            accepted = self.user_feedback.rating(rid, float(rating)) and accepted
        return {"accepted": accepted, "request_id": rid, "revision": self.revision}

    def set_faults(self, body: Mapping[str, Any]) -> dict[str, float]:
        try:
            return self.faults.update(**{k: v for k, v in body.items()})
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from exc

    def health(self) -> dict[str, Any]:
        running, waiting = self.scheduler.state
        return {
            "status": "ok",
            "model": self.model_name,
            "revision": self.revision,
            "version": self.config.version,
            "running": running,
            "waiting": waiting,
        }

    @property
    def served_names(self) -> tuple[str, ...]:
        """The base model's served name, and the adapter's when there is one."""
        return (self.model_name, self.config.adapter) if self.config.adapter else (self.model_name,)

    def models(self) -> dict[str, Any]:
        base = {
            "id": self.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "kanaria",
            "root": self.model_name,
            "parent": None,
            "max_model_len": self.config.max_model_len,
        }
        data = [base]
        if self.config.adapter:  # as vLLM lists a LoRA module: its parent is the base model
            data.append({**base, "id": self.config.adapter, "root": self.config.adapter, "parent": self.model_name})
        return {"object": "list", "data": data}


class LLMServerProcess(ServerProcess):
    """Run ``python -m kanaria.sandbox.llmserver`` as a child in its own process group.

    ``env`` is added to the current environment (``KANARIA_REVISION``, ``KANARIA_LLM_*``,
    ``KANARIA_FAULT_*``), ``enable_faults`` passes ``--enable-faults``, ``args`` are further
    command-line flags (``["--max-running", "2"]``); the port is read from the child's first
    line of output and its stderr goes to ``log_path`` (see
    :class:`~kanaria.sandbox._proc.ServerProcess`).
    """

    module = "kanaria.sandbox.llmserver"
    what = "LLM server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.llmserver")
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
    parser.add_argument("--max-running", type=int, help="requests run at once (KANARIA_LLM_MAX_RUNNING)")
    parser.add_argument("--first-token-ms", type=float, help="prefill delay (KANARIA_LLM_FIRST_TOKEN_MS)")
    parser.add_argument("--token-ms", type=float, help="delay per further token (KANARIA_LLM_TOKEN_MS)")
    parser.add_argument("--seed", type=int, help="sampling seed (KANARIA_LLM_SEED)")
    parser.add_argument("--order", type=int, help="n-gram order, 2..4 (KANARIA_LLM_ORDER)")
    args = parser.parse_args(argv)
    try:
        config = LLMConfig.from_env(os.environ, faults_enabled=args.enable_faults)
        flags = {
            "max_running": args.max_running,
            "first_token_ms": args.first_token_ms,
            "token_ms": args.token_ms,
            "seed": args.seed,
            "order": args.order,
        }
        config = dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})
        server = LLMServer(config, host=args.host, port=args.port)
    except ValueError as exc:
        parser.error(str(exc))

    signal.signal(signal.SIGTERM, lambda _signum, _frame: server.request_shutdown())
    model = server.model
    print(
        f"model {config.model_name} revision {config.revision}: order {model.order}, "
        f"{model.documents} documents, {model.training_tokens} tokens, "
        f"{len(model.vocabulary)} words",
        file=sys.stderr,
        flush=True,
    )
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
