"""``make demo``: a model rolled out and promoted, then a worse one rolled back, live.

Everything is real and local: the test bed's control plane, Prometheus, HAProxy, model-server
processes serving scikit-learn models trained here on a bundled data set, a load generator
sending requests and delayed ground-truth labels, and the operator. Progress is printed as it
happens; a report with a timeline plot is written to the output folder.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.report import write_demo_report
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder

__all__ = ["main", "run_demo"]

NAME = "cancer-screen"  # the ModelDeployment: a breast-cancer classifier


class Progress:
    """Prints one line whenever the rollout's visible state changes."""

    def __init__(self, stack: LocalStack, load: LoadGenerator, started: float) -> None:
        self.stack, self.load, self.started = stack, load, started
        self.last = ""

    def __call__(self, st: dict[str, Any]) -> None:
        verdicts = " ".join(
            f"{a['metric']}={a['verdict']}"
            + (f"({_num(a.get('value'))} vs {_num(a.get('baseline'))}, n={a.get('samples', 0)})"
               if a.get("value") is not None else f"(n={a.get('samples', 0)})")
            for a in st.get("analysis") or []
        )
        served = self.load.stats().by_revision
        line = (
            f"{st.get('phase', '?'):<11} step {st.get('currentStep', 0)} "
            f"weight {st.get('canaryWeight', 0):>3}%  {verdicts}"
        )
        if line != self.last:
            self.last = line
            t = time.monotonic() - self.started
            split = " ".join(f"{k}:{v}" for k, v in sorted(served.items()))
            print(f"[{t:6.1f}s] {line}\n          served so far {split}", flush=True)
            if st.get("message"):
                print(f"          {st['message']}", flush=True)


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def run_demo(out: Path, *, rate: float = 80.0) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    print("training models (scikit-learn, breast-cancer data bundled with it) ...", flush=True)
    uris = train_models(
        out / "models",
        {
            "v1": {"seed": 1},
            "v2": {"seed": 2},
            "v3": {"seed": 3, "label_noise": 0.3},  # trained on corrupted labels: worse
        },
    )
    for version in uris:
        meta = json.loads((out / "models" / version / "meta.json").read_text())
        print(f"  {version}: held-out accuracy {meta['test_accuracy']:.3f}", flush=True)
    started = time.monotonic()
    print("starting the local stack: control plane, Prometheus, HAProxy, operator ...", flush=True)
    results: dict[str, Any] = {"phases": []}
    with LocalStack(out / "stack") as stack:
        print(f"  up in {time.monotonic() - started:.0f}s; Prometheus {stack.prometheus_url}, "
              f"proxy {stack.proxy_url}", flush=True)

        def body(version: str) -> dict[str, Any]:
            return manifest(NAME, stack.namespace, version, uris[version], stack.prometheus_url)

        stack.follow_route(NAME)
        v1 = body("v1")
        stack.apply(v1)
        r1 = revision_of(v1)
        wait_status(lambda: stack.get(NAME), lambda s: s.get("phase") == "Stable", timeout=120,
                    what="v1 to be served")
        print(f"v1 serves as revision {r1}; sending traffic through the proxy at {rate:.0f} req/s "
              "with labels 2 s later", flush=True)
        load = LoadGenerator(stack.proxy_url, rate=rate, duration=1800, feedback_delay_s=2.0, seed=7).start()
        assert stack.api is not None
        progress = Progress(stack, load, started)
        with TimelineRecorder(stack.api, stack.namespace, NAME, interval=0.5) as timeline:
            for version, expect in (("v2", "promoted"), ("v3", "rolledBack")):
                spec = body(version)
                rev = revision_of(spec)
                print(f"\n=== rolling out {version} (revision {rev}); expecting it to be {expect}", flush=True)
                t0 = time.monotonic()
                stack.apply(spec)
                final = wait_status(
                    lambda: stack.get(NAME),
                    functools.partial(_settled, rev=rev),
                    timeout=600,
                    what=f"{version} to be promoted or rolled back",
                    on_tick=progress,
                )
                outcome: dict[str, Any] = next(
                    (h for h in reversed(final.get("history", [])) if h["revision"] == rev), {}
                )
                took = time.monotonic() - t0
                print(f"=== {version}: {outcome.get('outcome')} after {took:.0f}s: {outcome.get('reason')}",
                      flush=True)
                results["phases"].append({"version": version, "revision": rev, "expected": expect,
                                          "outcome": outcome.get("outcome"), "reason": outcome.get("reason"),
                                          "seconds": round(took, 1)})
        load.stop()
        results["load"] = json.loads(load.stats().to_json())
        results["proxy_counts"] = stack.proxy.served_counts() if stack.proxy else {}
        timeline.dump(out / "timeline.json")
        report = write_demo_report(out, timeline.snapshot(), results, stack.get(NAME))
    results["seconds"] = round(time.monotonic() - started, 1)
    results["report"] = str(report)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _settled(status: dict[str, Any], rev: str) -> bool:
    if status.get("canaryRevision") == rev:
        return False
    if status.get("phase") == "RolledBack" and status.get("rejectedRevision") == rev:
        return True
    return status.get("phase") == "Stable" and status.get("stableRevision") == rev


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second")
    args = parser.parse_args(argv)
    results = run_demo(args.out, rate=args.rate)
    ok = [p["outcome"] for p in results["phases"]] == [p["expected"] for p in results["phases"]]
    print(f"\ndemo {'succeeded' if ok else 'FAILED'} in {results['seconds']:.0f}s; "
          f"report: {results['report']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
