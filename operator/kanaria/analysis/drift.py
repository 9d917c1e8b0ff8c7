"""Drift between two binned distributions (features or prediction scores).

``p`` / ``*_b`` is the reference (baseline or training profile), ``q`` / ``*_c`` the canary.
Counts are per bin (use :func:`bins_from_cumulative` on Prometheus ``le`` buckets first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy import stats

from kanaria.analysis.sequential import sequence_problem
from kanaria.api.verdict import Outcome, Verdict

__all__ = [
    "bins_from_cumulative",
    "chi2_mixture_lr",
    "drift_radius",
    "material_effect",
    "chi2_homogeneity",
    "effective_samples",
    "judge_dataset_drift",
    "judge_feature_drift",
    "js_distance",
    "ks_binned",
    "psi",
    "psi_noise_floor",
]


def bins_from_cumulative(cumulative: Sequence[float]) -> list[int]:
    """Per-bin counts from cumulative bucket counts.

    Cumulative counts are rounded to integers first (``increase()`` extrapolates to fractions),
    then differenced against the running maximum, so a dip — counter resets, extrapolation
    noise — gives 0 for that bin and the total stays round(max cumulative).
    """
    bins: list[int] = []
    previous = 0
    for value in cumulative:
        current = round(value)
        bins.append(max(0, current - previous))
        previous = max(previous, current)
    return bins


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("empty distribution")
    return [c / total for c in counts]


def _same_length(p: Sequence[float], q: Sequence[float]) -> None:
    if len(p) != len(q) or len(p) == 0:
        raise ValueError("both distributions need the same, non-zero number of bins")


def psi(p_counts: Sequence[float], q_counts: Sequence[float], eps: float = 1e-4) -> float:
    """Population stability index Σ (q−p)·ln(q/p) over bin shares, each share floored at eps."""
    _same_length(p_counts, q_counts)
    total = 0.0
    for p, q in zip(_shares(p_counts), _shares(q_counts), strict=True):
        p, q = max(p, eps), max(q, eps)
        total += (q - p) * math.log(q / p)
    return total


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance with base-2 logarithms: sqrt(JSD), in [0, 1].

    Equals ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; inputs are normalised.
    """
    _same_length(p, q)
    divergence = 0.0
    for pi, qi in zip(_shares(p), _shares(q), strict=True):
        mi = (pi + qi) / 2.0
        if pi > 0:
            divergence += 0.5 * pi * math.log2(pi / mi)
        if qi > 0:
            divergence += 0.5 * qi * math.log2(qi / mi)
    return math.sqrt(min(1.0, max(0.0, divergence)))


def ks_binned(p: Sequence[float], q: Sequence[float]) -> float:
    """Binned Kolmogorov-Smirnov distance max_k |F_q(k) − F_p(k)| over bin edges."""
    _same_length(p, q)
    f_p = f_q = best = 0.0
    for pi, qi in zip(_shares(p), _shares(q), strict=True):
        f_p += pi
        f_q += qi
        best = max(best, abs(f_q - f_p))
    return best


def chi2_homogeneity(
    p_counts: Sequence[float], q_counts: Sequence[float]
) -> tuple[float, int, float]:
    """Pearson chi-square test of homogeneity on the 2×k table: (stat, dof, p).

    Bins empty in both arms are dropped; dof = k' − 1. No Yates correction (equals
    ``scipy.stats.chi2_contingency(table, correction=False)``). Fewer than two bins or an
    empty arm gives (0.0, 0, 1.0).
    """
    _same_length(p_counts, q_counts)
    pairs = [(float(a), float(b)) for a, b in zip(p_counts, q_counts, strict=True) if a + b > 0]
    n_p, n_q = sum(a for a, _ in pairs), sum(b for _, b in pairs)
    if len(pairs) < 2 or n_p == 0 or n_q == 0:
        return 0.0, 0, 1.0
    total = n_p + n_q
    stat = 0.0
    for a, b in pairs:
        column = a + b
        e_a, e_b = column * n_p / total, column * n_q / total
        stat += (a - e_a) ** 2 / e_a + (b - e_b) ** 2 / e_b
    dof = len(pairs) - 1
    return stat, dof, float(stats.chi2.sf(stat, dof))


def effective_samples(n_b: float, n_c: float) -> float:
    """n_eff = n_b·n_c/(n_b + n_c): half the harmonic mean (n/2 for n per side)."""
    return n_b * n_c / (n_b + n_c) if n_b + n_c > 0 else 0.0


def psi_noise_floor(n_eff: float, bins: int, quantile: float = 0.95) -> float:
    """PSI that pure sampling noise stays below with probability ``quantile``.

    PSI ≈ Σ(q−p)²/p and (1/n_b + 1/n_c)·Σ(q−p)²/p ≈ χ²(bins−1), so the floor is
    χ²_{quantile}(bins−1)/n_eff with n_eff from :func:`effective_samples`. With 10 bins:
    0.338 at 100 per side (simulation gives ≈0.37: with ~10 per bin PSI's tail is heavier than
    χ²), 0.0338 at 1,000 and 0.00338 at 10,000.
    """
    if n_eff <= 0 or bins < 2:
        return math.inf
    return float(stats.chi2.ppf(quantile, bins - 1)) / n_eff


