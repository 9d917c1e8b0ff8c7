"""A rollout report: a timeline plot (weights and metric values, decisions marked) and a
Markdown page with the history and the evidence behind each decision."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kanaria.sandbox.timeline import Point

__all__ = ["write_demo_report", "plot_timeline"]


def plot_timeline(points: Sequence[Point], path: Path, title: str = "rollout timeline") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_m) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=[1, 1.2])
    t = [p.t for p in points]
    ax_w.step(t, [p.canary_weight for p in points], where="post", label="canary weight (status)", color="tab:orange")
    routed = [(p.t, p.route.get(p.canary, 0) if p.route and p.canary else None) for p in points]
    ax_w.plot([a for a, b in routed if b is not None], [b for a, b in routed if b is not None], ".",
              color="tab:blue", markersize=3, label="canary weight (HTTPRoute)")
    ax_w.set_ylabel("% of traffic")
    ax_w.set_ylim(-5, 105)
    ax_w.legend(loc="upper left", fontsize=8)
    series: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for p in points:
        for a in p.analysis:
            if a.get("value") is None:
                continue
            ts, vs, bs = series.setdefault(a["metric"], ([], [], []))
            ts.append(p.t)
            vs.append(float(a["value"]))
            bs.append(float(a["baseline"]) if a.get("baseline") is not None else float("nan"))
    for name, (ts, vs, bs) in series.items():
        line = ax_m.plot(ts, vs, label=f"{name} (new)")[0]
        ax_m.plot(ts, bs, "--", color=line.get_color(), alpha=0.6, label=f"{name} (baseline)")
    ax_m.set_ylabel("metric value")
    ax_m.set_xlabel("seconds")
    if series:
        ax_m.legend(loc="lower left", fontsize=8, ncol=3)
    previous = None
    for p in points:
        if p.phase != previous and p.phase in ("Progressing", "Watching", "Stable", "RolledBack", "Paused"):
            color = {"RolledBack": "tab:red", "Watching": "tab:green", "Stable": "tab:gray"}.get(p.phase, "tab:purple")
            for ax in (ax_w, ax_m):
                ax.axvline(p.t, color=color, alpha=0.35, linewidth=1)
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
    lines += ["", "## Traffic", "", "```json", json.dumps({"load": results.get("load"),
                                                         "proxy": results.get("proxy_counts")}, indent=1), "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    del png
    return path
