"""Cohorts of predictions against arrival windows: the label-timing biases, simulated.

Counting accuracy labels by the time they *arrive* (every label since the step started,
whatever prediction it judges) is biased when the canary starts at the step while the stable
revision has served all along, and the delay of a label depends on its outcome or the traffic
gets harder over time (docs/benchmarks.md, "Label timing"). Kanaria's fix compares *cohorts*:
the predictions both arms served in the same period, each label credited to the prediction it
judges and counted only if it arrived within a maturity horizon H of that prediction.

One stream is one canary step, one column per analysis interval (a "look"), per rollout:

* labelled predictions per interval: Poisson around ``canary_labels / mean weight`` over both
  arms (a log-normal wobble per interval), each the canary's with the step's weight at that
  interval; before the step the stable revision served everything;
* each prediction is correct with its arm's accuracy at that interval (the difficulty may
  drift or jump, equally for both arms; the bad canary is ``drop`` below the stable);
* its label arrives a whole number of intervals later, drawn from a delay distribution that
  may depend on whether the prediction was right.

The same streams are judged three ways:

* **cohorts**: at look L the matured cohort, predictions served in intervals 0 … L − H, with
  the labels that arrived within H intervals; judged by the real ``judge_accuracy``. Where the
  weight changed during the step, also **stratified**: per-period differences combined with
  inverse-variance weights (:func:`stratified_difference`), judged with the same
  always-valid rule;
* **arrival window**: all labels that arrived in intervals 0 … L, credited to the arm that
  served the prediction (the stable's include predictions made before the step);
* **thresholds**: the per-interval policies of :mod:`kanaria.bench.stats` on the labels that
  arrived in each interval.

Everything here is pure (numpy + the analysis package); no I/O.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from kanaria.analysis.measure import DEFAULT_MIN_SAMPLES
from kanaria.analysis.proportions import judge_accuracy, msprt_required_samples
from kanaria.api.verdict import Outcome
from kanaria.bench.stats import (
    ACCURACY_ALPHA,
    ACCURACY_MARGIN,
    THRESHOLD_VARIANTS,
    TUNED,
    TUNING_GRID,
    threshold_policy,
)

__all__ = [
    "COHORTS",
    "STRATIFIED",
    "ARRIVAL",
    "CohortRow",
    "CohortRun",
    "CohortScenario",
    "Delay",
    "cohort_scenarios",
    "first_decisions",
    "mixture_radius",
    "run_cohort_benchmark",
    "stratified_difference",
    "summarise_cohorts",
]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

TAU = 0.02  # judge_accuracy's mixing scale
MIN_LABELS = DEFAULT_MIN_SAMPLES["accuracy"]
COHORTS = "Kanaria, cohorts (pooled)"
STRATIFIED = "Kanaria, cohorts stratified by period"
ARRIVAL = "Kanaria, arrival window"
SCREEN = 0.9
"""The vectorised screen uses this share of the always-valid radius, so that it flags every
look the real judge could decide (see :func:`first_decisions`)."""


# --------------------------------------------------------------------------- the statistic


def stratified_difference(strata: Sequence[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Combine per-stratum accuracy differences: returns (Δ, V) of the canary minus the stable.

    ``strata`` holds one ``(correct_b, labelled_b, correct_c, labelled_c)`` per period of
    constant traffic split (a step, a bandit move) — baseline first, as everywhere in
    ``kanaria.analysis``. Per stratum k, Δ_k = p_c − p_b and V_k as ``msprt_variance``
    (Jeffreys-smoothed p̃ = (x + ½)/(n + 1), never 0); then, Mantel-Haenszel style with
    inverse-variance weights w_k = 1/V_k:

        Δ = Σ w_k Δ_k / Σ w_k,   V = 1 / Σ w_k.

    Each stratum compares the arms on the same traffic, so a change of the split together
    with a change of difficulty cannot leak into Δ (pooling the counts can: Simpson's
    paradox). Strata without a label in either arm carry no comparison and are left out;
    with none left the answer is (nan, inf). Judge (Δ, V) as ``judge_accuracy`` judges a
    pooled difference: the always-valid radius r(V) of ``normal_mixture_radius``, FAIL when
    Δ + r < 0, PASS when Δ − r > −margin. Raises ValueError on impossible counts.
    """
    weight_sum = 0.0
    weighted = 0.0
    for correct_b, labelled_b, correct_c, labelled_c in strata:
        for x, n in ((correct_b, labelled_b), (correct_c, labelled_c)):
            if not (math.isfinite(x) and math.isfinite(n)) or x < 0 or n < 0 or x > n:
                raise ValueError(f"need 0 ≤ correct ≤ labelled per stratum (got {x}, {n})")
        if labelled_b == 0 or labelled_c == 0:
            continue
        pb = (correct_b + 0.5) / (labelled_b + 1.0)
        pc = (correct_c + 0.5) / (labelled_c + 1.0)
        variance = pb * (1.0 - pb) / labelled_b + pc * (1.0 - pc) / labelled_c
        weight_sum += 1.0 / variance
        weighted += (correct_c / labelled_c - correct_b / labelled_b) / variance
    if weight_sum == 0.0:
        return math.nan, math.inf
    return weighted / weight_sum, 1.0 / weight_sum


