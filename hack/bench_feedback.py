#!/usr/bin/env python3
"""`make bench-feedback`: the feedback judge (thumbs up/down) against the per-interval threshold
policies of `make bench-stats`, on the same seeded streams (kanaria.bench.feedback).

    PYTHONPATH=operator python3 hack/bench_feedback.py               # 2,000 rollouts per scenario
    PYTHONPATH=operator python3 hack/bench_feedback.py --quick       # 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from kanaria.bench.feedback import (
    FeedbackConfig,
    FeedbackRow,
    run_feedback_benchmark,
    summarise_feedback,
)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown(rows: Sequence[FeedbackRow]) -> str:
    head = (
        "| scenario | metric | horizon | policy | rollback rate | Kanaria passed first | "
        "median canary rated answers to rollback | median minutes to rollback |\n"
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in rows:
        policy = r.policy + (f" ({r.note})" if r.note else "")
        first = "" if r.passed_first is None else f"{r.passed_first:.3f}"
        lines.append(
            f"| {r.scenario} | feedback | documented n | {policy} | {r.rollback_rate:.3f} | {first} | "
            f"{_fmt(r.median_rated)} | {_fmt(r.median_minutes, 1)} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=None, help="rollouts per scenario")
    parser.add_argument("--quick", action="store_true", help="300 rollouts per scenario")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    n = args.rollouts or (300 if args.quick else 2000)
    cfg = FeedbackConfig()
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {message}", file=sys.stderr, flush=True)

    runs = run_feedback_benchmark(n, args.seed, cfg=cfg, workers=args.workers, progress=progress)
    print(markdown(summarise_feedback(runs, cfg)))
    truncated = {r.scenario: r.truncated for r in runs if r.truncated}
    if truncated:
        print(f"short of the documented n at {cfg.max_intervals} intervals: {truncated}")
    print(f"{n} rollouts per scenario, seed {args.seed}, {args.workers} worker(s), {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