def material_effect(js_threshold: float, psi_threshold: float) -> float:
    """The smallest drift that matters, as w² = Σ(q−p)²/p (the chi-square divergence that
    χ²/n_eff estimates): for small differences JS distance² (base 2) ≈ w²/(8·ln 2) and PSI ≈ w²,
    so "JS > js_threshold or PSI > psi_threshold" begins at w² = min(8·ln2·js², psi). JS 0.1 and
    PSI 0.25 give w² = 0.0555."""
    return min(8.0 * math.log(2.0) * js_threshold**2, psi_threshold)


def chi2_mixture_lr(chi2: float, dof: int, n_eff: float, effect: float) -> float:
    """Always-valid evidence of any drift from the chi-square statistic: the Gaussian mixture
    likelihood ratio for the d = ``dof`` whitened bin differences, mixing the drift over
    N(0, τ²·I) with τ² = effect/d (tuned to drifts of size ``effect`` = w²):

        Λ = (1 + n τ²)^(−d/2) · exp(χ²/2 · n τ²/(1 + n τ²)),  n = n_eff.

    Under no drift it is (asymptotically) a martingale: P(sup Λ ≥ 1/α) ≤ α (Ville), so it may be
    computed after every interval. Capped at e^690."""
    if dof <= 0 or n_eff <= 0 or effect <= 0:
        return 0.0
    nt = n_eff * effect / dof
    log_lr = -0.5 * dof * math.log1p(nt) + 0.5 * chi2 * nt / (1.0 + nt)
    return math.exp(min(log_lr, 690.0))


def drift_radius(dof: int, n_eff: float, effect: float, alpha: float) -> float:
    """Radius ρ of the always-valid confidence ball around the observed drift ŵ = sqrt(χ²/n_eff)
    that goes with :func:`chi2_mixture_lr`: the true w lies within ŵ ± ρ at every look with
    probability 1 − α, where

        ρ² = 2(1 + n τ²)/(n² τ²) · [ln(1/α) + (d/2)·ln(1 + n τ²)].

    A PASS needs ŵ + ρ below the material effect's sqrt: evidence that any drift is small."""
    if dof <= 0 or n_eff <= 0 or effect <= 0:
        return math.inf
    t2 = effect / dof
    nt = n_eff * t2
    bracket = math.log(1.0 / alpha) + 0.5 * dof * math.log1p(nt)
    return math.sqrt(2.0 * (1.0 + nt) / (n_eff * nt) * bracket)


def judge_feature_drift(
    baseline_counts: Sequence[float],
    canary_counts: Sequence[float],
    *,
    alpha: float = 0.05,
    n_tests: int = 1,
    js_threshold: float = 0.1,
    psi_threshold: float = 0.25,
    min_samples: int = 1000,
    name: str = "feature",
) -> Verdict:
    """Has the canary's distribution of one feature moved away from the baseline's? Always-valid
    both ways, so it may be asked after every interval.

    * FAIL (drifted) when the distance passes a threshold (JS distance base 2 > js_threshold
      or PSI > psi_threshold) AND the drift is significant: :func:`chi2_mixture_lr` ≥
      n_tests/α (Bonferroni over features), with n_eff ≥ min_samples.
    * PASS only on evidence that any drift is immaterial: n_eff ≥ min_samples and the upper end
      of the always-valid ball, ŵ + :func:`drift_radius`, below the material effect
      (:func:`material_effect`). Few samples and no significant drift is not a pass.
    * INCONCLUSIVE otherwise, or on bad counts.

    ``value`` is the PSI and ``baseline`` the PSI noise floor at this n_eff (what PSI looks like
    without drift); ``score`` is the JS distance against ``threshold`` js_threshold;
    ``p_value`` min(1, n_tests/Λ). Between arms under random routing a drift means routing is
    broken rather than that the model drifted: the caller says which.
    """
    problem = sequence_problem("baseline", baseline_counts) or sequence_problem(
        "canary", canary_counts
    )
    if problem is None and (
        len(baseline_counts) != len(canary_counts) or len(baseline_counts) == 0
    ):
        problem = "the two histograms have different bucket layouts"
    if problem is None and not 0 < alpha < 1:
        problem = f"alpha must lie in (0, 1) (got {alpha})"
    if problem is not None:
        return Verdict.inconclusive(f"{name} drift: {problem}", statistic="js+chi2")
    n_b, n_c = float(sum(baseline_counts)), float(sum(canary_counts))
    n_eff = effective_samples(n_b, n_c)
    if n_eff < min_samples or n_b == 0 or n_c == 0:
        return Verdict(
            Outcome.INCONCLUSIVE,
            f"{name} drift: n_eff {n_eff:.0f} ({int(n_c)}/{int(n_b)} canary/stable), "
            f"need {min_samples}",
            statistic="js+chi2",
            threshold=js_threshold,
            samples=int(n_c),
            baseline_samples=int(n_b),
            details={"n_eff": n_eff},
        )
    tests = max(1, n_tests)
    index = psi(baseline_counts, canary_counts)
    js = js_distance(baseline_counts, canary_counts)
    ks = ks_binned(baseline_counts, canary_counts)
    stat, dof, p_raw = chi2_homogeneity(baseline_counts, canary_counts)
    effect = material_effect(js_threshold, psi_threshold)
    lam = chi2_mixture_lr(stat, dof, n_eff, effect)
    observed = math.sqrt(max(stat, 0.0) / n_eff)
    upper = observed + drift_radius(dof, n_eff, effect, alpha / tests)
    floor = psi_noise_floor(n_eff, len(baseline_counts))
    far = js > js_threshold or index > psi_threshold
    significant = lam >= tests / alpha
    drifted = far and significant
    small = dof > 0 and upper**2 < effect
    summary = (
        f"{name}: JS {js:.3f} (>{js_threshold:g}?), PSI {index:.3f} (noise floor {floor:.3g}), "
        f"KS {ks:.3f}, chi2 {stat:.1f} on {dof} dof, Λ {lam:.3g} (need {tests / alpha:.3g}), "
        f"drift w ≤ {upper:.3f} (material {math.sqrt(effect):.3f}), n_eff {n_eff:.0f}"
    )
    if drifted:
        outcome, why = Outcome.FAIL, "drifted"
    elif small:
        outcome = Outcome.PASS
        why = "significant but too small to matter" if significant else "no material drift"
    elif far:
        outcome, why = Outcome.INCONCLUSIVE, "distance above threshold but not yet significant"
    elif dof == 0:
        outcome, why = Outcome.INCONCLUSIVE, "all samples in one bin: cannot tell"
    else:
        outcome, why = Outcome.INCONCLUSIVE, "not yet shown to be small"
    return Verdict(
        outcome,
        f"{summary}: {why}",
        value=index,
        baseline=floor,
        score=js,
        p_value=min(1.0, tests / lam) if lam > 0 else 1.0,
        details={
            "psi": index,
            "psi_floor": floor,
            "js": js,
            "ks": ks,
            "chi2": stat,
            "dof": float(dof),
            "p_raw": p_raw,
            "n_eff": n_eff,
            "lr": lam,
            "w": observed,
            "w_upper": upper,
            "w_material": math.sqrt(effect),
            "drifted": 1.0 if drifted else 0.0,
        },
        statistic="js+chi2",
        threshold=js_threshold,
        samples=int(n_c),
        baseline_samples=int(n_b),
    )


