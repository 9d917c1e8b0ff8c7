"""``make demo``: a model rolled out and promoted, then a worse one rolled back, then the
loop between rollouts: the inputs drift, the serving model is flagged, a retraining Job makes
a candidate, it is validated offline, canaried and promoted, and accuracy recovers — live.

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
from typing import Any, Protocol

from kanaria.sandbox.loadgen import LoadGenerator
from kanaria.sandbox.report import write_demo_report
from kanaria.sandbox.scenario import manifest, revision_of, train_models, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder
from kanaria.sandbox.train import Rescale

__all__ = ["main", "run_demo"]

NAME = "cancer-screen"  # the ModelDeployment: a breast-cancer classifier


class _Served(Protocol):
    @property
    def by_revision(self) -> dict[str, int]: ...


class _Load(Protocol):
    def stats(self) -> _Served: ...


class Progress:
    """Prints one line whenever the rollout's visible state changes."""

    def __init__(self, stack: LocalStack, load: _Load, started: float) -> None:
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
        # Clients come once the gateway carries the route (its status says so), as they would
        # behind a real gateway: before that there is no server to send them to.
        wait_status(lambda: {"status": {"programmed": stack.route_programmed(NAME)}}, lambda s: s["programmed"], timeout=60,
                    what="the proxy to carry the route")
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
            results["phases"].append(_act_three(stack, load, body, progress))
        load.stop()
        results["load"] = json.loads(load.stats().to_json())
        results["proxy_counts"] = stack.proxy.served_counts() if stack.proxy else {}
        timeline.dump(out / "timeline.json")
        report = write_demo_report(out, timeline.snapshot(), results, stack.get(NAME))
    results["seconds"] = round(time.monotonic() - started, 1)
    results["report"] = str(report)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def lifecycle(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with the loop between rollouts turned up for a demo: checks every 2 s on the
    last 20 s, a baseline from 300 labels, the reference retraining Job (adopted automatically
    once 20 s of data since the finding are in) and the reference validation Job."""
    def job(module: str, **env: str) -> dict[str, Any]:
        return {"spec": {"containers": [{"name": "job", "image": "kanaria/jobs:0.1.0", "command": ["python", "-m", module],
                                         "env": [{"name": k, "value": v} for k, v in env.items()]}]}}

    spec = json.loads(json.dumps(spec))
    spec["spec"]["monitoring"] = {"interval": "2s", "window": "20s", "history": "60s", "minSamples": 300,
                                  "baselineLabels": 300}
    spec["spec"]["retraining"] = {"template": job("kanaria.sandbox.retrain", KANARIA_MIN_SAMPLES="300"),
                                  "triggers": ["drift", "accuracy"], "dataWindow": "20s", "adopt": "auto",
                                  "activeDeadline": "3m"}
    spec["spec"]["validation"] = {"template": job("kanaria.sandbox.validate", KANARIA_MIN_SAMPLES="100"),
                                  "margin": 0.02, "activeDeadline": "3m"}
    return spec


def _act_three(stack: LocalStack, load: LoadGenerator, body: Any, progress: Progress) -> dict[str, Any]:
    """Drift in the live traffic; monitor → retrain → validate → canary → promoted."""
    print("\n=== act 3: the serving model is watched between rollouts; then the inputs drift", flush=True)
    current = stack.get(NAME)
    served = current["status"]["stableRevision"]
    spec = lifecycle(body(current["status"]["stableVersion"]))
    stack.apply(spec)  # back to the serving model (v3 was rolled back): the same revision, no rollout
    t0 = time.monotonic()
    baseline = wait_status(lambda: stack.get(NAME),
                           lambda s: (s.get("monitoring") or {}).get("baselineAccuracy") is not None,
                           timeout=120, what="the serving revision's baseline", on_tick=progress)
    print(f"  baseline accuracy {baseline['monitoring']['baselineAccuracy']:.3f} from "
          f"{baseline['monitoring']['earlyLabels']} labels in production; now the imaging calibration changes: "
          "nine size features read 30% larger, labels unchanged", flush=True)
    before = load.stats()
    load.set_rescale(Rescale())
    flagged = wait_status(lambda: stack.get(NAME),
                          lambda s: any(c["type"] == "Drifting" and c["status"] == "True" for c in s.get("conditions") or []),
                          timeout=120, what="Drifting", on_tick=progress)
    drift = next(c for c in flagged["conditions"] if c["type"] == "Drifting")
    print(f"  Drifting after {time.monotonic() - t0:.0f}s: {drift['message']}", flush=True)
    final = wait_status(lambda: stack.get(NAME),
                        lambda s: s.get("stableRevision") != served and s.get("phase") in ("Watching", "Stable"),
                        timeout=420, what="the retrained revision promoted", on_tick=_jobs_progress(progress))
    new = final["stableRevision"]
    wait_status(lambda: stack.get(NAME),
                lambda s: load.stats().by_revision.get(new, 0) >= 400, timeout=60, what="drifted traffic on it")
    after = load.stats()
    old_right = (after.correct_by_revision.get(served, 0) - before.correct_by_revision.get(served, 0)) / max(
        1, after.by_revision.get(served, 0) - before.by_revision.get(served, 0))
    new_right = after.correct_by_revision.get(new, 0) / max(1, after.by_revision.get(new, 0))
    took = time.monotonic() - t0
    version = final.get("stableVersion")
    reason = (f"drift flagged, retrained, validated ({final.get('validation', {}).get('reason', '')}), promoted; "
              f"accuracy on drifted traffic {old_right:.3f} before, {new_right:.3f} after")
    print(f"=== act 3: {version} promoted after {took:.0f}s: {reason}", flush=True)
    return {"version": version, "revision": new, "expected": "promoted", "outcome": "promoted",
            "reason": reason, "seconds": round(took, 1), "accuracy_before": round(old_right, 4),
            "accuracy_after": round(new_right, 4)}


def _jobs_progress(progress: Progress) -> Any:
    seen: set[str] = set()

    def tick(st: dict[str, Any]) -> None:
        for j in st.get("jobs") or []:
            key = f"{j['name']}:{j['state']}"
            if key not in seen:
                seen.add(key)
                print(f"          {j['purpose']} Job {j['name']}: {j['state']} {j.get('reason', '')}", flush=True)
        progress(st)

    return tick


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
    load = results.get("load") or {}
    print(f"\nrequests: {load.get('sent', 0)} sent through the proxy, "
          f"{int(load.get('errors') or 0) + int(load.get('failed') or 0)} failed "
          f"({load.get('errors', 0)} 5xx, {load.get('failed', 0)} unanswered or another status)", flush=True)
    print(f"\ndemo {'succeeded' if ok else 'FAILED'} in {results['seconds']:.0f}s; "
          f"report: {results['report']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
