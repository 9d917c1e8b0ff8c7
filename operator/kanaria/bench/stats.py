"""Simulated rollouts: Kanaria's sequential judges against a per-interval threshold policy.

Both policies see the very same seeded streams. A stream is one canary analysis at a fixed
traffic weight, one row per rollout and one column per analysis interval:

* requests: Poisson per interval with a per-rollout rate (log-uniform) and a per-interval
  log-normal wobble; each request goes to the canary with probability ``weight``;
* errors: Bernoulli per request (binomial counts);
* latency: log-normal per request, binned into the Prometheus buckets (:data:`BUCKETS`);
* accuracy: a share ``coverage`` of predictions gets a ground-truth label, which arrives after
  an exponential delay (discretised to intervals) and is credited to the arm that served the
  prediction. The stable revision served all traffic before the step, so its labels from
  before the step keep arriving during it (a warm-up of ``max_label_delay_intervals``).

Kanaria's policy calls the real ``judge_*`` functions once per interval on cumulative counts
since the start of the step, with the operator's defaults, and rolls back on the first FAIL
(``failureLimit: 0``). Every rollout is judged up to a horizon, so the false-rollback rate is
that of a rollout that keeps being watched, not only until its first PASS.

The threshold policy is what Flagger and Argo Rollouts do by default: each interval, compute the
canary's metric over that interval only, compare it with a fixed objective, count failed checks
and roll back after ``N`` of them; an interval without data is either a failed check or skipped.

Everything here is pure (numpy + the analysis package); no I/O.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kanaria.analysis.latency import judge_latency
from kanaria.analysis.measure import DEFAULT_MIN_SAMPLES
from kanaria.analysis.proportions import (
    error_rate_required_requests,
    judge_accuracy,
    judge_error_rate,
    msprt_required_samples,
    required_samples_per_arm,
)
from kanaria.api.verdict import Outcome
from kanaria.bench.streams import (
    BUCKETS,
    Effect,
    FloatArray,
    IntArray,
    Scenario,
    StreamConfig,
    Streams,
    generate_streams,
    label_delay_shares,
)

__all__ = [
    "BUCKETS",
    "Effect",
    "MetricRun",
    "Row",
    "Scenario",
    "StreamConfig",
    "ThresholdVariant",
    "default_scenarios",
    "histogram_quantile",
    "label_delay_shares",
    "msprt_required_samples",
    "run_benchmark",
    "summarise",
]

# The operator's defaults (kanaria.analysis.measure and the judges' keyword defaults).
ACCURACY_ALPHA = 0.05
ACCURACY_MARGIN = 0.02
ERROR_ALPHA = 0.05
DEFAULT_MAX_ERROR_RATIO = 1.5  # as the operator's default (analysis/measure.py)
MAX_ERROR_RATE = 0.01
LATENCY_ALPHA = 0.01
LATENCY_MAX_AUC = 0.56
ALPHA: dict[str, float] = {"accuracy": ACCURACY_ALPHA, "latency": LATENCY_ALPHA, "errors": ERROR_ALPHA}


def default_scenarios() -> tuple[Scenario, ...]:
    return (
        Scenario("A/A", "accuracy"),
        Scenario("accuracy -2 points", "accuracy", Effect(accuracy_drop=0.02)),
        Scenario("A/A", "latency"),
        Scenario("latency +20%", "latency", Effect(latency_scale=1.2)),
        Scenario("A/A", "errors"),
        Scenario("errors x2", "errors", Effect(error_factor=2.0)),
        Scenario("errors x3", "errors", Effect(error_factor=3.0)),
    )


@dataclass(frozen=True)
class ThresholdVariant:
    """A per-interval threshold policy: roll back after ``failures`` failed checks."""

    name: str
    failures: int
    no_data_fails: bool


THRESHOLD_VARIANTS = (
    ThresholdVariant("threshold N=1, no data = fail", 1, True),
    ThresholdVariant("threshold N=5, no data skipped", 5, False),
)
TUNED = ThresholdVariant("threshold N=5, objective tuned on A/A", 5, False)

# The fixed objectives of the threshold policy sit exactly at the effect to be detected:
# accuracy ≥ stable's − 2 points, error rate ≤ 1% (2× the stable's 0.5%), p99 ≤ 1.2 × the
# stable's p99. "Badness" per interval is compared with a limit: larger is worse.
DEFAULT_LIMIT: dict[str, float] = {"accuracy": 0.02, "errors": 0.01, "latency": 1.2}
TUNING_GRID: dict[str, FloatArray] = {
    "accuracy": np.round(np.arange(0.0, 0.4001, 0.005), 4),  # shortfall below the stable's
    "errors": np.round(np.geomspace(0.005, 0.5, 81), 6),  # interval error rate
    "latency": np.round(np.geomspace(1.0, 20.0, 81), 4),  # interval p99 / stable's true p99
}


# --------------------------------------------------------------------------- Kanaria


def _first(hit: bool, i: int, current: int) -> int:
    return i if hit and current < 0 else current


def kanaria_policy(streams: Streams, last: IntArray) -> tuple[IntArray, IntArray]:
    """First FAIL and first PASS interval per rollout (−1: none up to ``last`` inclusive).

    Calls the real judge once per interval on cumulative counts since the step started, with
    the operator's defaults; stops at the first FAIL (rollback).
    """
    n = streams.samples_c.shape[0]
    first_fail = np.full(n, -1, dtype=np.int64)
    first_pass = np.full(n, -1, dtype=np.int64)
    judge = _judge_for(streams)
    for r in range(n):
        fail, passed = -1, -1
        for i, outcome in enumerate(judge(r, int(last[r]))):
            if outcome is Outcome.FAIL:
                fail = i
                break
            passed = _first(outcome is Outcome.PASS, i, passed)
        first_fail[r], first_pass[r] = fail, passed
    return first_fail, first_pass


def _judge_for(streams: Streams) -> Callable[[int, int], Any]:
    """A generator factory: outcomes of interval 0..last for rollout r."""
    if streams.metric == "accuracy":
        assert streams.correct_b is not None and streams.labelled_b is not None
        assert streams.correct_c is not None and streams.labelled_c is not None
        cols = [np.cumsum(a, axis=1) for a in (
            streams.correct_b, streams.labelled_b, streams.correct_c, streams.labelled_c
        )]
        min_n = DEFAULT_MIN_SAMPLES["accuracy"]

        def accuracy(r: int, last: int) -> Any:
            xb, nb, xc, nc = (c[r, : last + 1].tolist() for c in cols)
            for i in range(last + 1):
                if nb[i] < min_n or nc[i] < min_n:  # the judge's own first check; saves calls
                    yield Outcome.INCONCLUSIVE
                    continue
                yield judge_accuracy(
                    xb[i], nb[i], xc[i], nc[i],
                    min_samples=min_n, margin=ACCURACY_MARGIN, alpha=ACCURACY_ALPHA,
                ).outcome

        return accuracy
    if streams.metric == "errors":
        assert streams.errors_b is not None and streams.requests_b is not None
        assert streams.errors_c is not None and streams.requests_c is not None
        cols = [np.cumsum(a, axis=1) for a in (
            streams.errors_b, streams.requests_b, streams.errors_c, streams.requests_c
        )]

        def errors(r: int, last: int) -> Any:
            eb, rb, ec, rc = (c[r, : last + 1].tolist() for c in cols)
            for i in range(last + 1):
                yield judge_error_rate(
                    eb[i], rb[i], ec[i], rc[i],
                    max_error_rate=MAX_ERROR_RATE,
                    relative_tolerance=DEFAULT_MAX_ERROR_RATIO - 1.0,
                    min_requests=DEFAULT_MIN_SAMPLES["errorRate"],
                    alpha=ERROR_ALPHA,
                ).outcome

        return errors
    assert streams.buckets_b is not None and streams.buckets_c is not None
    cum_b = np.cumsum(np.cumsum(streams.buckets_b, axis=1), axis=2)
    cum_c = np.cumsum(np.cumsum(streams.buckets_c, axis=1), axis=2)
    min_n = DEFAULT_MIN_SAMPLES["latency"]

    def latency(r: int, last: int) -> Any:
        for i in range(last + 1):
            b, c = cum_b[r, i].tolist(), cum_c[r, i].tolist()
            if b[-1] < min_n or c[-1] < min_n:
                yield Outcome.INCONCLUSIVE
                continue
            yield judge_latency(
                streams.bounds, b, c, min_samples=min_n, max_auc=LATENCY_MAX_AUC, alpha=LATENCY_ALPHA
            ).outcome

    return latency


# --------------------------------------------------------------------------- thresholds


def histogram_quantile(q: float, per_bucket: IntArray, bounds: Sequence[float] = BUCKETS) -> FloatArray:
    """PromQL's histogram_quantile over the last axis of per-bucket (not cumulative) counts.

    Linear interpolation within the bucket holding rank q·total (from 0 in the first bucket);
    the +Inf bucket gives the highest finite bound; NaN where there is no observation.
    """
    cum = np.cumsum(per_bucket, axis=-1).astype(float)
    total = cum[..., -1]
    rank = q * total
    idx = np.argmax(cum >= rank[..., None], axis=-1)
    upper_all = np.array(bounds, dtype=float)
    lower_all = np.concatenate([[0.0], upper_all[:-1]])
    before = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0.0)
    count = np.take_along_axis(cum, idx[..., None], -1)[..., 0] - before
    upper, lower = upper_all[idx], lower_all[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * (rank - before) / count
    finite_top = max(b for b in bounds if math.isfinite(b))
    value = np.where(np.isinf(upper), finite_top, value)
    out: FloatArray = np.where(total > 0, value, np.nan)
    return out


def interval_badness(streams: Streams) -> FloatArray:
    """The threshold policy's per-interval, canary-only value; larger is worse; NaN: no data.

    accuracy: stable's (offline) accuracy − this interval's canary accuracy; errors: this
    interval's error rate; latency: this interval's p99 / the stable's true p99.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if streams.metric == "accuracy":
            assert streams.correct_c is not None and streams.labelled_c is not None
            assert streams.baseline_accuracy is not None
            acc = streams.correct_c / np.where(streams.labelled_c > 0, streams.labelled_c, np.nan)
            out: FloatArray = streams.baseline_accuracy[:, None] - acc
            return out
        if streams.metric == "errors":
            assert streams.errors_c is not None and streams.requests_c is not None
            rc = np.where(streams.requests_c > 0, streams.requests_c, np.nan)
            out = streams.errors_c / rc
            return out
        assert streams.buckets_c is not None and streams.stable_p99 is not None
        out = histogram_quantile(0.99, streams.buckets_c, streams.bounds) / streams.stable_p99[:, None]
        return out


