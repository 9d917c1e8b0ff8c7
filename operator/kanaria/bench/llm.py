"""The LLM latency kinds in the statistics benchmark: the same streams and policies as
:mod:`kanaria.bench.stats`, with vLLM's own histogram buckets and LLM-like latencies.

- timeToFirstToken: vLLM's ``vllm:time_to_first_token_seconds`` buckets (coarse above 0.1 s:
  0.1, 0.25, 0.5, 0.75, 1 …); per-request time to first token log-normal, median 0.08–0.4 s,
  σ 0.4–0.6.
- timePerOutputToken: vLLM's per-token buckets (``vllm:request_time_per_output_token_seconds``:
  0.01, 0.025, 0.05, 0.075, 0.1 …); per-request time per output token log-normal, median
  15–60 ms, σ 0.2–0.4 (decoding varies less than prefill).

Scenarios per kind: A/A, and every request of the new revision 1.2× slower (+20%). Kanaria
judges with ``judge_latency`` and the LLM kinds' defaults (AUC 0.56, α 0.01, 200 requests); the
threshold policies compare each interval's p99 (histogram_quantile in those buckets) with
1.2 × the stable's true p99.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from kanaria.bench.stats import (
    Effect,
    MetricRun,
    Row,
    Scenario,
    StreamConfig,
    run_benchmark,
    summarise,
)

__all__ = ["TTFT_BUCKETS", "TPOT_BUCKETS", "LLM_KINDS", "llm_config", "run_llm_benchmark"]

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, math.inf,
)  # fmt: skip
"""vLLM's ``vllm:time_to_first_token_seconds`` bounds (vllm/v1/metrics/loggers.py), +Inf."""
TPOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, math.inf,
)  # fmt: skip
"""vLLM's bounds of its per-token latency histograms (inter-token, per-request time per output
token), +Inf."""

LLM_KINDS: dict[str, tuple[tuple[float, ...], tuple[float, float], tuple[float, float]]] = {
    "timeToFirstToken": (TTFT_BUCKETS, (0.08, 0.4), (0.4, 0.6)),
    "timePerOutputToken": (TPOT_BUCKETS, (0.015, 0.06), (0.2, 0.4)),
}
"""kind -> (buckets, median range in seconds, log-normal σ range)."""


def llm_config(kind: str, base: StreamConfig | None = None) -> StreamConfig:
    buckets, median, sigma = LLM_KINDS[kind]
    return replace(base or StreamConfig(), latency_buckets=buckets, latency_median_s=median, latency_sigma=sigma)


def _scenarios(kind: str) -> tuple[Scenario, ...]:
    short = {"timeToFirstToken": "TTFT", "timePerOutputToken": "TPOT"}[kind]
    return (Scenario("A/A", "latency"), Scenario(f"{short} +20%", "latency", Effect(latency_scale=1.2)))


def run_llm_benchmark(
    n: int,
    seed: int,
    *,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[MetricRun], list[Row]]:
    """``n`` rollouts per scenario and LLM kind; rows labelled with the kind. Each kind's
    streams come from its own child of ``seed`` (deterministic whatever ``workers``)."""
    runs: list[MetricRun] = []
    rows: list[Row] = []
    for k, kind in enumerate(LLM_KINDS):
        cfg = llm_config(kind)
        kind_runs = run_benchmark(n, seed + 1 + k, scenarios=_scenarios(kind), cfg=cfg, workers=workers,
                                  progress=progress)
        runs.extend(kind_runs)
        rows.extend(replace(r, metric=kind) for r in summarise(kind_runs, cfg))
    return runs, rows


def rows_for(rows: Sequence[Row], kind: str) -> list[Row]:
    return [r for r in rows if r.metric == kind]
