#!/usr/bin/env python3
"""`make bench-scale`: what N ModelDeployments cost the operator on the test bed — time to
Stable, CPU, RSS, API and Prometheus requests at rest and while all of them roll out, the time
from a change to the first canary weight (operator's share and the cluster's), and how often
each object is measured against its interval. Each N runs on a test bed of its own.

    PYTHONPATH=operator python3 hack/bench_scale.py                     # N = 100, 1000
    PYTHONPATH=operator python3 hack/bench_scale.py --n 100,1000,3000 --plot docs/img/scale.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kanaria.sandbox.scale import ScaleResult, run_scale
from kanaria.sandbox.scale_report import load, plot, save, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100,1000", help="comma-separated numbers of ModelDeployments")
    parser.add_argument("--seed", type=int, default=20241202, help="the order in which objects change")
    parser.add_argument("--interval", type=float, default=10.0, help="analysis interval (s)")
    parser.add_argument("--idle", type=float, default=60.0, help="measurement window at rest (s)")
    parser.add_argument("--pause", type=float, default=120.0, help="the canary's pause step (s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-scale"))
    parser.add_argument("--plot", type=Path, default=None, help="also write the plot here")
    parser.add_argument("--append", action="store_true", help="add to the results already in --out")
    args = parser.parse_args(argv)
    results: list[ScaleResult] = load(args.out) if args.append and (args.out / "scale.json").exists() else []
    for n in (int(x) for x in args.n.split(",") if x.strip()):
        started = time.monotonic()
        try:
            result = run_scale(n, seed=args.seed, interval_s=args.interval, idle_s=args.idle, pause_s=args.pause)
        except TimeoutError as exc:  # where it stops, and why, is a result too
            print(f"N={n}: stopped: {exc}", flush=True)
            break
        results = [r for r in results if r.n != n] + [result]
        results.sort(key=lambda r: r.n)
        save(results, args.out)
        print(f"N={n}: done in {time.monotonic() - started:.0f}s (load average {result.load_avg})", flush=True)
    print(table(results))
    print(f"\nseed {args.seed}, interval {args.interval:g}s, at rest {args.idle:g}s; results in {args.out}")
    if results:
        plot(results, args.out / "scale.png")
        if args.plot is not None:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