def threshold_policy(
    badness: FloatArray, limits: FloatArray, failures: int, no_data_fails: bool
) -> IntArray:
    """Interval of rollback (−1: never) per limit and rollout: shape (len(limits), n)."""
    no_data = np.isnan(badness)
    bad = np.nan_to_num(badness, nan=-np.inf)[None, :, :] > limits[:, None, None]
    if no_data_fails:
        bad |= no_data[None, :, :]
    count = np.cumsum(bad, axis=2)
    hit = count >= failures
    idx = np.argmax(hit, axis=2)
    out: IntArray = np.where(hit.any(axis=2), idx, -1).astype(np.int64)
    return out


# --------------------------------------------------------------------------- running


@dataclass
class MetricRun:
    """Per-rollout outcomes of one scenario (rollouts in rows)."""

    scenario: Scenario
    cum_samples: IntArray
    """Cumulative canary samples per interval (n, T)."""
    horizons: dict[str, FloatArray]
    """Named per-rollout sample horizons (accuracy) — empty for time-horizon metrics."""
    last: IntArray
    """Last interval judged per rollout."""
    kanaria_fail: IntArray
    kanaria_pass: IntArray
    threshold: dict[str, IntArray]
    tuning: IntArray
    """Rollback interval per TUNING_GRID limit, (G, n)."""

    def concat(self, other: MetricRun) -> MetricRun:
        width = max(self.cum_samples.shape[1], other.cum_samples.shape[1])
        return replace(
            self,
            cum_samples=np.concatenate([_pad(self.cum_samples, width), _pad(other.cum_samples, width)]),
            horizons={k: np.concatenate([v, other.horizons[k]]) for k, v in self.horizons.items()},
            last=np.concatenate([self.last, other.last]),
            kanaria_fail=np.concatenate([self.kanaria_fail, other.kanaria_fail]),
            kanaria_pass=np.concatenate([self.kanaria_pass, other.kanaria_pass]),
            threshold={k: np.concatenate([v, other.threshold[k]]) for k, v in self.threshold.items()},
            tuning=np.concatenate([self.tuning, other.tuning], axis=1),
        )


