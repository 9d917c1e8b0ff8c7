"""LLM load generator: streaming chat completions at a rate, with users' thumbs as feedback.

Requests go to ``/v1/chat/completions`` at the base URL (the proxy, or one LLM server,
:mod:`kanaria.sandbox.llmserver`) at ``rate`` per second from a pool of ``concurrency``
threads, until ``total`` requests or ``duration`` seconds (one of them is required, and
``max_duration`` caps every run). Each is streamed (``stream: true`` with
``stream_options.include_usage``) and carries its own ``X-Request-Id``; targets must be on
127.0.0.1.

For each answer the generator measures the client-side time to first token (from sending the
request to the first chunk with text) and reads the serving revision (``X-Kanaria-Revision``),
the finish reason and the token counts (``usage``).

Feedback: ``feedback_delay_s`` after an answer, a share ``feedback_share`` of them (the same
requests on every run: chosen by a hash of the request's index) are rated on ``/feedback``,
with the ``X-Kanaria-Server`` header the proxy put on the answer so the rating reaches the
server that answered. The rating is thumbs down when the server marked the answer bad
(``X-Kanaria-Quality: bad``, which only an LLM server with fault injection on sends: the
sandbox's ground truth of a worse model), else thumbs down when the request's mood
(:func:`~kanaria.sandbox.llmserver.user_mood` of its request id) is below ``base_down_rate``
(users who are never happy) and thumbs up otherwise. A faulty server marks bad the answers
whose mood is at least 1 − its bad rate, never those of users unhappy anyway: the share of
thumbs down is the base rate plus the bad rate, exactly.

The stats are that ground truth per revision, to compare with the servers' own counters:
answers (``by_revision``), their finish reasons, prompt and completion tokens (from
``usage``), answers marked bad, and the ratings each server accepted, by thumbs.

    python -m kanaria.sandbox.llmload --url http://127.0.0.1:PORT --rate 5 (--total N | --duration S)
        [--max-tokens 64] [--concurrency 16] [--base-down-rate 0.05] [--feedback-share 1]
        [--feedback-delay 0.5] [--no-feedback] [--model NAME] [--seed N]
"""

from __future__ import annotations

import argparse
import heapq
import json
import signal
import statistics
import sys
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from kanaria.sandbox.llmconfig import user_mood
from kanaria.sandbox.llmhttp import QUALITY_HEADER, REQUEST_ID_HEADER, REVISION_HEADER
from kanaria.sandbox.proxy import SERVER_HEADER

__all__ = ["PROMPTS", "LLMLoadGenerator", "LLMLoadStats", "main"]

ALLOWED_HOSTS = ("127.0.0.1",)

PROMPTS: tuple[str, ...] = (
    "How do I wrap a long paragraph of text?",
    "What does a deque do when it is full?",
    "Explain how the logging module finds a handler.",
    "When should I use a heap instead of a sorted list?",
    "What is the difference between a thread and a timer?",
    "How are fractions compared with floats?",
    "Describe what json does with a custom encoder.",
    "How does bisect keep a list sorted?",
)
"""What the users ask (the n-gram model answers from its own text whatever they ask)."""


@dataclass(frozen=True)
class LLMLoadStats:
    """What was sent and what came back, by the revision that answered."""

    sent: int = 0
    ok: int = 0  # streamed to the end ([DONE])
    errors: int = 0  # 5xx answers
    failed: int = 0  # no answer, another status, or a stream cut off
    by_revision: dict[str, int] = field(default_factory=dict)
    finished_by_revision: dict[str, dict[str, int]] = field(default_factory=dict)
    prompt_tokens_by_revision: dict[str, int] = field(default_factory=dict)
    completion_tokens_by_revision: dict[str, int] = field(default_factory=dict)
    bad_by_revision: dict[str, int] = field(default_factory=dict)
    thumbs_up_by_revision: dict[str, int] = field(default_factory=dict)
    thumbs_down_by_revision: dict[str, int] = field(default_factory=dict)
    ttft_by_revision: dict[str, dict[str, float]] = field(default_factory=dict)
    """Client-side time to first token in seconds: count, mean, p50, p90, max."""
    feedback_sent: int = 0
    feedback_accepted: int = 0
    feedback_rejected: int = 0
    feedback_failed: int = 0
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": float(len(ordered)),
        "mean": statistics.fmean(ordered),
        "p50": quantile(0.5),
        "p90": quantile(0.9),
        "max": ordered[-1],
    }


