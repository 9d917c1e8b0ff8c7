"""Memory a ModelMonitor holds per 1,000 pending predictions (entries, request ids, queues).

    PYTHONPATH=operator .venv/bin/python hack/monitor_memory.py [--horizons 5m,1h] [--count 10000]

Measured with tracemalloc around ``observe_request`` of predictions with fresh 32-character
request ids (uuid4 hex, as the reference model server makes them), on a store large enough to
hold them all; the prediction counters and histograms themselves do not grow.
"""

from __future__ import annotations

import argparse
import tracemalloc
import uuid

from kanaria.monitor import ModelMonitor, ReferenceProfile, parse_horizons


def held_per_thousand(count: int, horizons: tuple[float, ...]) -> float:
    profile = ReferenceProfile(("a",), ((1.0,),), (0.5,), ("no", "yes"))
    monitor = ModelMonitor(
        "m", "r1", profile, pending_max=count, pending_ttl_seconds=max(horizons), maturity_horizons=horizons
    )
    monitor.observe_request("warm-up", [0.5], "yes", 0.9, 0.01)  # create the series first
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            monitor.observe_request(uuid.uuid4().hex, [0.5], "yes", 0.9, 0.01)
        return (tracemalloc.get_traced_memory()[0] - before) * 1000 / count
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizons", default="5m", help="as KANARIA_MATURITY_HORIZONS")
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    horizons = parse_horizons(args.horizons)
    per_thousand = held_per_thousand(args.count, horizons)
    print(f"{per_thousand / 1000:.0f} kB per 1,000 pending predictions (horizons {args.horizons})")


if __name__ == "__main__":
    main()
