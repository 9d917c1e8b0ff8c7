"""Simulated rollouts judged on user feedback (thumbs up/down): Kanaria's ``feedback`` judge
against the per-interval threshold policies of :mod:`kanaria.bench.stats`, on the same streams.

A stream is one canary analysis at a fixed weight, one row per rollout, one column per
interval: requests as in :mod:`kanaria.bench.stats` (Poisson, log-uniform rate, log-normal
wobble, each to the canary with probability ``weight``); a share of the answers gets a thumb
(``rated_share``, drawn per rollout); each thumb is down with the stable revision's rate
(``down_rate``, drawn per rollout) or, on a worse canary, that rate plus ``extra_down``. The
counts per interval stand for the matured cohorts the operator reads (each answer counted H
after it was served with the feedback it got by then): the cohort shifts every count by H,
the same for both arms and both policies, so H is left out.

* Kanaria: :func:`kanaria.analysis.feedback.judge_feedback` on cumulative (positive, rated)
  counts after every interval, with the operator's defaults (minSamples 500, margin 0.02,
  α 0.05); the first FAIL rolls back. Judged until the canary has the documented number of
  rated answers for a 3-point rise (:func:`~kanaria.analysis.proportions.msprt_required_samples`
  at the stable's share of thumbs up, power 0.8), capped at ``max_intervals``.
* Threshold: each interval, the canary's share of thumbs down in that interval against the
  stable revision's true rate + 3 points (the objective at the effect, as the accuracy rows
  put it at −2 points); roll back after N failed checks; an interval without a rated answer is
  a failed check or skipped. The tuned variant takes the strictest limit whose A/A false
  rollback rate is ≤ α on the same A/A streams (in-sample: that favours it).

Pure (numpy + the analysis package); no I/O.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kanaria.analysis.feedback import DEFAULT_FEEDBACK_MARGIN, judge_feedback
from kanaria.analysis.measure import DEFAULT_MIN_SAMPLES
from kanaria.analysis.proportions import msprt_required_samples
from kanaria.api.verdict import Outcome
from kanaria.bench.stats import (
    THRESHOLD_VARIANTS,
    TUNED,
    index_reaching,
    threshold_policy,
)
from kanaria.bench.streams import FloatArray, IntArray

__all__ = ["FeedbackConfig", "FeedbackRow", "FeedbackRun", "run_feedback_benchmark", "summarise_feedback"]

ALPHA = 0.05
EFFECT = 0.03
"""The worse canary's extra share of thumbs down (3 points)."""
TUNING_GRID: FloatArray = np.round(np.arange(0.0, 0.4001, 0.005), 4)


@dataclass(frozen=True)
class FeedbackConfig:
    """The simulated traffic and feedback; ranges are drawn per rollout (uniform unless noted)."""

    weight: float = 0.5
    interval_s: float = 60.0
    rate_per_s: tuple[float, float] = (5.0, 50.0)
    """Requests per second over both arms (log-uniform)."""
    rate_wobble: float = 0.2
    rated_share: tuple[float, float] = (0.1, 0.5)
    """Share of answers that get a thumb up or down."""
    down_rate: tuple[float, float] = (0.02, 0.10)
    """The stable revision's share of thumbs down."""
    max_intervals: int = 360


@dataclass
class FeedbackRun:
    """One scenario's per-rollout outcomes."""

    scenario: str
    extra_down: float
    cum_rated_c: IntArray
    last: IntArray
    truncated: int
    kanaria_fail: IntArray
    kanaria_pass: IntArray
    threshold: dict[str, IntArray]
    tuning: IntArray


