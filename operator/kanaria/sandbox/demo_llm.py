"""``make demo-llm``: a large-language-model rollout on the local stack, judged on the inference
server's own metrics (vLLM's names; no PromQL written): a healthy revision is promoted, then a
revision whose first token comes 30% later is rolled back.

Everything is real and local: the test bed's control plane, Prometheus, HAProxy, the reference
LLM server (it streams tokens from a word n-gram model it builds at start-up and exports vLLM's
metric names), a streaming chat load generator that gives thumbs up or down, and the operator.
Progress is printed as it happens; a report with a timeline plot is written to the output
folder, as ``make demo`` does.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from kanaria.sandbox.demo import Progress, _settled
from kanaria.sandbox.llmload import LLMLoadGenerator
from kanaria.sandbox.report import write_demo_report
from kanaria.sandbox.scenario import manifest, revision_of, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder

__all__ = ["main", "run_demo_llm", "llm_manifest"]

NAME = "assistant"  # the ModelDeployment: a chat model
FIRST_TOKEN_MS = 60
METRICS = [
    {"name": "ttft", "kind": "timeToFirstToken", "minSamples": 150, "critical": True},
    {"name": "tpot", "kind": "timePerOutputToken", "minSamples": 150},
    {"name": "aborts", "kind": "abortRate", "minSamples": 150},
]


def llm_manifest(stack: LocalStack, version: str, **env: str) -> dict[str, Any]:
    """A ModelDeployment of the reference LLM server, judged on vLLM's metric names."""
    body = manifest(NAME, stack.namespace, version, f"builtin://ngram/{version}", stack.prometheus_url,
                    steps=[{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}],
                    metrics=METRICS, interval="2s", window="0s")
    variables = {"KANARIA_LLM_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS), "KANARIA_LLM_MAX_RUNNING": "32", **env}
    body["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in variables.items()],
    }]}}
    body["spec"]["monitoring"] = {"enabled": False}
    return body


def run_demo_llm(out: Path, *, rate: float = 12.0) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print("starting the local stack: control plane, Prometheus, HAProxy, operator ...", flush=True)
    results: dict[str, Any] = {"phases": []}
    with LocalStack(out / "stack", namespace="llm-demo") as stack:
        print(f"  up in {time.monotonic() - started:.0f}s; Prometheus {stack.prometheus_url}, "
              f"proxy {stack.proxy_url}", flush=True)
        stack.follow_route(NAME)
        v1 = llm_manifest(stack, "v1")
        stack.apply(v1)
        wait_status(lambda: stack.get(NAME), lambda s: s.get("phase") == "Stable", timeout=120,
                    what="v1 to be served")
        print(f"v1 serves as revision {revision_of(v1)}; streaming chat completions through the proxy at "
              f"{rate:.0f} req/s, each answer rated thumbs up or down", flush=True)
        # Well below the servers' capacity (32 at once each): time to first token measures the
        # revision, not a queue that the busier stable revision would build.
        load = LLMLoadGenerator(stack.proxy_url, rate=rate, duration=1800, max_tokens=24, seed=3,
                                concurrency=24).start()
        assert stack.api is not None
        progress = Progress(stack, load, started)
        acts: tuple[tuple[str, dict[str, str], str, str], ...] = (
            ("v2", {}, "promoted", "a healthy revision"),
            ("v3", {"KANARIA_FAULT_FIRST_TOKEN_MS": str(round(FIRST_TOKEN_MS * 0.3))}, "rolledBack",
             f"first token 30% later ({FIRST_TOKEN_MS} ms + {round(FIRST_TOKEN_MS * 0.3)} ms)"),
        )
        with TimelineRecorder(stack.api, stack.namespace, NAME, interval=0.5) as timeline:
            for version, env, expect, what in acts:
                spec = llm_manifest(stack, version, **env)
                rev = revision_of(spec)
                print(f"\n=== rolling out {version} (revision {rev}), {what}; expecting it to be {expect}",
                      flush=True)
                t0 = time.monotonic()
                stack.apply(spec)
                final = wait_status(lambda: stack.get(NAME), functools.partial(_settled, rev=rev), timeout=600,
                                    what=f"{version} to be promoted or rolled back", on_tick=progress)
                outcome: dict[str, Any] = next(
                    (h for h in reversed(final.get("history", [])) if h["revision"] == rev), {})
                took = time.monotonic() - t0
                print(f"=== {version}: {outcome.get('outcome')} after {took:.0f}s: {outcome.get('reason')}",
                      flush=True)
                results["phases"].append({"version": version, "revision": rev, "expected": expect,
                                          "outcome": outcome.get("outcome"), "reason": outcome.get("reason"),
                                          "seconds": round(took, 1)})
        load.stop()
        load.join(30)
        results["load"] = json.loads(load.stats().to_json())
        results["proxy_counts"] = stack.proxy.served_counts() if stack.proxy else {}
        timeline.dump(out / "timeline.json")
        report = write_demo_report(out, timeline.snapshot(), results, stack.get(NAME))
    results["seconds"] = round(time.monotonic() - started, 1)
    results["report"] = str(report)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.sandbox.demo_llm", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo-llm"))
    parser.add_argument("--rate", type=float, default=12.0, help="chat requests per second")
    args = parser.parse_args(argv)
    results = run_demo_llm(args.out, rate=args.rate)
    ok = [p["outcome"] for p in results["phases"]] == [p["expected"] for p in results["phases"]]
    print(f"\ndemo-llm {'succeeded' if ok else 'FAILED'} in {results['seconds']:.0f}s; "
          f"report: {results['report']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