@dataclass(order=True)
class _Rating:
    due: float
    request_id: str = field(compare=False)
    thumbs: str = field(compare=False)
    server: str | None = field(compare=False)
    revision: str = field(compare=False)


class _Counters:
    """Mutable tallies behind one lock; ``snapshot`` makes an :class:`LLMLoadStats`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.by_revision: Counter[str] = Counter()
        self.finished: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.prompt_tokens: Counter[str] = Counter()
        self.completion_tokens: Counter[str] = Counter()
        self.bad: Counter[str] = Counter()
        self.thumbs: dict[str, Counter[str]] = {"up": Counter(), "down": Counter()}
        self.ttft: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.totals.update(amounts)

    def snapshot(self, elapsed: float) -> LLMLoadStats:
        with self.lock:
            t = self.totals
            return LLMLoadStats(
                sent=t["sent"], ok=t["ok"], errors=t["errors"], failed=t["failed"],
                by_revision=dict(self.by_revision),
                finished_by_revision={rev: dict(c) for rev, c in self.finished.items()},
                prompt_tokens_by_revision=dict(self.prompt_tokens),
                completion_tokens_by_revision=dict(self.completion_tokens),
                bad_by_revision=dict(self.bad),
                thumbs_up_by_revision=dict(self.thumbs["up"]),
                thumbs_down_by_revision=dict(self.thumbs["down"]),
                ttft_by_revision={rev: _summary(v) for rev, v in self.ttft.items() if v},
                feedback_sent=t["feedback_sent"], feedback_accepted=t["feedback_accepted"],
                feedback_rejected=t["feedback_rejected"], feedback_failed=t["feedback_failed"],
                elapsed_s=elapsed,
            )  # fmt: skip


@dataclass
class _Answer:
    revision: str = ""
    server: str | None = None
    request_id: str = ""
    bad: bool = False
    text: str = ""
    ttft: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    chunks: int = 0
    done: bool = False


class LLMLoadGenerator:
    """Send streaming chat completions at a fixed rate and rate the answers; see the module
    doc. ``run()`` blocks until done; ``start()`` runs it in a daemon thread, ``stop()`` ends
    it early (ratings not yet due are then not sent) and ``stats()`` may be read at any time.
    """

    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 5.0,
        total: int | None = None,
        duration: float | None = None,
        max_tokens: int = 64,
        model: str | None = None,
        feedback: bool = True,
        feedback_share: float = 1.0,
        feedback_delay_s: float = 0.5,
        base_down_rate: float = 0.05,
        seed: int = 0,
        concurrency: int = 16,
        timeout: float = 60.0,
        max_duration: float = 3600.0,
        prompts: Sequence[str] = PROMPTS,
    ) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme != "http" or parsed.hostname not in ALLOWED_HOSTS:
            raise ValueError(f"only http://127.0.0.1 targets are allowed, not {base_url!r}")
        if total is None and duration is None:
            raise ValueError("give total or duration: a load generator must stop by itself")
        if not 0 < rate <= 1000:
            raise ValueError("rate must be within (0, 1000] requests per second")
        if total is not None and total < 0:
            raise ValueError("total must not be negative")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        for name, share in (("feedback_share", feedback_share), ("base_down_rate", base_down_rate)):
            if not 0 <= share <= 1:
                raise ValueError(f"{name} must lie within [0, 1]")
        if feedback_delay_s < 0:
            raise ValueError("feedback_delay_s must not be negative")
        if not prompts:
            raise ValueError("give at least one prompt")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.total = total
        self.duration = min(duration, max_duration) if duration is not None else max_duration
        self.max_tokens = max_tokens
        self.model = model
        self.feedback = feedback
        self.feedback_share = feedback_share
        self.feedback_delay_s = feedback_delay_s
        self.base_down_rate = base_down_rate
        self.seed = seed
        self.concurrency = concurrency
        self.timeout = timeout
        self.prompts = tuple(prompts)
        self._prefix = uuid.uuid4().hex[:8]
        self._counters = _Counters()
        self._ratings: list[_Rating] = []
        self._ratings_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self) -> LLMLoadGenerator:
        self._thread = threading.Thread(target=self.run, name="llmload", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if it has."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._done.is_set()

    def stats(self) -> LLMLoadStats:
        if self._started_at is None:
            return self._counters.snapshot(0.0)
        end = self._finished_at if self._finished_at is not None else time.monotonic()
        return self._counters.snapshot(end - self._started_at)

    def rates(self, index: int) -> bool:
        """Whether request ``index``'s answer gets a rating (a fixed share of the requests)."""
        return zlib.crc32(f"{self.seed}:{index}".encode()) % 10_000 < self.feedback_share * 10_000

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> LLMLoadStats:
        self._started_at = start = time.monotonic()
        deadline = start + self.duration
        in_flight: list[Future[None]] = []
        limits = httpx.Limits(max_connections=self.concurrency + 4, max_keepalive_connections=self.concurrency + 4)
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout, limits=limits) as client, ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="llmload"
            ) as pool:
                index = 0
                while not self._stop.is_set():
                    now = time.monotonic()
                    if now >= deadline or (self.total is not None and index >= self.total):
                        break
                    self._send_due_ratings(client, pool, now)
                    next_send = start + index / self.rate
                    if now >= next_send:
                        self._counters.add(sent=1)
                        in_flight.append(pool.submit(self._chat, client, index))
                        index += 1
                        in_flight = [f for f in in_flight if not f.done()]
                        continue
                    self._stop.wait(min(next_send, self._next_rating_due(next_send)) - now)
                # Answers still streaming: keep sending ratings as they come due.
                while not self._stop.is_set() and any(not f.done() for f in in_flight):
                    now = time.monotonic()
                    self._send_due_ratings(client, pool, now)
                    self._stop.wait(max(0.0, min(self._next_rating_due(now + 0.05), now + 0.05) - now))
                for future in in_flight:
                    future.result()
                drain_until = time.monotonic() + self.feedback_delay_s + self.timeout
                while not self._stop.is_set() and self._pending_ratings():
                    now = time.monotonic()
                    if now > drain_until:
                        break
                    self._send_due_ratings(client, pool, now)
                    self._stop.wait(max(0.0, min(self._next_rating_due(now + 0.1), now + 0.1) - now))
        finally:
            self._finished_at = time.monotonic()
            self._done.set()
        return self.stats()

    def _pending_ratings(self) -> bool:
        with self._ratings_lock:
            return bool(self._ratings)

    def _next_rating_due(self, default: float) -> float:
        with self._ratings_lock:
            return self._ratings[0].due if self._ratings else default

    def _send_due_ratings(self, client: httpx.Client, pool: ThreadPoolExecutor, now: float) -> None:
        due: list[_Rating] = []
        with self._ratings_lock:
            while self._ratings and self._ratings[0].due <= now:
                due.append(heapq.heappop(self._ratings))
        for item in due:
            pool.submit(self._rate, client, item)

    def _body(self, index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": self.prompts[index % len(self.prompts)]}],
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model is not None:
            body["model"] = self.model
        return body

    def _chat(self, client: httpx.Client, index: int) -> None:
        request_id = f"{self._prefix}-{index}"
        answer = _Answer(request_id=request_id)
        started = time.perf_counter()
        try:
            with client.stream(
                "POST", "/v1/chat/completions", json=self._body(index), headers={REQUEST_ID_HEADER: request_id}
            ) as response:
                if response.status_code != 200:
                    response.read()
                    self._counters.add(**({"errors": 1} if response.status_code >= 500 else {"failed": 1}))
                    return
                answer.revision = response.headers.get(REVISION_HEADER, "")
                answer.server = response.headers.get(SERVER_HEADER)
                answer.request_id = response.headers.get(REQUEST_ID_HEADER, request_id)
                answer.bad = response.headers.get(QUALITY_HEADER) == "bad"
                for line in response.iter_lines():
                    self._read_event(answer, line, started)
        except (httpx.HTTPError, ValueError):
            self._counters.add(failed=1)
            return
        if not answer.done:
            self._counters.add(failed=1)
            return
        self._record(index, answer)

    @staticmethod
    def _read_event(answer: _Answer, line: str, started: float) -> None:
        if not line.startswith("data:"):
            return
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            answer.done = True
            return
        chunk = json.loads(payload)
        if chunk.get("usage"):
            answer.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                if answer.ttft is None:
                    answer.ttft = time.perf_counter() - started
                answer.text += content
                answer.chunks += 1
            if choice.get("finish_reason"):
                answer.finish_reason = str(choice["finish_reason"])

    def _record(self, index: int, answer: _Answer) -> None:
        usage = answer.usage or {}
        rev = answer.revision
        with self._counters.lock:
            self._counters.totals["ok"] += 1
            self._counters.by_revision[rev] += 1
            self._counters.finished[rev][answer.finish_reason or "unknown"] += 1
            self._counters.prompt_tokens[rev] += int(usage.get("prompt_tokens", 0))
            self._counters.completion_tokens[rev] += int(usage.get("completion_tokens", answer.chunks))
            self._counters.bad[rev] += int(answer.bad)
            if answer.ttft is not None:
                self._counters.ttft[rev].append(answer.ttft)
        if not (self.feedback and self.rates(index)):
            return
        unhappy = user_mood(answer.request_id) < self.base_down_rate
        thumbs = "down" if answer.bad or unhappy else "up"
        item = _Rating(time.monotonic() + self.feedback_delay_s, answer.request_id, thumbs, answer.server, rev)
        with self._ratings_lock:
            heapq.heappush(self._ratings, item)

    def _rate(self, client: httpx.Client, item: _Rating) -> None:
        headers = {REQUEST_ID_HEADER: item.request_id}
        if item.server:
            headers[SERVER_HEADER] = item.server
        self._counters.add(feedback_sent=1)
        try:
            response = client.post(
                "/feedback", json={"request_id": item.request_id, "thumbs": item.thumbs}, headers=headers
            )
            accepted = response.status_code == 200 and bool(response.json().get("accepted"))
        except (httpx.HTTPError, ValueError):
            self._counters.add(feedback_failed=1)
            return
        with self._counters.lock:
            self._counters.totals["feedback_accepted"] += int(accepted)
            self._counters.totals["feedback_rejected"] += int(not accepted)
            if accepted:
                self._counters.thumbs[item.thumbs][item.revision] += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.llmload")
    parser.add_argument("--url", required=True, help="base URL, e.g. the proxy's http://127.0.0.1:PORT")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--total", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", help="the served model name (default: whatever is served)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--base-down-rate", type=float, default=0.05, help="thumbs down on good answers")
    parser.add_argument("--feedback-share", type=float, default=1.0, help="share of answers rated")
    parser.add_argument("--feedback-delay", type=float, default=0.5, help="seconds before a rating is sent")
    parser.add_argument("--no-feedback", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        generator = LLMLoadGenerator(
            args.url, rate=args.rate, total=args.total, duration=args.duration,
            max_tokens=args.max_tokens, model=args.model, feedback=not args.no_feedback,
            feedback_share=args.feedback_share, feedback_delay_s=args.feedback_delay,
            base_down_rate=args.base_down_rate, seed=args.seed, concurrency=args.concurrency,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: generator.stop())
    try:
        stats = generator.run()
    except KeyboardInterrupt:
        generator.stop()
        stats = generator.stats()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(stats.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