def _stratified_arrays(
    xb: FloatArray, nb: FloatArray, xc: FloatArray, nc: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`stratified_difference` over arrays, strata on the last axis (tested equal), and
    the PASS side's variance: the same weights, each stratum's canary term at least at
    p̃_b − margin as in ``non_inferiority_variance``."""
    ok = (nb > 0) & (nc > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pb, pc = (xb + 0.5) / (nb + 1.0), (xc + 0.5) / (nc + 1.0)
        v = pb * (1.0 - pb) / nb + pc * (1.0 - pc) / nc
        q = np.clip(pb - ACCURACY_MARGIN, 0.0, 1.0)
        v_pass = pb * (1.0 - pb) / nb + np.maximum(pc * (1.0 - pc), q * (1.0 - q)) / nc
        w = np.where(ok, 1.0 / v, 0.0)
        d = np.where(ok, xc / nc - xb / nb, 0.0)
        total = w.sum(axis=-1)
        delta: FloatArray = np.where(total > 0, (w * d).sum(axis=-1) / total, np.nan)
        variance: FloatArray = np.where(total > 0, 1.0 / total, np.inf)
        pass_variance: FloatArray = np.where(
            total > 0, (w * w * np.where(ok, v_pass, 0.0)).sum(axis=-1) / (total * total), np.inf
        )
    return delta, variance, pass_variance


def mixture_radius(variance: FloatArray, tau: float = TAU, alpha: float = ACCURACY_ALPHA) -> FloatArray:
    """``normal_mixture_radius`` over an array (tested equal): r² = 2V(V+τ²)/τ² ·
    [ln(1/α) + ½ ln((V+τ²)/V)]."""
    t2 = tau * tau
    with np.errstate(invalid="ignore", divide="ignore"):
        bracket = math.log(1.0 / alpha) + 0.5 * np.log((variance + t2) / variance)
        out: FloatArray = np.sqrt(2.0 * variance * (variance + t2) / t2 * bracket)
    return out


def _always_valid_codes(
    delta: FloatArray, variance: FloatArray, pass_variance: FloatArray, enough: NDArray[np.bool_]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(fail, pass) per entry under judge_accuracy's rule: FAIL when Δ + r(V) < 0, else PASS
    when Δ − r(V') > −margin, V' the PASS side's variance."""
    with np.errstate(invalid="ignore"):
        fail = enough & (delta + mixture_radius(variance) < 0)
        passed = enough & ~fail & (delta - mixture_radius(pass_variance) > -ACCURACY_MARGIN)
    return fail, passed


def first_decisions(
    xb: IntArray, nb: IntArray, xc: IntArray, nc: IntArray, stop: IntArray
) -> tuple[IntArray, IntArray]:
    """First FAIL and first PASS look per rollout (−1: none up to ``stop`` inclusive) of the
    real ``judge_accuracy`` on cumulative counts (rollouts × looks), as the operator judges.

    Calling the judge at every look is slow, so a vectorised screen with the same formula and
    90% of its always-valid radius marks the looks it could decide, and the real judge is
    called at those only. The screen flags a superset as long as the judge's radius is at
    least 90% of the plain mixture radius (a variance floor only widens it); the tests compare
    this with calling the judge at every look.
    """
    pb = (xb + 0.5) / (nb + 1.0)
    pc = (xc + 0.5) / (nc + 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = pb * (1 - pb) / np.maximum(nb, 1) + pc * (1 - pc) / np.maximum(nc, 1)
        delta = xc / np.maximum(nc, 1) - xb / np.maximum(nb, 1)
    enough = (nb >= MIN_LABELS) & (nc >= MIN_LABELS)
    radius = SCREEN * mixture_radius(v)
    with np.errstate(invalid="ignore"):
        may_fail = enough & (delta + radius < 0)
        may_pass = enough & (delta - radius > -ACCURACY_MARGIN)
    n = xb.shape[0]
    first_fail = np.full(n, -1, dtype=np.int64)
    first_pass = np.full(n, -1, dtype=np.int64)
    for r in range(n):
        looks = np.nonzero((may_fail[r] | may_pass[r])[: stop[r] + 1])[0]
        passed = -1
        for look in looks.tolist():
            if passed >= 0 and not may_fail[r, look]:
                continue
            outcome = judge_accuracy(
                int(xb[r, look]), int(nb[r, look]), int(xc[r, look]), int(nc[r, look]),
                min_samples=MIN_LABELS, margin=ACCURACY_MARGIN, alpha=ACCURACY_ALPHA,
            ).outcome
            if outcome is Outcome.FAIL:
                first_fail[r] = look
                break
            if outcome is Outcome.PASS and passed < 0:
                passed = look
        first_pass[r] = passed
    return first_fail, first_pass


def _first_true(hit: NDArray[np.bool_], stop: IntArray) -> IntArray:
    hit = hit & (np.arange(hit.shape[1])[None, :] <= stop[:, None])
    out: IntArray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1).astype(np.int64)
    return out


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Delay:
    """Label delay in whole intervals: ``shares[i]`` of labels arrive ``first + i`` later."""

    first: int
    shares: tuple[float, ...]

    @property
    def last(self) -> int:
        return self.first + len(self.shares) - 1

    def offsets(self, slots: int) -> FloatArray:
        out: FloatArray = np.zeros(slots)
        out[self.first : self.last + 1] = self.shares
        out /= out.sum()
        return out


def about(intervals: int) -> Delay:
    """About ``intervals`` later: one earlier, on time, one later in proportions ¼, ½, ¼."""
    return Delay(intervals - 1, (0.25, 0.5, 0.25))


def spread(first: int, last: int) -> Delay:
    """Uniform over ``first`` … ``last`` intervals."""
    return Delay(first, (1.0,) * (last - first + 1))


@dataclass(frozen=True)
class CohortScenario:
    """One family of streams; each is simulated once healthy (A/A) and once with the canary
    ``drop`` below the stable at every interval."""

    name: str
    delay_wrong: Delay
    delay_right: Delay
    horizon: int
    """H: a label counts for its cohort if it arrives within H intervals of its prediction."""
    accuracy: tuple[float, float] = (0.90, 0.90)
    """Both arms' (stable's) accuracy before and after ``change``; the same for both arms."""
    drift_per_hour: tuple[float, float] = (0.0, 0.0)
    """Accuracy lost per hour, drawn per rollout (uniform), the same for both arms."""
    weights_aa: tuple[float, float] = (0.5, 0.5)
    """Canary weight before and after ``change`` in the A/A streams."""
    weights_bad: tuple[float, float] = (0.5, 0.5)
    """… and in the streams with a worse canary."""
    drop: float = 0.02

    @property
    def changes(self) -> bool:
        return self.weights_aa[0] != self.weights_aa[1] or self.weights_bad[0] != self.weights_bad[1]


def cohort_scenarios() -> tuple[CohortScenario, ...]:
    return (
        CohortScenario("errors labelled after ~4 min, correct after ~5", about(4), about(5), horizon=6),
        CohortScenario("correct labelled after ~4 min, errors after ~5", about(5), about(4), horizon=6),
        CohortScenario(
            "both arms lose 2–5 points/hour, labels after 1–30 min",
            spread(1, 30), spread(1, 30), horizon=30, drift_per_hour=(0.02, 0.05),
        ),
        CohortScenario(
            "bandit moves the weight as traffic gets harder (93% → 85%)",
            about(5), about(5), horizon=6, accuracy=(0.93, 0.85),
            weights_aa=(0.5, 0.8), weights_bad=(0.5, 0.2),
        ),
    )


@dataclass(frozen=True)
class CohortConfig:
    interval_s: float = 60.0
    rate_wobble: float = 0.2
    horizon_slack: float = 1.5
    """Simulate until the canary could have ``horizon_slack`` × the documented n, plus H."""


def documented_n(scenario: CohortScenario) -> int:
    """Canary labels ``judge_accuracy`` needs to FAIL a ``drop`` with power 0.8
    (``msprt_required_samples``) at the starting accuracy and the mean split."""
    w = (sum(scenario.weights_aa) + sum(scenario.weights_bad)) / 4
    return msprt_required_samples(scenario.accuracy[0], scenario.drop, alpha=ACCURACY_ALPHA, ratio=(1 - w) / w)


def change_interval(scenario: CohortScenario, weights: tuple[float, float], canary_labels: float) -> int:
    """The weight (and difficulty) change: when the canary has about half the documented n."""
    if weights[0] == weights[1] and scenario.accuracy[0] == scenario.accuracy[1]:
        return 10**9
    mean_w = (weights[0] + weights[1]) / 2
    per_interval = canary_labels / mean_w * weights[0]
    return max(1, math.ceil(documented_n(scenario) / 2 / per_interval))


def _intervals_to(target: float, weights: tuple[float, float], change: int, canary_labels: float) -> int:
    """Intervals until the canary has ``target`` labels in expectation."""
    rate = canary_labels / ((weights[0] + weights[1]) / 2)
    first = rate * weights[0]
    if first * change >= target:
        return math.ceil(target / first)
    return change + math.ceil((target - first * change) / (rate * weights[1]))


# --------------------------------------------------------------------------- streams


@dataclass
class CohortStreams:
    """Cumulative counts per look (rollouts × looks); ``_c`` the canary."""

    cohort: tuple[IntArray, IntArray, IntArray, IntArray]
    """Matured cohort: (correct_b, labelled_b, correct_c, labelled_c), predictions 0 … L − H."""
    strata: tuple[IntArray, IntArray, IntArray, IntArray]
    """The same per period of constant split: (rollouts, looks, 2)."""
    arrival: tuple[IntArray, IntArray, IntArray, IntArray]
    """Every label arrived in 0 … L, whatever prediction it judges."""
    badness: FloatArray
    """Per-interval (not cumulative) stable's offline accuracy − canary accuracy over the
    labels that arrived in that interval; NaN without labels (the threshold policies)."""


def _spread_over_arrivals(
    rng: np.random.Generator, made: IntArray, delay: Delay, warmup: int
) -> tuple[IntArray, IntArray]:
    """(arrived per interval since the step, matured-within-H per prediction interval)."""
    slots = delay.last + 1
    split = rng.multinomial(made, delay.offsets(slots))  # (n, W+T, slots)
    width = made.shape[1]
    arrived = np.zeros_like(made)
    for d in range(delay.first, slots):
        arrived[:, d:] += split[:, : width - d, d]
    return arrived[:, warmup:], split[:, warmup:, :]


def simulate(
    rng: np.random.Generator, scenario: CohortScenario, bad: bool, canary_labels: float,
    n: int, cfg: CohortConfig,
) -> CohortStreams:
    """Seeded streams of ``n`` rollouts; ``canary_labels`` labelled canary predictions per
    interval on average over the step."""
    weights = scenario.weights_bad if bad else scenario.weights_aa
    mean_w = (weights[0] + weights[1]) / 2
    h = scenario.horizon
    warmup = max(scenario.delay_wrong.last, scenario.delay_right.last) + 1
    change = change_interval(scenario, weights, canary_labels)
    looks = h + 2 + _intervals_to(cfg.horizon_slack * documented_n(scenario), weights, change, canary_labels)
    t = np.arange(-warmup, looks)
    after = t >= change
    weight = np.where(t < 0, 0.0, np.where(after, weights[1], weights[0]))
    wobble = rng.lognormal(-0.5 * cfg.rate_wobble**2, cfg.rate_wobble, (n, warmup + looks))
    total = rng.poisson(canary_labels / mean_w * wobble)
    made_c = rng.binomial(total, weight[None, :])
    made = {"b": total - made_c, "c": made_c}
    slope = rng.uniform(*scenario.drift_per_hour, n)[:, None]
    hours = (t[None, :] + 0.5) * cfg.interval_s / 3600.0
    p_b = np.where(after, scenario.accuracy[1], scenario.accuracy[0])[None, :] - slope * hours
    p = {"b": p_b, "c": p_b - (scenario.drop if bad else 0.0)}
    cohort, strata, arrival = [], [], []
    for arm in ("b", "c"):
        right = rng.binomial(made[arm], np.clip(p[arm], 0.0, 1.0))
        wrong = made[arm] - right
        arr_r, split_r = _spread_over_arrivals(rng, right, scenario.delay_right, warmup)
        arr_w, split_w = _spread_over_arrivals(rng, wrong, scenario.delay_wrong, warmup)
        # A label counts for its cohort if it arrives within H of its prediction.
        mat_r = split_r[:, :, : h + 1].sum(axis=2)
        mat_l = mat_r + split_w[:, :, : h + 1].sum(axis=2)
        # Cohort t has matured at look t + H: shift by H.
        shifted = [np.pad(a, ((0, 0), (h, 0)))[:, :looks] for a in (mat_r, mat_l)]
        cohort += [np.cumsum(a, axis=1) for a in shifted]
        period = (np.arange(looks) - h >= change)[None, :, None]
        strata += [np.cumsum(a[:, :, None] * np.concatenate([~period, period], axis=2), axis=1)
                   for a in shifted]
        arrival += [np.cumsum(arr_r, axis=1), np.cumsum(arr_r + arr_w, axis=1)]
        if arm == "c":
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = arr_r / np.where(arr_r + arr_w > 0, arr_r + arr_w, np.nan)
            badness = scenario.accuracy[0] - acc
    xb, nb, xc, nc = cohort
    sb, sn, sc, snc = strata
    return CohortStreams(
        cohort=(xb, nb, xc, nc), strata=(sb, sn, sc, snc),
        arrival=(arrival[0], arrival[1], arrival[2], arrival[3]), badness=badness,
    )


# --------------------------------------------------------------------------- running


@dataclass
class CohortRun:
    """Per-rollout outcomes of one scenario, healthy or bad, at one label volume."""

    scenario: CohortScenario
    bad: bool
    canary_labels: float
    fail: dict[str, IntArray]
    passed: dict[str, IntArray]
    """First FAIL / PASS look per policy (thresholds: rollback look; no PASS)."""
    stop: dict[str, IntArray]
    """Look at which the canary has the documented n under that policy's counting."""
    truncated: dict[str, int]
    tuning: IntArray
    """Rollback look per TUNING_GRID accuracy limit, (G, n)."""

    def concat(self, other: CohortRun) -> CohortRun:
        def cat(a: dict[str, IntArray], b: dict[str, IntArray]) -> dict[str, IntArray]:
            return {k: np.concatenate([v, b[k]]) for k, v in a.items()}

        return CohortRun(
            self.scenario, self.bad, self.canary_labels,
            cat(self.fail, other.fail), cat(self.passed, other.passed), cat(self.stop, other.stop),
            {k: v + other.truncated[k] for k, v in self.truncated.items()},
            np.concatenate([self.tuning, other.tuning], axis=1),
        )


def _stop(cum_c: IntArray, target: int) -> tuple[IntArray, int]:
    hit = cum_c >= target
    reached = hit.any(axis=1)
    out: IntArray = np.where(reached, np.argmax(hit, axis=1), cum_c.shape[1] - 1).astype(np.int64)
    return out, int((~reached).sum())


def run_one(
    rng: np.random.Generator, scenario: CohortScenario, bad: bool, canary_labels: float,
    n: int, cfg: CohortConfig,
) -> CohortRun:
    s = simulate(rng, scenario, bad, canary_labels, n, cfg)
    need = documented_n(scenario)
    fail: dict[str, IntArray] = {}
    passed: dict[str, IntArray] = {}
    stop: dict[str, IntArray] = {}
    truncated: dict[str, int] = {}
    for policy, counts in ((COHORTS, s.cohort), (ARRIVAL, s.arrival)):
        stop[policy], truncated[policy] = _stop(counts[3], need)
        fail[policy], passed[policy] = first_decisions(*counts, stop[policy])
    if scenario.changes:
        xb, nb, xc, nc = (a.astype(float) for a in s.strata)
        delta, variance, pass_variance = _stratified_arrays(xb, nb, xc, nc)
        enough = (nb.sum(axis=2) >= MIN_LABELS) & (nc.sum(axis=2) >= MIN_LABELS)
        f, p = _always_valid_codes(delta, variance, pass_variance, enough)
        stop[STRATIFIED], truncated[STRATIFIED] = stop[COHORTS], truncated[COHORTS]
        fail[STRATIFIED] = _first_true(f, stop[STRATIFIED])
        passed[STRATIFIED] = _first_true(p, stop[STRATIFIED])
    limit = np.array([ACCURACY_MARGIN])
    for v in THRESHOLD_VARIANTS:
        stop[v.name], truncated[v.name] = stop[ARRIVAL], truncated[ARRIVAL]
        fail[v.name] = threshold_policy(s.badness, limit, v.failures, v.no_data_fails)[0]
        passed[v.name] = np.full(n, -1, dtype=np.int64)
    tuning = threshold_policy(s.badness, TUNING_GRID["accuracy"], TUNED.failures, TUNED.no_data_fails)
    return CohortRun(scenario, bad, canary_labels, fail, passed, stop, truncated, tuning)


Job = tuple[int, CohortScenario, bool, float, int, CohortConfig, np.random.SeedSequence]


def _job(job: Job) -> CohortRun:
    _, scenario, bad, volume, n, cfg, seed = job
    return run_one(np.random.default_rng(seed), scenario, bad, volume, n, cfg)


def run_cohort_benchmark(
    n: int,
    seed: int,
    *,
    scenarios: Sequence[CohortScenario] | None = None,
    volumes: Sequence[float] = (100.0, 1000.0),
    cfg: CohortConfig | None = None,
    workers: int = 1,
    chunk: int = 100,
    progress: Callable[[str], None] | None = None,
) -> list[CohortRun]:
    """``n`` rollouts per scenario × (A/A, bad) × volume; deterministic in ``seed`` whatever
    ``workers`` (its own seed stream: the other scenarios' numbers do not move)."""
    scenarios = tuple(scenarios or cohort_scenarios())
    cfg = cfg or CohortConfig()
    cases = [(s, bad, v) for s in scenarios for v in volumes for bad in (False, True)]
    root = np.random.SeedSequence([seed, 6])
    jobs: list[Job] = []
    for k, ((scenario, bad, volume), seq) in enumerate(zip(cases, root.spawn(len(cases)), strict=True)):
        sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
        for size, child in zip(sizes, seq.spawn(len(sizes)), strict=True):
            jobs.append((k, scenario, bad, volume, size, cfg, child))
    parts: list[list[CohortRun]] = [[] for _ in cases]

    def report(i: int, job: Job) -> None:
        if progress is not None:
            progress(f"[{i}/{len(jobs)}] label timing: {job[1].name}, "
                     f"{'−2 points' if job[2] else 'A/A'}, {job[3]:g} labels/interval")

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for i, (job, part) in enumerate(zip(jobs, pool.imap(_job, jobs), strict=True)):
                parts[job[0]].append(part)
                report(i + 1, job)
    else:
        for i, job in enumerate(jobs):
            parts[job[0]].append(_job(job))
            report(i + 1, job)
    out = []
    for runs in parts:
        merged = runs[0]
        for more in runs[1:]:
            merged = merged.concat(more)
        out.append(merged)
    return out


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class CohortRow:
    scenario: str
    canary_labels: float
    policy: str
    rollouts: int
    false_rollback: float
    """A/A: rolled back (FAIL) by the documented n."""
    bad_promoted: float | None
    """Canary ``drop`` worse: PASS before any FAIL by the documented n (thresholds: no
    rollback by then, so the step completes)."""
    detected: float
    """Canary ``drop`` worse: FAIL by the documented n."""
    median_minutes: float | None
    """Median minutes from the step's start to the FAIL, over the detected."""
    truncated: int = 0
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def summarise_cohorts(runs: Sequence[CohortRun], cfg: CohortConfig | None = None) -> list[CohortRow]:
    """One row per scenario × volume × policy, A/A and bad streams side by side. The tuned
    threshold's limit is chosen on the A/A streams it is scored on (in-sample), strictest
    with false rollbacks ≤ α."""
    cfg = cfg or CohortConfig()
    pairs: dict[tuple[str, float], dict[bool, CohortRun]] = {}
    for run in runs:
        pairs.setdefault((run.scenario.name, run.canary_labels), {})[run.bad] = run
    rows = []
    for (name, volume), pair in pairs.items():
        aa, bad = pair[False], pair[True]
        for policy in aa.fail:
            rows.append(_row(name, volume, policy, aa.fail[policy], aa.stop[policy],
                             bad.fail[policy], bad.passed[policy], bad.stop[policy],
                             policy.startswith("threshold"), cfg,
                             aa.truncated[policy] + bad.truncated[policy]))
        rates = ((aa.tuning >= 0) & (aa.tuning <= aa.stop[ARRIVAL][None, :])).mean(axis=1)
        ok = np.nonzero(rates <= ACCURACY_ALPHA)[0]
        g = int(ok[0]) if len(ok) else len(rates) - 1
        limit = float(TUNING_GRID["accuracy"][g])
        row = _row(name, volume, TUNED.name, aa.tuning[g], aa.stop[ARRIVAL], bad.tuning[g],
                   np.full_like(bad.tuning[g], -1), bad.stop[ARRIVAL], True, cfg,
                   aa.truncated[ARRIVAL] + bad.truncated[ARRIVAL])
        rows.append(replace(row, note=f"limit {limit:g}", extra={"limit": limit}))
    return rows


def _row(
    name: str, volume: float, policy: str, aa_fail: IntArray, aa_stop: IntArray,
    fail: IntArray, passed: IntArray, stop: IntArray, threshold: bool, cfg: CohortConfig,
    truncated: int,
) -> CohortRow:
    false_rollback = float(((aa_fail >= 0) & (aa_fail <= aa_stop)).mean())
    detected = (fail >= 0) & (fail <= stop)
    if threshold:
        promoted = float((~detected).mean())
    else:
        promoted = float(((passed >= 0) & (passed <= stop) & ((fail < 0) | (passed < fail))).mean())
    minutes = (
        float(np.median((fail[detected] + 1) * cfg.interval_s / 60.0)) if detected.any() else None
    )
    return CohortRow(name, volume, policy, len(fail), false_rollback, promoted,
                     float(detected.mean()), minutes, truncated)
