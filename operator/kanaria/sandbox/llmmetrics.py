"""The Prometheus metrics of the reference LLM server: vLLM's names, types, labels and buckets.

A dashboard, recording rule or Kanaria analysis written for a vLLM deployment reads the
sandbox's LLM server unchanged. Checked against vLLM's ``vllm/v1/metrics/loggers.py``
(``PrometheusStatLogger``) and ``vllm/v1/metrics/stats.py``, releases 0.11 and 0.12:

- every series has vLLM's labels ``model_name`` (the served model name) and ``engine`` (the
  engine index, ``"0"`` for a single engine), and Kanaria's own ``revision`` (see below);
- gauges ``vllm:num_requests_running``, ``vllm:num_requests_waiting``;
- counters ``vllm:prompt_tokens_total`` (prompt tokens, counted when their prefill is done),
  ``vllm:generation_tokens_total`` (every generated token, the first one included),
  ``vllm:request_success_total{finished_reason="stop"|"length"|"abort"}`` (finished requests,
  aborted ones too: vLLM's counter has the same name whatever the reason);
- histograms of tokens per request on 1-2-5 buckets up to ``max_model_len``
  (:func:`one_two_five_buckets`): ``vllm:request_prompt_tokens``,
  ``vllm:request_generation_tokens``, ``vllm:request_params_max_tokens``;
- histograms of time (seconds), on vLLM's bucket boundaries:
  ``vllm:time_to_first_token_seconds`` (arrival to first token, queueing included;
  :data:`TTFT_BUCKETS`), ``vllm:inter_token_latency_seconds`` (each gap between consecutive
  tokens of a request; :data:`TOKEN_LATENCY_BUCKETS`), ``vllm:time_per_output_token_seconds``
  (the same observations under the name vLLM used before 0.11; 0.11 exports both, 0.12 only
  with ``--show-hidden-metrics-for-version=0.11``), ``vllm:request_time_per_output_token_seconds``
  (per request: decode time / (generated tokens - 1), 0 for a single token), and
  on :data:`REQUEST_LATENCY_BUCKETS` ``vllm:e2e_request_latency_seconds`` (arrival to
  finish), ``vllm:request_queue_time_seconds`` (waiting for a running slot),
  ``vllm:request_prefill_time_seconds`` (scheduled to first token),
  ``vllm:request_decode_time_seconds`` (first to last token),
  ``vllm:request_inference_time_seconds`` (scheduled to last token).

vLLM itself has no ``revision`` label. When Prometheus scrapes several revisions of a real vLLM
deployment, the label comes from the pod: Kanaria labels every pod it runs
``kanaria.io/revision``, and a scrape rule copies it onto the series
(``source_labels: [__meta_kubernetes_pod_label_kanaria_io_revision]``, ``target_label:
revision``; see docs/monitoring.md). This server exports the label itself, so the sandbox's
Prometheus needs no such rule.

Kanaria's own: ``kanaria_llm_info{model_name, revision, version}`` = 1. User feedback goes to
the same registry through the monitor library (:class:`kanaria.monitor.UserFeedback`:
``kanaria_model_feedback_*{model, revision, signal}``), as a real server would record it.

Every metric lives in the instance's own ``CollectorRegistry``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "FINISHED_REASONS",
    "LABELS",
    "REQUEST_LATENCY_BUCKETS",
    "TOKEN_LATENCY_BUCKETS",
    "TTFT_BUCKETS",
    "VLLM_METRICS",
    "LLMMetrics",
    "one_two_five_buckets",
]

LABELS: tuple[str, ...] = ("model_name", "engine", "revision")
"""vLLM's labels (``model_name``, ``engine``) and Kanaria's ``revision``."""

FINISHED_REASONS: tuple[str, ...] = ("stop", "length", "abort")

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vLLM's ``vllm:time_to_first_token_seconds`` boundaries."""

TOKEN_LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
"""vLLM's boundaries for the per-token latencies (inter-token, time per output token)."""

REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vLLM's boundaries for the per-request intervals (e2e, queue, prefill, decode, inference)."""

VLLM_METRICS: dict[str, str] = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
    "vllm:request_params_max_tokens": "histogram",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:time_per_output_token_seconds": "histogram",
    "vllm:request_time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
    "vllm:request_inference_time_seconds": "histogram",
}
"""Every vLLM metric family the server exports (family name, as the Prometheus text
format's ``# TYPE`` line names it: counters without ``_total``) and its type."""


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... while at most ``max_value``: vLLM's token-count buckets."""
    buckets: list[float] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * scale
            if value > max_value:
                return tuple(buckets)
            buckets.append(float(value))
        scale *= 10


