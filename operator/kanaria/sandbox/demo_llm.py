"""``make demo-llm``: a large-language-model rollout on the local stack, judged on the inference
server's own metrics (vLLM's names; no PromQL written): a healthy revision is promoted, then a
revision whose first token comes 30% later is rolled back; then a LoRA adapter is rolled out on
a base model by the weights of an InferenceModelRewrite (Gateway API Inference Extension), which
the sandbox gateway follows.

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

from kubernetes import client

from kanaria.sandbox.demo import Progress, _settled
from kanaria.sandbox.llmload import LLMLoadGenerator
from kanaria.sandbox.report import write_demo_report
from kanaria.sandbox.scenario import manifest, revision_of, wait_status
from kanaria.sandbox.stack import LocalStack
from kanaria.sandbox.timeline import TimelineRecorder

__all__ = ["main", "run_demo_llm", "llm_manifest"]

NAME = "assistant"  # the ModelDeployment: a chat model
ADAPTED = "sql-assistant"  # the second: a LoRA adapter on a base model, rolled out by rewrite weights
CLIENT_MODEL = "sql-assistant"  # the model name its clients send
BASE_MODEL = "llama-base"
FIRST_TOKEN_MS = 60
METRICS = [
    {"name": "ttft", "kind": "timeToFirstToken", "minSamples": 150, "critical": True},
    {"name": "tpot", "kind": "timePerOutputToken", "minSamples": 150},
    {"name": "aborts", "kind": "abortRate", "minSamples": 150},
]


def llm_manifest(stack: LocalStack, version: str, **env: str) -> dict[str, Any]:
    """A ModelDeployment of the reference LLM server, judged on vLLM's metric names."""
    body = manifest(NAME, stack.namespace, version, f"builtin://ngram/{version}", stack.prometheus_url,
                    steps=[{"setWeight": 30}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}],
                    metrics=METRICS, interval="2s", window="0s")
    variables = {"KANARIA_LLM_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS), "KANARIA_LLM_MAX_RUNNING": "32", **env}
    body["spec"]["template"] = {"spec": {"containers": [{
        "name": "model", "image": "kanaria/llmserver:0.1.0",
        "env": [{"name": k, "value": v} for k, v in variables.items()],
    }]}}
    body["spec"]["monitoring"] = {"enabled": False}
    return body


def adapter_manifest(stack: LocalStack, version: str, adapter: str) -> dict[str, Any]:
    """The adapter ModelDeployment: one InferencePool over every revision, and an
    InferenceModelRewrite sending CLIENT_MODEL to the revisions' adapters by weight."""
    body = llm_manifest(stack, version)
    body["metadata"]["name"] = ADAPTED
    body["spec"]["model"].update(name=BASE_MODEL, adapter=adapter)
    body["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 30}, {"analysis": {}}]}}
    body["spec"]["analysis"]["metrics"] = [m for m in METRICS if m["name"] != "tpot"]
    body["spec"]["traffic"] = {"gatewayAPI": {"inferencePool": {
        "endpointPicker": {"name": f"{ADAPTED}-epp"}, "modelRewrite": {"modelName": CLIENT_MODEL}}}}
    return body


def rewrite_weights(stack: LocalStack) -> dict[str, int]:
    """The adapter weights of the InferenceModelRewrite, as the API server holds them."""
    assert stack.api is not None
    try:
        rewrite: Any = client.CustomObjectsApi(stack.api).get_namespaced_custom_object(
            "inference.networking.x-k8s.io", "v1alpha2", stack.namespace, "inferencemodelrewrites", ADAPTED)
    except client.ApiException:
        return {}
    rules = (rewrite.get("spec") or {}).get("rules") or [{}]
    return {t["modelRewrite"]: int(t.get("weight", 1)) for t in rules[0].get("targets") or []}


def _adapter_act(stack: LocalStack, rate: float, started: float) -> dict[str, Any]:
    """v1's adapter serves; v2's adapter is canaried at 30% of the rewrite and promoted."""
    print(f"\n=== act 3: a LoRA adapter rollout; clients ask for {CLIENT_MODEL!r}, the rewrite picks the adapter",
          flush=True)
    gateway = stack.follow_inference(ADAPTED)
    stack.apply(adapter_manifest(stack, "v1", "sql-lora-v1"))
    wait_status(lambda: stack.get(ADAPTED), lambda s: s.get("phase") == "Stable", timeout=120,
                what="the first adapter to be served")
    load = LLMLoadGenerator(gateway.url, rate=rate, duration=900, max_tokens=16, seed=7, concurrency=24,
                            model=CLIENT_MODEL, feedback=False).start()
    progress = Progress(stack, load, started)
    seen: list[dict[str, int]] = []

    def tick(st: dict[str, Any]) -> None:
        weights = rewrite_weights(stack)
        if weights and (not seen or weights != seen[-1]):
            seen.append(weights)
            print(f"          InferenceModelRewrite {CLIENT_MODEL} -> "
                  + ", ".join(f"{k} {v}%" for k, v in sorted(weights.items())), flush=True)
        progress(st)

    spec = adapter_manifest(stack, "v2", "sql-lora-v2")
    rev = revision_of(spec)
    t0 = time.monotonic()
    try:
        stack.apply(spec)
        final = wait_status(lambda: stack.get(ADAPTED), functools.partial(_settled, rev=rev), timeout=600,
                            what="the new adapter to be promoted or rolled back", on_tick=tick)
        tick(final)
    finally:
        load.stop()
        load.join(30)
    outcome: dict[str, Any] = next((h for h in reversed(final.get("history", [])) if h["revision"] == rev), {})
    took = time.monotonic() - t0
    path = " → ".join("/".join(f"{v}" for _, v in sorted(w.items())) for w in seen)
    answered = load.stats().by_revision
    reason = (f"{outcome.get('reason')}; rewrite weights (sql-lora-v1/sql-lora-v2) {path}; "
              f"answers by revision {dict(sorted(answered.items()))}")
    print(f"=== act 3: sql-lora-v2 {outcome.get('outcome')} after {took:.0f}s: {reason}", flush=True)
    return {"version": "v2 (adapter sql-lora-v2)", "revision": rev, "expected": "promoted",
            "outcome": outcome.get("outcome"), "reason": reason, "seconds": round(took, 1),
            "rewrite_weights": seen}


def run_demo_llm(out: Path, *, rate: float = 16.0) -> dict[str, Any]:
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
        results["phases"].append(_adapter_act(stack, rate, started))
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
    parser.add_argument("--rate", type=float, default=16.0, help="chat requests per second")
    args = parser.parse_args(argv)
    results = run_demo_llm(args.out, rate=args.rate)
    ok = [p["outcome"] for p in results["phases"]] == [p["expected"] for p in results["phases"]]
    print(f"\ndemo-llm {'succeeded' if ok else 'FAILED'} in {results['seconds']:.0f}s; "
          f"report: {results['report']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
