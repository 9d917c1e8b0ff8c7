#!/usr/bin/env python3
"""`make bench-monitor`: the serving-revision detectors without change (false alarms per
budget) and after a change (time to the alarm), on simulated streams. Seeded.

    PYTHONPATH=operator python3 hack/bench_monitoring.py                 # 40 runs, 30 days
    PYTHONPATH=operator python3 hack/bench_monitoring.py --runs 8 --days 5 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time

from kanaria.bench.monitoring import run_monitoring_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs per setting")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days without change per run")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--baseline-labels", type=int, default=5000, help="early-life labels behind the baseline")
    parser.add_argument("--plain-baseline", action="store_true",
                        help="compare with the early-life estimate itself (no one-standard-error margin)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = run_monitoring_benchmark(args.runs, args.seed, args.days, args.baseline_labels, args.plain_baseline)
    print("| detector | traffic | runs | false alarms per budget (budget 1 day) | detected within the horizon "
          "| median minutes to the alarm (budget 30 days) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r.detector} | {r.setting} | {r.runs} | {r.false_alarms_per_budget:.2f} | "
              f"{r.detected_share:.2f} | {r.median_minutes_to_detect:.0f} |")
    plain = ", plain baseline" if args.plain_baseline else ""
    print(f"\nseed {args.seed}, {args.runs} runs, {args.days:g} days, baseline from {args.baseline_labels} labels"
          f"{plain}, {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