def judge_dataset_drift(
    per_feature: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    share_threshold: float = 0.5,
    alpha: float = 0.05,
    js_threshold: float = 0.1,
    psi_threshold: float = 0.25,
    min_samples: int = 1000,
) -> Verdict:
    """Dataset drift: the share of drifted features, Bonferroni over all features.

    FAIL when drifted/total ≥ share_threshold; PASS when at least one feature was judged and
    even counting every inconclusive feature as drifted the share stays below the threshold;
    INCONCLUSIVE otherwise. ``details`` has ``<feature>.js``, ``.psi``, ``.p`` and ``.drifted``
    (1 drifted, 0 not, -1 inconclusive).
    """
    if not per_feature:
        return Verdict.inconclusive("dataset drift: no features", statistic="drift-share")
    verdicts = {
        name: judge_feature_drift(
            b,
            c,
            alpha=alpha,
            n_tests=len(per_feature),
            js_threshold=js_threshold,
            psi_threshold=psi_threshold,
            min_samples=min_samples,
            name=name,
        )
        for name, (b, c) in per_feature.items()
    }
    details: dict[str, float] = {}
    for name, verdict in verdicts.items():
        mark = {Outcome.FAIL: 1.0, Outcome.PASS: 0.0}.get(verdict.outcome, -1.0)
        details[f"{name}.drifted"] = mark
        for key, value in (("js", verdict.score), ("psi", verdict.value), ("p", verdict.p_value)):
            if value is not None and math.isfinite(value):
                details[f"{name}.{key}"] = value
    total = len(verdicts)
    drifted = sorted(n for n, v in verdicts.items() if v.failed)
    unknown = sum(1 for v in verdicts.values() if v.outcome is Outcome.INCONCLUSIVE)
    share = len(drifted) / total
    names = ", ".join(drifted) or "none"
    head = f"{len(drifted)}/{total} features drifted ({names}; {unknown} without enough data)"
    if share >= share_threshold:
        outcome, why = Outcome.FAIL, f"share {share:.2f} ≥ {share_threshold:g}"
    elif unknown < total and (len(drifted) + unknown) / total < share_threshold:
        outcome, why = Outcome.PASS, f"share {share:.2f} < {share_threshold:g}"
    else:
        outcome, why = Outcome.INCONCLUSIVE, "not enough data to tell"
    return Verdict(
        outcome,
        f"dataset drift: {head}: {why}",
        statistic="drift-share",
        value=share,
        baseline=0.0,
        score=share,
        threshold=share_threshold,
        samples=min(v.samples for v in verdicts.values()),
        baseline_samples=min(v.baseline_samples for v in verdicts.values()),
        details=details,
    )
