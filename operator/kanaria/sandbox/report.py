"""A rollout report: a timeline plot (weights and metric values, decisions marked) and a
Markdown page with the history and the evidence behind each decision."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kanaria.sandbox.timeline import Point

__all__ = ["write_demo_report", "plot_timeline"]


UNITS = {"accuracy": "accuracy (share correct)", "latency": "P(new request slower)", "errorRate": "error rate",
         "drift": "share of features drifted", "agreement": "agreement", "custom": "value",
         "feedback": "share of positive feedback", "rating": "mean rating"}


def plot_timeline(points: Sequence[Point], path: Path, title: str = "rollout timeline") -> Path:
    """Traffic on top; below it one panel per metric, each in its own unit (the new revision
    against its baseline); and, when the serving revision was monitored, a panel with its
    recent accuracy, its baseline and the estimate from confidences, drift alarms shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[str, list[float], list[float], list[float]]] = {}
    for p in points:
        for a in p.analysis:
            if a.get("value") is None or a.get("metric") == "sample-ratio":
                continue
            _, ts, vs, bs = series.setdefault(a["metric"], (a.get("kind", ""), [], [], []))
            ts.append(p.t)
            vs.append(float(a["value"]))
            bs.append(float(a["baseline"]) if a.get("baseline") is not None else float("nan"))
    monitored = [p for p in points if p.monitoring.get("recentAccuracy") is not None and p.canary is None
                 and p.monitoring.get("revision") == p.stable]  # between rollouts only
    rows = 1 + len(series) + (1 if monitored else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.2 + 1.9 * rows), sharex=True, squeeze=False)
    ax_w = axes[0][0]
    t = [p.t for p in points]
    ax_w.step(t, [p.canary_weight for p in points], where="post", label="new revision (status)", color="tab:orange")
    routed = [(p.t, p.route.get(p.canary, 0) if p.route and p.canary else None) for p in points]
    ax_w.plot([a for a, b in routed if b is not None], [b for a, b in routed if b is not None], ".",
              color="tab:blue", markersize=3, label="new revision (HTTPRoute)")
    ax_w.set_ylabel("% of traffic")
    ax_w.set_ylim(-5, 105)
    ax_w.legend(loc="upper left", fontsize=8)
    for i, (name, (kind, ts, vs, bs)) in enumerate(series.items(), start=1):
        ax = axes[i][0]
        line = ax.plot(ts, vs, ".", markersize=3, label=f"{name}: new revision")[0]
        ax.plot(ts, bs, ".", markersize=3, color=line.get_color(), alpha=0.35, label=f"{name}: baseline")
        ax.set_ylabel(UNITS.get(kind, "value"), fontsize=8)
        ax.legend(loc="lower left", fontsize=7, ncol=2)
    if monitored:
        ax = axes[-1][0]
        mt = [p.t for p in monitored]
        ax.plot(mt, [p.monitoring["recentAccuracy"] for p in monitored], label="serving: recent accuracy")
        ax.plot(mt, [p.monitoring.get("baselineAccuracy") or float("nan") for p in monitored], "--",
                label="serving: early-life baseline")
        ax.plot(mt, [p.monitoring.get("estimatedAccuracy") or float("nan") for p in monitored], ":",
                label="serving: estimate from confidences")
        drifting = [p.t for p in monitored if any(f.get("kind") == "drift" and f.get("alarm")
                                                  for f in p.monitoring.get("findings") or [])]
        for x in drifting:
            ax.axvspan(x - 0.25, x + 0.25, color="tab:red", alpha=0.08, linewidth=0)
        ax.set_ylabel("serving accuracy", fontsize=8)
        ax.legend(loc="lower left", fontsize=7, ncol=3)
    axes[-1][0].set_xlabel("seconds")
    previous = None
    for p in points:
        if p.phase != previous and p.phase in ("Validating", "Progressing", "Watching", "Stable", "RolledBack", "Paused"):
            color = {"RolledBack": "tab:red", "Watching": "tab:green", "Stable": "tab:gray"}.get(p.phase, "tab:purple")
            for row in axes:
                row[0].axvline(p.t, color=color, alpha=0.35, linewidth=1)
            ax_w.annotate(p.phase, (p.t, 100), fontsize=7, rotation=90, va="top", color=color)
        previous = p.phase
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_demo_report(out: Path, points: Sequence[Point], results: dict[str, Any], obj: dict[str, Any]) -> Path:
    png = plot_timeline(points, out / "timeline.png", f"ModelDeployment {obj['metadata']['name']}")
    status = obj.get("status") or {}
    lines = [
        f"# Rollout report: {obj['metadata']['namespace']}/{obj['metadata']['name']}",
        "",
        "![timeline](timeline.png)",
        "",
        "## Outcomes",
        "",
        "| version | revision | expected | outcome | seconds | reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in results.get("phases", []):
        lines.append(f"| {p['version']} | {p['revision']} | {p['expected']} | {p['outcome']} | "
                     f"{p['seconds']} | {p['reason']} |")
    lines += ["", "## History (from status)", "", "| at | revision | version | outcome | reason |",
              "| --- | --- | --- | --- | --- |"]
    for h in status.get("history", []):
        lines.append(f"| {h.get('at')} | {h['revision']} | {h.get('modelVersion')} | {h['outcome']} | {h.get('reason', '')} |")
    lines += ["", "## Last verdicts", "", "| metric | verdict | value | baseline | samples | statistic | threshold | reason |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in status.get("analysis", []):
        lines.append(
            f"| {a['metric']} | {a['verdict']} | {a.get('value')} | {a.get('baseline')} | "
            f"{a.get('samples')}/{a.get('baselineSamples')} | {a.get('statistic')} | {a.get('threshold')} | {a.get('reason')} |"
        )
    lines += ["", "## Traffic", "", *_requests_line(results.get("load") or {}), "", "```json", json.dumps({"load": results.get("load"),
                                                         "proxy": results.get("proxy_counts")}, indent=1), "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    del png
    return path


def _requests_line(load: dict[str, Any]) -> list[str]:
    """Every request the load generator sent, and what became of it."""
    if not load:
        return []
    failed = int(load.get("errors") or 0) + int(load.get("failed") or 0)
    line = (f"Requests: {load.get('sent', 0)} sent, {load.get('ok', 0)} answered, **{failed} failed** "
            f"({load.get('errors', 0)} answered 5xx, {load.get('failed', 0)} without an answer or with another status).")
    first = (load.get("failures") or [])[:3]
    if first:
        line += " First failures: " + "; ".join(
            f"{f['at']:.1f}s after the load began: {f['status'] or 'no answer'} {f['detail'][:60]!r}" for f in first)
    return [line]
