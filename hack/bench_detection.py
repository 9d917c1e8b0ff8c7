"""Time from the onset of a regression to the canary's weight reaching 0, on the real stack.

For each (scrape interval, analysis interval) pair: roll out a good canary to 30% and hold it
there (an indefinite pause, so only the background analysis runs), let it pass a few
measurements, then make it fail (an error rate of 30% injected into the running canary
process) and time how long until the HTTPRoute gives it 0%.

    python hack/bench_detection.py [--repeats 3] [--pairs 1s:1s,1s:5s,5s:5s]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from kanaria.sandbox.loadgen import LoadGenerator  # noqa: E402
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status  # noqa: E402
from kanaria.sandbox.stack import LocalStack  # noqa: E402
from kanaria.sandbox.timeline import TimelineRecorder  # noqa: E402

NAME = "bench"


def one_pair(out: Path, scrape: str, interval: str, repeats: int) -> list[float]:
    uris = train_models(out / "models", {"v1": {"seed": 1}, "v2": {"seed": 2}})
    times: list[float] = []
    with LocalStack(out / f"stack-{scrape}-{interval}", namespace="bench", scrape_interval=scrape) as stack:
        stack.follow_route(NAME)
        metrics = [{"name": "errors", "kind": "errorRate", "minSamples": 200, "critical": True}]

        def body(version: str, uri: str) -> dict[str, Any]:
            return manifest(NAME, stack.namespace, version, uri, stack.prometheus_url,
                            steps=[{"setWeight": 30}, {"pause": {}}], metrics=metrics,
                            interval=interval, window="0s")

        stack.apply(body("base", uris["v1"]))
        wait_status(lambda: stack.get(NAME), lambda s: s.get("phase") == "Stable", timeout=120, what="base")
        load = LoadGenerator(stack.proxy_url, rate=60, duration=3600, feedback=False, seed=3).start()
        try:
            for i in range(repeats):
                spec = body(f"c{i}", uris["v2"])
                rev = revision_of(spec)
                assert stack.api is not None and stack.kubelet is not None
                with TimelineRecorder(stack.api, stack.namespace, NAME, interval=0.1) as timeline:
                    stack.apply(spec)
                    wait_status(lambda: stack.get(NAME),
                                lambda s: s.get("currentStep") == 1 and s.get("phase") == "Paused"
                                and any(a["verdict"] == "pass" for a in s.get("analysis", [])),
                                timeout=300, what="the canary passing at 30%")
                    url = stack.kubelet.url_of(rev)
                    assert url is not None
                    request = urllib.request.Request(
                        f"{url}/admin/faults", data=json.dumps({"error_rate": 0.3}).encode(),
                        headers={"Content-Type": "application/json"}, method="POST")
                    urllib.request.urlopen(request, timeout=5).read()
                    onset = time.monotonic()
                    while True:
                        snap = timeline.snapshot()
                        # after a rollback the route keeps the revision at 0, then drops it
                        if snap and snap[-1].route is not None and snap[-1].route.get(rev, 0) == 0:
                            break
                        if time.monotonic() - onset > 300:
                            raise TimeoutError("the regression was not rolled back within 300 s")
                        time.sleep(0.05)
                    took = time.monotonic() - onset
                times.append(took)
                print(f"  scrape {scrape} interval {interval} run {i + 1}: weight 0 after {took:.1f}s", flush=True)
                # the next canary starts from the rolled-back state
        finally:
            load.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", default="1s:1s,1s:5s,5s:5s")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench-detection")
    args = parser.parse_args()
    rows = []
    for pair in args.pairs.split(","):
        scrape, interval = pair.split(":")
        times = one_pair(args.out, scrape, interval, args.repeats)
        rows.append((scrape, interval, times))
    print("\n| scrape interval | analysis interval | runs | median s | min s | max s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for scrape, interval, times in rows:
        print(f"| {scrape} | {interval} | {len(times)} | {statistics.median(times):.1f} | "
              f"{min(times):.1f} | {max(times):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
