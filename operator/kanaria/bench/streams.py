"""The simulated traffic of the statistics benchmarks: what a rollout's streams look like
(:class:`StreamConfig`), what is wrong with the canary (:class:`Effect`), and the seeded
per-interval counts both arms produce — requests, labels as they arrive late, errors and
latency histograms (:func:`generate_streams`). Pure numpy; no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = ["BUCKETS", "Effect", "FloatArray", "IntArray", "Metric", "Scenario", "StreamConfig", "Streams",
           "generate_streams", "label_delay_shares"]

Metric = Literal["accuracy", "latency", "errors"]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, math.inf,
)


@dataclass(frozen=True)
class StreamConfig:
    """How the simulated traffic looks. Ranges are drawn per rollout (uniform unless noted)."""

    weight: float = 0.5
    """Canary traffic share during the analysed step."""
    interval_s: float = 60.0
    """Analysis interval (Flagger's default is 60 s)."""
    rate_per_s: tuple[float, float] = (5.0, 50.0)
    """Requests per second over both arms (log-uniform)."""
    rate_wobble: float = 0.2
    """Per-interval log-normal sigma of the request rate."""
    baseline_accuracy: tuple[float, float] = (0.80, 0.95)
    label_coverage: tuple[float, float] = (0.5, 1.0)
    """Share of predictions that ever get a ground-truth label."""
    label_delay_mean_s: tuple[float, float] = (120.0, 900.0)
    """Mean of the exponential label delay."""
    max_label_delay_intervals: int = 60
    baseline_error_rate: float = 0.005
    latency_median_s: tuple[float, float] = (0.04, 0.12)
    latency_sigma: tuple[float, float] = (0.4, 0.6)
    """Log-normal shape of per-request latency."""
    latency_buckets: tuple[float, ...] = BUCKETS
    """The histogram's bucket bounds, +Inf last (an inference server's own, for the LLM kinds)."""
    accuracy_horizon_factor: float = 1.0
    """Accuracy is judged until the canary has this many times the sample size the sequential
    test needs (:func:`msprt_required_samples`), capped at ``max_intervals``."""
    max_intervals: int = 240
    time_horizon_intervals: int = 30
    """Latency and error rate are judged for this many intervals."""


@dataclass(frozen=True)
class Effect:
    """What is wrong with the canary (nothing, by default)."""

    accuracy_drop: float = 0.0
    latency_scale: float = 1.0
    error_factor: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    metric: Metric
    effect: Effect = Effect()

    @property
    def bad(self) -> bool:
        return self.effect != Effect()


def label_delay_shares(mean_intervals: FloatArray, slots: int) -> FloatArray:
    """P(label arrives d intervals after the one its prediction was made in), d < slots.

    The request time within its interval is uniform, the delay exponential with the given
    mean (in intervals): Y = U + X, F(y) = y − (1 − e^{−λy})/λ on [0, 1] and
    1 − e^{−λy}(e^λ − 1)/λ beyond. Renormalised over the ``slots`` offsets (the tail beyond is
    < e^{−slots/mean}). Shape (rollouts, slots).
    """
    lam = 1.0 / np.asarray(mean_intervals, dtype=float)[:, None]
    y = np.arange(slots + 1, dtype=float)[None, :]
    inside = y - (1.0 - np.exp(-lam * y)) / lam
    beyond = 1.0 - np.exp(-lam * y) * np.expm1(lam) / lam
    cdf = np.where(y <= 1.0, inside, beyond)
    shares = np.diff(cdf, axis=1)
    shares = np.clip(shares, 0.0, None)
    out: FloatArray = shares / shares.sum(axis=1, keepdims=True)
    return out


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> FloatArray:
    return rng.uniform(bounds[0], bounds[1], n)


@dataclass
class _Traffic:
    canary: IntArray
    baseline: IntArray


def _traffic(rng: np.random.Generator, cfg: StreamConfig, n: int, warmup: int, t: int) -> _Traffic:
    lo, hi = np.log(cfg.rate_per_s[0]), np.log(cfg.rate_per_s[1])
    rate = np.exp(rng.uniform(lo, hi, n))[:, None]
    wobble = rng.lognormal(-0.5 * cfg.rate_wobble**2, cfg.rate_wobble, (n, warmup + t))
    total = rng.poisson(rate * cfg.interval_s * wobble)
    canary = rng.binomial(total, cfg.weight)
    canary[:, :warmup] = 0  # before the step the stable revision served everything
    return _Traffic(canary=canary, baseline=total - canary)


def _delayed(
    rng: np.random.Generator, made: IntArray, shares: FloatArray, warmup: int
) -> IntArray:
    """Spread counts made per interval over their arrival intervals; drop the warm-up columns."""
    split = rng.multinomial(made, shares[:, None, :])  # (n, T, slots)
    width = made.shape[1]
    arrived = np.zeros_like(made)
    for d in range(shares.shape[1]):
        if d >= width:
            break
        arrived[:, d:] += split[:, : width - d, d]
    return arrived[:, warmup:]


@dataclass
class Streams:
    """One scenario's streams; counts are per interval (not cumulative), canary ``_c``."""

    metric: Metric
    samples_c: IntArray
    """Per-interval canary samples the metric is judged on (labels or requests)."""
    baseline_accuracy: FloatArray | None = None
    correct_b: IntArray | None = None
    labelled_b: IntArray | None = None
    correct_c: IntArray | None = None
    labelled_c: IntArray | None = None
    requests_b: IntArray | None = None
    requests_c: IntArray | None = None
    errors_b: IntArray | None = None
    errors_c: IntArray | None = None
    buckets_b: IntArray | None = None
    buckets_c: IntArray | None = None
    """Per-interval, per-bucket (not cumulative) latency counts, shape (n, T, buckets)."""
    stable_p99: FloatArray | None = None
    bounds: tuple[float, ...] = BUCKETS
    """The latency histogram's bucket bounds, +Inf last."""


def generate_streams(
    rng: np.random.Generator, scenario: Scenario, cfg: StreamConfig, n: int
) -> Streams:
    """Seeded streams for ``n`` rollouts of one scenario."""
    eff = scenario.effect
    if scenario.metric == "accuracy":
        t, warmup = cfg.max_intervals, cfg.max_label_delay_intervals
        traffic = _traffic(rng, cfg, n, warmup, t)
        p_b = _uniform(rng, cfg.baseline_accuracy, n)
        p_c = p_b - eff.accuracy_drop
        coverage = _uniform(rng, cfg.label_coverage, n)[:, None]
        delay = _uniform(rng, cfg.label_delay_mean_s, n) / cfg.interval_s
        shares = label_delay_shares(delay, cfg.max_label_delay_intervals)
        counts = {}
        for arm, req, p in (("b", traffic.baseline, p_b), ("c", traffic.canary, p_c)):
            labelled = rng.binomial(req, coverage)
            correct = rng.binomial(labelled, p[:, None])
            right = _delayed(rng, correct, shares, warmup)
            wrong = _delayed(rng, labelled - correct, shares, warmup)
            counts[arm] = (right, right + wrong)
        return Streams(
            metric="accuracy",
            samples_c=counts["c"][1],
            baseline_accuracy=p_b,
            correct_b=counts["b"][0],
            labelled_b=counts["b"][1],
            correct_c=counts["c"][0],
            labelled_c=counts["c"][1],
        )
    t = cfg.max_intervals if scenario.metric == "errors" else cfg.time_horizon_intervals
    traffic = _traffic(rng, cfg, n, 0, t)
    if scenario.metric == "errors":
        e_b = cfg.baseline_error_rate
        return Streams(
            metric="errors",
            samples_c=traffic.canary,
            requests_b=traffic.baseline,
            requests_c=traffic.canary,
            errors_b=rng.binomial(traffic.baseline, e_b),
            errors_c=rng.binomial(traffic.canary, min(1.0, e_b * eff.error_factor)),
        )
    median = _uniform(rng, cfg.latency_median_s, n)
    sigma = _uniform(rng, cfg.latency_sigma, n)
    edges = np.array(cfg.latency_buckets[:-1])

    def bucket_shares(scale: FloatArray) -> FloatArray:
        z = (np.log(edges[None, :]) - np.log(scale)[:, None]) / sigma[:, None]
        cdf = np.concatenate([stats.norm.cdf(z), np.ones((n, 1))], axis=1)
        return np.diff(cdf, axis=1, prepend=0.0)

    buckets_b = rng.multinomial(traffic.baseline, bucket_shares(median)[:, None, :])
    buckets_c = rng.multinomial(
        traffic.canary, bucket_shares(median * eff.latency_scale)[:, None, :]
    )
    return Streams(
        metric="latency",
        samples_c=traffic.canary,
        requests_b=traffic.baseline,
        requests_c=traffic.canary,
        buckets_b=buckets_b,
        buckets_c=buckets_c,
        stable_p99=median * np.exp(sigma * stats.norm.ppf(0.99)),
        bounds=cfg.latency_buckets,
    )