class LLMMetrics:
    """The metrics of one served revision. Thread-safe (prometheus_client's own locks, and
    one lock for the two scheduler gauges so they always change together)."""

    def __init__(
        self,
        model_name: str,
        revision: str,
        *,
        max_model_len: int,
        version: str = "",
        engine: str = "0",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.labels = (model_name, engine, revision)
        self._lock = threading.Lock()

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=reg)

        def counter(name: str, doc: str, extra: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, (*LABELS, *extra), registry=reg)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=buckets, registry=reg)

        token_buckets = one_two_five_buckets(max_model_len)
        self._running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self._waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self._prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self._generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self._success = counter(
            "vllm:request_success", "Count of successfully processed requests.", ("finished_reason",)
        )
        self._request_prompt = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        )
        self._request_generation = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets
        )
        self._max_tokens = histogram(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", token_buckets
        )
        self._ttft = histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS
        )
        self._itl = histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", TOKEN_LATENCY_BUCKETS
        )
        self._tpot = histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds. (The name vLLM used before "
            "vllm:inter_token_latency_seconds; same observations.)",
            TOKEN_LATENCY_BUCKETS,
        )
        self._request_tpot = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            TOKEN_LATENCY_BUCKETS,
        )
        self._e2e = histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS
        )
        self._queue = histogram(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", REQUEST_LATENCY_BUCKETS
        )
        self._prefill = histogram(
            "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", REQUEST_LATENCY_BUCKETS
        )
        self._decode = histogram(
            "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", REQUEST_LATENCY_BUCKETS
        )
        self._inference = histogram(
            "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", REQUEST_LATENCY_BUCKETS
        )
        info = Gauge(
            "kanaria_llm_info", "The served model version.", ("model_name", "revision", "version"), registry=reg
        )
        info.labels(model_name, revision, version).set(1)

        # Every series exists from the start, so rates and increases begin at an explicit zero.
        for family in (
            self._running, self._waiting, self._prompt_tokens, self._generation_tokens,
            self._request_prompt, self._request_generation, self._max_tokens, self._ttft,
            self._itl, self._tpot, self._request_tpot, self._e2e, self._queue, self._prefill,
            self._decode, self._inference,
        ):  # fmt: skip
            family.labels(*self.labels)
        for reason in FINISHED_REASONS:
            self._success.labels(*self.labels, reason)

    # -- recording ---------------------------------------------------------------------------

    def scheduler(self, running: int, waiting: int) -> None:
        """The scheduler's state now: requests running and waiting for a slot."""
        with self._lock:
            self._running.labels(*self.labels).set(running)
            self._waiting.labels(*self.labels).set(waiting)

    def first_token(self, ttft_s: float, prompt_tokens: int) -> None:
        """A request's prefill is done and its first token generated."""
        self._ttft.labels(*self.labels).observe(ttft_s)
        self._prompt_tokens.labels(*self.labels).inc(prompt_tokens)
        self._generation_tokens.labels(*self.labels).inc()

    def next_token(self, gap_s: float) -> None:
        """A further token, ``gap_s`` after the request's previous one."""
        self._itl.labels(*self.labels).observe(gap_s)
        self._tpot.labels(*self.labels).observe(gap_s)
        self._generation_tokens.labels(*self.labels).inc()

    def finished(
        self,
        reason: str,
        *,
        e2e_s: float,
        queued_s: float,
        prefill_s: float,
        decode_s: float,
        inference_s: float,
        prompt_tokens: int,
        generation_tokens: int,
        max_tokens: int | None,
    ) -> None:
        """A request finished (``reason``: stop, length or abort) with these intervals."""
        if reason not in FINISHED_REASONS:
            raise ValueError(f"finished_reason must be one of {FINISHED_REASONS}, not {reason!r}")
        labels = self.labels
        self._success.labels(*labels, reason).inc()
        self._e2e.labels(*labels).observe(e2e_s)
        self._queue.labels(*labels).observe(queued_s)
        self._prefill.labels(*labels).observe(prefill_s)
        self._decode.labels(*labels).observe(decode_s)
        self._inference.labels(*labels).observe(inference_s)
        self._request_prompt.labels(*labels).observe(prompt_tokens)
        self._request_generation.labels(*labels).observe(generation_tokens)
        mean_tpot = decode_s / (generation_tokens - 1) if generation_tokens > 1 else 0.0
        self._request_tpot.labels(*labels).observe(mean_tpot)
        if max_tokens:
            self._max_tokens.labels(*labels).observe(max_tokens)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