def _pad(a: IntArray, width: int) -> IntArray:
    if a.shape[1] == width:
        return a
    return np.pad(a, ((0, 0), (0, width - a.shape[1])), mode="edge")


def accuracy_horizons(p_b: FloatArray, cfg: StreamConfig, drop: float = 0.02) -> dict[str, FloatArray]:
    """Per-rollout canary-label horizons: the documented size (what the always-valid test
    needs, :func:`msprt_required_samples`) and, for reference, the fixed-horizon size of a
    test looked at once (:func:`required_samples_per_arm`)."""
    ratio = (1.0 - cfg.weight) / cfg.weight
    fixed = [required_samples_per_arm(float(p), drop, ACCURACY_ALPHA, 0.8, ratio)[0] for p in p_b]
    documented = [msprt_required_samples(float(p), drop, alpha=ACCURACY_ALPHA, ratio=ratio) for p in p_b]
    return {
        "fixed-horizon": np.array(fixed, dtype=float),
        "documented": np.array(documented, dtype=float),
    }


def error_horizons(n: int, cfg: StreamConfig, factor: float = 2.0) -> dict[str, FloatArray]:
    """Canary requests the error-rate judge needs to catch a ``factor``× increase with power
    0.8 (:func:`error_rate_required_requests`), the same for every rollout."""
    need = error_rate_required_requests(cfg.baseline_error_rate, factor, share=cfg.weight, alpha=ERROR_ALPHA)
    return {"documented": np.full(n, float(need))}