def _streams(rng: np.random.Generator, cfg: FeedbackConfig, n: int, extra_down: float) -> dict[str, IntArray | FloatArray]:
    t = cfg.max_intervals
    lo, hi = np.log(cfg.rate_per_s[0]), np.log(cfg.rate_per_s[1])
    rate = np.exp(rng.uniform(lo, hi, n))[:, None]
    wobble = rng.lognormal(-0.5 * cfg.rate_wobble**2, cfg.rate_wobble, (n, t))
    total = rng.poisson(rate * cfg.interval_s * wobble)
    canary = rng.binomial(total, cfg.weight)
    share = rng.uniform(*cfg.rated_share, n)[:, None]
    down_b = rng.uniform(*cfg.down_rate, n)
    rated_b, rated_c = rng.binomial(total - canary, share), rng.binomial(canary, share)
    down_c = rng.binomial(rated_c, (down_b + extra_down)[:, None])
    return {
        "down_rate": down_b,
        "rated_b": rated_b,
        "down_b": rng.binomial(rated_b, down_b[:, None]),
        "rated_c": rated_c,
        "down_c": down_c,
    }


def documented_rated(down_b: FloatArray, weight: float) -> FloatArray:
    """Canary rated answers at which the judge fails a 3-point rise with power 0.8."""
    ratio = (1.0 - weight) / weight
    return np.array([msprt_required_samples(1.0 - float(d), EFFECT, alpha=ALPHA, ratio=ratio) for d in down_b],
                    dtype=float)


def run_scenario(rng: np.random.Generator, name: str, extra_down: float, cfg: FeedbackConfig, n: int) -> FeedbackRun:
    s = _streams(rng, cfg, n, extra_down)
    down_b = np.asarray(s["down_rate"], dtype=float)
    cum: dict[str, IntArray] = {
        k: np.cumsum(np.asarray(s[k], dtype=np.int64), axis=1) for k in ("rated_b", "down_b", "rated_c", "down_c")
    }
    target = documented_rated(down_b, cfg.weight)
    last = index_reaching(cum["rated_c"], target)
    reached = cum["rated_c"][np.arange(n), last] >= target
    min_n = DEFAULT_MIN_SAMPLES["feedback"]
    fail = np.full(n, -1, dtype=np.int64)
    passed = np.full(n, -1, dtype=np.int64)
    for r in range(n):
        nb, db, nc, dc = (cum[k][r].tolist() for k in ("rated_b", "down_b", "rated_c", "down_c"))
        for i in range(int(last[r]) + 1):
            if nb[i] < min_n or nc[i] < min_n:
                continue
            outcome = judge_feedback(nb[i] - db[i], nb[i], nc[i] - dc[i], nc[i], min_samples=min_n,
                                     margin=DEFAULT_FEEDBACK_MARGIN, alpha=ALPHA).outcome
            if outcome is Outcome.FAIL:
                fail[r] = i
                break
            if outcome is Outcome.PASS and passed[r] < 0:
                passed[r] = i
    with np.errstate(invalid="ignore", divide="ignore"):
        rated_c = np.asarray(s["rated_c"], dtype=float)
        share_down = np.asarray(s["down_c"], dtype=float) / np.where(rated_c > 0, rated_c, np.nan)
    badness = share_down - down_b[:, None]
    limit = np.array([EFFECT])
    threshold = {v.name: threshold_policy(badness, limit, v.failures, v.no_data_fails)[0] for v in THRESHOLD_VARIANTS}
    tuning = threshold_policy(badness, TUNING_GRID, TUNED.failures, TUNED.no_data_fails)
    return FeedbackRun(name, extra_down, cum["rated_c"], last, int((~reached).sum()), fail, passed, threshold, tuning)


def _chunk(job: tuple[int, str, float, FeedbackConfig, np.random.SeedSequence, int]) -> FeedbackRun:
    _, name, extra, cfg, seed, n = job
    return run_scenario(np.random.default_rng(seed), name, extra, cfg, n)


def _concat(a: FeedbackRun, b: FeedbackRun) -> FeedbackRun:
    return FeedbackRun(
        a.scenario, a.extra_down, np.concatenate([a.cum_rated_c, b.cum_rated_c]), np.concatenate([a.last, b.last]),
        a.truncated + b.truncated, np.concatenate([a.kanaria_fail, b.kanaria_fail]),
        np.concatenate([a.kanaria_pass, b.kanaria_pass]),
        {k: np.concatenate([v, b.threshold[k]]) for k, v in a.threshold.items()},
        np.concatenate([a.tuning, b.tuning], axis=1),
    )  # fmt: skip


