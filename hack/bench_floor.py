#!/usr/bin/env python3
"""`make bench-floor`: the least time any operator could take to give N simultaneous canaries
their first weight on this test bed (only the writes a rollout needs, no operator), and the API
server's raw write rate. The bound against which bench-scale's operator share is read.

    PYTHONPATH=operator python3 hack/bench_floor.py --n 100,1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kanaria.sandbox.floor import run_floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100,1000", help="comma-separated numbers of canaries")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-floor"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(x) for x in args.n.split(",") if x.strip()):
        results.append(run_floor(n).as_dict())
        (args.out / "floor.json").write_text(json.dumps(results, indent=1))
    print("| N | ConfigMap writes/s (p50 / p99 ms) | all created (s) | change → weight p50 / p99 (s) "
          "| operator share p50 / p99 (s) | cluster share p50 / p99 (s) | load avg |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['n']} | {r['writes_per_s']:.0f} ({r['write_p50_ms']:.0f} / {r['write_p99_ms']:.0f}) "
              f"| {r['creates_done_s']:.1f} | {r['weighted_p50_s']:.1f} / {r['weighted_p99_s']:.1f} "
              f"| {r['operator_share_p50_s']:.1f} / {r['operator_share_p99_s']:.1f} "
              f"| {r['cluster_share_p50_s']:.1f} / {r['cluster_share_p99_s']:.1f} | {r['load_avg']} |")
    print(f"\nresults in {args.out / 'floor.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