def index_reaching(cum: IntArray, target: FloatArray) -> IntArray:
    """First interval whose cumulative count reaches ``target`` (last interval if never)."""
    hit = cum >= target[:, None]
    out: IntArray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), cum.shape[1] - 1)
    return out.astype(np.int64)


def run_scenario(rng: np.random.Generator, scenario: Scenario, cfg: StreamConfig, n: int) -> MetricRun:
    streams = generate_streams(rng, scenario, cfg, n)
    cum = np.cumsum(streams.samples_c, axis=1)
    horizons: dict[str, FloatArray] = {}
    if scenario.metric == "accuracy":
        assert streams.baseline_accuracy is not None
        horizons = accuracy_horizons(streams.baseline_accuracy, cfg)
        last = index_reaching(cum, horizons["documented"] * cfg.accuracy_horizon_factor)
    elif scenario.metric == "errors":
        # Judged to the documented sample size or the time horizon, whichever comes later.
        horizons = error_horizons(n, cfg)
        last = np.maximum(index_reaching(cum, horizons["documented"]), cfg.time_horizon_intervals - 1)
    else:
        last = np.full(n, cum.shape[1] - 1, dtype=np.int64)
    fail, passed = kanaria_policy(streams, last)
    badness = interval_badness(streams)
    limit = np.array([DEFAULT_LIMIT[scenario.metric]])
    threshold = {
        v.name: threshold_policy(badness, limit, v.failures, v.no_data_fails)[0]
        for v in THRESHOLD_VARIANTS
    }
    tuning = threshold_policy(badness, TUNING_GRID[scenario.metric], TUNED.failures, TUNED.no_data_fails)
    return MetricRun(scenario, cum, horizons, last, fail, passed, threshold, tuning)


def _chunk(job: tuple[int, int, Scenario, StreamConfig, np.random.SeedSequence]) -> MetricRun:
    _, n, scenario, cfg, seed = job
    return run_scenario(np.random.default_rng(seed), scenario, cfg, n)


def run_benchmark(
    n: int,
    seed: int,
    *,
    scenarios: Sequence[Scenario] | None = None,
    cfg: StreamConfig | None = None,
    workers: int = 1,
    chunk: int = 100,
    progress: Callable[[str], None] | None = None,
) -> list[MetricRun]:
    """Simulate ``n`` rollouts per scenario; deterministic in ``seed`` whatever ``workers``."""
    scenarios = tuple(scenarios or default_scenarios())
    cfg = cfg or StreamConfig()
    root = np.random.SeedSequence(seed)
    jobs = []
    for s, (scenario, seq) in enumerate(zip(scenarios, root.spawn(len(scenarios)), strict=True)):
        sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
        for size, child in zip(sizes, seq.spawn(len(sizes)), strict=True):
            jobs.append((s, size, scenario, cfg, child))
    parts: list[list[MetricRun]] = [[] for _ in scenarios]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            done = pool.imap(_chunk, jobs)
            for k, (job, part) in enumerate(zip(jobs, done, strict=True)):
                parts[job[0]].append(part)
                _report(progress, k + 1, len(jobs), job[2])
    else:
        for k, job in enumerate(jobs):
            parts[job[0]].append(_chunk(job))
            _report(progress, k + 1, len(jobs), job[2])
    out = []
    for runs in parts:
        merged = runs[0]
        for more in runs[1:]:
            merged = merged.concat(more)
        out.append(merged)
    return out


