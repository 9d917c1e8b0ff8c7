#!/usr/bin/env python3
"""`make bench-stats`: Kanaria's judges against a per-interval threshold policy, same streams.

Prints two markdown tables — the main scenarios, then the label-timing ones (cohorts of
predictions against arrival windows) — and writes docs/img/bench-stats.png. Seeded: the same
seed gives the same numbers whatever the number of workers.

    PYTHONPATH=operator python3 hack/bench_stats.py            # 2,000 rollouts per scenario
    PYTHONPATH=operator python3 hack/bench_stats.py --quick    # 300, for a smoke run
    PYTHONPATH=operator python3 hack/bench_stats.py --suite label-timing --seed 7
    PYTHONPATH=operator python3 hack/bench_stats.py --suite llm   # LLM latency kinds in vLLM's buckets
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kanaria.bench.cohorts import CohortRow, run_cohort_benchmark, summarise_cohorts  # noqa: E402
from kanaria.bench.llm import run_llm_benchmark  # noqa: E402
from kanaria.bench.stats import (  # noqa: E402
    ALPHA,
    TUNED,
    MetricRun,
    Row,
    StreamConfig,
    run_benchmark,
    summarise,
)

ROOT = Path(__file__).resolve().parent.parent


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown(rows: Sequence[Row]) -> str:
    head = (
        "| scenario | metric | horizon | policy | rollback rate | Kanaria passed first | "
        "median canary samples to rollback | median minutes to rollback |\n"
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in rows:
        policy = r.policy + (f" ({r.note})" if r.note else "")
        first = "" if r.passed_first is None else f"{r.passed_first:.3f}"
        lines.append(
            f"| {r.scenario} | {r.metric} | {r.horizon} | {policy} | {r.rollback_rate:.3f} | "
            f"{first} | {_fmt(r.median_samples)} | {_fmt(r.median_minutes, 1)} |"
        )
    return head + "\n".join(lines) + "\n"


def cohort_markdown(rows: Sequence[CohortRow]) -> str:
    head = (
        "| scenario | canary labels / interval | policy | A/A false rollback | "
        "−2 points: promoted | −2 points: detected by the documented n | "
        "median minutes to detection |\n"
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in rows:
        policy = r.policy + (f" ({r.note})" if r.note else "")
        truncated = f" ({r.truncated} short of the documented n)" if r.truncated else ""
        lines.append(
            f"| {r.scenario} | {r.canary_labels:,.0f} | {policy} | {r.false_rollback:.3f} | "
            f"{_fmt(r.bad_promoted, 3)} | {r.detected:.3f}{truncated} | {_fmt(r.median_minutes, 1)} |"
        )
    return head + "\n".join(lines) + "\n"


def _detection_curve(
    run: MetricRun, aa: MetricRun, factors: np.ndarray, cfg: StreamConfig
) -> dict[str, list[float]]:
    rows_by_factor = [
        summarise([aa, run], cfg, accuracy_horizons_shown=[("fixed-horizon", float(f))]) for f in factors
    ]
    curves: dict[str, list[float]] = {}
    for rows in rows_by_factor:
        for r in rows:
            key = f"{r.policy} ({'A/A' if r.scenario == 'A/A' else 'drop'})"
            curves.setdefault(key, []).append(r.rollback_rate)
    return curves


def plot(runs: Sequence[MetricRun], rows: Sequence[Row], cfg: StreamConfig, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2))
    acc = {r.scenario.bad: r for r in runs if r.scenario.metric == "accuracy"}
    if True in acc and False in acc:
        ratio = float(np.median(acc[True].horizons["documented"] / acc[True].horizons["fixed-horizon"]))
        factors = np.round(np.linspace(0.25, ratio, 12), 3)
        curves = _detection_curve(acc[True], acc[False], factors, cfg)
        styles = {
            "Kanaria": ("tab:blue", 2.5),
            "threshold N=1, no data = fail": ("tab:red", 1.2),
            "threshold N=5, no data skipped": ("tab:orange", 1.2),
            TUNED.name: ("tab:green", 1.8),
        }
        for key, values in curves.items():
            policy, kind = key.rsplit(" (", 1)
            color, width = styles.get(policy, ("grey", 1.0))
            dashed = kind.startswith("A/A")
            left.plot(
                factors, values, color=color, lw=width, ls="--" if dashed else "-",
                label=f"{policy}: {'false rollback, A/A' if dashed else 'detection, −2 points'}",
            )
        left.axhline(ALPHA["accuracy"], color="black", lw=0.8, ls=":", label="α = 0.05")
        left.axhline(0.8, color="grey", lw=0.8, ls=":", label="power 0.8")
        left.axvline(1.0, color="grey", lw=0.6)
        left.set_xlabel("canary labels, × the fixed-horizon sample size (the documented size is the right end)")
        left.set_ylabel("share of rollouts rolled back")
        left.set_title("Accuracy: detection vs. evidence (−2 points) and A/A false rollbacks")
        left.set_ylim(-0.02, 1.02)
        left.legend(fontsize=7, loc="center right")
    # Right: rollback rates per scenario at the headline horizon.
    shown = [r for r in rows if r.metric == "latency" or r.horizon == "documented n"]
    scenarios = list(dict.fromkeys((r.metric, r.scenario) for r in shown))
    policies = list(dict.fromkeys(r.policy for r in shown))
    width = 0.8 / len(policies)
    colors = ["tab:blue", "tab:red", "tab:orange", "tab:green", "tab:purple"]
    for p, policy in enumerate(policies):
        values = []
        for metric, scenario in scenarios:
            match = [r for r in shown if r.policy == policy and r.metric == metric and r.scenario == scenario]
            values.append(match[0].rollback_rate if match else np.nan)
        xs = np.arange(len(scenarios)) + (p - (len(policies) - 1) / 2) * width
        right.bar(xs, values, width, label=policy, color=colors[p % len(colors)])
    right.set_xticks(np.arange(len(scenarios)))
    right.set_xticklabels([f"{s}\n({m})" if s == "A/A" else s for m, s in scenarios], fontsize=8)
    right.axhline(0.05, color="black", lw=0.8, ls=":")
    right.set_ylabel("rollback rate (A/A: false; otherwise: detection)")
    right.set_title("All scenarios (accuracy and errors at the documented n; latency over 30 min)")
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=None, help="rollouts per scenario")
    parser.add_argument("--quick", action="store_true", help="300 rollouts per scenario")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "bench-stats.png")
    parser.add_argument(
        "--suite", choices=("all", "main", "label-timing", "llm"), default="all",
        help="main: per-metric scenarios; label-timing: cohorts against arrival windows; "
        "llm (only when named): the LLM latency kinds in vLLM's buckets",
    )
    args = parser.parse_args(argv)
    n = args.rollouts or (300 if args.quick else 2000)
    cfg = StreamConfig()
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {message}", file=sys.stderr, flush=True)

    if args.suite in ("all", "main"):
        runs = run_benchmark(n, args.seed, cfg=cfg, workers=args.workers, progress=progress)
        rows = summarise(runs, cfg)
        plot(runs, rows, cfg, args.plot)
        print(markdown(rows))
    if args.suite in ("all", "label-timing"):
        cohort_runs = run_cohort_benchmark(n, args.seed, workers=args.workers, progress=progress)
        print(cohort_markdown(summarise_cohorts(cohort_runs)))
    if args.suite == "llm":  # not in "all": its numbers and time are quoted on their own
        _, llm_rows = run_llm_benchmark(n, args.seed, workers=args.workers, progress=progress)
        print(markdown(llm_rows))
    elapsed = time.monotonic() - started
    shown = f"; plot: {args.plot}" if args.suite in ("all", "main") else ""
    print(
        f"{n} rollouts per scenario, seed {args.seed}, {args.workers} worker(s), "
        f"suite {args.suite}, {elapsed:.0f} s{shown}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
