"""Accuracy and error-rate statistics against scipy, published numbers and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kanaria.analysis.proportions import (
    judge_accuracy,
    judge_error_rate,
    msprt_two_proportions,
    required_samples_per_arm,
    two_proportion_z,
)
from kanaria.analysis.sequential import (
    binomial_below_lr,
    binomial_mixture_lr,
    normal_mixture_lr,
    normal_mixture_radius,
)
from kanaria.api.verdict import Outcome

RANK = {Outcome.FAIL: 0, Outcome.INCONCLUSIVE: 1, Outcome.PASS: 2}


def test_two_proportion_z_matches_the_textbook_formula() -> None:
    x_b, n_b, x_c, n_c = 1413, 1500, 1380, 1500
    pooled = (x_b + x_c) / (n_b + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_c))
    z_ref = (x_c / n_c - x_b / n_b) / se
    z, p = two_proportion_z(x_b, n_b, x_c, n_c)
    assert z == pytest.approx(z_ref, rel=1e-12)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z_ref)), rel=1e-12)
    # Cross-check: the pooled z squared is Pearson's chi-square on the 2x2 table.
    table = np.array([[x_b, n_b - x_b], [x_c, n_c - x_c]])
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(chi2, rel=1e-9)
    assert p == pytest.approx(p_chi2, rel=1e-9)


def test_two_proportion_z_degenerate_and_invalid() -> None:
    assert two_proportion_z(10, 10, 20, 20) == (0.0, 1.0)
    with pytest.raises(ValueError):
        two_proportion_z(11, 10, 1, 10)
    with pytest.raises(ValueError):
        two_proportion_z(0, 0, 1, 10)


@pytest.mark.parametrize(
    ("p_baseline", "ratio", "canary", "baseline"),
    [
        (0.95, 1.0, 1743, 1743),
        (0.90, 1.0, 3026, 3026),
        (0.80, 1.0, 5128, 5128),
        (0.95, 9.0, 925, 8325),
        (0.90, 9.0, 1644, 14796),
    ],
)
def test_required_samples_reproduce_statistics_md(
    p_baseline: float, ratio: float, canary: int, baseline: int
) -> None:
    assert required_samples_per_arm(p_baseline, 0.02, 0.05, 0.8, ratio) == (canary, baseline)


def test_msprt_formula_and_confidence_sequence_agree() -> None:
    delta, v, tau, alpha = -0.03, 1.2e-4, 0.02, 0.05
    ref = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * delta**2 / (2 * v * (v + tau**2)))
    assert normal_mixture_lr(delta, v, tau) == pytest.approx(ref, rel=1e-12)
    r = normal_mixture_radius(v, tau, alpha)
    # On the boundary of the confidence sequence Λ equals 1/α exactly.
    assert normal_mixture_lr(r, v, tau) == pytest.approx(1 / alpha, rel=1e-9)
    assert normal_mixture_lr(0.999 * r, v, tau) < 1 / alpha < normal_mixture_lr(1.001 * r, v, tau)


def test_msprt_is_finite_on_all_correct_arms() -> None:
    lam = msprt_two_proportions(50, 50, 50, 50)
    assert math.isfinite(lam) and lam < 1
    assert math.isfinite(msprt_two_proportions(0, 10**7, 10**7, 10**7))


def test_msprt_type_one_error_under_repeated_looks() -> None:
    """Seeded simulation: looking after every 100 labels, H0 rejections stay below α."""
    rng = np.random.default_rng(7)
    runs, looks, batch, alpha = 400, 30, 100, 0.05
    rejected = 0
    for _ in range(runs):
        xb = np.cumsum(rng.binomial(batch, 0.9, looks))
        xc = np.cumsum(rng.binomial(batch, 0.9, looks))
        ns = batch * np.arange(1, looks + 1)
        if any(
            msprt_two_proportions(b, n, c, n) >= 1 / alpha
            for b, c, n in zip(xb, xc, ns, strict=True)
        ):
            rejected += 1
    assert rejected / runs < alpha


def test_binomial_mixture_matches_numerical_integration() -> None:
    from scipy import integrate

    x, n, p0 = 7, 300, 0.01
    a, b = 1 - p0, (1 - p0) ** 2 / p0
    prior = stats.beta(a, b)

    def integrand(p: float) -> float:
        return float(np.exp(x * np.log(p / p0) + (n - x) * np.log((1 - p) / (1 - p0))))

    num, _ = integrate.quad(lambda p: integrand(p) * prior.pdf(p), p0, 1, points=[x / n])
    expected = num / prior.sf(p0)
    assert binomial_mixture_lr(x, n, p0) == pytest.approx(expected, rel=1e-6)


def test_binomial_below_matches_numerical_integration() -> None:
    from scipy import integrate

    for x, n, p0 in [(0, 100, 0.05), (3, 200, 0.05), (10, 100, 0.05), (40, 80, 0.6)]:
        num, _ = integrate.quad(
            lambda p, x=x, n=n, p0=p0: (p / p0) ** x * ((1 - p) / (1 - p0)) ** (n - x) / p0, 0, p0
        )
        assert binomial_below_lr(x, n, p0) == pytest.approx(num, rel=1e-6)
    assert binomial_below_lr(0, 0, 0.3) == pytest.approx(1.0)


def test_binomial_below_is_valid_under_repeated_looks_at_the_bound() -> None:
    """A rate exactly at p0, looked at after every observation: P(ever Λ ≥ 20) ≤ 0.05."""
    rng = np.random.default_rng(5)
    runs, n, p0 = 400, 2000, 0.2
    hits = 0
    for _ in range(runs):
        x = np.cumsum(rng.random(n) < p0)
        if any(binomial_below_lr(int(x[k]), k + 1, p0) >= 20 for k in range(0, n, 10)):
            hits += 1
    assert hits / runs <= 0.05


def test_accuracy_verdicts_and_reason() -> None:
    worse = judge_accuracy(14125, 14900, 1505, 1650, min_samples=200)
    assert worse.outcome is Outcome.FAIL
    assert worse.score is not None and worse.score >= 20
    assert worse.threshold == 20
    assert worse.p_value == pytest.approx(1 / worse.score)
    assert (worse.samples, worse.baseline_samples) == (1650, 14900)
    assert worse.value == pytest.approx(1505 / 1650)
    assert "0.912 vs stable 0.948 over 1650/14900 labels: worse" in worse.reason
    fine = judge_accuracy(14125, 14900, 1570, 1650, min_samples=200)
    assert fine.outcome is Outcome.PASS
    assert fine.details["ci_lower"] > -0.02
    few = judge_accuracy(90, 100, 80, 100, min_samples=200)
    assert few.outcome is Outcome.INCONCLUSIVE and "need 200" in few.reason


@pytest.mark.parametrize("p_b", [0.98, 0.995])
@pytest.mark.parametrize("min_samples", [1, 50, 500])
@pytest.mark.parametrize("ratio", [9, 1])
def test_a_canary_two_points_worse_than_a_near_perfect_baseline_rarely_passes(
    p_b: float, min_samples: int, ratio: int
) -> None:
    """Part of the promise of non-inferiority: a canary exactly ``margin`` worse passes in at most
    α of rollouts, however near-perfect the baseline and however low minSamples, looking 60
    times (every 5 canary labels up to 150, then every 50 up to 1,650). With the plug-in
    variance (no floor at p_b − margin) this simulation passes 10–15% of rollouts."""
    rng = np.random.default_rng(int(p_b * 1000) * 100 + min_samples + ratio)
    looks = np.concatenate([np.arange(1, 31) * 5, 150 + np.arange(1, 31) * 50])
    steps = np.diff(np.concatenate([[0], looks]))
    runs, passed = 200, 0
    for _ in range(runs):
        xc = np.cumsum(rng.binomial(steps, p_b - 0.02))
        xb = np.cumsum(rng.binomial(steps * ratio, p_b))
        for k, n in enumerate(looks.tolist()):
            outcome = judge_accuracy(int(xb[k]), n * ratio, int(xc[k]), n, min_samples=min_samples,
                                     margin=0.02).outcome
            if outcome is not Outcome.INCONCLUSIVE:
                passed += outcome is Outcome.PASS
                break
    assert passed / runs <= 0.05


@pytest.mark.parametrize(
    "counts",
    [
        (0, 0, 0, 0),
        (math.nan, 100, 90, 100),
        (90, math.inf, 90, 100),
        (-1, 100, 90, 100),
        (90, 100, 101, 100),
        (None, 100, 90, 100),
    ],
)
def test_accuracy_bad_input_is_inconclusive(counts: tuple[float, float, float, float]) -> None:
    verdict = judge_accuracy(*counts, min_samples=0)  # type: ignore[arg-type]
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reason


arm = st.tuples(st.integers(0, 5000), st.integers(1, 5000)).map(
    lambda t: (min(t), max(t))  # correct ≤ labelled
)


@settings(max_examples=60, deadline=None)
@given(arm, arm)
def test_accuracy_symmetry(b: tuple[int, int], c: tuple[int, int]) -> None:
    z1, p1 = two_proportion_z(b[0], b[1], c[0], c[1])
    z2, p2 = two_proportion_z(c[0], c[1], b[0], b[1])
    assert z1 == pytest.approx(-z2, abs=1e-9)
    assert p1 == pytest.approx(p2, abs=1e-12)
    assert msprt_two_proportions(*b, *c) == pytest.approx(msprt_two_proportions(*c, *b))
    v1 = judge_accuracy(*b, *c, min_samples=1)
    v2 = judge_accuracy(*c, *b, min_samples=1)
    assert v1.details["delta"] == pytest.approx(-v2.details["delta"], abs=1e-12)
    if v1.failed:  # canary significantly worse ⇒ swapped, the other arm is significantly better:
        # it passes unless the pass side's variance (taken at p_b − margin) is the larger one
        assert not v2.failed
        assert v2.passed or v2.details["pass_variance"] > v2.details["variance"]


@settings(max_examples=60, deadline=None)
@given(arm)
def test_accuracy_a_a_never_fails(b: tuple[int, int]) -> None:
    assert not judge_accuracy(*b, *b, min_samples=0).failed


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 20000),
    st.integers(0, 300),
    st.integers(0, 20000),
    st.integers(0, 300),
    st.integers(0, 50),
    st.sampled_from([None, 0.01, 0.05]),
)
def test_error_rate_monotone_in_canary_errors(
    req_b: int, err_b: int, req_c: int, err_c: int, more: int, guard: float | None
) -> None:
    err_b, err_c = min(err_b, req_b), min(err_c, req_c)
    more = min(more, req_c - err_c)
    v1 = judge_error_rate(err_b, req_b, err_c, req_c, max_error_rate=guard, min_requests=500)
    v2 = judge_error_rate(err_b, req_b, err_c + more, req_c, max_error_rate=guard, min_requests=500)
    assert RANK[v2.outcome] <= RANK[v1.outcome]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20000), st.integers(0, 2000))
def test_error_rate_a_a_never_fails_without_guardrail(requests: int, errors: int) -> None:
    errors = min(errors, requests)
    v = judge_error_rate(errors, requests, errors, requests, max_error_rate=None)
    assert not v.failed
    v = judge_error_rate(errors, requests, errors, requests, relative_tolerance=0.0)
    if v.failed:  # only the absolute guardrail may fail an A/A pair
        assert "guardrail" in v.reason and errors / requests > 0.01


def test_error_rate_verdicts() -> None:
    ok = judge_error_rate(100, 90000, 12, 10000)
    assert ok.outcome is Outcome.PASS and ok.value == pytest.approx(0.0012)
    assert (ok.samples, ok.baseline_samples) == (10000, 90000)
    assert ok.threshold == 20 and ok.p_value is not None
    worse = judge_error_rate(100, 90000, 45, 10000)
    assert worse.outcome is Outcome.FAIL and "stable rate" in worse.reason
    outright = judge_error_rate(10, 9000, 8, 60)  # 13% errors on 60 requests, guardrail 1%
    assert outright.outcome is Outcome.FAIL and "guardrail" in outright.reason
    early = judge_error_rate(10, 9000, 0, 60)
    assert early.outcome is Outcome.INCONCLUSIVE and "1000" in early.reason
    for bad in [(math.nan, 10, 1, 10), (1, 10, -1, 10), (1, 10, 11, 10), (0, 0, 0, 0)]:
        assert judge_error_rate(*bad).outcome is Outcome.INCONCLUSIVE


def test_error_rate_passes_only_on_evidence_of_non_inferiority() -> None:
    # No errors anywhere: the ratio cannot be measured; the canary passes once it is
    # significantly below the 1% guardrail (about 450 requests), not before.
    assert judge_error_rate(0, 9000, 0, 300, min_requests=100).outcome is Outcome.INCONCLUSIVE
    clean = judge_error_rate(0, 9000, 0, 600, min_requests=100)
    assert clean.outcome is Outcome.PASS and "guardrail" in clean.reason
    # A doubling right at the guardrail is never passed: neither below the guardrail nor
    # within 1.5x the stable rate, and with enough errors it fails as worse than the stable.
    doubled = judge_error_rate(25, 5000, 50, 5000)
    assert doubled.outcome is not Outcome.PASS
    assert judge_error_rate(100, 20000, 200, 20000).outcome is Outcome.FAIL
    # Equal rates with plenty of errors: non-inferior within 1.5x.
    same = judge_error_rate(400, 40000, 400, 40000, max_error_rate=0.05)
    assert same.outcome is Outcome.PASS and "1.5× the stable rate" in same.reason
    # A real but small increase fails once it is significant, like accuracy.
    assert judge_error_rate(1000, 100000, 1200, 100000, max_error_rate=None).outcome is Outcome.FAIL


def test_error_rate_tests_stay_valid_under_repeated_looks() -> None:
    """Seeded simulation, a look every 500 canary requests: false FAIL rate below α.

    The canary errs exactly at the guardrail (1%) and at the baseline's rate, with
    relative_tolerance 0 — the hardest case for both always-valid tests.
    """
    rng = np.random.default_rng(3)
    runs, looks, alpha = 300, 30, 0.05
    failed = 0
    for _ in range(runs):
        err_c = np.cumsum(rng.binomial(500, 0.01, looks))
        err_b = np.cumsum(rng.binomial(4500, 0.01, looks))
        for k in range(looks):
            verdict = judge_error_rate(
                int(err_b[k]),
                4500 * (k + 1),
                int(err_c[k]),
                500 * (k + 1),
                relative_tolerance=0.0,
                alpha=alpha,
            )
            if verdict.failed:
                failed += 1
                break
    assert failed / runs < alpha


def _table_after(doc: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after a line starting with ``heading``."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and the separator


def _n(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_user_guide_sample_size_tables_match_the_functions() -> None:
    """The sizes the user guide documents are the ones the code computes."""
    from pathlib import Path

    from kanaria.analysis.proportions import error_rate_required_requests, msprt_required_samples

    doc = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    accuracy = _table_after(doc, "Accuracy, a 2-point drop")
    assert len(accuracy) == 3
    for p, at50, at10, single in accuracy:
        base = float(p)
        assert _n(at50) == msprt_required_samples(base, 0.02)
        assert _n(at10) == msprt_required_samples(base, 0.02, ratio=9.0)
        assert _n(single) == required_samples_per_arm(base, 0.02)[0]
    errors = _table_after(doc, "Error rate, an increase by a factor")
    assert len(errors) == 3
    for rate, x15, x2, x3, x2at10 in errors:
        base = float(rate.rstrip("%")) / 100
        assert _n(x15) == error_rate_required_requests(base, 1.5)
        assert _n(x2) == error_rate_required_requests(base, 2.0)
        assert x3 == "—" or _n(x3) == error_rate_required_requests(base, 3.0)
        assert _n(x2at10) == error_rate_required_requests(base, 2.0, share=0.1)