def run_feedback_benchmark(
    n: int, seed: int, *, cfg: FeedbackConfig | None = None, workers: int = 1, chunk: int = 100,
    progress: Callable[[str], None] | None = None,
) -> list[FeedbackRun]:
    """``n`` rollouts of A/A and of +3 points thumbs down; deterministic in ``seed``."""
    cfg = cfg or FeedbackConfig()
    scenarios = (("A/A", 0.0), ("thumbs down +3 points", EFFECT))
    root = np.random.SeedSequence(seed)
    jobs = []
    for s, ((name, extra), seq) in enumerate(zip(scenarios, root.spawn(len(scenarios)), strict=True)):
        sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
        for size, child in zip(sizes, seq.spawn(len(sizes)), strict=True):
            jobs.append((s, name, extra, cfg, child, size))
    parts: list[list[FeedbackRun]] = [[] for _ in scenarios]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for k, (job, part) in enumerate(zip(jobs, pool.imap(_chunk, jobs), strict=True)):
                parts[job[0]].append(part)
                if progress:
                    progress(f"[{k + 1}/{len(jobs)}] feedback: {job[1]}")
    else:
        for k, job in enumerate(jobs):
            parts[job[0]].append(_chunk(job))
            if progress:
                progress(f"[{k + 1}/{len(jobs)}] feedback: {job[1]}")
    out = []
    for runs in parts:
        merged = runs[0]
        for more in runs[1:]:
            merged = _concat(merged, more)
        out.append(merged)
    return out


@dataclass(frozen=True)
class FeedbackRow:
    scenario: str
    policy: str
    rollouts: int
    rollback_rate: float
    passed_first: float | None
    median_rated: float | None
    median_minutes: float | None
    truncated: int
    note: str = ""


def _rates(run: FeedbackRun, rollback: IntArray, interval_s: float) -> tuple[float, float | None, float | None]:
    hit = (rollback >= 0) & (rollback <= run.last)
    if not hit.any():
        return float(hit.mean()), None, None
    rows = np.nonzero(hit)[0]
    return (
        float(hit.mean()),
        float(np.median(run.cum_rated_c[rows, rollback[rows]])),
        float(np.median((rollback[rows] + 1) * interval_s / 60.0)),
    )


def summarise_feedback(runs: Sequence[FeedbackRun], cfg: FeedbackConfig | None = None) -> list[FeedbackRow]:
    cfg = cfg or FeedbackConfig()
    aa = next(r for r in runs if r.extra_down == 0)
    aa_rates = ((aa.tuning >= 0) & (aa.tuning <= aa.last[None, :])).mean(axis=1)
    ok = np.nonzero(aa_rates <= ALPHA)[0]
    g = int(ok[0]) if len(ok) else len(aa_rates) - 1
    rows = []
    for run in runs:
        common = {"scenario": run.scenario, "rollouts": len(run.last), "truncated": run.truncated}
        rate, med_n, med_t = _rates(run, run.kanaria_fail, cfg.interval_s)
        first_pass = (run.kanaria_pass >= 0) & ((run.kanaria_fail < 0) | (run.kanaria_pass < run.kanaria_fail))
        rows.append(FeedbackRow(policy="Kanaria", rollback_rate=rate, passed_first=float(first_pass.mean()),
                                median_rated=med_n, median_minutes=med_t, **common))  # type: ignore[arg-type]
        for name, rollback in run.threshold.items():
            rate, med_n, med_t = _rates(run, rollback, cfg.interval_s)
            rows.append(FeedbackRow(policy=name, rollback_rate=rate, passed_first=None,
                                    median_rated=med_n, median_minutes=med_t, **common))  # type: ignore[arg-type]
        rate, med_n, med_t = _rates(run, run.tuning[g], cfg.interval_s)
        rows.append(FeedbackRow(policy=TUNED.name, rollback_rate=rate, passed_first=None, median_rated=med_n,
                                median_minutes=med_t, note=f"limit {float(TUNING_GRID[g]):g}", **common))  # type: ignore[arg-type]
    return rows