def _report(progress: Callable[[str], None] | None, k: int, total: int, scenario: Scenario) -> None:
    if progress is not None:
        progress(f"[{k}/{total}] {scenario.metric}: {scenario.name}")


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    horizon: str
    policy: str
    rollouts: int
    rollback_rate: float
    """False-rollback rate under A/A, detection rate otherwise."""
    passed_first: float | None
    """Kanaria only: share whose first decision was PASS (a promotion)."""
    median_samples: float | None
    median_minutes: float | None
    truncated: int = 0
    """Rollouts that hit the interval cap before reaching the sample horizon."""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _stop_index(
    run: MetricRun, horizon: str | None, factor: float = 1.0, time_horizon: int | None = None
) -> tuple[IntArray, int]:
    if horizon is None:
        return (run.last if time_horizon is None else np.minimum(run.last, time_horizon - 1)), 0
    target = run.horizons[horizon] * factor
    idx = index_reaching(run.cum_samples, target)
    reached = run.cum_samples[np.arange(len(idx)), idx] >= target
    return np.minimum(idx, run.last), int((~reached).sum())


def _rates(
    run: MetricRun, at: IntArray, rollback: IntArray, interval_s: float
) -> tuple[float, float | None, float | None]:
    hit = (rollback >= 0) & (rollback <= at)
    if not hit.any():
        return float(hit.mean()), None, None
    rows = np.nonzero(hit)[0]
    samples = run.cum_samples[rows, rollback[rows]]
    return (
        float(hit.mean()),
        float(np.median(samples)),
        float(np.median((rollback[rows] + 1) * interval_s / 60.0)),
    )


def tuned_limit(aa: MetricRun, at: IntArray, alpha: float) -> int:
    """Index of the strictest TUNING_GRID limit whose A/A false-rollback rate is ≤ α."""
    rates = ((aa.tuning >= 0) & (aa.tuning <= at[None, :])).mean(axis=1)
    ok = np.nonzero(rates <= alpha)[0]
    return int(ok[0]) if len(ok) else len(rates) - 1


def summarise(
    runs: Sequence[MetricRun],
    cfg: StreamConfig | None = None,
    accuracy_horizons_shown: Sequence[tuple[str, float]] = (("fixed-horizon", 1.0), ("documented", 1.0)),
) -> list[Row]:
    """One row per scenario × horizon × policy.

    The tuned threshold policy's limit is chosen per metric and horizon on the A/A run of the
    same metric (in-sample: that favours it) as the strictest limit with false rollbacks ≤ α.
    """
    cfg = cfg or StreamConfig()
    aa = {r.scenario.metric: r for r in runs if not r.scenario.bad}
    rows: list[Row] = []
    for run in runs:
        metric = run.scenario.metric
        horizons: Sequence[tuple[str | None, float]] = (
            list(accuracy_horizons_shown) if metric == "accuracy"
            else [(None, 1.0), ("documented", 1.0)] if metric == "errors"
            else [(None, 1.0)]
        )
        for name, factor in horizons:
            at, truncated = _stop_index(run, name, factor, cfg.time_horizon_intervals)
            if name is None:
                label = f"{cfg.time_horizon_intervals * cfg.interval_s / 60:.0f} min"
            else:
                label = f"{factor:g} × {name} n" if factor != 1 else f"{name} n"
            common = {"scenario": run.scenario.name, "metric": metric, "horizon": label,
                      "rollouts": len(at), "truncated": truncated}
            rate, med_n, med_t = _rates(run, at, run.kanaria_fail, cfg.interval_s)
            first_pass = (run.kanaria_pass >= 0) & (run.kanaria_pass <= at) & (
                (run.kanaria_fail < 0) | (run.kanaria_pass < run.kanaria_fail)
            )
            rows.append(Row(policy="Kanaria", rollback_rate=rate, passed_first=float(first_pass.mean()),
                            median_samples=med_n, median_minutes=med_t, **common))  # type: ignore[arg-type]
            for variant, rollback in run.threshold.items():
                rate, med_n, med_t = _rates(run, at, rollback, cfg.interval_s)
                rows.append(Row(policy=variant, rollback_rate=rate, passed_first=None,
                                median_samples=med_n, median_minutes=med_t, **common))  # type: ignore[arg-type]
            base = aa.get(metric)
            if base is not None:
                base_at, _ = _stop_index(base, name, factor, cfg.time_horizon_intervals)
                g = tuned_limit(base, base_at, ALPHA[metric])
                rate, med_n, med_t = _rates(run, at, run.tuning[g], cfg.interval_s)
                limit = float(TUNING_GRID[metric][g])
                rows.append(Row(policy=TUNED.name, rollback_rate=rate, passed_first=None,
                                median_samples=med_n, median_minutes=med_t,
                                note=f"limit {limit:g}", extra={"limit": limit}, **common))  # type: ignore[arg-type]
    return rows
